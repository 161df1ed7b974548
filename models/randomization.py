"""Paired approximate randomization tests between two models' predictions on the same test cells.

Under the null hypothesis that models A and B are exchangeable, each cell's two predictions may be
swapped. Each permutation swaps every cell's pair with probability 1/2 and recomputes the statistic
``metric(A') - metric(B')``; the p-value is ``(#{|d_perm| >= |d_obs|} + 1) / (n_permutations + 1)``.

Vectorised: both metrics are functions of sums over cells, and a swap changes those sums linearly.
With ``s`` the (n_permutations, n_cells) 0/1 swap matrix and ``a``, ``b`` the two predictions:

* classify: ``tp_A(s) = tp_A + s @ (y (b - a))``, ``fp_A(s) = fp_A + s @ ((1 - y)(b - a))`` on the
  binarised predictions, and B's counts move by the opposite amount; weighted F1 follows from the
  counts (:func:`lnpstore.models.evaluation.weighted_f1_from_counts`);
* regress: ``sse_A(s) = sse_A + s @ ((b - y)^2 - (a - y)^2)`` and ``sse_B`` the opposite; RMSE is
  ``sqrt(sse / n)``.

So 10,000 permutations cost two matrix-vector products per chunk, not 20,000 sklearn calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from lnpstore.models.evaluation import (
    KINDS,
    METRIC_OF_MODE,
    binarize,
    ensemble_predictions,
    rmse,
    weighted_f1_from_counts,
)

if TYPE_CHECKING:
    from lnpstore.store.core import Store

log = logging.getLogger(__name__)

#: Permutations drawn per chunk (bounds memory at chunk x n_cells bytes).
CHUNK = 2048
#: Relative tolerance when comparing |d_perm| with |d_obs| (floating-point ties count as ">=").
_TIE_TOL = 1e-12


@dataclass(frozen=True)
class RandomizationResult:
    """One paired test: the two metrics, their difference A - B and the p-value."""

    metric: str
    metric_a: float
    metric_b: float
    difference: float
    p_value: float
    n_cells: int
    n_permutations: int


def _check(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, a, b = (np.asarray(v, dtype=np.float64) for v in (y, a, b))
    if not (y.ndim == a.ndim == b.ndim == 1 and y.shape == a.shape == b.shape):
        raise ValueError(
            f"`y`, `a`, `b` must be 1-d of one length, got shapes {y.shape}, {a.shape}, {b.shape}"
        )
    if y.size == 0:
        raise ValueError("no cells to compare")
    return y, a, b


def _swap_sums(rng: np.random.Generator, deltas: np.ndarray, n_permutations: int) -> np.ndarray:
    """(n_permutations, k): for each permutation, ``s @ deltas`` with ``s`` ~ Bernoulli(1/2) per cell.

    ``deltas``: (n_cells, k) change of each of k sums when a cell's pair is swapped. Cells whose deltas
    are all zero cannot change anything and are dropped before drawing (they still count in ``n_cells``).
    """
    live = np.any(deltas != 0, axis=1)
    d = deltas[live]
    out = np.zeros((n_permutations, deltas.shape[1]), dtype=np.float64)
    if d.shape[0] == 0:
        return out
    for start in range(0, n_permutations, CHUNK):
        m = min(CHUNK, n_permutations - start)
        s = rng.random((m, d.shape[0])) < 0.5
        out[start : start + m] = s.astype(np.float64) @ d
    return out


def _p_value(d_obs: float, d_perm: np.ndarray) -> float:
    thr = abs(d_obs) * (1 - _TIE_TOL) - _TIE_TOL
    return float((np.count_nonzero(np.abs(d_perm) >= thr) + 1) / (d_perm.size + 1))


def randomization_f1(
    y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, *, n_permutations: int = 10_000, seed: int = 0
) -> RandomizationResult:
    """Paired randomization test of weighted F1(A) - weighted F1(B).

    ``y`` : (n,) 0/1 labels; ``p_a``, ``p_b`` : (n,) probabilities of models A and B (threshold 0.5).
    """
    y, p_a, p_b = _check(y, p_a, p_b)
    a = binarize(p_a).astype(np.float64)
    b = binarize(p_b).astype(np.float64)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    tp_a, fp_a = float(y @ a), float((1 - y) @ a)
    tp_b, fp_b = float(y @ b), float((1 - y) @ b)
    f_a = weighted_f1_from_counts(tp_a, fp_a, n_pos, n_neg)
    f_b = weighted_f1_from_counts(tp_b, fp_b, n_pos, n_neg)
    d_obs = float(f_a - f_b)
    diff = b - a
    sums = _swap_sums(
        np.random.default_rng(seed), np.stack([y * diff, (1 - y) * diff], axis=1), n_permutations
    )
    d_tp, d_fp = sums[:, 0], sums[:, 1]
    perm = weighted_f1_from_counts(tp_a + d_tp, fp_a + d_fp, n_pos, n_neg) - weighted_f1_from_counts(
        tp_b - d_tp, fp_b - d_fp, n_pos, n_neg
    )
    return RandomizationResult(
        "f1_weighted",
        float(f_a),
        float(f_b),
        d_obs,
        _p_value(d_obs, np.asarray(perm)),
        y.size,
        n_permutations,
    )


def randomization_rmse(
    y: np.ndarray, yhat_a: np.ndarray, yhat_b: np.ndarray, *, n_permutations: int = 10_000, seed: int = 0
) -> RandomizationResult:
    """Paired randomization test of RMSE(A) - RMSE(B); ``y``, ``yhat_a``, ``yhat_b`` : (n,) log-centred GFP."""
    y, a, b = _check(y, yhat_a, yhat_b)
    n = y.size
    ea = (a - y) ** 2
    eb = (b - y) ** 2
    sse_a, sse_b = float(ea.sum()), float(eb.sum())
    d_obs = rmse(y, a) - rmse(y, b)
    sums = _swap_sums(np.random.default_rng(seed), (eb - ea)[:, None], n_permutations)[:, 0]
    perm = np.sqrt(np.maximum(sse_a + sums, 0) / n) - np.sqrt(np.maximum(sse_b - sums, 0) / n)
    return RandomizationResult(
        "rmse", rmse(y, a), rmse(y, b), float(d_obs), _p_value(d_obs, perm), n, n_permutations
    )


def randomization_test(
    mode: str, y: np.ndarray, a: np.ndarray, b: np.ndarray, *, n_permutations: int = 10_000, seed: int = 0
) -> RandomizationResult:
    """:func:`randomization_f1` for 'classify', :func:`randomization_rmse` for 'regress'."""
    if mode == "classify":
        return randomization_f1(y, a, b, n_permutations=n_permutations, seed=seed)
    if mode == "regress":
        return randomization_rmse(y, a, b, n_permutations=n_permutations, seed=seed)
    raise ValueError(f"mode must be 'classify' or 'regress', not {mode!r}")


TABLE1_SCHEMA = {
    "mode": pl.String,
    "checkpoint": pl.Int16,
    "pair": pl.String,
    "model_a": pl.String,
    "model_b": pl.String,
    "metric": pl.String,
    "metric_a": pl.Float64,
    "metric_b": pl.Float64,
    "difference": pl.Float64,
    "p_value": pl.Float64,
    "n_cells": pl.Int32,
    "n_permutations": pl.Int32,
}


def compare_predictions(
    ensemble: pl.DataFrame,
    *,
    checkpoints: tuple[int, ...] = (5, 10, 15, 20),
    n_permutations: int = 10_000,
    seed: int = 0,
) -> pl.DataFrame:
    """Table 1 from ensemble predictions (kind, mode, frame, cell_uid, y_true, y_pred).

    At each checkpoint t and mode, every pair of the kinds present (CNN at input frame t, LSTM and
    tsfresh at checkpoint t) is tested on the cells both predicted. Each test gets its own seed
    (``seed`` + its index), so rows are reproducible one by one.
    """
    rows = []
    i = 0
    for mode in ("classify", "regress"):
        for t in checkpoints:
            at = ensemble.filter((pl.col("mode") == mode) & (pl.col("frame") == t))
            present = [k for k in KINDS if at.filter(pl.col("kind") == k).height]
            for ia, ka in enumerate(present):
                for kb in present[ia + 1 :]:
                    j = (
                        at.filter(pl.col("kind") == ka)
                        .select("cell_uid", "y_true", pl.col("y_pred").alias("a"))
                        .join(
                            at.filter(pl.col("kind") == kb).select("cell_uid", pl.col("y_pred").alias("b")),
                            on="cell_uid",
                            how="inner",
                        )
                        .sort("cell_uid")
                    )
                    i += 1
                    if j.height == 0:
                        log.warning("compare: %s and %s share no cells at t=%d (%s)", ka, kb, t, mode)
                        continue
                    r = randomization_test(
                        mode,
                        j["y_true"].to_numpy(),
                        j["a"].to_numpy(),
                        j["b"].to_numpy(),
                        n_permutations=n_permutations,
                        seed=seed + i,
                    )
                    rows.append(
                        {
                            "mode": mode,
                            "checkpoint": t,
                            "pair": f"{ka} vs {kb}",
                            "model_a": ka,
                            "model_b": kb,
                            "metric": METRIC_OF_MODE[mode],
                            "metric_a": r.metric_a,
                            "metric_b": r.metric_b,
                            "difference": r.difference,
                            "p_value": r.p_value,
                            "n_cells": r.n_cells,
                            "n_permutations": r.n_permutations,
                        }
                    )
    return pl.DataFrame(rows, schema=TABLE1_SCHEMA)


def compare_models(
    store: Store,
    *,
    checkpoints: tuple[int, ...] = (5, 10, 15, 20),
    n_permutations: int = 10_000,
    seed: int = 0,
    split: str = "test",
) -> pl.DataFrame:
    """Table 1: paired randomization tests between CNN, LSTM and tsfresh at each checkpoint, both modes.

    Uses the ensemble (TTA + fold-averaged) predictions of the store's test cells. Columns: mode,
    checkpoint, pair, model_a, model_b, metric, metric_a, metric_b, difference (A - B), p_value,
    n_cells, n_permutations.
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    ens = ensemble_predictions(store, split=split)
    return compare_predictions(ens, checkpoints=tuple(checkpoints), n_permutations=n_permutations, seed=seed)
