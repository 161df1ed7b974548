"""The simulated plate as an OME-Zarr HCS plate (NGFF 0.5): the same images as the Yokogawa layout.

Layout (as bioformats2raw / faim-hcs write a plate)::

    <plate>.zarr/            plate metadata: rows, columns, wells, the acquisition
      C/3/                   well metadata: its fields
        0/                   field 1 (fields are 0-based paths): an image with one multiscale level
          0                  uint16 array T x C x Z x Y x X (Z = 1), one chunk per plane

Axes ``t`` (minute; scale = the frame interval), ``c`` (channels named GFP, LNP, CS, BF in the
instrument's C order), ``z``, ``y``, ``x`` (micrometer; scale = the pixel size). The metadata and the
arrays are written by ``yaozarrs`` (its NGFF 0.5 models validate what is written) through zarr-python.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lnpstore.instrument.layout import CHANNELS, image_filename, split_well
from lnpstore.instrument.omezarr import image_model
from lnpstore.store.atomic import atomic_dir, atomic_write_bytes
from lnpstore.store.errors import SettingsError

#: Channel order in the simulated OME-Zarr plate: by instrument C number (GFP 5, LNP 6, CS 7, BF 9).
CHANNEL_ORDER: tuple[str, ...] = tuple(sorted(CHANNELS, key=CHANNELS.__getitem__))


def _field_stack(plate_dir: Path, plate: str, well: str, field: int, n_frames: int) -> np.ndarray:
    """One field's images from the Yokogawa folder as a T x C x 1 x Y x X uint16 array."""
    import tifffile

    planes = [
        [
            tifffile.imread(plate_dir / image_filename(plate, well, t, field, CHANNELS[c]))
            for c in CHANNEL_ORDER
        ]
        for t in range(1, n_frames + 1)
    ]
    return np.asarray(planes, dtype=np.uint16)[:, :, None]


def write_omezarr_plate(
    plate_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    plate: str,
    wells: list[str],
    n_fields: int,
    n_frames: int,
    pixel_size_um: float,
    frame_interval_min: float,
) -> Path:
    """Write the Yokogawa plate folder ``plate_dir`` as the OME-Zarr HCS plate ``out`` (replaced when it
    exists; written atomically). Every image of the grid must be on disk and readable. Holds one field
    (T x 4 x Y x X uint16) in memory at a time. Returns ``out``."""
    from yaozarrs.write.v05 import PlateBuilder

    plate_dir, out = Path(plate_dir), Path(out)
    image = image_model(
        pixel_size_um=pixel_size_um, frame_interval_min=frame_interval_min, channels=CHANNEL_ORDER, name=plate
    )
    with atomic_dir(out) as tmp:
        tmp.rmdir()  # the builder creates the group itself
        builder = PlateBuilder(tmp, writer="zarr", chunks="auto", compression="blosc-zstd")
        for well in wells:
            row, col = split_well(well)
            fields = {
                str(f - 1): (image, _field_stack(plate_dir, plate, well, f, n_frames))
                for f in range(1, n_fields + 1)
            }
            builder.write_well(row=row, col=str(col), images=fields)
        _name_plate(tmp, plate)
    return out


def _name_plate(root: Path, plate: str) -> None:
    """Set the NGFF plate metadata's ``name`` (the builder leaves it out), which ingest takes as the
    plate's name wherever the ``.zarr`` folder is moved or renamed."""
    path = root / "zarr.json"
    meta = json.loads(path.read_text())
    meta["attributes"]["ome"]["plate"]["name"] = plate
    atomic_write_bytes(json.dumps(meta, indent=2).encode(), path)


def check_omezarr_settings(faults: tuple[str, ...]) -> None:
    """The OME-Zarr layout holds no missing or damaged images: simulated faults need the Yokogawa one."""
    if faults:
        raise SettingsError(
            f"faults {list(faults)} are simulated as missing or damaged TIFF files, which an OME-Zarr plate "
            "cannot hold. Hint: simulate faults with the Yokogawa layout (plate_format='yokogawa')"
        )
