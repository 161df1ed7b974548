"""Targets and splits: GFP at the last frame, the control threshold, labels and the train/test/fold split.

The science, as in the study:

* ``gfp_sum``: GFP summed over the central ``geometry.target_window_px`` square (96 px at 0.1625 um)
  around the cell's tracked centre at the plate's last frame.
* threshold: the largest such sum over every control-well cell (LNPs without mRNA) and *every* frame
  (control sums are computed per frame from the tracks, nodes in bounds only); ``label = 1`` when
  ``gfp_sum > threshold``.
* ``gfp_log_centered``: ln(gfp_sum) minus its mean over the training cells (regression target).
* split: a seeded 80/20 random split of the complete treated cells, and 5 folds on the training part;
  or (``split_by="well"``) whole wells to test and, when there are enough training wells, whole wells
  per fold.

Controls get ``split = "control"`` and no fold: they only set the threshold and do not enter the models
(whose stages select ``split IN ('train', 'test')``). Incomplete cells and cells of excluded wells are
kept in ``cells`` with ``split = "excluded"`` and null targets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

from lnpstore.instrument.geometry import geometry_for
from lnpstore.runtime.execution import Executor, parallel_map
from lnpstore.runtime.settings import Field, Settings, settings
from lnpstore.store.core import Store
from lnpstore.store.errors import TargetError
from lnpstore.study.crops import cell_completeness, plate_info, read_tracks

log = logging.getLogger(__name__)

__all__ = [
    "TargetError",
    "TargetSettings",
    "assign_split",
    "build_cells",
    "central_sum",
    "control_threshold",
    "expression_label",
]

SplitBy = Literal["cell", "well"]


@settings
class TargetSettings(Settings):
    """Settings of the cells stage (stored in the log; reproducible from seed and split_by)."""

    t_in: int = Field(20, ge=1, description="input frames 1..t_in (frames) a cell must be tracked through")
    seed: int = Field(0, description="seed of the train/test split and the folds")
    split_by: SplitBy = Field("cell", description="split cells at random ('cell') or whole wells ('well')")
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="fraction of cells (or wells) held out for test"
    )
    n_folds: int = Field(5, ge=2, description="cross-validation folds on the training cells")


def central_sum(image: np.ndarray, y_px: float, x_px: float, size_px: int) -> float:
    """Sum of ``image`` over the ``size_px`` square centred on ``(round(y_px), round(x_px))``.

    Rows ``round(y_px) - size_px // 2`` to ``round(y_px) + size_px - size_px // 2`` (exclusive), columns
    likewise, clipped at the image edge. Returns the sum in the image's counts (float).
    """
    if image.ndim != 2:
        raise ValueError(f"`image` must be 2-D (H, W), got shape {image.shape}")
    half = size_px // 2
    cy, cx = int(round(y_px)), int(round(x_px))
    y0, x0 = max(0, cy - half), max(0, cx - half)
    y1, x1 = max(0, cy - half + size_px), max(0, cx - half + size_px)
    return float(image[y0:y1, x0:x1].sum(dtype=np.float64))


def control_threshold(control_sums: Sequence[float] | np.ndarray | pl.Series) -> float:
    """The label threshold: the largest GFP central sum over control cells and all frames."""
    arr = np.asarray(control_sums, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise TargetError(
            "no control-cell GFP sums to set the threshold. Hint: the plate map must mark control wells "
            "(is_control) and those wells must have tracked cells"
        )
    return float(arr.max())


def expression_label(gfp_sum: pl.Expr, threshold: float) -> pl.Expr:
    """The classification target: 1 when the GFP sum (counts) is strictly above the control threshold,
    0 at or below it, null when the sum is unknown."""
    return pl.when(gfp_sum.is_not_null()).then((gfp_sum > threshold).cast(pl.Int8)).otherwise(None)


def assign_split(
    cell_uids: Sequence[str],
    seed: int,
    test_fraction: float = 0.2,
    n_folds: int = 5,
    groups: Sequence[str] | None = None,
) -> pl.DataFrame:
    """A reproducible train/test split with CV folds on the training part.

    Parameters
    ----------
    cell_uids : the cells to split (order does not matter: they are sorted first).
    seed : random seed; the same seed gives the same split.
    test_fraction : fraction of cells (or of groups, with ``groups``) sent to test.
    n_folds : folds on the training cells, numbered 0..n_folds-1.
    groups : one group per cell (e.g. the well); whole groups go to test, and whole groups go to each
        fold when the training part has at least ``n_folds`` groups (else folds are by cell).

    Returns
    -------
    DataFrame cell_uid, split ("train" | "test"), fold (Int8, null for test), sorted by cell_uid.
    """
    from sklearn.model_selection import GroupKFold, GroupShuffleSplit, KFold, train_test_split

    uids = np.asarray(cell_uids, dtype=object)
    if len(set(uids.tolist())) != len(uids):
        raise TargetError("assign_split: `cell_uids` has duplicates")
    if groups is not None and len(groups) != len(uids):
        raise TargetError(f"assign_split: {len(groups)} groups for {len(uids)} cells")
    if not 0 < test_fraction < 1:
        raise TargetError(f"assign_split: test_fraction must be in (0, 1), got {test_fraction}")
    order = np.argsort(uids.astype(str), kind="stable")
    uids = uids[order]
    grp = None if groups is None else np.asarray(groups, dtype=object)[order].astype(str)
    n = len(uids)
    if grp is None:
        if n < n_folds + 2:
            raise TargetError(f"assign_split: {n} cells are too few for a test part and {n_folds} folds")
        train_idx, test_idx = train_test_split(np.arange(n), test_size=test_fraction, random_state=seed)
    else:
        if len(set(grp)) < 2:
            raise TargetError(f"assign_split: split by group needs >= 2 groups, got {sorted(set(grp))}")
        gss = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
        train_idx, test_idx = next(gss.split(np.arange(n), groups=grp))
    train_idx = np.sort(train_idx)
    fold = np.full(n, -1, dtype=np.int64)
    if grp is not None and len(set(grp[train_idx])) >= n_folds:
        kf = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = kf.split(train_idx, groups=grp[train_idx])
    else:
        if grp is not None:
            log.warning("assign_split: fewer than %d training groups; folds are by cell", n_folds)
        if len(train_idx) < n_folds:
            raise TargetError(
                f"assign_split: {len(train_idx)} training cells are too few for {n_folds} folds"
            )
        splits = KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(train_idx)
    for k, (_, val) in enumerate(splits):
        fold[train_idx[val]] = k
    split = np.full(n, "train", dtype=object)
    split[test_idx] = "test"
    return pl.DataFrame(
        {
            "cell_uid": uids.astype(str).tolist(),
            "split": split.tolist(),
            "fold": [None if f < 0 else int(f) for f in fold],
        },
        schema={"cell_uid": pl.String, "split": pl.String, "fold": pl.Int8},
    )


def _gfp_sums_field(task: dict[str, Any]) -> pl.DataFrame:
    """GFP central sums of one field's nodes (frame, track_id, y_px, x_px); picklable for the Executor."""
    from lnpstore.instrument.stackio import read_image

    nodes: pl.DataFrame = task["nodes"]
    out: dict[str, list] = {"track_id": [], "frame": [], "gfp_sum": []}
    for (frame,), fn in sorted(nodes.group_by("frame"), key=lambda kv: kv[0][0]):
        path = task["paths"].get(int(frame))
        if path is None:
            raise TargetError(
                f"plate {task['plate']} well {task['well']} field {task['field']} frame {frame}: no readable GFP "
                "image. Hint: check the `images` table's status"
            )
        gfp = read_image(path)
        for r in fn.iter_rows(named=True):
            out["track_id"].append(r["track_id"])
            out["frame"].append(int(frame))
            out["gfp_sum"].append(central_sum(gfp, r["y_px"], r["x_px"], task["size_px"]))
    return pl.DataFrame(
        out, schema={"track_id": pl.Int32, "frame": pl.Int16, "gfp_sum": pl.Float64}
    ).with_columns(pl.lit(task["well"]).alias("well"), pl.lit(task["field"], pl.Int16).alias("field"))


