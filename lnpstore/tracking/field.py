"""The per-field tracker: one frame at a time, every live cell segmented in its window and linked.

For each frame, the image is smoothed once (Gaussian) and thresholded once into a foreground. Each live
cell is then segmented only inside a window (``geometry_for(pixel_size_um).track_window_px``) centred on
its previous centre (:mod:`lnpstore.tracking.segmentation`):

* elevation: the negative smoothed intensity of the window (``elevation="intensity"``, the default):
  touching cells meet at a thin dim seam (the stain thins towards every membrane), which the flood
  follows; the dim nucleus is enclosed by the cell's own marker and cytoplasm, so it does not split it.
  "distance" (the foreground's distance transform) and "both" remain selectable: the distance map has a
  single peak in the middle of a 3-cell cluster and lets a bigger neighbour flood a smaller cell;
* markers: the cell's previous region eroded to its core (label 1), optionally moved by the
  motion-predicted displacement (``motion_damping``); the cores of every other live cell in the window
  (competing markers); and the window border (the outside marker). *Every visible cell has a marker*:
  a track that reaches the edge margin stops being reported but is followed on silently as a
  competitor, and the seeding detector (:func:`lnpstore.tracking.seeding.seeds_from_foreground`) runs on
  the frame's foreground (the whole field every ``new_peak_every_frames`` frames, on the frames between
  only on the blobs larger than their known cells' areas explain); its cells farther than
  ``new_peak_min_distance_um`` from every known cell's predicted centre (cells that entered the field,
  or were never seeded) are followed silently from then on. Without them, a tracked cell's region
  swallowed its unmarked neighbours, its centroid drifted and it swapped cells;
* mask: the foreground, so background pixels are never given to the cell.

The new centre is the centroid of the cell's region. A track stops when its centre comes within
``edge_margin_px`` of the field's edge ('edge': its last reported row; it is still followed as a
competitor), when its region is lost ('lost'), when the image of the next frame is missing
('missing_image'), when it divides ('divided', :mod:`lnpstore.tracking.divisions`) or at the last frame
('end').

Quality flags: ``flag_jump`` (displacement beyond ``median + jump_mad_k * MAD`` of the field's
displacements, at least ``jump_floor_um``, or beyond ``jump_max_um``, or a centre farther than
``predicted_max_um`` from the motion-predicted one), ``flag_area`` (area ratio outside
``[1/area_ratio_max, area_ratio_max]``, overlap with the previous region below ``iou_min``, area above
``area_median_max`` times the track's running median or below it divided by ``area_median_max``, or more
than ``core_taken_max`` of the cell's marker lying on a neighbour's marker) and ``flag_lost``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import polars as pl

from lnpstore.instrument.geometry import geometry_for
from lnpstore.store.errors import TrackingError
from lnpstore.tracking.discovery import leftover_blobs, unexplained_blobs
from lnpstore.tracking.divisions import division_parts
from lnpstore.tracking.integrity import check_frame, keep_largest_pieces
from lnpstore.tracking.seeding import fill_small_holes, foreground_threshold, seeds_from_foreground
from lnpstore.tracking.segmentation import (
    FIRST_NEIGHBOUR,
    OWN,
    Placed,
    crop_to_box,
    elevation,
    half_window,
    iou,
    nearest_foreground,
    paint_mask,
    window_box,
    window_markers,
)
from lnpstore.tracking.settings import FIELD_COLUMNS, NODE_ID_STRIDE, TrackSettings, gap_node
from lnpstore.tracking.spots import spot_measures

log = logging.getLogger(__name__)


@dataclass
class _Track:
    track_id: int
    y: float
    x: float
    area: float | None = None
    mask: np.ndarray | None = None  # previous region, bool, placed at (mask_y0, mask_x0) in the frame
    mask_y0: int = 0
    mask_x0: int = 0
    rows: list[dict] = field(default_factory=list)
    alive: bool = True
    report: bool = True  # False: a silent competitor (beyond the edge margin, or never seeded)
    vy: float = 0.0
    vx: float = 0.0
    areas: list[float] = field(default_factory=list)
    parent_track_id: int | None = None
    lineage_id: int = 0  # the founder's track_id (set from track_id when 0)
    gap: int = 0  # frames in a row bridged without a region (gap_filled nodes)

    def __post_init__(self) -> None:
        if not self.lineage_id:
            self.lineage_id = self.track_id

    @property
    def previous(self) -> Placed | None:
        """The cell's previous region as (mask, row, column), or None."""
        return None if self.mask is None else (self.mask, self.mask_y0, self.mask_x0)


