"""A plate simulator: time-lapse images of HepG2 cells taking up mRNA-LNPs, in the CV7000 layout, with truth.

Real plates are not reachable, so every downstream stage (ingest, tracking, crops, models, tests, the
demo) runs on plates written by :func:`simulate_plate`. The full generative model is described in
``docs/simulator.md``; in short, per (well, field), with lengths given at the reference pixel size
(0.1625 um, ``scale`` 1) and scaled by ``scale`` to the plate's own pixels:

* **Cells.** ``cells_per_field`` cells (default: 6.6e-4 cells per um^2, ~25 in the demo field) placed in
  clusters (a Thomas process with a minimum distance) in the field plus a surrounding band, so that cells
  can enter and leave the image. Radius 7.5-12.5 um (15-25 um across); an irregular outline given by a
  smooth random radial profile ``r(theta) = R (1 + sum_k a_k cos k theta + b_k sin k theta)``, k = 2..5,
  whose coefficients follow an AR(1) process (slow deformation); an off-centre nucleus (0.45 R).
* **Motion.** A persistent random walk: velocity ``v_t = rho v_{t-1} + sqrt(1 - rho^2) sigma xi`` with
  rho 0.8 and sigma 7.5 px/frame per axis (Rayleigh speed: mean 9.4, sd 4.9 px/frame at scale 1), plus a
  soft pairwise repulsion below 0.9 (R_i + R_j), twice per frame, so that neighbours touch but do not
  interpenetrate (nearest centres stay above ~0.85 (R_i + R_j)); cells reflect
  at the outer edge of the band, so they leave and enter the image.
* **Packing.** Touching cells partition space like a packed monolayer: each pixel belongs to at most one
  cell (the one it lies deepest inside), and a cell's depth is measured to the nearer of its outline and
  the boundary with its neighbour, so the stain falls off towards every membrane and a thin dim seam
  separates touching cells (as in CellTracker images). Before, overlaps took the maximum, and a 3-cell
  cluster looked like one blob.
* **CS** (C07): cytoplasmic stain, thicker (brighter) towards the centre, the nucleus at 65 %, a per-cell
  texture that moves with the cell, photobleaching of 4 % over 72 frames, bleed-through of 4 % of LNP.
* **BF** (C09): an uneven background (2000 counts +- 6 %), each cell a dark inner and a bright outer rim
  (halo), shifted against the fluorescence channels by a fixed integer offset (``registration.json``).
* **LNP** (C06): each cell takes up ``Poisson(60 f(dose) propensity)`` particles, each at a time drawn from
  an exponential with the cell's uptake time constant (median 8 frames: uptake rises fast and saturates
  around frames 20-30); a particle sits at a random angle and drifts from the periphery towards the
  nucleus at the cell's perinuclear rate; free particles drift outside cells and vanish. Spots are
  Gaussian (sigma 2.5 px). ``f(dose) = (dose / 316 ng) ** 0.45``; control wells get 15 % of the top
  dose's particles, without mRNA (none with ``control_lnp=False``).
* **GFP** (C05): a treated cell expresses when ``eta + eps > 0``, where ``eta`` is a linear predictor of
  latents that images of frames 1-20 partly show (log particle count, uptake rate, perinuclear rate, cell
  size) and ``eps ~ N(0, 1)`` is hidden. Expression starts at a cell-specific onset (~ frame 20-35,
  earlier for fast uptake) and rises towards a log-normal plateau. Controls never express; every cell
  has a weak autofluorescence.
* **Camera.** Offset 100 counts, Poisson-Gaussian noise (gain 0.6 counts per electron, read noise 2.5
  counts; Gaussian approximation, drawn from a per-field bank of normals at a random offset per image
  for speed), clipping to 16 bits.

* **Divisions** (``division_rate_per_h``, default ``HEPG2_DIVISION_RATE_PER_H`` = ln 2 / 48 h, realistic
  for HepG2; 0 turns them off): after an exponential waiting time a cell rounds up for ~40 min (smaller, circular, brighter
  CS, no dim nucleus, nearly still), then becomes two daughters of about half its area, placed apart along
  a random axis, that inherit its latents with noise (its expression fate exactly) and share its
  particles. Daughters get new true ids; ``truth/lineage.parquet`` records the lineage.
* **True labels** (``truth/labels/``): per field and frame the label image of the cells as drawn (each
  pixel to the cell whose stain is above half there); read them with
  :func:`lnpstore.truth.true_label_frames` and :func:`lnpstore.truth.true_tracks`.

Determinism: every (well, field) draws from its own ``numpy.random.SeedSequence(seed).spawn`` stream
(keyed by the well's and field's positions), so fields are independent and may be generated in any
order or in parallel: the same settings give identical bytes. Divisions draw from a second stream per
field, so a plate without divisions (rate 0) is exactly the plate written before divisions existed.
Images are rendered and written frame by frame; each cell is rendered only inside its bounding box.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import io
import json
import logging
import math
import multiprocessing as mp
import os
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import tifffile
from scipy import ndimage
from scipy.special import ndtr

from lnpstore._version import __version__
from lnpstore.instrument import cvmeta
from lnpstore.instrument.geometry import REFERENCE_PIXEL_SIZE_UM, geometry_for
from lnpstore.instrument.layout import CHANNELS, image_filename, split_well
from lnpstore.runtime.progress import bar

log = logging.getLogger(__name__)

__all__ = [
    "FaultSpec",
    "SimulatedPlate",
    "SimulationSettings",
    "load_truth",
    "simulate_plate",
]

#: Field size in px at scale 1 (the CV7000 camera at 0.1625 um/px).
REF_FIELD_WIDTH_PX = 2554
REF_FIELD_HEIGHT_PX = 2154
#: Default cell density, cells per um^2 (~ 96 per full field, ~ 25 in the demo field).
CELL_DENSITY_PER_UM2 = 6.6e-4
#: Free (extracellular) LNP particles per um^2 at the top dose.
FREE_LNP_DENSITY_PER_UM2 = 6e-4
TOP_DOSE_NG = 316.0
CONTROL_LNP_FRACTION = 0.15
FAULT_KINDS = ("missing_frames", "unreadable", "empty_field")
COMPRESSIONS = (None, "zlib", "zstd")

# Camera and intensity constants (counts).
CAMERA_OFFSET = 100.0
CAMERA_GAIN = 0.6  # counts per photo-electron
READ_NOISE = 2.5  # counts
BF_BACKGROUND = 2000.0
CS_BLEACH_TOTAL = 0.04  # fraction lost over 72 frames

# GFP model coefficients (see docs/simulator.md).
ETA_INTERCEPT = 0.2
ETA_LOG_COUNT = 1.1
ETA_LOG_COUNT_CENTRE = 3.0
ETA_RATE = 0.5
ETA_PERINUCLEAR = 0.6
ETA_SIZE = -0.3
GFP_PLATEAU_MEDIAN = 120.0  # counts per px above autofluorescence, at eta + eps = 0
GFP_LEVEL_SLOPE = 0.6
GFP_LEVEL_SD = 0.6
GFP_RISE_FRAMES = 20.0

# Cell division (see docs/simulator.md, "Divisions").
#: HepG2 doubling time, h (roughly two days in culture).
HEPG2_DOUBLING_H = 48.0
#: The realistic HepG2 division rate, 1/h: ln 2 / 48 h = 0.0144 per h (~16 % of cells split in a 12 h film).
#: The default of ``SimulationSettings.division_rate_per_h`` (0 turns divisions off).
HEPG2_DIVISION_RATE_PER_H = math.log(2.0) / HEPG2_DOUBLING_H
MAX_DIVISION_RATE_PER_H = 1.0  # validation bound (a doubling every 42 min; for tests)
MITOSIS_ROUNDING_MIN = 40.0  # a cell rounds up this long before it splits
DAUGHTER_SPREAD_MIN = 30.0  # daughters stay rounded this long after the split, then spread
MITOTIC_RADIUS = 0.72  # footprint radius of a fully rounded cell, fraction of its radius (~half the area)
MITOTIC_CS_BOOST = 0.8  # CS of a fully rounded cell: +80 % (thicker)
DAUGHTER_REFRACTORY_H = 12.0  # a daughter does not divide again for this long (plus its Exp waiting time)
DAUGHTER_AREA_SD = 0.1  # lognormal sd of a daughter's area around half the parent's
DAUGHTER_LATENT_SD = 0.1  # lognormal sd of a daughter's latents (uptake, CS level, ...) around the parent's
DAUGHTER_GFP_SD = 0.15  # lognormal sd of a daughter's GFP plateau around the parent's (unequal partition)
DAUGHTER_ONSET_SD_FRAMES = 1.0  # sd of a daughter's GFP onset around the parent's, frames
MAX_POPULATION_GROWTH = 4.0  # a field's living cells stop dividing at this multiple of its founders
_DIVISION_STREAM = 0x646976  # spawn-key word of the division stream ("div")

_FAULT_RE = re.compile(
    r"^(?P<kind>[a-z_]+):(?P<well>[A-Pa-p]\d{2})(?::(?P<arg>[^:]+))?(?::(?P<arg2>[^:]+))?$"
)


@dataclass(frozen=True)
class FaultSpec:
    """One requested fault, parsed from its text form (see :class:`SimulationSettings` ``faults``)."""

    kind: str
    well: str
    frames: tuple[int, ...] = ()
    field: int = 1
    channel_number: int = CHANNELS["CS"]

    @classmethod
    def parse(cls, text: str, n_frames: int) -> FaultSpec:
        m = _FAULT_RE.match(text.strip())
        if not m or m["kind"] not in FAULT_KINDS:
            raise ValueError(
                f"fault {text!r} is not one of 'missing_frames:WELL[:FIRST-LAST]', "
                "'unreadable:WELL[:FRAME[:CHANNEL]]', 'empty_field:WELL[:FIELD]' (e.g. 'missing_frames:E04:30-32')"
            )
        kind, well, arg, arg2 = m["kind"], m["well"].upper(), m["arg"], m["arg2"]
        try:
            if kind == "missing_frames":
                if arg2 is not None:
                    raise ValueError("too many parts")
                first, last = (30, 32) if arg is None else _parse_range(arg)
                first, last = min(first, n_frames), min(last, n_frames)
                return cls(kind, well, frames=tuple(range(first, last + 1)))
            if kind == "unreadable":
                frame = min(10, n_frames) if arg is None else int(arg)
                ch = CHANNELS["CS"] if arg2 is None else _channel_number(arg2)
                return cls(kind, well, frames=(frame,), channel_number=ch)
            if arg2 is not None:
                raise ValueError("too many parts")
            return cls(kind, well, field=1 if arg is None else int(arg))
        except ValueError as exc:
            raise ValueError(f"fault {text!r}: {exc}") from None


def _parse_range(text: str) -> tuple[int, int]:
    parts = text.split("-")
    if len(parts) == 1:
        return int(parts[0]), int(parts[0])
    if len(parts) != 2 or int(parts[0]) > int(parts[1]) or int(parts[0]) < 1:
        raise ValueError(f"frame range {text!r} must be FIRST-LAST with 1 <= FIRST <= LAST")
    return int(parts[0]), int(parts[1])


def _channel_number(text: str) -> int:
    if text.upper() in CHANNELS:
        return CHANNELS[text.upper()]
    num = int(text.upper().lstrip("C"))
    if num not in CHANNELS.values():
        raise ValueError(f"channel {text!r} is not one of {sorted(CHANNELS)} or their C numbers")
    return num


def _zstd_available() -> bool:
    try:
        tifffile.imwrite(io.BytesIO(), np.zeros((4, 4), np.uint16), compression="zstd")
    except Exception:  # noqa: BLE001 - any failure means zstd cannot be written here
        return False
    return True


@dataclass(frozen=True)
class SimulationSettings:
    """Everything that defines a simulated plate; serialised to ``truth/settings.json``.

    Attributes
    ----------
    plate : plate name used in file names (no path separators).
    seed : non-negative integer; the same settings and seed give identical files.
    scale : pixels per reference pixel; the pixel size is ``0.1625 / scale`` um (0.5 -> 0.325 um).
    rows, doses_ng : plate rows (letters) and the mRNA dose of each row in ng per well (0 = control).
    columns : plate columns (1-24), the same for every row.
    n_fields : fields of view per well.
    n_frames : time points (frames), 1-based in file names; the GFP target is read at the last one.
    frame_interval_min : minutes between frames.
    field_width_px, field_height_px : image size in px; default 2554 x 2154 at scale 1, times ``scale``.
    cells_per_field : cells whose centre lies in the image at frame 1 (more live in a band around it);
        default ``6.6e-4`` cells per um^2 of field area.
    control_lnp : control wells receive LNPs without mRNA (15 % of the top dose's particles); False: none.
    compression : TIFF compression, None, "zlib" or "zstd" (zstd needs ``imagecodecs``).
    faults : requested defects, each one of
        ``missing_frames:WELL[:FIRST-LAST]`` (files of those frames absent, all fields and channels;
        default frames 30-32), ``unreadable:WELL[:FRAME[:CHANNEL]]`` (that file of field 1 holds garbage
        bytes; default frame 10, channel CS), ``empty_field:WELL[:FIELD]`` (no cells; default field 1).
    division_rate_per_h : cell divisions per cell and hour (0-1; default HepG2's, ln 2 / 48 h; 0: none). A
        cell splits after an exponential waiting time: it rounds up, then becomes two daughters of half its area that inherit its
        latents with noise (``docs/simulator.md``). ``HEPG2_DIVISION_RATE_PER_H`` (ln 2 / 48 h) is realistic.
    workers : processes writing fields in parallel (None: up to 2, by the CPUs); does not change output.
    """

    plate: str = "LNP_Plate01"
    seed: int = 0
    scale: float = 1.0
    rows: tuple[str, ...] = ("C", "E", "G")
    doses_ng: tuple[float, ...] = (316.0, 31.6, 0.0)
    columns: tuple[int, ...] = (3, 4, 5)
    n_fields: int = 2
    n_frames: int = 72
    frame_interval_min: float = 10.0
    field_width_px: int | None = None
    field_height_px: int | None = None
    cells_per_field: int | None = None
    control_lnp: bool = True
    compression: str | None = None
    faults: tuple[str, ...] = ()
    division_rate_per_h: float = HEPG2_DIVISION_RATE_PER_H
    workers: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("rows", "doses_ng", "columns", "faults"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "rows", tuple(str(r).upper() for r in self.rows))
        object.__setattr__(self, "doses_ng", tuple(float(d) for d in self.doses_ng))
        object.__setattr__(self, "columns", tuple(int(c) for c in self.columns))

        def fail(msg: str) -> None:
            raise ValueError(f"SimulationSettings: {msg}")

        if not self.plate or re.search(r"[\\/:*?\"<>|\s]", self.plate):
            fail(f"`plate` {self.plate!r} must be a non-empty name without spaces or path characters")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            fail(f"`seed` must be a non-negative int, got {self.seed!r}")
        if not (0.05 <= float(self.scale) <= 4.0):
            fail(f"`scale` must lie in [0.05, 4] (pixels per 0.1625 um pixel), got {self.scale}")
        if (
            not self.rows
            or any(not re.fullmatch(r"[A-P]", r) for r in self.rows)
            or len(set(self.rows)) != len(self.rows)
        ):
            fail(f"`rows` must be distinct letters A-P, got {self.rows}")
        if len(self.doses_ng) != len(self.rows):
            fail(f"`doses_ng` needs one dose per row: {len(self.rows)} rows, {len(self.doses_ng)} doses")
        if any(not (d >= 0 and math.isfinite(d)) for d in self.doses_ng):
            fail(f"`doses_ng` must be finite and >= 0 ng, got {self.doses_ng}")
        if (
            not self.columns
            or any(not 1 <= c <= 24 for c in self.columns)
            or len(set(self.columns)) != len(self.columns)
        ):
            fail(f"`columns` must be distinct integers 1-24, got {self.columns}")
        if self.n_fields < 1 or self.n_fields > 999:
            fail(f"`n_fields` must be 1-999, got {self.n_fields}")
        if self.n_frames < 2 or self.n_frames > 9999:
            fail(f"`n_frames` must be 2-9999, got {self.n_frames}")
        if not self.frame_interval_min > 0:
            fail(f"`frame_interval_min` must be > 0 min, got {self.frame_interval_min}")
        for name in ("field_width_px", "field_height_px"):
            v = getattr(self, name)
            if v is not None and not 64 <= v <= 16384:
                fail(f"`{name}` must be 64-16384 px (or None for the default), got {v}")
        if self.cells_per_field is not None and not 0 <= self.cells_per_field <= 5000:
            fail(
                f"`cells_per_field` must be 0-5000 (or None for the default density), got {self.cells_per_field}"
            )
        if self.compression not in COMPRESSIONS:
            fail(f"`compression` must be one of {COMPRESSIONS}, got {self.compression!r}")
        if self.compression == "zstd" and not _zstd_available():
            fail(
                "`compression='zstd'` needs the imagecodecs package. Hint: pip install imagecodecs, or use zlib"
            )
        rate = self.division_rate_per_h
        if isinstance(rate, bool) or not (
            isinstance(rate, int | float) and 0 <= rate <= MAX_DIVISION_RATE_PER_H
        ):
            fail(
                f"`division_rate_per_h` must be 0-{MAX_DIVISION_RATE_PER_H} per h (0: no divisions; HepG2: "
                f"HEPG2_DIVISION_RATE_PER_H = {HEPG2_DIVISION_RATE_PER_H:.4f}), got {rate!r}"
            )
        if self.workers is not None and self.workers < 1:
            fail(f"`workers` must be >= 1 or None, got {self.workers}")
        for spec in self.fault_specs:
            if spec.well not in self.wells:
                fail(f"fault {spec} names well {spec.well}, which is not on the plate {list(self.wells)}")
            if spec.kind == "empty_field" and not 1 <= spec.field <= self.n_fields:
                fail(f"fault empty_field:{spec.well}:{spec.field}: field must be 1-{self.n_fields}")
            if spec.kind == "unreadable" and not 1 <= spec.frames[0] <= self.n_frames:
                fail(f"fault unreadable:{spec.well}:{spec.frames[0]}: frame must be 1-{self.n_frames}")

    # -- presets ------------------------------------------------------------------------------------
    @classmethod
    def demo(cls, seed: int = 0, **overrides: Any) -> SimulationSettings:
        """A small plate for the demo: 9 wells x 1 field x 72 frames, 640 x 560 px at scale 0.5, 25 cells.

        One field per well keeps the write under ~30 s on 2 cores (1.9 GB); ``demo(n_fields=2)`` doubles both.
        """
        kw: dict[str, Any] = dict(
            plate="LNP_Demo01",
            seed=seed,
            scale=0.5,
            n_fields=1,
            field_width_px=640,
            field_height_px=560,
            cells_per_field=25,
        )
        return cls(**{**kw, **overrides})

    @classmethod
    def tiny(cls, seed: int = 0, **overrides: Any) -> SimulationSettings:
        """For unit tests: 3 wells (one per dose), 1 field, 72 frames, 400 x 400 px at scale 0.5, 10 cells."""
        kw: dict[str, Any] = dict(
            plate="LNP_Tiny01",
            seed=seed,
            scale=0.5,
            columns=(3,),
            n_fields=1,
            field_width_px=400,
            field_height_px=400,
            cells_per_field=10,
        )
        return cls(**{**kw, **overrides})

    @classmethod
    def from_preset(cls, name: str, seed: int = 0, **overrides: Any) -> SimulationSettings:
        """Settings of a named preset: ``default`` (the study's plate), ``demo`` or ``tiny``."""
        if name == "default":
            return cls(**{"seed": seed, **overrides})
        if name in ("demo", "tiny"):
            return getattr(cls, name)(seed, **overrides)
        raise ValueError(f"unknown simulator preset {name!r}; choose default, demo or tiny")

    # -- derived ------------------------------------------------------------------------------------
    @property
    def pixel_size_um(self) -> float:
        return REFERENCE_PIXEL_SIZE_UM / self.scale

    @property
    def width_px(self) -> int:
        return self.field_width_px or int(round(REF_FIELD_WIDTH_PX * self.scale))

    @property
    def height_px(self) -> int:
        return self.field_height_px or int(round(REF_FIELD_HEIGHT_PX * self.scale))

    @property
    def n_cells(self) -> int:
        """Cells whose centre lies in the image at frame 1."""
        if self.cells_per_field is not None:
            return self.cells_per_field
        area_um2 = self.width_px * self.height_px * self.pixel_size_um**2
        return int(round(CELL_DENSITY_PER_UM2 * area_um2))

    @property
    def wells(self) -> dict[str, float]:
        """Well id -> dose in ng, row by row."""
        return {f"{r}{c:02d}": d for r, d in zip(self.rows, self.doses_ng, strict=True) for c in self.columns}

    @property
    def fault_specs(self) -> tuple[FaultSpec, ...]:
        return tuple(FaultSpec.parse(f, self.n_frames) for f in self.faults)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("workers")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimulationSettings:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"SimulationSettings: unknown settings {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SimulationSettings:
        """Read ``truth/settings.json`` back (the ``settings`` key of that file)."""
        return cls.from_dict(json.loads(Path(path).read_text())["settings"])


@dataclass
class SimulatedPlate:
    """Where :func:`simulate_plate` wrote the plate folder, plate map and truth folder."""

    plate_dir: Path
    plate_map: Path
    truth_dir: Path
    settings: SimulationSettings


# ------------------------------------------------------------------------------------------------
# Per-(well, field) simulation
# ------------------------------------------------------------------------------------------------
def _field_rng(seed: int, well: str, field_: int) -> np.random.Generator:
    row, col = split_well(well)
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(ord(row) - ord("A"), col, field_))
    return np.random.default_rng(ss)


def _division_rng(seed: int, well: str, field_: int) -> np.random.Generator:
    """The field's division stream: separate from the field's stream, which it leaves untouched."""
    row, col = split_well(well)
    key = (ord(row) - ord("A"), col, field_, _DIVISION_STREAM)
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=key))