def gfp_sums(
    store: Store,
    plate: str,
    nodes: pl.DataFrame,
    size_px: int,
    *,
    executor: Executor | None = None,
    desc: str = "GFP",
) -> pl.DataFrame:
    """GFP central sums for ``nodes`` (well, field, track_id, frame, y_px, x_px) of ``plate``, per field."""
    if nodes.height == 0:
        return pl.DataFrame(
            schema={
                "track_id": pl.Int32,
                "frame": pl.Int16,
                "gfp_sum": pl.Float64,
                "well": pl.String,
                "field": pl.Int16,
            }
        )
    gfp = (
        store.table("images", plate=plate)
        .filter((pl.col("channel") == "GFP") & (pl.col("status") == "ok"))
        .select("well", "field", "frame", "path")
        .collect()
    )
    tasks = []
    for (well, field_), fn in sorted(nodes.group_by("well", "field"), key=lambda kv: kv[0]):
        paths = gfp.filter((pl.col("well") == well) & (pl.col("field") == field_))
        tasks.append(
            {
                "plate": plate,
                "well": well,
                "field": int(field_),
                "size_px": size_px,
                "nodes": fn.select("track_id", "frame", "y_px", "x_px"),
                "paths": dict(zip(paths["frame"].to_list(), paths["path"].to_list(), strict=True)),
            }
        )
    return pl.concat(parallel_map(_gfp_sums_field, tasks, desc=desc, executor=executor))


