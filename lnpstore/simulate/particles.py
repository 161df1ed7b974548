"""LNP particles: those the cells take up (uptake time, drift towards the nucleus) and free ones outside
cells, placed each frame in image coordinates (px) for the LNP channel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lnpstore.simulate.cells import Cells, FieldSpace
from lnpstore.simulate.constants import CONTROL_LNP_FRACTION, FREE_LNP_DENSITY_PER_UM2, TOP_DOSE_NG

#: Spots of one frame: y, x (px) and amplitude (counts integrated over the spot) of each particle.
Spots = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class Particles:
    """Particles taken up by cells: the cell of each (reassigned to a daughter at a split), the frame it
    arrives (``t0``, 0-based, fractional), its angle, radial position (cell radii) at arrival and at the
    end of its drift, and its peak brightness (counts)."""

    cell: np.ndarray
    t0: np.ndarray
    angle: np.ndarray
    rf0: np.ndarray
    rf_end: np.ndarray
    peak: np.ndarray

    @classmethod
    def draw(
        cls, rng: np.random.Generator, n_offered: np.ndarray, uptake_tau_frames: np.ndarray, n_frames: int
    ) -> Particles:
        """Each cell's offered particles arrive after Exp(its uptake time constant); those after the film drop."""
        cell = np.repeat(np.arange(len(n_offered)), n_offered)
        t0 = 0.5 + rng.exponential(1.0, cell.size) * uptake_tau_frames[cell]
        taken = t0 <= n_frames - 1
        cell, t0 = cell[taken], t0[taken]
        n_p = cell.size
        angle = rng.uniform(0, 2 * np.pi, n_p)
        rf0 = rng.uniform(0.55, 0.95, n_p)
        rf_end = rng.uniform(0.25, 0.65, n_p)
        peak = 110.0 * rng.lognormal(0, 0.4, n_p)
        return cls(cell, t0, angle, rf0, rf_end, peak)

    @property
    def n(self) -> int:
        """Particles taken up during the film."""
        return self.cell.size

    def place(self, ti: int, c: Cells, r_eff: np.ndarray, psf_area_px2: float) -> Spots:
        """The spots of the particles inside cells at frame index ``ti``; records each cell's particle count
        and mean radial position (``track_nlnp``, ``track_rf``)."""
        age = ti - self.t0
        on = age >= 0
        ci = self.cell[on]
        rf = self.rf_end[on] + (self.rf0[on] - self.rf_end[on]) * np.exp(-c.perinuclear_rate[ci] * age[on])
        rr = rf * r_eff[ci]
        pos = c.pos
        ys = pos[ci, 0] + c.nuc_off[ci, 0] * 0.5 + rr * np.sin(self.angle[on])
        xs = pos[ci, 1] + c.nuc_off[ci, 1] * 0.5 + rr * np.cos(self.angle[on])
        n = c.n
        c.track_nlnp[ti] = np.bincount(ci, minlength=n)
        sums = np.bincount(ci, weights=rf, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            c.track_rf[ti] = np.where(c.track_nlnp[ti] > 0, sums / np.maximum(c.track_nlnp[ti], 1), np.nan)
        return ys, xs, self.peak[on] * psf_area_px2


@dataclass
class FreeParticles:
    """Free particles in the padded box: position (px), the frame they vanish (0-based), peak (counts)."""

    pos: np.ndarray
    end: np.ndarray
    peak: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, space: FieldSpace, lnp_factor: float) -> FreeParticles:
        """A Poisson number (``FREE_LNP_DENSITY_PER_UM2`` times the dose factor), uniform in the box."""
        h, w, b = space.height_px, space.width_px, space.band_px
        box = space.box
        box_area_um2 = (h + 2 * b) * (w + 2 * b) * space.pixel_size_um**2
        n_free = int(rng.poisson(FREE_LNP_DENSITY_PER_UM2 * box_area_um2 * lnp_factor))
        pos = np.column_stack([rng.uniform(box[0], box[2], n_free), rng.uniform(box[1], box[3], n_free)])
        end = rng.exponential(30.0, n_free)
        peak = 110.0 * rng.lognormal(0, 0.4, n_free)
        return cls(pos, end, peak)

    @property
    def n(self) -> int:
        """Free particles (vanished ones included)."""
        return len(self.end)

    def drift(self, rng: np.random.Generator, scale: float) -> None:
        """One frame of Brownian drift, sd 1.5 px per axis at scale 1."""
        self.pos = self.pos + rng.normal(0, 1.5 * scale, self.pos.shape)

    def place(self, ti: int, psf_area_px2: float) -> Spots:
        """The spots of the particles not yet vanished at frame index ``ti``."""
        alive = self.end > ti
        return self.pos[alive, 0], self.pos[alive, 1], self.peak[alive] * psf_area_px2


def lnp_factor(dose_ng: float, control_lnp: bool) -> float:
    """Particles offered relative to the top dose: ``(dose / 316 ng) ** 0.45``; controls 15 % (or none)."""
    if dose_ng > 0:
        return (dose_ng / TOP_DOSE_NG) ** 0.45
    return CONTROL_LNP_FRACTION if control_lnp else 0.0
