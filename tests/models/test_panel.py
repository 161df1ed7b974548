"""The panel API: scikit-learn-style estimators (LSTM and tsfresh -> XGBoost) on any panel form."""

import dataclasses

import numpy as np
import polars as pl
import pytest
from _ts_data import planted_panel
from lnpstore.models.lstm import LSTMClassifier, LSTMConfig, LSTMRegressor, TrainConfig
from lnpstore.models.lstm.estimator import REGRESS_BAGS
from lnpstore.models.panel import as_panel, encode_labels, validation_split

from lnpstore.store.errors import PanelError

FAST = TrainConfig(lr=1e-2, epochs=60, batch_size=16, patience=10)
SMALL = LSTMConfig(units=32, dropout=0.1, recurrent_dropout=0.1)


@pytest.fixture(scope="module")
def data():
    X, y = planted_panel(n=240, seed=0)
    return X[:120], y[:120], X[120:180], y[120:180], X[180:], y[180:]


def test_as_panel_forms_agree():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3, 5, 2)).astype(np.float32)
    a, la, _ = as_panel(X)
    b, lb, _ = as_panel(list(X[:, :4]) + [])  # a list of (steps, channels) arrays
    assert a.shape == (3, 5, 2) and la.tolist() == [5, 5, 5] and lb.tolist() == [4, 4, 4]
    long = pl.DataFrame(
        {
            "id": np.repeat(["s2", "s0", "s1"], 5),
            "time": np.tile(np.arange(5)[::-1], 3),
            "u": X[[2, 0, 1], ::-1, 0].reshape(-1),
            "v": X[[2, 0, 1], ::-1, 1].reshape(-1),
        }
    ).head(14)  # the last series loses its first step
    c, lc, ids = as_panel(long)
    assert ids.tolist() == ["s2", "s0", "s1"] and lc.tolist() == [5, 5, 4]
    np.testing.assert_allclose(c[:2], X[[2, 0]])
    np.testing.assert_allclose(c[2, :4], X[1, 1:])
    u, lu, _ = as_panel(X[:, :, 0])  # 2-d: one channel
    assert u.shape == (3, 5, 1)
    Xn = X.copy()
    Xn[0, 3:] = np.nan  # trailing missing steps: a shorter series
    assert as_panel(Xn)[1].tolist() == [3, 5, 5]
    Xn[1, 1, 0] = np.nan
    with pytest.raises(PanelError, match="series 1 has a missing value at step 1"):
        as_panel(Xn)


def test_labels_and_split():
    classes, idx = encode_labels(np.array(["b", "a", "b", "c"]))
    assert classes.tolist() == ["a", "b", "c"] and idx.tolist() == [1, 0, 1, 2]
    y = np.repeat([0, 1], 10)
    tr, va = validation_split(y, 0.2, 0, stratify=True)
    assert len(va) == 4 and np.bincount(y[va]).tolist() == [2, 2] and not set(tr) & set(va)
    with pytest.raises(PanelError, match="too few"):
        validation_split(y[:3], 0.2, 0, stratify=True)


def test_long_frame_with_target_column():
    X, y = planted_panel(n=60, frames=10, channels=1, seed=4)
    long = pl.DataFrame(
        {
            "cell": np.repeat(np.arange(60), 10),
            "frame": np.tile(np.arange(10), 60),
            "x": X[:, :, 0].reshape(-1),
            "label": np.repeat(np.where(y == 1, "up", "down"), 10),
        }
    )
    m = LSTMClassifier(arch=SMALL, train=FAST.replace(epochs=2), id_col="cell", time_col="frame")
    m.fit(long, "label")
    assert m.classes_.tolist() == ["down", "up"] and m.n_channels_ == 1
    assert m.predict(long.drop("label")).shape == (60,)
    assert 0 <= m.score(long, "label") <= 1


