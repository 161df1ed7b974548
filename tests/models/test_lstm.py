import numpy as np
import pytest
from _ts_data import best_single_frame_accuracy, planted_panel
from lnpstore.models.lstm import LSTMClassifier, LSTMConfig, LSTMModel, SearchConfig, TrainConfig, lstm_search

FAST = TrainConfig(lr=1e-2, epochs=30, batch_size=16)


@pytest.fixture(scope="module")
def data():
    X, y = planted_panel(n=240, seed=0)
    return X[:120], y[:120], X[120:180], y[120:180], X[180:], y[180:]


def test_lstm_learns_temporal_signal_single_frame_cannot(data):
    Xtr, ytr, Xv, yv, Xte, yte = data
    assert best_single_frame_accuracy(Xtr, ytr, Xte, yte) < 0.8
    m = LSTMClassifier(arch=LSTMConfig(units=32, dropout=0.1, recurrent_dropout=0.1), train=FAST).fit(
        Xtr, ytr, Xv, yv
    )
    assert (m.predict(Xte) == yte).mean() >= 0.85
    assert 1 <= m.best_epoch_ <= FAST.epochs
    assert m.val_loss_ == pytest.approx(min(m.history_))


def test_same_seed_same_model_and_save_load(data, tmp_path):
    Xtr, ytr, Xv, yv, Xte, _ = data
    kw = dict(
        arch=LSTMConfig(units=32, layers=2, bidirectional=True, dense=True),
        train=TrainConfig(lr=1e-2, epochs=2),
    )
    a = LSTMModel("regress", seed=3, **kw).fit(Xtr, ytr.astype(float), Xv, yv.astype(float))
    b = LSTMModel("regress", seed=3, **kw).fit(Xtr, ytr.astype(float), Xv, yv.astype(float))
    c = LSTMModel("regress", seed=4, **kw).fit(Xtr, ytr.astype(float), Xv, yv.astype(float))
    np.testing.assert_array_equal(a.predict(Xte), b.predict(Xte))
    assert not np.allclose(a.predict(Xte), c.predict(Xte))
    a.save(tmp_path / "m.msgpack")
    np.testing.assert_allclose(LSTMModel.load(tmp_path / "m.msgpack").predict(Xte), a.predict(Xte), rtol=1e-6)


def test_search_halving_selects_and_retrains(data):
    Xtr, ytr, Xv, yv, Xte, yte = data
    cfgs = [LSTMConfig(units=32, dropout=r, recurrent_dropout=r) for r in (0.1, 0.2, 0.5)] + [
        LSTMConfig(units=32, layers=2)
    ]
    sc = SearchConfig(
        select=TrainConfig(lr=1e-2, epochs=20, batch_size=16),
        final=TrainConfig(lr=1e-3, epochs=3, batch_size=16),
        vmap_width=2,
        rung_epochs=10,
        eta=2,
    )
    best, trials = lstm_search(Xtr, ytr, Xv, yv, mode="classify", seed=0, search=sc, configs=cfgs)
    assert trials.height == 4
    assert trials["stopped_early"].sum() == 2  # halving after 10 epochs keeps 2 of 4
    assert trials.filter("selected")["stopped_early"].to_list() == [False]
    assert (
        best.val_loss_ <= trials.filter("selected")["val_loss"][0] + 1e-6
    )  # retraining keeps the best epoch
    assert (best.predict(Xte) == yte).mean() >= 0.8


def test_bad_input_says_what_was_expected():
    with pytest.raises(ValueError, match="cases, frames, channels"):
        LSTMClassifier().fit(np.zeros((3, 4)), np.zeros(3), np.zeros((3, 4, 1)), np.zeros(3))


def test_folds_modes_checkpoints_reuse_one_compiled_program(data):
    """Different case counts (folds), modes and checkpoints (padded frames) trace the program once."""
    from lnpstore.models import lstm

    Xtr, ytr, Xv, yv, Xte, _ = data
    lstm.clear_compiled()
    before = dict(lstm.TRACES)
    sc = SearchConfig(
        select=TrainConfig(lr=1e-2, epochs=3, batch_size=16),
        final=TrainConfig(lr=1e-3, epochs=2, batch_size=16),
        vmap_width=2,
        rung_epochs=2,
    )
    cfgs = [LSTMConfig(units=32, dropout=r, recurrent_dropout=r) for r in (0.1, 0.5)]
    preds = []
    for n_tr, n_va, t, mode in [(120, 60, 10, "classify"), (110, 50, 6, "classify"), (100, 44, 8, "regress")]:
        yy, yyv = (ytr, yv) if mode == "classify" else (ytr + 0.5, yv + 0.5)
        m, trials = lstm_search(
            Xtr[:n_tr, :t],
            yy[:n_tr],
            Xv[:n_va, :t],
            yyv[:n_va],
            mode=mode,
            seed=0,
            search=sc,
            configs=cfgs,
            t_pad=10,
        )
        assert trials.height == 2 and np.isfinite(m.val_loss_)
        preds.append(m.predict_score(Xte[:, :t]))
    traced = {k: v - before.get(k, 0) for k, v in lstm.TRACES.items()}
    # one width (2) for the rungs and the retraining: one trace each, whatever the fold/mode/t
    assert traced["run"] == 1 and traced["init"] == 1 and traced["apply"] == 1
    assert traced.get("val", 0) == 0  # the retraining reset is part of the fused program
    # same seed, same data: same result
    m2, _ = lstm_search(
        Xtr[:100, :8],
        ytr[:100] + 0.5,
        Xv[:44, :8],
        yv[:44] + 0.5,
        mode="regress",
        seed=0,
        search=sc,
        configs=cfgs,
        t_pad=10,
    )
    np.testing.assert_array_equal(m2.predict_score(Xte[:, :8]), preds[2])


def test_padded_frames_equal_unpadded(data):
    """A checkpoint padded (masked) to a longer length gives the same outputs as the short sequence."""
    Xtr, ytr, Xv, yv, Xte, _ = data
    m = LSTMModel(
        "classify",
        arch=LSTMConfig(units=32, layers=2, bidirectional=True),
        train=TrainConfig(lr=1e-2, epochs=2),
    )
    m.fit(Xtr[:, :6], ytr, Xv[:, :6], yv)
    short = m.decision_function(Xte[:, :6])
    m.t_pad_ = 10
    np.testing.assert_allclose(m.decision_function(Xte[:, :6]), short, rtol=1e-5, atol=1e-5)
