"""Cell divisions: when cells split (exponential waiting times), how they round up before and after, and
the daughters (half the area, the parent's latents with noise, its particles shared). Draws only from the
field's division stream, so a plate without divisions is the plate written before divisions existed."""

from __future__ import annotations

import math

import numpy as np

from lnpstore.simulate.cells import SHAPE_COEF_SD, Cells, FieldSpace, angle_index, smooth_noise
from lnpstore.simulate.constants import (
    DAUGHTER_AREA_SD,
    DAUGHTER_GFP_SD,
    DAUGHTER_LATENT_SD,
    DAUGHTER_ONSET_SD_FRAMES,
    DAUGHTER_REFRACTORY_H,
    DAUGHTER_SPREAD_MIN,
    MAX_POPULATION_GROWTH,
    MITOSIS_ROUNDING_MIN,
    MITOTIC_RADIUS,
)
from lnpstore.simulate.expression import uptake_rate_z
from lnpstore.simulate.particles import Particles
from lnpstore.simulate.streams import division_rng


class Divisions:
    """The divisions of one field's cells over a film of ``n_frames`` frames ``interval_min`` apart.

    On construction every founder gets its division frame (``c.div_at``, 0-based; inf: none in the film).
    """

    def __init__(
        self,
        c: Cells,
        particles: Particles,
        space: FieldSpace,
        *,
        rate_per_h: float,
        interval_min: float,
        n_frames: int,
        seed: int,
        well: str,
        field_: int,
    ) -> None:
        self.c, self.particles, self.space = c, particles, space
        self.n_frames = n_frames
        self.rng = division_rng(seed, well, field_)
        self.mean_wait_frames = 60.0 / (rate_per_h * interval_min)
        self.refractory_frames = DAUGHTER_REFRACTORY_H * 60.0 / interval_min
        self.k_round = max(1, round(MITOSIS_ROUNDING_MIN / interval_min))
        self.k_spread = max(1, round(DAUGHTER_SPREAD_MIN / interval_min))
        self.max_alive = math.ceil(MAX_POPULATION_GROWTH * c.n)
        c.div_at = self.division_frames(0.0, c.n)

    def division_frames(self, start: float, k: int) -> np.ndarray:
        """Frame indices (0-based) at which k cells split: ``start`` + Exp(rate); inf beyond the film."""
        t = np.maximum(np.ceil(start + self.rng.exponential(self.mean_wait_frames, k)), 1.0)
        return np.where(t <= self.n_frames - 1, t, np.inf)

    def split_due(self, ti: int) -> None:
        """Split the living cells due at frame index ``ti`` (none once the field is full)."""
        c = self.c
        for p in np.flatnonzero(c.alive & (c.div_at == ti)):
            if int(c.alive.sum()) >= self.max_alive:
                c.div_at[p] = np.inf  # the field is full: this cell no longer divides
                continue
            self.divide(int(p), ti)

    def _inherit(self, value: float, sd: float) -> np.ndarray:
        """Two daughters' values of a positive latent: the parent's times lognormal(0, sd) noise."""
        return value * self.rng.lognormal(0.0, sd, 2)

    def divide(self, p: int, ti: int) -> None:
        """Replace cell ``p`` by two daughters born at frame index ``ti``; they share its particles."""
        c, rng, inherit = self.c, self.rng, self._inherit
        first = c.n
        ang = rng.uniform(0, 2 * np.pi)
        axis = np.array([math.sin(ang), math.cos(ang)])
        side = np.array([1.0, -1.0])
        r_um = c.radius_um[p] * math.sqrt(0.5) * rng.lognormal(0.0, DAUGHTER_AREA_SD / 2, 2)
        r_px = r_um / self.space.pixel_size_um
        sep = MITOTIC_RADIUS * r_px  # the rounded daughters touch at the parent's centre
        tau = inherit(c.uptake_tau_frames[p], DAUGHTER_LATENT_SD)
        hb_d = self.space.box_half_px(r_px)
        # keyword order is draw order
        c.add(
            radius_um=r_um,
            radius_px=r_px,
            speed_sd_px=inherit(c.speed_sd_px[p], DAUGHTER_LATENT_SD / 2),
            pos=c.pos[p] + (side * sep)[:, None] * axis,
            vel=0.3 * c.vel[p] + side[:, None] * axis * (0.3 * c.speed_sd_px[p]),
            shape_a=rng.normal(0, 1, (2, 4)) * SHAPE_COEF_SD,
            shape_b=rng.normal(0, 1, (2, 4)) * SHAPE_COEF_SD,
            nuc_off=rng.normal(0, 0.08, (2, 2)) * r_px[:, None],
            nuc_r=0.45 * r_px * rng.uniform(0.9, 1.1, 2),
            cs_level=inherit(c.cs_level[p], DAUGHTER_LATENT_SD),
            autofluor=inherit(c.autofluor[p], DAUGHTER_LATENT_SD),
            propensity=inherit(c.propensity[p], DAUGHTER_LATENT_SD),
            uptake_tau_frames=tau,
            perinuclear_rate=inherit(c.perinuclear_rate[p], DAUGHTER_LATENT_SD),
            hb=hb_d,
            z_rate=uptake_rate_z(tau),
            eta=np.full(2, c.eta[p]),
            eps=np.full(2, c.eps[p]),
            expressing=np.full(2, c.expressing[p]),
            gfp_onset=np.maximum(15.0, c.gfp_onset[p] + rng.normal(0.0, DAUGHTER_ONSET_SD_FRAMES, 2)),
            plateau=c.plateau[p] * rng.lognormal(0.0, DAUGHTER_GFP_SD, 2),
            parent=np.full(2, p),
            birth=np.full(2, ti),
            div_at=self.division_frames(ti + self.refractory_frames, 2),
            generation=np.full(2, c.generation[p] + 1),
            alive=np.ones(2, bool),
            gfp_sum_true=np.zeros(2),
            gfp_sum_written=np.zeros(2),
            own_window_mask=np.zeros(2),
        )
        c.alive[p] = False
        s = self.space.scale
        for b in hb_d:
            c.textures.append(smooth_noise(rng, (2 * b + 1, 2 * b + 1), 3.0 * s))
            c.angle_idx.append(angle_index(int(b)))
        cell = self.particles.cell
        mine = np.flatnonzero(cell == p)  # particles taken up or still to come: each to one daughter
        cell[mine] = first + (rng.random(mine.size) < 0.5)

    def mitotic(self, ti: int) -> np.ndarray:
        """Per cell, 0..1: how far it is rounded up (before its split, or as a daughter just after)."""
        c = self.c
        pre = np.clip((ti - c.div_at + self.k_round + 1) / min(2, self.k_round), 0.0, 1.0)
        post = np.where(c.parent >= 0, np.clip(1.0 - (ti - c.birth) / self.k_spread, 0.0, 1.0), 0.0)
        return np.maximum(pre, post) * c.alive
