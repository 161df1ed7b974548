"""The study's window sizes, defined at its pixel size and scaled to any other.

The published method used 0.1625 um pixels: a 200 px tracking window, 192 px crops, a 96 px central
target window and a 96 px edge margin. Everything downstream takes these in px *for the plate's own
pixel size*, computed here, so that a plate simulated at ``--scale 0.5`` (0.325 um pixels) uses
100 / 96 / 48 / 48 px.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

REFERENCE_PIXEL_SIZE_UM = 0.1625
TRACK_WINDOW_REF_PX = 200
CROP_REF_PX = 192
TARGET_WINDOW_REF_PX = 96
EDGE_MARGIN_REF_PX = 96
FRAME_INTERVAL_MIN = 10.0


def _even(x: float) -> int:
    """Round to the nearest even integer (windows are centred, so even sizes keep them symmetric)."""
    return max(2, int(round(x / 2.0)) * 2)


@dataclass(frozen=True)
class Geometry:
    """Window sizes in px for one pixel size (um)."""

    pixel_size_um: float
    track_window_px: int
    crop_px: int
    target_window_px: int
    edge_margin_px: int

    @property
    def scale(self) -> float:
        """Pixels per reference pixel: 1.0 at 0.1625 um, 0.5 at 0.325 um."""
        return REFERENCE_PIXEL_SIZE_UM / self.pixel_size_um

    def to_dict(self) -> dict:
        return asdict(self)


def geometry_for(pixel_size_um: float) -> Geometry:
    """The study's windows for a plate with ``pixel_size_um`` pixels."""
    if not pixel_size_um > 0:
        raise ValueError(f"pixel_size_um must be positive, got {pixel_size_um}")
    s = REFERENCE_PIXEL_SIZE_UM / pixel_size_um
    return Geometry(
        pixel_size_um=float(pixel_size_um),
        track_window_px=_even(TRACK_WINDOW_REF_PX * s),
        crop_px=_even(CROP_REF_PX * s),
        target_window_px=_even(TARGET_WINDOW_REF_PX * s),
        edge_margin_px=int(round(EDGE_MARGIN_REF_PX * s)),
    )
