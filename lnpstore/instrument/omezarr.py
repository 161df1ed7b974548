"""Ingest of an OME-Zarr HCS plate (NGFF 0.4 or 0.5; bioformats2raw, faim-hcs, the simulator).

Any instrument's plate comes in this way once converted to the community's plate format (Opera /
Operetta, ImageXpress, Incucyte, CellVoyager through bioformats2raw or faim-hcs). The plate's wells,
fields, time points, channel names, pixel size and frame interval are read from its NGFF metadata;
channels are mapped by name to the assay's roles CS, BF, LNP and GFP (``channel_map`` for other
names). Ingest writes the same ``plates``, ``wells`` and ``images`` tables as the Yokogawa path, with
the same functions (:mod:`lnpstore.instrument.ingest`), so tracking, crops and models run unchanged.

An image's ``path`` in the ``images`` table is a *plane address*: the absolute path of the field's
full-resolution array followed by the index of every axis before y, x in brackets, e.g.
``/data/plate.zarr/C/3/0/0[4,2,0]`` (t = 4, c = 2, z = 0, 0-based). :func:`read_plane` reads one, and
:func:`lnpstore.instrument.stackio.read_image` reads any path of the images table (TIFF or plane).
``channel_number`` is the channel's 1-based position in the array (``plates.channels`` maps roles to
it); ``file_bytes``, ``acquired_at`` and the stage position are null.

Reader choice: the metadata are read and validated with ``yaozarrs`` (NGFF 0.4 and 0.5 models, kept
up to date with the spec, pure Python on pydantic), the arrays with zarr-python 3 (reads zarr v2 and
v3). The reference reader ome-zarr-py and iohub were the first candidates, but on this project's
Python 3.11 with its pinned pydantic 2.14 and python-dateutil 4 neither installs: ome-zarr-py >= 0.18
needs ome-zarr-models (pydantic < 2.13) and every release needs s3fs/botocore (python-dateutil < 3);
iohub's zarr-3 releases need Python >= 3.12 (its older ones pin zarr 2).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl

from lnpstore._version import __version__
from lnpstore.instrument.layout import well_id
from lnpstore.instrument.platemap import check_plate_map_wells, read_plate_map
from lnpstore.store import schema as S
from lnpstore.store.core import Store
from lnpstore.store.errors import IngestError

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("CS", "BF", "LNP", "GFP")
#: A plane address: ``ARRAY_PATH[i,j,...]`` (0-based indices of the axes before y, x).
_PLANE_RE = re.compile(r"^(?P<array>.+)\[(?P<index>\d+(?:,\d+)*)\]$")
_TO_UM = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "angstrom": 1e-4, "meter": 1e6}
_TO_MIN = {"minute": 1.0, "second": 1 / 60, "hour": 60.0, "millisecond": 1 / 60000, "day": 1440.0}


# -- plane addresses ------------------------------------------------------------------------------
def plane_address(array_path: str | os.PathLike, index: tuple[int, ...]) -> str:
    """``ARRAY_PATH[i,j,...]``: the images table's path of one 2-D plane of an OME-Zarr array."""
    return f"{Path(array_path)}[{','.join(str(int(i)) for i in index)}]"


def parse_plane_address(path: str) -> tuple[str, tuple[int, ...]] | None:
    """(array path, index) of a plane address; None for anything else (a TIFF path)."""
    m = _PLANE_RE.match(str(path))
    if not m:
        return None
    return m["array"], tuple(int(i) for i in m["index"].split(","))


@functools.lru_cache(maxsize=32)
def _open_array(array_path: str):  # noqa: ANN202 - a zarr.Array
    import zarr

    return zarr.open_array(array_path, mode="r")


