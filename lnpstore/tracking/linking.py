"""Linking given per-frame segmentations (Cellpose, StarDist, ilastik, CTC masks, or our own detector).

:func:`link_labels` turns a movie of label images into the same tracks table and label movie as the
window tracker, with the same gap closing (``max_gap_frames``), divisions (``division_min_fraction``),
edge rule (``edge_margin_um``) and quality flags. Per frame (pixel units):

* every live track is matched to at most one region by a linear assignment
  (``scipy.optimize.linear_sum_assignment``) on a cost that is low for a region overlapping the track's
  previous region and near its predicted centre: ``distance / link_max + (1 - overlap / smaller area)``;
  a pair is allowed when the regions overlap or the centres lie within ``link_max`` (``link_max_um``,
  or the median cell diameter when unset), times the frames bridged for a track in a gap;
* a region left over that overlaps a matched track's previous region (or lies within ``link_max`` of it),
  when both it and the matched region hold ``division_min_fraction`` of the mother's area, makes a
  division: the mother ends ('divided') and both regions start daughter tracks;
* a track left over is bridged by a ``gap_filled`` node (no region) for up to ``max_gap_frames``, then
  stops ('lost'); a region left over starts a new track.

What no library does here: laptrack and trackpy link centroids (no overlap, no label movie out); this
links regions and keeps the tracker's contract (one connected label per node, label = track_id).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from lnpstore.store.errors import TrackingError
from lnpstore.tracking.field import finish_tracks
from lnpstore.tracking.integrity import check_frame, keep_largest_pieces
from lnpstore.tracking.settings import FIELD_COLUMNS, NODE_ID_STRIDE, TrackSettings, gap_node

BIG = 1e9  # the cost of a forbidden pair in the assignment


@dataclass
class _Link:
    track_id: int
    y: float
    x: float
    area: float
    parent_track_id: int | None = None
    lineage_id: int = 0
    vy: float = 0.0
    vx: float = 0.0
    gap: int = 0
    report: bool = True
    alive: bool = True
    rows: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.lineage_id:
            self.lineage_id = self.track_id


@dataclass
class _Regions:
    """One frame's regions: label values, centroids (y, x), areas and their node columns."""

    labels: np.ndarray
    yx: np.ndarray
    area: np.ndarray
    props: list[dict]


def _regions(lab: np.ndarray, image: np.ndarray | None) -> _Regions:
    from skimage.measure import regionprops

    rp = regionprops(lab, intensity_image=image)
    props = [
        {
            "area_px": float(r.area),
            "perimeter_px": float(r.perimeter),
            "eccentricity": float(r.eccentricity),
            "solidity": float(r.solidity),
            "mean_cs": float(r.intensity_mean) if image is not None else None,
        }
        for r in rp
    ]
    return _Regions(
        np.array([r.label for r in rp], np.int64),
        np.array([r.centroid for r in rp], np.float64).reshape(-1, 2),
        np.array([r.area for r in rp], np.float64),
        props,
    )


def _overlaps(prev_out: np.ndarray | None, lab: np.ndarray) -> dict[tuple[int, int], int]:
    """Pixels shared by (previous frame's track_id, this frame's label)."""
    if prev_out is None:
        return {}
    both = (prev_out > 0) & (lab > 0)
    if not both.any():
        return {}
    pairs = np.stack([prev_out[both].astype(np.int64), lab[both].astype(np.int64)])
    uniq, counts = np.unique(pairs, axis=1, return_counts=True)
    return {(int(a), int(b)): int(c) for (a, b), c in zip(uniq.T, counts, strict=True)}


