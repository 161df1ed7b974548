import logging

import lnpstore.models.tsgbm as tg
import numpy as np
import pytest
from _ts_data import best_single_frame_accuracy, planted_panel
from lnpstore.models.tsgbm import FeatureCache, TsfreshClassifier, TsfreshRegressor, TsfreshXGB, fc_settings

SMALL_FC = {"linear_trend": [{"attr": "slope"}], "mean": None, "standard_deviation": None}


@pytest.fixture(scope="module")
def data():
    X, y = planted_panel(n=240, frames=10, channels=3, seed=1)
    return X[:120], y[:120], X[120:180], y[120:180], X[180:], y[180:]


def test_learns_temporal_signal_single_frame_cannot(data):
    Xtr, ytr, Xv, yv, Xte, yte = data
    assert best_single_frame_accuracy(Xtr, ytr, Xte, yte) < 0.8
    m = TsfreshXGB("classify", fc_parameters=SMALL_FC, n_samples=4, seed=0, min_features=1).fit(
        Xtr, ytr, Xv, yv
    )
    assert (m.predict(Xte) == yte).mean() >= 0.85
    assert 'c00__linear_trend__attr_"slope"' in m.selected_
    assert m.trials_.height == 4 and m.trials_["selected"].sum() == 1
    assert m.selection_path_ == "fdr" and not m.selection_fallback_


def test_val_and_test_extract_only_selected_features_and_cache(data, monkeypatch):
    Xtr, ytr, Xv, yv, Xte, _ = data
    calls = []
    real = tg.extract

    def spy(X, channels, **kw):
        out = real(X, channels, **kw)
        calls.append((len(X), kw.get("kind_to_fc_parameters") is not None, out.shape[1]))
        return out

    monkeypatch.setattr(tg, "extract", spy)
    m = TsfreshXGB("classify", fc_parameters=SMALL_FC, n_samples=2, seed=0, min_features=1).fit(
        Xtr, ytr, Xv, yv
    )
    m.predict(Xte)
    m.predict(Xte)  # second time: from the cache
    assert calls[0] == (len(Xtr), False, 9)  # training: everything (3 calculators x 3 channels)
    assert all(restricted and n == len(m.selected_) for _, restricted, n in calls[1:])
    assert m.cache.hits == 1 and m.cache.misses == 3


def test_zero_relevant_features_fill_up_by_p_value_and_say_so(caplog):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6, 2)).astype(np.float32)
    y = rng.integers(0, 2, 60)
    with caplog.at_level(logging.WARNING):
        m = TsfreshXGB("classify", fc_parameters="minimal", n_samples=2, min_features=3).fit(
            X[:40], y[:40], X[40:], y[40:]
        )
    assert m.selection_path_ == "top_p" and m.config()["selection_path"] == "top_p"
    assert m.selection_fallback_ and m.config()["selection_fallback"] is True
    assert len(m.selected_) == 3
    assert "path 'top_p'" in caplog.text
    assert m.predict_proba(X[40:]).shape == (20, 2)


def _small_planted(n: int, n_classes: int, seed: int):
    """Series whose class (or value) is the slope of channel 0; a large offset hides it in any frame."""
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, n_classes, n)
    slope = (cls - (n_classes - 1) / 2) * rng.uniform(0.8, 1.0, n)
    t = np.arange(12) - 5.5
    X = rng.normal(0, 1, (n, 12, 2)).astype(np.float32)
    X[:, :, 0] = rng.normal(0, 10, (n, 1)) + slope[:, None] * t + rng.normal(0, 0.1, (n, 12))
    return X, cls, slope


def test_small_multiclass_data_keep_the_signal_without_glue():
    """30 training series, 4 string classes, no validation given: FDR keeps few features, the selection
    fills up by p-value (recorded), PCA is capped below the rows, and the slope is still found."""
    X, cls, _ = _small_planted(130, 4, seed=5)
    labels = np.array(["a", "b", "c", "d"])[cls]
    m = TsfreshClassifier(fc_parameters=SMALL_FC, n_samples=3, n_components=64, min_features=4)
    m.fit(X[:30], labels[:30])
    assert m.classes_.tolist() == ["a", "b", "c", "d"]
    assert m.selection_path_ in ("fdr", "fdr+top_p", "top_p") and len(m.selected_) >= 4
    assert any("linear_trend" in f and f.startswith("c00") for f in m.selected_)
    assert m.refitted_ and m.pca_.n_components_ < len(labels[:30])  # refitted on all 30 rows, PCA < rows
    assert m.predict_proba(X[30:]).shape == (100, 4)
    assert m.decision_function(X[30:]).shape == (100, 4)
    assert m.score(X[30:], labels[30:]) > 0.8


