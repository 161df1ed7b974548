import numpy as np
import pytest
from _ts_data import best_single_frame_accuracy, planted_panel
from lnpstore.models.lstm import (
    STUDY_SEARCH,
    STUDY_TRAIN,
    LSTMConfig,
    LSTMModel,
    SearchConfig,
    TrainConfig,
    lstm_search,
    rungs_of,
    sample_trials,
)

from lnpstore.store.errors import SettingsError

FAST = TrainConfig(lr=1e-2, epochs=60, batch_size=16, patience=10)
SMALL = LSTMConfig(units=32, dropout=0.1, recurrent_dropout=0.1)


@pytest.fixture(scope="module")
def data():
    X, y = planted_panel(n=240, seed=0)
    return X[:120], y[:120], X[120:180], y[120:180], X[180:], y[180:]


def test_planted_signal_learned_in_seconds_and_the_old_default_fails(data):
    """A correct LSTM learns the slope (> 0.9); the study's fixed lr 1e-5 x 30 epochs does not."""
    Xtr, ytr, Xv, yv, Xte, yte = data
    assert best_single_frame_accuracy(Xtr, ytr, Xte, yte) < 0.8
    m = LSTMModel("classify", arch=SMALL, train=FAST).fit(Xtr, ytr, Xv, yv)
    assert (m.predict(Xte) == yte).mean() > 0.9
    assert 1 <= m.best_epoch_ <= m.epochs_trained_ <= FAST.epochs
    assert m.val_loss_ == pytest.approx(min(m.history_))  # the best epoch is restored
    old = LSTMModel("classify", arch=SMALL, train=STUDY_TRAIN).fit(Xtr, ytr, Xv, yv)
    assert (old.predict(Xte) == yte).mean() < 0.75


def test_early_stopping_stops_and_restores_best(data):
    Xtr, ytr, Xv, yv, *_ = data
    m = LSTMModel("classify", arch=SMALL, train=FAST.replace(epochs=200, patience=3)).fit(Xtr, ytr, Xv, yv)
    assert m.epochs_trained_ < 200 and m.epochs_trained_ - m.best_epoch_ == 3
    assert len(m.history_) == m.epochs_trained_


def test_same_seed_same_model_and_save_load(data, tmp_path):
    Xtr, ytr, Xv, yv, Xte, _ = data
    kw = dict(arch=SMALL, train=FAST.replace(epochs=2))
    a = LSTMModel("regress", seed=3, **kw).fit(Xtr, ytr.astype(float), Xv, yv.astype(float))
    b = LSTMModel("regress", seed=3, **kw).fit(Xtr, ytr.astype(float), Xv, yv.astype(float))
    c = LSTMModel("regress", seed=4, **kw).fit(Xtr, ytr.astype(float), Xv, yv.astype(float))
    np.testing.assert_array_equal(a.predict(Xte), b.predict(Xte))
    assert not np.allclose(a.predict(Xte), c.predict(Xte))
    a.save(tmp_path / "m.msgpack")
    np.testing.assert_allclose(LSTMModel.load(tmp_path / "m.msgpack").predict(Xte), a.predict(Xte), rtol=1e-6)


def test_search_samples_lr_and_batch_and_keeps_the_study_protocol():
    trials = sample_trials(400, 0, SearchConfig())
    lrs = np.array([t.lr for t in trials])
    assert 0.04 < (lrs == 1e-5).mean() < 0.2  # the study's lr stays in the space
    rest = lrs[lrs != 1e-5]
    assert rest.min() >= 1e-4 and rest.max() <= 1e-2 and np.median(rest) == pytest.approx(1e-3, rel=0.3)
    assert {t.batch_size for t in trials} == {16, 32, 64}
    study = sample_trials(5, 0, STUDY_SEARCH)
    assert {(t.lr, t.batch_size) for t in study} == {(1e-4, 32)}
    assert STUDY_SEARCH.final.lr == 1e-5 and STUDY_SEARCH.final.epochs == 30
    assert rungs_of(200, SearchConfig()) == [5, 10, 20, 40, 80, 160, 200]
    with pytest.raises(SettingsError, match="lr_range"):
        SearchConfig(lr_range=(1e-2, 1e-4))
    assert SearchConfig.from_dict(SearchConfig().to_dict()) == SearchConfig()


def test_search_halving_selects_and_retrains(data):
    Xtr, ytr, Xv, yv, Xte, yte = data
    cfgs = [LSTMConfig(units=32, dropout=r, recurrent_dropout=r) for r in (0.1, 0.2, 0.5, 0.3)]
    sc = SearchConfig(
        select=TrainConfig(lr=1e-2, epochs=20, batch_size=16, patience=0),
        final=TrainConfig(lr=1e-3, epochs=3, batch_size=16, patience=0),
        lr_range=None,
        extra_lrs=(),
        batch_sizes=(),
        rung_epochs=10,
        eta=2,
    )
    best, trials = lstm_search(Xtr, ytr, Xv, yv, mode="classify", seed=0, search=sc, configs=cfgs)
    assert trials.height == 4
    assert trials["pruned"].sum() == 2  # halving after 10 epochs keeps 2 of 4
    assert trials.filter("selected")["pruned"].to_list() == [False]
    assert best.val_loss_ <= trials.filter("selected")["val_loss"][0] + 1e-6  # retraining keeps the best
    assert (best.predict(Xte) == yte).mean() >= 0.8


def test_folds_modes_checkpoints_reuse_one_compiled_program(data):
    """Different case counts (folds), modes and checkpoints (padded frames) trace the program once."""
    from lnpstore.models import lstm

    Xtr, ytr, Xv, yv, Xte, _ = data
    lstm.clear_compiled()
    before = dict(lstm.TRACES)
    sc = SearchConfig(
        select=TrainConfig(lr=1e-2, epochs=3, batch_size=16, patience=0),
        final=TrainConfig(lr=1e-3, epochs=2, batch_size=16, patience=0),
        batch_sizes=(),
        cpu_vmap_width=2,
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
