"""Metrics against scikit-learn, and the store layer (TTA/fold ensembles, the metrics table)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from _rows import one_row
from lnpstore.models import evaluation as E
from sklearn.metrics import f1_score, mean_squared_error

from lnpstore.store.core import Store

PLATE = "P1"


def _cells(n_test: int, n_train: int, rng: np.random.Generator) -> pl.DataFrame:
    n = n_test + n_train
    gfp = rng.normal(0.0, 1.0, n)
    track = np.arange(1, n + 1)
    return pl.DataFrame(
        {
            "plate": PLATE,
            "well": "C03",
            "field": 1,
            "track_id": track,
            "cell_uid": [f"{PLATE}|C03|F001|{t:05d}" for t in track],
            "dose_ng": 10.0,
            "is_control": False,
            "last_frame": 72,
            "complete": True,
            "any_flag": False,
            "gfp_sum": np.exp(gfp + 7.0),
            "label": (gfp > 0).astype(np.int8),
            "gfp_log_centered": gfp,
            "split": ["test"] * n_test + ["train"] * n_train,
            "fold": [None] * n_test + [int(i % 5) for i in range(n_train)],
        }
    )


def _predictions(cells: pl.DataFrame, rng: np.random.Generator, *, augs: int = 2) -> pl.DataFrame:
    """Every kind, mode, fold and aug, for every cell (train cells too, to check the split filter)."""
    frames = {"cnn": list(range(1, 21)), "lstm": [5, 10, 15, 20], "tsfresh_xgb": [5, 10, 15, 20]}
    parts = []
    uid = cells["cell_uid"].to_list()
    n = len(uid)
    for kind, fr in frames.items():
        for mode in ("classify", "regress"):
            y = (cells["label"] if mode == "classify" else cells["gfp_log_centered"]).to_numpy().astype(float)
            for fold in range(5):
                mid = f"{kind}-{mode}-f{fold}-x"
                for f in fr:
                    for aug in range(augs):
                        noise = rng.normal(0, 1.0, n)
                        pred = (
                            1 / (1 + np.exp(-(2 * (y - 0.5) * f / 10 + noise)))
                            if mode == "classify"
                            else y + noise * (2.0 / np.sqrt(f))
                        )
                        parts.append(
                            pl.DataFrame(
                                {
                                    "model_id": mid,
                                    "cell_uid": uid,
                                    "frame": f,
                                    "aug": aug,
                                    "kind": kind,
                                    "mode": mode,
                                    "fold": fold,
                                    "y_true": y,
                                    "y_pred": pred,
                                }
                            )
                        )
    return pl.concat(parts)


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(1)
    store = Store.create(tmp_path_factory.mktemp("store") / "s")
    cells = _cells(30, 10, rng)
    preds = _predictions(cells, rng)
    store.write("cells", cells)
    store.write("predictions", preds)
    return store, cells, preds


# -- pure functions ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(20))
def test_weighted_f1_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    y = (rng.random(n) < rng.random()).astype(int)
    p = rng.random(n) ** rng.uniform(0.2, 5)
    p[: n // 4] = 0.5  # the threshold itself counts as positive
    expected = f1_score(y, (p >= 0.5).astype(int), average="weighted", zero_division=0)
    assert E.weighted_f1(y, p) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("y", "p"),
    [
        ([1, 1, 1], [0.9, 0.8, 0.7]),
        ([0, 0, 0], [0.1, 0.2, 0.3]),
        ([1, 1, 1], [0.1, 0.2, 0.3]),
        ([0, 1], [0.6, 0.4]),
    ],
)
def test_weighted_f1_degenerate_cases_match_sklearn(y: list[int], p: list[float]) -> None:
    expected = f1_score(y, (np.asarray(p) >= 0.5).astype(int), average="weighted", zero_division=0)
    assert E.weighted_f1(y, p) == pytest.approx(expected, abs=1e-12)


def test_weighted_f1_from_counts_broadcasts() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(50) < 0.4
    preds = rng.random((7, 50)) < 0.5
    tp = (preds & y).sum(1)
    fp = (preds & ~y).sum(1)
    got = E.weighted_f1_from_counts(tp, fp, int(y.sum()), int((~y).sum()))
    want = [f1_score(y, p, average="weighted", zero_division=0) for p in preds]
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_rmse_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y, yhat = rng.normal(size=(2, 40))
    assert E.rmse(y, yhat) == pytest.approx(np.sqrt(mean_squared_error(y, yhat)), rel=1e-12)


def test_metric_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="same shape"):
        E.rmse([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="0/1"):
        E.weighted_f1([0, 2], [0.1, 0.9])
    with pytest.raises(ValueError, match="mode"):
        E.metric_value("rank", np.zeros(2), np.zeros(2))


# -- store layer ------------------------------------------------------------------------------------
def test_ensemble_averages_augmentations_then_folds(synthetic_store) -> None:
    store, cells, preds = synthetic_store
    ens = E.ensemble_predictions(store)
    test_uids = set(cells.filter(pl.col("split") == "test")["cell_uid"])
    assert set(ens["cell_uid"]) == test_uids  # train cells filtered out by the split
    want = (
        preds.filter(pl.col("cell_uid").is_in(list(test_uids)))
        .group_by("kind", "mode", "frame", "fold", "cell_uid")
        .agg(pl.col("y_pred").mean())
        .group_by("kind", "mode", "frame", "cell_uid")
        .agg(pl.col("y_pred").mean().alias("want"))
    )
    j = ens.join(want, on=["kind", "mode", "frame", "cell_uid"])
    assert j.height == ens.height == want.height
    np.testing.assert_allclose(j["y_pred"], j["want"], atol=1e-12)
    assert set(ens["n_folds"]) == {5}


def test_evaluate_writes_metrics_matching_sklearn(synthetic_store) -> None:
    store, cells, preds = synthetic_store
    test_uids = cells.filter(pl.col("split") == "test")["cell_uid"].to_list()
    oracle = cells.select(
        "cell_uid",
        pl.col("label").cast(pl.Float64).alias("oracle_prob"),
        (pl.col("gfp_log_centered") + 0.1).alias("oracle_log_gfp"),
    )
    out = E.evaluate(store, oracle=oracle, run_id="r1")
    stored = store.read("metrics")
    assert stored.height == out.height
    assert set(stored["run_id"]) == {"r1"}
    # rows: 28 (kind, frame) pairs x 2 modes x (5 folds + ensemble) + 2 oracle rows
    assert out.height == (20 + 4 + 4) * 2 * 6 + 2
    assert set(out["fold"]) == {-1, 0, 1, 2, 3, 4}

    # one fold row, recomputed by hand with sklearn
    sub = preds.filter(
        (pl.col("kind") == "lstm")
        & (pl.col("mode") == "classify")
        & (pl.col("frame") == 10)
        & (pl.col("fold") == 3)
        & pl.col("cell_uid").is_in(test_uids)
    )
    g = sub.group_by("cell_uid").agg(pl.col("y_true").first(), pl.col("y_pred").mean())
    want = f1_score(g["y_true"].to_numpy().astype(int), (g["y_pred"] >= 0.5).to_numpy(), average="weighted")
    got = out.filter(
        (pl.col("kind") == "lstm")
        & (pl.col("mode") == "classify")
        & (pl.col("frame") == 10)
        & (pl.col("fold") == 3)
    )
    assert got["metric"].item() == "f1_weighted"
    assert got["value"].item() == pytest.approx(want, abs=1e-12)
    assert got["n_cells"].item() == len(test_uids)

    # the ensemble RMSE of the CNN at frame 7, by hand
    sub = preds.filter(
        (pl.col("kind") == "cnn")
        & (pl.col("mode") == "regress")
        & (pl.col("frame") == 7)
        & pl.col("cell_uid").is_in(test_uids)
    )
    g = sub.group_by("cell_uid").agg(pl.col("y_true").first(), pl.col("y_pred").mean())
    want = np.sqrt(mean_squared_error(g["y_true"], g["y_pred"]))
    got = out.filter(
        (pl.col("kind") == "cnn")
        & (pl.col("mode") == "regress")
        & (pl.col("frame") == 7)
        & (pl.col("fold") == -1)
    )
    assert got["value"].item() == pytest.approx(want, rel=1e-12)

    orc = out.filter(pl.col("kind") == "oracle").sort("mode")
    assert orc["value"].to_list() == pytest.approx([1.0, 0.1])
    assert orc["frame"].to_list() == [0, 0]


def test_metrics_summary_has_fold_mean_and_sd(synthetic_store) -> None:
    store, _, _ = synthetic_store
    out = E.evaluate(store, run_id="r2")
    summ = E.metrics_summary(store)
    row = summ.filter((pl.col("kind") == "cnn") & (pl.col("mode") == "regress") & (pl.col("frame") == 20))
    folds = out.filter(
        (pl.col("kind") == "cnn")
        & (pl.col("mode") == "regress")
        & (pl.col("frame") == 20)
        & (pl.col("fold") >= 0)
    )["value"]
    assert row["fold_mean"].item() == pytest.approx(folds.mean())
    assert row["fold_sd"].item() == pytest.approx(folds.std(ddof=1))
    assert row["n_folds"].item() == 5
    assert not (summ["kind"] == "oracle").any()  # replaced wholesale: no stale oracle rows from r1


def test_center_oracle_recovers_offset(synthetic_store) -> None:
    store, cells, _ = synthetic_store
    raw = cells.select(
        "cell_uid",
        pl.lit(0.5).alias("oracle_prob"),
        (pl.col("gfp_log_centered") + 7.0).alias("oracle_log_gfp"),
    )
    centred = E.center_oracle(store, raw)
    np.testing.assert_allclose(centred["oracle_log_gfp"], cells["gfp_log_centered"], atol=1e-9)


def test_evaluate_without_predictions_says_what_to_do(tmp_path) -> None:
    store = Store.create(tmp_path / "empty")
    with pytest.raises(Exception, match="no predictions"):
        E.evaluate(store)


def test_one_frame_oracle_columns_give_their_own_rows(synthetic_store) -> None:
    store, cells, _ = synthetic_store
    oracle = cells.select(
        "cell_uid",
        pl.col("label").cast(pl.Float64).alias("oracle_prob"),
        pl.col("gfp_log_centered").alias("oracle_log_gfp"),
        pl.lit(0.9).alias("oracle_frame_prob"),  # every cell called positive: worse than the oracle
        (pl.col("gfp_log_centered") + 0.5).alias("oracle_frame_log_gfp"),
    )
    out = E.evaluate(store, oracle=oracle, run_id="r2")
    rows = {
        (r["kind"], r["mode"]): r["value"]
        for r in out.filter(pl.col("kind").str.starts_with("oracle")).iter_rows(named=True)
    }
    assert set(rows) == {(k, m) for k in ("oracle", "oracle_frame") for m in ("classify", "regress")}
    assert rows[("oracle", "classify")] == pytest.approx(1.0) and rows[("oracle_frame", "classify")] < 1.0
    assert rows[("oracle", "regress")] == pytest.approx(0.0, abs=1e-12)
    assert rows[("oracle_frame", "regress")] == pytest.approx(0.5)


def test_only_the_newest_model_per_fold_and_frame_counts(tmp_path) -> None:
    """A re-run with changed settings stores a second model_id beside the first: the metrics follow the
    newer one (models.created_at), and the old predictions stay stored."""
    from datetime import UTC, datetime

    rng = np.random.default_rng(3)
    store = Store.create(tmp_path / "s")
    cells = _cells(20, 0, rng)
    store.write("cells", cells)
    y = cells["label"].to_numpy().astype(float)
    uid = cells["cell_uid"].to_list()

    def preds(mid: str, p: np.ndarray) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "model_id": mid,
                "cell_uid": uid,
                "frame": 20,
                "aug": 0,
                "kind": "lstm",
                "mode": "classify",
                "fold": 0,
                "y_true": y,
                "y_pred": p,
            }
        ).cast({"frame": pl.Int16, "aug": pl.Int8, "fold": pl.Int8})

    def model_row(mid: str, year: int) -> pl.DataFrame:
        created = datetime(year, 1, 1, tzinfo=UTC)
        return one_row("models", model_id=mid, kind="lstm", mode="classify", fold=0, created_at=created)

    store.write("predictions", preds("lstm-new", np.where(y > 0, 0.9, 0.1)))  # right on every cell
    store.write("predictions", preds("lstm-old", np.where(y > 0, 0.1, 0.9)))  # wrong on every cell
    store.write("models", model_row("lstm-old", 2025))
    store.write("models", model_row("lstm-new", 2026))
    tta = E.tta_predictions(store)
    assert tta.height == 20 and (tta["n_aug"] == 1).all()
    assert E.weighted_f1(tta["y_true"], tta["y_pred"]) == 1.0
    ens = E.ensemble_predictions(store)
    assert E.weighted_f1(ens["y_true"], ens["y_pred"]) == 1.0
    assert store.read("predictions").height == 40  # nothing deleted
    assert store.sql("SELECT DISTINCT model_id FROM current_predictions")["model_id"].to_list() == [
        "lstm-new"
    ]
    store.write("models", model_row("lstm-old", 2027), mode="upsert")  # the old one retrained last: it counts
    ens = E.ensemble_predictions(store)
    assert E.weighted_f1(ens["y_true"], ens["y_pred"]) == 0.0
