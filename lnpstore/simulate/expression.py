"""GFP expression: the latent model (a treated cell expresses when ``eta + eps > 0``), its level over time,
and the oracle (what the latents say about the outcome). Levels in counts per px above autofluorescence."""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.special import ndtr

from lnpstore.simulate.constants import (
    ETA_INTERCEPT,
    ETA_LOG_COUNT,
    ETA_LOG_COUNT_CENTRE,
    ETA_PERINUCLEAR,
    ETA_RATE,
    ETA_SIZE,
    GFP_LEVEL_SD,
    GFP_LEVEL_SLOPE,
    GFP_PLATEAU_MEDIAN,
    GFP_RISE_FRAMES,
)

#: Number of Monte Carlo draws of the hidden noise per cell for the oracle.
ORACLE_DRAWS = 400


def uptake_rate_z(uptake_tau_frames: np.ndarray) -> np.ndarray:
    """Standardised uptake rate (fast uptake: high), from the uptake time constant (frames)."""
    return -(np.log(uptake_tau_frames) - np.log(8.0)) / 0.35


def draw_expression(
    rng: np.random.Generator,
    *,
    n_particles: np.ndarray,
    uptake_tau_frames: np.ndarray,
    perinuclear_rate: np.ndarray,
    radius_um: np.ndarray,
    is_control: bool,
) -> dict[str, np.ndarray]:
    """Per cell: ``eta`` (linear predictor; -inf in controls), ``eps`` (hidden N(0, 1)), ``expressing``,
    ``gfp_onset`` (0-based frame), ``plateau`` (counts per px) and ``z_rate``."""
    n = len(radius_um)
    eta = np.full(n, -np.inf)
    z_rate = uptake_rate_z(uptake_tau_frames)
    z_peri = (np.log(perinuclear_rate) - np.log(0.06)) / 0.5
    z_size = (np.log(radius_um) - np.log(10.0)) / 0.15
    if not is_control:
        eta = (
            ETA_INTERCEPT
            + ETA_LOG_COUNT * (np.log1p(n_particles) - ETA_LOG_COUNT_CENTRE)
            + ETA_RATE * z_rate
            + ETA_PERINUCLEAR * z_peri
            + ETA_SIZE * z_size
        )
    eps = rng.normal(0, 1, n)
    expressing = (eta + eps > 0) & (not is_control)
    level_noise = rng.normal(0, GFP_LEVEL_SD, n)
    onset_noise = rng.gamma(2.0, 4.0, n)
    gfp_onset = np.maximum(15.0, 18.0 + onset_noise - 3.0 * z_rate)
    plateau = np.where(
        expressing, GFP_PLATEAU_MEDIAN * np.exp(GFP_LEVEL_SLOPE * (eta + eps) + level_noise), 0.0
    )
    return dict(eta=eta, eps=eps, expressing=expressing, gfp_onset=gfp_onset, plateau=plateau, z_rate=z_rate)


def gfp_level(t: float, plateau: np.ndarray, onset: np.ndarray) -> np.ndarray:
    """GFP level at frame index ``t`` (counts per px): rises from ``onset`` towards ``plateau``."""
    return plateau * np.clip(1.0 - np.exp(-(t - onset) / GFP_RISE_FRAMES), 0.0, None)


