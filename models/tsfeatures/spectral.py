"""Batched tsfresh calculators in frequency and scale: FFT, Welch, wavelets and CWT peaks.

numpy's rfft, scipy's welch and pywt's cwt all take an axis, so the batch goes through the same
library routines tsfresh calls per series.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from lnpstore.models.tsfeatures.registry import combiner, simple
from lnpstore.models.tsfeatures.symbolic import binned_entropy_rows


@combiner("fft_coefficient")
def fft_coefficient(X: np.ndarray, param: list[dict]) -> list[tuple[str, np.ndarray]]:
    F = np.fft.rfft(X, axis=1)
    agg: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "real": np.real,
        "imag": np.imag,
        "abs": np.abs,
        "angle": lambda z: np.angle(z, deg=True),
    }
    out = []
    for p in param:
        c, a = p["coeff"], p["attr"]
        v = agg[a](F[:, c]) if c < F.shape[1] else np.full(X.shape[0], np.nan)
        out.append((f'attr_"{a}"__coeff_{c}', v))
    return out


@combiner("fft_aggregated")
def fft_aggregated(X: np.ndarray, param: list[dict]) -> list[tuple[str, np.ndarray]]:
    Y = np.abs(np.fft.rfft(X, axis=1))
    idx = np.arange(Y.shape[1], dtype=float)
    tot = Y.sum(axis=1)

    def moment(k: int) -> np.ndarray:
        return (Y @ idx**k) / tot

    with np.errstate(divide="ignore", invalid="ignore"):
        c = moment(1)
        var = moment(2) - c**2
        out = []
        for p in param:
            a = p["aggtype"]
            if a == "centroid":
                v = c
            elif a == "variance":
                v = var
            elif a == "skew":
                v = np.where(var < 0.5, np.nan, (moment(3) - 3 * c * var - c**3) / var**1.5)
            else:  # kurtosis, tsfresh's formula as written (its "- 3 * centroid" term included)
                v = moment(4) - 4 * c * moment(3) + 6 * moment(2) * c**2 - 3 * c
                v = np.where(var < 0.5, np.nan, v / var**2)
            out.append((f'aggtype_"{a}"', v))
    return out


def welch_rows(X: np.ndarray) -> np.ndarray:
    """scipy.signal.welch of every row with tsfresh's nperseg = min(n, 256): (n_series, n_freq)."""
    from scipy.signal import welch

    _, pxx = welch(X, nperseg=min(X.shape[1], 256), axis=1)
    return pxx


@combiner("spkt_welch_density")
def spkt_welch_density(X: np.ndarray, param: list[dict]) -> list[tuple[str, np.ndarray]]:
    P = welch_rows(X)
    return [
        (f"coeff_{p['coeff']}", P[:, p["coeff"]] if p["coeff"] < P.shape[1] else np.full(X.shape[0], np.nan))
        for p in param
    ]


@simple("fourier_entropy")
def fourier_entropy(X: np.ndarray, bins: int) -> np.ndarray:
    P = welch_rows(X)
    with np.errstate(divide="ignore", invalid="ignore"):
        return binned_entropy_rows(P / np.max(P, axis=1, keepdims=True), bins)


@combiner("cwt_coefficients")
def cwt_coefficients(X: np.ndarray, param: list[dict]) -> list[tuple[str, np.ndarray]]:
    import pywt

    done: dict[tuple, np.ndarray] = {}
    out = []
    for p in param:
        widths, w, coeff = tuple(p["widths"]), p["w"], p["coeff"]
        if widths not in done:
            done[widths], _ = pywt.cwt(X, scales=widths, wavelet="mexh", axis=1)  # (scales, b, n)
        C = done[widths]
        v = C[widths.index(w), :, coeff] if coeff < C.shape[2] else np.full(X.shape[0], np.nan)
        out.append((f"coeff_{coeff}__w_{w}__widths_{widths}", v))
    return out


def _ricker(points: int, a: float) -> np.ndarray:
    """tsfresh's ricker wavelet (feature_calculators._ricker)."""
    A = 2 / (np.sqrt(3 * a) * (np.pi**0.25))
    wsq = a**2
    vec = np.arange(0, points) - (points - 1.0) / 2
    xsq = vec**2
    mod = 1 - xsq / wsq
    gauss = np.exp(-xsq / (2 * wsq))
    return A * mod * gauss


