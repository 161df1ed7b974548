"""Batched tsfresh calculators that fit something: linear trends, autocorrelations, partial
autocorrelations, AR coefficients, the augmented Dickey-Fuller test and the Langevin (Friedrich) model.

tsfresh calls scipy's linregress, statsmodels' acf / pacf / AutoReg / adfuller and numpy's polyfit /
roots per series; here the same formulas run on all series at once (least squares through numpy's
stacked ``pinv``, the SVD pseudo-inverse statsmodels' OLS uses). Hand-written where the libraries have
no batch axis; each step is named after the library code it mirrors.
"""

from __future__ import annotations

import numpy as np
from lnpstore.models.tsfeatures.registry import combiner, simple


# ------------------------------------------------------------------------------- linear trends
def linregress_rows(Y: np.ndarray) -> dict[str, np.ndarray]:
    """scipy.stats.linregress(range(n), y) of every row of Y (n_series, n) >= 2 points: slope,
    intercept, rvalue, pvalue, stderr, intercept_stderr (scipy 1.17's formulas)."""
    from scipy.stats import t as student_t

    b, n = Y.shape
    x = np.arange(n, dtype=float)
    xm, ym = x.mean(), Y.mean(axis=1)
    dx, dy = x - xm, Y - ym[:, None]
    ssxm = np.mean(dx * dx)
    ssxym = (dy @ dx) / n
    ssym = np.mean(dy * dy, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.clip(ssxym / np.sqrt(ssxm * ssym), -1.0, 1.0)
        r = np.where(ssym == 0.0, np.where(ssxym == 0, np.nan, 0.0), r)
        slope = ssxym / ssxm
        intercept = ym - slope * xm
        if n == 2:
            p = np.where(Y[:, 0] == Y[:, 1], 1.0, 0.0)
            se = np.zeros(b)
            ise = np.zeros(b)
        else:
            df = n - 2
            tiny = 1.0e-20
            tt = r * np.sqrt(df / ((1.0 - r + tiny) * (1.0 + r + tiny)))
            p = 2 * student_t.sf(np.abs(tt), df)
            se = np.sqrt((1 - r**2) * ssym / ssxm / df)
            ise = se * np.sqrt(ssxm + xm**2)
    out = {"slope": slope, "intercept": intercept, "rvalue": r, "pvalue": p, "stderr": se}
    out["intercept_stderr"] = ise
    # an exact line (|r| = 1 to rounding): stderr and pvalue are rounding noise whose value depends on
    # the order of the sums, so those rows take scipy's own linregress (as tsfresh does)
    exact = np.nonzero((n > 2) & (np.abs(r) > 1 - 1e-9))[0]
    if len(exact):
        from scipy.stats import linregress

        for i in exact:
            res = linregress(range(n), Y[i])
            for k in out:
                out[k][i] = getattr(res, k)
    return out


@combiner("linear_trend")
def linear_trend(X: np.ndarray, param: list[dict]) -> list[tuple[str, np.ndarray]]:
    lr = linregress_rows(X)
    return [(f'attr_"{p["attr"]}"', lr[p["attr"]]) for p in param]


def _chunk_agg(X: np.ndarray, f_agg: str, chunk_len: int) -> np.ndarray:
    """tsfresh's _aggregate_on_chunks of every row: (n_series, ceil(n / chunk_len))."""
    n = X.shape[1]
    full = n // chunk_len
    f = getattr(np, f_agg)
    parts = []
    if full:
        parts.append(f(X[:, : full * chunk_len].reshape(X.shape[0], full, chunk_len), axis=2))
    if n % chunk_len:
        parts.append(f(X[:, full * chunk_len :], axis=1)[:, None])
    return np.concatenate(parts, axis=1)


@combiner("agg_linear_trend")
def agg_linear_trend(X: np.ndarray, param: list[dict]) -> list[tuple[str, np.ndarray]]:
    done: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    out = []
    for p in param:
        c, f, a = p["chunk_len"], p["f_agg"], p["attr"]
        if c >= X.shape[1]:
            v = np.full(X.shape[0], np.nan)
        else:
            if (f, c) not in done:
                done[(f, c)] = linregress_rows(_chunk_agg(X, f, c))
            v = done[(f, c)][a]
        out.append((f'attr_"{a}"__chunk_len_{c}__f_agg_"{f}"', v))
    return out


# ------------------------------------------------------------------------------- autocorrelation
def acovf_rows(X: np.ndarray, nlag: int) -> np.ndarray:
    """statsmodels acovf(x, adjusted=True, demean=True, fft=False) lags 0..nlag of every row."""
    n = X.shape[1]
    D = X - X.mean(axis=1, keepdims=True)
    acov = np.stack([np.einsum("ij,ij->i", D[:, k:], D[:, : n - k]) for k in range(nlag + 1)], axis=1)
    return acov / (n - np.arange(nlag + 1))


@combiner("agg_autocorrelation")
def agg_autocorrelation(X: np.ndarray, param: list[dict]) -> list[tuple[str, np.ndarray]]:
    b, n = X.shape
    maxlag = max(p["maxlag"] for p in param)
    var = np.var(X, axis=1)
    flat = (np.abs(var) < 1e-10) | (n == 1)
    if n > 1:
        nl = min(maxlag, n - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            acv = acovf_rows(np.where(flat[:, None], 0.0, X), nl)
            A = acv[:, 1:] / acv[:, :1]
    else:
        A = np.zeros((b, 0))
    out = []
    for p in param:
        f = getattr(np, p["f_agg"])
        k = int(p["maxlag"])
        v = f(A[:, :k], axis=1) if A.shape[1] else np.full(b, np.nan)
        zero = f(np.zeros(min(k, n))) if min(k, n) else np.nan  # tsfresh's a = [0] * len(x)
        out.append((f'f_agg_"{p["f_agg"]}"__maxlag_{p["maxlag"]}', np.where(flat, zero, v)))
    return out


def _levinson_durbin_pacf(acv: np.ndarray, nlags: int) -> np.ndarray:
    """statsmodels levinson_durbin(acv, nlags, isacov=True).pacf of every row: (n_series, nlags + 1)."""
    b = acv.shape[0]
    phi = np.zeros((b, nlags + 1, nlags + 1))
    sig = np.zeros((b, nlags + 1))
    phi[:, 1, 1] = acv[:, 1] / acv[:, 0]
    sig[:, 1] = acv[:, 0] - phi[:, 1, 1] * acv[:, 1]
    for k in range(2, nlags + 1):
        phi[:, k, k] = (acv[:, k] - np.einsum("ij,ij->i", phi[:, 1:k, k - 1], acv[:, 1:k][:, ::-1])) / sig[
            :, k - 1
        ]
        for j in range(1, k):
            phi[:, j, k] = phi[:, j, k - 1] - phi[:, k, k] * phi[:, k - j, k - 1]
        sig[:, k] = sig[:, k - 1] * (1 - phi[:, k, k] ** 2)
    pacf = np.diagonal(phi, axis1=1, axis2=2).copy()
    pacf[:, 0] = 1.0
    return pacf


@combiner("partial_autocorrelation")
def partial_autocorrelation(X: np.ndarray, param: list[dict]) -> list[tuple[str, np.ndarray]]:
    b, n = X.shape
    want = max(p["lag"] for p in param)
    coeffs = np.full((b, want + 1), np.nan)
    if n > 1:
        max_lag = n // 2 - 1 if want >= n // 2 else want
        if max_lag > 0:  # statsmodels pacf(x, method="ld", nlags=max_lag)
            with np.errstate(divide="ignore", invalid="ignore"):
                coeffs[:, : max_lag + 1] = _levinson_durbin_pacf(acovf_rows(X, max_lag), max_lag)
    return [(f"lag_{p['lag']}", coeffs[:, p["lag"]]) for p in param]


# ------------------------------------------------------------------------------- least squares
def ols_rows(Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """statsmodels OLS(y, Z).fit() (method "pinv") of a stack: Z (b, nobs, k), y (b, nobs) ->
    params (b, k), normalized_cov_params (b, k, k), ssr (b,), rank (b,)."""
    P = np.linalg.pinv(Z, rcond=1e-15)
    params = np.einsum("bkn,bn->bk", P, y)
    resid = y - np.einsum("bnk,bk->bn", Z, params)
    ssr = np.einsum("bn,bn->b", resid, resid)
    rank = np.linalg.matrix_rank(Z)
    return params, P @ np.swapaxes(P, 1, 2), ssr, rank


@combiner("ar_coefficient")
def ar_coefficient(X: np.ndarray, param: list[dict]) -> list[tuple[str, np.ndarray]]:
    b, n = X.shape
    fits: dict[int, np.ndarray | None] = {}
    res: dict[str, np.ndarray] = {}
    for p in param:
        k, c = p["k"], p["coeff"]
        if k not in fits:
            # statsmodels AutoReg(x, lags=k, trend="c"): rows t = k..n-1 of [1, x_{t-1}, .., x_{t-k}];
            # it raises (tsfresh: k NaNs) when there are fewer rows than regressors
            if n - k < k + 1:
                fits[k] = None
            else:
                Z = np.stack([np.ones((b, n - k))] + [X[:, k - j : n - j] for j in range(1, k + 1)], axis=2)
                fits[k] = ols_rows(Z, X[:, k:])[0]
        name = f"coeff_{c}__k_{k}"
        fit = fits[k]
        if c > k:
            res[name] = np.full(b, np.nan)
        elif fit is None:  # tsfresh's [np.nan] * k: index k is an IndexError, which it stores as 0
            res[name] = np.full(b, np.nan) if c < k else np.zeros(b)
        else:
            res[name] = fit[:, c]
    return list(res.items())


# ------------------------------------------------------------------------------- Dickey-Fuller
def _mackinnonp_c(stat: np.ndarray) -> np.ndarray:
    """statsmodels mackinnonp(stat, regression="c", N=1) element-wise."""
    from scipy.stats import norm
    from statsmodels.tsa.adfvalues import _tau_largeps, _tau_maxs, _tau_mins, _tau_smallps, _tau_stars

    small = np.polyval(np.asarray(_tau_smallps["c"][0])[::-1], stat)
    large = np.polyval(np.asarray(_tau_largeps["c"][0])[::-1], stat)
    p = norm.cdf(np.where(stat <= _tau_stars["c"][0], small, large))
    p = np.where(stat > _tau_maxs["c"][0], 1.0, np.where(stat < _tau_mins["c"][0], 0.0, p))
    return np.where(np.isnan(stat), np.nan, p)


def _adf_design(X: np.ndarray, lag: int, nobs: int, const_first: bool) -> tuple[np.ndarray, np.ndarray]:
    """adfuller's regression on the last ``nobs`` differences: [level, lags 1..lag of the difference]
    and a constant (first in the lag search, last in the final fit); returns (Z, y)."""
    n = X.shape[1]
    dX = np.diff(X, axis=1)
    m = n - 1  # length of dX
    level = X[:, n - nobs - 1 : n - 1]
    cols = [level] + [dX[:, m - nobs - j : m - j] for j in range(1, lag + 1)]
    one = np.ones_like(level)
    cols = [one] + cols if const_first else cols + [one]
    return np.stack(cols, axis=2), dX[:, m - nobs :]


def adfuller_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """statsmodels adfuller(x, autolag="AIC", regression="c") of every row: (teststat, pvalue,
    usedlag), NaN where adfuller raises (constant series, too short), and the rows where a lag fits
    exactly (residuals ~0: the statistic and the lag choice are rounding noise)."""
    b, n = X.shape
    nan = np.full(b, np.nan)
    maxlag = min(n // 2 - 1 - 1, int(np.ceil(12.0 * np.power(n / 100.0, 1 / 4.0))))
    if maxlag < 0:
        return nan, nan.copy(), nan.copy(), np.zeros(b, bool)
    nobs = n - 1 - maxlag  # lagmat(..., trim="both") of the differences
    aic = np.empty((b, maxlag + 1))
    min_ssr = np.full(b, np.inf)
    for lag in range(maxlag + 1):  # _autolag: OLS on the first 2 + lag columns, same rows
        Z, y = _adf_design(X, lag, nobs, const_first=True)
        _, _, ssr, rank = ols_rows(Z, y)
        min_ssr = np.minimum(min_ssr, ssr / np.maximum(np.einsum("bn,bn->b", y, y), 1e-300))
        llf = -nobs / 2 * np.log(2 * np.pi) - nobs / 2 * np.log(ssr / nobs) - nobs / 2
        aic[:, lag] = -2 * llf + 2 * rank
    best = np.argmin(aic, axis=1)  # min((aic, lag)): ties go to the smaller lag, as argmin does
    stat = np.empty(b)
    for lag in np.unique(best):
        s = best == lag
        nob = n - 1 - lag
        Z, y = _adf_design(X[s], lag, nob, const_first=False)
        params, ncov, ssr, rank = ols_rows(Z, y)
        scale = ssr / (nob - rank)
        stat[s] = params[:, 0] / np.sqrt(scale * ncov[:, 0, 0])
    const = np.max(X, axis=1) == np.min(X, axis=1)
    stat = np.where(const, np.nan, stat)
    exact = ~const & (min_ssr < 1e-12)
    return stat, _mackinnonp_c(stat), np.where(const, np.nan, best.astype(float)), exact


_ADF_ATTRS = [{"attr": "teststat"}, {"attr": "pvalue"}, {"attr": "usedlag"}]


def _adf_constant_column(X: np.ndarray) -> np.ndarray:
    """Rows whose lag-search design has a constant non-intercept column (a linear stretch): there
    statsmodels' add_trend(has_constant="skip") leaves the intercept out, so they go to adfuller."""
    n = X.shape[1]
    maxlag = min(n // 2 - 2, int(np.ceil(12.0 * np.power(n / 100.0, 1 / 4.0))))
    if maxlag < 0:
        return np.zeros(X.shape[0], bool)
    Z, _ = _adf_design(X, maxlag, n - 1 - maxlag, const_first=True)
    non_const = np.max(X, axis=1) != np.min(X, axis=1)
    return non_const & np.any(np.ptp(Z[:, :, 1:], axis=1) == 0, axis=1)


@combiner("augmented_dickey_fuller")
def augmented_dickey_fuller(X: np.ndarray, param: list[dict]) -> list[tuple[str, np.ndarray]]:
    from lnpstore.models.tsfeatures.registry import per_series

    if any(p.get("autolag", "AIC") != "AIC" for p in param):
        return per_series("augmented_dickey_fuller", X, param)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat, pval, lag, exact = adfuller_rows(X)
    # statsmodels' add_trend drops the constant (a constant column), or an exact fit makes the
    # statistic rounding noise: those rows take tsfresh's own calculator
    odd = _adf_constant_column(X) | exact
    if odd.any():
        for (_, v), w in zip(
            per_series("augmented_dickey_fuller", X[odd], _ADF_ATTRS), (stat, pval, lag), strict=True
        ):
            w[odd] = v
    by = {"teststat": stat, "pvalue": pval, "usedlag": lag}
    nan = np.full(X.shape[0], np.nan)
    return [(f'attr_"{p["attr"]}"__autolag_"AIC"', by.get(p["attr"], nan)) for p in param]


# ------------------------------------------------------------------------------- Langevin model
def friedrich_rows(X: np.ndarray, m: int, r: int) -> np.ndarray:
    """tsfresh's _estimate_friedrich_coefficients of every row: (n_series, m + 1), highest power first;
    NaN rows where pandas' qcut raises (repeated quantile edges)."""
    b, n = X.shape
    out = np.full((b, m + 1), np.nan)
    if n < 2:
        return out
    sig, delta = X[:, :-1], np.diff(X, axis=1)
    # pd.qcut(signal, r): quantiles linspace(0, 1, r + 1), nudged up where r * q is not exact
    q = np.linspace(0, 1, r + 1)
    np.putmask(q, r * q != np.arange(r + 1), np.nextafter(q, 1))
    edges = np.quantile(sig, q, axis=1).T  # (b, r + 1); pandas 3's Series.quantile is np.quantile
    ok = np.all(edges[:, 1:] != edges[:, :-1], axis=1)
    ids = np.sum(edges[:, None, :] < sig[:, :, None], axis=2)  # searchsorted(edges, v, "left")
    ids[sig == edges[:, :1]] = 1  # include_lowest
    onehot = ids[:, :, None] == np.arange(1, r + 1)[None, None, :]  # (b, n - 1, r)
    cnt = onehot.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        xm = np.einsum("bn,bnr->br", sig, onehot) / cnt
        ym = np.einsum("bn,bnr->br", delta, onehot) / cnt
    used = cnt > 0
    # np.polyfit(xm, ym, m) on the non-empty bins: an empty bin is a zero row, which changes
    # neither the column scales nor the least-squares solution
    V = np.where(used[:, :, None], np.power(np.where(used, xm, 0.0)[:, :, None], np.arange(m, -1, -1)), 0.0)
    Y = np.where(used, ym, 0.0)
    scale = np.sqrt(np.sum(V * V, axis=1))  # (b, m + 1)
    Vs = V / np.where(scale == 0, 1.0, scale)[:, None, :]
    rcond = used.sum(axis=1) * np.finfo(float).eps
    P = np.linalg.pinv(Vs, rcond=rcond)
    c = np.einsum("bkn,bn->bk", P, Y) / np.where(scale == 0, 1.0, scale)
    good = ok & (used.sum(axis=1) > 0)
    out[good] = c[good]
    return out


@combiner("friedrich_coefficients")
def friedrich_coefficients(X: np.ndarray, param: list[dict]) -> list[tuple[str, np.ndarray]]:
    done: dict[tuple[int, int], np.ndarray] = {}
    res: dict[str, np.ndarray] = {}
    for p in param:
        m, r, c = p["m"], p["r"], p["coeff"]
        assert c >= 0
        if (m, r) not in done:
            done[(m, r)] = friedrich_rows(X, m, r)
        F = done[(m, r)]
        res[f"coeff_{c}__m_{m}__r_{r}"] = F[:, c] if c <= m else np.full(X.shape[0], np.nan)
    return list(res.items())


@simple("max_langevin_fixed_point")
def max_langevin_fixed_point(X: np.ndarray, r: int, m: int) -> np.ndarray:
    C = friedrich_rows(X, m, r)
    out = np.full(X.shape[0], np.nan)
    finite = np.all(np.isfinite(C), axis=1)
    # a leading coefficient ~0 next to the others (e.g. a linear series: drift constant) puts a root
    # at ~1/0 whose value is rounding noise: those rows take tsfresh's own calculator
    tiny = finite & (np.abs(C[:, 0]) <= 1e-9 * np.max(np.abs(C), axis=1))
    fine = finite & ~tiny & (C[:, -1] != 0)
    if fine.any():  # np.roots: the companion matrix's eigenvalues
        Cf = C[fine]
        A = np.zeros((len(Cf), m, m))
        A[:, 1:, :-1] = np.eye(m - 1)
        A[:, 0, :] = -Cf[:, 1:] / Cf[:, :1]
        out[fine] = np.max(np.real(np.linalg.eigvals(A)), axis=1)
    for i in np.nonzero(finite & ~tiny & ~fine)[0]:  # trailing zeros: np.roots adds zero roots
        out[i] = np.max(np.real(np.roots(C[i])))
    if tiny.any():
        from lnpstore.models.tsfeatures.registry import per_series

        out[tiny] = per_series("max_langevin_fixed_point", X[tiny], [{"r": r, "m": m}])[0][1]
    return out