def read_plane(address: str) -> np.ndarray:
    """The 2-D plane (Y x X) at a plane address (see :func:`plane_address`)."""
    parsed = parse_plane_address(address)
    if parsed is None:
        raise IngestError(f"{address!r} is not an OME-Zarr plane address (ARRAY_PATH[t,c,z])")
    array_path, index = parsed
    try:
        arr = _open_array(array_path)
        plane = np.asarray(arr[index])
    except Exception as exc:  # zarr raises several types for a missing or damaged array
        raise IngestError(
            f"cannot read plane {list(index)} of the OME-Zarr array {array_path} ({exc!r}). Hint: check "
            "that the plate is complete (re-copy it) and re-run `lnpstore ingest`"
        ) from None
    if plane.ndim != 2:
        raise IngestError(f"{address}: the plane has shape {plane.shape}, expected Y x X")
    return plane


# -- writing ---------------------------------------------------------------------------------------
#: Display colours (hex RGB) of the channels in viewers (napari, OMERO).
CHANNEL_COLORS = {"GFP": "00FF00", "LNP": "FF00FF", "CS": "0000FF", "BF": "FFFFFF"}


def image_model(
    *, pixel_size_um: float, frame_interval_min: float, channels: tuple[str, ...], name: str | None = None
):  # noqa: ANN201 - a yaozarrs v05.Image
    """The NGFF 0.5 image metadata of one field: axes t, c, z, y, x, one full-resolution level "0"."""
    from yaozarrs import v05

    axes: list[v05.SpaceAxis | v05.TimeAxis | v05.ChannelAxis | v05.CustomAxis] = [
        v05.TimeAxis(name="t", unit="minute"),
        v05.ChannelAxis(name="c"),
        v05.SpaceAxis(name="z", unit="micrometer"),
        v05.SpaceAxis(name="y", unit="micrometer"),
        v05.SpaceAxis(name="x", unit="micrometer"),
    ]
    scale = [float(frame_interval_min), 1.0, 1.0, float(pixel_size_um), float(pixel_size_um)]
    omero = v05.Omero(
        channels=[
            v05.OmeroChannel(
                label=c,
                color=CHANNEL_COLORS.get(c, "FFFFFF"),
                window=v05.OmeroWindow(start=0, end=4095, min=0, max=65535),
                active=True,
            )
            for c in channels
        ]
    )
    return v05.Image(
        multiscales=[
            v05.Multiscale(
                name=name,
                axes=axes,
                datasets=[
                    v05.Dataset(path="0", coordinateTransformations=[v05.ScaleTransformation(scale=scale)])
                ],
            )
        ],
        omero=omero,
    )


# -- finding and reading the plate's metadata -----------------------------------------------------
def _plate_meta(group: Any) -> Any | None:
    meta = group.ome_metadata()
    return getattr(meta, "plate", None) if meta is not None else None


def find_omezarr_plate(path: str | os.PathLike) -> Path | None:
    """The OME-Zarr HCS plate at ``path``, or the one ``*.zarr`` plate inside the folder ``path``
    (the simulator's output folder); None when there is none."""
    import yaozarrs

    p = Path(path)
    candidates = [p] if p.suffix.lower() == ".zarr" else sorted(p.glob("*.zarr")) if p.is_dir() else []
    plates = []
    for c in candidates:
        try:
            if _plate_meta(yaozarrs.open_group(str(c))) is not None:
                plates.append(c)
        except Exception:  # not a zarr group, or not one with NGFF metadata
            continue
    if len(plates) > 1:
        raise IngestError(
            f"{p} holds {len(plates)} OME-Zarr plates ({', '.join(x.name for x in plates)}). Hint: give one"
        )
    return plates[0].resolve() if plates else None


def is_omezarr_plate(path: str | os.PathLike) -> bool:
    """Whether ``path`` is (or is a folder holding one) OME-Zarr HCS plate."""
    p = Path(path)
    if not (p.suffix.lower() == ".zarr" or (p.is_dir() and any(p.glob("*.zarr")))):
        return False
    return find_omezarr_plate(p) is not None