def _plate_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(9999,)))


def registration_offset_px(settings: SimulationSettings) -> tuple[int, int]:
    """The plate's BF offset (dy, dx) in px: BF content sits at fluorescence position + (dy, dx)."""
    rng = _plate_rng(settings.seed)
    lo = max(1, int(round(2 * settings.scale)))
    hi = max(lo, int(round(6 * settings.scale)))
    mag = rng.integers(lo, hi + 1, size=2)
    sign = rng.choice([-1, 1], size=2)
    return int(mag[0] * sign[0]), int(mag[1] * sign[1])


def _lnp_factor(dose_ng: float, control_lnp: bool) -> float:
    if dose_ng > 0:
        return (dose_ng / TOP_DOSE_NG) ** 0.45
    return CONTROL_LNP_FRACTION if control_lnp else 0.0


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Unit-variance smooth Gaussian noise (float32)."""
    z = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_px, mode="wrap")
    return z / max(float(z.std()), 1e-6)


def _place_cells(
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


N_ANGLES = 256


def _angle_index(half_px: int) -> np.ndarray:
    """Index into an N_ANGLES + 1 table of the polar angle of each pixel of a (2 b + 1)^2 box (uint16)."""
    r = np.arange(-half_px, half_px + 1, dtype=np.float64)
    theta = np.arctan2(r[:, None], r[None, :])
    return np.rint((theta + np.pi) * (N_ANGLES / (2 * np.pi))).astype(np.uint16)


def _clip01(a: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] in place (cheaper than np.clip on small arrays)."""
    np.maximum(a, 0.0, out=a)
    np.minimum(a, 1.0, out=a)
    return a


