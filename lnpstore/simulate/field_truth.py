"""One field's truth from its simulated cells: the cells table (latents, outcome, oracle), the tracks
(one row per cell and frame alive), the lineage and the label tracks (cells only partly visible too)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lnpstore.instrument.geometry import Geometry
from lnpstore.simulate.cells import Cells
from lnpstore.simulate.expression import oracle
from lnpstore.simulate.settings import SimulationSettings
from lnpstore.simulate.streams import oracle_rng


@dataclass
class FieldResult:
    """One field's truth, column name -> values (see ``docs/simulator.md``, Outputs)."""

    well: str
    field: int
    cells: dict[str, np.ndarray]
    tracks: dict[str, np.ndarray]
    lineage: dict[str, np.ndarray]
    label_tracks: dict[str, np.ndarray]


@dataclass(frozen=True)
class _Visibility:
    """Per frame and cell (frames x cells): centre in the image, and at least the edge margin inside it."""

    in_image: np.ndarray
    in_bounds: np.ndarray
    keep: np.ndarray  # per cell: centre in the image at some frame (a row of the cells table)
    idx: np.ndarray  # the kept cells' indices, in simulation order
    true_id: np.ndarray  # 1.. for the kept cells

    @classmethod
    def of(cls, c: Cells, s: SimulationSettings, geom: Geometry) -> _Visibility:
        """From the cells' recorded centres; the margin is the geometry's edge margin (px)."""
        h, w, m = s.height_px, s.width_px, geom.edge_margin_px
        y, x, exists = c.track_y, c.track_x, c.exists
        in_image = (y >= 0) & (y < h) & (x >= 0) & (x < w) & exists
        in_bounds = (y >= m) & (y < h - m) & (x >= m) & (x < w - m) & exists
        keep = in_image.any(axis=0)
        idx = np.flatnonzero(keep)
        return cls(in_image, in_bounds, keep, idx, np.arange(1, idx.size + 1, dtype=np.int32))


def field_truth(
    c: Cells, s: SimulationSettings, well: str, field_: int, geom: Geometry, *, is_control: bool
) -> FieldResult:
    """The field's truth: cells whose centre is in the image at some frame get ids 1.. (simulation order),
    cells only partly visible in the true labels the ids after them."""
    vis = _Visibility.of(c, s, geom)
    oracle_prob, oracle_log = oracle(
        oracle_rng(s.seed, field_),
        eta=c.eta,
        z_rate=c.z_rate,
        gfp_sum_true=c.gfp_sum_true,
        gfp_last=c.track_gfp[-1],
        own_window_mask=c.own_window_mask,
        last_ti=s.n_frames - 1,
        is_control=is_control,
    )
    cells = _cell_rows(c, vis, oracle_prob, oracle_log, s.n_frames)
    tracks = _track_rows(c, vis, s.n_frames)
    lineage, label_tracks = _lineage_rows(c, vis, s.n_frames)
    return FieldResult(well, field_, cells, tracks, lineage, label_tracks)