@dataclass
class _Frame:
    """One frame's inputs, prepared once for every cell."""

    index: int  # 1-based frame number
    images: Mapping[str, np.ndarray]
    cs: np.ndarray  # the segmented channel
    smoothed: np.ndarray
    fg: np.ndarray  # the foreground (bool)
    threshold: float  # the foreground's threshold on ``smoothed``


class FieldTracker:
    """State of one field's tracking; fed one frame at a time (never holds the movie)."""

    def __init__(self, seeds: np.ndarray, pixel_size_um: float, settings: TrackSettings):
        self.s = settings
        self.px = float(pixel_size_um)
        geo = geometry_for(pixel_size_um)
        self.half = geo.track_window_px // 2
        self.edge_px = (
            geo.edge_margin_px if settings.edge_margin_um is None else settings.edge_margin_um / self.px
        )
        self.sigma_px = settings.smoothing_sigma_um / self.px
        self.min_area_px = settings.min_area_um2 / self.px**2
        if settings.report_new_cells and settings.leftover_min_area_um2 > 0:  # small cells stay tracked
            self.min_area_px = min(self.min_area_px, settings.leftover_min_area_um2 / self.px**2)
        self.max_hole_px = settings.seeds.max_hole_um2 / self.px**2
        self.marker_r = max(1, int(round(settings.marker_radius_um / self.px)))
        yy, xx = np.mgrid[-self.marker_r : self.marker_r + 1, -self.marker_r : self.marker_r + 1]
        self.marker_disc = yy**2 + xx**2 <= self.marker_r**2
        self.core_erosion_px = settings.core_erosion_um / self.px
        self.tracks = [_Track(i + 1, float(y), float(x)) for i, (y, x) in enumerate(seeds)]
        self.silent: list[_Track] = []  # cells found after frame 1 (never seeded): competitors only
        self.shape: tuple[int, int] | None = None
        self.next_id = len(self.tracks) + 1  # daughters and new cells get the next free track ids
        self.label_frame: np.ndarray | None = None  # this frame's label image (reported tracks)

    # -- one frame --------------------------------------------------------------------------------
    def step(self, frame: int, images: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """Segment every live cell in this frame; returns the frame's label image (int32, pixel value =
        the track_id of a reported track, 0 elsewhere), or None when the frame has no CS image."""
        live = [t for t in self.tracks if t.alive] + [t for t in self.silent if t.alive]
        cs = images.get("CS")
        if cs is None:
            for t in live:
                self._stop(t, "missing_image")
            self.silent = []
            return None
        cs = self._checked(frame, cs)
        self.label_frame = np.zeros(cs.shape, np.int32)
        if not any(t.report for t in live):
            return self.label_frame
        fr = self._prepare(frame, images, cs)
        if frame > 1 and self.s.new_peak_min_distance_um > 0:
            live += self._new_cells(fr.fg, live, frame)
        cores = [self._core(t) for t in live]  # every live cell's marker from the previous frame
        for i, t in enumerate(live):
            self._segment(t, fr, cores, i)
        self.silent = [t for t in self.silent if t.alive]
        if self.s.report_new_cells and self.s.leftover_min_area_um2 > 0:
            self._leftover_cells(fr)
        keep_largest_pieces(self.label_frame)
        check_frame(frame, self._frame_nodes(frame), self.label_frame)
        return self.label_frame

    def _frame_nodes(self, frame: int) -> list[tuple[int, int | None, bool]]:
        """(track_id, label_id, gap_filled) of every node in ``frame``."""
        return [
            (t.track_id, t.rows[-1]["label_id"], bool(t.rows[-1]["gap_filled"]))
            for t in self.tracks
            if t.rows and t.rows[-1]["frame"] == frame
        ]

    def _claimable(self, region: np.ndarray, origin: tuple[int, int]) -> bool:
        """Whether at least half of ``region`` (at ``origin`` in the frame) is still unpainted in this
        frame's label image: otherwise another track already holds that cell, and one region is never
        claimed by two tracks."""
        y0, x0 = origin
        assert self.label_frame is not None  # set at the start of every step
        sub = self.label_frame[y0 : y0 + region.shape[0], x0 : x0 + region.shape[1]]
        n = int(np.count_nonzero(region))
        return n > 0 and 2 * int(np.count_nonzero(region & (sub == 0))) >= n

    def _checked(self, frame: int, cs) -> np.ndarray:
        """The frame's CS image as an array, checked to be 2-D and of frame 1's shape."""
        cs = np.asarray(cs)
        if cs.ndim != 2:
            raise TrackingError(f"frame {frame}: the CS image must be 2-D, got shape {cs.shape}")
        if self.shape is None:
            self.shape = cs.shape
        elif cs.shape != self.shape:
            raise TrackingError(f"frame {frame}: CS image has shape {cs.shape}, frame 1 had {self.shape}")
        return cs

    def _prepare(self, frame: int, images: Mapping[str, np.ndarray], cs: np.ndarray) -> _Frame:
        """Smooth the frame once and threshold it into the foreground (with small holes filled)."""
        from scipy import ndimage as ndi

        smoothed = ndi.gaussian_filter(cs.astype(np.float32), self.sigma_px)
        thr = foreground_threshold(
            smoothed, self.s.seeds.threshold_factor, method=self.s.seeds.threshold_method
        )
        fg = fill_small_holes(smoothed > thr, self.max_hole_px)
        if not fg.any() or fg.all():
            log.warning(
                "frame %d: the CS image has no cell pixels (an empty, saturated or flat image?): its cells "
                "are bridged for up to %d frame(s), then stop as 'lost'",
                frame,
                int(self.s.max_gap_frames),
            )
        return _Frame(frame, images, cs, smoothed, fg, thr)

    # -- new cells --------------------------------------------------------------------------------
    def _leftover_cells(self, fr: _Frame) -> None:
        """New tracks for foreground blobs that no track's region touches in this frame and that hold at
        least ``leftover_min_area_um2``."""
        competitors = [
            p for t in self.tracks + self.silent if t.alive and not t.report and (p := t.previous) is not None
        ]
        assert self.label_frame is not None  # set at the start of every step
        min_px = self.s.leftover_min_area_um2 / self.px**2
        for crop, y0, x0 in leftover_blobs(fr.fg, self.label_frame, competitors, min_px):
            rows, cols = np.nonzero(crop)
            d = _Track(self.next_id, float(rows.mean()) + y0, float(cols.mean()) + x0)
            self.next_id += 1
            d.rows.append(self._node(d, fr, crop, (y0, x0), crop, (y0, x0)))
            self._moved(d, crop, y0, x0)
            self.tracks.append(d)

    def _new_cells(self, fg: np.ndarray, live: list[_Track], frame: int) -> list[_Track]:
        """Cells of this frame (the seeding detector on its foreground) far from every known cell's
        predicted centre: cells that entered the field or were never seeded. They become silent
        competitors (or tracks, with ``report_new_cells``), so a tracked cell's region cannot swallow them.

        The detector runs on the whole foreground every ``new_peak_every_frames`` frames (frames 2,
        2 + k, ...); on the frames between, only on the foreground blobs the known cells do not explain,
        which is where a cell can have appeared."""
        k = self.s.new_peak_every_frames
        oy = ox = 0
        sub = fg
        if k > 1 and (frame - 2) % k:
            part = self._unexplained(fg, live)
            if part is None:
                return []
            sub, oy, ox = part
        found, regions = seeds_from_foreground(
            sub, pixel_size_um=self.px, settings=self.s.seeds, with_regions=True
        )
        if not len(found):
            return []
        found = found + (oy, ox)
        if live:
            known = np.array([self._predicted(t) for t in live])
            d = np.sqrt(((found[:, None, :] - known[None, :, :]) ** 2).sum(-1)).min(1)
            keep = d >= self.s.new_peak_min_distance_um / self.px
            found, regions = found[keep], [r for r, k_ in zip(regions, keep, strict=True) if k_]
        if not self.s.report_new_cells:
            new = [_Track(0, float(y), float(x), report=False) for y, x in found]
            self.silent += new
            return new
        new = []  # tracked and reported from the frame they were found in
        for (y, x), (mask, ry, rx) in zip(found, regions, strict=True):
            # its detector region is its marker's source, as a tracked cell's previous region is (a small
            # disc at the centroid of a cell entering at the image's edge lost the flood to the
            # neighbours' deep cores)
            t = _Track(self.next_id, float(y), float(x), mask=mask, mask_y0=ry + oy, mask_x0=rx + ox)
            t.area = float(mask.sum())
            new.append(t)
            self.next_id += 1
        self.tracks += new
        return new

    def _unexplained(self, fg: np.ndarray, live: list[_Track]) -> tuple[np.ndarray, int, int] | None:
        """The foreground blobs larger than the known cells inside them explain (their recent median
        areas, times 1.25, plus the seeding detector's minimum cell area)."""
        n_recent = max(1, self.s.area_median_frames)
        known = []
        for t in live:
            recent = t.areas[-n_recent:]
            known.append((*self._predicted(t), float(np.median(recent)) if recent else np.inf))
        return unexplained_blobs(fg, known, self.s.seeds.min_area_um2 / self.px**2)

    # -- one cell ---------------------------------------------------------------------------------
    def _predicted(self, t: _Track) -> tuple[float, float]:
        k = self.s.motion_damping
        return t.y + k * t.vy, t.x + k * t.vx

    def _core(self, t: _Track) -> Placed:
        """The cell's marker: its previous region eroded by ``core_erosion_um`` (a disc at the centre
        for frame 1 or a region too thin to erode), as (bool mask, row, column) in frame coordinates."""
        from scipy import ndimage as ndi

        if t.mask is not None:
            d = ndi.distance_transform_edt(np.pad(t.mask, 1))[1:-1, 1:-1]
            core = d > max(self.core_erosion_px, self.s.core_fraction * float(d.max()))
            if core.sum() >= len(self.marker_disc):
                k = self.s.motion_damping
                return core, t.mask_y0 + int(round(k * t.vy)), t.mask_x0 + int(round(k * t.vx))
        r = self.marker_r
        py, px_ = self._predicted(t)
        cy, cx = int(round(py)), int(round(px_))
        return self.marker_disc, cy - r, cx - r

    def _segment(self, t: _Track, fr: _Frame, cores: list[Placed], me: int) -> None:
        """Segment cell ``t`` (``cores[me]`` its marker) in its window, then record it as the next node
        of its track, as two daughters, as a gap, or as a silent competitor's new region."""
        from skimage.segmentation import watershed

        cy, cx = int(round(t.y)), int(round(t.x))
        hy, hx = half_window(self.half, cy, cx, t.previous, self.s.jump_max_um / self.px)
        box = window_box(cy, cx, hy, hx, fr.fg.shape)
        if box is None:
            self._stop(t, "lost")
            return
        y0, y1, x0, x1 = box
        win = fr.fg[y0:y1, x0:x1]
        markers = window_markers(box, fr.fg.shape, [c for j, c in enumerate(cores) if j != me])
        own = self._own_marker(t, win, cores[me], (y0, x0))
        if own is None:
            self._lose(t, fr.index, fr.cs.shape)
            return
        n_own = int(np.count_nonzero(own))
        core_taken = int(np.count_nonzero(markers[own] >= FIRST_NEIGHBOUR)) / n_own if n_own else 0.0
        markers[own] = OWN
        markers[~win] = 0
        disc = cores[me][0] is self.marker_disc
        elev = elevation(win, fr.smoothed[y0:y1, x0:x1], fr.threshold, self.s.elevation, disc)
        lab = watershed(elev, markers, mask=win, compactness=self.s.compactness)
        region = lab == OWN
        if np.count_nonzero(region) < self.min_area_px:
            self._lose(t, fr.index, fr.cs.shape)
            return
        t.gap = 0
        if not t.report:
            self._follow_silent(t, region, (y0, x0))
            return
        if not self._claimable(region, (y0, x0)):  # another track holds this cell in this frame
            self._lose(t, fr.index, fr.cs.shape)
            return
        if t.rows and self.s.division_min_fraction > 0:
            parts = division_parts(
                lab,
                region,
                win,
                (y0, x0),
                t.previous,
                float(t.area or 0.0),
                t.areas,
                min_fraction=self.s.division_min_fraction,
                min_area_px=self.min_area_px,
                seeds=self.s.seeds,
                pixel_size_um=self.px,
            )
            if parts is not None and all(self._claimable(p, (y0, x0)) for p in parts):
                self._divide(t, fr, parts, (y0, x0))
                return
        self._extend(t, fr, region, (y0, x0), core_taken)

    def _own_marker(
        self, t: _Track, win: np.ndarray, core: Placed, origin: tuple[int, int]
    ) -> np.ndarray | None:
        """The cell's own marker in the window (its core on the foreground; else a disc at the previous
        centre or the nearest foreground pixel within 4 marker radii); None when there is none."""
        y0, x0 = origin
        mask, ry, rx = core
        own = np.zeros(win.shape, bool)
        paint_mask(own, mask, ry - y0, rx - x0, True)
        own &= win
        if own.any():
            return own
        r4 = int(math.ceil(4 * self.s.marker_radius_um / self.px))
        near = nearest_foreground(win, (t.y - y0, t.x - x0), r4)
        if near is None:
            return None
        paint_mask(own, self.marker_disc, near[0] - self.marker_r, near[1] - self.marker_r, True)
        return own

    def _follow_silent(self, t: _Track, region: np.ndarray, origin: tuple[int, int]) -> None:
        """A silent competitor's new region: only its region (the next frame's marker) matters."""
        y0, x0 = origin
        crop, ry0, rx0 = crop_to_box(region)
        rows, cols = np.nonzero(region)
        ny, nx = float(rows.mean()) + y0, float(cols.mean()) + x0
        area = float(np.count_nonzero(region))
        if t.areas:
            t.vy, t.vx = ny - t.y, nx - t.x
        t.areas.append(area)
        t.y, t.x, t.area = ny, nx, area
        t.mask, t.mask_y0, t.mask_x0 = crop, y0 + ry0, x0 + rx0

    def _extend(
        self, t: _Track, fr: _Frame, region: np.ndarray, origin: tuple[int, int], core_taken: float
    ) -> None:
        """Record ``region`` as the track's next node with its link columns and flags."""
        s = self.s
        y0, x0 = origin
        crop, ry0, rx0 = crop_to_box(region)
        my0, mx0 = y0 + ry0, x0 + rx0
        rows, cols = np.nonzero(region)
        ny, nx = float(rows.mean()) + y0, float(cols.mean()) + x0
        area = float(np.count_nonzero(region))
        disp = math.hypot(ny - t.y, nx - t.x) if t.rows else None
        py, px_ = self._predicted(t)
        link_cost = math.hypot(ny - py, nx - px_) if t.rows else None
        off_pred = (
            link_cost is not None and s.predicted_max_um > 0 and link_cost > s.predicted_max_um / self.px
        )
        recent = t.areas[-s.area_median_frames :] if s.area_median_frames >= 1 else []
        med_area = float(np.median(recent)) if recent else 0.0
        # Grown above the running median (took in a neighbour), or shrunk below it by the same factor
        # (a neighbour took part of it, or the region stayed behind while the cell moved on).
        grown = (
            bool(recent)
            and s.area_median_max > 0
            and not (med_area / s.area_median_max <= area <= s.area_median_max * med_area)
        )
        taken = bool(t.rows) and s.core_taken_max > 0 and core_taken > s.core_taken_max
        links = {
            "displacement_px": disp,
            "area_ratio": area / t.area if t.area else None,
            "iou_prev": iou(t.mask, t.mask_y0, t.mask_x0, crop, my0, mx0) if t.mask is not None else None,
            "link_cost_px": link_cost,
            "flag_jump": off_pred,
            "flag_area": bool(grown or taken),
        }
        t.rows.append(self._node(t, fr, region, origin, crop, (my0, mx0), **links))
        if t.rows[:-1]:
            t.vy, t.vx = ny - t.y, nx - t.x
        self._moved(t, crop, my0, mx0)

    def _divide(self, t: _Track, fr: _Frame, parts: list[np.ndarray], origin: tuple[int, int]) -> None:
        """End ``t`` ('divided', at its previous frame) and start one daughter track per part at this frame."""
        y0, x0 = origin
        prev, prev_area = t.previous, t.area
        self._stop(t, "divided")
        for part in parts:
            crop, ry0, rx0 = crop_to_box(part)
            my0, mx0 = y0 + ry0, x0 + rx0
            rows, cols = np.nonzero(part)
            d = _Track(
                self.next_id,
                float(rows.mean()) + y0,
                float(cols.mean()) + x0,
                parent_track_id=t.track_id,
                lineage_id=t.lineage_id,
            )
            self.next_id += 1
            area = float(np.count_nonzero(crop))
            links = {
                "area_ratio": area / prev_area if prev_area else None,
                "iou_prev": iou(prev[0], prev[1], prev[2], crop, my0, mx0) if prev is not None else None,
            }
            d.rows.append(self._node(d, fr, part, origin, crop, (my0, mx0), **links))
            self._moved(d, crop, my0, mx0)
            self.tracks.append(d)

    def _moved(self, t: _Track, crop: np.ndarray, my0: int, mx0: int) -> None:
        """Update a reported track's state after its node was recorded (centre, area, region)."""
        area = float(np.count_nonzero(crop))
        t.areas.append(area)
        t.y, t.x, t.area = t.rows[-1]["y_px"], t.rows[-1]["x_px"], area
        t.mask, t.mask_y0, t.mask_x0 = crop, my0, mx0
        if not t.rows[-1]["in_bounds"]:  # not reported any more, but followed on as a competitor
            t.rows[-1]["stop_reason"] = "edge"
            t.report = False

    # -- one node ---------------------------------------------------------------------------------
    def _node(
        self,
        t: _Track,
        fr: _Frame,
        region: np.ndarray,
        win_origin: tuple[int, int],
        crop: np.ndarray,
        crop_origin: tuple[int, int],
        **links,
    ) -> dict:
        """One row of the tracks table for ``t`` in this frame: ``region`` is the cell's mask in the
        window at ``win_origin`` (row, column), ``crop`` the same mask cut to its bounding box at
        ``crop_origin``; ``links`` the link columns. Paints the region into the frame's label image."""
        rows, cols = np.nonzero(region)
        y0, x0 = win_origin
        ny, nx = float(rows.mean()) + y0, float(cols.mean()) + x0
        e = self.edge_px
        h, w = fr.cs.shape
        in_bounds = bool(e <= ny <= h - 1 - e and e <= nx <= w - 1 - e)
        self._paint_label(t.track_id, crop, crop_origin)
        return {
            "track_id": t.track_id,
            "frame": fr.index,
            "node_id": t.track_id * NODE_ID_STRIDE + fr.index,
            "parent_track_id": t.parent_track_id,
            "lineage_id": t.lineage_id,
            "label_id": t.track_id,
            "y_px": ny,
            "x_px": nx,
            "displacement_px": links.get("displacement_px"),
            **self._measure(fr, region, win_origin, crop),
            "area_ratio": links.get("area_ratio"),
            "iou_prev": links.get("iou_prev"),
            "link_cost_px": links.get("link_cost_px"),
            "gap_filled": False,
            "in_bounds": in_bounds,
            "flag_jump": bool(links.get("flag_jump", False)),
            "flag_area": bool(links.get("flag_area", False)),
            "flag_lost": False,
            "stop_reason": None,
        }

    def _measure(self, fr: _Frame, region: np.ndarray, win_origin: tuple[int, int], crop: np.ndarray) -> dict:
        """The region's shape (area, perimeter, eccentricity, solidity), the channels' means, the LNP spots
        and their depth in the cell."""
        from skimage.measure import regionprops

        y0, x0 = win_origin
        wy, wx = region.shape
        props = regionprops(crop.astype(np.uint8))[0]

        def mean_of(ch: str) -> float | None:
            img = fr.images.get(ch)
            return None if img is None else float(np.asarray(img)[y0 : y0 + wy, x0 : x0 + wx][region].mean())

        lnp = fr.images.get("LNP")
        spots, depth = (
            (None, None)
            if lnp is None
            else spot_measures(
                np.asarray(lnp)[y0 : y0 + wy, x0 : x0 + wx],
                region,
                pixel_size_um=self.px,
                settings=self.s.spots,
            )
        )
        return {
            "area_px": float(np.count_nonzero(crop)),
            "perimeter_px": float(props.perimeter),
            "eccentricity": float(props.eccentricity),
            "solidity": float(props.solidity),
            "mean_cs": float(fr.cs[y0 : y0 + wy, x0 : x0 + wx][region].mean()),
            "mean_lnp": mean_of("LNP"),
            "mean_gfp": mean_of("GFP"),
            "lnp_spots": spots,
            "lnp_radial_frac": depth,
        }

    def _paint_label(self, track_id: int, crop: np.ndarray, crop_origin: tuple[int, int]) -> None:
        """Paint a region into this frame's label image; first come, first served: labels never overlap."""
        if self.label_frame is None:
            return
        cy0, cx0 = crop_origin
        sub = self.label_frame[cy0 : cy0 + crop.shape[0], cx0 : cx0 + crop.shape[1]]
        sub[crop & (sub == 0)] = track_id

    # -- gaps and ends ----------------------------------------------------------------------------
    def _lose(self, t: _Track, frame: int, shape: tuple[int, int]) -> None:
        """No region for ``t`` in this frame: bridge the gap with a node at the motion-predicted centre
        (``gap_filled``, no region or label pixels; at most ``max_gap_frames`` in a row, the cell's last
        region stays its marker), or stop it ('lost') when the gap is longer or it has no node yet."""
        if not (t.report and t.rows and t.gap < self.s.max_gap_frames):
            self._stop(t, "lost")
            return
        t.gap += 1
        py, px_ = self._predicted(t)
        e = self.edge_px
        in_bounds = bool(e <= py <= shape[0] - 1 - e and e <= px_ <= shape[1] - 1 - e)
        t.rows.append(gap_node(t, frame, py, px_, in_bounds=in_bounds))
        t.y, t.x = py, px_

    def _stop(self, t: _Track, reason: str) -> None:
        t.alive = False
        t.mask = None
        if reason == "lost":  # a gap that never closed: its bridging nodes are not kept
            while t.rows and t.rows[-1].get("gap_filled"):
                t.rows.pop()
        if t.rows and t.report:
            t.rows[-1]["stop_reason"] = reason
            t.rows[-1]["flag_lost"] = reason == "lost"

    # -- result -----------------------------------------------------------------------------------
    def finish(self) -> pl.DataFrame:
        """The field's tracks (:data:`FIELD_COLUMNS`), every live track ended ('end'), with quality flags."""
        return finish_tracks(self.tracks, self._stop, pixel_size_um=self.px, settings=self.s)


def finish_tracks(
    tracks: list[Any], stop: Callable[[Any, str], None], *, pixel_size_um: float, settings: TrackSettings
) -> pl.DataFrame:
    """End every live reported track ('end', through ``stop``) and return all nodes as the field's
    tracks (:data:`FIELD_COLUMNS`) with quality flags; shared by the window tracker and the mask linker."""
    for t in tracks:
        if t.alive and t.report:
            stop(t, "end")
    rows = [r for t in tracks for r in t.rows]
    df = (
        pl.DataFrame(rows, schema=FIELD_COLUMNS, orient="row") if rows else pl.DataFrame(schema=FIELD_COLUMNS)
    )
    return add_quality_flags(df, pixel_size_um=pixel_size_um, settings=settings)


def add_quality_flags(df: pl.DataFrame, *, pixel_size_um: float, settings: TrackSettings) -> pl.DataFrame:
    """Set ``flag_jump`` and ``flag_area`` from the field's displacement distribution and area ratios."""
    s = settings
    d = df.get_column("displacement_px").drop_nulls()
    if d.len():
        med = float(cast(float, d.median()))
        mad = float(cast(float, (d - med).abs().median())) * 1.4826
    else:
        med = mad = 0.0
    thr = max(med + s.jump_mad_k * mad, s.jump_floor_um / pixel_size_um)
    return df.with_columns(
        flag_jump=pl.col("flag_jump").fill_null(False)
        | (pl.col("displacement_px") > thr)
        | (pl.col("displacement_px") > s.jump_max_um / pixel_size_um),
        flag_area=pl.col("flag_area").fill_null(False)
        | (pl.col("area_ratio") > s.area_ratio_max)
        | (pl.col("area_ratio") < 1.0 / s.area_ratio_max)
        | (pl.col("iou_prev") < s.iou_min),
    ).with_columns(pl.col("flag_jump", "flag_area").fill_null(False))


def track_field(
    frames: Iterable[Mapping[str, np.ndarray]],
    seeds: np.ndarray,
    *,
    pixel_size_um: float,
    settings: TrackSettings | None = None,
    on_labels: Callable[[np.ndarray], None] | None = None,
) -> pl.DataFrame:
    """Track one field's cells from their frame-1 seeds.

    Parameters
    ----------
    frames : iterable of {channel: (H, W) ndarray}
        Frames 1, 2, ... in order, each a mapping channel ('CS', 'LNP', 'GFP', ...) -> image. Consumed
        one at a time (a generator that reads files lazily keeps memory flat). 'CS' is required;
        a frame without it stops every live track ('missing_image'); without 'LNP'/'GFP' the means
        and spot counts are null.
    seeds : (N, 2) ndarray
        Frame-1 centres (y_px, x_px); track_id i + 1 starts at seeds[i].
    pixel_size_um : float
        Pixel edge length in um (sets the window, margin and every length in ``settings``).
    on_labels : callable, optional
        Called once per frame, in order, with the frame's label image (int32; pixel value = track_id of
        a reported track, 0 elsewhere; all zeros for a frame without CS image).

    Returns
    -------
    polars.DataFrame with :data:`FIELD_COLUMNS`, one row per (track, frame).
    """
    s = settings or TrackSettings()
    seeds = np.asarray(seeds, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(seeds).all():
        raise TrackingError("seeds contain NaN or infinite centres")
    tracker = FieldTracker(seeds, pixel_size_um, s)
    owed = 0  # frames without a CS image before the frame size was known
    for i, images in enumerate(frames, start=1):
        labels = tracker.step(i, images)
        if on_labels is None:
            continue
        if labels is None and tracker.shape is None:
            owed += 1
            continue
        shape = tracker.shape
        assert shape is not None  # labels come only with a CS image, which sets the shape
        for _ in range(owed):
            on_labels(np.zeros(shape, np.int32))
        owed = 0
        on_labels(np.zeros(shape, np.int32) if labels is None else labels)
    return tracker.finish()
