"""The simulator's ground truth folder: its names, reading it (:func:`load_truth`, the true label images
and tracks with the lineage per field), matching tracked cells to it (oracle, tracking scores), and
writing it in the Cell Tracking Challenge layout."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np
import polars as pl
import tifffile
from scipy.spatial import cKDTree

from lnpstore.instrument.geometry import geometry_for
from lnpstore.interop.ctc import TRACK_COLUMNS, write_ctc
from lnpstore.simulate.expression import one_frame_oracle, trajectory_oracle
from lnpstore.store.core import Store
from lnpstore.tracking.lineage import roots

#: Subfolder of ``truth/`` holding one true label stack per field (see :func:`label_stack_name`).
LABELS_DIR = "labels"

#: Columns of :func:`true_tracks`, with their dtypes (the tracks contract of ``lnpstore.ctc``, plus two).
TRUE_TRACK_COLUMNS: dict[str, type[pl.DataType]] = {
    **TRACK_COLUMNS,
    "true_id": pl.Int32,
    "label_area_px": pl.Int32,
}


def label_stack_name(well: str, field_: int) -> str:
    """Path of a field's true label stack inside ``truth/``: ``labels/{well}_F{field:03d}.tif``."""
    return f"{LABELS_DIR}/{well}_F{field_:03d}.tif"


def load_truth(truth_dir: str | os.PathLike) -> dict[str, pl.DataFrame]:
    """The truth of a simulated plate as DataFrames: ``cells``, ``tracks``, ``registration`` (one row),
    ``lineage`` (one row per true cell: parent, lineage, first and last frame) and ``label_tracks`` (one
    row per cell and frame in the true label images; absent in truth folders written before 2026-12).

    The label images themselves: :func:`true_label_frames`.
    """
    d = Path(truth_dir)
    if not (d / "cells.parquet").exists():
        raise FileNotFoundError(
            f"{d}: no cells.parquet; not a simulator truth folder (expected out_dir/truth)"
        )
    reg = json.loads((d / "registration.json").read_text())
    reg.pop("convention", None)
    out = {
        "cells": pl.read_parquet(d / "cells.parquet"),
        "tracks": pl.read_parquet(d / "tracks.parquet"),
        "registration": pl.DataFrame({k: [v] for k, v in reg.items()}),
    }
    if (d / "lineage.parquet").exists():
        out["lineage"] = pl.read_parquet(d / "lineage.parquet")
        out["label_tracks"] = pl.read_parquet(d / "label_tracks.parquet")
    else:  # written before divisions: every cell a founder that lives through the film
        out["lineage"] = (
            out["tracks"]
            .group_by("plate", "well", "field", "true_id", maintain_order=True)
            .agg(pl.col("frame").min().alias("first_frame"), pl.col("frame").max().alias("last_frame"))
            .with_columns(
                pl.lit(None, pl.Int32).alias("parent_id"),
                pl.col("true_id").alias("lineage_id"),
                pl.lit(0, pl.Int16).alias("generation"),
                pl.lit(False).alias("divides"),
                pl.lit(True).alias("in_cells"),
            )
        )
    return out


def match_cells_to_truth(
    tracked: pl.DataFrame, truth: pl.DataFrame, *, max_distance_px: float
) -> pl.DataFrame:
    """Pair each tracked cell with the nearest true cell of its (well, field) at frame 1.

    ``tracked``: cell_uid, well, field, y_px, x_px (frame-1 centres); ``truth``: well, field, true_id,
    y_px, x_px (frame-1 true centres). Returns cell_uid, true_id, distance_px for pairs closer than
    ``max_distance_px``; each true cell is used at most once (the closest tracked cell wins).
    """
    rows = []
    for (well, field_), tr in tracked.group_by(["well", "field"], maintain_order=True):
        tt = truth.filter((pl.col("well") == well) & (pl.col("field") == field_))
        if tt.height == 0 or tr.height == 0:
            continue
        tree = cKDTree(tt.select("y_px", "x_px").to_numpy())
        dist, idx = tree.query(tr.select("y_px", "x_px").to_numpy())
        true_ids = tt.get_column("true_id").to_numpy()[idx]
        rows.append(
            pl.DataFrame(
                {
                    "cell_uid": tr.get_column("cell_uid"),
                    "well": [well] * tr.height,
                    "field": [field_] * tr.height,
                    "true_id": true_ids.astype(np.int64),
                    "distance_px": dist,
                }
            )
        )
    if not rows:
        return pl.DataFrame(schema={"cell_uid": pl.String, "true_id": pl.Int64, "distance_px": pl.Float64})
    out = pl.concat(rows).filter(pl.col("distance_px") <= max_distance_px)
    # true ids are unique per (well, field): the closest tracked cell keeps each true cell
    out = out.sort("distance_px").unique(
        subset=["well", "field", "true_id"], keep="first", maintain_order=True
    )
    return out.select("cell_uid", "true_id", "distance_px")