def _life_frames(c: Cells, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the first and last frame index (0-based) it exists."""
    first_ti = np.argmax(c.exists, axis=0)
    last_ti = n_frames - 1 - np.argmax(c.exists[::-1], axis=0)
    return first_ti, last_ti


def _cell_rows(
    c: Cells, vis: _Visibility, oracle_prob: np.ndarray, oracle_log: np.ndarray, n_frames: int
) -> dict[str, np.ndarray]:
    """The cells table: latents, outcome (NaN for cells that divided before the last frame), oracle."""
    idx = vis.idx
    _, last_ti = _life_frames(c, n_frames)
    at_end = c.exists[-1]  # cells that divided earlier have no last-frame outcome (NaN)
    return {
        "true_id": vis.true_id,
        "in_image_first": vis.in_image[0, idx],
        "in_image_last": vis.in_image[-1, idx],
        "in_bounds_last": vis.in_bounds[-1, idx],
        "radius_um": c.radius_um[idx],
        "speed_sd_px": c.speed_sd_px[idx],
        "uptake_propensity": c.propensity[idx],
        "uptake_tau_frames": c.uptake_tau_frames[idx],
        "perinuclear_rate_per_frame": c.perinuclear_rate[idx],
        "n_lnp_particles": c.track_nlnp[last_ti[idx], idx].astype(np.int32),
        "n_lnp_by_frame20": c.track_nlnp[min(19, n_frames - 1), idx],
        "cs_level": c.cs_level[idx],
        "autofluorescence": c.autofluor[idx],
        "eta": c.eta[idx],
        "competence_noise": c.eps[idx],
        "gfp_onset_frame": c.gfp_onset[idx] + 1.0,
        "gfp_plateau": c.plateau[idx],
        "gfp_level_last": np.where(at_end, c.track_gfp[-1], np.nan)[idx],
        "gfp_sum_true": np.where(at_end, c.gfp_sum_true, np.nan)[idx],
        "gfp_sum_written": np.where(at_end, c.gfp_sum_written, np.nan)[idx],
        "expressing": c.expressing[idx],
        "oracle_prob": oracle_prob[idx],
        "oracle_log_gfp": np.where(at_end, oracle_log, np.nan)[idx],
    }


def _track_rows(c: Cells, vis: _Visibility, n_frames: int) -> dict[str, np.ndarray]:
    """The tracks table: one row per kept cell and frame it exists."""
    idx = vis.idx
    rows = c.exists[:, idx].ravel()
    frames = np.repeat(np.arange(1, n_frames + 1, dtype=np.int16), idx.size)
    return {
        "true_id": np.tile(vis.true_id, n_frames)[rows],
        "frame": frames[rows],
        "y_px": c.track_y[:, idx].ravel()[rows],
        "x_px": c.track_x[:, idx].ravel()[rows],
        "area_px": c.track_area[:, idx].ravel()[rows],
        "in_image": vis.in_image[:, idx].ravel()[rows],
        "in_bounds": vis.in_bounds[:, idx].ravel()[rows],
        "n_lnp": c.track_nlnp[:, idx].ravel()[rows],
        "lnp_radial_frac": c.track_rf[:, idx].ravel()[rows],
        "gfp_level": c.track_gfp[:, idx].ravel()[rows],
    }


def _lineage_rows(
    c: Cells, vis: _Visibility, n_frames: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The lineage (one row per labelled cell) and label tracks (one row per cell and frame with label
    pixels), of the kept cells and of those only partly visible (centre never in the image)."""
    idx, keep = vis.idx, vis.keep
    first_ti, last_ti = _life_frames(c, n_frames)
    edge = np.flatnonzero((c.label_area > 0).any(axis=0) & ~keep)
    ids = np.zeros(c.n, np.int32)
    ids[idx] = vis.true_id
    ids[edge] = np.arange(idx.size + 1, idx.size + edge.size + 1, dtype=np.int32)
    labelled = np.concatenate([idx, edge]).astype(np.int64)
    parent_id = np.where(c.parent >= 0, ids[np.maximum(c.parent, 0)], 0)  # 0: none, or never seen
    root = ids.copy()
    for i in np.sort(labelled):  # parents precede their daughters in simulation order
        if parent_id[i]:
            root[i] = root[c.parent[i]]
    lineage = {
        "true_id": ids[labelled],
        "parent_id": parent_id[labelled].astype(np.int32),
        "lineage_id": root[labelled],
        "generation": c.generation[labelled],
        "first_frame": (first_ti[labelled] + 1).astype(np.int16),
        "last_frame": (last_ti[labelled] + 1).astype(np.int16),
        "divides": ~c.exists[-1, labelled],
        "in_cells": keep[labelled],
        "mask_value": (labelled + 1).astype(np.int32),
    }
    la = c.label_area[:, labelled]
    fr, col = np.nonzero(la)
    label_tracks: dict[str, np.ndarray] = {
        "true_id": ids[labelled][col],
        "frame": (fr + 1).astype(np.int16),
        "label_area_px": la[fr, col].astype(np.int32),
        "y_px": c.track_y[fr, labelled[col]],
        "x_px": c.track_x[fr, labelled[col]],
    }
    return lineage, label_tracks
