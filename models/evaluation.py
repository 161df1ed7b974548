"""Metrics of the expression models: weighted F1 (classify) and RMSE (regress, log-centred GFP).

Three layers:

* pure functions on arrays (:func:`weighted_f1`, :func:`rmse`, :func:`weighted_f1_from_counts`);
* per-model tables (:func:`metrics_frame`) computed from the store's ``predictions`` through the named
  queries ``tta_predictions`` and ``ensemble_predictions``;
* :func:`evaluate`, which writes the ``metrics`` table.

Rows of ``metrics``: for every kind (cnn, lstm, tsfresh_xgb), mode and frame (the CNN's input frame 1..T_in,
the time-series models' checkpoint) one row per fold 0..4 (that fold's model, predictions averaged over
the test-time augmentations) and one row with ``fold = -1`` (the fold ensemble: augmentations averaged
per fold, then folds averaged). With an oracle, rows of kind ``oracle`` with ``frame = 0`` and
``fold = -1`` hold the simulator's oracle's metrics on the same test cells.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from lnpstore.store.errors import LnpstoreError

if TYPE_CHECKING:
    from lnpstore.store.core import Store

log = logging.getLogger(__name__)

#: Probability threshold of the classifiers: predicted positive when ``p >= THRESHOLD``.
THRESHOLD = 0.5
#: Metric name per mode, as written in ``metrics.metric``.
METRIC_OF_MODE: Mapping[str, str] = {"classify": "f1_weighted", "regress": "rmse"}
#: Model kinds in the order they are reported.
KINDS = ("cnn", "lstm", "tsfresh_xgb")
#: Frame value of the oracle's rows (the oracle does not depend on the input frame).
ORACLE_FRAME = 0
#: Fold value of the ensemble's rows.
ENSEMBLE_FOLD = -1


# -- pure functions ---------------------------------------------------------------------------------
def _as_1d(x: np.ndarray | list | pl.Series, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"`{name}` must be 1-d, got shape {a.shape}")
    return a


def binarize(p: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Probabilities -> 0/1 labels (``p >= threshold``), as int8."""
    return (np.asarray(p, dtype=np.float64) >= threshold).astype(np.int8)


def weighted_f1_from_counts(
    tp: np.ndarray | float, fp: np.ndarray | float, n_pos: int, n_neg: int
) -> np.ndarray | float:
    """Support-weighted F1 of a binary problem from the positive class's confusion counts.

    Why a hand-written F1: the randomization test evaluates it on 10,000 permuted prediction sets, and
    sklearn's ``f1_score`` costs ~1 ms per call. For two classes everything follows from ``tp`` and ``fp``
    (broadcast over any shape): ``fn = n_pos - tp``, ``tn = n_neg - fp``, F1 of a class
    ``c = 2 tp_c / (2 tp_c + fp_c + fn_c)`` and the weighted average is ``sum_c support_c F1_c / n``.
    For class 0, its true positives are ``tn`` and its false positives are ``fn``. A class whose F1 has a
    zero denominator (no true and no predicted member) gets F1 = 0, like sklearn's ``zero_division=0``;
    such a class has zero support, so its weight is 0 anyway. Checked against sklearn in the tests.
    """
    tp = np.asarray(tp, dtype=np.float64)
    fp = np.asarray(fp, dtype=np.float64)
    fn = n_pos - tp
    tn = n_neg - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = 2 * tp + fp + fn
        d0 = 2 * tn + fn + fp
        f1_pos = np.where(d1 > 0, 2 * tp / np.where(d1 > 0, d1, 1), 0.0)
        f1_neg = np.where(d0 > 0, 2 * tn / np.where(d0 > 0, d0, 1), 0.0)
    n = n_pos + n_neg
    out = (n_pos * f1_pos + n_neg * f1_neg) / n if n else np.zeros_like(tp)
    return float(out) if out.ndim == 0 else out


