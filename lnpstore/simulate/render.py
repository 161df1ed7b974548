"""The images of one field and frame: the cells drawn as a packed monolayer (CS, GFP, BF), the LNP spots,
the true labels, the static background and illumination, and the camera (offset, Poisson-Gaussian noise,
16 bits). Coordinates in px; the canvas is padded by the BF registration offset."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lnpstore.simulate.cells import Cells, FieldSpace, smooth_noise
from lnpstore.simulate.constants import (
    BF_BACKGROUND,
    CAMERA_GAIN,
    CAMERA_OFFSET,
    CS_BLEACH_TOTAL,
    READ_NOISE,
)
from lnpstore.simulate.particles import Spots
from lnpstore.simulate.settings import SimulationSettings
from lnpstore.simulate.streams import plate_rng

#: A cell's render box and its geometry: rows ya:yb, columns xa:xb of the canvas, the same part of the
#: cell's own (2 b + 1)^2 box, the offsets from its centre (px) and its signed depth inside the outline.
Box = tuple[int, int, int, int, tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray]


def registration_offset_px(settings: SimulationSettings) -> tuple[int, int]:
    """The plate's BF offset (dy, dx) in px: BF content sits at fluorescence position + (dy, dx)."""
    rng = plate_rng(settings.seed)
    lo = max(1, int(round(2 * settings.scale)))
    hi = max(lo, int(round(6 * settings.scale)))
    mag = rng.integers(lo, hi + 1, size=2)
    sign = rng.choice([-1, 1], size=2)
    return int(mag[0] * sign[0]), int(mag[1] * sign[1])