@dataclass(frozen=True)
class FieldArray:
    """One field of a well: its full-resolution array and what the metadata say about it."""

    well: str
    field: int  # 1-based, in the well's metadata order
    array_path: Path
    axes: tuple[str, ...]  # axis names, e.g. ("t", "c", "z", "y", "x")
    shape: tuple[int, ...]
    dtype: str
    channel_names: tuple[str, ...]  # omero labels ("" where unnamed)
    pixel_size_um: float | None
    frame_interval_min: float | None


def _scale(ms: Any) -> list[float] | None:
    """The full-resolution level's scale (multiplied by the multiscale's own scale, if any)."""
    scale = None
    for tr in ms.datasets[0].coordinateTransformations or []:
        if getattr(tr, "type", None) == "scale":
            scale = [float(v) for v in tr.scale]
    for tr in getattr(ms, "coordinateTransformations", None) or []:
        if getattr(tr, "type", None) == "scale" and scale is not None:
            scale = [a * float(b) for a, b in zip(scale, tr.scale, strict=True)]
    return scale


def _field_array(image_group: Any, array_root: Path, well: str, field: int) -> FieldArray:
    where = f"OME-Zarr well {well}, field {field} ({array_root})"
    meta = image_group.ome_metadata()
    multiscales = getattr(meta, "multiscales", None)
    if not multiscales:
        raise IngestError(f"{where}: no multiscales metadata (not an NGFF image)")
    ms = multiscales[0]
    axes = tuple(a.name for a in ms.axes)
    if axes[-2:] != ("y", "x"):
        raise IngestError(f"{where}: the last axes are {axes[-2:]}, expected ('y', 'x')")
    units = {a.name: getattr(a, "unit", None) for a in ms.axes}
    ds_path = ms.datasets[0].path
    arr = image_group[ds_path]
    scale = _scale(ms)
    px = t_min = None
    if scale is not None:
        unit_y = units.get("y") or ""  # no unit: the scale's length is unknown (never guessed)
        if unit_y in _TO_UM:
            px = scale[axes.index("y")] * _TO_UM[unit_y]
        unit_t = units.get("t") or ""
        if "t" in axes and unit_t in _TO_MIN:
            t_min = scale[axes.index("t")] * _TO_MIN[unit_t]
    omero = getattr(meta, "omero", None)
    names = tuple((getattr(c, "label", None) or "") for c in (omero.channels if omero else []))
    return FieldArray(
        well=well,
        field=field,
        array_path=array_root / ds_path,
        axes=axes,
        shape=tuple(int(n) for n in arr.to_zarr_python().shape),
        dtype=str(arr.dtype),
        channel_names=names,
        pixel_size_um=px,
        frame_interval_min=t_min,
    )


def read_plate_fields(plate_path: Path) -> tuple[str, list[FieldArray]]:
    """(plate name, every field of every well) from the plate's metadata, in plate order."""
    import yaozarrs

    root = yaozarrs.open_group(str(plate_path))
    plate = _plate_meta(root)
    if plate is None:
        raise IngestError(
            f"{plate_path} has no NGFF plate metadata. Hint: give an OME-Zarr HCS plate (.zarr)"
        )
    name = getattr(plate, "name", None) or plate_path.name.removesuffix(".zarr")
    out: list[FieldArray] = []
    for pw in plate.wells:
        row_name = plate.rows[pw.rowIndex].name
        col_name = plate.columns[pw.columnIndex].name
        try:
            well = well_id(row_name, int(col_name))
        except (ValueError, TypeError):
            raise IngestError(
                f"{plate_path}: well {pw.path} (row {row_name!r}, column {col_name!r}) is not a plate well "
                "like C/3. Hint: rows must be letters A-P and columns numbers"
            ) from None
        wg = cast("yaozarrs.ZarrGroup", root[pw.path])  # a plate's well is a group
        wmeta = getattr(wg.ome_metadata(), "well", None)
        if wmeta is None:
            raise IngestError(f"{plate_path}/{pw.path}: no NGFF well metadata")
        for i, fov in enumerate(wmeta.images, start=1):
            out.append(_field_array(wg[fov.path], plate_path / pw.path / fov.path, well, i))
    if not out:
        raise IngestError(f"{plate_path}: the plate lists no fields")
    return name, out