def build_cells(
    store: Store,
    plate: str,
    *,
    t_in: int = 20,
    seed: int = 0,
    split_by: SplitBy = "cell",
    test_fraction: float = 0.2,
    n_folds: int = 5,
    executor: Executor | None = None,
    division_rule: str = "exclude",
) -> pl.DataFrame:
    """Write table ``cells`` for ``plate``: completeness, gfp_sum, label, gfp_log_centered, split, fold.

    ``division_rule`` (see :func:`lnpstore.crops.read_tracks`): a cell that divides before the last
    frame is excluded ("exclude", the default), or carried on by one daughter ("follow"); crop with the
    same rule.

    ``t_in`` is checked against the plate's frames (cells must be complete past it anyway). The split is
    recomputed (and the plate's ``cells`` partitions replaced) on every call: it depends only on the
    tracks, ``seed`` and ``split_by``. Returns the plate's cells.
    """
    if split_by not in ("cell", "well"):
        raise TargetError(f"split_by must be 'cell' or 'well', got {split_by!r}")
    info = plate_info(store, plate)
    n_frames = int(info["n_frames"])
    if not 1 <= t_in <= n_frames:
        raise TargetError(f"plate {plate!r}: t_in must be in 1..{n_frames}, got {t_in}")
    size = geometry_for(float(info["pixel_size_um"])).target_window_px
    tracks = read_tracks(store, plate, division_rule)
    wells = store.read("wells", plate=plate).select("well", "dose_ng", "is_control", "excluded")
    cells = cell_completeness(tracks, n_frames).join(wells, on="well", how="left")
    unknown = cells.filter(pl.col("excluded").is_null())["well"].unique().to_list()
    if unknown:
        raise TargetError(
            f"plate {plate!r}: tracked well(s) {unknown} are not in `wells`. Hint: re-run ingest"
        )
    usable = ~pl.col("excluded")
    ctrl_wells = cells.filter(pl.col("is_control") & usable)["well"].unique().to_list()
    ctrl = _control_sums(store, plate, tracks, ctrl_wells, size, executor)
    threshold = control_threshold(ctrl["gfp_sum"])
    log.info("plate %s: control threshold %.1f counts over %d control nodes", plate, threshold, ctrl.height)
    cells = _with_last_frame_sums(store, plate, cells, tracks, ctrl, ctrl_wells, n_frames, size, executor)
    cells = _with_split(cells, plate, n_frames, seed, test_fraction, n_folds, split_by)
    cells = _with_targets(cells, plate, threshold)
    store.write("cells", cells, mode="replace")
    counts = dict(cells.group_by("split").len().iter_rows())
    log.info(
        "plate %s: cells %s; %d of %d labelled 1",
        plate,
        counts,
        int(cells["label"].sum() or 0),
        int(cells["label"].count()),
    )
    return store.read("cells", plate=plate)