def test_regression_beats_the_training_mean():
    X, _, slope = _small_planted(160, 5, seed=6)
    y = 3.0 + 2.0 * slope
    m = TsfreshRegressor(fc_parameters=SMALL_FC, n_samples=3, min_features=2, n_components=0)
    m.fit(X[:100], y[:100])
    assert m.pca_.n_components_ == len(m.selected_)  # n_components=0: no PCA
    rmse = np.sqrt(np.mean((m.predict(X[100:]) - y[100:]) ** 2))
    assert rmse < 0.5 * np.std(y[100:] - y[:100].mean())
    assert m.trials_["stopped_early"].any()  # early stopping on the validation split


def test_unequal_lengths_and_sklearn_clone():
    from sklearn.base import clone

    X, cls, _ = _small_planted(60, 2, seed=7)
    series = [x[: 8 + i % 5] for i, x in enumerate(X)]
    m = TsfreshClassifier(fc_parameters=SMALL_FC, n_samples=2, min_features=2, seed=3).fit(
        series[:40], cls[:40]
    )
    assert m.predict(series[40:]).shape == (20,)
    assert clone(m).get_params() == m.get_params()


def test_fast_drops_expensive_calculators_and_cache_roundtrip(tmp_path):
    eff, fast = fc_settings("efficient"), fc_settings("fast")
    assert set(fast) < set(eff) and not set(fast) & set(tg.FAST_EXCLUDE)
    X = np.random.default_rng(0).normal(size=(5, 6, 2)).astype(np.float32)
    c1 = FeatureCache(tmp_path)
    a = tg.extract(X, ["a", "b"], default_fc_parameters=fc_settings("minimal"), cache=c1)
    b = tg.extract(X, ["a", "b"], default_fc_parameters=fc_settings("minimal"), cache=FeatureCache(tmp_path))
    assert a.equals(b) and c1.misses == 1
    with pytest.raises(ValueError, match="fc_parameters must be"):
        fc_settings("slow")


def test_dask_distributor_matches_local_extraction():
    """extract(..., dask_address=...) runs on a real Dask scheduler and gives the local features."""
    import time

    import pandas as pd
    from distributed import LocalCluster

    X = np.random.default_rng(3).normal(size=(12, 8, 2)).astype(np.float32)
    local = tg.extract(X, ["a", "b"], default_fc_parameters=SMALL_FC)
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        remote = tg.extract(
            X, ["a", "b"], default_fc_parameters=SMALL_FC, dask_address=cluster.scheduler_address
        )
        sched = cluster.scheduler
        ran = sum(p.all_durations.get("compute", 0.0) for p in sched.task_prefixes.values())
        assert ran > 0  # the chunks were computed by the cluster's worker, not locally
        deadline = time.monotonic() + 10
        while set(sched.clients) - {"fire-and-forget"} and time.monotonic() < deadline:
            time.sleep(0.05)  # the scheduler drops a closed client asynchronously
        assert set(sched.clients) <= {"fire-and-forget"}  # the distributor closed its client
    assert cluster.status.name == "closed"
    pd.testing.assert_frame_equal(remote, local)
    assert local.shape == (12, 6) and np.isfinite(local.to_numpy()).all()


def test_array_engine_fits_the_same_model_as_tsfresh(data):
    """engine="array" (the default) and engine="tsfresh" extract equal features, so selection, PCA
    and the trees agree; the engine is recorded in the model's config."""
    Xtr, ytr, Xv, yv, Xte, _ = data
    fc = {
        "linear_trend": [{"attr": "slope"}, {"attr": "rvalue"}],
        "change_quantiles": fc_settings("efficient")["change_quantiles"][:8],
    }
    kw = {"fc_parameters": fc, "n_samples": 2, "seed": 0, "min_features": 3}
    a = TsfreshXGB("classify", **kw).fit(Xtr[:60], ytr[:60], Xv, yv)
    t = TsfreshXGB("classify", engine="tsfresh", **kw).fit(Xtr[:60], ytr[:60], Xv, yv)
    assert a.engine == "array" and a.config()["engine"] == "array" and t.config()["engine"] == "tsfresh"
    assert a.selected_ == t.selected_
    np.testing.assert_allclose(a.predict_proba(Xte), t.predict_proba(Xte), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="engine must be one of"):
        TsfreshXGB("classify", engine="gpu")


def test_cli_tsfresh_engine_option():
    from lnpstore.cli.main import build_parser

    p = build_parser()
    a = p.parse_args(["train-tsfresh", "S", "--mode", "classify"])
    assert a.tsfresh_engine == "array"
    a = p.parse_args(["train-tsfresh", "S", "--mode", "classify", "--tsfresh-engine", "tsfresh"])
    assert a.tsfresh_engine == "tsfresh"
    assert p.parse_args(["run", "--tsfresh-engine", "tsfresh"]).tsfresh_engine == "tsfresh"
    with pytest.raises(SystemExit):
        p.parse_args(["train-tsfresh", "S", "--mode", "classify", "--tsfresh-engine", "jax"])