# -- channels -------------------------------------------------------------------------------------
def parse_channel_map(text: str | None) -> dict[str, str]:
    """``"DAPI=CS,Brightfield=BF"`` -> ``{"DAPI": "CS", "Brightfield": "BF"}`` (roles checked)."""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        name, sep, role = part.partition("=")
        role = role.strip().upper()
        if not sep or not name.strip() or role not in ROLES:
            raise IngestError(
                f"--channel-map item {part!r} is not NAME=ROLE with ROLE one of {', '.join(ROLES)} "
                "(e.g. --channel-map 'Hoechst=CS,Brightfield=BF,mCherry=LNP,EGFP=GFP')"
            )
        out[name.strip()] = role
    return out


def channel_roles(names: tuple[str, ...], channel_map: dict[str, str], where: str) -> dict[int, str]:
    """Channel index -> role (CS/BF/LNP/GFP, or ``C{nn}`` for a channel of no role). A name maps to a
    role through ``channel_map`` or when it is the role's name (any case); every role needs a channel."""
    by_role: dict[str, int] = {}
    upper_map = {k.upper(): v for k, v in channel_map.items()}
    for i, n in enumerate(names):
        role = upper_map.get(n.upper()) or (n.upper() if n.upper() in ROLES else None)
        if role is None:
            continue
        if role in by_role:
            raise IngestError(f"{where}: channels {names[by_role[role]]!r} and {n!r} both map to {role}")
        by_role[role] = i
    missing = [r for r in ROLES if r not in by_role]
    if missing:
        found = ", ".join(repr(n) for n in names) or "none (no omero channel labels)"
        raise IngestError(
            f"{where}: no channel for {', '.join(missing)}; the plate's channels are {found}. Hint: map them "
            "with --channel-map NAME=ROLE,... (roles CS, BF, LNP, GFP), e.g. --channel-map "
            "'Hoechst=CS,Brightfield=BF,mCherry=LNP,EGFP=GFP'"
        )
    roles = {i: f"C{i + 1:02d}" for i in range(len(names))}
    roles.update({i: r for r, i in by_role.items()})
    return roles


# -- the tables -----------------------------------------------------------------------------------
def _check_fields(fields: list[FieldArray], plate_path: Path) -> tuple[tuple[str, ...], int, tuple[int, int]]:
    """The plate's axes, frame count and image size (every field must agree)."""
    first = fields[0]
    for f in fields:
        if f.axes != first.axes or f.channel_names != first.channel_names:
            raise IngestError(
                f"{plate_path}: well {f.well} field {f.field} has axes {f.axes} and channels {f.channel_names}, "
                f"well {first.well} field {first.field} {first.axes} and {first.channel_names}; a plate needs "
                "the same in every field"
            )
    n_frames = max(f.shape[f.axes.index("t")] if "t" in f.axes else 1 for f in fields)
    return first.axes, n_frames, (first.shape[-2], first.shape[-1])


def _plane_index(axes: tuple[str, ...], t: int, c: int, z: int) -> tuple[int, ...]:
    values = {"t": t, "c": c, "z": z}
    return tuple(values.get(a, 0) for a in axes[:-2])


