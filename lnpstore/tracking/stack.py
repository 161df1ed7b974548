"""Tracking any single-channel time-lapse (``track_stack``) and the ``track-stack`` output folder.

``track_stack`` runs the plate tracker's code path on one channel of any stack (an array, or frames
read lazily). :func:`track_stack_to_folder` is what ``lnpstore track-stack`` does: read the input,
track, and write ``tracks.parquet``, ``labels.tif`` and ``track_stack.json`` (input, settings, pixel size,
versions) into a folder.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lnpstore.store.errors import TrackingError
from lnpstore.tracking.field import track_field
from lnpstore.tracking.labels import LabelMovie
from lnpstore.tracking.settings import TrackSettings


def track_stack(
    stack,
    *,
    seeds=None,
    pixel_size_um: float,
    settings: TrackSettings | None = None,
    labels_out: str | Path | None = None,
    masks=None,
) -> tuple[pl.DataFrame, np.ndarray | LabelMovie]:
    """Track the cells of any time-lapse: one channel, frames in time order; the plate tracker's code path.

    With ``masks`` (a segmentation made elsewhere: T x Y x X labels, or a sequence of 2-D label frames),
    the given regions are linked instead (:func:`lnpstore.tracking.linking.link_labels`: the same gap
    closing, divisions and tracks table); ``stack`` then only gives ``mean_cs`` and may be None.

    Parameters
    ----------
    stack : (T, Y, X) array, or a sequence / iterable of (Y, X) arrays (read lazily, frame 1 first)
        The stained channel (cytoplasm or nucleus; see :meth:`TrackSettings.for_stain`).
    seeds : None, (N, 2) array of (y_px, x_px), or a 2-D integer label image of frame 1
        None: the automatic seeder on frame 1; a label image: the centroid of each label.
    pixel_size_um : float
        Pixel edge length in um (every length in ``settings`` is in um).
    labels_out : path, optional
        Write the label movie there (uint16 TIFF, one page per frame, written frame by frame) and return
        it as a lazy :class:`lnpstore.labels.LabelMovie`; without it the labels come back in memory.

    Returns
    -------
    (tracks, labels): the tracks as a polars DataFrame (:data:`FIELD_COLUMNS`, one row per node) and the
    label images (T x Y x X, pixel = track_id).
    """
    from lnpstore.tracking.labels import LabelMovie, LabelMovieWriter
    from lnpstore.tracking.seeding import auto_seeds

    s = settings or TrackSettings()
    if not (isinstance(pixel_size_um, int | float) and pixel_size_um > 0):
        raise TrackingError(f"pixel_size_um must be a positive number of um, got {pixel_size_um!r}")
    if masks is not None:
        return _link_masks(stack, masks, pixel_size_um, s, labels_out)
    if s.method == "detect":
        if seeds is not None:
            raise TrackingError(
                "seeds apply to method 'window'; method 'detect' finds the cells of every frame"
            )
        return _detect_and_link(stack, pixel_size_um, s, labels_out)
    frames, first = _first_frame(stack)
    seeds = _resolve_seeds(seeds, first, pixel_size_um, s)
    if seeds is None:
        seeds = auto_seeds(first, pixel_size_um=pixel_size_um, settings=s.seeds)
    if len(seeds) == 0:
        raise TrackingError(
            "no cells to track: the seeder found none in frame 1 (is frame 1 empty, or is the stain's "
            "signal below the threshold?). Hint: give seeds as a CSV of centres or a label image"
        )

    def all_frames():
        yield {"CS": first}
        for i, f in enumerate(frames, start=2):
            f = np.asarray(f)
            if f.shape != first.shape:
                raise TrackingError(f"frame {i} has shape {f.shape}, frame 1 has {first.shape}")
            yield {"CS": f}

    if labels_out is None:
        kept: list[np.ndarray] = []
        tracks = track_field(
            all_frames(),
            seeds,
            pixel_size_um=pixel_size_um,
            settings=s,
            on_labels=lambda lab: kept.append(lab.astype(np.uint16)),
        )
        return tracks, np.stack(kept)
    with LabelMovieWriter(labels_out) as w:
        tracks = track_field(all_frames(), seeds, pixel_size_um=pixel_size_um, settings=s, on_labels=w.write)
    return tracks, LabelMovie(labels_out)


def _first_frame(stack) -> tuple[Iterator, np.ndarray]:
    """(iterator over the frames after frame 1, frame 1) of a stack, checked to be T x Y x X."""
    if isinstance(stack, np.ndarray) and stack.ndim != 3:
        raise TrackingError(f"a stack must be T x Y x X (3-D), got shape {stack.shape}")
    frames = iter(stack)
    try:
        first = np.asarray(next(frames))
    except StopIteration:
        raise TrackingError("the stack has no frames") from None
    if first.ndim != 2:
        raise TrackingError(f"frame 1 must be a 2-D image, got shape {first.shape}")
    return frames, first


def _detect_and_link(stack, pixel_size_um: float, s: TrackSettings, labels_out) -> tuple[pl.DataFrame, Any]:
    """:func:`track_stack` with method 'detect': every frame's cells detected, then linked."""
    from itertools import chain, tee

    from lnpstore.tracking.detection import detect_cells, estimate_cell_diameter_um

    frames, first = _first_frame(stack)
    diameter_um = s.detect.cell_diameter_um or estimate_cell_diameter_um(first, pixel_size_um)

    def pairs():
        for i, f in enumerate(chain([first], frames), start=1):
            f = np.asarray(f)
            if f.shape != first.shape:
                raise TrackingError(f"frame {i} has shape {f.shape}, frame 1 has {first.shape}")
            yield (
                detect_cells(f, pixel_size_um=pixel_size_um, settings=s.detect, cell_diameter_um=diameter_um),
                f,
            )

    a, b = tee(pairs())
    return _link_masks((im for _, im in b), (m for m, _ in a), pixel_size_um, s, labels_out)


