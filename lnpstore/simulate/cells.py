"""One field's cells: their latent variables, placement, outlines and motion (``docs/simulator.md``).

Lengths in px of the plate's own pixel size unless named ``_um``. Every function draws from the
generator it is given in a fixed order: the same seed gives the same cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from lnpstore.simulate.constants import N_ANGLES, SHAPE_PERSISTENCE, VELOCITY_PERSISTENCE

#: Per-frame records of :class:`Cells` (frames x cells): name, dtype, value before a cell is born.
RECORDS: tuple[tuple[str, Any, Any], ...] = (
    ("track_y", np.float64, 0.0),  # centre, px
    ("track_x", np.float64, 0.0),
    ("track_area", np.float64, 0.0),  # analytic outline area, px^2
    ("track_rf", np.float64, np.nan),  # mean radial position of the particles, cell radii
    ("track_nlnp", np.int32, 0),  # particles inside
    ("track_gfp", np.float64, 0.0),  # GFP level, counts per px
    ("exists", np.bool_, False),  # born and not yet divided
    ("label_area", np.int32, 0),  # px of the true label image the cell owns
)

#: Sd of the outline's harmonic coefficients k = 2..5 (fraction of the radius).
SHAPE_COEF_SD = 0.09 / (np.arange(2, 6) - 1) ** 0.8


class Cells:
    """One field's cells: per-cell arrays (axis 0: cell) and the per-frame records of :data:`RECORDS`.

    The arrays are attributes named as the keyword arguments; :meth:`add` appends cells (daughters) to
    every array, their records before birth holding the fill values. ``textures`` and ``angle_idx`` hold
    each cell's texture and outline-angle index (one array per cell, in its box).
    """

    # per-cell arrays that the simulation replaces (reads of the others go through __getattr__)
    pos: np.ndarray
    vel: np.ndarray
    shape_a: np.ndarray
    shape_b: np.ndarray
    div_at: np.ndarray

    def __init__(self, n_frames: int, **per_cell: np.ndarray) -> None:
        self._per_cell = tuple(per_cell)
        self.__dict__.update(per_cell)
        n = len(per_cell["radius_px"])
        for name, dtype, fill in RECORDS:
            setattr(self, name, np.full((n_frames, n), fill, dtype))
        self.textures: list[np.ndarray] = []
        self.angle_idx: list[np.ndarray] = []

    def __getattr__(self, name: str) -> np.ndarray:  # the arrays set in __init__ (for type checkers)
        raise AttributeError(name)

    @property
    def n(self) -> int:
        """Cells so far (divided parents included)."""
        return len(self.radius_px)

    def add(self, **new: np.ndarray) -> None:
        """Append cells: one value (row) per cell for every per-cell array."""
        k = len(new["radius_px"])
        for name in self._per_cell:
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, np.asarray(new[name], dtype=old.dtype)]))
        for name, dtype, fill in RECORDS:
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, np.full((old.shape[0], k), fill, dtype)], axis=1))


@dataclass(frozen=True)
class FieldSpace:
    """A field's image and the band around it in which cells live (px of the plate's pixel size)."""

    height_px: int
    width_px: int
    pixel_size_um: float
    scale: float  # px per reference px (0.1625 um)

    @property
    def band_px(self) -> float:
        """Width of the band around the image in which cells live too (1.5 largest radii)."""
        return 1.5 * (12.5 / self.pixel_size_um)

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The padded box (y0, x0, y1, x1) in image coordinates; cells reflect at its edges."""
        b = self.band_px
        return (-b, -b, self.height_px + b, self.width_px + b)

    def box_half_px(self, radius_px: np.ndarray) -> np.ndarray:
        """Half size of a cell's render box (px): room for its largest outline and the BF halo."""
        return np.ceil(1.45 * radius_px + 3 * self.scale + 2).astype(int)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Unit-variance smooth Gaussian noise (float32)."""
    z = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_px, mode="wrap")
    return z / max(float(z.std()), 1e-6)


def angle_index(half_px: int) -> np.ndarray:
    """Index into an N_ANGLES + 1 table of the polar angle of each pixel of a (2 b + 1)^2 box (uint16)."""
    r = np.arange(-half_px, half_px + 1, dtype=np.float64)
    theta = np.arctan2(r[:, None], r[None, :])
    return np.rint((theta + np.pi) * (N_ANGLES / (2 * np.pi))).astype(np.uint16)


def place_cells(
    rng: np.random.Generator,
    n_image: int,
    box: tuple[float, float, float, float],
    image_hw: tuple[int, int],
    radius_px: np.ndarray,
) -> np.ndarray:
    """Clustered positions (y, x) in the padded box; the first ``n_image`` fall inside the image."""
    y0, x0, y1, x1 = box
    h, w = image_hw
    n = len(radius_px)
    pos = np.zeros((n, 2))
    n_clusters = max(1, n // 4)
    centres = np.column_stack([rng.uniform(y0, y1, n_clusters), rng.uniform(x0, x1, n_clusters)])
    for i in range(n):
        inside = i < n_image
        for attempt in range(60):
            if attempt < 40:
                c = centres[rng.integers(n_clusters)]
                p = c + rng.normal(0, 1.6 * radius_px.mean(), 2)
            else:
                p = np.array([rng.uniform(y0, y1), rng.uniform(x0, x1)])
            if inside and attempt >= 50:
                p = np.array([rng.uniform(0, h), rng.uniform(0, w)])
            in_img = 0 <= p[0] < h and 0 <= p[1] < w
            in_box = y0 <= p[0] < y1 and x0 <= p[1] < x1
            if not in_box or in_img != inside:
                continue
            if i == 0:
                break
            d = np.hypot(*(pos[:i] - p).T)
            if np.all(d >= 0.95 * (radius_px[:i] + radius_px[i])):
                break
        pos[i] = p
    return pos


def draw_founders(
    rng: np.random.Generator, space: FieldSpace, n_image: int, lnp_factor: float, *, empty: bool
) -> dict[str, Any]:
    """The founders' latents: ``n_image`` cells in the image plus a Poisson number in the band around it.

    Returns per-cell arrays (radius, motion, outline, nucleus, stain, uptake latents, ``n_offered``
    particles) and per-cell ``textures`` and ``angle_idx``. An ``empty`` field has no cells.
    """
    s, px_um = space.scale, space.pixel_size_um
    h, w, band_px = space.height_px, space.width_px, space.band_px
    band_area = (h + 2 * band_px) * (w + 2 * band_px) - h * w
    n_image = 0 if empty else n_image
    n_band = 0 if empty else int(rng.poisson(n_image * band_area / (h * w)))
    n = n_image + n_band
    radius_um = np.clip(rng.lognormal(np.log(10.0), 0.15, n), 7.5, 12.5)
    radius_px = radius_um / px_um
    pos = place_cells(rng, n_image, space.box, (h, w), radius_px) if n else np.zeros((0, 2))
    speed_sd_px = 7.5 * s * np.clip(rng.lognormal(0, 0.15, n), 0.6, 1.6) / math.exp(0.15**2 / 2)
    d: dict[str, Any] = dict(radius_um=radius_um, radius_px=radius_px, speed_sd_px=speed_sd_px, pos=pos)
    d["vel"] = rng.normal(0, 1, (n, 2)) * speed_sd_px[:, None]
    d["shape_a"] = rng.normal(0, 1, (n, 4)) * SHAPE_COEF_SD
    d["shape_b"] = rng.normal(0, 1, (n, 4)) * SHAPE_COEF_SD
    d["nuc_off"] = rng.normal(0, 0.08, (n, 2)) * radius_px[:, None]
    d["nuc_r"] = 0.45 * radius_px * rng.uniform(0.9, 1.1, n)
    d["cs_level"] = 500.0 * rng.lognormal(0, 0.25, n)
    d["autofluor"] = 6.0 * rng.lognormal(0, 0.3, n)
    d["propensity"] = rng.lognormal(-(0.5**2) / 2, 0.5, n)
    d["uptake_tau_frames"] = rng.lognormal(np.log(8.0), 0.35, n)
    d["perinuclear_rate"] = rng.lognormal(np.log(0.06), 0.5, n)
    d["n_offered"] = rng.poisson(60.0 * lnp_factor * d["propensity"])
    hb = space.box_half_px(radius_px)
    d["hb"] = hb
    d["textures"] = [smooth_noise(rng, (2 * b + 1, 2 * b + 1), 3.0 * s) for b in hb]
    d["angle_idx"] = [angle_index(b) for b in hb]
    return d


def outline_harmonics() -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of k theta, k = 2..5, on the N_ANGLES angles of the outline table: (4, N_ANGLES) each."""
    theta = np.arange(N_ANGLES) * (2 * np.pi / N_ANGLES) - np.pi
    return np.cos(np.outer(np.arange(2, 6), theta)), np.sin(np.outer(np.arange(2, 6), theta))