class MaskLinker:
    """State of linking one movie of label images; fed one frame at a time."""

    def __init__(self, pixel_size_um: float, settings: TrackSettings):
        self.s = settings
        self.px = float(pixel_size_um)
        self.edge_px = 0.0 if settings.edge_margin_um is None else settings.edge_margin_um / self.px
        self.link_max_px = None if settings.link_max_um is None else settings.link_max_um / self.px
        self.tracks: list[_Link] = []
        self.next_id = 1
        self.prev_out: np.ndarray | None = None
        self.shape: tuple[int, int] | None = None

    def step(self, frame: int, labels: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
        """Link this frame's regions; returns its label image with pixel = track_id (int32)."""
        lab = self._checked(frame, labels)
        reg = _regions(lab, image)
        link_max = self._link_max(reg)
        live = [t for t in self.tracks if t.alive]
        ov = _overlaps(self.prev_out, lab)
        cost = self._costs(live, reg, ov, link_max)
        match = self._assign(cost)
        taken = set(match.values())
        out = np.zeros(lab.shape, np.int32)
        lut = np.zeros(int(lab.max()) + 1, np.int32)
        divided = self._divisions(frame, live, match, reg, ov, link_max, taken, lut)
        for i, t in enumerate(live):
            if i in divided:
                continue
            if i in match:
                self._extend(t, frame, reg, match[i], lut)
            else:
                self._lose(t, frame)
        for j in range(len(reg.labels)):
            if j not in taken:
                self._start(frame, reg, j, lut)
        out = lut[lab]
        check_frame(frame, self._frame_nodes(frame), out)
        self.prev_out = out
        return out

    # -- one frame --------------------------------------------------------------------------------
    def _checked(self, frame: int, labels: np.ndarray) -> np.ndarray:
        lab = np.asarray(labels)
        if lab.ndim != 2:
            raise TrackingError(f"label frame {frame} must be 2-D, got shape {lab.shape}")
        if not np.issubdtype(lab.dtype, np.integer):
            raise TrackingError(f"label frame {frame} must hold integers, got dtype {lab.dtype}")
        if self.shape is None:
            self.shape = lab.shape
        elif lab.shape != self.shape:
            raise TrackingError(f"label frame {frame} has shape {lab.shape}, frame 1 had {self.shape}")
        if lab.size and int(lab.min()) < 0:
            raise TrackingError(f"label frame {frame} holds negative labels")
        lab = lab.astype(np.int64, copy=True)
        keep_largest_pieces(lab)  # a label in pieces keeps its largest (one region per node)
        return lab

    def _link_max(self, reg: _Regions) -> float:
        """The largest link in px: ``link_max_um``, or the median equivalent diameter of the regions."""
        if self.link_max_px is not None:
            return self.link_max_px
        if len(reg.area):
            self._diameter_px = 2.0 * math.sqrt(float(np.median(reg.area)) / math.pi)
        return getattr(self, "_diameter_px", 10.0)

    def _costs(self, live: list[_Link], reg: _Regions, ov: dict, link_max: float) -> np.ndarray:
        cost = np.full((len(live), len(reg.labels)), BIG)
        for i, t in enumerate(live):
            if not len(reg.labels):
                break
            d = np.hypot(
                reg.yx[:, 0] - (t.y + t.vy * self.s.motion_damping),
                reg.yx[:, 1] - (t.x + t.vx * self.s.motion_damping),
            )
            share = np.array(
                [ov.get((t.track_id, int(v)), 0) if t.gap == 0 else 0 for v in reg.labels], np.float64
            ) / np.minimum(reg.area, t.area)
            ok = (share > 0) | (d <= link_max * (1 + t.gap))
            cost[i, ok] = d[ok] / link_max + (1.0 - np.minimum(share[ok], 1.0))
        return cost

    @staticmethod
    def _assign(cost: np.ndarray) -> dict[int, int]:
        """Track index -> region index of the cheapest allowed one-to-one matching."""
        from scipy.optimize import linear_sum_assignment

        if cost.size == 0:
            return {}
        rows, cols = linear_sum_assignment(cost)
        return {int(r): int(c) for r, c in zip(rows, cols, strict=True) if cost[r, c] < BIG}

    def _divisions(
        self,
        frame: int,
        live: list[_Link],
        match: dict[int, int],
        reg: _Regions,
        ov: dict,
        link_max: float,
        taken: set[int],
        lut: np.ndarray,
    ) -> set[int]:
        """Mothers (indices into ``live``) that divided in this frame; starts their daughters."""
        frac = self.s.division_min_fraction
        divided: set[int] = set()
        if frac <= 0:
            return divided
        for j in range(len(reg.labels)):
            if j in taken:
                continue
            best = None
            for i, a in match.items():
                t = live[i]
                if i in divided or t.gap or not t.report or len(t.rows) < 2:
                    continue
                shared = ov.get((t.track_id, int(reg.labels[j])), 0)
                d = math.hypot(reg.yx[j, 0] - t.y, reg.yx[j, 1] - t.x)
                if not (shared > 0 or d <= link_max):
                    continue
                if min(reg.area[j], reg.area[a]) < frac * t.area:
                    continue
                key = (-shared, d)
                if best is None or key < best[0]:
                    best = (key, i, a)
            if best is None:
                continue
            _, i, a = best
            mother = live[i]
            self._stop(mother, "divided")
            divided.add(i)
            taken.add(j)
            for k in (a, j):
                self._start(frame, reg, k, lut, parent=mother)
        return divided

    # -- one track --------------------------------------------------------------------------------
    def _node(self, t: _Link, frame: int, reg: _Regions, j: int, **links) -> dict:
        y, x = float(reg.yx[j, 0]), float(reg.yx[j, 1])
        assert self.shape is not None  # set by the first label frame
        h, w = self.shape
        e = self.edge_px
        return {
            **{c: None for c in FIELD_COLUMNS},
            "track_id": t.track_id,
            "frame": frame,
            "node_id": t.track_id * NODE_ID_STRIDE + frame,
            "parent_track_id": t.parent_track_id,
            "lineage_id": t.lineage_id,
            "label_id": t.track_id,
            "y_px": y,
            "x_px": x,
            **reg.props[j],
            **links,
            "gap_filled": False,
            "in_bounds": bool(e <= y <= h - 1 - e and e <= x <= w - 1 - e),
            "flag_jump": bool(links.get("flag_jump", False)),
            "flag_area": False,
            "flag_lost": False,
        }

    def _record(self, t: _Link, node: dict, reg: _Regions, j: int, lut: np.ndarray) -> None:
        """Append a node and paint its region (unless the track only follows a cell past the edge)."""
        if t.report:
            t.rows.append(node)
            lut[int(reg.labels[j])] = t.track_id
            if not node["in_bounds"]:
                node["stop_reason"] = "edge"
                t.report = False
        y, x = float(reg.yx[j, 0]), float(reg.yx[j, 1])
        t.vy, t.vx = y - t.y, x - t.x  # (0 for a track that starts here)
        t.y, t.x, t.area, t.gap = y, x, float(reg.area[j]), 0

    def _extend(self, t: _Link, frame: int, reg: _Regions, j: int, lut: np.ndarray) -> None:
        py, px_ = t.y + t.vy * self.s.motion_damping, t.x + t.vx * self.s.motion_damping
        y, x = float(reg.yx[j, 0]), float(reg.yx[j, 1])
        last = next((r for r in reversed(t.rows) if not r["gap_filled"]), None)
        disp = math.hypot(y - last["y_px"], x - last["x_px"]) if last is not None else None
        link = math.hypot(y - py, x - px_)
        node = self._node(
            t,
            frame,
            reg,
            j,
            displacement_px=disp,
            area_ratio=float(reg.area[j]) / t.area if t.area else None,
            link_cost_px=link,
            flag_jump=self.s.predicted_max_um > 0 and link > self.s.predicted_max_um / self.px,
        )
        self._record(t, node, reg, j, lut)

    def _start(self, frame: int, reg: _Regions, j: int, lut: np.ndarray, parent: _Link | None = None) -> None:
        t = _Link(
            self.next_id,
            float(reg.yx[j, 0]),
            float(reg.yx[j, 1]),
            float(reg.area[j]),
            parent_track_id=None if parent is None else parent.track_id,
            lineage_id=0 if parent is None else parent.lineage_id,
        )
        if self.next_id > np.iinfo(np.uint16).max:
            raise TrackingError(
                f"frame {frame}: more than {np.iinfo(np.uint16).max} tracks do not fit a uint16 label movie"
            )
        self.next_id += 1
        self.tracks.append(t)
        node = self._node(
            t,
            frame,
            reg,
            j,
            area_ratio=float(reg.area[j]) / parent.area if parent is not None and parent.area else None,
        )
        self._record(t, node, reg, j, lut)

    def _lose(self, t: _Link, frame: int) -> None:
        if not (t.report and t.rows and t.gap < self.s.max_gap_frames):
            self._stop(t, "lost")
            return
        t.gap += 1
        py, px_ = t.y + t.vy * self.s.motion_damping, t.x + t.vx * self.s.motion_damping
        t.rows.append(gap_node(t, frame, py, px_, in_bounds=True))
        t.y, t.x = py, px_

    @staticmethod
    def _stop(t: _Link, reason: str) -> None:
        t.alive = False
        if reason == "lost":  # a gap that never closed: its bridging nodes are not kept
            while t.rows and t.rows[-1]["gap_filled"]:
                t.rows.pop()
        if t.rows and t.report:
            t.rows[-1]["stop_reason"] = reason
            t.rows[-1]["flag_lost"] = reason == "lost"

    def _frame_nodes(self, frame: int) -> list[tuple[int, int | None, bool]]:
        return [
            (t.track_id, t.rows[-1]["label_id"], bool(t.rows[-1]["gap_filled"]))
            for t in self.tracks
            if t.rows and t.rows[-1]["frame"] == frame
        ]

    def finish(self) -> pl.DataFrame:
        return finish_tracks(self.tracks, self._stop, pixel_size_um=self.px, settings=self.s)


def link_labels(
    labels: Iterable[np.ndarray],
    *,
    pixel_size_um: float,
    settings: TrackSettings | None = None,
    images: Iterable[np.ndarray | None] | None = None,
    on_labels: Callable[[np.ndarray], None] | None = None,
) -> pl.DataFrame:
    """Link a movie of label images (frame 1 first; 0 = background) into tracks.

    ``images``: the matching intensity frames (for ``mean_cs``), optional. ``on_labels`` gets each
    frame's output label image (pixel = track_id of a reported track). Returns :data:`FIELD_COLUMNS`.
    Only the settings of linking apply (gaps, divisions, edge margin, ``link_max_um``, motion, flags)."""
    s = settings or TrackSettings()
    if not (isinstance(pixel_size_um, int | float) and pixel_size_um > 0):
        raise TrackingError(f"pixel_size_um must be a positive number of um, got {pixel_size_um!r}")
    linker = MaskLinker(pixel_size_um, s)
    image_iter = iter(images) if images is not None else None
    for i, lab in enumerate(labels, start=1):
        img = next(image_iter, None) if image_iter is not None else None
        out = linker.step(i, lab, None if img is None else np.asarray(img))
        if on_labels is not None:
            on_labels(out)
    if linker.shape is None:
        raise TrackingError("the label movie has no frames")
    return linker.finish()
