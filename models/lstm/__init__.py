"""LSTM on panels (series x steps x channels), with flax.linen + optax, and a random search.

One job per module:

- :mod:`~lnpstore.models.lstm.net`: the network (:func:`lstm_net`) and :class:`LSTMConfig`
- :mod:`~lnpstore.models.lstm.train`: the training loop (trials of one shape side by side, early
  stopping), :class:`TrainConfig` and the fitted :class:`LSTMModel`
- :mod:`~lnpstore.models.lstm.search`: the random search (:func:`lstm_search`, :class:`SearchConfig`,
  the study's protocol :data:`STUDY_SEARCH`, the panel estimators' default :data:`PANEL_SEARCH`)
- :mod:`~lnpstore.models.lstm.estimator`: the scikit-learn-style :class:`LSTMClassifier` and
  :class:`LSTMRegressor`
"""

from __future__ import annotations

from lnpstore.models.lstm.estimator import (
    POOL_STATS,
    LSTMClassifier,
    LSTMEstimator,
    LSTMRegressor,
    pool_factor,
    pool_steps,
)
from lnpstore.models.lstm.net import CONVS, LAYERS, RATES, UNITS, LSTMConfig, lstm_net
from lnpstore.models.lstm.search import (
    PANEL_SEARCH,
    STUDY_SEARCH,
    STUDY_TRAIN,
    SearchConfig,
    Trial,
    lstm_search,
    rungs_of,
    sample_configs,
    sample_trials,
    trial_configs,
)
from lnpstore.models.lstm.train import (
    TRACES,
    LSTMModel,
    TrainConfig,
    _Trainer,  # noqa: F401  (benchmarks/timeseries.py times it)
    class_weights,
    clear_compiled,
    padded_size,
    standardizer,
)

__all__ = [
    "CONVS",
    "LAYERS",
    "LSTMClassifier",
    "LSTMConfig",
    "LSTMEstimator",
    "LSTMModel",
    "LSTMRegressor",
    "RATES",
    "PANEL_SEARCH",
    "POOL_STATS",
    "STUDY_SEARCH",
    "STUDY_TRAIN",
    "SearchConfig",
    "TRACES",
    "TrainConfig",
    "Trial",
    "UNITS",
    "class_weights",
    "clear_compiled",
    "lstm_net",
    "lstm_search",
    "padded_size",
    "pool_factor",
    "pool_steps",
    "rungs_of",
    "sample_configs",
    "sample_trials",
    "standardizer",
    "trial_configs",
]
