"""Store stage of the time-series models: LSTM and tsfresh -> XGBoost per (fold, checkpoint).

Reads ``embeddings`` and ``cells`` (through ``queries/sequences.sql``), or with ``inputs='tracks'``
/ ``'both'`` the per-frame track measures of ``tracks`` (``queries/track_sequences.sql``), writes ``models``,
``predictions`` (every test cell x augmentation; ``frame`` = checkpoint) and ``search`` (one row per
sampled configuration). Resumable: a (fold, checkpoint) whose ``model_id`` is already in ``models``
is skipped. The ``model_id`` is ``'{kind}-{mode}-f{fold}-t{checkpoint}-{hash8}'`` where ``hash8``
hashes the settings, the seed and the data version, so changed settings or data train a new model
instead of silently reusing an old one. The ``models`` row is written last: a run killed half-way
leaves no model row and its (fold, checkpoint) is redone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import polars as pl
from lnpstore.models.panel import INPUTS, Inputs, Panel, load_inputs

from lnpstore._version import __version__
from lnpstore.runtime.settings import Field, Settings, settings
from lnpstore.store import schema as S
from lnpstore.store.errors import LnpstoreError

log = logging.getLogger(__name__)

Kind = Literal["lstm", "tsfresh_xgb"]
KINDS = ("lstm", "tsfresh_xgb")


@settings
class TimeseriesSettings(Settings):
    """Everything that defines a time-series run (stored, hashed into the model id)."""

    kind: Literal["lstm", "tsfresh_xgb"] = Field(description="model kind")
    mode: Literal["classify", "regress"] = Field(description="target: label (classify) or GFP (regress)")
    n_samples: int = Field(200, ge=1, description="random-search trials per (fold, checkpoint)")
    seed: int = Field(0, description="seed of the search and the models")
    fc_parameters: str = Field("efficient", description="tsfresh calculators ('' for the LSTM)")
    average_augs: bool = Field(False, description="one sequence per cell: the mean of its augmentations")
    tsfresh_engine: Literal["tsfresh", "array"] = Field(
        "array", description="tsfresh feature extraction: tsfresh's own, or the array engine (same features)"
    )
    lstm_search: dict[str, Any] = Field(
        default_factory=dict, description="the LSTM SearchConfig as a dict ({} for tsfresh)"
    )
    inputs: Literal["embeddings", "tracks", "both"] = Field(
        "embeddings",
        description="what the model reads: CNN embeddings, per-frame track measures, or both (Inputs)",
    )

    def hash8(self, data_version: str) -> str:
        """8 hex digits of the settings and the data version (part of the model id).

        ``inputs`` enters only when it is not the default, so models trained before it existed keep
        their ids (a re-run resumes instead of retraining them)."""
        d = self.to_dict()
        if d.get("inputs") == "embeddings":
            del d["inputs"]
        text = json.dumps({**d, "data_version": data_version}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


def model_id_for(settings: TimeseriesSettings, fold: int, checkpoint: int, data_version: str) -> str:
    return f"{settings.kind}-{settings.mode}-f{fold}-t{checkpoint}-{settings.hash8(data_version)}"


#: The tables each kind of inputs reads (their content is the models' data version).
_INPUT_TABLES: dict[str, tuple[str, ...]] = {
    "embeddings": ("embeddings", "cells"),
    "tracks": ("tracks", "cells"),
    "both": ("embeddings", "cells", "tracks"),
}


def _check_panels(panels: dict[str, Panel], *, mode: str, fold: int, inputs: str = "embeddings") -> None:
    missing = [r for r in ("train", "val", "test") if r not in panels]
    if missing and inputs == "tracks":
        raise LnpstoreError(
            f"no {'/'.join(missing)} track measures for fold {fold}: the cells' split or their tracks "
            "are missing. Hint: run `lnpstore track` and `lnpstore crop` (which assigns the split) first, "
            "and check `lnpstore query track_sequences --param fold=... --param checkpoint=...`"
        )
    if missing:
        raise LnpstoreError(
            f"no {'/'.join(missing)} sequences for mode={mode!r}, fold {fold}: the fold's CNN embeddings "
            "or the cells' split are missing. Hint: run `lnpstore train-cnn` for this mode and fold first, "
            "and check `lnpstore query sequences --param mode=... --param fold=... --param checkpoint=...`"
        )


def _fit(
    kind: str,
    settings: TimeseriesSettings,
    p: dict[str, Panel],
    *,
    store,
    data_version: str,
    dask_address: str | None,
    n_jobs: int,
    lstm_search_config: Any,
    t_pad: int | None = None,
) -> tuple[Any, pl.DataFrame, dict]:
    """Fit one model; returns (model, trials, extra config)."""
    tr, va = p["train"], p["val"]
    if kind == "lstm":
        assert tr.y is not None and va.y is not None  # train and validation panels carry targets
        from lnpstore.models.lstm import lstm_search, trial_configs

        model, trials = lstm_search(
            tr.X,
            tr.y,
            va.X,
            va.y,
            mode=settings.mode,
            n_samples=settings.n_samples,
            seed=settings.seed,
            search=lstm_search_config,
            t_pad=t_pad,
        )
        extra = {"search_val_loss": model.search_val_loss_, "search_best_epoch": model.search_best_epoch_}
        trials = trials.with_columns(config=pl.Series(trial_configs(trials)))
        return model, trials, extra
    from lnpstore.models.tsgbm import STUDY_PCA_COMPONENTS, TsfreshXGB

    model = TsfreshXGB(
        settings.mode,
        fc_parameters=settings.fc_parameters,
        n_samples=settings.n_samples,
        n_components=STUDY_PCA_COMPONENTS,
        seed=settings.seed,
        n_jobs=n_jobs,
        dask_address=dask_address,
        cache_dir=store.artifacts_dir("tsfresh", data_version),
        channels=list(tr.channels),
        engine=settings.tsfresh_engine,
    ).fit(tr.X, tr.y, va.X, va.y)
    assert model.trials_ is not None
    keys = [
        "colsample_bytree",
        "gamma",
        "learning_rate",
        "max_depth",
        "subsample",
        "best_iteration",
        "n_trees",
    ]
    trials = model.trials_.with_columns(
        config=pl.Series([json.dumps(r) for r in model.trials_.select(keys).to_dicts()])
    )
    return (
        model,
        trials,
        {"timings_s": model.timings_, "cache_hits": model.cache.hits, "cache_misses": model.cache.misses},
    )


def run_timeseries(
    store,
    kind: Kind = "lstm",
    mode: Literal["classify", "regress"] = "classify",
    *,
    folds: Iterable[int] = range(5),
    checkpoints: Iterable[int] = (5, 10, 15, 20),
    n_samples: int = 200,
    seed: int = 0,
    fc_parameters: str = "efficient",
    average_augs: bool = False,
    dask_address: str | None = None,
    show_progress: bool = True,
    n_jobs: int = 0,
    lstm_search_config: Any = None,
    tsfresh_engine: Literal["tsfresh", "array"] = "array",
    inputs: Inputs = "embeddings",
) -> pl.DataFrame:
    """Train ``kind`` for every (fold, checkpoint); returns one row per unit (model_id, status, val_loss).

    ``checkpoints`` are last input frames t (frames 1..t are used). ``average_augs`` averages a cell's
    8 augmentations into one sequence (train, val and test; predictions then carry ``aug = -1``).
    ``lstm_search_config`` is a :class:`lnpstore.models.lstm.SearchConfig` (default: ``SearchConfig()``,
    the search over learning rates and batch sizes with early stopping; the study's exact protocol is
    :data:`lnpstore.models.lstm.STUDY_SEARCH`). ``inputs`` picks the channels
    (:data:`lnpstore.models.panel.Inputs`): the embeddings (the study's protocol), the cells' track
    measures (one case per cell, ``aug = -1``), or both.
    """
    from lnpstore.runtime.progress import bar

    if kind not in KINDS:
        raise LnpstoreError(f"kind must be one of {KINDS}, not {kind!r}")
    if mode not in ("classify", "regress"):
        raise LnpstoreError(f"mode must be 'classify' or 'regress', not {mode!r}")
    if inputs not in INPUTS:
        raise LnpstoreError(f"inputs must be one of {INPUTS}, not {inputs!r}")
    folds = [int(f) for f in folds]
    checkpoints = sorted(int(t) for t in checkpoints)
    if not checkpoints or checkpoints[0] < 1:
        raise LnpstoreError(f"checkpoints must be frames >= 1, got {checkpoints}")
    search_dict = lstm_search_config.to_dict() if (kind == "lstm" and lstm_search_config is not None) else {}
    settings = TimeseriesSettings(
        kind=kind,
        mode=mode,
        n_samples=n_samples,
        seed=seed,
        fc_parameters=fc_parameters if kind == "tsfresh_xgb" else "",
        average_augs=average_augs,
        lstm_search=search_dict,
        tsfresh_engine=tsfresh_engine if kind == "tsfresh_xgb" else "array",
        inputs=inputs,
    )
    data_version = store.data_version(*_INPUT_TABLES[inputs])
    t_pad = None
    if kind == "lstm":
        from lnpstore.models.jaxcache import enable
        from lnpstore.models.lstm import SearchConfig

        enable()  # compiled programs are reused by later runs (persistent cache)
        # one compiled program for every checkpoint: sequences padded (masked) to the longest
        t_pad = max(checkpoints) if (lstm_search_config or SearchConfig()).pad_frames else None
    rows: list[dict] = []
    ctx = (
        bar(desc=f"{kind} {mode}", total=len(folds) * len(checkpoints), unit="model")
        if show_progress
        else contextlib.nullcontext()
    )
    with ctx as b:
        for fold in folds:
            ids = {t: model_id_for(settings, fold, t, data_version) for t in checkpoints}
            todo = [t for t in checkpoints if not store.exists("models", model_id=ids[t])]
            for t in checkpoints:
                if t not in todo:
                    rows.append({"model_id": ids[t], "fold": fold, "checkpoint": t, "status": "skipped"})
            if not todo:
                if b is not None:
                    b.update(len(checkpoints))
                continue
            panels, cnn_id = load_inputs(store, mode=mode, fold=fold, checkpoint=max(todo), inputs=inputs)
            _check_panels(panels, mode=mode, fold=fold, inputs=inputs)
            for t in todo:
                p = {r: pn.truncate(t) for r, pn in panels.items()}
                if p["train"].X.shape[1] != t:
                    raise LnpstoreError(
                        f"fold {fold}: checkpoint {t} needs frames 1..{t}, the embeddings have "
                        f"{p['train'].frames.tolist()}"
                    )
                if average_augs:
                    p = {r: pn.average_augs() for r, pn in p.items()}
                model, trials, extra = _fit(
                    kind,
                    settings,
                    p,
                    store=store,
                    data_version=data_version,
                    dask_address=dask_address,
                    n_jobs=n_jobs,
                    lstm_search_config=lstm_search_config,
                    t_pad=t_pad,
                )
                row = _write(
                    store,
                    kind,
                    settings,
                    fold,
                    t,
                    ids[t],
                    model,
                    trials,
                    p,
                    data_version,
                    {**extra, "cnn_model_id": cnn_id},
                )
                rows.append(row)
                if b is not None:
                    b.update(1)
            if b is not None:
                b.update(len(checkpoints) - len(todo))
    return pl.DataFrame(
        rows,
        schema={
            "model_id": pl.String,
            "fold": pl.Int64,
            "checkpoint": pl.Int64,
            "status": pl.String,
            "val_loss": pl.Float64,
        },
    )


def _write(
    store,
    kind: str,
    settings: TimeseriesSettings,
    fold: int,
    t: int,
    model_id: str,
    model: Any,
    trials: pl.DataFrame,
    p: dict[str, Panel],
    data_version: str,
    extra: dict,
) -> dict:
    mode = settings.mode
    art = store.artifacts_dir("models")
    if kind == "lstm":
        wpath = art / f"{model_id}.msgpack"
        config = {**model.config(), "settings": settings.to_dict(), **extra}
        best_epoch, val_loss = model.best_epoch_, model.val_loss_
    else:
        wpath = art / f"{model_id}.xgb.json"
        config = {**model.config(), "settings": settings.to_dict(), **extra}
        best_epoch, val_loss = model.best_iteration_, model.val_loss_
    model.save(wpath)
    config |= {"n_train": p["train"].n_cases, "n_val": p["val"].n_cases, "n_test": p["test"].n_cases}

    test = p["test"]
    pred = test.ids.select("cell_uid", "aug").with_columns(
        model_id=pl.lit(model_id),
        frame=pl.lit(t),
        kind=pl.lit(kind),
        mode=pl.lit(mode),
        fold=pl.lit(fold),
        y_true=pl.Series(test.y, dtype=pl.Float64),
        y_pred=pl.Series(np.asarray(model.predict_score(test.X), np.float64)),
    )
    store.write("predictions", pred.select(S.table("predictions").column_names), mode="replace")

    search_id = model_id  # each model's own search: other settings or inputs do not replace its rows
    srch = trials.select(
        search_id=pl.lit(search_id),
        trial=pl.col("trial").cast(pl.Int32),
        kind=pl.lit(kind),
        mode=pl.lit(mode),
        fold=pl.lit(fold),
        checkpoint=pl.lit(t),
        config=pl.col("config"),
        val_loss=pl.col("val_loss").cast(pl.Float64),
        stopped_early=pl.col("stopped_early"),
        seed=pl.col("seed").cast(pl.Int64),
    )
    store.write("search", srch, mode="upsert")

    rec = pl.DataFrame(
        {
            "model_id": [model_id],
            "kind": [kind],
            "mode": [mode],
            "fold": [fold],
            "checkpoint": [t],
            "config": [json.dumps(config, default=_json_default)],
            "seed": [settings.seed],
            "best_epoch": [int(best_epoch)],
            "val_loss": [float(val_loss)],
            "weights_path": [str(wpath.relative_to(store.root))],
            "weights_info": ["{}"],
            "data_version": [data_version],
            "package_version": [__version__],
            "schema_version": [S.SCHEMA_VERSION],
            "created_at": [datetime.now(UTC)],
        }
    )
    store.write("models", rec, mode="upsert")
    log.info(
        "%s: val_loss %.4f, best epoch %d, %d test predictions", model_id, val_loss, best_epoch, pred.height
    )
    return {
        "model_id": model_id,
        "fold": fold,
        "checkpoint": t,
        "status": "trained",
        "val_loss": float(val_loss),
    }


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


__all__ = ["KINDS", "TimeseriesSettings", "model_id_for", "run_timeseries"]
