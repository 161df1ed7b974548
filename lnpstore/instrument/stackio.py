"""Time-lapse stacks from disk for :func:`lnpstore.tracking.track_stack`, and its output folder.

An input is a folder of single-channel 2-D TIFF frames in time order (as public tracking data sets ship
them: ``t000.tif``, ``t001.tif``, ...; ordered by the numbers in their names) or one T x Y x X TIFF.
Frames are read one at a time. The output folder holds ``tracks.parquet`` (the tracks, one row per
node), ``labels.tif`` (the label movie, one page per frame) and ``track_stack.json`` (input, settings,
pixel size, versions).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from lnpstore.store.errors import StackError

TIFF_SUFFIXES = (".tif", ".tiff")
TRACKS_FILE = "tracks.parquet"
LABELS_FILE = "labels.tif"
META_FILE = "track_stack.json"


def read_image(path: str) -> np.ndarray:
    """One image of the ``images`` table by its ``path``: a TIFF file, or a plane of an OME-Zarr plate
    (``ARRAY_PATH[t,c,z]``, see :mod:`lnpstore.instrument.omezarr`). The one reader the stages use."""
    from lnpstore.instrument.omezarr import parse_plane_address, read_plane

    if parse_plane_address(path) is not None:
        return read_plane(path)
    import tifffile

    return tifffile.imread(path)


def _natural_key(p: Path) -> list:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


class FrameFolder(Sequence):
    """The 2-D TIFF frames of a folder, in natural name order, read lazily (``folder[i]``)."""

    def __init__(self, folder: Path):
        self.files = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".")),
            key=_natural_key,
        )
        if not self.files:
            raise StackError(
                f"{folder} holds no .tif frames. Hint: give a folder of 2-D TIFFs or a T x Y x X TIFF"
            )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):  # type: ignore[override]
        import tifffile

        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        path = self.files[i]
        try:
            img = tifffile.imread(path)
        except Exception as exc:  # tifffile raises several types for damaged files
            raise StackError(f"cannot read frame {path} ({exc!r})") from None
        img = np.squeeze(img)
        if img.ndim != 2:
            raise StackError(
                f"frame {path} has shape {img.shape}; each frame must be one 2-D single-channel image"
            )
        return img

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]


def open_stack(path: str | Path) -> Sequence | np.ndarray:
    """A lazy sequence of 2-D frames from a folder of TIFFs, or the frames of one T x Y x X TIFF."""
    import tifffile

    path = Path(path)
    if path.is_dir():
        return FrameFolder(path)
    if not path.is_file():
        raise StackError(f"{path} does not exist. Hint: give a folder of 2-D TIFF frames or a T x Y x X TIFF")
    try:
        arr = tifffile.memmap(path) if _is_memmappable(path) else tifffile.imread(path)
    except Exception as exc:
        raise StackError(f"cannot read {path} ({exc!r})") from None
    arr = np.squeeze(arr)
    if arr.ndim != 3:
        raise StackError(
            f"{path} has shape {arr.shape}; a one-file stack must be T x Y x X (one channel). Hint: split "
            "the channels first, or give a folder of 2-D frames"
        )
    return arr


def _is_memmappable(path: Path) -> bool:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return tif.series[0].dataoffset is not None


def read_seeds(spec: str | None, first_frame_shape: tuple[int, int]) -> np.ndarray | None:
    """Seeds for a stack: None/'auto' (automatic), a CSV with columns y_px, x_px, or a label TIFF of frame 1."""
    import tifffile

    if spec in (None, "auto"):
        return None
    p = Path(spec)
    if not p.is_file():
        raise StackError(f"seeds {p} do not exist. Hint: --seeds auto, a CSV (y_px, x_px) or a label .tif")
    if p.suffix.lower() in TIFF_SUFFIXES:
        lab = np.squeeze(tifffile.imread(p))
        if lab.shape != tuple(first_frame_shape):
            raise StackError(f"seed label image {p} has shape {lab.shape}; frame 1 has {first_frame_shape}")
        return lab
    try:
        df = pl.read_csv(p)
    except Exception as exc:
        raise StackError(f"cannot read seed CSV {p}: {str(exc).splitlines()[0]}") from None
    missing = {"y_px", "x_px"} - set(df.columns)
    if missing:
        raise StackError(f"seed CSV {p} lacks column(s) {sorted(missing)}; found {df.columns}")
    try:
        return df.select(pl.col("y_px", "x_px").cast(pl.Float64, strict=True)).to_numpy()
    except Exception:
        raise StackError(f"seed CSV {p}: y_px and x_px must be numbers (px)") from None


def write_result(out: Path, tracks: pl.DataFrame, meta: dict) -> None:
    """Write tracks.parquet and track_stack.json into ``out`` (labels.tif is written by the tracker)."""
    from lnpstore.store.atomic import atomic_path, atomic_write_bytes

    with atomic_path(out / TRACKS_FILE) as tmp:
        tracks.write_parquet(tmp)
    atomic_write_bytes(json.dumps(meta, indent=2, default=str).encode(), out / META_FILE)


def read_result(folder: str | Path):
    """(tracks, lazy label movie, meta) of a ``lnpstore track-stack`` output folder."""
    from lnpstore.tracking.labels import LabelMovie

    folder = Path(folder)
    if not (folder / TRACKS_FILE).is_file() or not (folder / LABELS_FILE).is_file():
        raise StackError(
            f"{folder} is not a track-stack output (needs {TRACKS_FILE} and {LABELS_FILE}). Hint: run "
            "`lnpstore track-stack INPUT --out DIR` first"
        )
    meta = json.loads((folder / META_FILE).read_text()) if (folder / META_FILE).is_file() else {}
    return pl.read_parquet(folder / TRACKS_FILE), LabelMovie(folder / LABELS_FILE), meta


def is_result(folder: str | Path) -> bool:
    return (Path(folder) / TRACKS_FILE).is_file()
