"""One (well, field): draw its cells, then render and write its movie frame by frame (and its true label
stack), and return its truth. The unit of work that :func:`lnpstore.simulate.plate.simulate_plate` runs
in parallel (picklable job in, picklable result out)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from lnpstore.instrument.geometry import geometry_for
from lnpstore.instrument.layout import CHANNELS, image_filename
from lnpstore.simulate.cells import Cells, FieldSpace, draw_founders, move_cells, outline_harmonics
from lnpstore.simulate.constants import MITOTIC_CS_BOOST, MITOTIC_RADIUS
from lnpstore.simulate.divisions import Divisions
from lnpstore.simulate.expression import draw_expression, gfp_level
from lnpstore.simulate.field_truth import FieldResult, field_truth
from lnpstore.simulate.particles import FreeParticles, Particles, Spots, lnp_factor
from lnpstore.simulate.render import FrameCells, Renderer
from lnpstore.simulate.settings import SimulationSettings
from lnpstore.simulate.streams import field_rng


@dataclass(frozen=True)
class FieldJob:
    """One (well, field) to simulate; ``registration_offset_px`` is the plate's BF offset (dy, dx)."""

    settings: SimulationSettings
    well: str
    dose_ng: float
    field: int
    plate_dir: str
    registration_offset_px: tuple[int, int]
    labels_path: str

    def __repr__(self) -> str:
        return f"FieldJob({self.settings.plate} {self.well} field {self.field})"


@dataclass(frozen=True)
class _Faults:
    """The field's requested faults: no cells; frames whose files are absent; (frame, channel) garbage files."""

    empty: bool
    missing_frames: frozenset[int]
    unreadable: frozenset[tuple[int, int]]

    @classmethod
    def of(cls, job: FieldJob) -> _Faults:
        """The faults of the job's well and field (unreadable files only ever in field 1)."""
        faults = [f for f in job.settings.fault_specs if f.well == job.well]
        return cls(
            empty=any(f.kind == "empty_field" and f.field == job.field for f in faults),
            missing_frames=frozenset(t for f in faults if f.kind == "missing_frames" for t in f.frames),
            unreadable=frozenset(
                (f.frames[0], f.channel_number) for f in faults if f.kind == "unreadable" and job.field == 1
            ),
        )


def simulate_field(job: FieldJob) -> FieldResult:
    """Render and write one field's movie frame by frame (and its true label stack); return its truth."""
    s = job.settings
    rng = field_rng(s.seed, job.well, job.field)
    space = FieldSpace(s.height_px, s.width_px, s.pixel_size_um, s.scale)
    faults = _Faults.of(job)
    is_control = job.dose_ng == 0
    c, particles, free = _draw_cells(rng, s, space, job.dose_ng, faults.empty)
    geom = geometry_for(s.pixel_size_um)
    renderer = Renderer(rng, space, job.registration_offset_px, outline_harmonics(), geom.target_window_px)
    divisions = None
    if (
        s.division_rate_per_h > 0 and c.n > 0
    ):  # their own stream: without them the plate draws what it always did
        divisions = Divisions(
            c,
            particles,
            space,
            rate_per_h=s.division_rate_per_h,
            interval_min=s.frame_interval_min,
            n_frames=s.n_frames,
            seed=s.seed,
            well=job.well,
            field_=job.field,
        )
    with tifffile.TiffWriter(job.labels_path) as label_tw:
        for ti in range(s.n_frames):
            fc = _step(rng, c, free, divisions, space, ti)
            images = _render_frame(renderer, c, fc, particles, free, label_tw, last=ti == s.n_frames - 1)
            if ti + 1 not in faults.missing_frames:
                _write_images(rng, job, faults, ti + 1, images)
    return field_truth(c, s, job.well, job.field, geom, is_control=is_control)


def _draw_cells(
    rng: np.random.Generator, s: SimulationSettings, space: FieldSpace, dose_ng: float, empty: bool
) -> tuple[Cells, Particles, FreeParticles]:
    """The founders with their latents, the particles they will take up, the free particles and the GFP
    latents, drawn from the field's stream in this order."""
    lnp_f = lnp_factor(dose_ng, s.control_lnp)
    founders = draw_founders(rng, space, s.n_cells, lnp_f, empty=empty)
    n = len(founders["radius_px"])
    particles = Particles.draw(rng, founders["n_offered"], founders["uptake_tau_frames"], s.n_frames)
    free = FreeParticles.draw(rng, space, lnp_f)
    gfp = draw_expression(
        rng,
        n_particles=np.bincount(particles.cell, minlength=n),
        uptake_tau_frames=founders["uptake_tau_frames"],
        perinuclear_rate=founders["perinuclear_rate"],
        radius_um=founders["radius_um"],
        is_control=dose_ng == 0,
    )
    textures, angle_idx = founders.pop("textures"), founders.pop("angle_idx")
    del founders["n_offered"]
    c = Cells(
        s.n_frames,
        **founders,
        **gfp,
        parent=np.full(n, -1, np.int64),
        birth=np.zeros(n, np.int64),
        div_at=np.full(n, np.inf),
        generation=np.zeros(n, np.int16),
        alive=np.ones(n, bool),
        gfp_sum_true=np.zeros(n),
        gfp_sum_written=np.zeros(n),
        own_window_mask=np.zeros(n),
    )
    c.textures, c.angle_idx = textures, angle_idx
    return c, particles, free


