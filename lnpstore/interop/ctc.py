"""Tracks in the Cell Tracking Challenge (CTC) layout: write, validate and read back.

The CTC layout (celltrackingchallenge.net, "naming and file content conventions"), 2-D only here:

* a result (``kind="RES"``): ``DIR/res_track.txt`` and one mask per frame, ``DIR/mask000.tif``,
  ``DIR/mask001.tif``, ...;
* a ground truth (``kind="GT"``): ``DIR/TRA/man_track.txt`` and ``DIR/TRA/man_track000.tif``, ...

The text file has one line ``L B E P`` per track: its label ``L`` (> 0, the pixel value of the track
in the masks), its first and last frame ``B`` and ``E`` as **0-based** frame indices (lnpstore frame
``f`` is CTC index ``f - 1``), and its parent's label ``P`` (0 for none). Masks are uint16 label
images (0 = background) whose pixel values are track labels.

lnpstore's tracks contract (what :func:`write_ctc` and :mod:`lnpstore.export` take): a polars
DataFrame with one row per node and at least ``track_id`` (> 0), ``frame`` (1-based),
``parent_track_id`` (null for none), ``lineage_id``, ``label_id`` (the node's value in that frame's
label image), ``y_px``, ``x_px`` (centroid, px); and the label images as a T x Y x X integer array or
any iterable of 2-D integer arrays in frame order (frame 1 first), consumed one frame at a time.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import numpy as np
import polars as pl

from lnpstore.store.atomic import atomic_dir
from lnpstore.store.errors import CtcFormatError, TrackExportError

log = logging.getLogger(__name__)

#: Columns every tracks DataFrame must hold, with the dtypes they are cast to.
TRACK_COLUMNS: dict[str, type[pl.DataType]] = {
    "track_id": pl.Int32,
    "frame": pl.Int16,
    "parent_track_id": pl.Int32,
    "lineage_id": pl.Int32,
    "label_id": pl.Int32,
    "y_px": pl.Float64,
    "x_px": pl.Float64,
}

#: Label images as a T x Y x X array or an iterable of 2-D integer arrays (frame 1 first).
LabelFrames = np.ndarray | Iterable[np.ndarray]

CtcKind = Literal["RES", "GT"]

MAX_UINT16 = 65535
_MAX_LUT = 1 << 24  # label values above this are relabelled by sorting instead of a lookup table
_MAX_LISTED = 20  # problems listed in one error message


# -- the tracks contract ------------------------------------------------------------------------


def _fail(problems: list[str], head: str, hint: str) -> None:
    if not problems:
        return
    shown = problems[:_MAX_LISTED]
    more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    lines = "\n".join(f"  - {p}" for p in shown)
    raise TrackExportError(f"{head}: {len(problems)} problem(s)\n{lines}{more}\nHint: {hint}")


def without_gaps(tracks: pl.DataFrame) -> pl.DataFrame:
    """``tracks`` without its ``gap_filled`` nodes (they bridge a frame without a region, so they have no
    label pixels), a track with such a gap split CTC-style: the part after the gap becomes a new track
    (next free id) whose parent is the part before it; daughters of the track hang from its last part.
    Tracks without a ``gap_filled`` column, or without gaps, come back unchanged."""
    if "gap_filled" not in tracks.columns or not tracks.get_column("gap_filled").fill_null(False).any():
        return tracks
    df = tracks.filter(~pl.col("gap_filled").fill_null(False)).sort("track_id", "frame")
    df = df.with_columns(
        (pl.col("frame").diff().over("track_id").fill_null(1) > 1).cum_sum().over("track_id").alias("_part")
    )
    parts = df.select("track_id", "_part").unique().sort("track_id", "_part")
    next_id = int(cast(int, tracks.get_column("track_id").max())) + 1
    new_id: dict[tuple[int, int], int] = {}
    last_part: dict[int, int] = {}
    for tid, part in parts.iter_rows():
        new_id[(tid, part)] = tid if part == 0 else next_id + len([k for k in new_id if k[1] > 0])
        last_part[tid] = max(last_part.get(tid, 0), part)
    ids = pl.DataFrame(
        [(t, p, v, (t if p == 1 else new_id[(t, p - 1)]) if p else None) for (t, p), v in new_id.items()],
        schema={"track_id": pl.Int32, "_part": pl.UInt32, "_new": pl.Int32, "_gap_parent": pl.Int32},
        orient="row",
    )
    last = {t: new_id[(t, p)] for t, p in last_part.items()}
    out = df.with_columns(pl.col("track_id").cast(pl.Int32), pl.col("_part").cast(pl.UInt32)).join(
        ids, on=["track_id", "_part"], how="left"
    )
    return out.with_columns(
        parent_track_id=pl.when(pl.col("_gap_parent").is_not_null())
        .then(pl.col("_gap_parent"))
        .otherwise(pl.col("parent_track_id").replace(last)),
        track_id=pl.col("_new"),
    ).drop("_part", "_new", "_gap_parent")


def check_tracks(tracks: pl.DataFrame) -> pl.DataFrame:
    """Check ``tracks`` against the tracks contract; return it cast and sorted by track, frame.

    Nodes flagged ``gap_filled`` (if the column exists) are first taken out by :func:`without_gaps`.

    Rules: the columns of :data:`TRACK_COLUMNS` exist; ids are positive (``track_id``, ``label_id``)
    and frames are 1-based; one node per track and frame and one per label and frame; a track covers
    a contiguous run of frames with one parent and one lineage; a parent exists, ends before its
    daughters begin and shares their lineage; each lineage has one root track.
    """
    if not isinstance(tracks, pl.DataFrame):
        raise TrackExportError(f"tracks must be a polars DataFrame, got {type(tracks).__name__}")
    tracks = without_gaps(tracks)
    missing = [c for c in TRACK_COLUMNS if c not in tracks.columns]
    if missing:
        raise TrackExportError(
            f"tracks lack column(s) {missing}; found {tracks.columns}. "
            f"Hint: the tracks contract needs {list(TRACK_COLUMNS)}"
        )
    try:
        df = tracks.with_columns(pl.col(c).cast(t, strict=True) for c, t in TRACK_COLUMNS.items())
    except Exception as exc:  # polars raises InvalidOperationError / ComputeError
        raise TrackExportError(
            f"tracks columns cannot be cast to {dict(TRACK_COLUMNS)}: {exc}".replace("\n", " ")
        ) from exc
    problems: list[str] = []
    for c in TRACK_COLUMNS:
        if c != "parent_track_id" and (n := df.get_column(c).null_count()):
            problems.append(f"column `{c}` has {n} null value(s)")
    _fail(problems, "tracks", "every node needs a track_id, frame, lineage_id, label_id and centre")
    for c, lo in (("track_id", 1), ("frame", 1), ("label_id", 1), ("lineage_id", 0)):
        bad = df.filter(pl.col(c) < lo)
        if bad.height:
            r = bad.row(0, named=True)
            problems.append(
                f"{bad.height} node(s) with `{c}` < {lo}, e.g. track {r['track_id']} frame {r['frame']}"
            )
    for key, what in ((("track_id", "frame"), "track"), (("frame", "label_id"), "label")):
        dup = df.select(key).is_duplicated()
        if dup.any():
            r = df.filter(dup).row(0, named=True)
            problems.append(
                f"{int(dup.sum())} nodes share a {what} and frame, e.g. track {r['track_id']} "
                f"label {r['label_id']} at frame {r['frame']}"
            )
    _fail(problems, "tracks", "track ids and label ids are positive, frames 1-based, one node per key")

    per_track = track_table(df, checked=False)
    for r in per_track.filter(pl.col("n_nodes") != pl.col("end") - pl.col("begin") + 1).iter_rows(named=True):
        problems.append(
            f"track {r['track_id']} has {r['n_nodes']} nodes over frames {r['begin']}..{r['end']}: "
            "a track must cover a contiguous run of frames"
        )
    for c in ("parent_track_id", "lineage_id"):
        for r in per_track.filter(pl.col(f"n_{c}") > 1).iter_rows(named=True):
            problems.append(f"track {r['track_id']} has {r[f'n_{c}']} different `{c}` values")
    info = {r["track_id"]: r for r in per_track.iter_rows(named=True)}
    for r in per_track.filter(pl.col("parent_track_id").is_not_null()).iter_rows(named=True):
        p = info.get(r["parent_track_id"])
        tid = r["track_id"]
        if p is None:
            problems.append(f"track {tid} has parent {r['parent_track_id']}, which is not a track")
        elif p["end"] >= r["begin"]:
            problems.append(
                f"track {tid} begins at frame {r['begin']} but its parent {p['track_id']} ends at "
                f"frame {p['end']}: a parent must end before its daughters begin"
            )
        elif p["lineage_id"] != r["lineage_id"]:
            problems.append(
                f"track {tid} has lineage {r['lineage_id']} but its parent {p['track_id']} has "
                f"lineage {p['lineage_id']}"
            )
    roots = per_track.filter(pl.col("parent_track_id").is_null())
    dup_root = roots.select("lineage_id").is_duplicated()
    if dup_root.any():
        r = roots.filter(dup_root).row(0, named=True)
        problems.append(
            f"lineage {r['lineage_id']} has several root tracks (tracks without parent), e.g. track "
            f"{r['track_id']}: a lineage is one tree"
        )
    _fail(problems, "tracks", "see the tracks contract in lnpstore.ctc's docstring")
    return df.sort("track_id", "frame")


def track_table(tracks: pl.DataFrame, *, checked: bool = True) -> pl.DataFrame:
    """One row per track: ``track_id, begin, end`` (1-based frames), ``parent_track_id``,
    ``lineage_id``, ``n_nodes``. ``checked=False`` skips :func:`check_tracks` (internal use)."""
    df = check_tracks(tracks) if checked else tracks
    return (
        df.group_by("track_id")
        .agg(
            pl.col("frame").min().alias("begin"),
            pl.col("frame").max().alias("end"),
            pl.col("parent_track_id").drop_nulls().first(),
            pl.col("lineage_id").first(),
            pl.len().alias("n_nodes"),
            pl.col("parent_track_id").n_unique().alias("n_parent_track_id"),
            pl.col("lineage_id").n_unique().alias("n_lineage_id"),
        )
        .sort("track_id")
    )


def iter_label_frames(labels: LabelFrames) -> Iterator[np.ndarray]:
    """Yield the label frames one at a time, each checked: 2-D, integer, non-negative, one size.

    ``labels`` is a T x Y x X array (numpy, or anything with ``ndim``, ``shape`` and indexing such as
    a zarr or dask array) or an iterable of 2-D arrays (a list, a generator, a lazy sequence).
    """
    if isinstance(labels, (str, bytes, os.PathLike)):
        raise TrackExportError(
            f"labels must be arrays, not a path ({labels!s}). Hint: read a CTC folder with "
            "lnpstore.ctc.read_ctc, a TIFF stack with tifffile.imread"
        )
    ndim = getattr(labels, "ndim", None)
    if ndim is not None:
        shape = tuple(labels.shape)  # type: ignore[union-attr]
        if ndim != 3:
            raise TrackExportError(
                f"label images have shape {shape} ({ndim}-D); expected T x Y x X (3-D): one 2-D "
                "label image per frame"
            )
        source: Iterable = (labels[i] for i in range(shape[0]))  # type: ignore[index]
    else:
        try:
            source = iter(labels)
        except TypeError:
            raise TrackExportError(
                f"labels must be a T x Y x X array or an iterable of 2-D arrays, got {type(labels).__name__}"
            ) from None
    first_shape: tuple[int, ...] | None = None
    for frame, item in enumerate(source, start=1):
        a = np.asarray(item)
        if a.ndim != 2:
            raise TrackExportError(
                f"label frame {frame} has shape {a.shape} ({a.ndim}-D); expected a 2-D Y x X image"
            )
        if a.dtype.kind not in "iu":
            raise TrackExportError(
                f"label frame {frame} has dtype {a.dtype}; label images must be integer (one id per "
                "cell, 0 = background). Hint: cast whole-number values with .astype(np.uint16), or "
                "label a binary mask with skimage.measure.label"
            )
        if first_shape is None:
            first_shape = a.shape
        elif a.shape != first_shape:
            raise TrackExportError(
                f"label frame {frame} is {a.shape[0]} x {a.shape[1]} px but frame 1 is "
                f"{first_shape[0]} x {first_shape[1]} px: every frame must have one size"
            )
        if a.dtype.kind == "i" and a.size and int(a.min()) < 0:
            raise TrackExportError(f"label frame {frame} holds negative labels (min {int(a.min())})")
        yield a


# -- writing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CtcLayout:
    """Where the files of one CTC folder are: ``folder`` holds ``track_file`` and ``prefix%0Nd.tif``."""

    folder: Path
    track_file: str
    prefix: str

    @property
    def track_path(self) -> Path:
        return self.folder / self.track_file

    def mask_path(self, index: int, digits: int = 3) -> Path:
        """The mask of 0-based frame ``index``."""
        return self.folder / f"{self.prefix}{index:0{digits}d}.tif"

    def masks(self) -> list[Path]:
        """The mask files, ordered by frame index."""
        pat = re.compile(rf"^{re.escape(self.prefix)}(\d+)\.tiff?$")
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := pat.match(p.name))]
        return [p for _, p in sorted(found)]

    def owns(self, name: str) -> bool:
        """Whether a file name is one this layout writes."""
        return name == self.track_file or re.match(rf"^{re.escape(self.prefix)}\d+\.tiff?$", name) is not None


def _layout(folder: Path, kind: CtcKind) -> CtcLayout:
    if kind == "RES":
        return CtcLayout(folder, "res_track.txt", "mask")
    if kind == "GT":
        return CtcLayout(folder / "TRA", "man_track.txt", "man_track")
    raise TrackExportError(f"kind must be 'RES' or 'GT', got {kind!r}")


@dataclass(frozen=True)
class CtcWriteResult:
    """What :func:`write_ctc` wrote: the folder of the text file and masks, and counts."""

    folder: Path
    n_frames: int
    n_tracks: int
    n_nodes: int
    dropped_labels: int = 0  # (frame, label) pairs in the label images that no track lists: set to 0
    frame_shape: tuple[int, int] = field(default=(0, 0))


def _relabel(
    frame: np.ndarray, label_ids: np.ndarray, track_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Map label ids to track ids (others to 0); return (mask uint16, missing label ids, n dropped)."""
    top = int(frame.max()) if frame.size else 0
    if max(top, int(label_ids.max(initial=0))) < _MAX_LUT:
        size = max(top, int(label_ids.max(initial=0))) + 1
        lut = np.zeros(size, np.uint16)
        lut[label_ids] = track_ids
        flat = frame.ravel()
        counts = np.bincount(flat.astype(np.int64) if flat.dtype == np.uint64 else flat, minlength=size)
        missing = label_ids[counts[label_ids] == 0]
        present = np.flatnonzero(counts)
        dropped = int(np.count_nonzero((present > 0) & (lut[present] == 0)))
        return lut[frame], missing, dropped
    values, inverse = np.unique(frame, return_inverse=True)
    mapped = np.zeros(values.size, np.uint16)
    pos = np.searchsorted(values, label_ids)
    ok = (pos < values.size) & (values[np.minimum(pos, values.size - 1)] == label_ids)
    mapped[pos[ok]] = track_ids[ok]
    dropped = int(np.count_nonzero((values > 0) & (mapped == 0)))
    return mapped[inverse].reshape(frame.shape), label_ids[~ok], dropped


