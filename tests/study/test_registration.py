"""Registration: phase correlation of BF and CS edge maps recovers a known BF offset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from lnpstore.instrument.ingest import ingest_plate
from lnpstore.simulate import SimulationSettings, simulate_plate
from lnpstore.store.core import Store
from lnpstore.study.registration import RegistrationError, estimate_offset, plate_offset, register_plate


def synthetic_pair(
    shift_px: tuple[float, float], *, seed: int = 0, size_px: int = 256
) -> tuple[np.ndarray, ...]:
    """(bf, cs) uint16: CS fills discs, BF has a bright outer / dark inner halo, displaced by ``shift_px``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size_px, :size_px]
    mask = np.zeros((size_px, size_px), bool)
    for _ in range(25):
        cy, cx = rng.uniform(15, size_px - 15, 2)
        mask |= np.hypot(yy - cy, xx - cx) < rng.uniform(8, 18)
    cs = ndi.gaussian_filter(mask * 1000.0, 2) + 200 + rng.normal(0, 30, mask.shape)
    d_in, d_out = ndi.distance_transform_edt(mask), ndi.distance_transform_edt(~mask)
    bf = 3000 + 400 * np.exp(-(d_out**2) / 8) - 300 * np.exp(-(d_in**2) / 8) + rng.normal(0, 40, mask.shape)
    bf = ndi.shift(bf, shift_px, order=3, mode="reflect")
    return np.clip(bf, 0, 65535).astype(np.uint16), np.clip(cs, 0, 65535).astype(np.uint16)


@pytest.mark.parametrize("shift_px", [(3.3, -5.7), (-7.25, 0.5), (0.0, 0.0)])
def test_estimate_offset_recovers_known_shift(shift_px):
    bf, cs = synthetic_pair(shift_px, seed=int(abs(shift_px[0]) * 10))
    dy, dx, err = estimate_offset(bf, cs)
    assert dy == pytest.approx(-shift_px[0], abs=0.3)
    assert dx == pytest.approx(-shift_px[1], abs=0.3)
    assert 0 <= err < 1
    # applying the estimate aligns BF with CS: the residual offset is ~0
    fixed = ndi.shift(bf.astype(float), (dy, dx), order=1, mode="nearest")
    rdy, rdx, _ = estimate_offset(fixed, cs)
    assert np.hypot(rdy, rdx) < 0.3


def test_estimate_offset_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        estimate_offset(np.zeros((10, 10)), np.zeros((10, 12)))


def test_plate_offset_is_median_and_robust():
    assert plate_offset([1.0, 1.2, 9.0], [-2.0, -2.1, 5.0]) == (1.2, -2.0)
    with pytest.raises(RegistrationError):
        plate_offset([], [])


def test_register_plate_needs_plate(tmp_path: Path):
    with pytest.raises(RegistrationError, match="ingest"):
        register_plate(Store.create(tmp_path / "s"), "NOPE")


def _simulated_plate(tmp_path: Path):
    plate = simulate_plate(tmp_path / "plate", SimulationSettings.tiny(0), show_progress=False)
    store = Store.create(tmp_path / "store")
    ingest_plate(store, plate.plate_dir, plate_map=plate.plate_map)
    return store, plate


@pytest.mark.slow
def test_register_simulated_plate_within_1px(tmp_path: Path):
    store, plate = _simulated_plate(tmp_path)
    truth = json.loads((Path(plate.truth_dir) / "registration.json").read_text())
    name = store.read("plates")["plate"][0]
    reg = register_plate(store, name)
    want = _truth_shift_px(truth)
    got = (reg["dy_px"][0], reg["dx_px"][0])
    assert np.hypot(got[0] - want[0], got[1] - want[1]) <= 1.0, (got, truth)
    assert reg["agrees_with_plate"].mean() >= 0.8


def _truth_shift_px(truth: dict) -> tuple[float, float]:
    """The shift to apply to BF, from the simulator's registration.json."""
    return float(truth["correction_dy_px"]), float(truth["correction_dx_px"])
