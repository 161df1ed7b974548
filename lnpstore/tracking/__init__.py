"""Cell tracking: seeds, window watershed, linking, divisions and lineage, label movies, the plate stage.

``track_stack`` tracks any single-channel time-lapse; ``track_plate`` is the plate stage.
"""

from lnpstore.tracking.tracker import TrackingError, TrackSettings, track_field, track_plate, track_stack

__all__ = ["TrackSettings", "TrackingError", "track_field", "track_plate", "track_stack"]
