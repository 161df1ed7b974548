"""tsfresh features -> relevance selection -> PCA -> XGBoost, on panels (cases x frames x channels).

Pipeline of :class:`TsfreshXGB.fit` (everything fitted on the training part only):

1. tsfresh extraction of every training series with ``fc_parameters`` (``"efficient"`` =
   ``EfficientFCParameters``, ``"fast"`` = Efficient minus :data:`FAST_EXCLUDE`, the calculators that
   take most of the time on short series (measured by ``benchmarks/timeseries.py``), ``"minimal"``, or
   a dict ``{calculator: params}``); NaN/inf imputed with the training columns' median/max/min.
2. ``tsfresh.select_features`` (Benjamini-Yekutieli FDR) on the training features and targets. When it
   keeps nothing, the ``fallback_k`` features with the lowest p-value are used instead (logged with
   ``logging.warning`` and recorded as ``selection_fallback``).
3. StandardScaler + PCA to ``n_components`` (32).
4. XGBoost random search (``n_samples`` configurations, up to 300 trees, early stopping after 10
   rounds on the validation part); the configuration with the lowest validation loss is kept.

Validation and test series are extracted for the *selected* features only (tsfresh ``from_columns``
-> ``kind_to_fc_parameters``), and every extraction is cached by content (series bytes + settings),
in memory and optionally as Parquet in ``cache_dir``, so nothing is extracted twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import polars as pl

log = logging.getLogger(__name__)

Mode = Literal["classify", "regress"]

#: Calculators dropped from EfficientFCParameters for ``fc_parameters="fast"``. Measured by
#: ``benchmarks/timeseries.py`` (10-frame series): change_quantiles takes ~50% of Efficient's time,
#: friedrich_coefficients ~7%, max_langevin_fixed_point ~6%; the other seven listed 1-2% each.
FAST_EXCLUDE: tuple[str, ...] = (
    "agg_linear_trend",
    "change_quantiles",
    "augmented_dickey_fuller",
    "partial_autocorrelation",
    "number_cwt_peaks",
    "cwt_coefficients",
    "friedrich_coefficients",
    "max_langevin_fixed_point",
    "lempel_ziv_complexity",
    "permutation_entropy",
)


def fc_settings(fc_parameters: str | Mapping[str, Any]) -> dict[str, Any]:
    """The tsfresh ``default_fc_parameters`` dict of a setting name (or a dict, returned as is)."""
    from tsfresh.feature_extraction import EfficientFCParameters, MinimalFCParameters

    if isinstance(fc_parameters, Mapping):
        return dict(fc_parameters)
    if fc_parameters == "efficient":
        return dict(EfficientFCParameters())
    if fc_parameters == "fast":
        return {k: v for k, v in EfficientFCParameters().items() if k not in FAST_EXCLUDE}
    if fc_parameters == "minimal":
        return dict(MinimalFCParameters())
    raise ValueError(f"fc_parameters must be 'efficient', 'fast', 'minimal' or a dict, not {fc_parameters!r}")


def panel_to_tsfresh(X: np.ndarray, channels: list[str]) -> pd.DataFrame:
    """(cases, frames, channels) -> tsfresh's wide long format: columns id, time, one per channel."""
    n, t, c = X.shape
    df = pd.DataFrame(X.reshape(n * t, c).astype(np.float64), columns=channels)
    df.insert(0, "time", np.tile(np.arange(t), n))
    df.insert(0, "id", np.repeat(np.arange(n), t))
    return df


# ------------------------------------------------------------------------------------------ cache
class FeatureCache:
    """Extracted features keyed by the series' bytes and the calculator settings.

    In memory always; also as ``<key>.parquet`` under ``directory`` when one is given.
    """

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory else None
        self._mem: dict[str, pd.DataFrame] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(X: np.ndarray, channels: list[str], settings: Mapping[str, Any]) -> str:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(X, dtype=np.float32).tobytes())
        h.update(json.dumps([list(X.shape), channels], sort_keys=True).encode())
        h.update(json.dumps(settings, sort_keys=True, default=str).encode())
        return h.hexdigest()[:24]

    def get(self, key: str) -> pd.DataFrame | None:
        if key in self._mem:
            self.hits += 1
            return self._mem[key]
        if self.directory is not None and (self.directory / f"{key}.parquet").exists():
            df = pd.read_parquet(self.directory / f"{key}.parquet")
            self._mem[key] = df
            self.hits += 1
            return df
        self.misses += 1
        return None

    def put(self, key: str, df: pd.DataFrame) -> None:
        self._mem[key] = df
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            from lnpstore.store.atomic import atomic_path

            with atomic_path(self.directory / f"{key}.parquet") as tmp:
                df.to_parquet(tmp)


