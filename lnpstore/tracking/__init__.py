"""Cell tracking: seeds, window watershed, linking, divisions and lineage, label movies, the plate stage.

Where things live (one job per module):

- :mod:`~lnpstore.tracking.settings`: :class:`TrackSettings` and the tracks contract's constants
- :mod:`~lnpstore.tracking.seeding`: frame-1 seeds (automatic or from a CSV); the foreground
- :mod:`~lnpstore.tracking.segmentation`: the window watershed of one cell
- :mod:`~lnpstore.tracking.discovery`: where new cells can be (unexplained and leftover foreground)
- :mod:`~lnpstore.tracking.divisions`: the division tests
- :mod:`~lnpstore.tracking.field`: the per-field tracker (one frame at a time) and :func:`track_field`
- :mod:`~lnpstore.tracking.stack`: :func:`track_stack` for any time-lapse and the track-stack folder
- :mod:`~lnpstore.tracking.stage`: the plate stage :func:`track_plate` and the label movies' paths
- :mod:`~lnpstore.tracking.labels`, :mod:`~lnpstore.tracking.lineage`, :mod:`~lnpstore.tracking.spots`
"""

from lnpstore.store.errors import TrackingError
from lnpstore.tracking.field import add_quality_flags, track_field
from lnpstore.tracking.seeding import SeedSettings
from lnpstore.tracking.settings import FIELD_COLUMNS, NODE_ID_STRIDE, TRACK_CHANNELS, TrackSettings
from lnpstore.tracking.spots import SpotSettings
from lnpstore.tracking.stack import StackRun, track_stack, track_stack_to_folder
from lnpstore.tracking.stage import (
    TrackReport,
    labels_path_for,
    load_field_labels,
    track_field_job,
    track_plate,
)

__all__ = [
    "FIELD_COLUMNS",
    "NODE_ID_STRIDE",
    "TRACK_CHANNELS",
    "SeedSettings",
    "SpotSettings",
    "StackRun",
    "TrackReport",
    "TrackSettings",
    "TrackingError",
    "add_quality_flags",
    "labels_path_for",
    "load_field_labels",
    "track_field",
    "track_field_job",
    "track_plate",
    "track_stack",
    "track_stack_to_folder",
]
