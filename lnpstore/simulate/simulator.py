"""The simulator's names as the single-module simulator (lnpstore <= 0.1) exported them, re-exported from
the modules that hold them now (kept so that existing imports work; new code imports from
:mod:`lnpstore.simulate`). Where things live:

- :mod:`~lnpstore.simulate.settings`: :class:`SimulationSettings`, presets, :class:`FaultSpec`
- :mod:`~lnpstore.simulate.constants`: the generative model's numbers
- :mod:`~lnpstore.simulate.streams`: the random streams per field, divisions, oracle, plate
- :mod:`~lnpstore.simulate.cells`: latents, placement, outlines, motion
- :mod:`~lnpstore.simulate.particles`: LNP particles taken up and free
- :mod:`~lnpstore.simulate.expression`: the GFP model and the oracle
- :mod:`~lnpstore.simulate.divisions`: divisions and daughters
- :mod:`~lnpstore.simulate.render`: the images of each channel, true labels, camera, BF offset
- :mod:`~lnpstore.simulate.field`: one field's movie, frame by frame
- :mod:`~lnpstore.simulate.field_truth`: one field's truth rows
- :mod:`~lnpstore.simulate.metadata`: mlf and mrf
- :mod:`~lnpstore.simulate.plate`: :func:`simulate_plate`
- :mod:`~lnpstore.simulate.truth`: reading the truth folder, CTC layout, matching
"""

from __future__ import annotations

from lnpstore.simulate.constants import (
    BF_BACKGROUND,
    CAMERA_GAIN,
    CAMERA_OFFSET,
    CELL_DENSITY_PER_UM2,
    COMPRESSIONS,
    CONTROL_LNP_FRACTION,
    CS_BLEACH_TOTAL,
    DAUGHTER_AREA_SD,
    DAUGHTER_GFP_SD,
    DAUGHTER_LATENT_SD,
    DAUGHTER_ONSET_SD_FRAMES,
    DAUGHTER_REFRACTORY_H,
    DAUGHTER_SPREAD_MIN,
    ETA_INTERCEPT,
    ETA_LOG_COUNT,
    ETA_LOG_COUNT_CENTRE,
    ETA_PERINUCLEAR,
    ETA_RATE,
    ETA_SIZE,
    FAULT_KINDS,
    FREE_LNP_DENSITY_PER_UM2,
    GFP_LEVEL_SD,
    GFP_LEVEL_SLOPE,
    GFP_PLATEAU_MEDIAN,
    GFP_RISE_FRAMES,
    HEPG2_DIVISION_RATE_PER_H,
    HEPG2_DOUBLING_H,
    MAX_DIVISION_RATE_PER_H,
    MAX_POPULATION_GROWTH,
    MITOSIS_ROUNDING_MIN,
    MITOTIC_CS_BOOST,
    MITOTIC_RADIUS,
    N_ANGLES,
    READ_NOISE,
    REF_FIELD_HEIGHT_PX,
    REF_FIELD_WIDTH_PX,
    TOP_DOSE_NG,
)
from lnpstore.simulate.plate import SimulatedPlate, simulate_plate
from lnpstore.simulate.render import registration_offset_px
from lnpstore.simulate.settings import FaultSpec, SimulationSettings
from lnpstore.simulate.truth import LABELS_DIR, label_stack_name, load_truth

__all__ = [
    "BF_BACKGROUND",
    "CAMERA_GAIN",
    "CAMERA_OFFSET",
    "CELL_DENSITY_PER_UM2",
    "COMPRESSIONS",
    "CONTROL_LNP_FRACTION",
    "CS_BLEACH_TOTAL",
    "DAUGHTER_AREA_SD",
    "DAUGHTER_GFP_SD",
    "DAUGHTER_LATENT_SD",
    "DAUGHTER_ONSET_SD_FRAMES",
    "DAUGHTER_REFRACTORY_H",
    "DAUGHTER_SPREAD_MIN",
    "ETA_INTERCEPT",
    "ETA_LOG_COUNT",
    "ETA_LOG_COUNT_CENTRE",
    "ETA_PERINUCLEAR",
    "ETA_RATE",
    "ETA_SIZE",
    "FAULT_KINDS",
    "FREE_LNP_DENSITY_PER_UM2",
    "GFP_LEVEL_SD",
    "GFP_LEVEL_SLOPE",
    "GFP_PLATEAU_MEDIAN",
    "GFP_RISE_FRAMES",
    "HEPG2_DIVISION_RATE_PER_H",
    "HEPG2_DOUBLING_H",
    "LABELS_DIR",
    "MAX_DIVISION_RATE_PER_H",
    "MAX_POPULATION_GROWTH",
    "MITOSIS_ROUNDING_MIN",
    "MITOTIC_CS_BOOST",
    "MITOTIC_RADIUS",
    "N_ANGLES",
    "READ_NOISE",
    "REF_FIELD_HEIGHT_PX",
    "REF_FIELD_WIDTH_PX",
    "TOP_DOSE_NG",
    "FaultSpec",
    "SimulatedPlate",
    "SimulationSettings",
    "label_stack_name",
    "load_truth",
    "registration_offset_px",
    "simulate_plate",
]