def test_multiclass_and_regression_through_the_same_api():
    rng = np.random.default_rng(1)
    n, T = 240, 10
    cls = rng.integers(0, 3, n)
    slope = (cls - 1.0) * rng.uniform(0.8, 1.0, n)  # down, flat, up
    t = np.arange(T) - (T - 1) / 2
    X = rng.normal(0, 1, (n, T, 4)).astype(np.float32)
    X[:, :, 0] = rng.normal(0, 6, (n, 1)) + slope[:, None] * t + rng.normal(0, 0.1, (n, T))
    labels = np.array(["down", "flat", "up"])[cls]
    clf = LSTMClassifier(arch=SMALL, train=FAST).fit(X[:180], labels[:180])
    assert clf.classes_.tolist() == ["down", "flat", "up"]
    assert clf.predict_proba(X[180:]).shape == (60, 3)
    assert clf.decision_function(X[180:]).shape == (60, 3)
    assert clf.score(X[180:], labels[180:]) > 0.75  # chance: 0.33
    reg = LSTMRegressor(arch=SMALL, train=FAST).fit(X[:180], 100 + 50 * slope[:180])  # any target scale
    assert reg.score(X[180:], 100 + 50 * slope[180:]) > 0.8


def test_standardisation_uses_training_rows_only(data):
    """Leak test: validation and test rows never move the scaler; the internal split is honoured."""
    Xtr, ytr, Xv, yv, *_ = data
    tc = TrainConfig(lr=1e-2, epochs=1)
    a = LSTMClassifier(arch=SMALL, train=tc).fit(Xtr, ytr, Xv, yv)
    b = LSTMClassifier(arch=SMALL, train=tc).fit(Xtr, ytr, Xv + 1000.0, yv)
    np.testing.assert_array_equal(a.mean_, b.mean_)
    np.testing.assert_array_equal(a.std_, b.std_)
    np.testing.assert_allclose(a.mean_, Xtr.reshape(-1, Xtr.shape[2]).mean(0), rtol=1e-4, atol=1e-4)
    c = LSTMClassifier(arch=SMALL, train=tc, val_fraction=0.25).fit(Xtr, ytr)
    tr = c.train_index_
    assert len(c.val_index_) == 30 and not set(tr) & set(c.val_index_)
    np.testing.assert_allclose(c.mean_, Xtr[tr].reshape(-1, Xtr.shape[2]).mean(0), rtol=1e-4, atol=1e-4)
    assert not np.allclose(c.mean_, Xtr.reshape(-1, Xtr.shape[2]).mean(0), rtol=1e-4, atol=1e-4)


def test_unequal_lengths_are_masked(data):
    Xtr, ytr, Xv, yv, Xte, _ = data
    m = LSTMClassifier(arch=LSTMConfig(units=32, bidirectional=True), train=FAST.replace(epochs=2))
    m.fit([x[: 6 + i % 5] for i, x in enumerate(Xtr)], ytr)
    alone = m.decision_function(Xte[:5, :6])
    padded = np.full((5, 10, Xte.shape[2]), np.nan, np.float32)
    padded[:, :6] = Xte[:5, :6]  # trailing NaN steps: a shorter series
    np.testing.assert_allclose(m.decision_function(padded), alone, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.decision_function(list(Xte[:5, :6])), alone, rtol=1e-5, atol=1e-5)


def test_layout_errors_say_what_was_expected():
    X, y = planted_panel(n=40, frames=10, channels=1, seed=2)
    with pytest.raises(PanelError, match=r"transpose\(0, 2, 1\)"):
        LSTMClassifier().fit(X.transpose(0, 2, 1), y)  # (n, channels, steps)
    X4, y4 = planted_panel(n=40, frames=10, channels=4, seed=2)
    m = LSTMClassifier(arch=SMALL, train=TrainConfig(epochs=1)).fit(X4, y4)
    with pytest.raises(PanelError, match="fitted on 4.*transpose"):
        m.predict(X4.transpose(0, 2, 1))
    with pytest.raises(PanelError, match="one class"):
        LSTMClassifier().fit(X, np.zeros(40))
    with pytest.raises(PanelError, match="40 series but `y` has 39"):
        LSTMClassifier().fit(X, y[:39])