def _cwt_rows(X: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """scipy's find_peaks_cwt transform of every row: (n_widths, n_series, n_steps). np.convolve per
    row, as scipy does: the peaks depend on exact ties (e.g. a constant stretch), so the arithmetic
    must be the same to the last bit, which a batched sum in another order is not."""
    b, n = X.shape
    out = np.empty((len(widths), b, n))
    for i, w in enumerate(widths):
        N = int(min(10 * w, n))
        k = np.conj(_ricker(N, w)[::-1])
        for s in range(b):
            out[i, s] = np.convolve(X[s], k, mode="same")
    return out


@simple("number_cwt_peaks")
def number_cwt_peaks(X: np.ndarray, n: int) -> np.ndarray:
    # scipy.signal.find_peaks_cwt(x, widths=1..n, wavelet=tsfresh's ricker): the transform and the
    # relative maxima are batched; the ridge-line walk (sequential) runs per series on small lists
    widths = np.arange(1, n + 1)
    C = _cwt_rows(X, widths)  # (w, b, L)
    L = X.shape[1]
    relmax = np.zeros(C.shape, bool)
    if L > 2:  # scipy's _boolrelextrema(order=1, mode="clip"): the end points never qualify
        relmax[:, :, 1:-1] = (C[:, :, 1:-1] > C[:, :, :-2]) & (C[:, :, 1:-1] > C[:, :, 2:])
    noises = _noise_rows(C[0], window=int(np.ceil(L / 20)), perc=10)
    max_dist = widths / 4.0
    gap = np.ceil(widths[0])
    min_len = np.ceil(len(widths) / 4)
    return np.array(
        [
            _count_ridges(relmax[:, s, :], C[:, s, :], noises[s], max_dist, gap, min_len)
            for s in range(X.shape[0])
        ]
    )


def _noise_rows(R: np.ndarray, window: int, perc: float) -> np.ndarray:
    """scipy's noise floor of find_peaks_cwt: scoreatpercentile of row one in a window around each
    point, for every row of R (n_series, L)."""
    from scipy.stats import scoreatpercentile

    b, L = R.shape
    hf, odd = divmod(window, 2)
    if hf == 0 and odd == 1:  # a window of one point: the value itself
        return R.copy()
    out = np.empty_like(R)
    for ind in range(L):
        lo, hi = max(ind - hf, 0), min(ind + hf + odd, L)
        out[:, ind] = scoreatpercentile(R[:, lo:hi], per=perc, axis=1)
    return out


def _count_ridges(
    relmax: np.ndarray, C: np.ndarray, noise: np.ndarray, max_dist: np.ndarray, gap: float, min_len: float
) -> int:
    """scipy's _identify_ridge_lines + _filter_ridge_lines (min_snr=1) for one series, counted.
    A line-for-line port on Python lists (scipy's own code needs the whole transform per series)."""
    has = np.nonzero(relmax.any(axis=1))[0]
    if len(has) == 0:
        return 0
    start = has[-1]
    # each line: [rows, cols, gap]
    lines: list[list[Any]] = [[[start], [c], 0] for c in np.nonzero(relmax[start])[0].tolist()]
    final: list[list[Any]] = []
    for row in range(start - 1, -1, -1):
        this = np.nonzero(relmax[row])[0].tolist()
        for ln in lines:
            ln[2] += 1
        prev = [line[1][-1] for line in lines]
        for col in this:
            line: list[Any] | None = None
            if prev:
                diffs = [abs(col - p) for p in prev]
                closest = int(np.argmin(diffs))
                if diffs[closest] <= max_dist[row]:
                    line = lines[closest]
            if line is not None:
                line[1].append(col)
                line[0].append(row)
                line[2] = 0
            else:
                lines.append([[row], [col], 0])
        for ind in range(len(lines) - 1, -1, -1):
            if lines[ind][2] > gap:
                final.append(lines.pop(ind))
    count = 0
    for rows, cols, _ in final + lines:
        if len(rows) < min_len:
            continue
        order = np.argsort(rows)  # scipy scatters by argsort: element k lands at order[k]
        k0 = int(np.nonzero(order == 0)[0][0])
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = abs(C[rows[k0], cols[k0]] / noise[cols[k0]])
        if snr < 1:
            continue
        count += 1
    return count
