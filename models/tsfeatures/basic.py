"""Batched tsfresh calculators of moments, extremes, locations, counts and lagged products.

Each function mirrors the tsfresh 0.21 calculator of the same name on every row of ``X``
(n_series, n_steps) at once, with the same numpy operations along axis 1, so the values agree to
rounding. Units are those of the series (or none for ratios and counts).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from lnpstore.models.tsfeatures.registry import combiner, simple


def _std(X: np.ndarray) -> np.ndarray:
    return np.std(X, axis=1)


@simple("variance_larger_than_standard_deviation")
def variance_larger_than_standard_deviation(X: np.ndarray) -> np.ndarray:
    v = np.var(X, axis=1)
    return v > np.sqrt(v)


@simple("ratio_beyond_r_sigma")
def ratio_beyond_r_sigma(X: np.ndarray, r: float) -> np.ndarray:
    dev = np.abs(X - np.mean(X, axis=1, keepdims=True))
    return np.sum(dev > r * _std(X)[:, None], axis=1) / X.shape[1]


@simple("large_standard_deviation")
def large_standard_deviation(X: np.ndarray, r: float) -> np.ndarray:
    return _std(X) > r * (np.max(X, axis=1) - np.min(X, axis=1))


@combiner("symmetry_looking")
def symmetry_looking(X: np.ndarray, param: list[dict]) -> list[tuple[str, np.ndarray]]:
    mmd = np.abs(np.mean(X, axis=1) - np.median(X, axis=1))
    rng = np.max(X, axis=1) - np.min(X, axis=1)
    return [(f"r_{p['r']}", mmd < p["r"] * rng) for p in param]


@simple("has_duplicate_max")
def has_duplicate_max(X: np.ndarray) -> np.ndarray:
    return np.sum(X == np.max(X, axis=1, keepdims=True), axis=1) >= 2


@simple("has_duplicate_min")
def has_duplicate_min(X: np.ndarray) -> np.ndarray:
    return np.sum(X == np.min(X, axis=1, keepdims=True), axis=1) >= 2


@simple("sum_values")
def sum_values(X: np.ndarray) -> np.ndarray:
    return np.sum(X, axis=1)


@simple("abs_energy")
def abs_energy(X: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", X, X)


@simple("cid_ce")
def cid_ce(X: np.ndarray, normalize: bool) -> np.ndarray:
    if normalize:
        s = _std(X)
        ok = s != 0
        Z = np.where(ok[:, None], (X - np.mean(X, axis=1, keepdims=True)) / np.where(ok, s, 1.0)[:, None], 0)
        d = np.diff(Z, axis=1)
        return np.where(ok, np.sqrt(np.einsum("ij,ij->i", d, d)), 0.0)
    d = np.diff(X, axis=1)
    return np.sqrt(np.einsum("ij,ij->i", d, d))


@simple("mean_abs_change")
def mean_abs_change(X: np.ndarray) -> np.ndarray:
    if X.shape[1] < 2:
        return np.full(X.shape[0], np.nan)
    return np.mean(np.abs(np.diff(X, axis=1)), axis=1)


@simple("mean_change")
def mean_change(X: np.ndarray) -> np.ndarray:
    n = X.shape[1]
    return (X[:, -1] - X[:, 0]) / (n - 1) if n > 1 else np.full(X.shape[0], np.nan)


@simple("mean_second_derivative_central")
def mean_second_derivative_central(X: np.ndarray) -> np.ndarray:
    n = X.shape[1]
    if n <= 2:
        return np.full(X.shape[0], np.nan)
    return (X[:, -1] - X[:, -2] - X[:, 1] + X[:, 0]) / (2 * (n - 2))


@simple("median")
def median(X: np.ndarray) -> np.ndarray:
    return np.median(X, axis=1)


@simple("mean")
def mean(X: np.ndarray) -> np.ndarray:
    return np.mean(X, axis=1)


@simple("length")
def length(X: np.ndarray) -> np.ndarray:
    return np.full(X.shape[0], float(X.shape[1]))


@simple("standard_deviation")
def standard_deviation(X: np.ndarray) -> np.ndarray:
    return _std(X)


@simple("variation_coefficient")
def variation_coefficient(X: np.ndarray) -> np.ndarray:
    avg = np.mean(X, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(avg == 0, np.nan, _std(X) / avg)


@simple("variance")
def variance(X: np.ndarray) -> np.ndarray:
    return np.var(X, axis=1)


@simple("skewness")
def skewness(X: np.ndarray) -> np.ndarray:
    # pandas' own (bias-corrected) skew, column-wise: the same Cython routine as tsfresh's Series.skew
    return pd.DataFrame(X.T).skew(axis=0, skipna=False).to_numpy(np.float64)


@simple("kurtosis")
def kurtosis(X: np.ndarray) -> np.ndarray:
    return pd.DataFrame(X.T).kurt(axis=0, skipna=True).to_numpy(np.float64)


@simple("root_mean_square")
def root_mean_square(X: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(np.square(X), axis=1))


@simple("absolute_sum_of_changes")
def absolute_sum_of_changes(X: np.ndarray) -> np.ndarray:
    return np.sum(np.abs(np.diff(X, axis=1)), axis=1)


def _longest_run(B: np.ndarray) -> np.ndarray:
    """Longest run of True per row of a boolean (n_series, n_steps) array (0 when none)."""
    run = np.zeros(B.shape[0], np.int64)
    best = np.zeros(B.shape[0], np.int64)
    for j in range(B.shape[1]):  # a loop over the (short) time axis, vectorised over the series
        run = (run + 1) * B[:, j]
        np.maximum(best, run, out=best)
    return best


@simple("longest_strike_below_mean")
def longest_strike_below_mean(X: np.ndarray) -> np.ndarray:
    return _longest_run(X < np.mean(X, axis=1, keepdims=True))


@simple("longest_strike_above_mean")
def longest_strike_above_mean(X: np.ndarray) -> np.ndarray:
    return _longest_run(X > np.mean(X, axis=1, keepdims=True))


@simple("count_above_mean")
def count_above_mean(X: np.ndarray) -> np.ndarray:
    return np.sum(X > np.mean(X, axis=1, keepdims=True), axis=1)


@simple("count_below_mean")
def count_below_mean(X: np.ndarray) -> np.ndarray:
    return np.sum(X < np.mean(X, axis=1, keepdims=True), axis=1)


@simple("last_location_of_maximum")
def last_location_of_maximum(X: np.ndarray) -> np.ndarray:
    return 1.0 - np.argmax(X[:, ::-1], axis=1) / X.shape[1]


@simple("first_location_of_maximum")
def first_location_of_maximum(X: np.ndarray) -> np.ndarray:
    return np.argmax(X, axis=1) / X.shape[1]


@simple("last_location_of_minimum")
def last_location_of_minimum(X: np.ndarray) -> np.ndarray:
    return 1.0 - np.argmin(X[:, ::-1], axis=1) / X.shape[1]


@simple("first_location_of_minimum")
def first_location_of_minimum(X: np.ndarray) -> np.ndarray:
    return np.argmin(X, axis=1) / X.shape[1]


@simple("maximum")
def maximum(X: np.ndarray) -> np.ndarray:
    return np.max(X, axis=1)


@simple("absolute_maximum")
def absolute_maximum(X: np.ndarray) -> np.ndarray:
    return np.max(np.abs(X), axis=1)


@simple("minimum")
def minimum(X: np.ndarray) -> np.ndarray:
    return np.min(X, axis=1)


def _lagged(X: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x_t, x_{t+lag}, x_{t+2 lag} for t < n - 2 lag."""
    n = X.shape[1]
    m = n - 2 * lag
    return X[:, :m], X[:, lag : lag + m], X[:, 2 * lag : 2 * lag + m]