def _check_replaceable(layout: CtcLayout) -> None:
    folder = layout.folder
    if folder.exists() and not folder.is_dir():
        raise TrackExportError(f"{folder} exists and is not a folder. Hint: give a folder path")
    if folder.is_dir():
        foreign = sorted(p.name for p in folder.iterdir() if not layout.owns(p.name))
        if foreign:
            raise TrackExportError(
                f"{folder} holds files that are not a CTC {layout.track_file} layout's "
                f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); lnpstore replaces "
                "the folder whole. Hint: write into a new or empty folder"
            )


def write_ctc(
    out_dir: str | os.PathLike,
    tracks: pl.DataFrame,
    labels: LabelFrames,
    *,
    kind: CtcKind = "RES",
    digits: int = 3,
    compression: str | None = "zlib",
) -> CtcWriteResult:
    """Write ``tracks`` and their label images in the CTC layout (``kind`` "RES" or "GT").

    Masks are relabelled so that a node's pixels hold its ``track_id`` (uint16); label pixels that no
    node lists (cells the tracker followed but did not report) become background and are counted in
    ``dropped_labels``. ``digits`` is the width of the mask numbers (3: ``mask000.tif``; use 4 for
    more than 1000 frames). The folder (``out_dir``, or ``out_dir/TRA`` for "GT") is written in a
    temporary folder beside it, validated with :func:`validate_ctc`, then swapped in whole, so a
    re-run replaces it and an interrupted run leaves the previous one.
    """
    import tifffile

    df = check_tracks(tracks)
    per_track = track_table(df, checked=False)
    if per_track.height and (top := int(cast(int, per_track["track_id"].max()))) > MAX_UINT16:
        raise TrackExportError(
            f"track id {top} does not fit the CTC's uint16 masks "
            f"(max {MAX_UINT16}). Hint: renumber the tracks 1..N"
        )
    if digits < 3:
        raise TrackExportError(f"digits must be >= 3 (the CTC names mask000.tif), got {digits}")
    layout = _layout(Path(out_dir), kind)
    _check_replaceable(layout)
    layout.folder.parent.mkdir(parents=True, exist_ok=True)
    by_frame = {
        int(k[0]): (g["label_id"].to_numpy(), g["track_id"].to_numpy().astype(np.uint16))
        for k, g in df.select("frame", "label_id", "track_id").partition_by("frame", as_dict=True).items()
    }
    empty = (np.zeros(0, np.int64), np.zeros(0, np.uint16))
    n_frames = dropped = 0
    shape: tuple[int, int] = (0, 0)
    with atomic_dir(layout.folder) as tmp:
        tmp_layout = CtcLayout(tmp, layout.track_file, layout.prefix)
        for frame_no, frame in enumerate(iter_label_frames(labels), start=1):
            if frame_no > 10**digits:
                raise TrackExportError(
                    f"more than {10**digits} frames do not fit {digits}-digit mask names. Hint: digits={digits + 1}"
                )
            label_ids, track_ids = by_frame.get(frame_no, empty)
            mask, missing, n_drop = _relabel(frame, label_ids, track_ids)
            if missing.size:
                tid = int(track_ids[np.flatnonzero(label_ids == missing[0])[0]])
                raise TrackExportError(
                    f"label frame {frame_no} does not hold label {int(missing[0])} of track {tid} "
                    f"({missing.size} node label(s) missing from this frame). Hint: `label_id` must be "
                    "the node's value in that frame's label image"
                )
            dropped += n_drop
            shape = (int(mask.shape[0]), int(mask.shape[1]))
            tifffile.imwrite(tmp_layout.mask_path(frame_no - 1, digits), mask, compression=compression)
            n_frames = frame_no
        if n_frames == 0:
            raise TrackExportError("labels hold no frame")
        last = int(cast(int, df["frame"].max())) if df.height else 0
        if last > n_frames:
            raise TrackExportError(
                f"tracks reach frame {last} but the label images hold only {n_frames} frame(s)"
            )
        lines = [
            f"{r['track_id']} {r['begin'] - 1} {r['end'] - 1} {r['parent_track_id'] or 0}\n"
            for r in per_track.iter_rows(named=True)
        ]
        tmp_layout.track_path.write_text("".join(lines))
        _raise_problems(_scan(tmp_layout, centroids=False))
    if dropped:
        log.info("%s: %d label(s) no track lists were set to background", layout.folder, dropped)
    return CtcWriteResult(layout.folder, n_frames, per_track.height, df.height, dropped, shape)


