"""Per-frame detection on synthetic real-like images: uneven illumination, dim cells, touching nuclei."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import ndimage as ndi

from lnpstore.store.errors import TrackingError
from lnpstore.tracking import TrackSettings, track_stack
from lnpstore.tracking.detection import DetectSettings, detect_cells, estimate_cell_diameter_um
from lnpstore.tracking.integrity import check_tracks

PX_UM = 0.2
RADIUS_PX = 15  # 6 um diameter
SHAPE = (200, 260)


def nuclei_image(centres, brightness, seed=0, gradient=True):
    """Discs on a background ramp (left 100 -> right 160 counts), blurred, Gaussian noise sigma 4."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    img = np.zeros(SHAPE, np.float64)
    truth = np.zeros(SHAPE, np.int32)
    for k, ((cy, cx), b) in enumerate(zip(centres, brightness, strict=True), start=1):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= RADIUS_PX**2
        img[disc] = b
        truth[disc] = k
    img = ndi.gaussian_filter(img, 1.5) + (100 + 60 * xx / SHAPE[1] if gradient else 100)
    img += np.random.default_rng(seed).normal(0, 4, SHAPE)
    return img.clip(0).astype(np.uint16), truth


CENTRES = [(50, 50), (50, 200), (140, 60), (140, 90), (150, 200)]  # 3 and 4 touch (30 px apart)
BRIGHT = [200, 6, 120, 120, 10]  # two dim cells: 1.5 and 2.5 noise sigmas above the background


def _matched(lab, truth):
    """How many true cells one detected label covers by more than half, one-to-one."""
    hits = 0
    for v in range(1, truth.max() + 1):
        ids, counts = np.unique(lab[truth == v], return_counts=True)
        best = [(c, i) for i, c in zip(ids, counts, strict=True) if i > 0 and c > 0.5 * (truth == v).sum()]
        if best and (truth[lab == best[0][1]] > 0).mean() > 0.5:
            hits += 1
    return hits


@pytest.mark.parametrize("markers", ["log", "distance"])
def test_bright_dim_and_touching_cells_on_uneven_background(markers):
    img, truth = nuclei_image(CENTRES, BRIGHT)
    lab = detect_cells(
        img, pixel_size_um=PX_UM, settings=DetectSettings(markers=markers), cell_diameter_um=6.0
    )
    assert lab.max() == len(CENTRES)  # no background speck, no fragment, the touching pair split
    assert _matched(lab, truth) == len(CENTRES)


def test_cell_diameter_is_estimated_from_a_frame():
    img, _ = nuclei_image(CENTRES[:3] + CENTRES[4:], [200, 150, 120, 180])
    assert estimate_cell_diameter_um(img, PX_UM) == pytest.approx(2 * RADIUS_PX * PX_UM, rel=0.25)
    with pytest.raises(TrackingError, match="cell-diameter-um"):
        estimate_cell_diameter_um(np.zeros(SHAPE), PX_UM)


def test_method_detect_tracks_a_dim_cell_and_keeps_the_invariant():
    frames = []
    for f in range(6):
        c = [(y, x + 2 * f) for y, x in CENTRES]
        frames.append(nuclei_image(c, BRIGHT, seed=f)[0])
    s = TrackSettings.for_stain("nucleus", method="detect", edge_margin_um=0.0, report_new_cells=True)
    tracks, labels = track_stack(np.stack(frames), pixel_size_um=PX_UM, settings=s)
    check_tracks(tracks, labels)
    per = tracks.group_by("track_id").agg(pl.len().alias("n"))
    assert per.height == len(CENTRES) and (per["n"] == 6).all()
    with pytest.raises(TrackingError, match="seeds apply to method 'window'"):
        track_stack(np.stack(frames), seeds=np.array([[50.0, 50.0]]), pixel_size_um=PX_UM, settings=s)