def with_cell_diameter(
    settings: TrackSettings, first_frame: np.ndarray, pixel_size_um: float
) -> TrackSettings:
    """``settings`` with ``detect.cell_diameter_um`` estimated from frame 1 when method 'detect' needs it
    and it is not given (so that the run's record holds the diameter used)."""
    from lnpstore.tracking.detection import estimate_cell_diameter_um

    if settings.method != "detect" or settings.detect.cell_diameter_um is not None:
        return settings
    d = estimate_cell_diameter_um(np.asarray(first_frame), pixel_size_um)
    return settings.replace(detect=settings.detect.replace(cell_diameter_um=round(d, 3)))


def _link_masks(stack, masks, pixel_size_um: float, s: TrackSettings, labels_out) -> tuple[pl.DataFrame, Any]:
    """:func:`track_stack` on given masks: link them, write or keep the label movie."""
    from lnpstore.tracking.labels import LabelMovie, LabelMovieWriter
    from lnpstore.tracking.linking import link_labels

    if isinstance(masks, np.ndarray) and masks.ndim != 3:
        raise TrackingError(f"masks must be T x Y x X (3-D), got shape {masks.shape}")
    if (
        stack is not None
        and hasattr(stack, "__len__")
        and hasattr(masks, "__len__")
        and len(stack) != len(masks)
    ):
        raise TrackingError(f"the stack has {len(stack)} frames and the masks {len(masks)}; they must match")
    if labels_out is None:
        kept: list[np.ndarray] = []
        tracks = link_labels(
            masks,
            pixel_size_um=pixel_size_um,
            settings=s,
            images=stack,
            on_labels=lambda lab: kept.append(lab.astype(np.uint16)),
        )
        return tracks, np.stack(kept)
    with LabelMovieWriter(labels_out) as w:
        tracks = link_labels(masks, pixel_size_um=pixel_size_um, settings=s, images=stack, on_labels=w.write)
    return tracks, LabelMovie(labels_out)