def move_cells(
    rng: np.random.Generator,
    c: Cells,
    r_eff: np.ndarray,
    mit: np.ndarray | None,
    m_idx: np.ndarray | None,
    box: tuple[float, float, float, float],
) -> None:
    """One frame of motion: the persistent random walk, soft repulsion (twice), reflection at the box.

    Rounded (mitotic) cells ``m_idx`` hardly move. With divisions (``mit`` given) only living cells
    repel each other. Then the outlines deform (AR(1) of their harmonic coefficients).
    """
    n = c.n
    rho_v = VELOCITY_PERSISTENCE
    xi = rng.normal(0, 1, (n, 2))
    c.vel = rho_v * c.vel + math.sqrt(1 - rho_v**2) * c.speed_sd_px[:, None] * xi
    if mit is not None and m_idx is not None:  # m_idx (rounded cells) comes with mit
        c.vel[m_idx] *= (1.0 - 0.8 * mit[m_idx])[:, None]
    pos = c.pos + c.vel
    # soft repulsion, twice per frame: packed cells do not interpenetrate (centres stay >~ 0.8 (R_i + R_j))
    live = np.flatnonzero(c.alive) if mit is not None else None
    q = pos if live is None else pos[live]
    rq = r_eff if live is None else r_eff[live]
    nq = len(q)
    for _ in range(2):
        d = q[:, None, :] - q[None, :, :]
        dist = np.hypot(d[..., 0], d[..., 1]) + np.eye(nq)
        overlap = np.clip(0.9 * (rq[:, None] + rq[None, :]) - dist, 0, None)
        np.fill_diagonal(overlap, 0)
        q = q + 0.3 * ((overlap / dist)[..., None] * d).sum(axis=1)
    if live is None:
        pos = q
    else:
        pos[live] = q
    for k, (lo, hi) in enumerate(((box[0], box[2]), (box[1], box[3]))):
        under, over = pos[:, k] < lo, pos[:, k] > hi
        pos[under, k] = 2 * lo - pos[under, k]
        pos[over, k] = 2 * hi - pos[over, k]
        c.vel[under | over, k] *= -1
    c.pos = pos
    rho_s = SHAPE_PERSISTENCE
    c.shape_a = rho_s * c.shape_a + math.sqrt(1 - rho_s**2) * SHAPE_COEF_SD * rng.normal(0, 1, (n, 4))
    c.shape_b = rho_s * c.shape_b + math.sqrt(1 - rho_s**2) * SHAPE_COEF_SD * rng.normal(0, 1, (n, 4))
