"""The Yokogawa CV7000/CV8000 file layout: image file names and the channel map.

A file name is ``{plate}_{well}_T{t:04d}F{f:03d}L{l:02d}A{a:02d}Z{z:02d}C{c:02d}.tif``. The plate name
may itself contain underscores, ``#`` and other characters (``AssayPlate_Greiner_#781091``), so the
name is parsed from the right. Matching ignores case (``.TIF``, ``t0001f001...``), as the
instrument's Windows file system does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The instrument channel numbers of this assay (the CV7000 protocol of the study).
CHANNELS: dict[str, int] = {"GFP": 5, "LNP": 6, "CS": 7, "BF": 9}
CHANNEL_BY_NUMBER: dict[int, str] = {v: k for k, v in CHANNELS.items()}
#: The order of the crop tensor's channels and of the VGG input slots (see models.extractor).
CROP_CHANNELS: tuple[str, ...] = ("CS", "BF", "LNP")

_NAME_RE = re.compile(
    r"^(?P<plate>.+)_(?P<well>[A-Pa-p]\d{2})_T(?P<t>\d{4})F(?P<f>\d{3})L(?P<l>\d{2})A(?P<a>\d{2})"
    r"Z(?P<z>\d{2})C(?P<c>\d{2})\.tiff?$",
    re.IGNORECASE,
)
WELL_RE = re.compile(r"^([A-P])(\d{2})$")


@dataclass(frozen=True)
class ImageName:
    plate: str
    well: str
    frame: int
    field: int
    line: int
    action: int
    z: int
    channel_number: int

    @property
    def channel(self) -> str:
        """CS/BF/LNP/GFP, or ``C{nn}`` for a channel number this assay does not use."""
        return CHANNEL_BY_NUMBER.get(self.channel_number, f"C{self.channel_number:02d}")

    def filename(self) -> str:
        return image_filename(
            self.plate,
            self.well,
            self.frame,
            self.field,
            self.channel_number,
            line=self.line,
            action=self.action,
            z=self.z,
        )


def parse_image_name(name: str) -> ImageName | None:
    """Parse an instrument file name; None when ``name`` is not one (e.g. a metadata file)."""
    m = _NAME_RE.match(name)
    if not m:
        return None
    return ImageName(
        plate=m["plate"],
        well=m["well"].upper(),
        frame=int(m["t"]),
        field=int(m["f"]),
        line=int(m["l"]),
        action=int(m["a"]),
        z=int(m["z"]),
        channel_number=int(m["c"]),
    )


def image_filename(
    plate: str,
    well: str,
    frame: int,
    field: int,
    channel_number: int,
    *,
    line: int = 1,
    action: int = 1,
    z: int = 1,
) -> str:
    """The instrument's file name for one image."""
    return f"{plate}_{well}_T{frame:04d}F{field:03d}L{line:02d}A{action:02d}Z{z:02d}C{channel_number:02d}.tif"


def split_well(well: str) -> tuple[str, int]:
    """``"C03"`` -> ``("C", 3)``; a clear error for anything else."""
    m = WELL_RE.match(well.strip().upper())
    if not m:
        raise ValueError(f"well {well!r} is not a well id like 'C03' (row letter A-P, two-digit column)")
    return m[1], int(m[2])


def well_id(row: int | str, column: int) -> str:
    """``(3, 8)`` or ``("C", 8)`` -> ``"C08"`` (rows 1-based as in MeasurementData.mlf)."""
    letter = row if isinstance(row, str) else "ABCDEFGHIJKLMNOP"[int(row) - 1]
    return f"{letter.upper()}{int(column):02d}"