# -- validating and reading ----------------------------------------------------------------------


def find_layout(ctc_dir: str | os.PathLike) -> CtcLayout:
    """The CTC layout of a folder: ``res_track.txt`` (a result), ``TRA/man_track.txt`` (a ground
    truth folder) or ``man_track.txt`` (its ``TRA`` folder)."""
    d = Path(ctc_dir)
    if not d.is_dir():
        raise CtcFormatError(f"{d} is not a folder. Hint: give a CTC result or ground-truth folder")
    for layout in (_layout(d, "RES"), _layout(d, "GT"), CtcLayout(d, "man_track.txt", "man_track")):
        if layout.track_path.is_file():
            return layout
    raise CtcFormatError(
        f"{d} is not a CTC folder: it holds no res_track.txt, TRA/man_track.txt or man_track.txt. "
        "Hint: write one with `lnpstore export-tracks ... --format ctc`"
    )


def _read_track_file(path: Path) -> np.ndarray:
    """The rows ``L B E P`` of a CTC track file as an (n, 4) int64 array."""
    rows: list[list[int]] = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            vals = [int(p) for p in parts]
        except ValueError:
            vals = []
        if len(vals) != 4:
            raise CtcFormatError(
                f"{path}, line {n}: {line.strip()!r} is not four integers 'L B E P' (label, begin, "
                "end, parent). Hint: one track per line, frames 0-based, parent 0 for none"
            )
        rows.append(vals)
    return np.asarray(rows, np.int64).reshape(-1, 4)