@dataclass
class _FieldResult:
    well: str
    field: int
    cells: dict[str, np.ndarray]
    tracks: dict[str, np.ndarray]
    lineage: dict[str, np.ndarray]
    label_tracks: dict[str, np.ndarray]


#: Per-frame records of :class:`_Cells` (frames x cells): name, dtype, value before a cell is born.
_RECORDS: tuple[tuple[str, Any, Any], ...] = (
    ("track_y", np.float64, 0.0),  # centre, px
    ("track_x", np.float64, 0.0),
    ("track_area", np.float64, 0.0),  # analytic outline area, px^2
    ("track_rf", np.float64, np.nan),  # mean radial position of the particles, cell radii
    ("track_nlnp", np.int32, 0),  # particles inside
    ("track_gfp", np.float64, 0.0),  # GFP level, counts per px
    ("exists", np.bool_, False),  # born and not yet divided
    ("label_area", np.int32, 0),  # px of the true label image the cell owns
)


class _Cells:
    """One field's cells: per-cell arrays (axis 0: cell) and the per-frame records of ``_RECORDS``.

    The arrays are attributes named as the keyword arguments; :meth:`add` appends cells (daughters) to
    every array, their records before birth holding the fill values.
    """

    def __init__(self, n_frames: int, **per_cell: np.ndarray) -> None:
        self._per_cell = tuple(per_cell)
        self.__dict__.update(per_cell)
        n = len(per_cell["radius_px"])
        for name, dtype, fill in _RECORDS:
            setattr(self, name, np.full((n_frames, n), fill, dtype))

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
        for name, dtype, fill in _RECORDS:
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, np.full((old.shape[0], k), fill, dtype)], axis=1))