@simple("time_reversal_asymmetry_statistic")
def time_reversal_asymmetry_statistic(X: np.ndarray, lag: int) -> np.ndarray:
    if 2 * lag >= X.shape[1]:
        return np.zeros(X.shape[0])
    x0, x1, x2 = _lagged(X, lag)
    return np.mean(x2 * x2 * x1 - x1 * x0 * x0, axis=1)


@simple("c3")
def c3(X: np.ndarray, lag: int) -> np.ndarray:
    if 2 * lag >= X.shape[1]:
        return np.zeros(X.shape[0])
    x0, x1, x2 = _lagged(X, lag)
    return np.mean(x2 * x1 * x0, axis=1)


@simple("mean_n_absolute_max")
def mean_n_absolute_max(X: np.ndarray, number_of_maxima: int) -> np.ndarray:
    if X.shape[1] <= number_of_maxima:
        return np.full(X.shape[0], np.nan)
    return np.mean(np.sort(np.abs(X), axis=1)[:, -number_of_maxima:], axis=1)


@simple("number_peaks")
def number_peaks(X: np.ndarray, n: int) -> np.ndarray:
    # tsfresh compares x[j] with x[j -+ i] for j in [n, len - n) (its _roll never wraps there)
    L = X.shape[1]
    if L - 2 * n <= 0:
        return np.zeros(X.shape[0])
    mid = X[:, n : L - n]
    res = np.ones_like(mid, dtype=bool)
    for i in range(1, n + 1):
        res &= mid > X[:, n - i : L - n - i]
        res &= mid > X[:, n + i : L - n + i]
    return np.sum(res, axis=1)


