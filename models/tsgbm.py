"""tsfresh features -> relevance selection -> PCA -> XGBoost, on panels (cases x frames x channels).

Pipeline of :class:`TsfreshXGB.fit` (everything fitted on the training part only):

1. tsfresh extraction of every training series with ``fc_parameters`` (``"efficient"`` =
   ``EfficientFCParameters``, ``"fast"`` = Efficient minus :data:`FAST_EXCLUDE`, the calculators that
   take most of the time on short series (measured by ``benchmarks/timeseries.py``), ``"minimal"``, or
   a dict ``{calculator: params}``); NaN/inf imputed with the training columns' median/max/min.
   ``engine="array"`` (default) computes the same features batched (:mod:`lnpstore.models.tsfeatures`,
   tested equal to tsfresh's); ``engine="tsfresh"`` calls tsfresh's ``extract_features``.
2. tsfresh's relevance table (Benjamini-Yekutieli FDR; one-vs-rest per class for multi-class) on the
   training features and targets. When fewer than ``min_features`` are relevant (small data), the
   lowest-p-value features fill up to ``min_features``; the path taken (``"fdr"``, ``"fdr+top_p"``,
   ``"top_p"``) is logged and recorded as ``selection_path``.
3. StandardScaler, then PCA to ``n_components`` (fewer than the training rows) when it is > 0: the
   study's protocol is 32 (:data:`STUDY_PCA_COMPONENTS`, what ``lnpstore run`` uses); the default 0 keeps
   the scaled selected features, as published tsfresh pipelines do. Measured with
   ``benchmarks/timeseries_public.py`` (accuracy, PCA 32 -> none): GunPoint 0.887 -> 0.933, ArrowHead
   0.737 -> 0.743, OSULeaf 0.884 -> 0.888; CardanoSentiment RMSE 0.2985 -> 0.2628.
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
from lnpstore.models.panel import PanelEstimator

log = logging.getLogger(__name__)

#: The study's PCA width before XGBoost (the panel estimators' default is no PCA; see the module doc).
STUDY_PCA_COMPONENTS = 32

Mode = Literal["classify", "regress"]
#: How features are extracted: tsfresh's extract_features (its Dask distributor for clusters), or the
#: array engine (:mod:`lnpstore.models.tsfeatures`: the same features, every series at once; tested
#: equal to tsfresh's to 1e-6 relative).
Engine = Literal["tsfresh", "array"]
ENGINES: tuple[str, ...] = ("tsfresh", "array")

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


def panel_to_tsfresh(X: np.ndarray, channels: list[str], lengths: np.ndarray | None = None) -> pd.DataFrame:
    """(cases, frames, channels) -> tsfresh's wide long format: columns id, time, one per channel.

    ``lengths`` (cases,): real steps per case; the padding steps after them are left out."""
    n, t, c = X.shape
    df = pd.DataFrame(X.reshape(n * t, c).astype(np.float64), columns=channels)
    df.insert(0, "time", np.tile(np.arange(t), n))
    df.insert(0, "id", np.repeat(np.arange(n), t))
    if lengths is not None and (np.asarray(lengths) < t).any():
        df = df[(np.arange(t)[None, :] < np.asarray(lengths)[:, None]).reshape(-1)].reset_index(drop=True)
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
    lengths: np.ndarray | None = None,
    engine: Engine = "tsfresh",
) -> pd.DataFrame:
    """tsfresh features of every case, one row per case in the order of ``X`` (no imputation);
    ``lengths``: real steps per case (padding steps are not extracted). ``engine="array"`` computes
    them with :func:`lnpstore.models.tsfeatures.panel_features` in this process (``n_jobs`` and
    ``dask_address`` are tsfresh's and not used)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    settings: dict[str, Any] = {"default": default_fc_parameters, "by_kind": kind_to_fc_parameters}
    if lengths is not None and (np.asarray(lengths) < X.shape[1]).any():
        settings["lengths"] = np.asarray(lengths).tolist()
    else:
        lengths = None
    if engine != "tsfresh":  # tsfresh's cache keys stay as they were
        settings["engine"] = engine
    key = FeatureCache.key(X, channels, settings)
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    if engine == "array":
        from lnpstore.models.tsfeatures import panel_features

        if dask_address:
            log.info("array engine: features computed in this process (--dask is used by the tsfresh engine)")

        feats = panel_features(
            X,
            channels,
            default_fc_parameters=default_fc_parameters,
            kind_to_fc_parameters=kind_to_fc_parameters,
            lengths=lengths,
        )
        if cache is not None:
            cache.put(key, feats)
        return feats
    from tsfresh import extract_features

    distributor = None
    if dask_address:
        from tsfresh.utilities.distribution import ClusterDaskDistributor

        distributor = ClusterDaskDistributor(dask_address)
    try:
        feats = extract_features(
            panel_to_tsfresh(X, channels, lengths),
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


class _NoPCA:
    """Stands in for the PCA when ``n_components=0``: the identity on ``n`` features."""

    def __init__(self, n: int):
        self.n_components_ = n

    def transform(self, Z: np.ndarray) -> np.ndarray:
        return Z


class TsfreshXGB(PanelEstimator):
    """tsfresh -> selection -> PCA -> XGBoost on panels, a scikit-learn-style estimator
    (:class:`lnpstore.models.panel.PanelEstimator`: ``fit``, ``predict``, ``predict_proba``,
    ``decision_function``, ``score``, ``get_params``, ``classes_``).

    ``fit(X, y, X_val=None, y_val=None)``: selection, PCA and the trees see only the training part;
    the validation part (split off X when not given, ``val_fraction``) only drives early stopping and
    the choice among the ``n_samples`` XGBoost configurations. When the validation part was split off
    X (``refit``, default), selection, PCA and the chosen trees (``best_iteration_ + 1`` of them) are
    then refitted on every row of X (``refitted_``). Binary, multi-class (any label type)
    and regression; series of unequal length (padding steps are not extracted).

    Selection (``selection_path_`` records which path was taken, and it is logged): ``"fdr"`` when
    tsfresh's FDR test (``fdr_level``; per class one-vs-rest for multi-class) keeps at least
    ``min_features`` features; otherwise ``"fdr+top_p"`` / ``"top_p"``: the FDR-relevant features plus
    the lowest-p-value ones up to ``min_features`` (small data: too few rows for the FDR test to keep
    the signal). PCA keeps at most ``n_components`` and fewer than the training rows (``n_components=0``:
    no PCA, the scaled selected features go to XGBoost).

    ``engine``: ``"array"`` (default) extracts with :mod:`lnpstore.models.tsfeatures`, every series at
    once and equal to tsfresh's features (tests/models/test_tsfeatures_array.py); ``"tsfresh"`` runs
    tsfresh's ``extract_features`` (``n_jobs`` processes, or the Dask cluster at ``dask_address``).
    """

    # set by fit (the chosen trial), and by the ``cache`` property
    best_params_: dict[str, Any]
    best_trial_: int
    best_iteration_: int
    _cache: FeatureCache
    _cache_for: str | Path | None

    def __init__(
        self,
        mode: Mode = "classify",
        *,
        fc_parameters: str | Mapping[str, Any] = "efficient",
        n_samples: int = 200,
        n_components: int = 0,
        fdr_level: float = 0.05,
        min_features: int = 32,
        space: XGBSpace | None = None,
        seed: int = 0,
        n_jobs: int = 0,
        dask_address: str | None = None,
        cache_dir: str | Path | None = None,
        channels: list[str] | None = None,
        val_fraction: float = 0.2,
        refit: bool = True,
        id_col: str = "id",
        time_col: str = "time",
        engine: Engine = "array",
    ):
        if mode not in ("classify", "regress"):
            raise ValueError(f"mode must be 'classify' or 'regress', not {mode!r}")
        self.mode: Mode = mode
        self.fc_parameters = fc_parameters
        self.n_samples = n_samples
        self.n_components = n_components
        self.fdr_level = fdr_level
        self.min_features = min_features
        self.space = space
        self.seed = seed
        self.n_jobs = n_jobs
        self.dask_address = dask_address
        self.cache_dir = cache_dir
        self.channels = channels
        self.val_fraction = val_fraction
        self.refit = refit
        self.id_col = id_col
        self.time_col = time_col
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
        self.engine: Engine = engine

    @property
    def cache(self) -> FeatureCache:
        """The extraction cache (in memory, and under ``cache_dir`` when set)."""
        if getattr(self, "_cache", None) is None or self._cache_for != self.cache_dir:
            self._cache, self._cache_for = FeatureCache(self.cache_dir), self.cache_dir
        return self._cache

    def _channels(self, X: np.ndarray) -> list[str]:
        if self.channels is not None:
            if len(self.channels) != X.shape[2]:
                raise ValueError(f"{len(self.channels)} channel names for {X.shape[2]} channels")
            return list(self.channels)
        return [f"c{i:02d}" for i in range(X.shape[2])]

    def _extract(self, X: np.ndarray, lengths: np.ndarray | None = None, **kw: Any) -> pd.DataFrame:
        return extract(
            X,
            self._channels(X),
            n_jobs=self.n_jobs,
            dask_address=self.dask_address,
            cache=self.cache,
            lengths=lengths,
            engine=self.engine,
            **kw,
        )

    def _select(self, F: pd.DataFrame, y: np.ndarray) -> list[str]:
        """Relevant features of the training part (see the class docstring); sets ``selection_path_``."""
        from tsfresh.feature_selection.relevance import calculate_relevance_table

        task = "classification" if self.mode == "classify" else "regression"
        ys = pd.Series(np.asarray(y), index=F.index)
        multiclass = self.mode == "classify" and ys.nunique() > 2
        varying = F.loc[:, F.nunique() > 1]
        pool = varying if varying.shape[1] else F
        with _quiet_nan_warnings():
            rel = calculate_relevance_table(
                pool,
                ys,
                ml_task=task,
                multiclass=multiclass,
                n_significant=1,
                fdr_level=self.fdr_level,
                n_jobs=self.n_jobs,
            )
        pcols = [c for c in rel.columns if c.startswith("p_value")]
        rel = rel.assign(_p=rel[pcols].min(axis=1)).sort_values("_p", na_position="last", kind="stable")
        relevant = list(rel.loc[rel["relevant"].astype(bool), "feature"])
        k = max(1, self.min_features)
        if len(relevant) >= k:
            sel, path = relevant, "fdr"
        else:
            extra = [f for f in rel["feature"] if f not in set(relevant)][: k - len(relevant)]
            sel, path = relevant + extra, ("fdr+top_p" if relevant else "top_p")
        self.selection_path_ = path
        self.n_relevant_ = len(relevant)
        (log.info if path == "fdr" else log.warning)(
            "tsfresh selection: %d of %d features relevant at fdr_level=%s on %d training series%s; "
            "path %r, %d features kept",
            len(relevant),
            F.shape[1],
            self.fdr_level,
            len(F),
            " (multi-class, one-vs-rest)" if multiclass else "",
            path,
            len(sel),
        )
        return sel

    @property
    def selection_fallback_(self) -> bool:
        """True when selection had to add features by p-value (``selection_path_`` is not "fdr")."""
        return getattr(self, "selection_path_", "fdr") != "fdr"

    def _transform(self, X: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        from tsfresh.feature_extraction.settings import from_columns

        F = self._extract(X, lengths, kind_to_fc_parameters=from_columns(self.selected_))
        F = _impute(F.reindex(columns=self.selected_), self.impute_stats_)
        return self.pca_.transform(self.scaler_.transform(F.to_numpy()))

    def _reduce(self, F: pd.DataFrame, y: np.ndarray) -> np.ndarray:
        """Impute, select, scale and PCA fitted on the rows of ``F``; returns their components."""
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler

        F = F.reset_index(drop=True)
        self.impute_stats_ = _impute_stats(F)
        F = _impute(F, self.impute_stats_)
        self.selected_ = self._select(F, y)
        cols = [F.columns.get_loc(c) for c in self.selected_]
        self.impute_stats_ = {k: v[cols] for k, v in self.impute_stats_.items()}
        Fs = F[self.selected_].to_numpy()
        self.scaler_ = StandardScaler().fit(Fs)
        if self.n_components == 0:  # no PCA: the scaled selected features go to XGBoost
            self.pca_ = _NoPCA(Fs.shape[1])
            return self.scaler_.transform(Fs)
        # PCA width: at most n_components, the features, and one less than the rows
        k = max(1, min(self.n_components, Fs.shape[1], Fs.shape[0] - 1))
        self.pca_ = PCA(n_components=k, random_state=self.seed).fit(self.scaler_.transform(Fs))
        return self.pca_.transform(self.scaler_.transform(Fs))

    def _components(self, F: pd.DataFrame) -> np.ndarray:
        """Components of already extracted features (any superset of the selected ones)."""
        F = _impute(F.reindex(columns=self.selected_), self.impute_stats_)
        return self.pca_.transform(self.scaler_.transform(F.to_numpy()))

    def _fit_panel(self, X, L, y, Xv, Lv, yv) -> None:
        import time

        whole = getattr(self, "_split_from", None) if self.refit else None
        full = fc_settings(self.fc_parameters)
        t0 = time.perf_counter()
        if whole is not None:  # the validation rows came from X: extract every row once
            F_all = self._extract(whole[0], whole[1], default_fc_parameters=full)
            F, Fv = F_all.iloc[self.train_index_], F_all.iloc[self.val_index_]
        else:
            F, Fv = self._extract(X, L, default_fc_parameters=full), None
        self.n_extracted_ = F.shape[1]
        t1 = time.perf_counter()
        Z = self._reduce(F, y)
        t2 = time.perf_counter()
        Zv = self._components(Fv) if Fv is not None else self._transform(Xv, Lv)
        t3 = time.perf_counter()
        self._search(Z, np.asarray(y), Zv, np.asarray(yv))
        t4 = time.perf_counter()
        self.refitted_ = False
        if whole is not None:
            # refit on every row: selection, PCA and the chosen trees (best_iteration + 1, no early
            # stopping), as GridSearchCV's refit does; the search's validation figures stay recorded
            self.search_selection_path_ = self.selection_path_
            self._refit(self._reduce(F_all, whole[2]), np.asarray(whole[2]))
            self.refitted_ = True
        self.timings_ = {
            "extract_train_s": t1 - t0,
            "select_pca_s": t2 - t1,
            "extract_val_s": t3 - t2,
            "xgb_search_s": t4 - t3,
            "refit_s": time.perf_counter() - t4,
        }

    def _xgb_setup(self, y: np.ndarray) -> tuple[Any, dict[str, Any], Any]:
        """(XGBoost class, fixed parameters, function: targets -> sample weights or None)."""
        import xgboost as xgb

        common: dict[str, Any] = {"tree_method": "hist", "n_jobs": max(1, self.n_jobs)}
        if self.mode != "classify":
            return xgb.XGBRegressor, common | {"eval_metric": "rmse"}, lambda v: None
        n_classes = len(self.classes_)
        if n_classes == 2:  # the study's class weighting
            n1 = float((y == 1).sum())
            common |= {"eval_metric": "logloss", "scale_pos_weight": (len(y) - n1) / n1 if n1 else 1.0}
            return xgb.XGBClassifier, common, lambda v: None
        counts = np.bincount(y.astype(np.int64), minlength=n_classes).astype(np.float64)
        w = len(y) / (n_classes * np.maximum(counts, 1.0))  # balanced sample weights
        common |= {"eval_metric": "mlogloss", "objective": "multi:softprob", "num_class": n_classes}
        return xgb.XGBClassifier, common, lambda v: w[np.asarray(v, np.int64)]

    def _refit(self, Z: np.ndarray, y: np.ndarray) -> None:
        if self.mode == "classify":
            y = y.astype(np.int64)
        cls, common, weights = self._xgb_setup(y)
        m = cls(
            **self.best_params_,
            **common,
            n_estimators=self.best_iteration_ + 1,
            random_state=self.seed + self.best_trial_,
        )
        m.fit(Z, y, sample_weight=weights(y), verbose=False)
        self.model_ = m

    def _search(self, Z: np.ndarray, y: np.ndarray, Zv: np.ndarray, yv: np.ndarray) -> None:
        sp = self.space or XGBSpace()
        params = sample_xgb_params(self.n_samples, self.seed, sp)
        if self.mode == "classify":
            y, yv = y.astype(np.int64), yv.astype(np.int64)
        cls, common, weights = self._xgb_setup(y)
        common |= {"n_estimators": sp.n_estimators, "early_stopping_rounds": sp.early_stopping_rounds}
        fit_kw: dict[str, Any] = {}
        if weights(y) is not None:
            fit_kw = {"sample_weight": weights(y), "sample_weight_eval_set": [weights(yv)]}
        rows, best = [], None
        for i, p in enumerate(params):
            m = cls(**p, **common, random_state=self.seed + i)
            m.fit(Z, y, eval_set=[(Zv, yv)], verbose=False, **fit_kw)
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

    def _decision(self, X: np.ndarray, L: np.ndarray) -> np.ndarray:
        """Margins: (n,) logit (binary), (n, K) per-class scores (multi-class), values (regress)."""
        Z = self._transform(np.asarray(X, np.float32), L)
        if self.mode == "classify":
            return np.asarray(self.model_.predict(Z, output_margin=True), np.float64)
        return self.model_.predict(Z).astype(np.float64)

    def config(self) -> dict[str, Any]:
        """Settings, chosen hyper-parameters and selected feature names (JSON-serialisable)."""
        fc = self.fc_parameters if isinstance(self.fc_parameters, str) else dict(self.fc_parameters)
        return {
            "mode": self.mode,
            "fc_parameters": fc,
            "engine": self.engine,
            "n_samples": self.n_samples,
            "n_components": int(self.pca_.n_components_),
            "fdr_level": self.fdr_level,
            "min_features": self.min_features,
            "space": asdict(self.space or XGBSpace()),
            "xgb_params": self.best_params_,
            "best_iteration": self.best_iteration_,
            "n_extracted": self.n_extracted_,
            "n_relevant": self.n_relevant_,
            "selected_features": self.selected_,
            "selection_path": self.selection_path_,
            "selection_fallback": self.selection_fallback_,
            "classes": self.classes_.tolist() if self.mode == "classify" else None,
            "seed": self.seed,
        }

    def save(self, path: str | Path) -> None:
        """XGBoost JSON at ``path``; imputation, scaler, PCA and config (joblib) at ``path + '.joblib'``."""
        import joblib

        from lnpstore.store.atomic import atomic_path

        path = Path(path)
        with atomic_path(path, keep_suffix=True) as tmp:
            self.model_.save_model(str(tmp))
        with atomic_path(path.with_name(path.name + ".joblib")) as tmp:
            joblib.dump(
                {
                    "config": self.config(),
                    "impute": self.impute_stats_,
                    "scaler": self.scaler_,
                    "pca": self.pca_,
                    "channels": self.channels,
                },
                tmp,
            )


class TsfreshClassifier(TsfreshXGB):
    """:class:`TsfreshXGB` with ``mode='classify'`` (binary or multi-class, any label type)."""

    mode = "classify"

    def __init__(
        self,
        *,
        fc_parameters: str | Mapping[str, Any] = "efficient",
        n_samples: int = 200,
        n_components: int = 0,
        fdr_level: float = 0.05,
        min_features: int = 32,
        space: XGBSpace | None = None,
        seed: int = 0,
        n_jobs: int = 0,
        dask_address: str | None = None,
        cache_dir: str | Path | None = None,
        channels: list[str] | None = None,
        val_fraction: float = 0.2,
        refit: bool = True,
        id_col: str = "id",
        time_col: str = "time",
        engine: Engine = "array",
    ):
        super().__init__(
            "classify",
            fc_parameters=fc_parameters,
            n_samples=n_samples,
            n_components=n_components,
            fdr_level=fdr_level,
            min_features=min_features,
            space=space,
            seed=seed,
            n_jobs=n_jobs,
            dask_address=dask_address,
            cache_dir=cache_dir,
            channels=channels,
            val_fraction=val_fraction,
            refit=refit,
            id_col=id_col,
            time_col=time_col,
            engine=engine,
        )


class TsfreshRegressor(TsfreshXGB):
    """:class:`TsfreshXGB` with ``mode='regress'``."""

    mode = "regress"

    def __init__(
        self,
        *,
        fc_parameters: str | Mapping[str, Any] = "efficient",
        n_samples: int = 200,
        n_components: int = 0,
        fdr_level: float = 0.05,
        min_features: int = 32,
        space: XGBSpace | None = None,
        seed: int = 0,
        n_jobs: int = 0,
        dask_address: str | None = None,
        cache_dir: str | Path | None = None,
        channels: list[str] | None = None,
        val_fraction: float = 0.2,
        refit: bool = True,
        id_col: str = "id",
        time_col: str = "time",
        engine: Engine = "array",
    ):
        super().__init__(
            "regress",
            fc_parameters=fc_parameters,
            n_samples=n_samples,
            n_components=n_components,
            fdr_level=fdr_level,
            min_features=min_features,
            space=space,
            seed=seed,
            n_jobs=n_jobs,
            dask_address=dask_address,
            cache_dir=cache_dir,
            channels=channels,
            val_fraction=val_fraction,
            refit=refit,
            id_col=id_col,
            time_col=time_col,
            engine=engine,
        )


__all__ = [
    "ENGINES",
    "FAST_EXCLUDE",
    "STUDY_PCA_COMPONENTS",
    "FeatureCache",
    "TsfreshClassifier",
    "TsfreshRegressor",
    "TsfreshXGB",
    "XGBSpace",
    "extract",
    "fc_settings",
    "sample_xgb_params",
]