def extract(
    X: np.ndarray,
    channels: list[str],
    *,
    default_fc_parameters: Mapping[str, Any] | None = None,
    kind_to_fc_parameters: Mapping[str, Any] | None = None,
    n_jobs: int = 0,
    dask_address: str | None = None,
    cache: FeatureCache | None = None,
) -> pd.DataFrame:
    """tsfresh features of every case, one row per case in the order of ``X`` (no imputation)."""
    from tsfresh import extract_features

    settings = {"default": default_fc_parameters, "by_kind": kind_to_fc_parameters}
    key = FeatureCache.key(X, channels, settings)
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    distributor = None
    if dask_address:
        from tsfresh.utilities.distribution import ClusterDaskDistributor

        distributor = ClusterDaskDistributor(dask_address)
    try:
        feats = extract_features(
            panel_to_tsfresh(X, channels),
            column_id="id",
            column_sort="time",
            default_fc_parameters=dict(default_fc_parameters) if default_fc_parameters is not None else None,
            kind_to_fc_parameters=dict(kind_to_fc_parameters) if kind_to_fc_parameters is not None else None,
            n_jobs=n_jobs,
            disable_progressbar=True,
            distributor=distributor,
        )
    finally:
        if distributor is not None:
            distributor.close()
    feats = feats.reindex(np.arange(len(X)))
    feats.index.name = "id"
    feats = feats.astype(np.float64)
    if cache is not None:
        cache.put(key, feats)
    return feats


# ------------------------------------------------------------------------------------------ configs
@dataclass(frozen=True)
class XGBSpace:
    """XGBoost random-search space (uniform draws) and fixed settings."""

    colsample_bytree: tuple[float, float] = (0.3, 0.7)
    gamma: tuple[float, float] = (0.0, 0.5)
    learning_rate: tuple[float, float] = (0.03, 0.3)
    max_depth: tuple[int, int] = (2, 5)
    subsample: tuple[float, float] = (0.4, 0.6)
    n_estimators: int = 300
    early_stopping_rounds: int = 10


def sample_xgb_params(n_samples: int, seed: int, space: XGBSpace | None = None) -> list[dict[str, Any]]:
    """``n_samples`` XGBoost parameter dicts from ``space`` (numpy Generator(seed))."""
    sp = space or XGBSpace()
    rng = np.random.default_rng(seed)
    return [
        {
            "colsample_bytree": float(rng.uniform(*sp.colsample_bytree)),
            "gamma": float(rng.uniform(*sp.gamma)),
            "learning_rate": float(rng.uniform(*sp.learning_rate)),
            "max_depth": int(rng.integers(sp.max_depth[0], sp.max_depth[1] + 1)),
            "subsample": float(rng.uniform(*sp.subsample)),
        }
        for _ in range(n_samples)
    ]


# ------------------------------------------------------------------------------------------ model
def _impute_stats(F: pd.DataFrame) -> dict[str, np.ndarray]:
    v = F.to_numpy(np.float64)
    fin = np.where(np.isfinite(v), v, np.nan)
    with np.errstate(all="ignore"), _quiet_nan_warnings():
        med = np.nanmedian(fin, axis=0)
        hi = np.nanmax(fin, axis=0)
        lo = np.nanmin(fin, axis=0)
    return {k: np.nan_to_num(a, nan=0.0) for k, a in (("median", med), ("max", hi), ("min", lo))}


def _quiet_nan_warnings():
    import warnings

    w = warnings.catch_warnings()
    w.__enter__()
    warnings.simplefilter("ignore", RuntimeWarning)

    class _Ctx:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            w.__exit__(*a)

    return _Ctx()


def _impute(F: pd.DataFrame, stats: dict[str, np.ndarray]) -> pd.DataFrame:
    v = F.to_numpy(np.float64).copy()
    v = np.where(np.isposinf(v), stats["max"], v)
    v = np.where(np.isneginf(v), stats["min"], v)
    v = np.where(np.isnan(v), stats["median"], v)
    return pd.DataFrame(v, index=F.index, columns=F.columns)