@dataclass
class _Scan:
    """One pass over a CTC folder's masks: per frame, its labels, pixel counts and centroids."""

    layout: CtcLayout
    table: np.ndarray  # (n, 4) L B E P
    masks: list[Path]
    shape: tuple[int, int]
    labels: list[np.ndarray]  # per frame index: sorted labels > 0
    centroids: list[np.ndarray]  # per frame index: (n, 2) y, x in px


def _frame_labels(a: np.ndarray, *, centroids: bool) -> tuple[np.ndarray, np.ndarray]:
    values, inverse = np.unique(a, return_inverse=True)
    inverse = inverse.ravel()
    keep = values > 0
    if not centroids:
        return values[keep], np.zeros((int(keep.sum()), 2))
    yy, xx = np.indices(a.shape)
    n = np.bincount(inverse, minlength=values.size).astype(np.float64)
    cy = np.bincount(inverse, weights=yy.ravel(), minlength=values.size) / np.maximum(n, 1)
    cx = np.bincount(inverse, weights=xx.ravel(), minlength=values.size) / np.maximum(n, 1)
    return values[keep], np.stack([cy[keep], cx[keep]], axis=1)


def _scan(layout: CtcLayout, *, centroids: bool) -> _Scan:
    import tifffile

    table = _read_track_file(layout.track_path)
    masks = layout.masks()
    if not masks:
        raise CtcFormatError(f"{layout.folder} holds {layout.track_file} but no {layout.prefix}NNN.tif masks")
    pat = re.compile(r"(\d+)\.tiff?$")
    for i, p in enumerate(masks):
        idx = int(pat.search(p.name).group(1))  # type: ignore[union-attr]
        if idx != i:
            raise CtcFormatError(
                f"{layout.folder}: the masks are not numbered 0..{len(masks) - 1} without gaps: "
                f"{p.name} is mask number {i}. Hint: one {layout.prefix}NNN.tif per frame from 000"
            )
    shape: tuple[int, ...] | None = None
    per_labels: list[np.ndarray] = []
    per_cent: list[np.ndarray] = []
    for t, p in enumerate(masks):
        a = tifffile.imread(p)
        if a.ndim != 2:
            raise CtcFormatError(f"{p} (frame {t}) has shape {a.shape}; lnpstore reads 2-D masks only")
        if a.dtype.kind not in "iu":
            raise CtcFormatError(f"{p} (frame {t}) has dtype {a.dtype}; CTC masks are integer (uint16)")
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            raise CtcFormatError(
                f"{p} (frame {t}) is {a.shape[0]} x {a.shape[1]} px but {masks[0].name} is "
                f"{shape[0]} x {shape[1]} px: every mask must have one size"
            )
        labs, cents = _frame_labels(a, centroids=centroids)
        per_labels.append(labs)
        per_cent.append(cents)
    assert shape is not None
    return _Scan(layout, table, masks, (int(shape[0]), int(shape[1])), per_labels, per_cent)


