"""The trajectory oracle: what a perfect linear reader of frames 1..t says about the outcome."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.special import ndtr

from lnpstore.simulate.expression import TRACK_ROWS_PER_COLUMN, trajectory_oracle

FRAMES = 6
N_COLUMNS = 2 * FRAMES + 2  # counts and depths per frame, log area, intercept


def _truth(rng: np.random.Generator, n: int, hidden_sd: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``n`` treated cells whose eta is linear in what the frames show (log 1 + count at the last
    frame seen, the drop in depth, log area) plus an unseen part of sd ``hidden_sd``, and 3 controls."""
    n_all = n + 3
    rate = rng.uniform(0.5, 8.0, n_all)
    # cells x frames; none has a particle in frame 1 (as in the simulator: LNPs arrive from frame 1)
    counts = np.floor(rate[:, None] * np.arange(FRAMES)[None, :])
    depth = np.clip(0.9 - rng.uniform(0.0, 0.05, n_all)[:, None] * np.arange(FRAMES)[None, :], 0.2, 1.0)
    area = rng.lognormal(np.log(1200.0), 0.2, n_all)
    eta = 0.3 + 1.1 * (np.log1p(counts[:, -1]) - 2) - 4.0 * (depth[:, -1] - 0.8) - 0.5 * np.log(area / 1200)
    eta = eta + rng.normal(0, hidden_sd, n_all)
    eta[n:] = -np.inf
    cells = pl.DataFrame(
        {
            "well": ["C03"] * n_all,
            "field": [1] * n_all,
            "true_id": np.arange(1, n_all + 1),
            "eta": eta,
            "oracle_prob": np.where(np.isfinite(eta), ndtr(eta), 0.0),
            "oracle_log_gfp": np.where(np.isfinite(eta), 9.0 + 0.5 * eta, 4.0),
            "in_bounds_last": np.ones(n_all, bool),
        }
    )
    tracks = pl.DataFrame(
        {
            "well": ["C03"] * (n_all * FRAMES),
            "field": [1] * (n_all * FRAMES),
            "true_id": np.repeat(np.arange(1, n_all + 1), FRAMES),
            "frame": np.tile(np.arange(1, FRAMES + 1), n_all),
            "n_lnp": counts.ravel().astype(np.int32),
            "lnp_radial_frac": np.where(counts > 0, depth, np.nan).ravel(),
            "area_px": np.repeat(area, FRAMES),
        }
    )
    return cells, tracks


def test_what_the_frames_show_is_read_exactly():
    cells, tracks = _truth(np.random.default_rng(0), 40 * N_COLUMNS, hidden_sd=0.0)
    out = trajectory_oracle(cells, tracks, frames=FRAMES)
    np.testing.assert_allclose(out["oracle_track_prob"], out["oracle_prob"], atol=1e-6)
    np.testing.assert_allclose(out["oracle_track_log_gfp"], out["oracle_log_gfp"], atol=1e-6)


def test_an_unseen_part_shrinks_it_and_controls_stay_zero():
    cells, tracks = _truth(np.random.default_rng(1), 40 * N_COLUMNS, hidden_sd=1.5)
    out = trajectory_oracle(cells, tracks, frames=FRAMES)
    treated = out.filter(pl.col("eta").is_finite())
    full, track = treated["oracle_prob"].to_numpy(), treated["oracle_track_prob"].to_numpy()
    assert np.mean(np.abs(track - 0.5)) < np.mean(np.abs(full - 0.5)) - 0.05
    assert track.mean() == pytest.approx(full.mean(), abs=0.02)
    controls = out.filter(~pl.col("eta").is_finite())
    assert controls["oracle_track_prob"].to_list() == [0.0] * 3
    assert controls["oracle_track_log_gfp"].to_list() == [4.0] * 3


def test_a_cell_missing_a_frame_gets_null_and_frames_after_t_are_ignored():
    cells, tracks = _truth(np.random.default_rng(2), 40 * N_COLUMNS, hidden_sd=0.0)
    later = tracks.filter(pl.col("frame") == FRAMES).with_columns(
        pl.col("frame") + 1, pl.lit(10_000, dtype=pl.Int32).alias("n_lnp")
    )  # a frame past t with absurd counts: must not change anything
    gap = (pl.col("true_id") == 5) & (pl.col("frame") == 2)
    out = trajectory_oracle(cells, pl.concat([tracks.filter(~gap), later]), frames=FRAMES)
    assert out.filter(pl.col("true_id") == 5)["oracle_track_prob"].to_list() == [None]
    rest = out.filter((pl.col("true_id") != 5) & pl.col("eta").is_finite())
    np.testing.assert_allclose(rest["oracle_track_prob"], rest["oracle_prob"], atol=1e-6)


def test_too_few_treated_cells_per_feature_give_nulls():
    n = TRACK_ROWS_PER_COLUMN * N_COLUMNS - 1
    cells, tracks = _truth(np.random.default_rng(3), n, hidden_sd=0.0)
    out = trajectory_oracle(cells, tracks, frames=FRAMES)
    assert out.filter(pl.col("eta").is_finite())["oracle_track_prob"].null_count() == n