def test_sklearn_protocol():
    from sklearn.base import clone, is_classifier, is_regressor
    from sklearn.model_selection import cross_val_score

    est = LSTMClassifier(arch=SMALL, train=TrainConfig(lr=1e-2, epochs=3), seed=1)
    assert est.get_params()["seed"] == 1 and clone(est).get_params()["arch"] == SMALL
    assert is_classifier(est) and is_regressor(LSTMRegressor())
    X, y = planted_panel(n=40, seed=3)
    scores = cross_val_score(est, X, y, cv=2)
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_long_series_are_pooled_to_max_steps_with_padding_excluded():
    from lnpstore.models.lstm import pool_factor, pool_steps

    assert pool_factor(20, 64) == 1 and pool_factor(251, 64) == 4 and pool_factor(251, None) == 1
    X = np.arange(2 * 7 * 1, dtype=np.float32).reshape(2, 7, 1)
    X[1, 5:] = 0.0  # series 1 has 5 real steps
    P, L = pool_steps(X, np.array([7, 5]), 3)
    assert P.shape == (2, 3, 1) and L.tolist() == [3, 2]
    np.testing.assert_allclose(P[0, :, 0], [1.0, 4.0, 6.0])  # windows 0-2, 3-5, 6
    np.testing.assert_allclose(P[1, :2, 0], [8.0, 10.5])  # window 3-4 only: steps 5-6 are padding


def test_windows_keep_their_mean_minimum_and_maximum_with_padding_excluded():
    from lnpstore.models.lstm import POOL_STATS, pool_steps

    X = np.arange(2 * 7 * 2, dtype=np.float32).reshape(2, 7, 2)
    X[1, 5:] = -100.0  # series 1 has 5 real steps: its padding must not reach the minimum
    P, L = pool_steps(X, np.array([7, 5]), 3, POOL_STATS)
    assert P.shape == (2, 3, 6) and L.tolist() == [3, 2]  # (mean, min, max) x 2 channels
    np.testing.assert_allclose(P[0, :, 0], [2.0, 8.0, 12.0])  # mean of channel 0: steps 0-2, 3-5, 6
    np.testing.assert_allclose(P[1, :2, 2], [14.0, 20.0])  # min of channel 0: window 3-4 only
    np.testing.assert_allclose(P[1, :2, 4], [18.0, 22.0])  # max of channel 0
    assert (P[1, 2] == 0.0).all()  # a window of padding only
    with pytest.raises(ValueError, match="pool stats"):
        pool_steps(X, None, 3, ("median",))


def test_estimator_pools_long_series_and_predicts_on_the_same_scale(data):
    Xtr, ytr, _, _, Xte, yte = data
    long_tr, long_te = np.repeat(Xtr, 8, axis=1), np.repeat(Xte, 8, axis=1)  # 80 steps, 8 per frame
    # flat windows (each frame repeated): the extrema would only repeat the mean, so the mean alone
    m = LSTMClassifier(arch=SMALL, train=FAST, max_steps=10, pool_stats=("mean",)).fit(long_tr, ytr)
    assert m.pool_factor_ == 8 and m.score(long_te, yte) > 0.85
    assert m.config()["pool_factor"] == 8 and m.config()["pool_stats"] == ["mean"]
    assert m.model_.mean_.shape[-1] == Xtr.shape[2]
    default = LSTMClassifier(arch=SMALL, train=FAST.replace(epochs=1), max_steps=10).fit(long_tr, ytr)
    assert default.config()["pool_stats"] == ["mean", "min", "max"]
    assert default.model_.mean_.shape[-1] == 3 * Xtr.shape[2]  # the network reads 3 channels per channel
    assert default.predict(long_te).shape == yte.shape  # predictions pool the same way
    raw = LSTMClassifier(arch=SMALL, train=FAST.replace(epochs=1), max_steps=None).fit(long_tr, ytr)
    assert raw.pool_factor_ == 1


def test_convolution_front_end_learns_and_is_searched(data):
    from lnpstore.models.lstm import STUDY_SEARCH, SearchConfig, sample_trials

    Xtr, ytr, Xv, yv, Xte, yte = data
    conv = LSTMClassifier(arch=SMALL.replace(conv=16, conv_kernel=8), train=FAST).fit(Xtr, ytr, Xv, yv)
    assert conv.score(Xte, yte) > 0.9
    wide = SearchConfig(convs=(0, 32, 64))
    assert {t.arch.conv for t in sample_trials(60, 0, wide)} == {0, 32, 64}
    plain = sample_trials(
        60, 0, SearchConfig()
    )  # the default draws no front end; the other draws do not move
    assert {t.arch.conv for t in plain} == {0}
    assert [t.arch.replace(conv=0) for t in sample_trials(60, 0, wide)] == [t.arch for t in plain]
    assert {t.arch.conv for t in sample_trials(20, 0, STUDY_SEARCH)} == {0}