def _control_sums(
    store: Store,
    plate: str,
    tracks: pl.DataFrame,
    ctrl_wells: list[str],
    size: int,
    executor: Executor | None,
) -> pl.DataFrame:
    """GFP central sums of every in-bounds node of every frame in the control wells (they set the
    threshold)."""
    ctrl_nodes = tracks.filter(pl.col("well").is_in(ctrl_wells) & pl.col("in_bounds").fill_null(False))
    return gfp_sums(store, plate, ctrl_nodes, size, executor=executor, desc=f"GFP controls {plate}")


def _with_last_frame_sums(
    store: Store,
    plate: str,
    cells: pl.DataFrame,
    tracks: pl.DataFrame,
    ctrl: pl.DataFrame,
    ctrl_wells: list[str],
    n_frames: int,
    size: int,
    executor: Executor | None,
) -> pl.DataFrame:
    """``gfp_sum`` at the last frame for the complete cells of usable wells (controls' sums are already
    in ``ctrl``); null for the others."""
    usable = ~pl.col("excluded")
    keys = ["well", "field", "track_id"]
    complete = cells.filter(pl.col("complete") & usable)
    last_nodes = tracks.filter(pl.col("frame") == n_frames).join(complete.select(keys), on=keys)
    treated_last = last_nodes.filter(~pl.col("well").is_in(ctrl_wells))
    last = pl.concat(
        [
            gfp_sums(store, plate, treated_last, size, executor=executor, desc=f"GFP last frame {plate}"),
            ctrl.filter(pl.col("frame") == n_frames),
        ],
        how="diagonal_relaxed",
    ).select(*keys, "gfp_sum")
    return cells.join(last, on=keys, how="left").with_columns(
        pl.when(pl.col("complete") & usable).then(pl.col("gfp_sum")).otherwise(None).alias("gfp_sum")
    )


def _with_split(
    cells: pl.DataFrame,
    plate: str,
    n_frames: int,
    seed: int,
    test_fraction: float,
    n_folds: int,
    split_by: SplitBy,
) -> pl.DataFrame:
    """``split`` (train/test, or excluded/control) and ``fold`` of every cell; only the complete treated
    cells of usable wells are split."""
    usable = ~pl.col("excluded")
    treated = cells.filter(pl.col("complete") & usable & ~pl.col("is_control"))
    try:
        split = assign_split(
            treated["cell_uid"].to_list(),
            seed,
            test_fraction,
            n_folds,
            groups=treated["well"].to_list() if split_by == "well" else None,
        )
    except TargetError as exc:
        raise TargetError(
            f"plate {plate!r}: {treated.height} complete treated cell(s) in {treated['well'].n_unique()} well(s) "
            f"(tracked in bounds to frame {n_frames}) cannot be split: {exc}. Hint: track more cells or fields, "
            "lower n_folds, or use split_by='cell'"
        ) from None
    return cells.join(split, on="cell_uid", how="left").with_columns(
        pl.when(~pl.col("complete") | ~usable)
        .then(pl.lit("excluded"))
        .when(pl.col("is_control"))
        .then(pl.lit("control"))
        .otherwise(pl.col("split"))
        .alias("split")
    )


def _with_targets(cells: pl.DataFrame, plate: str, threshold: float) -> pl.DataFrame:
    """``label`` (above the control threshold) and ``gfp_log_centered`` (ln counts minus the training
    cells' mean), in the ``cells`` table's column order."""
    log_gfp = pl.when(pl.col("gfp_sum") > 0).then(pl.col("gfp_sum").log()).otherwise(None)
    train_mean = cells.filter(pl.col("split") == "train").select(log_gfp.mean()).item()
    return cells.with_columns(
        expression_label(pl.col("gfp_sum"), threshold).alias("label"),
        (log_gfp - train_mean).alias("gfp_log_centered"),
        pl.lit(plate).alias("plate"),
    ).select(
        "plate",
        "well",
        "field",
        "track_id",
        "cell_uid",
        "dose_ng",
        "is_control",
        "last_frame",
        "complete",
        "any_flag",
        "gfp_sum",
        "label",
        "gfp_log_centered",
        "split",
        "fold",
    )