class TsfreshXGB:
    """tsfresh -> selection -> PCA -> XGBoost, sklearn-style, on (cases, frames, channels) panels.

    ``fit(X, y, X_val, y_val)``: selection, PCA and the trees see only ``X, y``; ``X_val, y_val``
    only drive early stopping and the choice among the ``n_samples`` XGBoost configurations.
    """

    def __init__(
        self,
        mode: Mode = "classify",
        *,
        fc_parameters: str | Mapping[str, Any] = "efficient",
        n_samples: int = 200,
        n_components: int = 32,
        fdr_level: float = 0.05,
        fallback_k: int = 32,
        space: XGBSpace | None = None,
        seed: int = 0,
        n_jobs: int = 0,
        dask_address: str | None = None,
        cache_dir: str | Path | None = None,
        channels: list[str] | None = None,
    ):
        if mode not in ("classify", "regress"):
            raise ValueError(f"mode must be 'classify' or 'regress', not {mode!r}")
        self.mode: Mode = mode
        self.fc_parameters = fc_parameters
        self.n_samples = n_samples
        self.n_components = n_components
        self.fdr_level = fdr_level
        self.fallback_k = fallback_k
        self.space = space or XGBSpace()
        self.seed = seed
        self.n_jobs = n_jobs
        self.dask_address = dask_address
        self.cache = FeatureCache(cache_dir)
        self.channels = channels
        self.selected_: list[str] = []
        self.selection_fallback_ = False
        self.trials_: pl.DataFrame | None = None
        self.val_loss_ = float("nan")
        self.best_iteration_ = 0
        self.timings_: dict[str, float] = {}

    def _channels(self, X: np.ndarray) -> list[str]:
        if self.channels is not None:
            if len(self.channels) != X.shape[2]:
                raise ValueError(f"{len(self.channels)} channel names for {X.shape[2]} channels")
            return list(self.channels)
        return [f"c{i:02d}" for i in range(X.shape[2])]

    def _extract(self, X: np.ndarray, **kw: Any) -> pd.DataFrame:
        return extract(
            X, self._channels(X), n_jobs=self.n_jobs, dask_address=self.dask_address, cache=self.cache, **kw
        )

    def _select(self, F: pd.DataFrame, y: np.ndarray) -> list[str]:
        """Relevant features of the training part; top-``fallback_k`` by p-value when none is."""
        from tsfresh import select_features
        from tsfresh.feature_selection.relevance import calculate_relevance_table

        task = "classification" if self.mode == "classify" else "regression"
        ys = pd.Series(np.asarray(y), index=F.index)
        varying = F.loc[:, F.nunique() > 1]
        sel: list[str] = []
        if varying.shape[1]:
            sel = list(
                select_features(
                    varying, ys, ml_task=task, fdr_level=self.fdr_level, n_jobs=self.n_jobs
                ).columns
            )
        self.selection_fallback_ = not sel
        if not sel:
            pool = varying if varying.shape[1] else F
            rel = calculate_relevance_table(pool, ys, ml_task=task, n_jobs=self.n_jobs)
            rel = rel.sort_values("p_value", na_position="last", kind="stable")
            sel = list(rel["feature"].iloc[: self.fallback_k])
            log.warning(
                "tsfresh relevance selection kept no feature of %d (fdr_level=%s, %d training cases); "
                "using the %d with the lowest p-value instead (selection_fallback)",
                F.shape[1],
                self.fdr_level,
                len(F),
                len(sel),
            )
        return sel

    def _transform(self, X: np.ndarray) -> np.ndarray:
        from tsfresh.feature_extraction.settings import from_columns

        F = self._extract(X, kind_to_fc_parameters=from_columns(self.selected_))
        F = _impute(F.reindex(columns=self.selected_), self.impute_stats_)
        return self.pca_.transform(self.scaler_.transform(F.to_numpy()))

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> TsfreshXGB:
        import time

        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler

        for name, a, b in (("X", X, y), ("X_val", X_val, y_val)):
            if np.ndim(a) != 3 or len(a) != len(b) or len(a) == 0:
                raise ValueError(
                    f"`{name}` must be non-empty (cases, frames, channels) with one target per case; "
                    f"got shape {np.shape(a)} and {len(b)} targets"
                )
        t0 = time.perf_counter()
        F = self._extract(np.asarray(X, np.float32), default_fc_parameters=fc_settings(self.fc_parameters))
        self.n_extracted_ = F.shape[1]
        t1 = time.perf_counter()
        self.impute_stats_ = _impute_stats(F)
        F = _impute(F, self.impute_stats_)
        self.selected_ = self._select(F, y)
        cols = [F.columns.get_loc(c) for c in self.selected_]
        self.impute_stats_ = {k: v[cols] for k, v in self.impute_stats_.items()}
        Fs = F[self.selected_].to_numpy()
        self.scaler_ = StandardScaler().fit(Fs)
        k = max(1, min(self.n_components, Fs.shape[1], Fs.shape[0]))
        self.pca_ = PCA(n_components=k, random_state=self.seed).fit(self.scaler_.transform(Fs))
        Z = self.pca_.transform(self.scaler_.transform(Fs))
        t2 = time.perf_counter()
        Zv = self._transform(np.asarray(X_val, np.float32))
        t3 = time.perf_counter()
        self._search(Z, np.asarray(y), Zv, np.asarray(y_val))
        t4 = time.perf_counter()
        self.timings_ = {
            "extract_train_s": t1 - t0,
            "select_pca_s": t2 - t1,
            "extract_val_s": t3 - t2,
            "xgb_search_s": t4 - t3,
        }
        return self

    def _search(self, Z: np.ndarray, y: np.ndarray, Zv: np.ndarray, yv: np.ndarray) -> None:
        import xgboost as xgb

        sp = self.space
        params = sample_xgb_params(self.n_samples, self.seed, sp)
        common: dict[str, Any] = {
            "n_estimators": sp.n_estimators,
            "early_stopping_rounds": sp.early_stopping_rounds,
            "tree_method": "hist",
            "n_jobs": max(1, self.n_jobs),
        }
        if self.mode == "classify":
            n1 = float((y > 0.5).sum())
            common |= {"eval_metric": "logloss", "scale_pos_weight": (len(y) - n1) / n1 if n1 else 1.0}
            cls = xgb.XGBClassifier
        else:
            common |= {"eval_metric": "rmse"}
            cls = xgb.XGBRegressor
        rows, best = [], None
        for i, p in enumerate(params):
            m = cls(**p, **common, random_state=self.seed + i)
            m.fit(Z, y, eval_set=[(Zv, yv)], verbose=False)
            loss = float(m.best_score)
            n_trees = m.get_booster().num_boosted_rounds()
            rows.append(
                {
                    "trial": i,
                    **p,
                    "val_loss": loss,
                    "best_iteration": int(m.best_iteration),
                    "n_trees": n_trees,
                    "stopped_early": n_trees < sp.n_estimators,
                    "seed": self.seed + i,
                }
            )
            if best is None or loss < best[0]:
                best = (loss, i, m)
        assert best is not None
        self.val_loss_, self.best_trial_, self.model_ = best
        self.best_iteration_ = int(self.model_.best_iteration)
        self.best_params_ = params[self.best_trial_]
        self.trials_ = pl.DataFrame(rows).with_columns(selected=pl.col("trial") == self.best_trial_)

    def decision_scores(self, X: np.ndarray) -> np.ndarray:
        """P(label 1) (classify) or the value (regress): what the store's ``y_pred`` holds."""
        Z = self._transform(np.asarray(X, np.float32))
        if self.mode == "classify":
            return self.model_.predict_proba(Z)[:, 1].astype(np.float64)
        return self.model_.predict(Z).astype(np.float64)

    predict_score = decision_scores

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, 2) class probabilities (classify only)."""
        if self.mode != "classify":
            raise ValueError("predict_proba is for mode='classify'")
        p = self.decision_scores(X)
        return np.stack([1 - p, p], axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Labels 0/1 (classify) or values (regress)."""
        s = self.decision_scores(X)
        return (s > 0.5).astype(np.int64) if self.mode == "classify" else s

    def config(self) -> dict[str, Any]:
        """Settings, chosen hyper-parameters and selected feature names (JSON-serialisable)."""
        fc = self.fc_parameters if isinstance(self.fc_parameters, str) else dict(self.fc_parameters)
        return {
            "mode": self.mode,
            "fc_parameters": fc,
            "n_samples": self.n_samples,
            "n_components": int(self.pca_.n_components_),
            "fdr_level": self.fdr_level,
            "fallback_k": self.fallback_k,
            "space": asdict(self.space),
            "xgb_params": self.best_params_,
            "best_iteration": self.best_iteration_,
            "n_extracted": self.n_extracted_,
            "selected_features": self.selected_,
            "selection_fallback": self.selection_fallback_,
            "seed": self.seed,
        }

    def save(self, path: str | Path) -> None:
        """XGBoost JSON at ``path``; imputation, scaler, PCA and config (joblib) at ``path + '.joblib'``."""
        import joblib

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.model_.save_model(str(path))
        joblib.dump(
            {
                "config": self.config(),
                "impute": self.impute_stats_,
                "scaler": self.scaler_,
                "pca": self.pca_,
                "channels": self.channels,
            },
            path.with_name(path.name + ".joblib"),
        )


__all__ = [
    "FAST_EXCLUDE",
    "FeatureCache",
    "TsfreshXGB",
    "XGBSpace",
    "extract",
    "fc_settings",
    "sample_xgb_params",
]
