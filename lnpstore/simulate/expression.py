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


#: Frames the count-and-size and trajectory oracles see (1..20: the study's last checkpoint).
ORACLE_SEEN_FRAMES = 20
#: Treated cells per feature the trajectory oracle needs (it fits 2 per frame in-sample: below this its
#: fit would be optimistic by more than ~10 % of the variance).
TRACK_ROWS_PER_COLUMN = 10


def _linear_readout(
    x: np.ndarray,
    eta: np.ndarray,
    full_log: np.ndarray,
    in_bounds: np.ndarray | bool,
    *,
    rows_per_column: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """What the features ``x`` (one row per cell, intercept included) tell about the outcome, by least
    squares over the treated cells (finite ``eta`` and ``x``).

    ``eta = x b + r`` with residual variance s2, so P(expressing | x) = Phi(x b / sqrt(1 + s2)) (exact
    when r is normal); the log GFP is the least-squares fit of the full oracle's ``oracle_log_gfp`` on
    ``x`` over the treated cells in bounds at the last frame (one that left the image has a window sum
    of ~0, log 0). Controls get 0 and their own ``oracle_log_gfp``; treated cells get NaN when fewer
    than ``x``'s columns + 1 (and ``rows_per_column`` times the columns) treated cells have the values,
    or their own features are not finite. The fit is in-sample: with many columns the rows-per-column
    floor keeps its optimism small (about columns / rows of the variance).
    """
    enough = max(x.shape[1] + 1, rows_per_column * x.shape[1])
    treated = np.isfinite(eta) & np.isfinite(x).all(axis=1)
    control = ~np.isfinite(eta)
    prob = np.where(control, 0.0, np.nan)
    log_gfp = np.where(control, full_log, np.nan)
    if treated.sum() >= enough:
        b, *_ = np.linalg.lstsq(x[treated], eta[treated], rcond=None)
        s2 = float(np.var(eta[treated] - x[treated] @ b))
        prob[treated] = ndtr(x[treated] @ b / np.sqrt(1.0 + s2))
        fit = treated & np.isfinite(full_log) & in_bounds
        if fit.sum() >= enough:
            c, *_ = np.linalg.lstsq(x[fit], full_log[fit], rcond=None)
            log_gfp[treated] = x[treated] @ c
    return prob, log_gfp


def _truth_columns(cells: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray | bool]:
    """``eta``, ``oracle_log_gfp`` and ``in_bounds_last`` (True when absent) of the truth's cells."""
    eta = cells.get_column("eta").to_numpy().astype(np.float64)
    full_log = cells.get_column("oracle_log_gfp").to_numpy().astype(np.float64)
    in_bounds = cells.get_column("in_bounds_last").to_numpy() if "in_bounds_last" in cells.columns else True
    return eta, full_log, in_bounds


def one_frame_oracle(cells: pl.DataFrame) -> pl.DataFrame:
    """What the particle count at frame 20 and the cell size alone tell about the outcome (the
    count-and-size oracle), on the simulator's truth.

    The full oracle knows every latent of ``eta``; this one only the particles taken up by frame 20
    (``n_lnp_by_frame20``) and the cell's size (``radius_um``), not the uptake rate or the perinuclear
    drift that the trajectory shows. One frame shows a little more than it (where its particles sit
    hints at their age and drift), so it is a lower reference for a one-frame model, not a ceiling.

    The linear read-out (:func:`_linear_readout`) of X = (1, log(1 + n_lnp_by_frame20), log radius_um):
    ``oracle_frame_prob`` and ``oracle_frame_log_gfp``. Controls get 0 and their own
    ``oracle_log_gfp``; both are null when fewer than 4 treated cells have the columns. Returns
    ``cells`` with the two columns added.

    Why: where the full oracle gains little over this one, the signal is in count and size and the
    report expects a tie of the time-series models with the CNN (issue 17).
    """
    eta, full_log, in_bounds = _truth_columns(cells)
    n20 = cells.get_column("n_lnp_by_frame20").to_numpy().astype(np.float64)
    radius = cells.get_column("radius_um").to_numpy().astype(np.float64)
    x = np.column_stack([np.ones(len(eta)), np.log1p(n20), np.log(radius)])
    prob, log_gfp = _linear_readout(x, eta, full_log, in_bounds)
    return cells.with_columns(
        pl.Series("oracle_frame_prob", prob).fill_nan(None),
        pl.Series("oracle_frame_log_gfp", log_gfp).fill_nan(None),
    )


def trajectory_features(
    cells: pl.DataFrame, tracks: pl.DataFrame, frames: int = ORACLE_SEEN_FRAMES
) -> np.ndarray:
    """The trajectory oracle's features per row of ``cells`` (keys well, field, true_id), from the
    truth's ``tracks``: an intercept, log(1 + true particle count) and the particles' depth in each of
    frames 1..``frames``, and the log of the cell's mean area (px^2); (n_cells, 2 x frames + 2), NaN
    rows for cells not in every frame. A frame without particles takes the frame's mean depth."""
    keys = ["well", "field", "true_id"]
    depth = pl.col("lnp_radial_frac").fill_nan(None)
    seen = tracks.filter(pl.col("frame").is_between(1, frames)).with_columns(
        depth.fill_null(depth.mean().over("frame")).fill_null(1.0)  # no particle in any cell: the outline
    )
    wide = seen.pivot(on="frame", index=keys, values=["n_lnp", "lnp_radial_frac"], aggregate_function="first")
    area = seen.group_by(keys).agg(pl.col("area_px").mean().log().alias("_log_area"), pl.len().alias("_n"))
    joined = cells.select(keys).join(wide, on=keys, how="left").join(area, on=keys, how="left")
    count_cols = [f"n_lnp_{f}" for f in range(1, frames + 1)]
    depth_cols = [f"lnp_radial_frac_{f}" for f in range(1, frames + 1)]
    missing = [c for c in count_cols + depth_cols if c not in joined.columns]
    joined = joined.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in missing])
    complete = joined.get_column("_n").fill_null(0).to_numpy() == frames
    counts = np.log1p(joined.select(count_cols).to_numpy().astype(np.float64))
    depths = joined.select(depth_cols).to_numpy().astype(np.float64)
    log_area = joined.get_column("_log_area").to_numpy().astype(np.float64)
    x = np.column_stack([np.ones(cells.height), counts, depths, log_area])
    x[~complete] = np.nan
    return x


