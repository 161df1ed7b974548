"""The renderer's bookkeeping for the oracle: a cell's own weight in its GFP window sum."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lnpstore.simulate.field as F
from lnpstore.simulate.settings import SimulationSettings


def _field_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level: float):
    """Simulate one treated field of the tiny plate (4 frames) with every cell's GFP at ``level`` counts
    per px; return its cells (with ``gfp_sum_true`` and ``own_window_mask`` of the last frame)."""
    cells = []
    monkeypatch.setattr(F, "gfp_level", lambda t, plateau, onset: np.full_like(plateau, level))
    orig = F.field_truth

    def keep(c, *a, **k):
        cells.append(c)
        return orig(c, *a, **k)

    monkeypatch.setattr(F, "field_truth", keep)
    s = SimulationSettings.tiny(seed=0, n_frames=4, workers=1)
    out = tmp_path / f"level{level:g}"
    out.mkdir()
    job = F.FieldJob(s, "C03", 50.0, 1, str(out), (2, -1), str(out / "labels.tif"))
    F.simulate_field(job)
    return cells[0]


def test_own_window_mask_is_the_cells_share_of_its_window_sum(tmp_path, monkeypatch) -> None:
    """The window sum is linear in the GFP levels: doubling every level adds sum_j g_j * w_ij to cell i's
    sum, which is its own g_i * own_window_mask_i plus its neighbours' light (>= 0), exactly that for a
    cell alone in its window. The oracle takes the window sum apart this way; a mask that forgets the
    illumination falloff (or counts pixels outside the image) makes bright cells' rest negative."""
    g = 100.0
    a = _field_cells(tmp_path, monkeypatch, g)
    b = _field_cells(tmp_path, monkeypatch, 2 * g)
    alive = a.gfp_sum_true > 0
    assert alive.sum() >= 10
    added = (b.gfp_sum_true - a.gfp_sum_true)[alive]
    own = g * a.own_window_mask[alive]
    np.testing.assert_allclose(b.own_window_mask, a.own_window_mask)  # the same film but its GFP
    assert (own > 0).all()
    assert (added >= own * (1 - 1e-4)).all()  # neighbours only add
    alone = np.isclose(added, own, rtol=1e-4)
    assert alone.mean() > 0.3, f"only {alone.sum()} of {alone.size} cells' added light is their own"