def _step(
    rng: np.random.Generator,
    c: Cells,
    free: FreeParticles,
    divisions: Divisions | None,
    space: FieldSpace,
    ti: int,
) -> FrameCells:
    """Advance the field to frame index ``ti``: splits due, rounding, motion, drift; record the cells."""
    if divisions is not None and ti > 0:
        divisions.split_due(ti)
    mit = divisions.mitotic(ti) if divisions is not None else None
    m_idx = None if mit is None else np.flatnonzero(mit > 0)
    if mit is not None and m_idx is not None and m_idx.size:  # (m_idx is None exactly when mit is)
        # rounded cells: a smaller, circular footprint, brighter CS, hardly moving
        r_eff = c.radius_px.copy()
        r_eff[m_idx] *= 1.0 - (1.0 - MITOTIC_RADIUS) * mit[m_idx]
        cs_eff = c.cs_level.copy()
        cs_eff[m_idx] *= 1.0 + MITOTIC_CS_BOOST * mit[m_idx]
    else:
        m_idx = None
        r_eff, cs_eff = c.radius_px, c.cs_level
    if ti > 0 and c.n:
        move_cells(rng, c, r_eff, mit, m_idx, space.box)
        free.drift(rng, space.scale)
    sh_a, sh_b = c.shape_a, c.shape_b
    if mit is not None and m_idx is not None:
        sh_a, sh_b = sh_a.copy(), sh_b.copy()
        sh_a[m_idx] *= (1.0 - mit[m_idx])[:, None]
        sh_b[m_idx] *= (1.0 - mit[m_idx])[:, None]
    c.track_y[ti], c.track_x[ti] = c.pos[:, 0], c.pos[:, 1]
    c.exists[ti] = c.alive
    c.track_area[ti] = np.pi * r_eff**2 * (1 + 0.5 * (sh_a**2 + sh_b**2).sum(axis=1))
    g_now = gfp_level(ti, c.plateau, c.gfp_onset)
    c.track_gfp[ti] = g_now
    return FrameCells(ti, r_eff, cs_eff, sh_a, sh_b, mit, g_now, c.alive.tolist())


def _render_frame(
    renderer: Renderer,
    c: Cells,
    fc: FrameCells,
    particles: Particles,
    free: FreeParticles,
    label_tw: tifffile.TiffWriter,
    *,
    last: bool,
) -> dict[str, np.ndarray]:
    """Draw the frame: true labels (written to the label stack), cells, LNP spots; the camera's images.
    At the ``last`` frame, record each cell's GFP window sums."""
    boxes = renderer.depth_pass(c, fc)
    lab = renderer.true_labels(c.n)
    c.label_area[fc.ti] = np.bincount(lab.ravel(), minlength=c.n + 1)[1:]
    label_tw.write(lab, compression="zlib")
    renderer.paint_pass(c, fc, boxes, last=last)
    spots: list[Spots] = []
    if particles.n:
        spots.append(particles.place(fc.ti, c, fc.r_eff, renderer.psf_area_px2))
    if free.n:
        spots.append(free.place(fc.ti, renderer.psf_area_px2))
    signals = renderer.signals(renderer.lnp_image(spots), fc.ti)
    images = {name: renderer.camera(sig) for name, sig in signals.items()}
    if last and c.n:
        renderer.window_sums(c, fc.alive, signals["GFP"], images["GFP"])
    return images


def _write_images(
    rng: np.random.Generator, job: FieldJob, faults: _Faults, frame: int, images: dict[str, np.ndarray]
) -> None:
    """Write the frame's TIFF of each channel (garbage bytes where a fault asks for an unreadable file)."""
    s = job.settings
    for name, img in images.items():
        num = CHANNELS[name]
        path = Path(job.plate_dir) / image_filename(s.plate, job.well, frame, job.field, num)
        if (frame, num) in faults.unreadable:
            path.write_bytes(b"\x00GARBAGE" + rng.bytes(4096))
        else:
            tifffile.imwrite(path, img, compression=s.compression, photometric="minisblack")