def trajectory_oracle(
    cells: pl.DataFrame, tracks: pl.DataFrame, frames: int = ORACLE_SEEN_FRAMES
) -> pl.DataFrame:
    """What a perfect reader of frames 1..``frames`` could tell about the outcome (the trajectory
    oracle), on the simulator's truth: the linear read-out (:func:`_linear_readout`) of the true
    particle count (log 1 + ``n_lnp``) and the particles' depth (``lnp_radial_frac``) in every frame,
    and the log of the cell's mean area (``area_px``), from ``tracks`` (truth's tracks.parquet).

    Unlike the full oracle it does not know the particles still to come after ``frames``, the uptake
    rate or drift beyond what the counts and depths show, nor the neighbours' GFP at the last frame; so
    it is what the images of frames 1..``frames`` hold for a linear reader, the reference for how well a
    model reads them (issue 17). A frame without particles has no depth: the frame's mean depth stands
    in (the count, 0, says the rest). A cell missing from some of the frames (it entered the image
    later, or was born) gets null, and every cell does on a plate with fewer than
    :data:`TRACK_ROWS_PER_COLUMN` treated cells per feature (2 x ``frames`` + 2: 420 at 20 frames; the
    study-size plate has ~1400, the demo ~150). Returns ``cells`` with ``oracle_track_prob`` and
    ``oracle_track_log_gfp`` added (controls: 0 and their own ``oracle_log_gfp``).
    """
    x = trajectory_features(cells, tracks, frames)
    eta, full_log, in_bounds = _truth_columns(cells)
    prob, log_gfp = _linear_readout(x, eta, full_log, in_bounds, rows_per_column=TRACK_ROWS_PER_COLUMN)
    return cells.with_columns(
        pl.Series("oracle_track_prob", prob).fill_nan(None),
        pl.Series("oracle_track_log_gfp", log_gfp).fill_nan(None),
    )