def _problems(scan: _Scan) -> list[str]:
    """Every broken CTC rule, as messages naming the file, the frame and the label."""
    lay, table = scan.layout, scan.table
    txt = lay.track_file
    out: list[str] = []
    n_frames = len(scan.masks)
    ids, counts = np.unique(table[:, 0], return_counts=True)
    for lab in ids[counts > 1]:
        out.append(f"{txt}: label {lab} is listed {int(counts[ids == lab][0])} times; labels must be unique")
    rows = {int(r[0]): r for r in table}
    for lab, b, e, p in table.tolist():
        line = f"{txt}: track '{lab} {b} {e} {p}'"
        if lab <= 0:
            out.append(f"{line}: labels must be positive")
        if b < 0 or b > e:
            out.append(f"{line}: needs 0 <= begin <= end")
        if e >= n_frames:
            out.append(f"{line}: ends at frame {e} but the folder holds masks of frames 0..{n_frames - 1}")
        if p != 0:
            par = rows.get(p)
            if par is None or p < 0:
                out.append(f"{line}: its parent {p} is not listed")
            elif par[2] >= b:
                out.append(
                    f"{line}: its parent {p} ends at frame {int(par[2])}, not before the daughter begins "
                    f"at frame {b}"
                )
    for t, labs in enumerate(scan.labels):
        name = scan.masks[t].name
        for lab in labs.tolist():
            r = rows.get(lab)
            if r is None:
                out.append(f"{name} (frame {t}): label {lab} is not listed in {txt}")
            elif not (r[1] <= t <= r[2]):
                out.append(
                    f"{name} (frame {t}): label {lab} lies outside its track's frames {int(r[1])}..{int(r[2])} "
                    f"in {txt}"
                )
    present = [set(labs.tolist()) for labs in scan.labels]
    for lab, b, e, _p in table.tolist():
        for t in range(max(b, 0), min(e, n_frames - 1) + 1):
            if lab not in present[t]:
                out.append(
                    f"{scan.masks[t].name} (frame {t}): track {lab} ({txt}: frames {b}..{e}) is missing "
                    "from this mask"
                )
    return out


