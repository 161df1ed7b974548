"""Paired approximate randomization: exact against a slow reference, uniform under the null, powerful."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from lnpstore.models import randomization as R
from scipy import stats
from sklearn.metrics import f1_score

from lnpstore.store.core import Store


def _null_data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, GFP and two exchangeable models' probabilities and regressions (same distribution)."""
    gfp = rng.normal(size=n)
    y = (gfp > 0).astype(float)
    logit = 1.5 * (y - 0.5)
    pa = 1 / (1 + np.exp(-(logit + rng.normal(size=n))))
    pb = 1 / (1 + np.exp(-(logit + rng.normal(size=n))))
    return y, pa, pb, gfp


def test_f1_permutations_match_sklearn_on_explicit_swaps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The vectorised statistic equals sklearn's F1 difference on the very same swap masks."""
    rng = np.random.default_rng(3)
    y, pa, pb, _ = _null_data(rng, 40)
    n_perm = 50
    masks: list[np.ndarray] = []
    real = R._swap_sums

    def spy(rng_, deltas, n_permutations):  # record the swap masks by replaying the generator
        state = rng_.bit_generator.state
        live = np.any(deltas != 0, axis=1)
        rr = np.random.default_rng()
        rr.bit_generator.state = state
        for start in range(0, n_permutations, R.CHUNK):
            m = min(R.CHUNK, n_permutations - start)
            s = np.zeros((m, deltas.shape[0]), bool)
            s[:, live] = rr.random((m, int(live.sum()))) < 0.5
            masks.append(s)
        out = real(rng_, deltas, n_permutations)
        captured.append(out)
        return out

    captured: list[np.ndarray] = []
    monkeypatch.setattr(R, "_swap_sums", spy)
    res = R.randomization_f1(y, pa, pb, n_permutations=n_perm, seed=11)
    s = np.concatenate(masks)
    a, b = pa >= 0.5, pb >= 0.5
    ref = []
    for row in s:
        a2, b2 = np.where(row, b, a), np.where(row, a, b)
        ref.append(
            f1_score(y, a2, average="weighted", zero_division=0)
            - f1_score(y, b2, average="weighted", zero_division=0)
        )
    ref = np.asarray(ref)
    d_obs = f1_score(y, a, average="weighted") - f1_score(y, b, average="weighted")
    assert res.difference == pytest.approx(d_obs, abs=1e-12)
    want_p = (np.sum(np.abs(ref) >= abs(d_obs) - 1e-12) + 1) / (n_perm + 1)
    assert res.p_value == pytest.approx(want_p)


def test_rmse_statistic_and_identical_models() -> None:
    rng = np.random.default_rng(0)
    _, _, _, gfp = _null_data(rng, 30)
    a = gfp + rng.normal(size=30)
    res = R.randomization_rmse(gfp, a, a.copy(), n_permutations=200, seed=1)
    assert res.difference == 0.0
    assert res.p_value == 1.0
    assert res.metric_a == pytest.approx(np.sqrt(np.mean((a - gfp) ** 2)))


def test_seeded_and_reproducible() -> None:
    rng = np.random.default_rng(5)
    y, pa, pb, gfp = _null_data(rng, 80)
    r1 = R.randomization_test("regress", gfp, pa, pb, n_permutations=500, seed=7)
    r2 = R.randomization_test("regress", gfp, pa, pb, n_permutations=500, seed=7)
    assert r1 == r2


@pytest.mark.parametrize("mode", ["classify", "regress"])
def test_p_values_near_uniform_under_null(mode: str) -> None:
    rng = np.random.default_rng(2024)
    ps = []
    for rep in range(200):
        y, pa, pb, gfp = _null_data(rng, 120)
        if mode == "classify":
            r = R.randomization_f1(y, pa, pb, n_permutations=499, seed=rep)
        else:
            r = R.randomization_rmse(
                gfp, gfp + (pa - 0.5) * 3, gfp + (pb - 0.5) * 3, n_permutations=499, seed=rep
            )
        ps.append(r.p_value)
    ps = np.asarray(ps)
    # the F1 statistic is discrete (ties make the test slightly conservative), so check the levels that
    # matter and the buckets, plus a KS test for the continuous RMSE statistic
    assert 0.01 <= np.mean(ps <= 0.05) <= 0.10
    assert 0.35 <= np.mean(ps <= 0.5) <= 0.65
    counts = np.histogram(ps, bins=5, range=(0, 1))[0]
    assert counts.min() >= 20 and counts.max() <= 65, counts
    if mode == "regress":
        assert stats.kstest(ps, "uniform").pvalue > 0.01