def store_cells_in_truth(store: Store, truth_tracks: pl.DataFrame) -> pl.DataFrame:
    """cell_uid, well, field, true_id of the store's tracked cells matched to the truth's cells by
    their frame-1 centres (within a quarter of the target window; :func:`match_cells_to_truth`)."""
    first = store.sql("SELECT t.cell_uid, t.well, t.field, t.y_px, t.x_px FROM tracks t WHERE t.frame = 1")
    true_first = truth_tracks.filter(pl.col("frame") == 1).select(
        "well", pl.col("field").cast(pl.Int16), pl.col("true_id").cast(pl.Int64), "y_px", "x_px"
    )
    px = float(store.read("plates").get_column("pixel_size_um")[0])
    match = match_cells_to_truth(first, true_first, max_distance_px=geometry_for(px).target_window_px / 4)
    return match.join(first.select("cell_uid", "well", "field"), on="cell_uid").select(
        "cell_uid", "well", "field", "true_id"
    )


def oracle_for_store(store: Store, truth_dir: str | Path) -> pl.DataFrame:
    """cell_uid -> oracle_prob, oracle_log_gfp (log-centred) for the store's cells, from the simulator's truth,
    the same from the particle count at frame 20 and the cell size (``oracle_frame_*``,
    :func:`one_frame_oracle`) and from a perfect linear reader of frames 1..20 (``oracle_track_*``,
    :func:`trajectory_oracle`).

    The oracle's regression value is centred like the targets: minus the mean of ln(gfp_sum) over the
    training cells, so it is on the same scale as ``gfp_log_centered``.
    """
    truth = load_truth(truth_dir)
    t_cells, t_tracks = truth["cells"], truth["tracks"]
    matched = store_cells_in_truth(store, t_tracks)
    cells = store.read("cells").filter(pl.col("gfp_sum").is_not_null())
    train = cells.filter(pl.col("split") == "train")
    centre = float(np.log(train.get_column("gfp_sum").to_numpy()).mean()) if train.height else 0.0
    oc = trajectory_oracle(one_frame_oracle(t_cells), t_tracks).select(
        pl.col("true_id").cast(pl.Int64),
        "well",
        pl.col("field").cast(pl.Int16),
        "oracle_prob",
        "oracle_log_gfp",
        "oracle_frame_prob",
        "oracle_frame_log_gfp",
        "oracle_track_prob",
        "oracle_track_log_gfp",
    )
    return matched.join(oc, on=["well", "field", "true_id"]).select(
        "cell_uid",
        "oracle_prob",
        (pl.col("oracle_log_gfp") - centre).alias("oracle_log_gfp"),
        "oracle_frame_prob",
        (pl.col("oracle_frame_log_gfp") - centre).alias("oracle_frame_log_gfp"),
        "oracle_track_prob",
        (pl.col("oracle_track_log_gfp") - centre).alias("oracle_track_log_gfp"),
    )


# -- true label images and tracks of one field ------------------------------------------------------------
def _field_lineage(truth_dir: str | os.PathLike, well: str, field: int) -> tuple[Path, pl.DataFrame]:
    """The truth folder and the field's rows of ``lineage.parquet``; clear errors for old or wrong input."""
    d = Path(truth_dir)
    path = d / "lineage.parquet"
    if not path.exists():
        what = (
            "not a simulator truth folder" if not (d / "cells.parquet").exists() else "written before 2026-12"
        )
        raise FileNotFoundError(
            f"{d}: no lineage.parquet ({what}); true labels need a plate simulated by this version. "
            "Hint: run `lnpstore simulate` again (same settings and seed give the same images)"
        )
    lineage = pl.read_parquet(path)
    mine = lineage.filter((pl.col("well") == well) & (pl.col("field") == field))
    if not (d / label_stack_name(well, field)).exists():
        fields = lineage.select("well", "field").unique().sort("well", "field").rows()
        raise ValueError(
            f"{d}: no true labels for well {well!r} field {field}; the plate has {[f'{w}:{f}' for w, f in fields]}"
        )
    return d, mine


def true_label_frames(truth_dir: str | os.PathLike, well: str, field: int = 1) -> Iterator[np.ndarray]:
    """Yield a field's true label images one frame at a time (frame 1 first).

    Each is a 2-D array of the rendered image's size (height x width px, fluorescence coordinates),
    uint16 (int32 if an id exceeds 65535): pixel value = true cell id (``true_id`` of ``cells``,
    ``lineage`` and :func:`true_tracks`), 0 = background. A pixel belongs to the cell whose stain is
    above half its level there (the cell's outline, or the seam with a touching cell), so the labels are
    the cells drawn in the CS channel, including cells whose centre never enters the image (ids after
    those of ``cells.parquet``). Frames whose files a fault removed still have their labels.
    """
    d, lin = _field_lineage(truth_dir, well, field)
    values = lin.get_column("mask_value").to_numpy()
    ids = lin.get_column("true_id").to_numpy()
    top = int(ids.max()) if ids.size else 0
    lut = np.zeros(int(values.max()) + 1 if values.size else 1, np.uint16 if top <= 65535 else np.int32)
    lut[values] = ids
    with tifffile.TiffFile(d / label_stack_name(well, field)) as tif:
        for i, page in enumerate(tif.pages, start=1):
            raw = page.asarray()
            if raw.size and int(raw.max()) >= lut.size:
                raise ValueError(
                    f"{d}: frame {i} of the true labels of {well} field {field} holds value {int(raw.max())}, "
                    "which lineage.parquet does not list; the truth folder is inconsistent (simulate again)"
                )
            yield lut[raw]