def weighted_f1(y: np.ndarray | list, p: np.ndarray | list, *, threshold: float = THRESHOLD) -> float:
    """Weighted-average F1 (sklearn ``average='weighted'``) of 0/1 labels ``y`` and probabilities ``p``.

    ``y`` : (n,) labels 0/1; ``p`` : (n,) probabilities in [0, 1], positive when ``p >= threshold``.
    """
    y = _as_1d(y, "y")
    p = _as_1d(p, "p")
    if y.shape != p.shape:
        raise ValueError(f"`y` (shape {y.shape}) and `p` (shape {p.shape}) must have the same shape")
    if y.size == 0:
        return float("nan")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("`y` must hold 0/1 labels")
    yb = y.astype(bool)
    pb = binarize(p, threshold).astype(bool)
    tp = float(np.sum(yb & pb))
    fp = float(np.sum(~yb & pb))
    return float(weighted_f1_from_counts(tp, fp, int(yb.sum()), int((~yb).sum())))


def rmse(y: np.ndarray | list, yhat: np.ndarray | list) -> float:
    """Root mean squared error of ``yhat`` against ``y`` (both (n,), log-centred GFP, ln counts)."""
    y = _as_1d(y, "y")
    yhat = _as_1d(yhat, "yhat")
    if y.shape != yhat.shape:
        raise ValueError(f"`y` (shape {y.shape}) and `yhat` (shape {yhat.shape}) must have the same shape")
    if y.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean((yhat - y) ** 2)))


def metric_value(mode: str, y: np.ndarray, yhat: np.ndarray) -> float:
    """The metric of ``mode``: weighted F1 for 'classify', RMSE for 'regress'."""
    if mode == "classify":
        return weighted_f1(y, yhat)
    if mode == "regress":
        return rmse(y, yhat)
    raise ValueError(f"mode must be 'classify' or 'regress', not {mode!r}")


# -- store layer ------------------------------------------------------------------------------------
def tta_predictions(store: Store, *, split: str = "test") -> pl.DataFrame:
    """Per kind, mode, frame, fold and cell: the prediction averaged over augmentations."""
    return store.query("tta_predictions", split=split)


def ensemble_predictions(store: Store, *, split: str = "test") -> pl.DataFrame:
    """Per kind, mode, frame and cell: augmentations averaged per fold, then folds averaged."""
    return store.query("ensemble_predictions", split=split)


def _group_metrics(df: pl.DataFrame, by: list[str]) -> list[dict]:
    rows = []
    for key, g in df.group_by(by, maintain_order=True):
        rec = dict(zip(by, key, strict=True))
        mode = rec["mode"]
        rows.append(
            {
                **rec,
                "metric": METRIC_OF_MODE[mode],
                "value": metric_value(mode, g["y_true"].to_numpy(), g["y_pred"].to_numpy()),
                "n_cells": g.height,
            }
        )
    return rows


