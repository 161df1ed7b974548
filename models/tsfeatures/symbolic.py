"""Batched tsfresh calculators on the values as symbols: duplicates, histograms, quantile corridors,
ordinal patterns, Lempel-Ziv, Benford.

Each mirrors the tsfresh 0.21 calculator of the same name on every row of ``X`` (n_series, n_steps).
"""

from __future__ import annotations

import numpy as np
from lnpstore.models.tsfeatures.registry import combiner, simple


def _groups(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted rows S, ``first`` (S[j] starts a group of equal values) and ``dup`` (S[j] is in a group
    of two or more) — what ``np.unique(x, return_counts=True)`` gives, for every row at once."""
    S = np.sort(X, axis=1)
    eq = S[:, 1:] == S[:, :-1]  # S[j+1] == S[j]
    false = np.zeros((X.shape[0], 1), bool)
    first = ~np.concatenate([false, eq], axis=1)
    dup = np.concatenate([false, eq], axis=1) | np.concatenate([eq, false], axis=1)
    return S, first, dup


@simple("has_duplicate")
def has_duplicate(X: np.ndarray) -> np.ndarray:
    _, first, _ = _groups(X)
    return np.sum(first, axis=1) != X.shape[1]


@simple("percentage_of_reoccurring_values_to_all_values")
def percentage_of_reoccurring_values_to_all_values(X: np.ndarray) -> np.ndarray:
    _, first, dup = _groups(X)
    return np.sum(first & dup, axis=1) / np.sum(first, axis=1)


@simple("percentage_of_reoccurring_datapoints_to_all_datapoints")
def percentage_of_reoccurring_datapoints_to_all_datapoints(X: np.ndarray) -> np.ndarray:
    _, _, dup = _groups(X)
    return np.sum(dup, axis=1) / X.shape[1]


@simple("sum_of_reoccurring_values")
def sum_of_reoccurring_values(X: np.ndarray) -> np.ndarray:
    S, first, dup = _groups(X)
    return np.sum(np.where(first & dup, S, 0.0), axis=1)


@simple("sum_of_reoccurring_data_points")
def sum_of_reoccurring_data_points(X: np.ndarray) -> np.ndarray:
    S, _, dup = _groups(X)
    return np.sum(np.where(dup, S, 0.0), axis=1)


@simple("ratio_value_number_to_time_series_length")
def ratio_value_number_to_time_series_length(X: np.ndarray) -> np.ndarray:
    _, first, _ = _groups(X)
    return np.sum(first, axis=1) / X.shape[1]


def histogram_counts(X: np.ndarray, bins: int) -> np.ndarray:
    """(n_series, bins) counts of ``np.histogram(x, bins=bins)`` for every row, with numpy's own
    edge arithmetic (equal-width bins from min to max, +-0.5 when they are equal; the last bin closed).
    Hand-written because numpy has no row-wise histogram; checked against np.histogram in the tests."""
    lo = np.min(X, axis=1)
    hi = np.max(X, axis=1)
    same = lo == hi
    lo = np.where(same, lo - 0.5, lo)
    hi = np.where(same, hi + 0.5, hi)
    edges = np.linspace(lo, hi, bins + 1, axis=1)  # as np.histogram: linspace(first, last, bins + 1)
    norm = bins / (hi - lo)
    idx = ((X - lo[:, None]) * norm[:, None]).astype(np.intp)
    idx[idx == bins] -= 1
    rows = np.arange(X.shape[0])[:, None]
    dec = X < edges[rows, idx]
    idx[dec] -= 1
    inc = (X >= edges[rows, idx + 1]) & (idx != bins - 1)
    idx[inc] += 1
    counts = np.zeros((X.shape[0], bins), np.int64)
    np.add.at(counts, (np.broadcast_to(rows, idx.shape), idx), 1)
    return counts


def binned_entropy_rows(X: np.ndarray, max_bins: int) -> np.ndarray:
    """tsfresh's binned_entropy of every row (NaN for a row with a NaN)."""
    bad = np.isnan(X).any(axis=1)
    Xs = np.where(bad[:, None], 0.0, X)
    probs = histogram_counts(Xs, max_bins) / X.shape[1]
    probs[probs == 0] = 1.0
    return np.where(bad, np.nan, -np.sum(probs * np.log(probs), axis=1))


@simple("binned_entropy")
def binned_entropy(X: np.ndarray, max_bins: int) -> np.ndarray:
    return binned_entropy_rows(X, max_bins)


@simple("change_quantiles")
def change_quantiles(X: np.ndarray, ql: float, qh: float, isabs: bool, f_agg: str) -> np.ndarray:
    # tsfresh: pd.qcut(x, [ql, qh], labels=False) == 0 marks ql-quantile <= x <= qh-quantile (pandas
    # 3's qcut takes the quantiles with np.quantile; two edges never raise for duplicates)
    if ql >= qh:
        return np.zeros(X.shape[0])
    div = np.diff(X, axis=1)
    if isabs:
        div = np.abs(div)
    edges = np.quantile(X, np.asarray([ql, qh]), axis=1)
    inside = (X >= edges[0][:, None]) & (X <= edges[1][:, None])
    ind = inside[:, 1:] & inside[:, :-1]
    cnt = np.sum(ind, axis=1)
    safe = np.maximum(cnt, 1)
    mu = np.sum(np.where(ind, div, 0.0), axis=1) / safe
    if f_agg == "mean":
        val = mu
    elif f_agg == "var":
        val = np.sum(np.where(ind, (div - mu[:, None]) ** 2, 0.0), axis=1) / safe
    elif f_agg == "median":
        val = np.nanmedian(np.where(ind, div, np.nan), axis=1) if ind.any() else np.zeros(X.shape[0])
    elif f_agg == "std":
        val = np.sqrt(np.sum(np.where(ind, (div - mu[:, None]) ** 2, 0.0), axis=1) / safe)
    else:
        raise ValueError(f"change_quantiles: f_agg {f_agg!r} is not batched (mean, var, median, std)")
    return np.where(cnt == 0, 0.0, val)


@simple("permutation_entropy")
def permutation_entropy(X: np.ndarray, tau: int, dimension: int) -> np.ndarray:
    b, n = X.shape
    m = (n - dimension) // tau + 1
    if m <= 0:
        return np.full(b, np.nan)
    idx = tau * np.arange(m)[:, None] + np.arange(dimension)[None, :]
    W = X[:, idx]  # (b, m, dimension)
    ranks = np.argsort(np.argsort(W, axis=-1), axis=-1)
    code = ranks @ (dimension ** np.arange(dimension))  # one integer per ordinal pattern
    key = np.arange(b)[:, None] * dimension**dimension + code
    uniq, counts = np.unique(key.ravel(), return_counts=True)
    p = counts / m
    return -np.bincount(uniq // dimension**dimension, weights=p * np.log(p), minlength=b)


@simple("lempel_ziv_complexity")
def lempel_ziv_complexity(X: np.ndarray, bins: int) -> np.ndarray:
    lo, hi = np.min(X, axis=1), np.max(X, axis=1)
    edges = np.linspace(lo, hi, bins + 1, axis=1)[:, 1:]  # (b, bins), as tsfresh's np.linspace
    seq = np.sum(edges[:, None, :] < X[:, :, None], axis=2)  # np.searchsorted(edges, x, side="left")
    return np.array([_lz(row) for row in seq.tolist()]) / X.shape[1]


def _lz(seq: list[int]) -> int:
    """tsfresh's Lempel-Ziv parse of one symbol sequence (hand-written loop: it is sequential)."""
    seen: set[tuple[int, ...]] = set()
    n, ind, inc = len(seq), 0, 1
    while ind + inc <= n:
        s = tuple(seq[ind : ind + inc])
        if s in seen:
            inc += 1
        else:
            seen.add(s)
            ind += inc
            inc = 1
    return len(seen)


def _first_digit(A: np.ndarray) -> np.ndarray:
    """First digit of |values| (0 for 0) as tsfresh reads it: from np.format_float_scientific, the
    shortest decimal that round-trips (0.3 gives 3, though the double is 0.2999...). Arithmetic where
    the quotient is clearly inside a digit; the few values within 1e-6 of a digit boundary are read
    from numpy's own formatting."""
    A = np.abs(np.nan_to_num(A))
    pos = A > 0
    with np.errstate(divide="ignore"):
        e = np.floor(np.log10(np.where(pos, A, 1.0)))
    q = A / 10.0**e
    d = np.floor(q)
    near = pos & ((np.abs(q - np.round(q)) < 1e-6 * q) | (d < 1) | (d >= 10))
    for i in zip(*np.nonzero(near), strict=True):
        d[i] = int(np.format_float_scientific(A[i])[:1])
    return np.where(pos, d, 0).astype(np.int64)


@simple("benford_correlation")
def benford_correlation(X: np.ndarray) -> np.ndarray:
    D = _first_digit(X)
    benford = np.log10(1 + 1 / np.arange(1, 10))
    data = np.stack([(D == k).mean(axis=1) for k in range(1, 10)], axis=1)  # (b, 9)
    bc = benford - benford.mean()
    dc = data - data.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (dc @ bc) / np.sqrt(np.sum(dc * dc, axis=1) * np.sum(bc * bc))
    return np.clip(r, -1, 1)


@combiner("query_similarity_count")
def query_similarity_count(X: np.ndarray, param: list[dict]) -> list[tuple[str, np.ndarray]]:
    from lnpstore.models.tsfeatures.registry import per_series
    from tsfresh.utilities.string_manipulation import convert_to_output_format

    out = []
    for p in param:
        if p.get("query") is None:  # tsfresh: np.asarray(None) has size 1 < 3, so the count stays NaN
            out.append((convert_to_output_format(p), np.full(X.shape[0], np.nan)))
        else:
            out += per_series("query_similarity_count", X, [p])
    return out