@combiner("index_mass_quantile")
def index_mass_quantile(X: np.ndarray, param: list[dict]) -> list[tuple[str, np.ndarray]]:
    A = np.abs(X)
    s = np.sum(A, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mass = np.cumsum(A, axis=1) / s[:, None]
    out = []
    for p in param:
        v = (np.argmax(mass >= p["q"], axis=1) + 1) / X.shape[1]
        out.append((f"q_{p['q']}", np.where(s == 0, np.nan, v)))
    return out


@simple("number_crossing_m")
def number_crossing_m(X: np.ndarray, m: float) -> np.ndarray:
    pos = X > m
    return np.sum(pos[:, 1:] != pos[:, :-1], axis=1)


@simple("value_count")
def value_count(X: np.ndarray, value: float) -> np.ndarray:
    if np.isnan(value):
        return np.sum(np.isnan(X), axis=1)
    return np.sum(X == value, axis=1)


@simple("range_count")
def range_count(X: np.ndarray, min: float, max: float) -> np.ndarray:  # noqa: A002 (tsfresh's names)
    return np.sum((X >= min) & (X < max), axis=1)


@combiner("energy_ratio_by_chunks")
def energy_ratio_by_chunks(X: np.ndarray, param: list[dict]) -> list[tuple[str, np.ndarray]]:
    full = np.sum(X**2, axis=1)
    out = []
    for p in param:
        k, focus = p["num_segments"], p["segment_focus"]
        assert focus < k and k > 0
        seg = np.array_split(np.arange(X.shape[1]), k)[focus]
        e = np.sum(X[:, seg] ** 2.0, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append((f"num_segments_{k}__segment_focus_{focus}", np.where(full == 0, np.nan, e / full)))
    return out


@simple("count_above")
def count_above(X: np.ndarray, t: float) -> np.ndarray:
    return np.sum(X >= t, axis=1) / X.shape[1]


@simple("count_below")
def count_below(X: np.ndarray, t: float) -> np.ndarray:
    return np.sum(X <= t, axis=1) / X.shape[1]


@simple("autocorrelation")
def autocorrelation(X: np.ndarray, lag: int) -> np.ndarray:
    n = X.shape[1]
    if n < lag:
        return np.full(X.shape[0], np.nan)
    D = X - np.mean(X, axis=1, keepdims=True)
    s = np.sum(D[:, : n - lag] * D[:, lag:], axis=1)
    v = np.var(X, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isclose(v, 0), np.nan, s / ((n - lag) * v))


@simple("quantile")
def quantile(X: np.ndarray, q: float) -> np.ndarray:
    return np.quantile(X, q, axis=1)
