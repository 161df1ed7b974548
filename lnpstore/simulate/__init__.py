"""The simulated plate: a realistic CV7000 plate folder with ground truth (the demo and test fixture).

One job per module: ``settings`` (what defines a plate), ``constants`` (the model's numbers),
``streams`` (random streams), ``cells``, ``particles``, ``expression``, ``divisions``, ``render`` (the
generative model), ``field`` (one field's movie), ``field_truth`` (its truth rows), ``metadata`` (mlf,
mrf), ``plate`` (:func:`simulate_plate`) and ``truth`` (reading the truth folder). ``simulator`` keeps
the names of the former single module importable.
"""

from lnpstore.simulate.constants import HEPG2_DIVISION_RATE_PER_H
from lnpstore.simulate.plate import SimulatedPlate, simulate_plate
from lnpstore.simulate.render import registration_offset_px
from lnpstore.simulate.settings import FaultSpec, SimulationSettings
from lnpstore.simulate.truth import (
    LABELS_DIR,
    TRUE_TRACK_COLUMNS,
    label_stack_name,
    load_truth,
    match_cells_to_truth,
    true_label_frames,
    true_tracks,
    write_ctc_ground_truth,
)

__all__ = [
    "HEPG2_DIVISION_RATE_PER_H",
    "LABELS_DIR",
    "TRUE_TRACK_COLUMNS",
    "FaultSpec",
    "SimulatedPlate",
    "SimulationSettings",
    "label_stack_name",
    "load_truth",
    "match_cells_to_truth",
    "registration_offset_px",
    "simulate_plate",
    "true_label_frames",
    "true_tracks",
    "write_ctc_ground_truth",
]
