"""scikit-learn-style LSTM estimators on panels: :class:`LSTMClassifier` and :class:`LSTMRegressor`.

::

    from lnpstore.models.lstm import LSTMClassifier

    clf = LSTMClassifier(n_samples=8).fit(X_train, y_train)  # X: (n_series, n_steps, n_channels)
    clf.score(X_test, y_test)

Binary and multi-class labels of any type, regression targets; series of unequal length; a
validation part split off inside ``fit`` when none is given. By default a random search
(:func:`lnpstore.models.lstm.search.lstm_search`) over the study's architectures, learning rates and
batch sizes; with ``arch`` given, one network trained with ``train`` (no search).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lnpstore.models.lstm.net import LSTMConfig
from lnpstore.models.lstm.search import PANEL_SEARCH, SearchConfig, lstm_search
from lnpstore.models.lstm.train import LSTMModel, TrainConfig
from lnpstore.models.panel import PanelEstimator, pad_steps


def pool_factor(n_steps: int, max_steps: int | None) -> int:
    """Window (steps) that brings ``n_steps`` down to at most ``max_steps`` (1: no pooling)."""
    if not max_steps or n_steps <= max_steps:
        return 1
    return -(-n_steps // max_steps)


#: The stats :func:`pool_steps` can keep of each window, per channel.
_POOL_STAT_NAMES = ("mean", "min", "max")
#: What the estimators keep by default: every one of them.
POOL_STATS: tuple[str, ...] = _POOL_STAT_NAMES


def pool_steps(
    X: np.ndarray, lengths: np.ndarray | None, factor: int, stats: tuple[str, ...] = ("mean",)
) -> tuple[np.ndarray, np.ndarray | None]:
    """Each window of ``factor`` steps (padding steps excluded) of X (series, steps, channels) reduced
    to ``stats`` ("mean", "min", "max") per channel: channels ``C * len(stats)``, ordered by stat then
    channel; lengths (real steps per series) become ``ceil(length / factor)``. A window of padding
    only is 0. ``factor`` 1: X unchanged (its channels too)."""
    unknown = [s for s in stats if s not in _POOL_STAT_NAMES]
    if unknown or not stats:
        raise ValueError(f"pool stats must be some of {_POOL_STAT_NAMES}, got {stats!r} ({unknown})")
    if factor <= 1:
        return X, lengths
    n, T, C = X.shape
    T2 = -(-T // factor)
    L = np.full(n, T, np.int64) if lengths is None else np.asarray(lengths, np.int64)
    live = (np.arange(T2 * factor)[None, :] < L[:, None]).astype(np.float32)
    Xp = np.zeros((n, T2 * factor, C), np.float32)
    Xp[:, :T] = np.nan_to_num(np.asarray(X, np.float32))
    sums = (Xp * live[:, :, None]).reshape(n, T2, factor, C).sum(axis=2)
    counts = live.reshape(n, T2, factor).sum(axis=2)[:, :, None]
    windows = Xp.reshape(n, T2, factor, C)
    real = live.reshape(n, T2, factor)[:, :, :, None] > 0
    some = counts > 0
    by_stat = {
        "mean": lambda: sums / np.maximum(counts, 1.0),
        "min": lambda: np.where(some, np.where(real, windows, np.inf).min(axis=2), 0.0),
        "max": lambda: np.where(some, np.where(real, windows, -np.inf).max(axis=2), 0.0),
    }
    pooled = np.concatenate([by_stat[s]() for s in stats], axis=2).astype(np.float32)
    new_l = -(-L // factor)
    return pooled, (None if lengths is None else new_l.astype(np.asarray(lengths).dtype))


#: Bag size of the panel LSTM in regression when ``n_bags`` is not given (see :class:`LSTMEstimator`).
REGRESS_BAGS = 5


class LSTMEstimator(PanelEstimator):
    """LSTM on panels (``mode`` "classify" or "regress"); see the module docstring.

    Parameters
    ----------
    mode : "classify" (class-weighted cross-entropy) or "regress" (MSE on the standardised target).
    n_samples : trials of the random search (ignored when ``arch`` is given).
    search : :class:`SearchConfig` (None: :data:`PANEL_SEARCH`, the study's space with an FCN branch
        beside each LSTM, early stopping with patience 20).
    arch, train : one architecture trained with one :class:`TrainConfig` instead of a search.
    val_fraction : share of the series held out for validation when ``fit`` gets no ``X_val``.
    max_steps : longer series are pooled over windows of ``ceil(steps / max_steps)`` steps before the
        network (64, the default; None: never). Recurrent steps are sequential, so this bounds the time
        per epoch. The study's series (20 frames) are never pooled.
    pool_stats : what each window keeps per channel (:func:`pool_steps`): by default its mean, minimum
        and maximum (:data:`POOL_STATS`), so a window's sharp peaks and dips survive the pooling;
        ``("mean",)``: the mean only (before 2026-11-30). Measured with
        ``benchmarks/timeseries_public.py`` (defaults otherwise, one run each, 2 cores), accuracy with
        the extrema (mean only): OSULeaf (427 steps -> 62) 0.682 (0.583; 1-NN-DTW 0.591), ArrowHead
        0.811 (0.806), GunPoint 0.993 (1.000), BasicMotions 0.975 (1.000). Where windows are flat the
        extrema only repeat the mean and can hurt: a planted panel with each frame repeated 8 times
        scored 0.72-0.88 with them and 0.90-0.98 without (fixed 32-unit network, lr 1e-2, 3 seeds).
    n_bags : > 1: after the search, the chosen setting (architecture, learning rate, batch size) is
        trained again on ``n_bags`` folds of every row (training and validation), each stopped early on
        its own held-out fold, and predictions average the members' scores (``members_``). On small data
        one validation part is a noisy judge; measured on CardanoSentiment (74 series), 5 such members of
        a fixed LSTM scored RMSE 0.2886 where single members scored 0.283-0.310 (training mean 0.3003).
        None (the default): :data:`REGRESS_BAGS` (5) for regression, 1 (the search's winner alone) for
        classification. Why by mode: the squared error of an average is at most the members' average
        squared error (it is convex), so a bag cannot lose on the loss regression is judged by; accuracy
        has no such bound. Measured with ``benchmarks/timeseries_public.py``: CardanoSentiment RMSE 0.2946
        with 5 bags, 0.3103 without (the training mean: 0.3003); OSULeaf accuracy 0.566 with 5 bags,
        0.583 without.
    seed : seed of the split, the sampling and the initialisation.
    id_col, time_col : the columns of a long polars frame X.
    """

    def __init__(
        self,
        mode: str = "classify",
        *,
        n_samples: int = 16,
        search: SearchConfig | None = None,
        arch: LSTMConfig | None = None,
        train: TrainConfig | None = None,
        val_fraction: float = 0.2,
        max_steps: int | None = 64,
        pool_stats: tuple[str, ...] = POOL_STATS,
        n_bags: int | None = None,
        seed: int = 0,
        id_col: str = "id",
        time_col: str = "time",
    ):
        self.mode = mode
        self.n_samples = n_samples
        self.search = search
        self.arch = arch
        self.train = train
        self.val_fraction = val_fraction
        self.max_steps = max_steps
        self.pool_stats = pool_stats
        self.n_bags = n_bags
        self.seed = seed
        self.id_col = id_col
        self.time_col = time_col

    def _fit_panel(self, X, L, y, Xv, Lv, yv) -> None:
        mode = self._mode()
        self.pool_factor_ = pool_factor(X.shape[1], self.max_steps)
        self.pool_stats_ = tuple(self.pool_stats)
        (X, L), (Xv, Lv) = self._pool(X, L), self._pool(Xv, Lv)
        n_classes = len(self.classes_) if mode == "classify" else 1
        if mode == "regress":  # the loss sees a standardised target; predictions are rescaled
            self.y_mean_, self.y_std_ = float(np.mean(y)), float(np.std(y)) or 1.0
            y, yv = (y - self.y_mean_) / self.y_std_, (yv - self.y_mean_) / self.y_std_
        if self.arch is not None:
            m = LSTMModel(mode, arch=self.arch, train=self.train, seed=self.seed, n_classes=n_classes)
            self.model_ = m.fit(X, y, Xv, yv, lengths=L, lengths_val=Lv)
            self.trials_ = None
        else:
            self.model_, self.trials_ = lstm_search(
                X,
                y,
                Xv,
                yv,
                mode=mode,  # type: ignore[arg-type]
                n_samples=self.n_samples,
                seed=self.seed,
                search=self.search if self.search is not None else PANEL_SEARCH,
                lengths=L,
                lengths_val=Lv,
                n_classes=n_classes,
            )
        self.n_bags_ = self._n_bags()
        self.members_ = self._bag(X, L, y, Xv, Lv, yv, n_classes) if self.n_bags_ > 1 else []
        self.mean_, self.std_ = self.model_.mean_, self.model_.std_
        self.best_epoch_ = self.model_.best_epoch_
        self.val_loss_ = self.model_.val_loss_
        self.history_ = self.model_.history_

    def _n_bags(self) -> int:
        """``n_bags`` as given, or the mode's default (see ``n_bags``)."""
        if self.n_bags is None:
            return REGRESS_BAGS if self._mode() == "regress" else 1
        if self.n_bags < 1:
            raise ValueError(f"n_bags must be >= 1 (1: no bag) or None, got {self.n_bags}")
        return int(self.n_bags)

    def _bag(self, X, L, y, Xv, Lv, yv, n_classes: int) -> list[LSTMModel]:
        """``n_bags`` models of the winner's setting, one per fold of all rows (see ``n_bags``)."""
        import warnings

        from sklearn.model_selection import KFold, StratifiedKFold

        T = max(X.shape[1], Xv.shape[1])
        Xa, ya = np.concatenate([pad_steps(X, T), pad_steps(Xv, T)]), np.concatenate([y, yv])
        La = None if L is None or Lv is None else np.concatenate([L, Lv])
        split = (StratifiedKFold if self._mode() == "classify" else KFold)(
            self.n_bags_, shuffle=True, random_state=self.seed
        )
        win = self.model_
        members = []
        with warnings.catch_warnings():  # a class rarer than n_bags: some folds lack it (sklearn warns)
            warnings.simplefilter("ignore", UserWarning)
            folds = list(split.split(np.zeros(len(ya)), ya))
        for i, (a, b) in enumerate(folds):
            m = LSTMModel(
                self._mode(),
                arch=win.arch,
                train=win.train_config,
                seed=self.seed + 1 + i,
                n_classes=n_classes,
            )
            la, lb = (None, None) if La is None else (La[a], La[b])
            members.append(m.fit(Xa[a], ya[a], Xa[b], ya[b], lengths=la, lengths_val=lb))
        return members

    @property
    def _fitted_pool_stats(self) -> tuple[str, ...]:
        """The pool stats the model was fitted with (a model fitted before they existed: the mean)."""
        return getattr(self, "pool_stats_", ("mean",))

    def _pool(self, X, L) -> tuple[np.ndarray, np.ndarray | None]:
        """X and lengths as the network reads them (pooled to at most ``max_steps``)."""
        return pool_steps(X, L, self.pool_factor_, self._fitted_pool_stats)

    def _decision(self, X, L) -> np.ndarray:
        X, L = self._pool(X, L)
        X = pad_steps(X, self.model_.t_pad_ or 0)
        if self.members_:  # the bag: the members' scores averaged
            z = np.mean([m.decision_function(X, lengths=L) for m in self.members_], axis=0)
        else:
            z = self.model_.decision_function(X, lengths=L)
        if self._mode() == "regress":
            return z * self.y_std_ + self.y_mean_
        return z

    def config(self) -> dict[str, Any]:
        """The fitted model's settings and chosen hyper-parameters (JSON-serialisable)."""
        self._check_fitted()
        return {
            **self.model_.config(),
            "classes": getattr(self, "classes_", np.array([])).tolist(),
            "pool_factor": self.pool_factor_,  # steps pooled per network input step (max_steps)
            "pool_stats": list(self._fitted_pool_stats),
            "n_bags": self.n_bags_,
            "bag_best_epochs": [m.best_epoch_ for m in self.members_],
        }


class LSTMClassifier(LSTMEstimator):
    """:class:`LSTMEstimator` with ``mode='classify'`` (binary or multi-class, any label type)."""

    mode = "classify"

    def __init__(
        self,
        *,
        n_samples: int = 16,
        search: SearchConfig | None = None,
        arch: LSTMConfig | None = None,
        train: TrainConfig | None = None,
        val_fraction: float = 0.2,
        max_steps: int | None = 64,
        pool_stats: tuple[str, ...] = POOL_STATS,
        n_bags: int | None = None,
        seed: int = 0,
        id_col: str = "id",
        time_col: str = "time",
    ):
        super().__init__(
            "classify",
            n_samples=n_samples,
            search=search,
            arch=arch,
            train=train,
            val_fraction=val_fraction,
            max_steps=max_steps,
            pool_stats=pool_stats,
            n_bags=n_bags,
            seed=seed,
            id_col=id_col,
            time_col=time_col,
        )


class LSTMRegressor(LSTMEstimator):
    """:class:`LSTMEstimator` with ``mode='regress'``."""

    mode = "regress"

    def __init__(
        self,
        *,
        n_samples: int = 16,
        search: SearchConfig | None = None,
        arch: LSTMConfig | None = None,
        train: TrainConfig | None = None,
        val_fraction: float = 0.2,
        max_steps: int | None = 64,
        pool_stats: tuple[str, ...] = POOL_STATS,
        n_bags: int | None = None,
        seed: int = 0,
        id_col: str = "id",
        time_col: str = "time",
    ):
        super().__init__(
            "regress",
            n_samples=n_samples,
            search=search,
            arch=arch,
            train=train,
            val_fraction=val_fraction,
            max_steps=max_steps,
            pool_stats=pool_stats,
            n_bags=n_bags,
            seed=seed,
            id_col=id_col,
            time_col=time_col,
        )


__all__ = [
    "POOL_STATS",
    "REGRESS_BAGS",
    "LSTMClassifier",
    "LSTMEstimator",
    "LSTMRegressor",
    "pool_factor",
    "pool_steps",
]