def _clip01(a: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] in place (cheaper than np.clip on small arrays)."""
    np.maximum(a, 0.0, out=a)
    np.minimum(a, 1.0, out=a)
    return a


@dataclass
class FrameCells:
    """The cells as drawn in one frame (index ``ti``): effective radius, CS level and outline
    coefficients (rounded cells are smaller, brighter, circular), roundness ``mit`` (None: no divisions),
    the GFP level (counts per px) and who is alive."""

    ti: int
    r_eff: np.ndarray
    cs_eff: np.ndarray
    shape_a: np.ndarray
    shape_b: np.ndarray
    mit: np.ndarray | None
    gfp_now: np.ndarray
    alive: list[bool]


class Renderer:
    """Draws one field's frames: static images drawn once from ``rng``, reusable canvas buffers."""

    def __init__(
        self,
        rng: np.random.Generator,
        space: FieldSpace,
        reg_offset: tuple[int, int],
        harmonics: tuple[np.ndarray, np.ndarray],
        target_window_px: int,
    ) -> None:
        self.rng = rng
        h, w, s = space.height_px, space.width_px, space.scale
        self.h, self.w = h, w
        self.dy_reg, self.dx_reg = reg_offset
        self.pad = pad = max(abs(self.dy_reg), abs(self.dx_reg)) + 1
        self.ch, self.cw = ch, cw = h + 2 * pad, w + 2 * pad
        # static images: the uneven BF background, the illumination falloff, a bank of normals for the camera
        bf_bg = BF_BACKGROUND * (1.0 + 0.06 * smooth_noise(rng, (h // 8 + 2, w // 8 + 2), 3.0))
        self.bf_bg = ndimage.zoom(bf_bg, (h / bf_bg.shape[0], w / bf_bg.shape[1]), order=1)[:h, :w].astype(
            np.float32
        )
        illum = 1.0 - 0.08 * ((np.linspace(-1, 1, h)[:, None]) ** 2 + (np.linspace(-1, 1, w)[None, :]) ** 2)
        # on the padded canvas, 0 outside the image (a cell's own weight in its GFP window sum); the
        # image's part is a view of it
        self.illum_canvas = np.zeros((h + 2 * pad, w + 2 * pad), np.float32)
        self.illum_canvas[pad : pad + h, pad : pad + w] = illum
        self.illum = self.illum_canvas[pad : pad + h, pad : pad + w]
        self.bank = rng.standard_normal(3 * h * w + 1, dtype=np.float32)
        self.psf_sigma_px = 2.5 * s
        self.psf_area_px2 = 2 * np.pi * self.psf_sigma_px**2
        self.edge_w = 2.0 * s + 0.5
        self.rim_w = 3.0 * s + 0.5
        self.bleach_k = -math.log(1 - CS_BLEACH_TOTAL) / 71.0
        self.harm_cos, self.harm_sin = harmonics
        self.half = target_window_px // 2
        self.inner = (slice(pad, pad + h), slice(pad, pad + w))
        self.bf_view = (
            slice(pad - self.dy_reg, pad - self.dy_reg + h),
            slice(pad - self.dx_reg, pad - self.dx_reg + w),
        )
        self.cs_l, self.gfp_l, self.bf_l = (np.zeros((ch, cw), np.float32) for _ in range(3))
        self.depth1, self.depth2 = np.zeros((ch, cw), np.float32), np.zeros((ch, cw), np.float32)
        self.owner = np.zeros((ch, cw), np.int32)
        self.lab_on, self.lab_tmp = np.zeros((h, w), bool), np.zeros((h, w), bool)

    # -- cells --------------------------------------------------------------------------------------
    def depth_pass(self, c: Cells, fc: FrameCells) -> list[Box | None]:
        """Pass 1: each cell's signed depth inside its outline (px) in its box; per pixel the deepest cell
        (the owner) and the second-deepest depth. A pixel belongs to at most one cell: touching cells
        partition space like a packed monolayer (the boundary lies where the two depths are equal)."""
        for layer in (self.cs_l, self.gfp_l, self.bf_l):
            layer.fill(0.0)
        # the outline radius on N_ANGLES angles for every cell: (n, N_ANGLES + 1), periodic
        prof = 1.0 + fc.shape_a @ self.harm_cos + fc.shape_b @ self.harm_sin
        r_lut = (fc.r_eff[:, None] * np.clip(prof, 0.6, 1.45)).astype(np.float32)
        r_lut = np.concatenate([r_lut, r_lut[:, :1]], axis=1)
        depth1, depth2, owner, pad, ch, cw = self.depth1, self.depth2, self.owner, self.pad, self.ch, self.cw
        depth1.fill(-1e6)
        depth2.fill(-1e6)
        owner.fill(-1)
        pos = c.pos
        boxes: list[Box | None] = []
        for i in range(c.n):
            if not fc.alive[i]:
                boxes.append(None)
                continue
            cy, cx = pos[i, 0] + pad, pos[i, 1] + pad
            iy, ix, b = int(round(cy)), int(round(cx)), c.hb[i]
            ya, yb, xa, xb = max(iy - b, 0), min(iy + b + 1, ch), max(ix - b, 0), min(ix + b + 1, cw)
            if ya >= yb or xa >= xb:
                boxes.append(None)
                continue
            loc = (slice(ya - iy + b, yb - iy + b), slice(xa - ix + b, xb - ix + b))
            dyv = (np.arange(ya, yb, dtype=np.float32) - np.float32(cy))[:, None]
            dxv = (np.arange(xa, xb, dtype=np.float32) - np.float32(cx))[None, :]
            rho = np.sqrt(dyv * dyv + dxv * dxv)
            sd_in = r_lut[i][c.angle_idx[i][loc]]
            sd_in -= rho  # px inside the outline
            d1, d2, ow = depth1[ya:yb, xa:xb], depth2[ya:yb, xa:xb], owner[ya:yb, xa:xb]
            win = sd_in > d1
            np.maximum(d2, np.where(win, d1, sd_in), out=d2)
            d1[win] = sd_in[win]
            ow[win] = i
            boxes.append((ya, yb, xa, xb, loc, dyv, dxv, sd_in))
        return boxes

    def true_labels(self, n: int) -> np.ndarray:
        """The true label image (cell index + 1; 0 background) after :meth:`depth_pass`: a pixel is its
        owner's where the owner's stain is above half (deeper than both its outline and the boundary with
        the second-deepest cell)."""
        d1_in = self.depth1[self.inner]
        np.greater(d1_in, self.depth2[self.inner], out=self.lab_on)
        self.lab_on &= np.greater(d1_in, 0.0, out=self.lab_tmp)
        lab: np.ndarray = self.owner[self.inner].astype(
            np.uint8 if n < 255 else np.uint16 if n < 65535 else np.uint32
        )
        lab += 1  # owner index + 1 (no owner: -1 wraps round to 0)
        lab *= self.lab_on
        return lab

    def paint_pass(self, c: Cells, fc: FrameCells, boxes: list[Box | None], *, last: bool) -> None:
        """Pass 2: render each cell on the pixels it owns (CS, GFP, BF layers), with its depth measured to
        the nearer of its outline and the boundary with the second-deepest cell ((d1 - d2) / 2), so the
        stain falls off towards every membrane and a thin dim seam separates touching cells. At the
        ``last`` frame, record each cell's own GFP weight in its target window (``own_window_mask``)."""
        edge_w, rim_w, half, pad = self.edge_w, self.rim_w, self.half, self.pad
        pos, mit = c.pos, fc.mit
        for i in range(c.n):
            box = boxes[i]
            if box is None:
                continue
            ya, yb, xa, xb, loc, dyv, dxv, sd_in = box
            mi = 0.0 if mit is None else float(mit[i])
            mine = self.owner[ya:yb, xa:xb] == i
            eff = np.minimum(sd_in, 0.5 * (sd_in - self.depth2[ya:yb, xa:xb]))
            mask = _clip01(eff * (1.0 / edge_w) + 0.5)
            mask *= mine
            thick = _clip01(eff * (1.0 / (0.25 * fc.r_eff[i])))
            dyn, dxn = dyv - np.float32(c.nuc_off[i, 0]), dxv - np.float32(c.nuc_off[i, 1])
            nuc = _clip01((c.nuc_r[i] - np.sqrt(dyn * dyn + dxn * dxn)) * (1.0 / edge_w) + 0.5)
            if mi > 0:
                nuc *= 1.0 - mi  # condensed chromatin: no dim nucleus in a rounded cell
            tex = c.textures[i][loc]
            cs_cell = mask * np.float32(fc.cs_eff[i])
            cs_cell *= 0.35 + 0.65 * thick
            cs_cell *= 1.0 - 0.35 * nuc
            cs_cell *= 1.0 + 0.25 * tex
            self.cs_l[ya:yb, xa:xb] += cs_cell
            gfp_cell = mask * (1.0 + 0.1 * tex)
            if last:
                wy0, wx0 = int(round(pos[i, 0])) - half + pad, int(round(pos[i, 1])) - half + pad
                sy = slice(max(wy0, ya) - ya, max(min(wy0 + 2 * half, yb) - ya, 0))
                sx = slice(max(wx0, xa) - xa, max(min(wx0 + 2 * half, xb) - xa, 0))
                # as the window sum sees it: times the illumination, only pixels inside the image
                illum = self.illum_canvas[ya:yb, xa:xb]
                c.own_window_mask[i] = float((gfp_cell[sy, sx] * illum[sy, sx]).sum(dtype=np.float64))
            gfp_cell *= np.float32(c.autofluor[i] + fc.gfp_now[i])
            self.gfp_l[ya:yb, xa:xb] += gfp_cell
            u = sd_in * (1.0 / rim_w)
            bump_in = np.maximum(1.0 - (u - 1.0) ** 2, 0.0)
            bump_out = np.maximum(1.0 - (u + 1.0) ** 2, 0.0)
            halo = 200.0 * (1.0 + mi) if mi > 0 else 200.0  # a rounded cell is phase-bright
            bf_cell = halo * bump_out * bump_out - 260.0 * bump_in * bump_in
            bf_cell += _clip01(sd_in * (1.0 / edge_w) + 0.5) * (-30.0 + 25.0 * tex)
            self.bf_l[ya:yb, xa:xb] += bf_cell

    # -- LNP, signals, camera -------------------------------------------------------------------------
    def lnp_image(self, spots: list[Spots]) -> np.ndarray:
        """The LNP spots splatted bilinearly in the image and blurred by the PSF (float32, counts)."""
        h, w = self.h, self.w
        lnp: np.ndarray = np.zeros(h * w)
        if spots:
            ys, xs, amp = (np.concatenate(part) for part in zip(*spots, strict=True))
            y0f, x0f = np.floor(ys), np.floor(xs)
            fy, fx = ys - y0f, xs - x0f
            y0i, x0i = y0f.astype(np.int64), x0f.astype(np.int64)
            yy = np.concatenate([y0i, y0i, y0i + 1, y0i + 1])
            xx = np.concatenate([x0i, x0i + 1, x0i, x0i + 1])
            wgt = np.concatenate([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx]) * np.tile(
                amp, 4
            )
            ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            lnp = np.bincount(yy[ok] * w + xx[ok], weights=wgt[ok], minlength=h * w)
        return ndimage.gaussian_filter(lnp.reshape(h, w).astype(np.float32), self.psf_sigma_px, truncate=3.0)

    def signals(self, lnp_img: np.ndarray, ti: int) -> dict[str, np.ndarray]:
        """Noise-free signal of each channel (counts above the camera offset), channel order GFP, LNP, CS, BF."""
        bleach = math.exp(-self.bleach_k * ti)
        inner, illum = self.inner, self.illum
        return {
            "GFP": (3.0 + self.gfp_l[inner]) * illum,
            "LNP": (8.0 + lnp_img) * illum,
            "CS": (20.0 + self.cs_l[inner]) * illum * bleach + 0.04 * lnp_img,
            "BF": self.bf_bg + self.bf_l[self.bf_view],
        }

    def camera(self, signal: np.ndarray) -> np.ndarray:
        """The written image: offset, Poisson-Gaussian noise (normals from the bank at a random offset),
        rounded and clipped to uint16."""
        h, w = self.h, self.w
        off = int(self.rng.integers(0, 2 * h * w))
        z = self.bank[off : off + h * w].reshape(h, w)
        sd = np.maximum(signal, 0.0)
        sd *= CAMERA_GAIN
        sd += READ_NOISE**2
        np.sqrt(sd, out=sd)
        sd *= z
        sd += signal
        sd += CAMERA_OFFSET + 0.5  # + 0.5: the cast below truncates, so this rounds
        np.clip(sd, 0, 65535, out=sd)
        return sd.astype(np.uint16)

    def window_sums(self, c: Cells, alive: list[bool], gfp_signal: np.ndarray, gfp_image: np.ndarray) -> None:
        """Per living cell, the GFP sum over its target window of the noise-free image (camera offset
        included: ``gfp_sum_true``) and of the written image (``gfp_sum_written``)."""
        truth_img = gfp_signal + CAMERA_OFFSET
        written = gfp_image.astype(np.float64)
        half, pos = self.half, c.pos
        for i in range(c.n):
            if not alive[i]:
                continue
            wy0, wx0 = int(round(pos[i, 0])) - half, int(round(pos[i, 1])) - half
            sy, sx = slice(max(wy0, 0), max(wy0 + 2 * half, 0)), slice(max(wx0, 0), max(wx0 + 2 * half, 0))
            c.gfp_sum_true[i] = float(truth_img[sy, sx].sum(dtype=np.float64))
            c.gfp_sum_written[i] = float(written[sy, sx].sum())
