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
