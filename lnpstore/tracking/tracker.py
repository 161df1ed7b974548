"""Window-based marker-controlled watershed tracking of cells in the CS channel (the published method).

For each frame, the CS image is smoothed once (Gaussian) and thresholded once (Otsu of the frame)
into a foreground. Each live cell is then segmented only inside a window
(``geometry_for(pixel_size_um).track_window_px``) centred on its previous centre:

* elevation: the negative smoothed CS intensity of the window (``elevation="intensity"``, the default):
  touching cells meet at a thin dim seam (the stain thins towards every membrane), which the flood
  follows; the dim nucleus is enclosed by the cell's own marker and cytoplasm, so it does not split it.
  "distance" (the foreground's distance transform) and "both" remain selectable: the distance map has a
  single peak in the middle of a 3-cell cluster and lets a bigger neighbour flood a smaller cell;
* markers: the cell's previous region eroded to its core (label 1), optionally moved by the
  motion-predicted displacement (``motion_damping``); the cores of every other live cell in the window
  (competing markers); and the window border (the outside marker). *Every visible cell has a marker*:
  a track that reaches the edge margin stops being reported but is followed on silently as a
  competitor, and the seeding detector (:func:`lnpstore.seeding.seeds_from_foreground`) runs on the
  frame's foreground (the whole field every ``new_peak_every_frames`` frames, on the frames between
  only on the blobs larger than their known cells' areas explain); its cells farther than ``new_peak_min_distance_um`` from every known
  cell's predicted centre (cells that entered the field, or were never seeded) are followed silently
  from then on. Without them, a tracked cell's region swallowed its unmarked neighbours, its centroid
  drifted and it swapped cells;
* mask: the foreground, so background pixels are never given to the cell.

The new centre is the centroid of the cell's region. A track stops when its centre comes within
``edge_margin_px`` of the field's edge ('edge': its last reported row; it is still followed as a
competitor), when its region is lost ('lost'), when the CS image of the next frame is missing
('missing_image'), or at the last frame ('end').

Quality flags: ``flag_jump`` (displacement beyond ``median + jump_mad_k * MAD`` of the field's
displacements, at least ``jump_floor_um``, or beyond ``jump_max_um``, or a centre farther than
``predicted_max_um`` from the motion-predicted one), ``flag_area`` (area ratio outside
``[1/area_ratio_max, area_ratio_max]``, overlap with the previous region below ``iou_min``, area above
``area_median_max`` times the track's running median or below it divided by ``area_median_max``, or more than ``core_taken_max`` of the cell's
marker lying on a neighbour's marker) and ``flag_lost``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import polars as pl

from lnpstore.instrument.geometry import geometry_for
from lnpstore.store.errors import TrackingError
from lnpstore.tracking.labels import LabelMovie
from lnpstore.tracking.seeding import (
    SeedSettings,
    fill_small_holes,
    foreground_threshold,
    seeds_from_foreground,
)
from lnpstore.tracking.spots import SpotSettings, count_spots

log = logging.getLogger(__name__)

NODE_ID_STRIDE = 100_000  # node_id = track_id * NODE_ID_STRIDE + frame, unique within a field
ROUND_UP_FRAMES = 6  # a division is looked for within this many frames of a mitotic round-up
ROUND_UP_AREA = 0.75  # round-up: area at most this fraction of the median area before it

#: Columns of :func:`track_field`'s result (the tracks table without plate, well, field, cell_uid).
FIELD_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "track_id": pl.Int32,
    "frame": pl.Int16,
    "node_id": pl.Int64,
    "parent_track_id": pl.Int32,
    "lineage_id": pl.Int32,
    "label_id": pl.Int32,
    "y_px": pl.Float64,
    "x_px": pl.Float64,
    "displacement_px": pl.Float64,
    "area_px": pl.Float64,
    "perimeter_px": pl.Float64,
    "eccentricity": pl.Float64,
    "solidity": pl.Float64,
    "mean_cs": pl.Float64,
    "mean_lnp": pl.Float64,
    "mean_gfp": pl.Float64,
    "lnp_spots": pl.Int32,
    "area_ratio": pl.Float64,
    "iou_prev": pl.Float64,
    "link_cost_px": pl.Float64,
    "gap_filled": pl.Boolean,
    "in_bounds": pl.Boolean,
    "flag_jump": pl.Boolean,
    "flag_area": pl.Boolean,
    "flag_lost": pl.Boolean,
    "stop_reason": pl.String,
}


ELEVATIONS = ("distance", "intensity", "both")


@dataclass(frozen=True)
class TrackSettings:
    """Settings of seeding and tracking; lengths in um (converted with the plate's pixel size).

    smoothing_sigma_um: Gaussian sigma of the CS smoothing (once per frame).
    The foreground (threshold method and factor, hole filling) is ``seeds``' (one definition of
    "cell pixel" for seeding and tracking).
    marker_radius_um: radius of the disc marker at a cell's seed (frame 1) or lost core.
    core_erosion_um, core_fraction: a cell's marker is the part of its previous region deeper than
        ``max(core_erosion_um, core_fraction * the region's largest depth)`` (its core: deeper than a
        frame's motion, and away from a neighbour the region may have leaked into).
    min_area_um2: a region smaller than this is 'lost'.
    new_peak_min_distance_um: a cell found by the seeding detector this far from every known cell's
        predicted centre becomes a silent competitor (a cell that was never seeded); 0 disables it.
    new_peak_every_frames: the seeding detector runs on the whole field every this many frames, and on
        the frames between only on the foreground blobs the known cells' areas do not explain (1: on
        the whole field every frame).
    new_peak_min_radius_um: unused (kept so saved settings load); the seeding detector's
        ``seeds.min_radius_um`` decides what is a cell.
    jump_mad_k, jump_floor_um, jump_max_um: the ``flag_jump`` rule (see the module docstring).
    area_ratio_max: ``flag_area`` when area / previous area is outside [1/max, max].
    iou_min: ``flag_area`` also when the overlap with the previous frame's region is below this.
    motion_damping: the cell's marker is moved by this times its last displacement (the motion-predicted
        position; velocity is persistent, so ~0.8 of it carries over); 0 keeps it in place.
    area_median_max, area_median_frames: ``flag_area`` when the area exceeds this times the median of the
        track's last ``area_median_frames`` areas (it took in a neighbour), or falls below that median
        divided by it (a neighbour took part of it, or the region stayed behind the cell); 0 disables.
    core_taken_max: ``flag_area`` when more than this fraction of the cell's marker lies on a neighbour's
        marker (two cells claim one place); 0 disables.
    predicted_max_um: ``flag_jump`` when the centre lies farther than this from the motion-predicted one;
        0 disables.
    edge_margin_um: a track stops ('edge') when its centre comes this close to the image's edge; None
        (the default) is the study's 96 px at 0.1625 um/px (15.6 um), 0 follows cells to the edge (for
        stacks scored against full ground truth, e.g. the Cell Tracking Challenge's).
    max_gap_frames: a cell whose region is lost for up to this many frames in a row is bridged by
        ``gap_filled`` nodes at its motion-predicted centre (no region, no label pixels) and goes on when
        its region is found again; a longer loss stops it ('lost', the bridging nodes dropped). 0: no gaps.
    report_new_cells: cells found after frame 1 (entering the field, or never seeded) become tracks of
        their own from the frame they are found in, instead of silent competitors (the study follows only
        frame-1 cells; a stack scored against full ground truth wants every cell). With it, a foreground
        blob that no track covers and that holds at least ``leftover_min_area_um2`` also becomes a track
        (mostly cells cut by the image's edge; 0 disables).
    division_min_fraction: a division is detected when the cell's region falls apart into two parts
        (or its marker reaches one part and an unmarked part covers its previous region), each at least
        this fraction of the cell's previous area; the track ends ('divided') and two daughter tracks
        begin. 0 disables; at most 0.5.
    """

    smoothing_sigma_um: float = 0.6
    elevation: str = "intensity"
    compactness: float = 0.0
    marker_radius_um: float = 1.0
    core_erosion_um: float = 3.0
    core_fraction: float = 0.5
    min_area_um2: float = 20.0
    new_peak_min_distance_um: float = 12.0
    new_peak_min_radius_um: float = 4.0
    new_peak_every_frames: float = 4.0
    jump_mad_k: float = 8.0
    jump_floor_um: float = 1.5
    jump_max_um: float = 6.0
    area_ratio_max: float = 1.5
    iou_min: float = 0.3
    motion_damping: float = 0.0
    area_median_max: float = 1.3
    area_median_frames: float = 10.0
    core_taken_max: float = 0.2
    predicted_max_um: float = 5.0
    division_min_fraction: float = 0.25
    edge_margin_um: float | None = None
    max_gap_frames: int = 1
    report_new_cells: bool = False
    leftover_min_area_um2: float = 5.0
    seeds: SeedSettings = field(default_factory=SeedSettings)
    spots: SpotSettings = field(default_factory=SpotSettings)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "elevation":
                if v not in ELEVATIONS:
                    raise TrackingError(f"TrackSettings.elevation must be one of {ELEVATIONS}, got {v!r}")
                continue
            if f.name in ("seeds", "spots"):
                want = SeedSettings if f.name == "seeds" else SpotSettings
                if not isinstance(v, want):
                    raise TrackingError(
                        f"TrackSettings.{f.name} must be a {want.__name__}, got {type(v).__name__}"
                    )
                continue
            if f.name == "edge_margin_um" and v is None:
                continue
            if f.name == "motion_damping" and not (isinstance(v, int | float) and 0 <= v <= 1):
                raise TrackingError(f"TrackSettings.motion_damping must be in [0, 1], got {v!r}")
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise TrackingError(f"TrackSettings.{f.name} must be a non-negative number, got {v!r}")
        if self.area_ratio_max <= 1:
            raise TrackingError(f"TrackSettings.area_ratio_max must be > 1, got {self.area_ratio_max}")
        if not 0 <= self.division_min_fraction <= 0.5:
            raise TrackingError(
                f"TrackSettings.division_min_fraction must be in [0, 0.5], got {self.division_min_fraction}"
            )
        if not 0 <= self.iou_min <= 1:
            raise TrackingError(f"TrackSettings.iou_min must be in [0, 1], got {self.iou_min}")
        if self.smoothing_sigma_um <= 0 or self.marker_radius_um <= 0:
            raise TrackingError("TrackSettings.smoothing_sigma_um and marker_radius_um must be positive")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_stain(cls, stain: str = "cytoplasm", **overrides) -> TrackSettings:
        """Settings for a stain. ``cytoplasm`` (CellTracker, the default): the elevation is the smoothed
        intensity (cells meet at a dim membrane seam) and holes up to ``seeds.max_hole_um2`` (the dim
        nucleus) are filled. ``nucleus`` (Hoechst, H2B-GFP, ...): the elevation is the distance transform
        plus the intensity ("both"; a nucleus is deepest and brightest at its centre, and two touching
        nuclei meet at a waist), and only holes up to 10 um^2 are filled (a nucleus has no dark core)."""
        if stain == "cytoplasm":
            return cls(**overrides)
        if stain == "nucleus":
            kw: dict = {"elevation": "both", "seeds": SeedSettings(max_hole_um2=10.0)}
            return cls(**{**kw, **overrides})
        raise TrackingError(f"unknown stain {stain!r}; choose cytoplasm or nucleus")

    @classmethod
    def from_dict(cls, d: Mapping) -> TrackSettings:
        d = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise TrackingError(f"unknown TrackSettings field(s) {sorted(unknown)}; known: {sorted(known)}")
        if isinstance(d.get("seeds"), Mapping):
            d["seeds"] = SeedSettings.from_dict(d["seeds"])
        if isinstance(d.get("spots"), Mapping):
            d["spots"] = SpotSettings(**d["spots"])
        return cls(**d)


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


def _iou(a: np.ndarray, ay: int, ax: int, b: np.ndarray, by: int, bx: int) -> float:
    """Intersection over union of two boolean masks placed at (ay, ax) and (by, bx) in one frame."""
    y0, x0 = max(ay, by), max(ax, bx)
    y1, x1 = min(ay + a.shape[0], by + b.shape[0]), min(ax + a.shape[1], bx + b.shape[1])
    inter = 0
    if y1 > y0 and x1 > x0:
        inter = int(
            np.count_nonzero(
                a[y0 - ay : y1 - ay, x0 - ax : x1 - ax] & b[y0 - by : y1 - by, x0 - bx : x1 - bx]
            )
        )
    union = int(a.sum()) + int(b.sum()) - inter
    return inter / union if union else 0.0


class _FieldTracker:
    """State of one field's tracking; fed one frame at a time (never holds the movie)."""

    def __init__(self, seeds: np.ndarray, pixel_size_um: float, settings: TrackSettings):
        from scipy import ndimage as ndi  # noqa: F401 - imported once here for the workers

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
        self.marker = self.marker_disc  # (used for the minimum core size)
        self.core_erosion_px = settings.core_erosion_um / self.px
        self.tracks = [_Track(i + 1, float(y), float(x)) for i, (y, x) in enumerate(seeds)]
        self.silent: list[_Track] = []  # cells found after frame 1 (never seeded): competitors only
        self.shape: tuple[int, int] | None = None
        self.next_id = len(self.tracks) + 1  # daughters of divisions get the next free track ids
        self.label_frame: np.ndarray | None = None  # this frame's label image (reported tracks)

    # -- one frame --------------------------------------------------------------------------------
    def step(self, frame: int, images: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """Segment every live cell in this frame; returns the frame's label image (int32, pixel value =
        the track_id of a reported track, 0 elsewhere), or None when the frame has no CS image."""
        from scipy import ndimage as ndi

        live = [t for t in self.tracks if t.alive] + [t for t in self.silent if t.alive]
        cs = images.get("CS")
        if cs is None:
            for t in live:
                self._stop(t, "missing_image")
            self.silent = []
            return None
        cs = np.asarray(cs)
        if cs.ndim != 2:
            raise TrackingError(f"frame {frame}: the CS image must be 2-D, got shape {cs.shape}")
        if self.shape is None:
            self.shape = cs.shape
        elif cs.shape != self.shape:
            raise TrackingError(f"frame {frame}: CS image has shape {cs.shape}, frame 1 had {self.shape}")
        self.label_frame = np.zeros(cs.shape, np.int32)
        if not any(t.report for t in live):
            return self.label_frame
        smoothed = ndi.gaussian_filter(cs.astype(np.float32), self.sigma_px)
        self.thr = foreground_threshold(
            smoothed, self.s.seeds.threshold_factor, method=self.s.seeds.threshold_method
        )
        fg = fill_small_holes(smoothed > self.thr, self.max_hole_px)
        if not fg.any() or fg.all():
            log.warning(
                "frame %d: the CS image has no cell pixels (an empty, saturated or flat image?): its cells "
                "are bridged for up to %d frame(s), then stop as 'lost'",
                frame,
                int(self.s.max_gap_frames),
            )
        if frame > 1 and self.s.new_peak_min_distance_um > 0:
            live += self._new_cells(fg, live, frame)
        cores = [self._core(t) for t in live]  # every live cell's marker from the previous frame
        for i, t in enumerate(live):
            self._segment(t, frame, images, cs, smoothed, fg, live, cores, i)
        self.silent = [t for t in self.silent if t.alive]
        if self.s.report_new_cells and self.s.leftover_min_area_um2 > 0:
            self._leftover_cells(frame, fg, images, cs)
        return self.label_frame

    def _leftover_cells(self, frame: int, fg: np.ndarray, images: Mapping[str, np.ndarray], cs) -> None:
        """New tracks for foreground blobs that no track's region touches in this frame and that hold at
        least ``leftover_min_area_um2`` (cells the seeding detector misses: mostly cells cut by the image
        edge, too thin for a distance-transform peak)."""
        from scipy import ndimage as ndi

        lab, n = ndi.label(fg)
        if n == 0:
            return
        taken = np.zeros(n + 1, bool)
        taken[np.unique(lab[self.label_frame > 0])] = True
        for t in self.tracks + self.silent:  # silent competitors' regions are cells too
            if t.alive and not t.report and t.mask is not None:
                sub = lab[t.mask_y0 : t.mask_y0 + t.mask.shape[0], t.mask_x0 : t.mask_x0 + t.mask.shape[1]]
                taken[np.unique(sub[t.mask[: sub.shape[0], : sub.shape[1]]])] = True
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        min_px = self.s.leftover_min_area_um2 / self.px**2
        for j, sl in enumerate(ndi.find_objects(lab), start=1):
            if sl is None or taken[j] or sizes[j] < min_px:
                continue
            crop = lab[sl] == j
            y0, x0 = sl[0].start, sl[1].start
            rows, cols = np.nonzero(crop)
            d = _Track(self.next_id, float(rows.mean()) + y0, float(cols.mean()) + x0)
            self.next_id += 1
            d.rows.append(self._node(d, frame, crop, crop, (y0, x0), (y0, x0), images, cs))
            self._moved(d, crop, y0, x0)
            self.tracks.append(d)

    def _new_cells(self, fg: np.ndarray, live: list[_Track], frame: int) -> list[_Track]:
        """Cells of this frame (the seeding detector on its foreground) far from every known cell's
        predicted centre: cells that entered the field or were never seeded. They become silent
        competitors, so a tracked cell's region cannot swallow them.

        The detector runs on the whole foreground every ``new_peak_every_frames`` frames (frames 2,
        2 + k, ...); on the frames between, only on the foreground blobs the known cells do not explain
        (see :meth:`_unexplained`), which is where a cell can have appeared."""
        k = max(1, int(self.s.new_peak_every_frames))
        oy = ox = 0
        if k > 1 and (frame - 2) % k:
            part = self._unexplained(fg, live)
            if part is None:
                return []
            sub, oy, ox = part
        else:
            sub = fg
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
        if self.s.report_new_cells:  # tracked and reported from the frame they were found in
            new = []
            for (y, x), (mask, ry, rx) in zip(found, regions, strict=True):
                # its detector region is its marker's source, as a tracked cell's previous region is
                # (a small disc at the centroid of a cell entering at the image's edge lost the flood to
                # the neighbours' deep cores)
                t = _Track(self.next_id, float(y), float(x), mask=mask, mask_y0=ry + oy, mask_x0=rx + ox)
                t.area = float(mask.sum())
                new.append(t)
                self.next_id += 1
            self.tracks += new
            return new
        new = [_Track(0, float(y), float(x), report=False) for y, x in found]
        self.silent += new
        return new

    def _unexplained(self, fg: np.ndarray, live: list[_Track]) -> tuple[np.ndarray, int, int] | None:
        """The foreground blobs larger than the known cells inside them explain (their recent median
        areas, times 1.25, plus the seeding detector's minimum cell area): a blob with no known cell,
        or a cluster that a new cell joined. As (mask of those blobs, row, column) cropped to their
        bounding box with a one-pixel background margin (the same distance transform as on the whole
        field), or None when every blob is explained."""
        from scipy import ndimage as ndi

        lab, n = ndi.label(fg)
        if n == 0:
            return None
        area = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
        known = np.zeros(n + 1)
        h, w = fg.shape
        for t in live:
            py, px_ = self._predicted(t)
            iy, ix = min(max(int(round(py)), 0), h - 1), min(max(int(round(px_)), 0), w - 1)
            j = lab[iy, ix]
            if j:
                recent = t.areas[-int(max(1, self.s.area_median_frames)) :]
                known[j] += float(np.median(recent)) if recent else np.inf
        slack = self.s.seeds.min_area_um2 / self.px**2
        ids = np.flatnonzero(area > 1.25 * known + slack)
        ids = ids[ids > 0]
        if not len(ids):
            return None
        sel = np.isin(lab, ids)
        rows, cols = np.nonzero(sel.any(1))[0], np.nonzero(sel.any(0))[0]
        y0, y1 = max(0, int(rows[0]) - 1), min(h, int(rows[-1]) + 2)
        x0, x1 = max(0, int(cols[0]) - 1), min(w, int(cols[-1]) + 2)
        return sel[y0:y1, x0:x1], y0, x0

    def _predicted(self, t: _Track) -> tuple[float, float]:
        k = self.s.motion_damping
        return t.y + k * t.vy, t.x + k * t.vx

    def _core(self, t: _Track) -> tuple[np.ndarray, int, int]:
        """The cell's marker: its previous region eroded by ``core_erosion_um`` (a disc at the centre
        for frame 1 or a region too thin to erode), as (bool mask, row, column) in frame coordinates."""
        from scipy import ndimage as ndi

        if t.mask is not None:
            d = ndi.distance_transform_edt(np.pad(t.mask, 1))[1:-1, 1:-1]
            core = d > max(self.core_erosion_px, self.s.core_fraction * float(d.max()))
            if core.sum() >= len(self.marker):
                k = self.s.motion_damping
                return core, t.mask_y0 + int(round(k * t.vy)), t.mask_x0 + int(round(k * t.vx))
        r = self.marker_r
        py, px_ = self._predicted(t)
        cy, cx = int(round(py)), int(round(px_))
        return self.marker_disc, cy - r, cx - r

    def _segment(
        self,
        t: _Track,
        frame: int,
        images: Mapping[str, np.ndarray],
        cs: np.ndarray,
        smoothed: np.ndarray,
        fg: np.ndarray,
        live: list[_Track],
        cores: list[tuple[np.ndarray, int, int]],
        me: int,
    ) -> None:
        from scipy import ndimage as ndi
        from skimage.segmentation import watershed

        h, w = fg.shape
        cy, cx = int(round(t.y)), int(round(t.x))
        hy, hx = self._half_window(t, cy, cx)
        y0, y1 = max(0, cy - hy), min(h, cy + hy)
        x0, x1 = max(0, cx - hx), min(w, cx + hx)
        if y1 - y0 < 3 or x1 - x0 < 3:
            self._stop(t, "lost")
            return
        win = fg[y0:y1, x0:x1]
        markers = np.zeros(win.shape, np.int32)
        # Outside marker: the window border (label 2), except where it is the image's edge (a cell cut
        # by the image edge is still one cell). Neighbours: 3, 4, ... The cell itself: 1, painted last.
        if y0 > 0:
            markers[0, :] = 2
        if y1 < h:
            markers[-1, :] = 2
        if x0 > 0:
            markers[:, 0] = 2
        if x1 < w:
            markers[:, -1] = 2
        label = 3
        centres = []
        for j, (core, ry, rx) in enumerate(cores):
            if j == me:
                continue
            if self._paint_mask(markers, core, ry - y0, rx - x0, label):
                centres.append((live[j].y - y0, live[j].x - x0))
                label += 1
        core, ry, rx = cores[me]
        own = np.zeros(win.shape, bool)
        self._paint_mask(own, core, ry - y0, rx - x0, True)
        own &= win
        if not own.any():
            near = self._own_marker(win, np.array([t.y - y0, t.x - x0]))
            if near is None:
                self._lose(t, frame, cs.shape)
                return
            self._paint_mask(own, self.marker_disc, near[0] - self.marker_r, near[1] - self.marker_r, True)
        n_own = int(np.count_nonzero(own))
        core_taken = int(np.count_nonzero(markers[own] >= 3)) / n_own if n_own else 0.0
        markers[own] = 1
        markers[~win] = 0
        # The intensity elevation needs no distance transform (computed only for "distance"/"both").
        # A cell with no previous region (frame 1, or a lost core) has a small disc marker at its
        # centre, which lies in the dim nucleus: on the intensity its flood stays in the nucleus while
        # the neighbours' and the border's floods take the bright cytoplasm around it. Its region is
        # found as the seeds were, on the foreground's distance transform (peak at the cell's centre).
        disc = core is self.marker_disc
        elev = None
        if self.s.elevation != "intensity" or disc:
            dist = ndi.distance_transform_edt(win).astype(np.float32)
            elev = -dist if self.s.elevation == "distance" or disc else -dist / max(float(dist.max()), 1e-6)
        if self.s.elevation != "distance" and not disc:
            sm = smoothed[y0:y1, x0:x1]
            inten = (sm - self.thr) / max(float(sm[win].max() - self.thr), 1e-6) if win.any() else sm * 0
            elev = -inten if elev is None else elev - inten
        lab = watershed(elev, markers, mask=win, compactness=self.s.compactness)
        region = lab == 1
        area = float(np.count_nonzero(region))
        if area < self.min_area_px:
            self._lose(t, frame, cs.shape)
            return
        t.gap = 0
        rows, cols = np.nonzero(region)
        ry0, rx0 = int(rows.min()), int(cols.min())
        crop = region[ry0 : rows.max() + 1, rx0 : cols.max() + 1]
        ny, nx = float(rows.mean()) + y0, float(cols.mean()) + x0
        if not t.report:  # a silent competitor: only its region (the next frame's marker) matters
            if t.areas:
                t.vy, t.vx = ny - t.y, nx - t.x
            t.areas.append(area)
            t.y, t.x, t.area = ny, nx, area
            t.mask, t.mask_y0, t.mask_x0 = crop, y0 + ry0, x0 + rx0
            return
        if t.rows and self.s.division_min_fraction > 0:
            parts = self._division_parts(lab, region, win, t, y0, x0)
            if parts is not None:
                self._divide(t, frame, parts, y0, x0, images, cs)
                return
        disp = math.hypot(ny - t.y, nx - t.x) if t.rows else None
        my0, mx0 = y0 + ry0, x0 + rx0
        s = self.s
        py, px_ = self._predicted(t)
        link_cost = math.hypot(ny - py, nx - px_) if t.rows else None
        off_pred = bool(t.rows) and s.predicted_max_um > 0 and link_cost > s.predicted_max_um / self.px
        recent = t.areas[-int(s.area_median_frames) :] if s.area_median_frames >= 1 else []
        med_area = float(np.median(recent)) if recent else 0.0
        # Grown above the running median (took in a neighbour), or shrunk below it by the same factor
        # (a neighbour took part of it, or the region stayed behind while the cell moved on).
        grown = (
            bool(recent)
            and s.area_median_max > 0
            and not (med_area / s.area_median_max <= area <= s.area_median_max * med_area)
        )
        taken = bool(t.rows) and s.core_taken_max > 0 and core_taken > s.core_taken_max
        iou = _iou(t.mask, t.mask_y0, t.mask_x0, crop, my0, mx0) if t.mask is not None else None
        t.rows.append(
            self._node(
                t,
                frame,
                region,
                crop,
                (y0, x0),
                (my0, mx0),
                images,
                cs,
                displacement_px=disp,
                area_ratio=area / t.area if t.area else None,
                iou_prev=iou,
                link_cost_px=link_cost,
                flag_jump=off_pred,
                flag_area=bool(grown or taken),
            )
        )
        if t.rows[:-1]:
            t.vy, t.vx = ny - t.y, nx - t.x
        self._moved(t, crop, my0, mx0)

    def _moved(self, t: _Track, crop: np.ndarray, my0: int, mx0: int) -> None:
        """Update a reported track's state after its node was recorded (centre, area, region)."""
        area = float(np.count_nonzero(crop))
        t.areas.append(area)
        t.y, t.x, t.area = t.rows[-1]["y_px"], t.rows[-1]["x_px"], area
        t.mask, t.mask_y0, t.mask_x0 = crop, my0, mx0
        if not t.rows[-1]["in_bounds"]:  # not reported any more, but followed on as a competitor
            t.rows[-1]["stop_reason"] = "edge"
            t.report = False

    def _node(
        self,
        t: _Track,
        frame: int,
        region: np.ndarray,
        crop: np.ndarray,
        win_origin: tuple[int, int],
        crop_origin: tuple[int, int],
        images: Mapping[str, np.ndarray],
        cs: np.ndarray,
        **links,
    ) -> dict:
        """One row of the tracks table for ``t`` at ``frame``: ``region`` is the cell's mask in the window
        at ``win_origin`` (row, column), ``crop`` the same mask cut to its bounding box at
        ``crop_origin``; ``links`` the link columns. Paints the region into the frame's label image."""
        from skimage.measure import regionprops

        y0, x0 = win_origin
        wy, wx = region.shape
        props = regionprops(crop.astype(np.uint8))[0]
        rows, cols = np.nonzero(region)
        ny, nx = float(rows.mean()) + y0, float(cols.mean()) + x0

        def mean_of(ch: str) -> float | None:
            img = images.get(ch)
            return None if img is None else float(np.asarray(img)[y0 : y0 + wy, x0 : x0 + wx][region].mean())

        lnp = images.get("LNP")
        spots = (
            None
            if lnp is None
            else count_spots(
                np.asarray(lnp)[y0 : y0 + wy, x0 : x0 + wx],
                region,
                pixel_size_um=self.px,
                settings=self.s.spots,
            )
        )
        e = self.edge_px
        h, w = cs.shape
        in_bounds = bool(e <= ny <= h - 1 - e and e <= nx <= w - 1 - e)
        if self.label_frame is not None:  # first come, first served: labels never overlap
            cy0, cx0 = crop_origin
            sub = self.label_frame[cy0 : cy0 + crop.shape[0], cx0 : cx0 + crop.shape[1]]
            sub[crop & (sub == 0)] = t.track_id
        return {
            "track_id": t.track_id,
            "frame": frame,
            "node_id": t.track_id * NODE_ID_STRIDE + frame,
            "parent_track_id": t.parent_track_id,
            "lineage_id": t.lineage_id,
            "label_id": t.track_id,
            "y_px": ny,
            "x_px": nx,
            "displacement_px": links.get("displacement_px"),
            "area_px": float(np.count_nonzero(crop)),
            "perimeter_px": float(props.perimeter),
            "eccentricity": float(props.eccentricity),
            "solidity": float(props.solidity),
            "mean_cs": float(cs[y0 : y0 + wy, x0 : x0 + wx][region].mean()),
            "mean_lnp": mean_of("LNP"),
            "mean_gfp": mean_of("GFP"),
            "lnp_spots": spots,
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

    def _division_parts(
        self, lab: np.ndarray, region: np.ndarray, win: np.ndarray, t: _Track, y0: int, x0: int
    ) -> list[np.ndarray] | None:
        """The two daughters' masks (in window coordinates) when cell ``t`` divided in this frame, else None.

        Either the cell's own region falls apart into two parts, or its marker reached one daughter
        while the other is foreground left unmarked (or taken by the window border's outside marker)
        that lies mostly on the cell's previous region, and the cell's region shrank to match. Each
        daughter must hold ``division_min_fraction`` of the cell's previous area."""
        from scipy import ndimage as ndi

        frac = self.s.division_min_fraction
        min_part = max(self.min_area_px, frac * float(t.area or 0.0))
        comp, n = ndi.label(region)
        if n >= 2:
            sizes = np.bincount(comp.ravel())[1:]
            order = np.argsort(sizes)[::-1]
            a, b = comp == order[0] + 1, comp == order[1] + 1
            if sizes[order[1]] < min_part:
                return None
            fg_parts, _ = ndi.label(win)  # daughters must lie on separate foreground blobs (a gap between)
            return None if np.isin(fg_parts[a], fg_parts[b]).any() else [a, b]
        if self._rounded_up(t):
            two = self._two_blobs(region, min_part)
            if two is not None:
                return two
        if t.mask is None or np.count_nonzero(region) > (1 - frac) * float(t.area or 0.0):
            return None
        prev = np.zeros(win.shape, bool)
        self._paint_mask(prev, t.mask, t.mask_y0 - y0, t.mask_x0 - x0, True)
        fg_parts, _ = ndi.label(win)
        free = win & ((lab == 0) | (lab == 2)) & ~np.isin(fg_parts, fg_parts[region])
        comp, n = ndi.label(free)
        if n == 0:
            return None
        sizes = np.bincount(comp.ravel(), minlength=n + 1)
        on_prev = np.bincount(comp[prev].ravel(), minlength=n + 1)
        on_prev[0] = 0
        ok = np.flatnonzero((sizes >= min_part) & (on_prev >= 0.5 * sizes))
        ok = ok[ok > 0]
        if not len(ok):
            return None
        return [region, comp == ok[np.argmax(on_prev[ok])]]

    def _rounded_up(self, t: _Track) -> bool:
        """Whether ``t`` went through a mitotic round-up just before this frame: in its last
        ``ROUND_UP_FRAMES`` frames its area fell to at most ``ROUND_UP_AREA`` of its median before.
        Cells round up before they divide; without this test an irregular cell with a waist would be
        taken for two daughters."""
        a = t.areas
        k = ROUND_UP_FRAMES
        if len(a) < k + 3:
            return False
        before = float(np.median(a[-(k + 10) : -k]))
        return min(a[-k:]) <= ROUND_UP_AREA * before

    def _two_blobs(self, region: np.ndarray, min_part: float) -> list[np.ndarray] | None:
        """``region`` split in two at its two deepest distance-transform peaks when it is two blobs with
        a waist (its solidity below ``seeds.merge_solidity``), each part at least ``min_part`` px."""
        from scipy import ndimage as ndi
        from skimage.feature import peak_local_max
        from skimage.measure import regionprops
        from skimage.segmentation import watershed

        rows, cols = np.nonzero(region)
        y0, x0 = int(rows.min()), int(cols.min())
        sub = region[y0 : rows.max() + 1, x0 : cols.max() + 1]
        if regionprops(sub.astype(np.uint8))[0].solidity >= self.s.seeds.merge_solidity:
            return None
        dist = ndi.gaussian_filter(ndi.distance_transform_edt(np.pad(sub, 1))[1:-1, 1:-1], 1.0)
        peaks = peak_local_max(
            dist,
            min_distance=max(1, int(round(self.s.seeds.min_cell_distance_um / self.px))),
            threshold_abs=self.s.seeds.min_radius_um / self.px,
            num_peaks=2,
            exclude_border=False,
        )
        if len(peaks) < 2:
            return None
        markers = np.zeros(sub.shape, np.int32)
        markers[peaks[:, 0], peaks[:, 1]] = (1, 2)
        ws = watershed(-dist, markers, mask=sub)
        parts = []
        for k in (1, 2):
            m = np.zeros(region.shape, bool)
            m[y0 : y0 + sub.shape[0], x0 : x0 + sub.shape[1]] = ws == k
            if np.count_nonzero(m) < min_part:
                return None
            parts.append(m)
        return parts

    def _divide(
        self,
        t: _Track,
        frame: int,
        parts: list[np.ndarray],
        y0: int,
        x0: int,
        images: Mapping[str, np.ndarray],
        cs: np.ndarray,
    ) -> None:
        """End ``t`` ('divided', at its previous frame) and start one daughter track per part at ``frame``."""
        prev = (t.mask, t.mask_y0, t.mask_x0, t.area)
        self._stop(t, "divided")
        for part in parts:
            rows, cols = np.nonzero(part)
            ry0, rx0 = int(rows.min()), int(cols.min())
            crop = part[ry0 : rows.max() + 1, rx0 : cols.max() + 1]
            my0, mx0 = y0 + ry0, x0 + rx0
            d = _Track(
                self.next_id,
                float(rows.mean()) + y0,
                float(cols.mean()) + x0,
                parent_track_id=t.track_id,
                lineage_id=t.lineage_id,
            )
            self.next_id += 1
            area = float(np.count_nonzero(crop))
            d.rows.append(
                self._node(
                    d,
                    frame,
                    part,
                    crop,
                    (y0, x0),
                    (my0, mx0),
                    images,
                    cs,
                    area_ratio=area / prev[3] if prev[3] else None,
                    iou_prev=_iou(prev[0], prev[1], prev[2], crop, my0, mx0) if prev[0] is not None else None,
                )
            )
            self._moved(d, crop, my0, mx0)
            self.tracks.append(d)

    def _half_window(self, t: _Track, cy: int, cx: int) -> tuple[int, int]:
        """Half the window's height and width in px: the study's window, grown where needed so that the
        cell's previous region plus a frame's largest motion (``jump_max_um``) fits inside it.

        Why: a cell nearly as large as the window (HepG2 spread to 25 um in a 32.5 um window) touches
        the window's edge, and the outside marker placed there floods part of the cell itself."""
        hy = hx = self.half
        if t.mask is not None:
            margin = int(math.ceil(self.s.jump_max_um / self.px))
            my0, mx0 = t.mask_y0, t.mask_x0
            my1, mx1 = my0 + t.mask.shape[0], mx0 + t.mask.shape[1]
            hy = max(hy, max(cy - my0, my1 - cy) + margin)
            hx = max(hx, max(cx - mx0, mx1 - cx) + margin)
        return hy, hx

    def _own_marker(self, win: np.ndarray, own: np.ndarray) -> np.ndarray | None:
        """The previous centre, or the nearest foreground pixel within the marker radius * 4."""
        iy, ix = int(round(own[0])), int(round(own[1]))
        iy, ix = min(max(iy, 0), win.shape[0] - 1), min(max(ix, 0), win.shape[1] - 1)
        if win[iy, ix]:
            return np.array([iy, ix])
        r = int(math.ceil(4 * self.s.marker_radius_um / self.px))
        ys, xs = slice(max(0, iy - r), iy + r + 1), slice(max(0, ix - r), ix + r + 1)
        pts = np.argwhere(win[ys, xs])
        if len(pts) == 0:
            return None
        pts = pts + (ys.start, xs.start)
        return pts[np.argmin(((pts - (iy, ix)) ** 2).sum(1))]

    @staticmethod
    def _paint_mask(target: np.ndarray, mask: np.ndarray, y0: int, x0: int, value) -> bool:
        """Set ``target[y0:, x0:][mask] = value`` where they overlap; whether anything was painted."""
        ty0, tx0 = max(0, y0), max(0, x0)
        ty1, tx1 = min(target.shape[0], y0 + mask.shape[0]), min(target.shape[1], x0 + mask.shape[1])
        if ty1 <= ty0 or tx1 <= tx0:
            return False
        sub = mask[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0]
        if not sub.any():
            return False
        target[ty0:ty1, tx0:tx1][sub] = value
        return True

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
        node = {c: None for c in FIELD_COLUMNS}
        node.update(
            track_id=t.track_id,
            frame=frame,
            node_id=t.track_id * NODE_ID_STRIDE + frame,
            parent_track_id=t.parent_track_id,
            lineage_id=t.lineage_id,
            y_px=py,
            x_px=px_,
            displacement_px=math.hypot(py - t.y, px_ - t.x),
            in_bounds=in_bounds,
            gap_filled=True,
            flag_jump=False,
            flag_area=False,
            flag_lost=True,
        )
        t.rows.append(node)
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
        for t in self.tracks:
            if t.alive and t.report:
                self._stop(t, "end")
        rows = [r for t in self.tracks for r in t.rows]
        df = (
            pl.DataFrame(rows, schema=FIELD_COLUMNS, orient="row")
            if rows
            else pl.DataFrame(schema=FIELD_COLUMNS)
        )
        return add_quality_flags(df, pixel_size_um=self.px, settings=self.s)


def add_quality_flags(df: pl.DataFrame, *, pixel_size_um: float, settings: TrackSettings) -> pl.DataFrame:
    """Set ``flag_jump`` and ``flag_area`` from the field's displacement distribution and area ratios."""
    s = settings
    d = df.get_column("displacement_px").drop_nulls()
    if d.len():
        med = float(d.median())
        mad = float((d - med).abs().median()) * 1.4826
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
    tracker = _FieldTracker(seeds, pixel_size_um, s)
    owed = 0  # frames without a CS image before the frame size was known
    for i, images in enumerate(frames, start=1):
        labels = tracker.step(i, images)
        if on_labels is None:
            continue
        if labels is None and tracker.shape is None:
            owed += 1
            continue
        for _ in range(owed):
            on_labels(np.zeros(tracker.shape, np.int32))
        owed = 0
        on_labels(np.zeros(tracker.shape, np.int32) if labels is None else labels)
    return tracker.finish()


def track_stack(
    stack,
    *,
    seeds=None,
    pixel_size_um: float,
    settings: TrackSettings | None = None,
    labels_out: str | Path | None = None,
) -> tuple[pl.DataFrame, np.ndarray | LabelMovie]:
    """Track the cells of any time-lapse: one channel, frames in time order; the plate tracker's code path.

    Parameters
    ----------
    stack : (T, Y, X) array, or a sequence / iterable of (Y, X) arrays (read lazily, frame 1 first)
        The stained channel (cytoplasm or nucleus; see :meth:`TrackSettings.for_stain`).
    seeds : None, (N, 2) array of (y_px, x_px), or a 2-D integer label image of frame 1
        None: the automatic seeder on frame 1; a label image: the centroid of each label.
    pixel_size_um : float
        Pixel edge length in um (every length in ``settings`` is in um).
    labels_out : path, optional
        Write the label movie there (uint16 TIFF, one page per frame, written frame by frame) and return
        it as a lazy :class:`lnpstore.labels.LabelMovie`; without it the labels come back in memory.

    Returns
    -------
    (tracks, labels): the tracks as a polars DataFrame (:data:`FIELD_COLUMNS`, one row per node) and the
    label images (T x Y x X, pixel = track_id).
    """
    from lnpstore.tracking.labels import LabelMovie, LabelMovieWriter
    from lnpstore.tracking.seeding import auto_seeds

    s = settings or TrackSettings()
    if not (isinstance(pixel_size_um, int | float) and pixel_size_um > 0):
        raise TrackingError(f"pixel_size_um must be a positive number of um, got {pixel_size_um!r}")
    if isinstance(stack, np.ndarray) and stack.ndim != 3:
        raise TrackingError(f"a stack must be T x Y x X (3-D), got shape {stack.shape}")
    frames = iter(stack)
    try:
        first = np.asarray(next(frames))
    except StopIteration:
        raise TrackingError("the stack has no frames") from None
    if first.ndim != 2:
        raise TrackingError(f"frame 1 must be a 2-D image, got shape {first.shape}")
    seeds = _resolve_seeds(seeds, first, pixel_size_um, s)
    if seeds is None:
        seeds = auto_seeds(first, pixel_size_um=pixel_size_um, settings=s.seeds)
    if len(seeds) == 0:
        raise TrackingError(
            "no cells to track: the seeder found none in frame 1 (is frame 1 empty, or is the stain's "
            "signal below the threshold?). Hint: give seeds as a CSV of centres or a label image"
        )

    def all_frames():
        yield {"CS": first}
        for i, f in enumerate(frames, start=2):
            f = np.asarray(f)
            if f.shape != first.shape:
                raise TrackingError(f"frame {i} has shape {f.shape}, frame 1 has {first.shape}")
            yield {"CS": f}

    if labels_out is None:
        kept: list[np.ndarray] = []
        tracks = track_field(
            all_frames(),
            seeds,
            pixel_size_um=pixel_size_um,
            settings=s,
            on_labels=lambda lab: kept.append(lab.astype(np.uint16)),
        )
        return tracks, np.stack(kept)
    with LabelMovieWriter(labels_out) as w:
        tracks = track_field(all_frames(), seeds, pixel_size_um=pixel_size_um, settings=s, on_labels=w.write)
    return tracks, LabelMovie(labels_out)


def _resolve_seeds(seeds, first: np.ndarray, pixel_size_um: float, s: TrackSettings) -> np.ndarray | None:
    """(N, 2) centres from an array of centres or a frame-1 label image; None for automatic seeds.
    A seed that lies on no foreground pixel of frame 1 is an error naming it."""
    from scipy import ndimage as ndi

    from lnpstore.tracking.seeding import foreground_mask

    if seeds is None:
        return None
    arr = np.asarray(seeds)
    if arr.ndim == 2 and arr.shape == first.shape and arr.shape[1] != 2:
        if not np.issubdtype(arr.dtype, np.integer):
            raise TrackingError(f"a seed label image must hold integers, got dtype {arr.dtype}")
        ids = np.unique(arr[arr > 0])
        if not len(ids):
            raise TrackingError("the seed label image has no labels (all zero)")
        return np.array(ndi.center_of_mass(arr > 0, arr, ids), dtype=np.float64).reshape(-1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise TrackingError(
            f"seeds must be (N, 2) centres (y_px, x_px) or a label image of frame 1's shape {first.shape}, "
            f"got shape {arr.shape}"
        )
    arr = arr.astype(np.float64)
    h, w = first.shape
    fg = foreground_mask(first, pixel_size_um, s.seeds)
    for i, (y, x) in enumerate(arr):
        iy, ix = int(round(y)), int(round(x))
        if not (0 <= iy < h and 0 <= ix < w):
            raise TrackingError(f"seed {i + 1} at (y={y:.1f}, x={x:.1f}) px lies outside the {h} x {w} image")
        r = max(1, int(round(4 * s.marker_radius_um / pixel_size_um)))
        if not fg[max(0, iy - r) : iy + r + 1, max(0, ix - r) : ix + r + 1].any():
            raise TrackingError(
                f"seed {i + 1} at (y={y:.1f}, x={x:.1f}) px lies outside every cell of frame 1 (no "
                "foreground within 4 marker radii). Hint: check the seed's (y, x) order and units (px)"
            )
    return arr


# -- the stage ------------------------------------------------------------------------------------
TRACK_CHANNELS = ("CS", "LNP", "GFP")


@dataclass
class TrackReport:
    """What :func:`track_plate` did."""

    plate: str
    fields_tracked: int = 0
    fields_skipped: int = 0
    fields_excluded: int = 0
    fields_without_seeds: list[tuple[str, int]] = field(default_factory=list)
    tracks: int = 0
    nodes: int = 0
    seconds: float = 0.0

    @property
    def cell_frames_per_s(self) -> float:
        return self.nodes / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"tracked {self.fields_tracked} field(s) of plate {self.plate} ({self.tracks} tracks, {self.nodes} "
            f"cell-frames, {self.cell_frames_per_s:.0f} cell-frames/s); skipped {self.fields_skipped} already "
            f"tracked, {self.fields_excluded} in excluded wells; {len(self.fields_without_seeds)} without seeds"
        )


def _read_image(path: str | None, where: str):
    import tifffile

    if path is None:
        return None
    try:
        return tifffile.imread(path)
    except Exception as exc:  # tifffile raises several types for damaged files
        raise TrackingError(
            f"{where}: cannot read {path} ({exc!r}). Hint: re-run `lnpstore ingest` to re-check the images"
        ) from None


def _lazy_frames(job: dict, first_cs=None) -> Iterable[dict[str, np.ndarray]]:
    """One frame's images at a time, read from the paths in ``job['frames']``."""
    where = f"plate {job['plate']}, well {job['well']}, field {job['field']}"
    for i, paths in enumerate(job["frames"], start=1):
        images = {}
        for ch in TRACK_CHANNELS:
            if ch == "CS" and i == 1 and first_cs is not None:
                images[ch] = first_cs
                continue
            img = _read_image(paths.get(ch), f"{where}, frame {i}, channel {ch}")
            if img is not None:
                images[ch] = img
        yield images


def track_field_job(job: dict) -> dict:
    """Seed and track one field from image paths; a picklable unit of work for the Executor.

    ``job``: plate, well, field, pixel_size_um, settings (TrackSettings.to_dict()), seeds ((N, 2)
    array, or None for automatic seeds) and frames (list, frame 1 first, of {channel: path or None}).
    Returns the job's keys plus ``seeds`` ((N, 2) array), ``source`` and ``tracks`` (track_field's frame).
    """
    settings = TrackSettings.from_dict(job["settings"])
    px = float(job["pixel_size_um"])
    first_cs = None
    seeds = job.get("seeds")
    if seeds is None:
        where = f"plate {job['plate']}, well {job['well']}, field {job['field']}, frame 1, channel CS"
        first_cs = _read_image(job["frames"][0].get("CS"), where) if job["frames"] else None
        from lnpstore.tracking.seeding import auto_seeds

        seeds = (
            np.zeros((0, 2))
            if first_cs is None
            else auto_seeds(first_cs, pixel_size_um=px, settings=settings.seeds)
        )
    seeds = np.asarray(seeds, dtype=np.float64).reshape(-1, 2)
    frames = _lazy_frames(job, first_cs)
    labels_path = job.get("labels_path")
    movie = None
    if labels_path is None or len(seeds) == 0:
        tracks = track_field(frames, seeds, pixel_size_um=px, settings=settings)
    else:
        from lnpstore.tracking.labels import LabelMovieWriter

        with LabelMovieWriter(labels_path) as w:
            tracks = track_field(frames, seeds, pixel_size_um=px, settings=settings, on_labels=w.write)
        movie = {"path": str(labels_path), "n_frames": w.n_frames, "shape": w.shape}
    return {
        "plate": job["plate"],
        "well": job["well"],
        "field": job["field"],
        "seeds": seeds,
        "tracks": tracks,
        "labels": movie,
    }


def labels_path_for(store, plate: str, well: str, field_: int) -> Path:
    """Where :func:`track_plate` writes a field's label movie: ``STORE/labels/PLATE/WELL/fFFF.tif``."""
    return store.root / "labels" / plate / well / f"f{int(field_):03d}.tif"


def load_field_labels(store, plate: str, well: str, field_: int) -> tuple[pl.DataFrame, LabelMovie]:
    """A tracked field's tracks (the tracks table's rows, :data:`FIELD_COLUMNS` and keys) and its lazy
    label movie (pixel value = track_id = label_id)."""
    rows = store.read("label_images", plate=plate).filter(
        (pl.col("well") == well) & (pl.col("field") == int(field_))
    )
    if rows.height == 0:
        raise TrackingError(
            f"plate {plate}, well {well}, field {field_}: no label images in store {store.root}. Hint: "
            "track it with this lnpstore version (`lnpstore track`; remove its tracks first if it was "
            "tracked before label images were kept)"
        )
    tracks = (
        store.read("tracks", plate=plate)
        .filter((pl.col("well") == well) & (pl.col("field") == int(field_)))
        .sort("track_id", "frame")
    )
    return tracks, LabelMovie(rows.get_column("path")[0])


def _plate_info(store, plate: str) -> tuple[float, pl.DataFrame, set[str]]:
    plates = store.read("plates", plate=plate)
    if plates.height == 0:
        known = store.read("plates").get_column("plate").to_list()
        raise TrackingError(
            f"plate {plate!r} is not in store {store.root} (plates: {known}). Hint: `lnpstore ingest` it first"
        )
    px = plates.get_column("pixel_size_um")[0]
    if px is None or not px > 0:
        raise TrackingError(
            f"plate {plate}: pixel_size_um is {px} in the plates table; re-ingest with a pixel size"
        )
    images = (
        store.table("images", plate=plate)
        .filter(pl.col("channel").is_in(list(TRACK_CHANNELS)))
        .select("well", "field", "frame", "channel", "path", "status")
        .collect()
    )
    wells = store.read("wells", plate=plate)
    excluded = set(wells.filter(pl.col("excluded")).get_column("well").to_list())
    return float(px), images, excluded


def track_plate(
    store,
    plate: str,
    *,
    seeds: str | Path = "auto",
    settings: TrackSettings | None = None,
    executor=None,
    show_progress: bool = True,
) -> TrackReport:
    """Seed and track every field of ``plate`` that is not excluded and not tracked yet; write seeds, tracks.

    Resumable: a (well, field) that already has rows in ``tracks`` is skipped. Work runs through
    ``executor`` (an :class:`lnpstore.execution.Executor`; in-process when None); the driver writes
    each well's seeds and tracks once all its fields are done. ``seeds`` is "auto" (from frame 1's CS
    image) or the path of a CSV with columns well, field, y_px, x_px. The settings, seed source and
    versions are written to ``artifacts/tracking/<plate>.json``.
    """
    import json
    import time

    from lnpstore._version import __version__
    from lnpstore.runtime.execution import Executor
    from lnpstore.store.schema import cell_uid_expr
    from lnpstore.tracking.seeding import read_seed_csv, seeds_for

    s = settings or TrackSettings()
    t0 = time.perf_counter()
    report = TrackReport(plate)
    px, images, excluded = _plate_info(store, plate)
    manual = None
    source = "auto"
    if str(seeds) != "auto":
        manual = read_seed_csv(seeds)
        source = f"csv:{Path(seeds).resolve()}"
    done = set(store.table("tracks", plate=plate).select("well", "field").unique().collect().iter_rows())
    ok = images.filter(pl.col("status") == "ok")
    n_frames = int(images.get_column("frame").max() or 0)
    jobs: list[dict] = []
    per_well: dict[str, int] = {}
    for (well, fld), grp in sorted(images.group_by(["well", "field"]), key=lambda kv: kv[0]):
        if well in excluded:
            report.fields_excluded += 1
            continue
        if (well, fld) in done:
            report.fields_skipped += 1
            continue
        paths = {
            (r["frame"], r["channel"]): r["path"]
            for r in ok.filter((pl.col("well") == well) & (pl.col("field") == fld)).iter_rows(named=True)
        }
        del grp
        frames = [{ch: paths.get((f, ch)) for ch in TRACK_CHANNELS} for f in range(1, n_frames + 1)]
        job = {
            "plate": plate,
            "well": well,
            "field": int(fld),
            "pixel_size_um": px,
            "settings": s.to_dict(),
            "seeds": None if manual is None else seeds_for(manual, well, int(fld)),
            "frames": frames,
            "labels_path": str(labels_path_for(store, plate, well, int(fld))),
        }
        jobs.append(job)
        per_well[well] = per_well.get(well, 0) + 1

    meta = {
        "plate": plate,
        "seeds": source,
        "settings": s.to_dict(),
        "pixel_size_um": px,
        "package_version": __version__,
        "executor": repr(executor),
    }
    from lnpstore.store.atomic import atomic_write_bytes

    atomic_write_bytes(json.dumps(meta, indent=2).encode(), store.artifacts_dir("tracking") / f"{plate}.json")

    pending: dict[str, list[dict]] = {}
    ex = executor or Executor.synchronous()
    import os

    quiet_before = os.environ.get("LNPSTORE_QUIET")
    if not show_progress:
        os.environ["LNPSTORE_QUIET"] = "1"
    try:
        for res in ex.map(track_field_job, jobs, desc=f"track {plate}"):
            well = res["well"]
            pending.setdefault(well, []).append(res)
            if len(pending[well]) == per_well[well]:
                _write_well(store, pending.pop(well), source, cell_uid_expr, report)
    finally:
        if not show_progress:
            if quiet_before is None:
                os.environ.pop("LNPSTORE_QUIET", None)
            else:
                os.environ["LNPSTORE_QUIET"] = quiet_before
    report.seconds = time.perf_counter() - t0
    return report


def _write_well(store, results: list[dict], source: str, cell_uid_expr, report: TrackReport) -> None:
    seed_parts, track_parts, label_rows = [], [], []
    for r in sorted(results, key=lambda r: r["field"]):
        keys = {"plate": r["plate"], "well": r["well"], "field": r["field"]}
        report.fields_tracked += 1
        if len(r["seeds"]) == 0:
            report.fields_without_seeds.append((r["well"], r["field"]))
            continue
        seed_parts.append(
            pl.DataFrame(
                {
                    "track_id": np.arange(1, len(r["seeds"]) + 1, dtype=np.int32),
                    "y_px": r["seeds"][:, 0],
                    "x_px": r["seeds"][:, 1],
                }
            ).with_columns(**{k: pl.lit(v) for k, v in keys.items()}, source=pl.lit(source))
        )
        if r.get("labels"):
            m = r["labels"]
            label_rows.append(
                {
                    **keys,
                    "path": m["path"],
                    "n_frames": m["n_frames"],
                    "height_px": m["shape"][0],
                    "width_px": m["shape"][1],
                }
            )
        t = r["tracks"].with_columns(**{k: pl.lit(v) for k, v in keys.items()})
        track_parts.append(t.with_columns(cell_uid=cell_uid_expr()))
        report.tracks += int(r["tracks"].get_column("track_id").n_unique())
        report.nodes += r["tracks"].height
    if track_parts:
        from lnpstore.store import schema as S

        with store.batch():
            store.write(
                "tracks", pl.concat(track_parts).select(S.table("tracks").column_names), mode="upsert"
            )
            store.write("seeds", pl.concat(seed_parts).select(S.table("seeds").column_names), mode="upsert")
            if label_rows:
                store.write(
                    "label_images",
                    pl.DataFrame(label_rows, schema=S.table("label_images").polars_schema),
                    mode="upsert",
                )
