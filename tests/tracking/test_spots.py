"""LNP spots in a cell: how many, and how deep in the cell their light sits (``spot_measures``)."""

from __future__ import annotations

import numpy as np
import pytest

from lnpstore.tracking.spots import count_spots, spot_measures

PX_UM = 0.325
RADIUS_PX = 30.0  # a 10 um cell at 0.325 um pixels


def _cell(depth_frac: float, n_spots: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A disc cell on a noisy LNP background with ``n_spots`` diffraction-limited spots (sigma 1.25 px,
    ~110 counts) at ``depth_frac`` radii from its centre, at random angles."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((96, 96), dtype=float)
    cy = cx = 48.0
    region = np.hypot(yy - cy, xx - cx) <= RADIUS_PX
    img = 120.0 + 15.0 * region + rng.normal(0.0, 4.0, region.shape)  # offset, cell autofluorescence
    for a in rng.uniform(0, 2 * np.pi, n_spots):
        sy, sx = cy + depth_frac * RADIUS_PX * np.sin(a), cx + depth_frac * RADIUS_PX * np.cos(a)
        img += 110.0 * np.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / (2 * 1.25**2))
    return img.astype(np.uint16), region


@pytest.mark.parametrize("depth", [0.3, 0.6, 0.85])
def test_the_spots_depth_is_read_in_radii(depth: float) -> None:
    img, region = _cell(depth, n_spots=6, seed=int(depth * 100))
    n, frac = spot_measures(img, region, pixel_size_um=PX_UM)
    assert n == count_spots(img, region, pixel_size_um=PX_UM) and 4 <= n <= 6  # spots may touch
    assert frac == pytest.approx(depth, abs=0.06)


def test_deeper_spots_read_deeper_and_no_spot_reads_none() -> None:
    near = [spot_measures(*_cell(0.3, 8, s), pixel_size_um=PX_UM)[1] for s in range(5)]
    far = [spot_measures(*_cell(0.8, 8, s), pixel_size_um=PX_UM)[1] for s in range(5)]
    assert max(near) < min(far)  # every cell: the perinuclear spots read deeper
    assert spot_measures(*_cell(0.5, 0, 0), pixel_size_um=PX_UM) == (0, None)  # noise alone: no depth
    assert spot_measures(np.zeros((8, 8), np.uint16), np.zeros((8, 8), bool), pixel_size_um=PX_UM) == (
        0,
        None,
    )
