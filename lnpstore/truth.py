"""Match tracked cells to the simulator's ground truth (for the oracle and tracking scores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from scipy.spatial import cKDTree

from .store import Store


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


def oracle_for_store(store: Store, truth_dir: str | Path) -> pl.DataFrame:
    """cell_uid -> oracle_prob, oracle_log_gfp (log-centred) for the store's cells, from the simulator's truth.

    The oracle's regression value is centred like the targets: minus the mean of ln(gfp_sum) over the
    training cells, so it is on the same scale as ``gfp_log_centered``.
    """
    from .simulator import load_truth

    truth = load_truth(truth_dir)
    t_cells, t_tracks = truth["cells"], truth["tracks"]
    first = store.sql("SELECT t.cell_uid, t.well, t.field, t.y_px, t.x_px FROM tracks t WHERE t.frame = 1")
    true_first = t_tracks.filter(pl.col("frame") == 1).select(
        "well", pl.col("field").cast(pl.Int16), pl.col("true_id").cast(pl.Int64), "y_px", "x_px"
    )
    px = float(store.read("plates").get_column("pixel_size_um")[0])
    from .geometry import geometry_for

    match = match_cells_to_truth(first, true_first, max_distance_px=geometry_for(px).target_window_px / 4)
    cells = store.read("cells").filter(pl.col("gfp_sum").is_not_null())
    train = cells.filter(pl.col("split") == "train")
    centre = float(np.log(train.get_column("gfp_sum").to_numpy()).mean()) if train.height else 0.0
    oc = t_cells.select(
        pl.col("true_id").cast(pl.Int64),
        "well",
        pl.col("field").cast(pl.Int16),
        "oracle_prob",
        "oracle_log_gfp",
    )
    uid_well = first.select("cell_uid", "well", "field")
    return (
        match.join(uid_well, on="cell_uid")
        .join(oc, on=["well", "field", "true_id"])
        .select(
            "cell_uid",
            "oracle_prob",
            (pl.col("oracle_log_gfp") - centre).alias("oracle_log_gfp"),
        )
    )