def _raise_problems(scan: _Scan) -> None:
    problems = _problems(scan)
    if not problems:
        return
    layout = scan.layout
    shown = problems[:_MAX_LISTED]
    more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    raise CtcFormatError(
        f"CTC folder {layout.folder} breaks {len(problems)} rule(s):\n"
        + "\n".join(f"  - {p}" for p in shown)
        + more
        + f"\nHint: fix {layout.track_file} or the masks so that each mask label is a listed "
        "track within its frames, or re-export with `lnpstore export-tracks --format ctc`"
    )


def validate_ctc(ctc_dir: str | os.PathLike) -> CtcLayout:
    """Check a CTC folder against the rules the CTC's tools enforce; return its layout.

    Rules: every line of the text file is four integers ``L B E P``; labels are positive and unique;
    ``0 <= B <= E`` < the number of masks; a parent is listed and ends before its daughters begin;
    the masks are numbered 0..T-1 and are 2-D integer images of one size; every label in a mask is
    listed, with the mask's frame in [B, E]; every listed track is in the mask of each of its frames.
    Raises :class:`CtcFormatError` listing every problem with its file, frame and label.
    """
    layout = find_layout(ctc_dir)
    _raise_problems(_scan(layout, centroids=False))
    return layout


class CtcFrames(Sequence[np.ndarray]):
    """The masks of a CTC folder as a lazy sequence: ``frames[i]`` reads the mask of 0-based index
    ``i`` (lnpstore frame ``i + 1``) from disk; nothing is held in memory."""

    def __init__(self, paths: Sequence[Path], shape: tuple[int, int]):
        self.paths = list(paths)
        self.frame_shape = shape

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):  # type: ignore[override]
        import tifffile

        if isinstance(i, slice):
            return CtcFrames(self.paths[i], self.frame_shape)
        return tifffile.imread(self.paths[i])

    def __repr__(self) -> str:
        h, w = self.frame_shape
        return f"CtcFrames({len(self)} frames of {h} x {w} px from {self.paths[0].parent if self.paths else '-'})"