def _simulate_field(
    settings: SimulationSettings,
    well: str,
    dose_ng: float,
    field_: int,
    plate_dir: str,
    reg_offset: tuple[int, int],
    labels_path: str,
) -> _FieldResult:
    """Render and write one field's movie frame by frame (and its true label stack); return its truth."""
    s = settings.scale
    rng = _field_rng(settings.seed, well, field_)
    h, w = settings.height_px, settings.width_px
    px_um = settings.pixel_size_um
    n_frames = settings.n_frames
    faults = [f for f in settings.fault_specs if f.well == well]
    empty = any(f.kind == "empty_field" and f.field == field_ for f in faults)
    missing = {t for f in faults if f.kind == "missing_frames" for t in f.frames}
    unreadable = {(f.frames[0], f.channel_number) for f in faults if f.kind == "unreadable" and field_ == 1}
    geom = geometry_for(px_um)
    is_control = dose_ng == 0
    lnp_f = _lnp_factor(dose_ng, settings.control_lnp)

    # -- cells: latents ------------------------------------------------------------------------------
    max_r_px = 12.5 / px_um
    band_px = 1.5 * max_r_px
    box = (-band_px, -band_px, h + band_px, w + band_px)
    n_image = 0 if empty else settings.n_cells
    band_area = (h + 2 * band_px) * (w + 2 * band_px) - h * w
    n_band = 0 if empty else int(rng.poisson(n_image * band_area / (h * w)))
    n = n_image + n_band
    radius_um = np.clip(rng.lognormal(np.log(10.0), 0.15, n), 7.5, 12.5)
    radius_px = radius_um / px_um
    pos = _place_cells(rng, n_image, box, (h, w), radius_px) if n else np.zeros((0, 2))
    speed_sd_px = 7.5 * s * np.clip(rng.lognormal(0, 0.15, n), 0.6, 1.6) / math.exp(0.15**2 / 2)
    vel = rng.normal(0, 1, (n, 2)) * speed_sd_px[:, None]
    rho_v = 0.8
    ks = np.arange(2, 6)
    coef_sd = 0.09 / (ks - 1) ** 0.8
    shape_a = rng.normal(0, 1, (n, 4)) * coef_sd
    shape_b = rng.normal(0, 1, (n, 4)) * coef_sd
    rho_shape = 0.95
    nuc_off = rng.normal(0, 0.08, (n, 2)) * radius_px[:, None]
    nuc_r = 0.45 * radius_px * rng.uniform(0.9, 1.1, n)
    cs_level = 500.0 * rng.lognormal(0, 0.25, n)
    autofluor = 6.0 * rng.lognormal(0, 0.3, n)
    propensity = rng.lognormal(-(0.5**2) / 2, 0.5, n)
    uptake_tau_frames = rng.lognormal(np.log(8.0), 0.35, n)
    perinuclear_rate = rng.lognormal(np.log(0.06), 0.5, n)
    n_offered = rng.poisson(60.0 * lnp_f * propensity)
    hb = np.ceil(1.45 * radius_px + 3 * s + 2).astype(int)
    textures = [_smooth_noise(rng, (2 * b + 1, 2 * b + 1), 3.0 * s) for b in hb]
    angle_idx = [_angle_index(b) for b in hb]
    theta = np.arange(N_ANGLES) * (2 * np.pi / N_ANGLES) - np.pi
    harm_cos = np.cos(np.outer(np.arange(2, 6), theta))
    harm_sin = np.sin(np.outer(np.arange(2, 6), theta))

    # particles taken up by cells
    p_cell = np.repeat(np.arange(n), n_offered)
    p_t0 = 0.5 + rng.exponential(1.0, p_cell.size) * uptake_tau_frames[p_cell]
    taken = p_t0 <= n_frames - 1
    p_cell, p_t0 = p_cell[taken], p_t0[taken]
    n_p = p_cell.size
    p_angle = rng.uniform(0, 2 * np.pi, n_p)
    p_rf0 = rng.uniform(0.55, 0.95, n_p)
    p_rf_end = rng.uniform(0.25, 0.65, n_p)
    p_peak = 110.0 * rng.lognormal(0, 0.4, n_p)
    n_particles = np.bincount(p_cell, minlength=n)

    # free particles (image coordinates of the padded box)
    box_area_um2 = (h + 2 * band_px) * (w + 2 * band_px) * px_um**2
    n_free = int(rng.poisson(FREE_LNP_DENSITY_PER_UM2 * box_area_um2 * lnp_f))
    f_pos = np.column_stack([rng.uniform(box[0], box[2], n_free), rng.uniform(box[1], box[3], n_free)])
    f_end = rng.exponential(30.0, n_free)
    f_peak = 110.0 * rng.lognormal(0, 0.4, n_free)

    # GFP latents
    eta = np.full(n, -np.inf)
    z_rate = -(np.log(uptake_tau_frames) - np.log(8.0)) / 0.35
    z_peri = (np.log(perinuclear_rate) - np.log(0.06)) / 0.5
    z_size = (np.log(radius_um) - np.log(10.0)) / 0.15
    if not is_control:
        eta = (
            ETA_INTERCEPT
            + ETA_LOG_COUNT * (np.log1p(n_particles) - ETA_LOG_COUNT_CENTRE)
            + ETA_RATE * z_rate
            + ETA_PERINUCLEAR * z_peri
            + ETA_SIZE * z_size
        )
    eps = rng.normal(0, 1, n)
    expressing = (eta + eps > 0) & (not is_control)
    level_noise = rng.normal(0, GFP_LEVEL_SD, n)
    onset_noise = rng.gamma(2.0, 4.0, n)
    gfp_onset = np.maximum(15.0, 18.0 + onset_noise - 3.0 * z_rate)
    plateau = np.where(
        expressing, GFP_PLATEAU_MEDIAN * np.exp(GFP_LEVEL_SLOPE * (eta + eps) + level_noise), 0.0
    )

    def gfp_level(t: float, plat: np.ndarray, onset: np.ndarray) -> np.ndarray:
        return plat * np.clip(1.0 - np.exp(-(t - onset) / GFP_RISE_FRAMES), 0.0, None)

    # -- static field images ----------------------------------------------------------------------
    dy_reg, dx_reg = reg_offset
    pad = max(abs(dy_reg), abs(dx_reg)) + 1
    ch, cw = h + 2 * pad, w + 2 * pad
    bf_bg = BF_BACKGROUND * (1.0 + 0.06 * _smooth_noise(rng, (h // 8 + 2, w // 8 + 2), 3.0))
    bf_bg = ndimage.zoom(bf_bg, (h / bf_bg.shape[0], w / bf_bg.shape[1]), order=1)[:h, :w].astype(np.float32)
    illum = 1.0 - 0.08 * ((np.linspace(-1, 1, h)[:, None]) ** 2 + (np.linspace(-1, 1, w)[None, :]) ** 2)
    illum = illum.astype(np.float32)
    bank = rng.standard_normal(3 * h * w + 1, dtype=np.float32)
    psf_sigma_px = 2.5 * s
    psf_area = 2 * np.pi * psf_sigma_px**2
    edge_w = 2.0 * s + 0.5
    rim_w = 3.0 * s + 0.5
    bleach_k = -math.log(1 - CS_BLEACH_TOTAL) / 71.0

    # -- divisions: their own stream, so a plate without them draws exactly what it always did -----
    c = _Cells(
        n_frames,
        radius_um=radius_um,
        radius_px=radius_px,
        speed_sd_px=speed_sd_px,
        pos=pos,
        vel=vel,
        shape_a=shape_a,
        shape_b=shape_b,
        nuc_off=nuc_off,
        nuc_r=nuc_r,
        cs_level=cs_level,
        autofluor=autofluor,
        propensity=propensity,
        uptake_tau_frames=uptake_tau_frames,
        perinuclear_rate=perinuclear_rate,
        hb=hb,
        z_rate=z_rate,
        eta=eta,
        eps=eps,
        expressing=expressing,
        gfp_onset=gfp_onset,
        plateau=plateau,
        parent=np.full(n, -1, np.int64),
        birth=np.zeros(n, np.int64),
        div_at=np.full(n, np.inf),
        generation=np.zeros(n, np.int16),
        alive=np.ones(n, bool),
        gfp_sum_true=np.zeros(n),
        gfp_sum_written=np.zeros(n),
        own_window_mask=np.zeros(n),
    )
    dividing = settings.division_rate_per_h > 0 and n > 0
    interval = settings.frame_interval_min
    div_rng = _division_rng(settings.seed, well, field_)
    mean_wait = 60.0 / (settings.division_rate_per_h * interval) if dividing else math.inf  # frames
    refractory = DAUGHTER_REFRACTORY_H * 60.0 / interval  # frames
    k_round = max(1, round(MITOSIS_ROUNDING_MIN / interval))
    k_spread = max(1, round(DAUGHTER_SPREAD_MIN / interval))
    max_alive = math.ceil(MAX_POPULATION_GROWTH * n)

    def division_frames(start: float, k: int) -> np.ndarray:
        """Frame indices (0-based) at which k cells split: ``start`` + Exp(rate); inf beyond the film."""
        t = np.maximum(np.ceil(start + div_rng.exponential(mean_wait, k)), 1.0)
        return np.where(t <= n_frames - 1, t, np.inf)

    def inherit(value: float, sd: float) -> np.ndarray:
        """Two daughters' values of a positive latent: the parent's times lognormal(0, sd) noise."""
        return value * div_rng.lognormal(0.0, sd, 2)

    def divide(p: int, ti: int) -> None:
        """Replace cell ``p`` by two daughters born at frame index ``ti``; they share its particles."""
        first = c.n
        ang = div_rng.uniform(0, 2 * np.pi)
        axis = np.array([math.sin(ang), math.cos(ang)])
        side = np.array([1.0, -1.0])
        r_um = c.radius_um[p] * math.sqrt(0.5) * div_rng.lognormal(0.0, DAUGHTER_AREA_SD / 2, 2)
        r_px = r_um / px_um
        sep = MITOTIC_RADIUS * r_px  # the rounded daughters touch at the parent's centre
        tau = inherit(c.uptake_tau_frames[p], DAUGHTER_LATENT_SD)
        hb_d = np.ceil(1.45 * r_px + 3 * s + 2).astype(int)
        c.add(
            radius_um=r_um,
            radius_px=r_px,
            speed_sd_px=inherit(c.speed_sd_px[p], DAUGHTER_LATENT_SD / 2),
            pos=c.pos[p] + (side * sep)[:, None] * axis,
            vel=0.3 * c.vel[p] + side[:, None] * axis * (0.3 * c.speed_sd_px[p]),
            shape_a=div_rng.normal(0, 1, (2, 4)) * coef_sd,
            shape_b=div_rng.normal(0, 1, (2, 4)) * coef_sd,
            nuc_off=div_rng.normal(0, 0.08, (2, 2)) * r_px[:, None],
            nuc_r=0.45 * r_px * div_rng.uniform(0.9, 1.1, 2),
            cs_level=inherit(c.cs_level[p], DAUGHTER_LATENT_SD),
            autofluor=inherit(c.autofluor[p], DAUGHTER_LATENT_SD),
            propensity=inherit(c.propensity[p], DAUGHTER_LATENT_SD),
            uptake_tau_frames=tau,
            perinuclear_rate=inherit(c.perinuclear_rate[p], DAUGHTER_LATENT_SD),
            hb=hb_d,
            z_rate=-(np.log(tau) - np.log(8.0)) / 0.35,
            eta=np.full(2, c.eta[p]),
            eps=np.full(2, c.eps[p]),
            expressing=np.full(2, c.expressing[p]),
            gfp_onset=np.maximum(15.0, c.gfp_onset[p] + div_rng.normal(0.0, DAUGHTER_ONSET_SD_FRAMES, 2)),
            plateau=c.plateau[p] * div_rng.lognormal(0.0, DAUGHTER_GFP_SD, 2),
            parent=np.full(2, p),
            birth=np.full(2, ti),
            div_at=division_frames(ti + refractory, 2),
            generation=np.full(2, c.generation[p] + 1),
            alive=np.ones(2, bool),
            gfp_sum_true=np.zeros(2),
            gfp_sum_written=np.zeros(2),
            own_window_mask=np.zeros(2),
        )
        c.alive[p] = False
        for b in hb_d:
            textures.append(_smooth_noise(div_rng, (2 * b + 1, 2 * b + 1), 3.0 * s))
            angle_idx.append(_angle_index(int(b)))
        mine = np.flatnonzero(p_cell == p)  # particles taken up or still to come: each to one daughter
        p_cell[mine] = first + (div_rng.random(mine.size) < 0.5)

    def mitotic(ti: int) -> np.ndarray:
        """Per cell, 0..1: how far it is rounded up (before its split, or as a daughter just after)."""
        pre = np.clip((ti - c.div_at + k_round + 1) / min(2, k_round), 0.0, 1.0)
        post = np.where(c.parent >= 0, np.clip(1.0 - (ti - c.birth) / k_spread, 0.0, 1.0), 0.0)
        return np.maximum(pre, post) * c.alive

    if dividing:
        c.div_at = division_frames(0.0, n)

    # -- time loop ------------------------------------------------------------------------------------
    half = geom.target_window_px // 2
    pdir = Path(plate_dir)
    inner = (slice(pad, pad + h), slice(pad, pad + w))

    cs_l, gfp_l, bf_l = (np.zeros((ch, cw), np.float32) for _ in range(3))
    depth1, depth2 = np.zeros((ch, cw), np.float32), np.zeros((ch, cw), np.float32)
    owner = np.zeros((ch, cw), np.int32)
    lab_on, lab_tmp = np.zeros((h, w), bool), np.zeros((h, w), bool)

    def noisy(signal: np.ndarray) -> np.ndarray:
        off = int(rng.integers(0, 2 * h * w))
        z = bank[off : off + h * w].reshape(h, w)
        sd = np.maximum(signal, 0.0)
        sd *= CAMERA_GAIN
        sd += READ_NOISE**2
        np.sqrt(sd, out=sd)
        sd *= z
        sd += signal
        sd += CAMERA_OFFSET + 0.5  # + 0.5: the cast below truncates, so this rounds
        np.clip(sd, 0, 65535, out=sd)
        return sd.astype(np.uint16)

    label_tw = tifffile.TiffWriter(labels_path)
    try:
        for ti in range(n_frames):
            frame = ti + 1
            if dividing and ti > 0:
                for p in np.flatnonzero(c.alive & (c.div_at == ti)):
                    if int(c.alive.sum()) >= max_alive:
                        c.div_at[p] = np.inf  # the field is full: this cell no longer divides
                        continue
                    divide(int(p), ti)
            n = c.n
            mit = mitotic(ti) if dividing else None
            m_idx = None if mit is None else np.flatnonzero(mit > 0)
            if m_idx is not None and m_idx.size:
                # rounded cells: a smaller, circular footprint, brighter CS, hardly moving
                r_eff = c.radius_px.copy()
                r_eff[m_idx] *= 1.0 - (1.0 - MITOTIC_RADIUS) * mit[m_idx]
                cs_eff = c.cs_level.copy()
                cs_eff[m_idx] *= 1.0 + MITOTIC_CS_BOOST * mit[m_idx]
            else:
                m_idx = None
                r_eff, cs_eff = c.radius_px, c.cs_level
            if ti > 0 and n:
                xi = rng.normal(0, 1, (n, 2))
                c.vel = rho_v * c.vel + math.sqrt(1 - rho_v**2) * c.speed_sd_px[:, None] * xi
                if m_idx is not None:
                    c.vel[m_idx] *= (1.0 - 0.8 * mit[m_idx])[:, None]
                pos = c.pos + c.vel
                # soft repulsion, twice per frame: packed cells do not interpenetrate (centres stay >~ 0.8 (R_i + R_j))
                live = np.flatnonzero(c.alive) if dividing else None
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
                c.shape_a = rho_shape * c.shape_a + math.sqrt(1 - rho_shape**2) * coef_sd * rng.normal(
                    0, 1, (n, 4)
                )
                c.shape_b = rho_shape * c.shape_b + math.sqrt(1 - rho_shape**2) * coef_sd * rng.normal(
                    0, 1, (n, 4)
                )
                f_pos = f_pos + rng.normal(0, 1.5 * s, f_pos.shape)
            sh_a, sh_b = c.shape_a, c.shape_b
            if m_idx is not None:
                sh_a, sh_b = sh_a.copy(), sh_b.copy()
                sh_a[m_idx] *= (1.0 - mit[m_idx])[:, None]
                sh_b[m_idx] *= (1.0 - mit[m_idx])[:, None]
            pos = c.pos
            c.track_y[ti], c.track_x[ti] = pos[:, 0], pos[:, 1]
            c.exists[ti] = c.alive
            c.track_area[ti] = np.pi * r_eff**2 * (1 + 0.5 * (sh_a**2 + sh_b**2).sum(axis=1))
            g_now = gfp_level(ti, c.plateau, c.gfp_onset)
            c.track_gfp[ti] = g_now
            bleach = math.exp(-bleach_k * ti)
            last = ti == n_frames - 1
            alive = c.alive.tolist()

            for layer in (cs_l, gfp_l, bf_l):
                layer.fill(0.0)
            # the outline radius on N_ANGLES angles for every cell: (n, N_ANGLES + 1), periodic
            prof = 1.0 + sh_a @ harm_cos + sh_b @ harm_sin
            r_lut = (r_eff[:, None] * np.clip(prof, 0.6, 1.45)).astype(np.float32)
            r_lut = np.concatenate([r_lut, r_lut[:, :1]], axis=1)
            # Pass 1: each cell's signed depth inside its outline (px) in its box; per pixel the deepest
            # cell (the owner) and the second-deepest depth. A pixel belongs to at most one cell: touching
            # cells partition space like a packed monolayer (the boundary lies where the two depths are equal).
            depth1.fill(-1e6)
            depth2.fill(-1e6)
            owner.fill(-1)
            boxes = []
            for i in range(n):
                if not alive[i]:
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
                sd_in = r_lut[i][angle_idx[i][loc]]
                sd_in -= rho  # px inside the outline
                d1, d2, ow = depth1[ya:yb, xa:xb], depth2[ya:yb, xa:xb], owner[ya:yb, xa:xb]
                win = sd_in > d1
                np.maximum(d2, np.where(win, d1, sd_in), out=d2)
                d1[win] = sd_in[win]
                ow[win] = i
                boxes.append((ya, yb, xa, xb, loc, dyv, dxv, sd_in))
            # The true labels: a pixel is its owner's where the owner's stain is above half (the cell is
            # deeper there than both its outline and the boundary with the second-deepest cell).
            d1_in = depth1[inner]
            np.greater(d1_in, depth2[inner], out=lab_on)
            lab_on &= np.greater(d1_in, 0.0, out=lab_tmp)
            lab = owner[inner].astype(np.uint8 if n < 255 else np.uint16 if n < 65535 else np.uint32)
            lab += 1  # owner index + 1 (no owner: -1 wraps round to 0)
            lab *= lab_on
            c.label_area[ti] = np.bincount(lab.ravel(), minlength=n + 1)[1:]
            label_tw.write(lab, compression="zlib")
            # Pass 2: render each cell on the pixels it owns, with its depth measured to the nearer of its
            # outline and the boundary with the second-deepest cell ((d1 - d2) / 2), so the stain falls off
            # towards every membrane and a thin dim seam separates touching cells.
            for i in range(n):
                if boxes[i] is None:
                    continue
                ya, yb, xa, xb, loc, dyv, dxv, sd_in = boxes[i]
                mi = 0.0 if mit is None else float(mit[i])
                mine = owner[ya:yb, xa:xb] == i
                eff = np.minimum(sd_in, 0.5 * (sd_in - depth2[ya:yb, xa:xb]))
                mask = _clip01(eff * (1.0 / edge_w) + 0.5)
                mask *= mine
                thick = _clip01(eff * (1.0 / (0.25 * r_eff[i])))
                dyn, dxn = dyv - np.float32(c.nuc_off[i, 0]), dxv - np.float32(c.nuc_off[i, 1])
                nuc = _clip01((c.nuc_r[i] - np.sqrt(dyn * dyn + dxn * dxn)) * (1.0 / edge_w) + 0.5)
                if mi > 0:
                    nuc *= 1.0 - mi  # condensed chromatin: no dim nucleus in a rounded cell
                tex = textures[i][loc]
                cs_cell = mask * np.float32(cs_eff[i])
                cs_cell *= 0.35 + 0.65 * thick
                cs_cell *= 1.0 - 0.35 * nuc
                cs_cell *= 1.0 + 0.25 * tex
                cs_l[ya:yb, xa:xb] += cs_cell
                gfp_cell = mask * (1.0 + 0.1 * tex)
                if last:
                    wy0, wx0 = int(round(pos[i, 0])) - half + pad, int(round(pos[i, 1])) - half + pad
                    sy = slice(max(wy0, ya) - ya, max(min(wy0 + 2 * half, yb) - ya, 0))
                    sx = slice(max(wx0, xa) - xa, max(min(wx0 + 2 * half, xb) - xa, 0))
                    c.own_window_mask[i] = float(gfp_cell[sy, sx].sum())
                gfp_cell *= np.float32(c.autofluor[i] + g_now[i])
                gfp_l[ya:yb, xa:xb] += gfp_cell
                u = sd_in * (1.0 / rim_w)
                bump_in = np.maximum(1.0 - (u - 1.0) ** 2, 0.0)
                bump_out = np.maximum(1.0 - (u + 1.0) ** 2, 0.0)
                halo = 200.0 * (1.0 + mi) if mi > 0 else 200.0  # a rounded cell is phase-bright
                bf_cell = halo * bump_out * bump_out - 260.0 * bump_in * bump_in
                bf_cell += _clip01(sd_in * (1.0 / edge_w) + 0.5) * (-30.0 + 25.0 * tex)
                bf_l[ya:yb, xa:xb] += bf_cell

            # LNP particles: positions in image coordinates, splatted bilinearly, blurred by the PSF
            ys_list, xs_list, amp_list = [], [], []
            if n_p:
                age = ti - p_t0
                on = age >= 0
                ci = p_cell[on]
                rf = p_rf_end[on] + (p_rf0[on] - p_rf_end[on]) * np.exp(-c.perinuclear_rate[ci] * age[on])
                rr = rf * r_eff[ci]
                ys_list.append(pos[ci, 0] + c.nuc_off[ci, 0] * 0.5 + rr * np.sin(p_angle[on]))
                xs_list.append(pos[ci, 1] + c.nuc_off[ci, 1] * 0.5 + rr * np.cos(p_angle[on]))
                amp_list.append(p_peak[on] * psf_area)
                c.track_nlnp[ti] = np.bincount(ci, minlength=n)
                sums = np.bincount(ci, weights=rf, minlength=n)
                with np.errstate(invalid="ignore", divide="ignore"):
                    c.track_rf[ti] = np.where(
                        c.track_nlnp[ti] > 0, sums / np.maximum(c.track_nlnp[ti], 1), np.nan
                    )
            if n_free:
                alive_f = f_end > ti
                ys_list.append(f_pos[alive_f, 0])
                xs_list.append(f_pos[alive_f, 1])
                amp_list.append(f_peak[alive_f] * psf_area)
            lnp = np.zeros(h * w)
            if ys_list:
                ys, xs, amp = np.concatenate(ys_list), np.concatenate(xs_list), np.concatenate(amp_list)
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
            lnp_img = ndimage.gaussian_filter(
                lnp.reshape(h, w).astype(np.float32), psf_sigma_px, truncate=3.0
            )

            bf_view = (slice(pad - dy_reg, pad - dy_reg + h), slice(pad - dx_reg, pad - dx_reg + w))
            signals = {
                "GFP": (3.0 + gfp_l[inner]) * illum,
                "LNP": (8.0 + lnp_img) * illum,
                "CS": (20.0 + cs_l[inner]) * illum * bleach + 0.04 * lnp_img,
                "BF": bf_bg + bf_l[bf_view],
            }
            images = {name: noisy(sig) for name, sig in signals.items()}
            if last and n:
                truth_img = signals["GFP"] + CAMERA_OFFSET
                written = images["GFP"].astype(np.float64)
                for i in range(n):
                    if not alive[i]:
                        continue
                    wy0, wx0 = int(round(pos[i, 0])) - half, int(round(pos[i, 1])) - half
                    sy, sx = (
                        slice(max(wy0, 0), max(wy0 + 2 * half, 0)),
                        slice(max(wx0, 0), max(wx0 + 2 * half, 0)),
                    )
                    c.gfp_sum_true[i] = float(truth_img[sy, sx].sum(dtype=np.float64))
                    c.gfp_sum_written[i] = float(written[sy, sx].sum())
            if frame in missing:
                continue
            for name, img in images.items():
                num = CHANNELS[name]
                path = pdir / image_filename(settings.plate, well, frame, field_, num)
                if (frame, num) in unreadable:
                    path.write_bytes(b"\x00GARBAGE" + rng.bytes(4096))
                else:
                    tifffile.imwrite(path, img, compression=settings.compression, photometric="minisblack")
    finally:
        label_tw.close()

    # -- oracle -----------------------------------------------------------------------------------
    n = c.n
    eta, z_rate, gfp_sum_true = c.eta, c.z_rate, c.gfp_sum_true
    oracle_prob = np.where(is_control, 0.0, ndtr(eta)) if n else np.zeros(0)
    oracle_log = np.log(np.maximum(gfp_sum_true, 1.0))
    if n and not is_control:
        mc = np.random.default_rng(np.random.SeedSequence(entropy=settings.seed, spawn_key=(7777, field_)))
        k = 400
        e = mc.normal(0, 1, (k, 1))
        pos_mc = eta[None, :] + e > 0
        plat = np.where(
            pos_mc,
            GFP_PLATEAU_MEDIAN * np.exp(GFP_LEVEL_SLOPE * (eta + e) + mc.normal(0, GFP_LEVEL_SD, (k, n))),
            0,
        )
        onset = np.maximum(15.0, 18.0 + mc.gamma(2.0, 4.0, (k, n)) - 3.0 * z_rate)
        g72 = gfp_level(n_frames - 1, plat, onset)
        base = gfp_sum_true - c.track_gfp[-1] * c.own_window_mask
        oracle_log = np.log(np.maximum(base[None, :] + g72 * c.own_window_mask[None, :], 1.0)).mean(axis=0)

    # -- truth rows: cells whose centre is in the image at some frame --------------------------------
    exists = c.exists  # (frames, cells): the cell is alive (born, not yet divided)
    track_y, track_x = c.track_y, c.track_x
    in_image = (track_y >= 0) & (track_y < h) & (track_x >= 0) & (track_x < w) & exists
    keep = in_image.any(axis=0)
    m = geom.edge_margin_px
    in_bounds = (track_y >= m) & (track_y < h - m) & (track_x >= m) & (track_x < w - m) & exists
    idx = np.flatnonzero(keep)
    true_id = np.arange(1, idx.size + 1, dtype=np.int32)
    first_ti = np.argmax(exists, axis=0)
    last_ti = n_frames - 1 - np.argmax(exists[::-1], axis=0)
    at_end = exists[-1]  # cells that divided earlier have no last-frame outcome (NaN)
    cells = {
        "true_id": true_id,
        "in_image_first": in_image[0, idx],
        "in_image_last": in_image[-1, idx],
        "in_bounds_last": in_bounds[-1, idx],
        "radius_um": c.radius_um[idx],
        "speed_sd_px": c.speed_sd_px[idx],
        "uptake_propensity": c.propensity[idx],
        "uptake_tau_frames": c.uptake_tau_frames[idx],
        "perinuclear_rate_per_frame": c.perinuclear_rate[idx],
        "n_lnp_particles": c.track_nlnp[last_ti[idx], idx].astype(np.int32),
        "n_lnp_by_frame20": c.track_nlnp[min(19, n_frames - 1), idx],
        "cs_level": c.cs_level[idx],
        "autofluorescence": c.autofluor[idx],
        "eta": eta[idx],
        "competence_noise": c.eps[idx],
        "gfp_onset_frame": c.gfp_onset[idx] + 1.0,
        "gfp_plateau": c.plateau[idx],
        "gfp_level_last": np.where(at_end, c.track_gfp[-1], np.nan)[idx],
        "gfp_sum_true": np.where(at_end, gfp_sum_true, np.nan)[idx],
        "gfp_sum_written": np.where(at_end, c.gfp_sum_written, np.nan)[idx],
        "expressing": c.expressing[idx],
        "oracle_prob": oracle_prob[idx],
        "oracle_log_gfp": np.where(at_end, oracle_log, np.nan)[idx],
    }
    rows = exists[:, idx].ravel()
    frames = np.repeat(np.arange(1, n_frames + 1, dtype=np.int16), idx.size)
    tracks = {
        "true_id": np.tile(true_id, n_frames)[rows],
        "frame": frames[rows],
        "y_px": track_y[:, idx].ravel()[rows],
        "x_px": track_x[:, idx].ravel()[rows],
        "area_px": c.track_area[:, idx].ravel()[rows],
        "in_image": in_image[:, idx].ravel()[rows],
        "in_bounds": in_bounds[:, idx].ravel()[rows],
        "n_lnp": c.track_nlnp[:, idx].ravel()[rows],
        "lnp_radial_frac": c.track_rf[:, idx].ravel()[rows],
        "gfp_level": c.track_gfp[:, idx].ravel()[rows],
    }

    # -- lineage and labels: also the cells only partly visible (centre never in the image) ------------
    edge = np.flatnonzero((c.label_area > 0).any(axis=0) & ~keep)
    ids = np.zeros(n, np.int32)
    ids[idx] = true_id
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
        "divides": ~exists[-1, labelled],
        "in_cells": keep[labelled],
        "mask_value": (labelled + 1).astype(np.int32),
    }
    la = c.label_area[:, labelled]
    fr, col = np.nonzero(la)
    label_tracks = {
        "true_id": ids[labelled][col],
        "frame": (fr + 1).astype(np.int16),
        "label_area_px": la[fr, col].astype(np.int32),
        "y_px": track_y[fr, labelled[col]],
        "x_px": track_x[fr, labelled[col]],
    }
    return _FieldResult(well, field_, cells, tracks, lineage, label_tracks)


# ------------------------------------------------------------------------------------------------
# Plate
# ------------------------------------------------------------------------------------------------
_BEGIN = datetime(2024, 5, 6, 9, 0, 0, tzinfo=timezone(timedelta(hours=2)))


def _records(settings: SimulationSettings) -> list[cvmeta.MeasurementRecord]:
    """One mlf record per image written (missing frames excluded), in acquisition order."""
    missing = {(f.well, t) for f in settings.fault_specs if f.kind == "missing_frames" for t in f.frames}
    width_um = settings.width_px * settings.pixel_size_um
    height_um = settings.height_px * settings.pixel_size_um
    per_image_s = 0.25
    out = []
    for frame in range(1, settings.n_frames + 1):
        t0 = _BEGIN + timedelta(minutes=settings.frame_interval_min * (frame - 1))
        k = 0
        for well in settings.wells:
            row, col = split_well(well)
            for f in range(1, settings.n_fields + 1):
                for num in CHANNELS.values():
                    k += 1
                    if (well, frame) in missing:
                        continue
                    stamp = (t0 + timedelta(seconds=per_image_s * k)).isoformat(timespec="milliseconds")
                    out.append(
                        cvmeta.MeasurementRecord(
                            filename=image_filename(settings.plate, well, frame, f, num),
                            row=ord(row) - ord("A") + 1,
                            column=col,
                            time_point=frame,
                            field=f,
                            z_index=1,
                            channel=num,
                            time=stamp,
                            x_um=round((f - 1) * width_um * 1.1 - width_um * 0.55, 1),
                            y_um=round(height_um * 0.5, 1),
                            z_um=0.0,
                        )
                    )
    return out


def _write_metadata(settings: SimulationSettings, plate_dir: Path) -> None:
    records = _records(settings)
    cvmeta.write_measurement_data(plate_dir / cvmeta.MLF_NAME, records)
    end = _BEGIN + timedelta(minutes=settings.frame_interval_min * settings.n_frames)
    detail = cvmeta.MeasurementDetail(
        title=settings.plate,
        target_system="CV7000",
        begin_time=_BEGIN.isoformat(),
        end_time=end.isoformat(),
        time_point_count=settings.n_frames,
        field_count=settings.n_fields,
        z_count=1,
        row_count=16 if any(r > "H" for r in settings.rows) else 8,
        column_count=24 if max(settings.columns) > 12 else 12,
        channels={
            num: cvmeta.ChannelDetail(num, settings.pixel_size_um, settings.width_px, settings.height_px)
            for num in CHANNELS.values()
        },
    )
    cvmeta.write_measurement_detail(plate_dir / cvmeta.MRF_NAME, detail)


class _NoBar:
    def update(self, n: int = 1) -> None:
        """Nothing to show."""


#: Subfolder of ``truth/`` holding one true label stack per field (see :func:`label_stack_name`).
LABELS_DIR = "labels"


def label_stack_name(well: str, field_: int) -> str:
    """Path of a field's true label stack inside ``truth/``: ``labels/{well}_F{field:03d}.tif``."""
    return f"{LABELS_DIR}/{well}_F{field_:03d}.tif"


def _lineage_frame(settings: SimulationSettings, results: list[_FieldResult], which: str) -> pl.DataFrame:
    """The ``lineage`` or ``label_tracks`` truth of every field as one DataFrame (ids Int32, frames Int16)."""
    parts = []
    for r in results:
        df = pl.DataFrame(getattr(r, which)).with_columns(
            pl.lit(settings.plate, pl.String).alias("plate"),
            pl.lit(r.well, pl.String).alias("well"),
            pl.lit(r.field, pl.Int16).alias("field"),
        )
        parts.append(df.select("plate", "well", "field", *getattr(r, which)))
    out = pl.concat(parts).with_columns(
        pl.col("true_id").cast(pl.Int32), pl.col("^.*_frame$|^frame$").cast(pl.Int16)
    )
    if which == "lineage":
        out = out.with_columns(
            pl.when(pl.col("parent_id") > 0).then(pl.col("parent_id")).cast(pl.Int32).alias("parent_id"),
            pl.col("lineage_id").cast(pl.Int32),
            pl.col("generation").cast(pl.Int16),
            pl.col("mask_value").cast(pl.Int32),
        )
    return out


def _run_field(args: tuple) -> _FieldResult:
    return _simulate_field(*args)


def _threaded_runtime_loaded() -> bool:
    """Whether a library whose threads make ``fork`` unsafe is already imported in this process."""
    return any(m in sys.modules for m in ("jax", "jaxlib", "xgboost", "torch", "distributed"))


def simulate_plate(
    out_dir: str | os.PathLike,
    settings: SimulationSettings = SimulationSettings(),  # noqa: B008 - frozen, so a safe default
    *,
    show_progress: bool = True,
    ctc_ground_truth: bool = True,
) -> SimulatedPlate:
    """Write a simulated plate: ``out_dir/<plate>/`` (TIFFs, mlf, mrf), ``plate_map.csv`` and ``truth/``
    (with ``ctc_ground_truth``, also each field's truth in the Cell Tracking Challenge layout under
    ``truth/ctc/``, see :func:`lnpstore.truth.write_ctc_ground_truth`).

    Existing files of the same names are overwritten. Fields are written by ``settings.workers``
    processes (default up to 2); the output does not depend on the number of workers.
    """
    out = Path(out_dir)
    plate_dir = out / settings.plate
    truth_dir = out / "truth"
    plate_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    (truth_dir / LABELS_DIR).mkdir(exist_ok=True)
    reg = registration_offset_px(settings)
    units = [
        (settings, well, dose, f, str(plate_dir), reg, str(truth_dir / label_stack_name(well, f)))
        for well, dose in settings.wells.items()
        for f in range(1, settings.n_fields + 1)
    ]
    workers = settings.workers or min(2, os.cpu_count() or 1)
    workers = max(1, min(workers, len(units)))
    if workers > 1 and _threaded_runtime_loaded():
        # Forking a process that runs JAX/XLA (or another multithreaded runtime) can deadlock the
        # child; such callers (tests, notebooks that trained first) get the serial path instead.
        log.debug("simulate: a multithreaded runtime is loaded; writing fields serially")
        workers = 1
    results: list[_FieldResult] = []
    pbar_ctx = (
        bar(desc=f"simulate {settings.plate}", total=len(units), unit="field") if show_progress else None
    )
    with pbar_ctx or contextlib.nullcontext(_NoBar()) as pbar:
        if workers == 1:
            for u in units:
                results.append(_run_field(u))
                pbar.update(1)
        else:
            # fork: the workers use only numpy/scipy/tifffile, and spawn would re-run an unguarded __main__
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            ctx = mp.get_context(method)
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
                for r in ex.map(_run_field, units):
                    results.append(r)
                    pbar.update(1)
    _write_metadata(settings, plate_dir)

    wells = settings.wells
    pl.DataFrame(
        {
            "well": list(wells),
            "dose_ng": list(wells.values()),
            "is_control": [d == 0 for d in wells.values()],
        }
    ).write_csv(out / "plate_map.csv")

    cells, tracks = [], []
    for r in results:
        dose = wells[r.well]
        head = [
            pl.lit(settings.plate, pl.String).alias("plate"),
            pl.lit(r.well, pl.String).alias("well"),
            pl.lit(r.field, pl.Int16).alias("field"),
        ]
        c = pl.DataFrame(r.cells).with_columns(
            *head,
            pl.lit(dose, pl.Float64).alias("dose_ng"),
            pl.lit(dose == 0, pl.Boolean).alias("is_control"),
        )
        cells.append(c.select("plate", "well", "field", "dose_ng", "is_control", *r.cells))
        t = pl.DataFrame(r.tracks).with_columns(*head)
        tracks.append(t.select("plate", "well", "field", *r.tracks))
    cells_df = pl.concat(cells).with_columns(pl.col("true_id").cast(pl.Int32))
    tracks_df = pl.concat(tracks).with_columns(
        pl.col("true_id").cast(pl.Int32), pl.col("frame").cast(pl.Int16)
    )
    cells_df.write_parquet(truth_dir / "cells.parquet")
    tracks_df.write_parquet(truth_dir / "tracks.parquet")
    _lineage_frame(settings, results, "lineage").write_parquet(truth_dir / "lineage.parquet")
    _lineage_frame(settings, results, "label_tracks").write_parquet(truth_dir / "label_tracks.parquet")
    dy, dx = reg
    (truth_dir / "registration.json").write_text(
        json.dumps(
            {
                "bf_offset_dy_px": dy,
                "bf_offset_dx_px": dx,
                "correction_dy_px": -dy,
                "correction_dx_px": -dx,
                "convention": "BF content appears at the fluorescence position + (bf_offset_dy_px, bf_offset_dx_px);"
                " shifting BF by (correction_dy_px, correction_dx_px) aligns it (the registration table's dy_px, dx_px,"
                " and what skimage phase_cross_correlation(reference=CS, moving=BF) returns)",
            },
            indent=2,
        )
    )
    geom = geometry_for(settings.pixel_size_um)
    (truth_dir / "settings.json").write_text(
        json.dumps(
            {
                "settings": settings.to_dict(),
                "derived": {
                    "pixel_size_um": settings.pixel_size_um,
                    "width_px": settings.width_px,
                    "height_px": settings.height_px,
                    "cells_per_field": settings.n_cells,
                    "geometry": geom.to_dict(),
                    "gfp_sum_definition": "sum over the target window (geometry.target_window_px square, rows "
                    "round(y) - w/2 .. round(y) + w/2 - 1, same for x) of the last frame's GFP: gfp_sum_true from "
                    "the noise-free image including the camera offset, gfp_sum_written from the written image",
                },
                "package_version": __version__,
            },
            indent=2,
        )
    )
    if ctc_ground_truth:
        from lnpstore.simulate.truth import write_ctc_ground_truth

        write_ctc_ground_truth(truth_dir)
    return SimulatedPlate(
        plate_dir=plate_dir, plate_map=out / "plate_map.csv", truth_dir=truth_dir, settings=settings
    )


def load_truth(truth_dir: str | os.PathLike) -> dict[str, pl.DataFrame]:
    """The truth of a simulated plate as DataFrames: ``cells``, ``tracks``, ``registration`` (one row),
    ``lineage`` (one row per true cell: parent, lineage, first and last frame) and ``label_tracks`` (one
    row per cell and frame in the true label images; absent in truth folders written before 2026-12).

    The label images themselves: :func:`lnpstore.truth.true_label_frames`.
    """
    d = Path(truth_dir)
    if not (d / "cells.parquet").exists():
        raise FileNotFoundError(
            f"{d}: no cells.parquet; not a simulator truth folder (expected out_dir/truth)"
        )
    reg = json.loads((d / "registration.json").read_text())
    reg.pop("convention", None)
    out = {
        "cells": pl.read_parquet(d / "cells.parquet"),
        "tracks": pl.read_parquet(d / "tracks.parquet"),
        "registration": pl.DataFrame({k: [v] for k, v in reg.items()}),
    }
    if (d / "lineage.parquet").exists():
        out["lineage"] = pl.read_parquet(d / "lineage.parquet")
        out["label_tracks"] = pl.read_parquet(d / "label_tracks.parquet")
    else:  # written before divisions: every cell a founder that lives through the film
        out["lineage"] = (
            out["tracks"]
            .group_by("plate", "well", "field", "true_id", maintain_order=True)
            .agg(pl.col("frame").min().alias("first_frame"), pl.col("frame").max().alias("last_frame"))
            .with_columns(
                pl.lit(None, pl.Int32).alias("parent_id"),
                pl.col("true_id").alias("lineage_id"),
                pl.lit(0, pl.Int16).alias("generation"),
                pl.lit(False).alias("divides"),
                pl.lit(True).alias("in_cells"),
            )
        )
    return out