def _images_rows(
    plate: str, f: FieldArray, roles: dict[int, str], n_frames: int, z: int, size: tuple[int, int]
) -> list[dict[str, Any]]:
    """The images rows of one field: every frame x channel, ``ok`` (or ``missing`` past the field's last
    time point, ``wrong_size`` for another image size, ``unknown_channel`` for a channel of no role)."""
    rows = []
    n_t = f.shape[f.axes.index("t")] if "t" in f.axes else 1
    n_c = f.shape[f.axes.index("c")] if "c" in f.axes else 1
    for frame in range(1, n_frames + 1):
        for c in range(n_c):
            role = roles.get(c, f"C{c + 1:02d}")
            path: str | None
            status, detail, path = (
                "ok",
                None,
                plane_address(f.array_path, _plane_index(f.axes, frame - 1, c, z)),
            )
            if frame > n_t:
                status, path = "missing", None
                detail = (
                    f"{f.array_path}: has {n_t} time points, the plate {n_frames}; well {f.well} is excluded"
                )
            elif (f.shape[-2], f.shape[-1]) != size:
                status = "wrong_size"
                detail = f"{f.array_path}: planes are {f.shape[-2]}x{f.shape[-1]} px, the plate's {size[0]}x{size[1]}"
            elif role not in ROLES:
                status = "unknown_channel"
                detail = f"{f.array_path}: channel {c} has no role (CS, BF, LNP, GFP); indexed, not used"
            rows.append(
                {
                    "plate": plate,
                    "well": f.well,
                    "field": f.field,
                    "frame": frame,
                    "channel": role,
                    "channel_number": c + 1,
                    "path": path,
                    "status": status,
                    "status_detail": detail,
                    "height_px": f.shape[-2],
                    "width_px": f.shape[-1],
                    "dtype": f.dtype,
                    "file_bytes": None,
                    "acquired_at": None,
                    "stage_x_um": None,
                    "stage_y_um": None,
                }
            )
    return rows


def _data_version(fields: list[FieldArray]) -> str:
    """sha256 over every field array's path, shape, dtype and chunk files (name and size)."""
    h = hashlib.sha256()
    for f in fields:
        h.update(f"{f.well}\t{f.field}\t{f.shape}\t{f.dtype}\n".encode())
        for p in sorted(f.array_path.rglob("*")):
            if p.is_file():
                h.update(f"{p.relative_to(f.array_path)}\t{p.stat().st_size}\n".encode())
    return h.hexdigest()


def _resolve(
    value: float | None, given: float | None, what: str, plate_path: Path, unit: str
) -> float | None:
    if given is not None:
        if value is not None and abs(value - given) > 1e-6 * max(abs(value), 1.0):
            raise IngestError(
                f"{plate_path}: the metadata give a {what} of {value:g} {unit}, the command {given:g} {unit}. "
                "Hint: leave the option out to use the metadata's"
            )
        return float(given)
    return value


def _plate_map_beside(plate_path: Path, given: Any) -> Any:
    from lnpstore.instrument.ingest import PLATE_MAP_NAMES

    if given is not None:
        return given
    beside = [plate_path.parent / n for n in PLATE_MAP_NAMES if (plate_path.parent / n).is_file()]
    return beside[0] if beside else None