def true_tracks(truth_dir: str | os.PathLike, well: str, field: int = 1) -> pl.DataFrame:
    """A field's true tracks: one row per cell and frame in which the cell has pixels in the true labels.

    Columns (:data:`TRUE_TRACK_COLUMNS`): ``track_id`` (Int32 > 0), ``frame`` (Int16, 1-based),
    ``parent_track_id`` (Int32, null for none), ``lineage_id`` (Int32, the root track's id),
    ``label_id`` (the cell's value in :func:`true_label_frames`), ``y_px, x_px`` (Float64, the true
    centre in px, outside the image for a cell only partly in it), ``true_id`` and ``label_area_px``
    (px of the cell in that frame's label image).

    A track covers a contiguous run of frames. ``track_id`` = ``true_id`` = ``label_id``, except for a
    cell that leaves the image and comes back: each later stretch is a new track (ids after every
    true id) whose parent is the previous stretch, as the CTC's annotation rules ask. Daughters' parent
    is their mother's last stretch; a daughter of a cell never seen in the image has no parent.
    """
    d, lin = _field_lineage(truth_dir, well, field)
    lt = (
        pl.read_parquet(d / "label_tracks.parquet")
        .filter((pl.col("well") == well) & (pl.col("field") == field))
        .select("true_id", "frame", "label_area_px", "y_px", "x_px")
        .sort("true_id", "frame")
    )
    # stretches: a new one where a cell's frames jump
    lt = lt.with_columns(
        (pl.col("frame").diff().over("true_id").fill_null(1) > 1).cum_sum().over("true_id").alias("_seg")
    )
    segs = lt.group_by("true_id", "_seg").agg(pl.col("frame").min().alias("_begin")).sort("true_id", "_seg")
    top = int(cast(int | None, lin.get_column("true_id").max()) or 0)
    later = segs.filter(pl.col("_seg") > 0).with_row_index("_k")
    seg_id = {(t, 0): t for t in segs.filter(pl.col("_seg") == 0).get_column("true_id").to_list()}
    for t, s, k in later.select("true_id", "_seg", "_k").iter_rows():
        seg_id[(t, s)] = top + 1 + k
    n_seg = dict(segs.group_by("true_id").agg(pl.len()).iter_rows())
    mother = {t: p for t, p in lin.select("true_id", "parent_id").iter_rows() if p is not None}
    parent: dict[int, int | None] = {}
    for t, s in seg_id:
        if s > 0:
            parent[seg_id[(t, s)]] = seg_id[(t, s - 1)]
        else:
            p = mother.get(t)
            parent[t] = seg_id[(p, n_seg[p] - 1)] if p in n_seg else None
    root = roots(parent)
    keys = pl.DataFrame(
        {
            "true_id": [t for t, _ in seg_id],
            "_seg": [s for _, s in seg_id],
            "track_id": list(seg_id.values()),
            "parent_track_id": [parent[v] for v in seg_id.values()],
            "lineage_id": [root[v] for v in seg_id.values()],
        },
        schema={
            "true_id": pl.Int32,
            "_seg": pl.UInt32,
            "track_id": pl.Int32,
            "parent_track_id": pl.Int32,
            "lineage_id": pl.Int32,
        },
    )
    out = lt.with_columns(pl.col("true_id").cast(pl.Int32), pl.col("_seg").cast(pl.UInt32)).join(
        keys, on=["true_id", "_seg"], how="left"
    )
    return (
        out.with_columns(pl.col("true_id").alias("label_id"))
        .select(pl.col(c).cast(t) for c, t in TRUE_TRACK_COLUMNS.items())
        .sort("track_id", "frame")
    )


def write_ctc_ground_truth(
    truth_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None
) -> list[Path]:
    """Write every field's ground truth in the Cell Tracking Challenge layout: ``OUT/{well}_F{field:03d}/
    TRA/man_track.txt`` and ``TRA/man_trackNNN.tif`` (OUT: ``truth_dir/ctc``). The masks are the true
    cells' full masks (the CTC's TRA markers may be any part of a cell; full masks make matching strict).
    Score a result against one with ``lnpstore score-tracks RESULT OUT/C03_F001``."""
    d = Path(truth_dir)
    out = Path(out_dir) if out_dir is not None else d / "ctc"
    lineage = pl.read_parquet(d / "lineage.parquet")
    written = []
    for well, fld in lineage.select("well", "field").unique().sort("well", "field").iter_rows():
        target = out / f"{well}_F{int(fld):03d}"
        write_ctc(target, true_tracks(d, well, int(fld)), true_label_frames(d, well, int(fld)), kind="GT")
        written.append(target)
    return written
