"""The random search: architectures, learning rates and batch sizes, with early stopping and halving.

Each trial draws an architecture from the study's space (units, 1-2 layers, bidirectional, dense,
dropout rates), a learning rate (log-uniform on ``lr_range``, or one of ``extra_lrs`` -- the study's
1e-5 -- with probability ``extra_lr_share``) and a batch size (``batch_sizes``). Every trial trains up
to ``select.epochs`` epochs with early stopping on the validation loss (``select.patience``, the best
epoch restored); with ``halving`` only the best ``1/eta`` of the trials go on at each rung (rungs at
``rung_epochs * eta**k`` epochs). :data:`STUDY_SEARCH` is the study's exact protocol (lr 1e-4 for 20
epochs, the winner retrained at lr 1e-5 for 30 epochs, batch 32).

Speed-ups (each measured by ``benchmarks/timeseries.py``): compile once per (shape, batch size), whole
epochs fused into one compiled loop (``fused``), successive halving, and, on accelerators, ``jax.vmap``
over up to ``vmap_width`` trials of a shape. On CPU the trials run one at a time (``cpu_vmap_width``
1): XLA's CPU runtime (jaxlib 0.10.2) deadlocks on vmapped 2-layer LSTMs (e.g. 128 or 64 units with a
dense layer at width 8: 0 % CPU inside ``jax.device_get``; ``tests/models/test_lstm.py`` reproduces it
with a timeout) and width 1 is about as fast on a few cores.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from lnpstore.models.lstm.net import CONVS, LAYERS, RATES, UNITS, LSTMConfig
from lnpstore.models.lstm.train import (
    LSTMModel,
    Mode,
    TrainConfig,
    _check_panel,
    _prepare,
    _Trainer,
    standardizer,
)

from lnpstore.runtime.settings import Field, Settings, settings


@settings
class SearchConfig(Settings):
    """Random search: what is sampled, how each trial trains (``select``), the optional retraining of
    the winner (``final``: started from its best weights, best epoch kept; ``final.epochs = 0`` skips
    it) and the speed-ups."""

    select: TrainConfig = Field(
        default_factory=lambda: TrainConfig(lr=1e-3, epochs=200, batch_size=32, patience=20),
        description="training of each trial (lr and batch size used when not sampled)",
    )
    final: TrainConfig = Field(
        default_factory=lambda: TrainConfig(lr=1e-5, epochs=0, batch_size=32, patience=0),
        description="retraining of the winner from its best weights (epochs 0: none)",
    )
    lr_range: tuple[float, float] | None = Field(
        (1e-4, 1e-2), description="learning rates drawn log-uniform in [lo, hi]; None: select.lr"
    )
    extra_lrs: tuple[float, ...] = Field((1e-5,), description="learning rates drawn with extra_lr_share")
    extra_lr_share: float = Field(0.1, ge=0.0, le=1.0, description="chance of drawing from extra_lrs")
    batch_sizes: tuple[int, ...] = Field((16, 32, 64), description="batch sizes drawn; (): select.batch_size")
    units: tuple[int, ...] = Field(UNITS, description="units choices (the study's are 32/64/128/256)")
    convs: tuple[int, ...] = Field(
        (0,),
        description=f"filters of the convolution front end drawn per trial (0: none, the study's network; "
        f"e.g. {CONVS} on long univariate series)",
    )
    fcns: tuple[int, ...] = Field(
        (0,),
        description="filters of the FCN branch beside the LSTM drawn per trial (0: none, the study's "
        "network; LSTM-FCN otherwise)",
    )
    vmap_width: int = Field(8, ge=1, description="trials of one shape trained at once on an accelerator")
    cpu_vmap_width: int = Field(
        1, ge=1, description="the same on CPU (1: XLA CPU deadlocks on vmapped 2-layer LSTMs)"
    )
    fused: bool = Field(True, description="whole epochs in one compiled loop")
    halving: bool = Field(True, description="successive halving at the rungs")
    rung_epochs: int = Field(5, ge=1, description="epochs of the first rung")
    eta: int = Field(2, ge=2, description="1/eta of the trials go on at each rung; rungs grow by eta")
    cache_compiles: bool = Field(True, description="reuse compiled programs across searches")
    pad_frames: bool = Field(
        True, description="the stage pads every checkpoint to its longest (one compiled program)"
    )

    def __post_init__(self) -> None:
        from lnpstore.store.errors import SettingsError

        if self.lr_range is not None and not (0 < self.lr_range[0] <= self.lr_range[1]):
            raise SettingsError(f"SearchConfig: lr_range must be 0 < lo <= hi, got {self.lr_range}")
        if any(b < 1 for b in self.batch_sizes) or any(lr <= 0 for lr in self.extra_lrs):
            raise SettingsError("SearchConfig: batch_sizes and extra_lrs must be positive")
        if not self.units or any(u < 1 for u in self.units):
            raise SettingsError(f"SearchConfig: units must be positive, got {self.units}")
        if not self.convs or any(c < 0 for c in self.convs):
            raise SettingsError(f"SearchConfig: convs must be >= 0 (0: no front end), got {self.convs}")
        if not self.fcns or any(c < 0 for c in self.fcns):
            raise SettingsError(f"SearchConfig: fcns must be >= 0 (0: no FCN branch), got {self.fcns}")


#: The study's exact protocol: every architecture at lr 1e-4 for 20 epochs (batch 32), the winner
#: retrained at lr 1e-5 for 30 epochs; no early stopping (the best epoch is kept).
STUDY_SEARCH = SearchConfig(
    select=TrainConfig(lr=1e-4, epochs=20, batch_size=32, patience=0),
    final=TrainConfig(lr=1e-5, epochs=30, batch_size=32, patience=0),
    lr_range=None,
    extra_lrs=(),
    extra_lr_share=0.0,
    batch_sizes=(),
)

#: The panel estimators' default search (:class:`~lnpstore.models.lstm.LSTMClassifier` and
#: ``LSTMRegressor`` on any data): the study's space with the FCN branch of 64 filters beside every LSTM
#: (LSTM-FCN, Karim et al. 2017). Measured with ``benchmarks/timeseries_public.py`` (16 trials, series
#: averaged to at most 64 steps): ArrowHead 0.806 and GunPoint 1.000 accuracy, where the plain LSTM
#: scored 0.509-0.640 and 0.767 with the same pooling. The study's pipeline keeps the plain network.
PANEL_SEARCH = SearchConfig(fcns=(64,))

#: The study's single-model setting (lr 1e-5, 30 epochs): it does not leave the constant prediction on
#: most data (kept to reproduce the study, and as the failing baseline of the tests).
STUDY_TRAIN = TrainConfig(lr=1e-5, epochs=30, batch_size=32, patience=0)


@dataclass(frozen=True)
class Trial:
    """One sampled point of the search: an architecture, a learning rate and a batch size."""

    arch: LSTMConfig
    lr: float
    batch_size: int


def sample_configs(n_samples: int, seed: int, units: tuple[int, ...] = UNITS) -> list[LSTMConfig]:
    """``n_samples`` architectures drawn uniformly from the study's space (numpy Generator(seed));
    ``units`` narrows the units choices (the study's are 32/64/128/256)."""
    rng = np.random.default_rng(seed)
    return [_draw_arch(rng, units) for _ in range(n_samples)]


def _draw_arch(rng: np.random.Generator, units: tuple[int, ...]) -> LSTMConfig:
    return LSTMConfig(
        units=int(rng.choice(units)),
        layers=int(rng.choice(LAYERS)),
        bidirectional=bool(rng.integers(2)),
        dense=bool(rng.integers(2)),
        dropout=float(rng.choice(RATES)),
        recurrent_dropout=float(rng.choice(RATES)),
    )


def sample_trials(
    n_samples: int, seed: int, search: SearchConfig | None = None, configs: list[LSTMConfig] | None = None
) -> list[Trial]:
    """``n_samples`` trials (or one per given architecture): architecture, learning rate, batch size."""
    sc = search or SearchConfig()
    archs = configs if configs is not None else sample_configs(n_samples, seed, units=sc.units)
    if configs is None and sc.convs != (0,):  # own stream: the other draws stay those of sample_configs
        conv_rng = np.random.default_rng([seed, 23])
        archs = [a.replace(conv=int(conv_rng.choice(sc.convs))) for a in archs]
    if configs is None and sc.fcns != (0,):  # own stream too
        fcn_rng = np.random.default_rng([seed, 29])
        archs = [a.replace(fcn=int(fcn_rng.choice(sc.fcns))) for a in archs]
    rng = np.random.default_rng([seed, 17])  # separate stream: the architectures match sample_configs
    out = []
    for a in archs:
        lr = sc.select.lr
        if sc.extra_lrs and rng.uniform() < sc.extra_lr_share:
            lr = float(rng.choice(sc.extra_lrs))
        elif sc.lr_range is not None:
            lo, hi = np.log(sc.lr_range[0]), np.log(sc.lr_range[1])
            lr = float(np.exp(rng.uniform(lo, hi)))
        bs = int(rng.choice(sc.batch_sizes)) if sc.batch_sizes else sc.select.batch_size
        out.append(Trial(a, lr, bs))
    return out


def rungs_of(total: int, sc: SearchConfig) -> list[int]:
    """Epoch counts after which the trials are ranked: rung_epochs * eta**k below ``total``, then total."""
    if not sc.halving or total <= 0:
        return [max(total, 0)]
    out, r = [], sc.rung_epochs
    while r < total:
        out.append(r)
        r *= sc.eta
    return out + [total]


def _width_limit(sc: SearchConfig) -> int:
    import jax

    return sc.cpu_vmap_width if jax.default_backend() == "cpu" else sc.vmap_width


def lstm_search(
    X: np.ndarray,
    y: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    mode: Mode,
    n_samples: int = 200,
    seed: int = 0,
    search: SearchConfig | None = None,
    configs: list[LSTMConfig] | None = None,
    progress: Callable[[int], None] | None = None,
    t_pad: int | None = None,
    lengths: np.ndarray | None = None,
    lengths_val: np.ndarray | None = None,
    n_classes: int = 2,
) -> tuple[LSTMModel, pl.DataFrame]:
    """Random search; returns the best model (retrained with ``search.final`` if asked) and one row
    per trial.

    X, X_val: (series, steps, channels); ``lengths``/``lengths_val``: real steps per series (None: all).
    y: 0/1, class index 0..n_classes-1 (classify) or value (regress). Inputs are standardised per
    channel with the training rows' statistics. Trials are ranked by their best validation loss.
    ``progress(n)`` is called with the number of trials each call trained. ``t_pad`` pads the steps to
    that length (masked), so checkpoints t <= t_pad share compiled programs.
    """
    sc = search or SearchConfig()
    _check_panel(X, y, "X")
    _check_panel(X_val, y_val, "X_val")
    trials_in = sample_trials(n_samples, seed, sc, configs)
    if not trials_in:
        raise ValueError("the search has no trial: n_samples must be >= 1")
    run = _Search(X, y, X_val, y_val, mode, sc, trials_in, seed, t_pad, lengths, lengths_val, n_classes)
    for r_end in rungs_of(sc.select.epochs, sc):
        run.train_rung(r_end, progress)
        if sc.halving and r_end < sc.select.epochs:
            run.halve()
    winner = run.winner()
    return run.final_model(winner), run.trials_table(winner)


class _Search:
    """The state of one random search: standardised data, the trials' keys and rates, their training
    states, best losses and epochs, and which are still alive (successive halving)."""

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
        mode: Mode,
        sc: SearchConfig,
        trials_in: list,
        seed: int,
        t_pad: int | None,
        lengths: np.ndarray | None,
        lengths_val: np.ndarray | None,
        n_classes: int,
    ) -> None:
        import jax

        self.mode, self.sc, self.trials_in, self.seed = mode, sc, trials_in, seed
        self.t_pad, self.n_classes = t_pad, n_classes
        self.n = n = len(trials_in)
        self.n_out = n_classes if (mode == "classify" and n_classes > 2) else 1
        self.mean, self.std = standardizer(X, lengths)
        self._xy = (
            ((np.asarray(X, np.float32) - self.mean) / self.std).astype(np.float32),
            y,
            ((np.asarray(X_val, np.float32) - self.mean) / self.std).astype(np.float32),
            y_val,
        )
        self._lengths = (lengths, lengths_val)
        self._data_by_bs: dict[int, Any] = {}
        base = jax.random.PRNGKey(seed)
        self.keys = np.stack([np.asarray(jax.random.fold_in(base, i)) for i in range(n)])
        self.rates = np.array([[t.arch.dropout, t.arch.recurrent_dropout] for t in trials_in], np.float32)
        self.lrs = np.array([t.lr for t in trials_in], np.float32)
        self.width = _width_limit(sc)
        self.best_loss = np.full(n, np.inf)
        self.best_epoch = np.zeros(n, np.int64)
        self.trained = np.zeros(n, np.int64)  # epochs the trial ran
        self.budget = np.zeros(n, np.int64)  # epochs the trial was given (a stopped trial ran fewer)
        self.stopped = np.zeros(n, bool)
        self.alive = np.ones(n, bool)
        self.groups: dict[tuple, list[int]] = {}
        for i, t in enumerate(trials_in):
            key = (t.arch.shape, t.batch_size) if sc.cache_compiles else ("trial", i)
            self.groups.setdefault(key, []).append(i)
        self.trainers: dict[tuple, _Trainer] = {}
        self.states: dict[int, Any] = {}  # trial -> its (unstacked) state
        self.gwidth: dict[tuple, int] = {}

    def data(self, bs: int) -> Any:
        """Training and validation batches at batch size ``bs`` (prepared once per size)."""
        if bs not in self._data_by_bs:
            Xs, y, Xvs, y_val = self._xy
            self._data_by_bs[bs] = _prepare(
                Xs,
                y,
                Xvs,
                y_val,
                self.mode,
                bs,
                t_pad=self.t_pad,
                lengths=self._lengths[0],
                lengths_val=self._lengths[1],
                n_classes=self.n_classes,
            )
        return self._data_by_bs[bs]

    def width_of(self, n_todo: int) -> int:
        """A power of 2 (<= the limit): few distinct widths, so few compiles across searches."""
        w = 1
        while w < min(self.width, n_todo):
            w *= 2
        return min(w, self.width)

    def trainer(self, gkey: tuple, i: int) -> _Trainer:
        """The compiled trainer of a group of trials that share shape and batch size."""
        if gkey not in self.trainers:
            t = self.trials_in[i]
            self.trainers[gkey] = _Trainer(
                t.arch,
                self.mode,
                self.data(t.batch_size),
                n_out=self.n_out,
                patience=self.sc.select.patience,
                fused=self.sc.fused,
                cached=self.sc.cache_compiles,
            )
        return self.trainers[gkey]

    def train_rung(self, r_end: int, progress: Callable[[int], None] | None) -> None:
        """Train every live, unstopped trial up to epoch ``r_end``, group by group, ``width`` at a time."""
        for gkey, members in self.groups.items():
            todo = [i for i in members if self.alive[i] and not self.stopped[i] and self.budget[i] < r_end]
            for i in members:  # a stopped trial needs no more epochs: it counts as done
                if self.alive[i] and self.stopped[i]:
                    self.budget[i] = r_end
            if not todo:
                continue
            tr = self.trainer(gkey, members[0])
            # the group keeps its first width through the rungs (padded): no compile per rung
            w = self.gwidth.setdefault(gkey, self.width_of(len(todo)))
            for c0 in range(0, len(todo), w):
                self._train_chunk(tr, todo[c0 : c0 + w], w, r_end)
                if progress is not None:
                    progress(len(todo[c0 : c0 + w]))

    def _train_chunk(self, tr: _Trainer, chunk: list[int], w: int, r_end: int) -> None:
        import jax

        idx = chunk + [chunk[-1]] * (w - len(chunk))  # pad: fixed width, one compile
        if any(i not in self.states for i in idx):
            st = tr.init(self.keys[idx], self.rates[idx], self.lrs[idx])
        else:
            st = jax.tree_util.tree_map(lambda *a: np.stack(a), *[self.states[i] for i in idx])
        st, _ = tr.train(st, r_end - int(self.budget[chunk[0]]))
        st = jax.device_get(st)
        for j, i in enumerate(chunk):
            self.states[i] = jax.tree_util.tree_map(lambda a, j=j: a[j], st)
            self.best_loss[i] = float(st["best_loss"][j])
            self.best_epoch[i] = int(st["best_epoch"][j])
            self.trained[i] = int(st["epoch"][j])
            self.stopped[i] = bool(st["stopped"][j])
            self.budget[i] = r_end

    def halve(self) -> None:
        """Successive halving: keep the best 1/eta of the live trials by validation loss."""
        idx_alive = np.flatnonzero(self.alive)
        keep = max(1, math.ceil(len(idx_alive) / self.sc.eta))
        order = idx_alive[np.argsort(self.best_loss[idx_alive], kind="stable")]
        self.alive[order[keep:]] = False
        for i in order[keep:]:
            self.states.pop(int(i), None)  # free memory of dropped trials

    def winner(self) -> int:
        """The live trial with the lowest best validation loss."""
        losses = np.where(np.isfinite(self.best_loss), self.best_loss, np.inf)
        full = np.flatnonzero(self.alive)
        return int(full[np.argmin(losses[full])])

    def trials_table(self, winner: int) -> pl.DataFrame:
        """One row per trial: its architecture, learning rate, batch size, losses and fate."""
        t_in, n = self.trials_in, self.n
        return pl.DataFrame(
            {
                "trial": np.arange(n, dtype=np.int32),
                **{
                    k: [getattr(t.arch, k) for t in t_in]
                    for k in ("units", "layers", "bidirectional", "dense", "conv", "fcn")
                },
                "dropout": [t.arch.dropout for t in t_in],
                "recurrent_dropout": [t.arch.recurrent_dropout for t in t_in],
                "lr": [t.lr for t in t_in],
                "batch_size": [t.batch_size for t in t_in],
                "val_loss": self.best_loss,
                "best_epoch": self.best_epoch,
                "epochs_trained": self.trained,
                "pruned": ~self.alive,
                "patience_stopped": self.stopped,
                "stopped_early": self.trained < self.sc.select.epochs,
                "seed": [self.seed] * n,
                "selected": np.arange(n) == winner,
            }
        )

    def final_model(self, winner: int) -> LSTMModel:
        """The winner as a model: retrained with ``search.final`` when it has epochs, else as searched."""
        import jax

        sc, win = self.sc, self.trials_in[winner]
        model = LSTMModel(
            self.mode,
            arch=win.arch,
            train=sc.select.replace(lr=win.lr, batch_size=win.batch_size),
            seed=self.seed,
            n_classes=self.n_classes,
        )
        model.mean_, model.std_ = self.mean, self.std
        model.t_pad_ = self.t_pad
        # retrain at the width the winner's group was trained at (padded copies): an already compiled program
        w_final = next(w for g, w in self.gwidth.items() if winner in self.groups[g])
        st = jax.tree_util.tree_map(lambda a: np.stack([np.asarray(a)] * w_final), self.states[winner])
        if sc.final.epochs > 0:
            fc = sc.final
            tr = _Trainer(
                win.arch,
                self.mode,
                self.data(fc.batch_size),
                n_out=self.n_out,
                patience=fc.patience,
                fused=sc.fused,
                cached=sc.cache_compiles,
            )
            st = {**st, "params": st["best_params"], "lr": np.full(w_final, fc.lr, np.float32)}
            st, vls = tr.train(st, fc.epochs, restart=True)
            model.train_config = fc
            model.history_ = [float(v) for v in np.asarray(vls)[:, 0] if np.isfinite(v)]
        model._take(jax.device_get(st), 0)
        model.search_val_loss_ = float(self.best_loss[winner])  # type: ignore[attr-defined]
        model.search_best_epoch_ = int(self.best_epoch[winner])  # type: ignore[attr-defined]
        return model


TRIAL_KEYS = (
    "units",
    "layers",
    "bidirectional",
    "dense",
    "conv",
    "fcn",
    "dropout",
    "recurrent_dropout",
    "lr",
    "batch_size",
    "best_epoch",
    "epochs_trained",
)


def trial_configs(trials: pl.DataFrame) -> list[str]:
    """The trials' hyper-parameters as JSON strings (for the store's ``search.config``)."""
    cols = [c for c in TRIAL_KEYS if c in trials.columns]
    return [json.dumps(r) for r in trials.select(cols).to_dicts()]


__all__ = [
    "PANEL_SEARCH",
    "STUDY_SEARCH",
    "STUDY_TRAIN",
    "SearchConfig",
    "Trial",
    "lstm_search",
    "rungs_of",
    "sample_configs",
    "sample_trials",
    "trial_configs",
]