def metrics_frame(
    tta: pl.DataFrame, ensemble: pl.DataFrame, *, oracle: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Metric rows (kind, mode, frame, fold, metric, value, n_cells) from prediction tables.

    ``tta``: columns kind, mode, frame, fold, cell_uid, y_true, y_pred (one fold's model, TTA-averaged);
    ``ensemble``: kind, mode, frame, cell_uid, y_true, y_pred; ``oracle``: cell_uid, oracle_prob,
    oracle_log_gfp (log-centred scale, see :func:`center_oracle`).
    """
    rows = _group_metrics(tta, ["kind", "mode", "frame", "fold"])
    ens_rows = _group_metrics(ensemble, ["kind", "mode", "frame"])
    rows += [{**r, "fold": ENSEMBLE_FOLD} for r in ens_rows]
    if oracle is not None and ensemble.height:
        rows += _oracle_rows(ensemble, oracle)
    schema = {
        "kind": pl.String,
        "mode": pl.String,
        "frame": pl.Int16,
        "fold": pl.Int8,
        "metric": pl.String,
        "value": pl.Float64,
        "n_cells": pl.Int32,
    }
    return pl.DataFrame(rows, schema=schema).sort("kind", "mode", "metric", "frame", "fold")


#: Oracle kinds of the metrics table and their (classify, regress) columns in the oracle table: the
#: simulator's full oracle (required), its count-and-size oracle (optional; particle count at frame 20, size)
#: and its trajectory oracle (optional; a perfect linear reader of frames 1..20).
ORACLE_KINDS: dict[str, tuple[str, str]] = {
    "oracle": ("oracle_prob", "oracle_log_gfp"),
    "oracle_frame": ("oracle_frame_prob", "oracle_frame_log_gfp"),
    "oracle_track": ("oracle_track_prob", "oracle_track_log_gfp"),
}


def _oracle_rows(ensemble: pl.DataFrame, oracle: pl.DataFrame) -> list[dict]:
    missing = {"cell_uid", *ORACLE_KINDS["oracle"]} - set(oracle.columns)
    if missing:
        raise LnpstoreError(
            f"the oracle table lacks column(s) {sorted(missing)}; it needs cell_uid, oracle_prob, oracle_log_gfp"
        )
    rows = []
    for i, mode in enumerate(("classify", "regress")):
        # the test cells and targets of this mode, once per cell (any kind and frame holds them)
        cells = ensemble.filter(pl.col("mode") == mode).group_by("cell_uid").agg(pl.col("y_true").first())
        for kind, cols in ORACLE_KINDS.items():
            col = cols[i]
            if col not in oracle.columns:
                continue
            j = cells.join(oracle.select("cell_uid", col), on="cell_uid", how="inner").drop_nulls(col)
            if j.height == 0:
                continue
            if j.height < cells.height:
                log.warning(
                    "%s: %d of %d test cells (%s) have no oracle value",
                    kind,
                    cells.height - j.height,
                    cells.height,
                    mode,
                )
            rows.append(
                {
                    "kind": kind,
                    "mode": mode,
                    "frame": ORACLE_FRAME,
                    "fold": ENSEMBLE_FOLD,
                    "metric": METRIC_OF_MODE[mode],
                    "value": metric_value(mode, j["y_true"].to_numpy(), j[col].to_numpy()),
                    "n_cells": j.height,
                }
            )
    return rows


def center_oracle(store: Store, oracle: pl.DataFrame) -> pl.DataFrame:
    """Put an oracle's ``oracle_log_gfp`` given in ln(counts) on the cells' log-centred scale.

    ``cells.gfp_log_centered = ln(gfp_sum) - c`` with one constant ``c`` (the training cells' centre);
    ``c`` is recovered from the cells table (median over cells with ``gfp_sum > 0``) and subtracted.
    """
    c = store.sql(
        "SELECT median(ln(gfp_sum) - gfp_log_centered) AS c FROM cells "
        "WHERE gfp_sum > 0 AND gfp_log_centered IS NOT NULL"
    )["c"][0]
    if c is None:
        raise LnpstoreError("cannot centre the oracle: no cell has both gfp_sum > 0 and gfp_log_centered")
    return oracle.with_columns(pl.col("oracle_log_gfp") - c)


def evaluate(
    store: Store,
    *,
    oracle: pl.DataFrame | None = None,
    run_id: str | None = None,
    split: str = "test",
) -> pl.DataFrame:
    """Compute every model's metrics from ``predictions`` and replace the ``metrics`` table with them.

    ``oracle``: optional cell_uid -> oracle_prob, oracle_log_gfp (log-centred scale) mapping. Returns the
    rows written (kind, mode, frame, fold, metric, value, n_cells, run_id).
    """
    run_id = run_id or f"eval-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    tta = tta_predictions(store, split=split)
    if tta.height == 0:
        raise LnpstoreError(
            f"no predictions for cells with split = '{split}' in {store.root}. "
            "Hint: train and predict first (lnpstore train-cnn / lstm / tsfresh)"
        )
    ens = ensemble_predictions(store, split=split)
    out = metrics_frame(tta, ens, oracle=oracle).with_columns(pl.lit(run_id).alias("run_id"))
    store.write("metrics", out, mode="replace")
    log.info("evaluate: %d metric rows written (run %s)", out.height, run_id)
    return out


def metrics_summary(store: Store) -> pl.DataFrame:
    """Per kind, mode, frame and metric: ensemble value, fold mean and sd (query ``metrics_table``)."""
    return store.query("metrics_table")
