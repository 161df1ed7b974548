"""The numbers of the simulator's generative model (``docs/simulator.md``): field size, densities, camera,
GFP model and divisions. Lengths are in px at the reference pixel size (0.1625 um, ``scale`` 1) unless
their name says otherwise; intensities in camera counts."""

from __future__ import annotations

import math

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

# Cell shape and motion.
#: Angles of a cell's outline table (its radius per angle).
N_ANGLES = 256
#: AR(1) coefficient of the velocity per frame (persistent random walk).
VELOCITY_PERSISTENCE = 0.8
#: AR(1) coefficient of the outline's harmonic coefficients per frame (slow deformation).
SHAPE_PERSISTENCE = 0.95