def read_ctc(ctc_dir: str | os.PathLike, *, validate: bool = True) -> tuple[pl.DataFrame, CtcFrames]:
    """Read a CTC folder back into (tracks DataFrame, lazy label frames).

    The tracks follow the tracks contract: ``track_id = label_id`` = the CTC label, ``frame`` 1-based
    (CTC index + 1), ``parent_track_id`` (null for none), ``lineage_id`` (the root track's id),
    ``y_px, x_px`` (centroid of the mask region, px). ``validate`` checks the CTC rules first
    (:func:`validate_ctc`); without it, nodes are the labels found in the masks.
    """
    layout = find_layout(ctc_dir)
    scan = _scan(layout, centroids=True)
    if validate:
        _raise_problems(scan)
    parents = {int(r[0]): int(r[3]) for r in scan.table}

    def root(lab: int) -> int:
        seen = {lab}
        while parents.get(lab, 0) and parents[lab] not in seen:
            lab = parents[lab]
            seen.add(lab)
        return lab

    tid, frame, y, x = [], [], [], []
    for t, (labs, cents) in enumerate(zip(scan.labels, scan.centroids, strict=True)):
        tid.extend(labs.tolist())
        frame.extend([t + 1] * labs.size)
        y.extend(cents[:, 0].tolist())
        x.extend(cents[:, 1].tolist())
    df = pl.DataFrame(
        {
            "track_id": pl.Series(tid, dtype=pl.Int32),
            "frame": pl.Series(frame, dtype=pl.Int16),
            "parent_track_id": pl.Series([parents.get(i, 0) or None for i in tid], dtype=pl.Int32),
            "lineage_id": pl.Series([root(i) for i in tid], dtype=pl.Int32),
            "label_id": pl.Series(tid, dtype=pl.Int32),
            "y_px": pl.Series(y, dtype=pl.Float64),
            "x_px": pl.Series(x, dtype=pl.Float64),
        }
    ).sort("track_id", "frame")
    return df, CtcFrames(scan.masks, scan.shape)
