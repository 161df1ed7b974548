"""Automatic seeds on synthetic CS images; manual seeds from CSV."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

from lnpstore.store.errors import SettingsError
from lnpstore.tracking.seeding import SeedError, SeedSettings, auto_seeds, read_seed_csv, seeds_for

PX_UM = 0.325


def cs_image(centres, radii, shape=(300, 400), seed=0):
    """Cytoplasm-like cells: bright discs with a dim nucleus (like the CS stain), touching, noisy."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    for (cy, cx), r in zip(centres, radii, strict=True):
        d = np.hypot(yy - cy, xx - cx)
        cell = np.where(d <= r, 400 * rng.lognormal(0, 0.25) * (1 - 0.55 * (d < 0.45 * r)), 0)
        np.maximum(img, cell, out=img)
    img = ndi.gaussian_filter(img, 2.0) + 100
    return (img + rng.normal(0, 10, shape)).clip(0).astype(np.uint16)


def _precision_recall(found: np.ndarray, true: np.ndarray, tol_px: float) -> tuple[float, float]:
    d = np.hypot(*(found[:, None, :] - true[None, :, :]).transpose(2, 0, 1))
    r, c = linear_sum_assignment(d)
    tp = int((d[r, c] <= tol_px).sum())
    return tp / len(found), tp / len(true)


def test_auto_seeds_precision_recall_on_touching_cells():
    rng = np.random.default_rng(3)
    centres, radii = [], []
    # A grid of cells whose neighbours touch (spacing 1.8 radii) with jitter.
    for gy in range(3):
        for gx in range(4):
            r = rng.uniform(22, 28)
            centres.append((60 + gy * 90 + rng.uniform(-5, 5), 60 + gx * 90 + rng.uniform(-5, 5)))
            radii.append(r)
    img = cs_image(centres, radii)
    found = auto_seeds(img, pixel_size_um=PX_UM)
    assert found.shape[1] == 2
    precision, recall = _precision_recall(found, np.array(centres), tol_px=10)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall, len(found))


def test_auto_seeds_splits_two_touching_cells():
    img = cs_image([(150, 170), (150, 222)], [28, 28])  # overlap by 4 px
    found = auto_seeds(img, pixel_size_um=PX_UM)
    assert len(found) == 2
    np.testing.assert_allclose(found[np.argsort(found[:, 1])], [[150, 170], [150, 222]], atol=4)


def test_auto_seeds_empty_and_flat():
    assert auto_seeds(np.full((50, 60), 100, np.uint16), pixel_size_um=PX_UM).shape == (0, 2)
    with pytest.raises(SeedError, match="2-D"):
        auto_seeds(np.zeros((2, 3, 4)), pixel_size_um=PX_UM)


def test_seed_settings_validate_and_roundtrip():
    s = SeedSettings(min_cell_distance_um=7.0)
    assert SeedSettings.from_dict(s.to_dict()) == s
    with pytest.raises(SettingsError, match="min_radius_um"):
        SeedSettings(min_radius_um=0)
    with pytest.raises(SettingsError, match="threshold_method"):
        SeedSettings(threshold_method="magic")


def test_read_seed_csv(tmp_path):
    p = tmp_path / "seeds.csv"
    p.write_text("well,field,y_px,x_px\nc03,1,10.5,20\nC03,1,30,40\nE03,2,5,6\n")
    df = read_seed_csv(p)
    np.testing.assert_allclose(seeds_for(df, "C03", 1), [[10.5, 20], [30, 40]])
    assert seeds_for(df, "E03", 1).shape == (0, 2)
    bad = tmp_path / "bad.csv"
    bad.write_text("well,field,y\nC03,1,2\n")
    with pytest.raises(SeedError, match=r"bad.csv lacks column\(s\) \['y_px', 'x_px'\]"):
        read_seed_csv(bad)
    with pytest.raises(SeedError, match="does not exist"):
        read_seed_csv(tmp_path / "nope.csv")