def oracle(
    mc: np.random.Generator,
    *,
    eta: np.ndarray,
    z_rate: np.ndarray,
    gfp_sum_true: np.ndarray,
    gfp_last: np.ndarray,
    own_window_mask: np.ndarray,
    last_ti: int,
    is_control: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """P(expressing | latents) = Phi(eta) (0 in controls) and E[log gfp_sum_true | latents].

    The expectation is a Monte Carlo over the hidden noise (eps, level noise, onset noise) drawn from
    ``mc``: the cell's own GFP in its window (``own_window_mask`` px, weights) is replaced by each draw's
    level at frame index ``last_ti``; the rest of the window sum (offset, autofluorescence, neighbours)
    stays as rendered.
    """
    n = len(eta)
    oracle_prob = np.where(is_control, 0.0, ndtr(eta)) if n else np.zeros(0)
    oracle_log = np.log(np.maximum(gfp_sum_true, 1.0))
    if n and not is_control:
        k = ORACLE_DRAWS
        e = mc.normal(0, 1, (k, 1))
        pos_mc = eta[None, :] + e > 0
        plat = np.where(
            pos_mc,
            GFP_PLATEAU_MEDIAN * np.exp(GFP_LEVEL_SLOPE * (eta + e) + mc.normal(0, GFP_LEVEL_SD, (k, n))),
            0,
        )
        onset = np.maximum(15.0, 18.0 + mc.gamma(2.0, 4.0, (k, n)) - 3.0 * z_rate)
        g_last = gfp_level(last_ti, plat, onset)
        base = gfp_sum_true - gfp_last * own_window_mask
        oracle_log = np.log(np.maximum(base[None, :] + g_last * own_window_mask[None, :], 1.0)).mean(axis=0)
    return oracle_prob, oracle_log


def one_frame_oracle(cells: pl.DataFrame) -> pl.DataFrame:
    """What the particle count at frame 20 and the cell size alone tell about the outcome (the
    count-and-size oracle), on the simulator's truth.

    The full oracle knows every latent of ``eta``; this one only the particles taken up by frame 20
    (``n_lnp_by_frame20``) and the cell's size (``radius_um``), not the uptake rate or the perinuclear
    drift that the trajectory shows. One frame shows a little more than it (where its particles sit
    hints at their age and drift), so it is a lower reference for a one-frame model, not a ceiling.

    Over the treated cells (finite ``eta``): ``eta = X b + r`` by least squares with X = (1,
    log(1 + n_lnp_by_frame20), log radius_um) and residual variance s2, so ``oracle_frame_prob =
    Phi(X b / sqrt(1 + s2))`` (exact when r is normal); and ``oracle_frame_log_gfp``, the
    least-squares fit of the full oracle's ``oracle_log_gfp`` on X (its best linear predictor from X)
    over the treated cells in bounds at the last frame (``in_bounds_last``). Controls get 0 and their
    own ``oracle_log_gfp``; both are null when fewer than 4 treated cells have the columns. Returns
    ``cells`` with the two columns added.

    Why: where the full oracle gains little over this one, the signal is in count and size and the
    report expects a tie of the time-series models with the CNN (issue 17).
    """
    eta = cells.get_column("eta").to_numpy().astype(np.float64)
    n20 = cells.get_column("n_lnp_by_frame20").to_numpy().astype(np.float64)
    radius = cells.get_column("radius_um").to_numpy().astype(np.float64)
    full_log = cells.get_column("oracle_log_gfp").to_numpy().astype(np.float64)
    x = np.column_stack([np.ones(len(eta)), np.log1p(n20), np.log(radius)])
    treated = np.isfinite(eta) & np.isfinite(x).all(axis=1)
    prob = np.where(treated, np.nan, 0.0)
    log_gfp = np.where(treated, np.nan, full_log)
    if treated.sum() >= x.shape[1] + 1:
        b, *_ = np.linalg.lstsq(x[treated], eta[treated], rcond=None)
        s2 = float(np.var(eta[treated] - x[treated] @ b))
        prob[treated] = ndtr(x[treated] @ b / np.sqrt(1.0 + s2))
        # cells that leave the image have a window sum of ~0 (log 0): fit on those in bounds
        in_bounds = (
            cells.get_column("in_bounds_last").to_numpy() if "in_bounds_last" in cells.columns else True
        )
        fit = treated & np.isfinite(full_log) & in_bounds
        if fit.sum() >= x.shape[1] + 1:
            c, *_ = np.linalg.lstsq(x[fit], full_log[fit], rcond=None)
            log_gfp[treated] = x[treated] @ c
    return cells.with_columns(
        pl.Series("oracle_frame_prob", prob).fill_nan(None),
        pl.Series("oracle_frame_log_gfp", log_gfp).fill_nan(None),
    )