def ingest_omezarr(
    store: Store,
    path: str | os.PathLike,
    *,
    plate_map: Any = None,
    channel_map: dict[str, str] | str | None = None,
    pixel_size_um: float | None = None,
    z_plane: int | None = None,
) -> Any:
    """Index an OME-Zarr HCS plate into ``store`` (``plates``, ``wells``, ``images``); returns the
    :class:`lnpstore.instrument.ingest.IngestReport`.

    ``path``: the ``.zarr`` plate, or a folder holding one (and its ``plate_map.csv``). ``plate_map``
    as for :func:`lnpstore.instrument.ingest.ingest_plate` (default: a plate map beside the plate).
    ``channel_map``: channel name -> role (or ``"NAME=ROLE,..."``). ``pixel_size_um`` (um) is needed
    only when the metadata lack it. ``z_plane`` (0-based) chooses the plane of a z-stack.
    """
    from lnpstore.instrument.ingest import (
        STATUSES,
        IngestReport,
        _wells_table,
        write_plate_tables,
    )

    t0 = time.perf_counter()
    plate_path = find_omezarr_plate(path)
    if plate_path is None:
        raise IngestError(f"{path} is not an OME-Zarr HCS plate (no NGFF plate metadata)")
    cmap = parse_channel_map(channel_map) if isinstance(channel_map, str) else dict(channel_map or {})
    plate, fields = read_plate_fields(plate_path)
    axes, n_frames, size = _check_fields(fields, plate_path)
    roles = channel_roles(fields[0].channel_names, cmap, str(plate_path))
    n_z = fields[0].shape[axes.index("z")] if "z" in axes else 1
    if z_plane is None and n_z > 1:
        raise IngestError(
            f"{plate_path}: the images are z-stacks of {n_z} planes. Hint: --z-plane K (0-based)"
        )
    z = z_plane or 0
    if not 0 <= z < n_z:
        raise IngestError(f"{plate_path}: --z-plane {z} is outside 0-{n_z - 1}")
    warnings: list[str] = []
    px = _resolve(fields[0].pixel_size_um, pixel_size_um, "pixel size", plate_path, "um")
    if px is None:
        raise IngestError(
            f"{plate_path}: the metadata give no pixel size (no scale with a length unit on the y, x "
            "axes). Hint: --pixel-size-um X"
        )
    interval = fields[0].frame_interval_min
    if interval is None and n_frames > 1:
        warnings.append("the metadata give no time increment: frame_interval_min is null")

    pm_source = _plate_map_beside(plate_path, plate_map)
    pm = read_plate_map(pm_source) if pm_source is not None else None
    pm_origin = "" if pm_source is None or isinstance(pm_source, pl.DataFrame) else str(pm_source)
    wells = list(dict.fromkeys(f.well for f in fields))
    if pm is not None:
        check_plate_map_wells(pm, wells, plate=plate, origin=pm_origin)
    else:
        warnings.append(
            "no plate map: wells have no dose_ng or is_control. Hint: --plate-map FILE (well,dose_ng[,is_control])"
        )

    rows = [r for f in fields for r in _images_rows(plate, f, roles, n_frames, z, size)]
    images = pl.DataFrame(rows, schema=S.table("images").polars_schema)
    n_fields = max(f.field for f in fields)
    wells_df, excluded = _wells_table(plate, images, wells, list(range(1, n_fields + 1)), n_frames, pm)
    status_counts = {st: int(images.filter(pl.col("status") == st).height) for st in STATUSES}
    channels = {role: i + 1 for i, role in sorted(roles.items())}
    data_version = _data_version(fields)
    plates_df = pl.DataFrame(
        [
            {
                "plate": plate,
                "source_dir": str(plate_path),
                "instrument": "OME-Zarr",
                "pixel_size_um": px,
                "width_px": size[1],
                "height_px": size[0],
                "n_wells": len(wells),
                "n_fields": n_fields,
                "n_frames": n_frames,
                "frame_interval_min": interval,
                "channels": json.dumps(channels),
                "n_images": images.height,
                "n_problems": images.height - status_counts["ok"],
                "data_version": data_version,
                "ingested_at": datetime.now(UTC),
                "package_version": __version__,
                "schema_version": S.SCHEMA_VERSION,
            }
        ],
        schema=S.table("plates").polars_schema,
    )
    images, wells_df, plates_df, written, dropped = write_plate_tables(
        store, plate, images, wells_df, plates_df, wells=wells, excluded=excluded
    )
    for w in warnings:
        log.warning("plate %s: %s", plate, w)
    return IngestReport(
        plate=plate,
        plate_dir=plate_path,
        store_root=store.root,
        instrument="OME-Zarr",
        pixel_size_um=px,
        n_wells=len(wells),
        n_fields=n_fields,
        n_frames=n_frames,
        channels=channels,
        status_counts=status_counts,
        excluded_wells=excluded,
        warnings=warnings,
        data_version=data_version,
        written=written,
        elapsed_s=time.perf_counter() - t0,
        n_files_read=0,
        bytes_on_disk=0,
        plates=plates_df,
        wells=wells_df,
        images=images,
        plate_map_path=pm_origin,
        grid_source=f"NGFF plate metadata ({len(fields)} fields, axes {''.join(axes)})",
        dropped_downstream=dropped,
    )