def test_fcn_branch_and_mean_readout_learn_ignore_padding_and_are_searched(data):
    """LSTM-FCN (the FCN branch beside the LSTM) and the mean readout: they learn, padding steps do
    not move them, and a search draws the branch only when asked (the study's space stays plain)."""
    from lnpstore.models.lstm import STUDY_SEARCH, SearchConfig, sample_trials

    Xtr, ytr, Xv, yv, Xte, yte = data
    LSTMClassifier(arch=SMALL, train=FAST.replace(epochs=1)).fit(Xtr, ytr, Xv, yv)  # the plain program first
    m = LSTMClassifier(arch=SMALL.replace(fcn=8), train=FAST).fit(Xtr, ytr, Xv, yv)
    assert m.score(Xte, yte) > 0.9 and m.config()["arch"]["fcn"] == 8
    assert {"fcn0", "fcn1", "fcn2"} <= set(m.model_.params)  # its own program, not the plain one's
    changed = {"bidirectional": True, "dense": True, "readout": "mean", "layers": 2, "dropout": 0.3}
    changed["recurrent_dropout"] = 0.3
    for f in dataclasses.fields(LSTMConfig):  # every field but the rates picks the compiled program
        value = changed[f.name] if f.name in changed else getattr(SMALL, f.name) + 1
        moved = SMALL.replace(**{f.name: value})
        assert (moved.shape == SMALL.shape) == (f.name in ("dropout", "recurrent_dropout")), f.name
    arch = LSTMConfig(units=16, bidirectional=True, fcn=8, readout="mean")
    m = LSTMClassifier(arch=arch, train=FAST.replace(epochs=2)).fit(Xtr, ytr)
    alone = m.decision_function(Xte[:5, :6])
    padded = np.full((5, 10, Xte.shape[2]), np.nan, np.float32)
    padded[:, :6] = Xte[:5, :6]
    np.testing.assert_allclose(m.decision_function(padded), alone, rtol=1e-5, atol=1e-5)
    assert not np.allclose(m.decision_function(Xte[:5, :10]), alone, atol=1e-4)  # real steps do count
    wide = SearchConfig(fcns=(0, 64))
    assert {t.arch.fcn for t in sample_trials(60, 0, wide)} == {0, 64}
    plain = sample_trials(60, 0, SearchConfig())
    assert {t.arch.fcn for t in plain} == {0}
    assert [t.arch.replace(fcn=0) for t in sample_trials(60, 0, wide)] == [t.arch for t in plain]
    assert {t.arch.fcn for t in sample_trials(20, 0, STUDY_SEARCH)} == {0}


def test_bagged_members_average_and_are_recorded(data):
    """n_bags: the winner's setting trained once per fold of all rows; the score is the members' mean."""
    Xtr, ytr, Xv, yv, Xte, _ = data
    target = Xtr[:, -1, 0] - Xtr[:, 0, 0]
    m = LSTMRegressor(arch=SMALL, train=FAST.replace(epochs=3), n_bags=3, seed=2).fit(Xtr, target)
    assert len(m.members_) == 3 and len({id(b) for b in m.members_}) == 3
    z = np.mean([b.decision_function(Xte) for b in m.members_], axis=0) * m.y_std_ + m.y_mean_
    np.testing.assert_allclose(m.predict(Xte), z, rtol=1e-5, atol=1e-6)
    assert not np.allclose(m.members_[0].decision_function(Xte), m.members_[1].decision_function(Xte))
    assert m.config()["n_bags"] == 3 and len(m.config()["bag_best_epochs"]) == 3
    c = LSTMClassifier(arch=SMALL, train=FAST.replace(epochs=2), n_bags=2).fit(Xtr, ytr)
    assert c.predict_proba(Xte).shape == (len(Xte), 2) and len(c.members_) == 2
    # by default a regressor bags (the mean of regressors cannot lose on squared error), a classifier not
    r = LSTMRegressor(arch=SMALL, train=FAST.replace(epochs=1)).fit(Xtr, target)
    assert r.n_bags is None and len(r.members_) == REGRESS_BAGS == r.config()["n_bags"]
    c1 = LSTMClassifier(arch=SMALL, train=FAST.replace(epochs=1)).fit(Xtr, ytr)
    assert c1.members_ == [] and c1.config()["n_bags"] == 1
    with pytest.raises(ValueError, match="n_bags must be"):
        LSTMRegressor(arch=SMALL, train=FAST, n_bags=0).fit(Xtr, target)
