"""Per-cell crops: CS, registered BF and LNP windows around each tracked centre, frames 1..t_in.

Only *complete* cells get crops: cells tracked in bounds (centre at least the edge margin from every
edge) from frame 1 to the plate's last frame, as in the study, which dropped cells that came within
the edge margin. A crop is ``geometry_for(pixel_size_um).crop_px`` square (192 px at 0.1625 um),
centred on the tracked centre of *that* frame rounded to the nearest pixel: the centre pixel
``(round(y_px), round(x_px))`` lands at index ``(S // 2, S // 2)``.

BF is shifted by the plate's registration offset at sub-pixel precision: a window ``margin_px`` wider
on each side is cut, shifted with ``scipy.ndimage.shift`` (bilinear, ``order=1``, so no ringing and no
values outside the input range), and its centre kept. CS and LNP are cut without interpolation.
Windows that reach past the image edge (not for complete cells, whose centre stays >= edge margin =
crop_px / 2 from every edge) are padded by reflection.

Storage: table ``crops``, one row per cell x frame, ``pixels`` = raw little-endian bytes of a
(3, S, S) uint16 array in :data:`lnpstore.layout.CROP_CHANNELS` order (CS, BF, LNP), partitioned by
plate and well (see ``benchmarks/crop_storage.py`` for why a binary column and not a side array store).

Images are streamed: one field at a time, one frame's three channels in memory at a time. Fields run
through the Executor when one is given; a (plate, well) partition already in ``crops`` is skipped.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, cast, get_args

import numpy as np
import polars as pl
import pyarrow as pa
from scipy import ndimage as ndi

from lnpstore.instrument.geometry import geometry_for
from lnpstore.instrument.layout import CROP_CHANNELS
from lnpstore.runtime.execution import Executor, parallel_map
from lnpstore.runtime.settings import Field, Settings, settings
from lnpstore.store.core import Store
from lnpstore.store.errors import CropError
from lnpstore.store.schema import cell_uid_expr
from lnpstore.study.registration import plate_registration

log = logging.getLogger(__name__)

__all__ = [
    "CropError",
    "CropSettings",
    "cell_completeness",
    "crop_window",
    "crop_plate",
    "decode_crops",
    "encode_crop",
]

_DTYPE = np.dtype("<u2")


#: What the study does with a cell that divides before the last frame (see :func:`read_tracks`).
DivisionRule = Literal["exclude", "follow"]
DIVISION_RULES: tuple[str, ...] = get_args(DivisionRule)


@settings
class CropSettings(Settings):
    """Settings of the crop stage."""

    t_in: int = Field(20, ge=1, description="input frames 1..t_in (frames) are cropped")
    bf_margin_px: int = Field(
        4, ge=0, description="extra border (px) cut around the BF window before the sub-pixel shift"
    )
    division_rule: DivisionRule = Field(
        "exclude", description="a cell that divides: 'exclude' it or 'follow' one daughter (see read_tracks)"
    )


def encode_crop(arr: np.ndarray) -> bytes:
    """A (3, S, S) crop as raw little-endian uint16 bytes (the ``crops.pixels`` column)."""
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[0] != len(CROP_CHANNELS) or arr.shape[1] != arr.shape[2]:
        raise ValueError(f"a crop must have shape (3, S, S) ({', '.join(CROP_CHANNELS)}), got {arr.shape}")
    if arr.dtype != np.uint16:
        raise ValueError(f"a crop must be uint16, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=_DTYPE).tobytes()


def decode_crops(df: pl.DataFrame) -> np.ndarray:
    """The ``pixels`` of a ``crops`` frame as one (N, 3, S, S) uint16 array, in row order.

    Every row must have the same ``size_px``; select one plate's rows (or one size) first otherwise.
    """
    if df.height == 0:
        return np.zeros((0, len(CROP_CHANNELS), 0, 0), dtype=np.uint16)
    sizes = df.get_column("size_px").unique()
    if sizes.len() != 1:
        raise CropError(f"crops of several sizes {sorted(sizes.to_list())} px: decode one size at a time")
    s = int(sizes[0])
    n_bytes = len(CROP_CHANNELS) * s * s * 2
    pixels = df.get_column("pixels")
    lengths = pixels.bin.size()
    if (lengths != n_bytes).any():
        i = int(cast(int, (lengths != n_bytes).arg_max()))  # some row differs: never None
        uid = df["cell_uid"][i] if "cell_uid" in df.columns else f"row {i}"
        raise CropError(
            f"crop of cell {uid}: {lengths[i]} bytes, expected {n_bytes} for (3, {s}, {s}) uint16"
        )
    # every value has the same length: the Arrow values buffer is the (N, 3, S, S) array, copied once
    arr = pixels.rechunk().to_arrow().cast(pa.large_binary())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    flat = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return flat.view(_DTYPE).reshape(df.height, len(CROP_CHANNELS), s, s).astype(np.uint16, copy=True)


def crop_window(
    image: np.ndarray,
    y_px: float,
    x_px: float,
    size_px: int,
    *,
    shift_px: tuple[float, float] = (0.0, 0.0),
    margin_px: int = 4,
) -> np.ndarray:
    """A ``size_px`` square of ``image`` centred on ``(round(y_px), round(x_px))``, same dtype.

    Parameters
    ----------
    image : (H, W) ndarray
    y_px, x_px : centre in px (row, column).
    size_px : edge of the square (px); the centre pixel lands at ``(size_px // 2, size_px // 2)``.
    shift_px : (dy_px, dx_px) to apply to the image before cutting (sub-pixel, bilinear); (0, 0) cuts
        without interpolation.
    margin_px : border cut around the window before a shift (must exceed the shift).

    Returns
    -------
    (size_px, size_px) ndarray; parts past the image edge are filled by reflection.
    """
    half = size_px // 2
    cy, cx = int(round(y_px)), int(round(x_px))
    shifted = shift_px[0] != 0.0 or shift_px[1] != 0.0
    m = margin_px if shifted else 0
    if shifted and max(abs(shift_px[0]), abs(shift_px[1])) >= m:
        raise ValueError(f"shift {shift_px} px needs margin_px > {max(map(abs, shift_px)):.1f}, got {m}")
    y0, x0 = cy - half - m, cx - half - m
    y1, x1 = y0 + size_px + 2 * m, x0 + size_px + 2 * m
    h, w = image.shape
    pad = ((max(0, -y0), max(0, y1 - h)), (max(0, -x0), max(0, x1 - w)))
    win = image[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
    if any(p for pp in pad for p in pp):
        win = np.pad(win, pad, mode="reflect" if min(win.shape) > 1 else "edge")
    if not shifted:
        return np.array(win, copy=True)
    out = ndi.shift(win.astype(np.float32), shift_px, order=1, mode="nearest")[m:-m, m:-m]
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(image.dtype)


def cell_completeness(tracks: pl.DataFrame, n_frames: int) -> pl.DataFrame:
    """Per cell: ``last_frame`` tracked in bounds without a gap from frame 1, and ``complete``.

    Parameters
    ----------
    tracks : rows of table ``tracks`` (plate, well, field, track_id, frame, in_bounds, flag_*).
    n_frames : the plate's last frame.

    Returns
    -------
    One row per (plate, well, field, track_id): cell_uid, last_frame (0 when frame 1 is not in
    bounds), complete (last_frame == n_frames), any_flag (a jump, area or lost flag on any frame).
    """
    keys = ["plate", "well", "field", "track_id"]
    flags = [c for c in ("flag_jump", "flag_area", "flag_lost") if c in tracks.columns]
    ok = tracks.sort([*keys, "frame"]).with_columns(
        (pl.col("in_bounds").fill_null(False)).alias("_ok"),
    )
    # the run of in-bounds frames from frame 1: frame == its rank among in-bounds frames
    run = (
        ok.filter(pl.col("_ok"))
        .with_columns(pl.col("frame").rank("ordinal").over(keys).alias("_rank"))
        .filter(pl.col("frame") == pl.col("_rank"))
        .group_by(keys)
        .agg(pl.col("frame").max().alias("last_frame"))
    )
    any_flag = (
        pl.any_horizontal([pl.col(c).fill_null(False) for c in flags]).any() if flags else pl.lit(False)
    )
    cells = ok.group_by(keys).agg(any_flag.alias("any_flag"))
    return (
        cells.join(run, on=keys, how="left")
        .with_columns(
            pl.col("last_frame").fill_null(0).cast(pl.Int16),
            cell_uid_expr().alias("cell_uid"),
        )
        .with_columns((pl.col("last_frame") >= n_frames).alias("complete"))
        .select(*keys, "cell_uid", "last_frame", "complete", "any_flag")
        .sort(keys)
    )


def crop_field(task: dict[str, Any]) -> pl.DataFrame:
    """Crops of one field's complete cells for frames 1..t_in; a picklable unit for the Executor.

    ``task``: plate, well, field, size_px, shift_px, margin_px, ``centres`` (a DataFrame of track_id,
    cell_uid, frame, y_px, x_px) and ``paths`` ({frame: {channel: path}}).
    """
    from lnpstore.instrument.stackio import read_image

    centres: pl.DataFrame = task["centres"]
    size = int(task["size_px"])
    rows: dict[str, list] = {k: [] for k in ("track_id", "cell_uid", "frame", "pixels")}
    for key, frame_centres in sorted(centres.group_by("frame"), key=lambda kv: kv[0][0]):
        frame = int(key[0])
        paths = task["paths"].get(frame, {})
        missing = [c for c in CROP_CHANNELS if not paths.get(c)]
        if missing:
            raise CropError(
                f"plate {task['plate']} well {task['well']} field {task['field']} frame {frame}: no readable "
                f"{'/'.join(missing)} image. Hint: check the `images` table's status for it, or crop fewer frames"
            )
        images = {c: read_image(paths[c]) for c in CROP_CHANNELS}
        for r in frame_centres.iter_rows(named=True):
            stack = np.stack(
                [
                    crop_window(
                        images[c],
                        r["y_px"],
                        r["x_px"],
                        size,
                        shift_px=task["shift_px"] if c == "BF" else (0.0, 0.0),
                        margin_px=task["margin_px"],
                    ).astype(np.uint16)
                    for c in CROP_CHANNELS
                ]
            )
            rows["track_id"].append(r["track_id"])
            rows["cell_uid"].append(r["cell_uid"])
            rows["frame"].append(frame)
            rows["pixels"].append(encode_crop(stack))
        del images
    return pl.DataFrame(
        {
            "plate": task["plate"],
            "well": task["well"],
            "field": task["field"],
            **rows,
            "size_px": size,
        },
        schema_overrides={"pixels": pl.Binary, "cell_uid": pl.String},
    )


def plate_info(store: Store, plate: str) -> dict[str, Any]:
    """The plate's row of table ``plates``; a clear error when it is missing."""
    plates = store.read("plates", plate=plate)
    if plates.height == 0:
        raise CropError(f"plate {plate!r} is not in the store. Hint: run `lnpstore ingest` for it first")
    return plates.row(0, named=True)


def follow_divisions(tracks: pl.DataFrame) -> pl.DataFrame:
    """``tracks`` with each divided cell continued by one daughter: the daughter whose first region
    overlaps the mother's last one most (``iou_prev``; ties: the lower track_id) takes the mother's
    track_id and cell_uid, and so on down the lineage. The other daughter keeps its own track.

    Why this daughter: it sits where the mother was, so the crops of frames before and after the
    division show the same place, and the target window at the last frame is centred near it.
    """
    from lnpstore.store.schema import cell_uid_expr
    from lnpstore.tracking.lineage import roots

    keys = ["plate", "well", "field"]
    first = (
        tracks.filter(pl.col("parent_track_id").is_not_null())
        .sort("frame")
        .group_by([*keys, "track_id"])
        .agg(pl.col("parent_track_id").first(), pl.col("iou_prev").first().fill_null(0.0))
        .sort([*keys, "parent_track_id", "iou_prev", "track_id"], descending=[False] * 4 + [True, False])
        .group_by([*keys, "parent_track_id"], maintain_order=True)
        .first()
    )
    if first.height == 0:
        return tracks
    heir = {
        (p, w, f, int(t)): int(par)
        for p, w, f, t, par in first.select(*keys, "track_id", "parent_track_id").iter_rows()
    }
    top = roots({k: (*k[:3], v) for k, v in heir.items()})
    root = {k: r[3] for k, r in top.items()}
    mapping = pl.DataFrame(
        [(*k, v) for k, v in root.items()],
        schema={
            "plate": pl.String,
            "well": pl.String,
            "field": pl.Int16,
            "track_id": pl.Int32,
            "_root": pl.Int32,
        },
        orient="row",
    )
    out = tracks.join(mapping, on=[*keys, "track_id"], how="left")
    moved = pl.col("_root").is_not_null()
    return (
        out.with_columns(
            track_id=pl.when(moved).then(pl.col("_root")).otherwise(pl.col("track_id")),
            # the mother's last node is no longer an end: its path goes on in the daughter
            stop_reason=pl.when(pl.col("stop_reason") == "divided")
            .then(None)
            .otherwise(pl.col("stop_reason")),
        )
        .drop("_root")
        .with_columns(cell_uid=cell_uid_expr())
    )


def read_tracks(store: Store, plate: str, division_rule: str = "exclude") -> pl.DataFrame:
    """The plate's ``tracks``; a clear error when there are none.

    ``division_rule``: "exclude" (as stored: a cell that divides ends at the division, so it is not
    complete and has no crops or target) or "follow" (:func:`follow_divisions`: one daughter carries
    the cell on, and its outcome at the last frame is the cell's)."""
    if division_rule not in DIVISION_RULES:
        raise CropError(f"division_rule must be one of {DIVISION_RULES}, got {division_rule!r}")
    tracks = store.read("tracks", plate=plate)
    if tracks.height == 0:
        raise CropError(f"plate {plate!r} has no tracks. Hint: run `lnpstore track` for it first")
    return follow_divisions(tracks) if division_rule == "follow" else tracks


def crop_plate(
    store: Store,
    plate: str,
    *,
    t_in: int = 20,
    executor: Executor | None = None,
    settings: CropSettings | None = None,
    overwrite: bool = False,
) -> int:
    """Crop every complete cell of ``plate`` for frames 1..t_in into table ``crops``; returns rows written.

    Needs tables plates, images, tracks and registration (see :func:`lnpstore.registration.register_plate`).
    Wells already in ``crops`` are skipped unless ``overwrite``.
    """
    settings = settings or CropSettings(t_in=t_in)
    info = plate_info(store, plate)
    n_frames = int(info["n_frames"])
    if not 1 <= settings.t_in <= n_frames:
        raise CropError(
            f"plate {plate!r}: t_in must be in 1..{n_frames} (the plate's frames), got {settings.t_in}"
        )
    size = geometry_for(float(info["pixel_size_um"])).crop_px
    shift = plate_registration(store, plate)
    tracks = read_tracks(store, plate, settings.division_rule)
    cells = cell_completeness(tracks, n_frames).filter(pl.col("complete"))
    excluded = store.read("wells", plate=plate).filter(pl.col("excluded")).get_column("well").to_list()
    cells = cells.filter(~pl.col("well").is_in(excluded))
    centres = (
        tracks.join(cells.select("well", "field", "track_id", "cell_uid"), on=["well", "field", "track_id"])
        .filter(pl.col("frame") <= settings.t_in)
        .select("well", "field", "track_id", "cell_uid", "frame", "y_px", "x_px")
    )
    images = (
        store.table("images", plate=plate)
        .filter(pl.col("channel").is_in(list(CROP_CHANNELS)) & (pl.col("frame") <= settings.t_in))
        .filter(pl.col("status") == "ok")
        .select("well", "field", "frame", "channel", "path")
        .collect()
    )
    written = 0
    for (well,), well_centres in sorted(centres.group_by("well"), key=lambda kv: kv[0][0]):
        if not overwrite and store.exists("crops", plate=plate, well=well):
            log.info("plate %s well %s: crops already in the store, skipped", plate, well)
            continue
        tasks = []
        for (field_,), fc in sorted(well_centres.group_by("field"), key=lambda kv: kv[0][0]):
            fi = images.filter((pl.col("well") == well) & (pl.col("field") == field_))
            paths: dict[int, dict[str, str]] = {}
            for r in fi.iter_rows(named=True):
                paths.setdefault(int(r["frame"]), {})[r["channel"]] = r["path"]
            tasks.append(
                {
                    "plate": plate,
                    "well": well,
                    "field": int(field_),
                    "size_px": size,
                    "shift_px": shift,
                    "margin_px": settings.bf_margin_px,
                    "centres": fc.drop("well", "field"),
                    "paths": paths,
                }
            )
        parts = parallel_map(crop_field, tasks, desc=f"crop {plate} {well}", executor=executor)
        df = pl.concat(parts, how="vertical_relaxed")
        written += store.write("crops", df, mode="replace")
    log.info(
        "plate %s: %d crops of %d complete cells, %d px, frames 1..%d",
        plate,
        written,
        cells.height,
        size,
        settings.t_in,
    )
    return written