@pytest.mark.parametrize("mode", ["classify", "regress"])
def test_tiny_p_for_a_clear_difference(mode: str) -> None:
    rng = np.random.default_rng(9)
    n = 300
    gfp = rng.normal(size=n)
    y = (gfp > 0).astype(float)
    good = 1 / (1 + np.exp(-(4 * gfp + 0.3 * rng.normal(size=n))))
    bad = rng.random(n)
    if mode == "classify":
        r = R.randomization_f1(y, good, bad, n_permutations=10_000, seed=0)
        assert r.difference > 0.3
    else:
        r = R.randomization_rmse(
            gfp, gfp + 0.2 * rng.normal(size=n), gfp + rng.normal(size=n), n_permutations=10_000
        )
        assert r.difference < -0.5
    assert r.p_value == pytest.approx(1 / 10_001)


def test_compare_models_table1(tmp_path) -> None:
    rng = np.random.default_rng(4)
    n = 60
    gfp = rng.normal(size=n)
    uid = [f"P|C03|F001|{i:05d}" for i in range(n)]
    cells = pl.DataFrame(
        {
            "plate": "P", "well": "C03", "field": 1, "track_id": np.arange(n), "cell_uid": uid, "dose_ng": 1.0,
            "is_control": False, "last_frame": 72, "complete": True, "any_flag": False,
            "gfp_sum": np.exp(gfp + 5), "label": (gfp > 0).astype(np.int8), "gfp_log_centered": gfp,
            "split": "test", "fold": None,
        }
    )  # fmt: skip
    rows = []
    noise = {"cnn": 2.0, "lstm": 0.1, "tsfresh_xgb": 1.0}
    for kind, frames in (("cnn", range(1, 21)), ("lstm", (5, 10, 15, 20)), ("tsfresh_xgb", (5, 10, 15, 20))):
        for mode in ("classify", "regress"):
            y = (gfp > 0).astype(float) if mode == "classify" else gfp
            for fold in range(2):
                for f in frames:
                    e = gfp + noise[kind] * rng.normal(size=n)
                    pred = 1 / (1 + np.exp(-3 * e)) if mode == "classify" else e
                    rows.append(
                        pl.DataFrame(
                            {
                                "model_id": f"{kind}-{mode}-f{fold}",
                                "cell_uid": uid,
                                "frame": f,
                                "aug": 0,
                                "kind": kind,
                                "mode": mode,
                                "fold": fold,
                                "y_true": y,
                                "y_pred": pred,
                            }
                        )  # fmt: skip
                    )
    store = Store.create(tmp_path / "s")
    store.write("cells", cells)
    store.write("predictions", pl.concat(rows))
    t1 = R.compare_models(store, n_permutations=2000, seed=0)
    assert t1.height == 2 * 4 * 3
    assert set(t1["pair"]) == {"cnn vs lstm", "cnn vs tsfresh_xgb", "lstm vs tsfresh_xgb"}
    assert t1.columns[:4] == ["mode", "checkpoint", "pair", "model_a"]
    assert (t1["n_cells"] == n).all()
    np.testing.assert_allclose(t1["difference"], t1["metric_a"] - t1["metric_b"], atol=1e-12)
    # the LSTM (noise 0.1) beats the CNN (noise 2) clearly in regression
    reg = t1.filter((pl.col("mode") == "regress") & (pl.col("pair") == "cnn vs lstm"))
    assert (reg["difference"] > 0).all() and (reg["p_value"] < 0.01).all()
    assert ((t1["p_value"] > 0) & (t1["p_value"] <= 1)).all()
    again = R.compare_models(store, n_permutations=2000, seed=0)
    assert again.equals(t1)
