"""The one-frame oracle: what the particle count at frame 20 and the cell size say about the outcome."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.special import ndtr

from lnpstore.simulate.expression import one_frame_oracle


def _cells(rng: np.random.Generator, n: int, hidden_sd: float) -> pl.DataFrame:
    """Treated cells whose eta is linear in the one-frame latents plus a trajectory-only part of sd
    ``hidden_sd``, and 3 controls (eta -inf)."""
    n20 = rng.integers(0, 200, n).astype(float)
    radius = rng.lognormal(np.log(10.0), 0.15, n)
    eta = 0.2 + 1.1 * (np.log1p(n20) - 3) - 2.0 * np.log(radius / 10) + rng.normal(0, hidden_sd, n)
    log_gfp = 8.0 + 0.5 * eta
    return pl.DataFrame(
        {
            "eta": np.r_[eta, [-np.inf] * 3],
            "n_lnp_by_frame20": np.r_[n20, [0.0] * 3],
            "radius_um": np.r_[radius, [10.0] * 3],
            "oracle_prob": np.r_[ndtr(eta), [0.0] * 3],
            "oracle_log_gfp": np.r_[log_gfp, [4.0] * 3],
            "in_bounds_last": np.r_[np.ones(n, bool), [True] * 3],
        }
    )


def test_without_a_trajectory_part_it_is_the_full_oracle():
    cells = one_frame_oracle(_cells(np.random.default_rng(0), 300, hidden_sd=0.0))
    np.testing.assert_allclose(cells["oracle_frame_prob"], cells["oracle_prob"], atol=1e-9)
    np.testing.assert_allclose(cells["oracle_frame_log_gfp"], cells["oracle_log_gfp"], atol=1e-9)


def test_a_trajectory_part_makes_it_less_sure_and_controls_stay_zero():
    cells = one_frame_oracle(_cells(np.random.default_rng(1), 2000, hidden_sd=1.5))
    treated = cells.filter(pl.col("eta").is_finite())
    full, frame = treated["oracle_prob"].to_numpy(), treated["oracle_frame_prob"].to_numpy()
    # shrunk towards 1/2 by the unseen part: Phi(x b / sqrt(1 + s2)) with s2 ~ 1.5^2
    assert np.mean(np.abs(frame - 0.5)) < np.mean(np.abs(full - 0.5)) - 0.05
    # calibrated: on average it agrees with the full oracle (tower property)
    assert frame.mean() == pytest.approx(full.mean(), abs=0.02)
    controls = cells.filter(~pl.col("eta").is_finite())
    assert controls["oracle_frame_prob"].to_list() == [0.0] * 3
    assert controls["oracle_frame_log_gfp"].to_list() == [4.0] * 3


def test_too_few_treated_cells_give_nulls():
    cells = one_frame_oracle(_cells(np.random.default_rng(2), 3, hidden_sd=0.5))
    assert cells.filter(pl.col("eta").is_finite())["oracle_frame_prob"].null_count() == 3


def test_cells_out_of_bounds_do_not_pull_the_log_fit():
    cells = _cells(np.random.default_rng(3), 400, hidden_sd=0.0)
    out = np.arange(cells.height) < 100  # a quarter left the image: window sum ~0, log 0
    cells = cells.with_columns(
        pl.when(pl.Series(out)).then(0.0).otherwise(pl.col("oracle_log_gfp")).alias("oracle_log_gfp"),
        pl.Series("in_bounds_last", ~out),
    )
    fitted = one_frame_oracle(cells).filter(~pl.Series(out) & pl.col("eta").is_finite())
    np.testing.assert_allclose(fitted["oracle_frame_log_gfp"], fitted["oracle_log_gfp"], atol=1e-9)