def _resolve_seeds(seeds, first: np.ndarray, pixel_size_um: float, s: TrackSettings) -> np.ndarray | None:
    """(N, 2) centres from an array of centres or a frame-1 label image; None for automatic seeds.
    A seed that lies on no foreground pixel of frame 1 is an error naming it."""
    from scipy import ndimage as ndi

    from lnpstore.tracking.seeding import foreground_mask

    if seeds is None:
        return None
    arr = np.asarray(seeds)
    if arr.ndim == 2 and arr.shape == first.shape and arr.shape[1] != 2:
        if not np.issubdtype(arr.dtype, np.integer):
            raise TrackingError(f"a seed label image must hold integers, got dtype {arr.dtype}")
        ids = np.unique(arr[arr > 0])
        if not len(ids):
            raise TrackingError("the seed label image has no labels (all zero)")
        return np.array(ndi.center_of_mass(arr > 0, arr, ids), dtype=np.float64).reshape(-1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise TrackingError(
            f"seeds must be (N, 2) centres (y_px, x_px) or a label image of frame 1's shape {first.shape}, "
            f"got shape {arr.shape}"
        )
    arr = arr.astype(np.float64)
    h, w = first.shape
    fg = foreground_mask(first, pixel_size_um, s.seeds)
    for i, (y, x) in enumerate(arr):
        iy, ix = int(round(y)), int(round(x))
        if not (0 <= iy < h and 0 <= ix < w):
            raise TrackingError(f"seed {i + 1} at (y={y:.1f}, x={x:.1f}) px lies outside the {h} x {w} image")
        r = max(1, int(round(4 * s.marker_radius_um / pixel_size_um)))
        if not fg[max(0, iy - r) : iy + r + 1, max(0, ix - r) : ix + r + 1].any():
            raise TrackingError(
                f"seed {i + 1} at (y={y:.1f}, x={x:.1f}) px lies outside every cell of frame 1 (no "
                "foreground within 4 marker radii). Hint: check the seed's (y, x) order and units (px)"
            )
    return arr


@dataclass(frozen=True)
class StackRun:
    """What :func:`track_stack_to_folder` did."""

    out: Path
    tracks: pl.DataFrame
    n_frames: int
    seconds: float

    def __str__(self) -> str:
        per = self.tracks.group_by("track_id").agg(pl.col("stop_reason").sort_by("frame").last())
        fates = dict(per.get_column("stop_reason").value_counts().iter_rows())
        return (
            f"tracked {self.tracks.get_column('track_id').n_unique()} tracks ({self.tracks.height} nodes, "
            f"{self.n_frames} frames) in {self.seconds:.1f} s; track ends: {fates}; wrote {self.out}"
        )


def track_stack_to_folder(
    input_path: str | Path,
    out: str | Path,
    *,
    pixel_size_um: float,
    settings: TrackSettings,
    seeds: str = "auto",
    frame_interval_min: float | None = None,
    stain: str | None = None,
    masks: str | Path | None = None,
) -> StackRun:
    """Track the stack at ``input_path`` (a folder of 2-D TIFFs or a T x Y x X TIFF) and write
    ``tracks.parquet``, ``labels.tif`` and ``track_stack.json`` into ``out``.

    ``seeds``: "auto", a CSV of frame-1 centres (y_px, x_px) or a label TIFF of frame 1; ``masks``: a
    segmentation made elsewhere (a folder of 2-D label TIFFs or a T x Y x X label TIFF) to link. The record
    holds the input, units, seeds, stain and the settings (``TrackSettings.load(path, key="settings")``
    reads them back)."""
    from lnpstore._version import __version__
    from lnpstore.instrument import stackio

    frames = stackio.open_stack(input_path)
    first = frames[0]
    mask_frames = None if masks is None else stackio.open_stack(masks)
    if masks is None:
        settings = with_cell_diameter(settings, first, pixel_size_um)
    if settings.method == "detect" and masks is None and seeds not in (None, "auto"):
        raise TrackingError(
            "--seeds apply to --method window; method 'detect' finds the cells of every frame"
        )
    seed_spec = (
        None if masks is not None or settings.method == "detect" else stackio.read_seeds(seeds, first.shape)
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tracks, labels = track_stack(
        frames,
        seeds=seed_spec,
        pixel_size_um=pixel_size_um,
        settings=settings,
        labels_out=out / stackio.LABELS_FILE,
        masks=mask_frames,
    )
    seconds = time.perf_counter() - t0
    meta = {
        "input": str(Path(input_path).resolve()),
        "n_frames": len(labels),
        "shape": list(labels.shape),
        "pixel_size_um": pixel_size_um,
        "frame_interval_min": frame_interval_min,
        "seeds": None if masks is not None or settings.method == "detect" else seeds,
        "masks": None if masks is None else str(Path(masks).resolve()),
        "stain": stain,
        "settings": settings.to_dict(),
        "package_version": __version__,
        "seconds": round(seconds, 2),
    }
    stackio.write_result(out, tracks, meta)
    return StackRun(out, tracks, len(labels), seconds)
