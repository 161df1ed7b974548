"""Targets: central sums, the control threshold, labels and the reproducible split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from test_crops import N_FIELDS, WELLS, build_synthetic_store

from lnpstore.store.core import Store
from lnpstore.study.targets import (
    TargetError,
    assign_split,
    build_cells,
    central_sum,
    control_threshold,
    expression_label,
)

UIDS = [f"P|C{w:02d}|F001|{t:05d}" for w in range(3, 10) for t in range(1, 21)]  # 7 wells x 20 cells
WELL_OF = [u.split("|")[1] for u in UIDS]


def test_central_sum_window():
    img = np.zeros((50, 50), np.uint16)
    img[20:30, 20:30] = 1  # 100 px block centred near (24.5, 24.5)
    img[0, 0] = 1000
    assert central_sum(img, 25, 25, 10) == 100.0
    assert central_sum(img, 24.6, 25.4, 4) == 16.0
    assert central_sum(img, 1, 1, 4) == 1000.0  # clipped at the edge, still includes (0, 0)


def test_threshold_and_labels_hand_made():
    ctrl = pl.DataFrame({"frame": [1, 2, 3, 1, 2, 3], "gfp_sum": [10.0, 30.0, 12.0, 5.0, 7.0, 29.0]})
    thr = control_threshold(ctrl["gfp_sum"])
    assert thr == 30.0  # the largest over cells AND frames, not just the last frame
    treated = pl.DataFrame({"gfp_sum": [29.0, 30.0, 30.5, 1000.0, None]})
    labels = treated.select(expression_label(pl.col("gfp_sum"), thr))["gfp_sum"].to_list()
    assert labels == [0, 0, 1, 1, None]  # strictly above the threshold; unknown stays unknown
    with pytest.raises(TargetError, match="control"):
        control_threshold([])
    assert control_threshold([np.nan, 3.0]) == 3.0


def test_split_reproducible_and_disjoint():
    a = assign_split(UIDS, seed=1)
    b = assign_split(list(reversed(UIDS)), seed=1)
    assert_frame_equal(a, b)  # same seed, any input order: same split
    c = assign_split(UIDS, seed=2)
    assert a["split"].to_list() != c["split"].to_list()
    assert a.filter(pl.col("split") == "test").height == round(0.2 * len(UIDS))
    train = a.filter(pl.col("split") == "train")
    assert train["fold"].null_count() == 0
    assert sorted(train["fold"].unique().to_list()) == [0, 1, 2, 3, 4]  # folds cover train
    assert (
        a.filter(pl.col("split") == "test")["fold"].null_count() == a.filter(pl.col("split") == "test").height
    )
    sizes = train.group_by("fold").len()["len"]
    assert sizes.max() - sizes.min() <= 1


def test_split_by_well_keeps_wells_whole():
    a = assign_split(UIDS, seed=0, groups=WELL_OF).with_columns(
        pl.col("cell_uid").str.split("|").list.get(1).alias("w")
    )
    per_well = a.group_by("w").agg(
        pl.col("split").n_unique().alias("n_split"), pl.col("fold").n_unique().alias("n_fold")
    )
    assert per_well["n_split"].max() == 1
    assert per_well["n_fold"].max() == 1  # 2 test wells, 5 training wells -> whole wells per fold
    assert a.filter(pl.col("split") == "test")["w"].n_unique() >= 1
    assert assign_split(UIDS, seed=0, groups=WELL_OF).equals(assign_split(UIDS, seed=0, groups=WELL_OF))


def test_split_errors():
    with pytest.raises(TargetError, match="too few"):
        assign_split(UIDS[:4], seed=0)
    with pytest.raises(TargetError, match="duplicates"):
        assign_split(UIDS[:10] * 2, seed=0)


@pytest.fixture(scope="module")
def cells_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return build_synthetic_store(tmp_path_factory.mktemp("targets"), seed=3)


def test_build_cells_on_synthetic_store(cells_store: Store):
    cells = build_cells(cells_store, "P1", t_in=3, seed=0)
    assert cells.height == len(WELLS) * N_FIELDS * 4
    assert cells.filter(~pl.col("complete"))["cell_uid"].to_list() == ["P1|C05|F001|00004"]
    inc = cells.filter(~pl.col("complete"))
    assert inc["split"][0] == "excluded" and inc["gfp_sum"][0] is None and inc["label"][0] is None
    ctrl = cells.filter(pl.col("is_control"))
    assert set(ctrl["split"]) == {"control"} and ctrl["fold"].null_count() == ctrl.height
    assert ctrl["label"].to_list() == [0] * ctrl.height  # the threshold is the max over controls
    treated = cells.filter(~pl.col("is_control") & pl.col("complete"))
    assert set(treated["split"]) == {"train", "test"}
    assert treated.filter(pl.col("split") == "train")["gfp_log_centered"].mean() == pytest.approx(0, abs=1e-9)
    # the brightest treated cells (high dose) are labelled 1, and GFP follows the dose
    assert treated["label"].sum() > 0
    by_dose = treated.group_by("dose_ng").agg(pl.col("gfp_sum").mean()).sort("dose_ng")["gfp_sum"]
    assert by_dose.is_sorted()
    again = build_cells(cells_store, "P1", t_in=3, seed=0)
    assert_frame_equal(cells, again)


def test_build_cells_errors(tmp_path: Path, cells_store: Store):
    with pytest.raises(TargetError, match="split_by"):
        build_cells(cells_store, "P1", split_by="plate")  # type: ignore[arg-type]
    with pytest.raises(TargetError, match="t_in"):
        build_cells(cells_store, "P1", t_in=99)
