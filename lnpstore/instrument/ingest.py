"""Ingest a plate folder: index and validate every image, and write the plates, wells and images tables.

The index comes from the image file names (:func:`lnpstore.layout.parse_image_name`, case-insensitive)
and, where present, from ``MeasurementData.mlf`` (time stamps, stage positions, and the list of images
the instrument wrote) and ``MeasurementDetail.mrf`` (pixel size, image size and bit depth per channel).

The expected grid is well x field x frame x channel. With an mlf it is the mlf's wells, fields and
channels, frames ``1..`` its last (or ``1..expected_frames``); a file outside it (a channel, well or
field the mlf does not list, a frame beyond its last) is ``extra``: listed in the report, not indexed,
and it never excludes a well. Without an mlf the grid is every well, field and channel of the file
names, frames ``1..max``; the report says which grid was used. Each cell of the grid gets one row in
``images`` with a status:

===============  ====================================================================================
status           meaning
===============  ====================================================================================
ok               the file is there, its TIFF header reads, its size and pixel type are the expected
missing          no file (listed in MeasurementData.mlf but not on disk, or a gap in the grid)
unreadable       the TIFF header cannot be read, or the file is shorter than its header says
wrong_size       the image is not a 2-D image of the channel's expected height x width
wrong_dtype      the pixels are not the instrument's type (uint16; uint8 for an 8-bit channel), e.g. float
unknown_channel  a readable image of an instrument channel this assay does not use
===============  ====================================================================================

Only headers are read (shape, dtype, strip offsets), never pixels, so ingest runs at file-system speed
(the pixel type bounds the value range; values themselves are not read). A well with a missing,
unreadable, wrong-size or wrong-type image is ``excluded`` with its reason (the study drops such
wells); nothing about a damaged plate raises, except a plate whose every readable image has the wrong
pixel type (nothing could be used), and everything is reported in :class:`IngestReport`.

Everything is validated before anything is written, so bad input (a plate map that disagrees with the
images or has a non-finite dose, two plates in one folder, an unknown pixel size) leaves the store as it
was; :func:`ingest_to_store` also removes a store it created for a failed ingest. Re-ingesting an
unchanged plate writes nothing and keeps its ``data_version``. A re-ingest that excludes a well removes
that well's rows from the downstream tables (:func:`drop_downstream_rows`), so the stages redo them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import statistics
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import tifffile

from lnpstore._version import __version__
from lnpstore.instrument.cvmeta import (
    MLF_NAME,
    MRF_NAME,
    MeasurementDetail,
    MeasurementRecord,
    read_measurement_data,
    read_measurement_detail,
)
from lnpstore.instrument.layout import (
    CHANNEL_BY_NUMBER,
    CHANNELS,
    ImageName,
    image_filename,
    parse_image_name,
    split_well,
)
from lnpstore.instrument.platemap import PlateMapSource, check_plate_map_wells, read_plate_map
from lnpstore.runtime.execution import Executor
from lnpstore.store import schema as S
from lnpstore.store.core import Store, validate
from lnpstore.store.errors import IngestError

log = logging.getLogger(__name__)

STATUSES: tuple[str, ...] = ("ok", "missing", "unreadable", "wrong_size", "wrong_dtype", "unknown_channel")
#: Statuses that make a well unusable (the study excluded wells with missing frames).
EXCLUDING_STATUSES: tuple[str, ...] = ("missing", "unreadable", "wrong_size", "wrong_dtype")
#: The pixel types CV7000/CV8000 images have (16-bit cameras; 8-bit when the protocol says so).
INSTRUMENT_DTYPES: tuple[str, ...] = ("uint16", "uint8")

GridKey = tuple[str, int, int, int]  # well, field, frame, channel number


@dataclass(frozen=True)
class TiffHeader:
    """What the TIFF header of one file says; ``error`` is set when it cannot be read."""

    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    error: str | None = None


def _read_header_of(plate_dir: Path, key_entry: tuple[Any, Any]) -> tuple[Any, TiffHeader]:
    """(grid key, header) of one listed image (a picklable unit of work for the parallel map)."""
    key, entry = key_entry
    return key, read_tiff_header(plate_dir / entry.filename, entry.file_bytes)


def read_tiff_header(path: Path, file_bytes: int | None = None) -> TiffHeader:
    """Shape and dtype of the first page of a TIFF, read from its header only (no pixels).

    A file whose strips or tiles end beyond its size (a truncated copy) counts as unreadable.
    """
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            shape = tuple(int(n) for n in page.shape)
            dtype = None if page.dtype is None else str(page.dtype)
            offsets, counts = page.dataoffsets, page.databytecounts
            if file_bytes is None:
                file_bytes = path.stat().st_size
            end = max((int(o) + int(c) for o, c in zip(offsets, counts, strict=False)), default=0)
            if end > file_bytes:
                return TiffHeader(
                    shape, dtype, f"truncated: the header points to byte {end}, the file has {file_bytes}"
                )
            return TiffHeader(shape, dtype)
    except Exception as exc:  # tifffile raises many types for damaged files
        return TiffHeader(
            error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}"
        )


@dataclass
class IngestReport:
    """What :func:`ingest_plate` found and wrote; :meth:`summary` is the text printed to the user."""

    plate: str
    plate_dir: Path
    store_root: Path
    instrument: str
    pixel_size_um: float
    n_wells: int
    n_fields: int
    n_frames: int
    channels: dict[str, int]
    status_counts: dict[str, int]
    excluded_wells: dict[str, str]
    warnings: list[str]
    data_version: str
    written: bool
    elapsed_s: float
    n_files_read: int
    bytes_on_disk: int
    plates: pl.DataFrame = field(repr=False)
    wells: pl.DataFrame = field(repr=False)
    images: pl.DataFrame = field(repr=False)
    plate_map_path: str = ""  # the plate map file read ("" when a DataFrame or none was given)
    grid_source: str = ""  # which list bounds the expected images (the mlf's, or the file names)
    extra: dict[str, str] = field(default_factory=dict)  # file outside the grid -> why (not indexed)
    dropped_downstream: dict[str, list[str]] = field(default_factory=dict)  # table -> wells removed

    @property
    def n_images(self) -> int:
        """Expected images (the grid), whatever their status (``extra`` files are not in it)."""
        return sum(self.status_counts.values())

    @property
    def n_problems(self) -> int:
        return self.n_images - self.status_counts.get("ok", 0)

    def summary(self) -> str:
        """A few lines for the terminal: grid, counts per status, excluded wells, warnings, what was written."""
        ch = ", ".join(k if k == f"C{v:02d}" else f"{k} C{v:02d}" for k, v in self.channels.items())
        lines = [
            f"plate {self.plate} ({self.instrument}) from {self.plate_dir}",
            f"  {self.n_wells} wells x {self.n_fields} fields x {self.n_frames} frames x {len(self.channels)} "
            f"channels ({ch}) = {self.n_images} images; pixel {self.pixel_size_um:g} um",
            "  status: " + " | ".join(f"{s} {self.status_counts.get(s, 0)}" for s in STATUSES),
        ]
        if self.grid_source:
            lines.append(f"  grid: {self.grid_source}")
        if self.plate_map_path:
            lines.append(f"  plate map: {self.plate_map_path}")
        if self.excluded_wells:
            lines.append(f"  excluded wells ({len(self.excluded_wells)} of {self.n_wells}):")
            lines += [f"    {w}: {r}" for w, r in sorted(self.excluded_wells.items())]
            lines += [f"  first {s}: {d}" for s, d in self._first_problems().items()]
        else:
            lines.append("  excluded wells: none")
        if self.extra:
            lines.append(
                f"  extra files ({len(self.extra)}): outside the grid, listed here, not indexed, no well "
                "excluded. Hint: move them out of the plate folder if they do not belong to it"
            )
            shown = sorted(self.extra.items())[:_MAX_EXTRA_SHOWN]
            lines += [f"    {name}: {why}" for name, why in shown]
            if len(self.extra) > len(shown):
                lines.append(f"    (+{len(self.extra) - len(shown)} more)")
        if self.dropped_downstream:
            lines.append(f"  {_dropped_text(self.dropped_downstream)}")
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        if self.n_problems:
            lines.append(
                f"  details: lnpstore query image_problems --store {self.store_root} --param plate={self.plate}"
            )
        verb = "wrote" if self.written else "unchanged, already in the store:"
        lines.append(
            f"  store {self.store_root}: {verb} plates 1 row, wells {self.wells.height}, images "
            f"{self.images.height}; data_version {self.data_version[:16]}"
        )
        return "\n".join(lines)

    def _first_problems(self) -> dict[str, str]:
        """The first ``status_detail`` of each status that excludes wells (it names the file and what to do)."""
        bad = self.images.filter(pl.col("status").is_in(list(EXCLUDING_STATUSES))).sort(
            "well", "field", "frame", "channel"
        )
        out: dict[str, str] = {}
        for status, detail in bad.select("status", "status_detail").iter_rows():
            out.setdefault(status, detail)
        return {s: out[s] for s in EXCLUDING_STATUSES if s in out}


_MAX_EXTRA_SHOWN = 10


# -- indexing --------------------------------------------------------------------------------------
@dataclass
class _Entry:
    """One grid cell while indexing: the file on disk and/or the mlf record."""

    name: ImageName | None = None
    filename: str | None = None
    file_bytes: int | None = None
    record: MeasurementRecord | None = None


def _scan(plate_dir: Path) -> dict[str, tuple[ImageName, int]]:
    """Image files of the folder (not recursive): name -> (parsed name, size in bytes)."""
    out = {}
    with os.scandir(plate_dir) as it:
        for e in it:
            parsed = parse_image_name(e.name)
            if parsed is not None and e.is_file():
                out[e.name] = (parsed, e.stat().st_size)
    return out


#: Plate-map file names looked for inside a folder given in place of the plate folder.
PLATE_MAP_NAMES = ("plate_map.csv", "plate_map.parquet")


def _holds_plate(folder: Path) -> bool:
    """True when ``folder`` holds image files named like the instrument's, or its MeasurementData.mlf."""
    if (folder / MLF_NAME).is_file():
        return True
    with os.scandir(folder) as it:
        return any(parse_image_name(e.name) is not None for e in it)


def locate_plate(
    path: str | os.PathLike, plate_map: PlateMapSource | None = None
) -> tuple[Path, PlateMapSource | None]:
    """The plate folder and plate map to ingest, from a plate folder or from the folder around it.

    ``path`` may be the plate folder itself, or a folder (such as the simulator's output) that holds
    exactly one plate folder; then a plate map named ``plate_map.csv`` / ``.parquet`` in it is used
    when none is given. Raises :class:`IngestError` when ``path`` holds several plate folders (naming
    them) or is not a folder.
    """
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise IngestError(f"{folder}: not a folder. Hint: give the folder that holds the plate's TIFF files")
    if _holds_plate(folder):
        return folder, plate_map
    subs = sorted(d for d in folder.iterdir() if d.is_dir() and _holds_plate(d))
    if len(subs) > 1:
        names = ", ".join(repr(d.name) for d in subs)
        raise IngestError(
            f"{folder} holds {len(subs)} plate folders ({names}). Hint: ingest one at a time, giving its "
            f"folder, e.g. `lnpstore ingest {subs[0]} --plate-map FILE`"
        )
    if not subs:
        return folder, plate_map  # the caller's "no image files" error explains
    if plate_map is None:
        plate_map = next((folder / n for n in PLATE_MAP_NAMES if (folder / n).is_file()), None)
    return subs[0], plate_map


def _no_images_error(plate_dir: Path) -> IngestError:
    below = sorted(
        str(p.parent.relative_to(plate_dir))
        for p in plate_dir.glob("*/*")
        if parse_image_name(p.name) is not None
    )
    hint = (
        f" Hint: the images seem to be in {sorted(set(below))[0]!r} below it; give that folder"
        if below
        else ""
    )
    return IngestError(
        f"{plate_dir}: no image files named like PLATE_C03_T0001F001L01A01Z01C07.tif and no {MLF_NAME}.{hint}"
    )


def _mrf_instrument(path: Path, detail: MeasurementDetail) -> str:
    try:
        attrs = {k.rsplit("}", 1)[-1]: v for k, v in ET.parse(path).getroot().attrib.items()}
    except (ET.ParseError, OSError):
        attrs = {}
    if attrs.get("ReleaseNumber") == "simulated" or attrs.get("OperatorName") == "lnpstore-simulator":
        return "simulated"
    return detail.target_system or "unknown"


def _ranges(values: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    vals = sorted(set(values))
    out: list[str] = []
    start = prev = vals[0]
    for v in vals[1:] + [None]:  # type: ignore[list-item]
        if v is not None and v == prev + 1:
            prev = v
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(out)


def _median_frame_interval_min(entries: dict[GridKey, _Entry]) -> float | None:
    """Median time between consecutive frames (from the mlf time stamps), in minutes."""
    series: dict[tuple[str, int, int], list[tuple[int, datetime]]] = defaultdict(list)
    for (well, fld, frame, ch), e in entries.items():
        if e.record is not None and e.record.time:
            try:
                series[(well, fld, ch)].append((frame, datetime.fromisoformat(e.record.time)))
            except ValueError:
                continue
    steps = []
    for pts in series.values():
        pts.sort()
        for (f0, t0), (f1, t1) in zip(pts, pts[1:], strict=False):
            steps.append((t1 - t0).total_seconds() / 60.0 / (f1 - f0))
    return round(statistics.median(steps), 4) if steps else None


def _resolve_pixel_size(
    plate_dir: Path, detail: MeasurementDetail | None, channel_numbers: set[int], pixel_size_um: float | None
) -> float:
    if detail is None or not detail.channels:
        if pixel_size_um is None:
            raise IngestError(
                f"{plate_dir}: no {MRF_NAME} (or it lists no channels), so the pixel size is unknown. "
                "Hint: give it, e.g. ingest_plate(..., pixel_size_um=0.325) or `lnpstore ingest ... --pixel-size-um 0.325`"
            )
        if not pixel_size_um > 0:
            raise IngestError(f"pixel_size_um must be positive, got {pixel_size_um}")
        return float(pixel_size_um)
    used = [c for n, c in detail.channels.items() if n in channel_numbers] or list(detail.channels.values())
    sizes = sorted({c.pixel_size_um for c in used})
    if sizes[-1] - sizes[0] > 1e-9:
        per = ", ".join(f"C{c.channel:02d} {c.pixel_size_um}" for c in used)
        raise IngestError(
            f"{plate_dir / MRF_NAME}: the channels have different pixel sizes ({per} um); lnpstore needs one"
        )
    if pixel_size_um is not None and abs(pixel_size_um - sizes[0]) > 1e-6 * sizes[0]:
        raise IngestError(
            f"{plate_dir / MRF_NAME} gives a pixel size of {sizes[0]} um but pixel_size_um={pixel_size_um} was "
            "passed. Hint: leave the argument out to use the instrument's value"
        )
    return float(sizes[0])


@dataclass
class _Grid:
    """The expected images of a plate (wells x fields x frames 1..n_frames x channels) and the files
    outside it."""

    plate: str
    entries: dict[GridKey, _Entry]
    wells: list[str]
    fields: list[int]
    n_frames: int
    channels: list[int]
    source: str  # which list bounds the grid, for the report
    extra: dict[str, str]  # file name -> why it is outside the grid (listed, not indexed)


def _choose_z(
    plate_dir: Path,
    files: dict[str, tuple[ImageName, int]],
    records: list[MeasurementRecord],
    z_plane: int | None,
) -> int:
    """The z-plane to index: the only one, or ``z_plane`` (checked to exist)."""
    zs = {n.z for n, _ in files.values()} | {r.z_index for r in records}
    if z_plane is None:
        if len(zs) > 1:
            raise IngestError(
                f"{plate_dir}: the images come from {len(zs)} z-planes ({_ranges(sorted(zs))}); lnpstore indexes "
                "one plane per well, field, frame and channel. Hint: choose one with z_plane=K "
                "(`lnpstore ingest ... --z-plane K`)"
            )
        return next(iter(zs), 1)
    if z_plane not in zs:
        raise IngestError(
            f"{plate_dir}: no image of z-plane {z_plane}; the plate has z-plane(s) {_ranges(sorted(zs))}"
        )
    return z_plane


def _plate_name(
    plate_dir: Path, files: dict[str, tuple[ImageName, int]], records: list[MeasurementRecord], z: int
) -> str:
    """The one plate name of the folder's files and mlf records (names differing only in case are one
    plate, spelled as most files spell it); an error naming them when there are several."""
    spellings = Counter(n.plate for n, _ in files.values() if n.z == z)
    for r in records:
        parsed = parse_image_name(r.filename)
        if parsed is not None and r.z_index == z:
            spellings[parsed.plate] += 0
    plates: dict[str, Counter] = defaultdict(Counter)
    for name, n in spellings.items():
        plates[name.casefold()][name] += n
    if len(plates) > 1:
        listed = ", ".join(
            f"{c.most_common(1)[0][0]!r} ({c.total()} files)"
            for c in sorted(plates.values(), key=lambda c: -c.total())
        )
        raise IngestError(
            f"{plate_dir}: image files of {len(plates)} plates in one folder: {listed}. "
            "Hint: give each plate its own folder"
        )
    if not plates:
        raise _no_images_error(plate_dir)
    return next(iter(plates.values())).most_common(1)[0][0]


def _file_entries(plate_dir: Path, files: dict[str, tuple[ImageName, int]], z: int) -> dict[GridKey, _Entry]:
    """The image files of plane ``z`` by (well, field, frame, channel); an error for two files of one key."""
    entries: dict[GridKey, _Entry] = {}
    for fname, (n, size) in sorted(files.items()):
        if n.z != z:
            continue
        key = (n.well, n.field, n.frame, n.channel_number)
        if key in entries:
            raise IngestError(
                f"{plate_dir}: {entries[key].filename} and {fname} are both well {n.well}, field {n.field}, "
                f"frame {n.frame}, channel C{n.channel_number:02d}. Hint: remove the duplicate"
            )
        entries[key] = _Entry(name=n, filename=fname, file_bytes=size)
    return entries


def _outside_reason(
    key: GridKey,
    wells: set[str],
    fields: set[int],
    channels: set[int],
    n_frames: int,
    bound_by: str,
    frames_by: str,
) -> str | None:
    """Why the image ``key`` is outside the grid (None when it is inside)."""
    well, fld, frame, ch = key
    if well not in wells:
        listed = sorted(wells)
        shown = ", ".join(listed) if len(listed) <= 8 else f"{len(listed)} wells, {listed[0]} to {listed[-1]}"
        return f"well {well} is not in {bound_by} (wells {shown})"
    if fld not in fields:
        return f"field {fld} is not in {bound_by} (fields {_ranges(sorted(fields))})"
    if ch not in channels:
        return f"channel C{ch:02d} is not in {bound_by} (channels {', '.join(f'C{c:02d}' for c in sorted(channels))})"
    if frame > n_frames:
        return f"frame {frame} is beyond {frames_by} ({n_frames})"
    return None


def _build_grid(
    plate_dir: Path,
    files: dict[str, tuple[ImageName, int]],
    records: list[MeasurementRecord],
    *,
    expected_frames: int | None,
    z_plane: int | None,
    warnings: list[str],
) -> _Grid:
    """The plate's grid. With a ``MeasurementData.mlf`` it is the mlf's wells x fields x channels x frames
    1..last (or ``expected_frames``): files outside it are ``extra`` (listed, never indexed, never
    excluding a well). Without one it is every well, field and channel of the files, frames 1..last."""
    z = _choose_z(plate_dir, files, records, z_plane)
    plate = _plate_name(plate_dir, files, records, z)
    entries = _file_entries(plate_dir, files, z)
    recs = [r for r in records if r.z_index == z]
    if expected_frames is not None and expected_frames < 1:
        raise IngestError(f"expected_frames must be >= 1, got {expected_frames}")
    if recs:
        wells = sorted({r.well for r in recs})
        fields = sorted({r.field for r in recs})
        channels = sorted({r.channel for r in recs})
        last = max(r.time_point for r in recs)
        bound_by = MLF_NAME
        source = f"{MLF_NAME} ({len(recs)} images listed): its wells, fields, channels, frames 1-{last}"
    else:
        wells = sorted({k[0] for k in entries})
        fields = sorted({k[1] for k in entries})
        channels = sorted({k[3] for k in entries})
        last = max(k[2] for k in entries)
        bound_by = "the files"
        source = f"the file names (no {MLF_NAME}): every well, field and channel seen, frames 1-{last}"
    n_frames = last if expected_frames is None else expected_frames
    if expected_frames is not None:
        source += f", cut to frames 1-{n_frames} (expected_frames)"
    frames_by = (
        f"expected_frames={n_frames}" if expected_frames is not None else f"the last frame of {bound_by}"
    )
    extra: dict[str, str] = {}
    in_grid = (set(wells), set(fields), set(channels))
    for key in list(entries):
        why = _outside_reason(key, *in_grid, n_frames, bound_by, frames_by)
        if why is not None:
            extra[entries.pop(key).filename or ""] = why
    unlisted = set(entries) if recs else set()
    for r in recs:
        if r.time_point > n_frames:
            continue
        key = (r.well, r.field, r.time_point, r.channel)
        e = entries.setdefault(key, _Entry(filename=r.filename))
        e.record = r
        unlisted.discard(key)
    if unlisted:
        names = sorted(entries[k].filename or "" for k in unlisted)
        warnings.append(
            f"{len(unlisted)} image file(s) are not listed in {MLF_NAME} (indexed from their names), e.g. {names[0]}"
        )
    return _Grid(plate, entries, wells, fields, n_frames, channels, source, extra)


# -- the ingest ------------------------------------------------------------------------------------
def ingest_plate(
    store: Store,
    plate_dir: str | os.PathLike,
    *,
    plate_map: PlateMapSource | None = None,
    pixel_size_um: float | None = None,
    expected_frames: int | None = None,
    z_plane: int | None = None,
    n_threads: int | None = None,
    show_progress: bool = True,
) -> IngestReport:
    """Index, validate and store one plate folder; returns the :class:`IngestReport`.

    Parameters
    ----------
    store : the store to write ``plates``, ``wells`` and ``images`` to.
    plate_dir : the folder holding the plate's TIFFs (and MeasurementData.mlf / MeasurementDetail.mrf),
        or a folder holding exactly one such folder (the simulator's output): see :func:`locate_plate`.
    plate_map : CSV/Parquet path or DataFrame with ``well, dose_ng[, is_control]``; see
        :mod:`lnpstore.platemap`. Without one, a ``plate_map.csv`` beside the plate folder inside the
        folder given is used; otherwise wells get a null dose and a warning is reported.
    pixel_size_um : pixel edge length in um; required when the folder has no MeasurementDetail.mrf,
        and must agree with it when it has one.
    expected_frames : number of time points; default the last frame seen in files or mlf.
    z_plane : the z index to ingest when the folder holds a z-stack (required then).
    n_threads : threads reading TIFF headers (default: 2 x CPUs, at most 16).
    show_progress : progress bar on stderr.

    Raises
    ------
    IngestError, PlateMapError : for input that cannot be ingested as given; the store is untouched.
    """
    t0 = time.perf_counter()
    plate_dir, plate_map = locate_plate(plate_dir, plate_map)
    warnings: list[str] = []

    pm = read_plate_map(plate_map) if plate_map is not None else None
    pm_origin = "" if plate_map is None or isinstance(plate_map, pl.DataFrame) else str(plate_map)

    files = _scan(plate_dir)
    mlf, mrf = plate_dir / MLF_NAME, plate_dir / MRF_NAME
    records = read_measurement_data(mlf) if mlf.is_file() else []
    detail = read_measurement_detail(mrf) if mrf.is_file() else None
    if not files and not records:
        raise _no_images_error(plate_dir)
    if not mlf.is_file():
        warnings.append(
            f"no {MLF_NAME}: no time stamps or stage positions; the grid comes from the file names"
        )

    grid = _build_grid(
        plate_dir, files, records, expected_frames=expected_frames, z_plane=z_plane, warnings=warnings
    )
    plate, entries, wells, fields, n_frames = grid.plate, grid.entries, grid.wells, grid.fields, grid.n_frames
    channel_numbers = grid.channels
    px_um = _resolve_pixel_size(plate_dir, detail, set(channel_numbers), pixel_size_um)
    if pm is not None:
        check_plate_map_wells(pm, wells, plate=plate, origin=pm_origin)
    else:
        beside = [plate_dir.parent / n for n in PLATE_MAP_NAMES if (plate_dir.parent / n).is_file()]
        found = f" (there is one beside the plate folder: {beside[0]})" if beside else ""
        warnings.append(
            "no plate map: wells have no dose_ng or is_control. Hint: re-ingest with a plate map "
            f"(`--plate-map FILE`, columns well,dose_ng[,is_control]) before training{found}"
        )

    to_read = [(k, e) for k, e in entries.items() if e.file_bytes is not None]
    headers = _read_headers(plate_dir, plate, to_read, n_threads=n_threads, show_progress=show_progress)
    expected_shape = _expected_shapes(channel_numbers, detail, headers)
    expected_dtype = _expected_dtypes(channel_numbers, detail)
    images, data_version = _images_table(
        plate,
        plate_dir,
        entries,
        headers,
        expected_shape,
        expected_dtype,
        wells,
        fields,
        n_frames,
        channel_numbers,
    )
    _check_some_dtype_ok(plate_dir, images)
    wells_df, excluded = _wells_table(plate, images, wells, fields, n_frames, pm)
    status_counts = {st: int(images.filter(pl.col("status") == st).height) for st in STATUSES}
    channels = {CHANNEL_BY_NUMBER.get(c, f"C{c:02d}"): c for c in channel_numbers}
    instrument = _mrf_instrument(mrf, detail) if detail is not None else "unknown"
    plates_df = _plates_table(
        plate,
        plate_dir,
        instrument,
        px_um,
        expected_shape,
        wells,
        fields,
        n_frames,
        entries,
        channels,
        images,
        status_counts,
        data_version,
    )
    images, wells_df, plates_df, written, dropped = write_plate_tables(
        store, plate, images, wells_df, plates_df, wells=wells, excluded=excluded
    )
    report = IngestReport(
        plate=plate,
        plate_dir=plate_dir,
        store_root=store.root,
        instrument=instrument,
        pixel_size_um=px_um,
        n_wells=len(wells),
        n_fields=len(fields),
        n_frames=n_frames,
        channels=channels,
        status_counts=status_counts,
        excluded_wells=excluded,
        warnings=warnings,
        data_version=data_version,
        written=written,
        elapsed_s=time.perf_counter() - t0,
        n_files_read=len(to_read),
        bytes_on_disk=sum(e.file_bytes or 0 for _, e in to_read),
        plates=plates_df,
        wells=wells_df,
        images=images,
        plate_map_path=pm_origin,
        grid_source=grid.source,
        extra=grid.extra,
        dropped_downstream=dropped,
    )
    for w in warnings:
        log.warning("plate %s: %s", plate, w)
    if grid.extra:
        name, why = next(iter(sorted(grid.extra.items())))
        log.warning(
            "plate %s: %d extra file(s) outside the grid (listed, not indexed, no well excluded), e.g. %s: %s",
            plate,
            len(grid.extra),
            name,
            why,
        )
    if dropped:
        log.warning("plate %s: %s", plate, _dropped_text(dropped))
    return report


def _read_headers(
    plate_dir: Path,
    plate: str,
    to_read: list[tuple[GridKey, _Entry]],
    *,
    n_threads: int | None,
    show_progress: bool,
) -> dict[GridKey, TiffHeader]:
    """Every listed file's TIFF header (the slow part: one small read per file, on a thread pool)."""
    threads = n_threads or min(16, 2 * (os.cpu_count() or 1))
    with Executor(backend="threads", n_workers=threads) as pool:  # I/O-bound: a thread pool
        jobs = pool.map(
            functools.partial(_read_header_of, plate_dir),
            to_read,
            desc=f"ingest {plate}: TIFF headers",
            unit="img",
            ordered=True,
            show_progress=show_progress,
        )
        return dict(jobs)


def _expected_shapes(
    channel_numbers: list[int], detail: Any, headers: dict[GridKey, TiffHeader]
) -> dict[int, tuple[tuple[int, int], str]]:
    """Expected (H, W) px per channel and where it comes from: the mrf's, else the commonest 2-D shape."""
    expected_shape: dict[int, tuple[tuple[int, int], str]] = {}
    for ch in channel_numbers:
        if detail is not None and ch in detail.channels:
            c = detail.channels[ch]
            expected_shape[ch] = ((c.height_px, c.width_px), f"{MRF_NAME} channel C{ch:02d}")
        else:
            shapes = Counter(
                h.shape for k, h in headers.items() if k[3] == ch and h.shape and len(h.shape) == 2
            )
            if shapes:
                shp = shapes.most_common(1)[0][0]
                expected_shape[ch] = ((shp[0], shp[1]), f"the commonest size of channel C{ch:02d}")
    return expected_shape


def _expected_dtypes(channel_numbers: list[int], detail: Any) -> dict[int, tuple[tuple[str, ...], str]]:
    """The pixel types the instrument writes per channel, and where that comes from: uint8 for a channel
    the mrf gives 8 bits or fewer, uint16 for more; uint8 or uint16 without an mrf."""
    out: dict[int, tuple[tuple[str, ...], str]] = {}
    for ch in channel_numbers:
        if detail is not None and ch in detail.channels:
            bits = detail.channels[ch].bit_depth
            want = ("uint8",) if bits <= 8 else ("uint16",)
            out[ch] = (want, f"{MRF_NAME} channel C{ch:02d}: {bits}-bit")
        else:
            out[ch] = (INSTRUMENT_DTYPES, "the instrument's types")
    return out


def _check_some_dtype_ok(plate_dir: Path, images: pl.DataFrame) -> None:
    """Raise :class:`IngestError` when every readable image of the plate has the wrong pixel type (a
    whole plate exported as float, say): then no well could be used, and nothing is written."""
    wrong = images.filter(pl.col("status") == "wrong_dtype")
    usable = images.filter(pl.col("status").is_in(["ok", "unknown_channel"])).height
    if wrong.height == 0 or usable:
        return
    first = wrong.row(0, named=True)
    dtypes = ", ".join(sorted(set(wrong.get_column("dtype").drop_nulls().to_list())))
    raise IngestError(
        f"{plate_dir}: every readable image ({wrong.height}) has pixel type {dtypes}, not the instrument's "
        f"uint16 (or uint8), e.g. {Path(first['path']).name}. Such images (e.g. rescaled to 0..1 by an "
        "export) give wrong intensities. Hint: ingest the instrument's original 16-bit TIFFs (or re-export "
        "the plate as 16-bit TIFFs); nothing was written"
    )


def _images_table(
    plate: str,
    plate_dir: Path,
    entries: dict[GridKey, _Entry],
    headers: dict[GridKey, TiffHeader],
    expected_shape: dict[int, tuple[tuple[int, int], str]],
    expected_dtype: dict[int, tuple[tuple[str, ...], str]],
    wells: list[str],
    fields: list[int],
    n_frames: int,
    channel_numbers: list[int],
) -> tuple[pl.DataFrame, str]:
    """One ``images`` row per grid cell (well x field x frame x channel), and the plate's data version
    (a hash of every file's name, size and status)."""
    rows: list[dict[str, Any]] = []
    index_lines: list[str] = []
    for well in wells:
        for fld in fields:
            for frame in range(1, n_frames + 1):
                for ch in channel_numbers:
                    key = (well, fld, frame, ch)
                    e = entries.get(key, _Entry())
                    r = _image_row(
                        plate,
                        plate_dir,
                        key,
                        e,
                        headers.get(key),
                        expected_shape.get(ch),
                        expected_dtype[ch],
                        n_frames,
                    )
                    rows.append(r)
                    rel = e.filename or image_filename(plate, well, frame, fld, ch)
                    index_lines.append(
                        f"{rel}\t{e.file_bytes if e.file_bytes is not None else ''}\t{r['status']}"
                    )
    images = pl.DataFrame(rows, schema=S.table("images").polars_schema)
    return images, hashlib.sha256("\n".join(sorted(index_lines)).encode()).hexdigest()


def _wells_table(
    plate: str,
    images: pl.DataFrame,
    wells: list[str],
    fields: list[int],
    n_frames: int,
    pm: pl.DataFrame | None,
) -> tuple[pl.DataFrame, dict[str, str]]:
    """One ``wells`` row per well (dose from the plate map, image counts, exclusion) and the excluded
    wells with their reasons."""
    excluded: dict[str, str] = {}
    well_rows = []
    dose = {} if pm is None else {r["well"]: r for r in pm.iter_rows(named=True)}
    per_well = images.group_by("well").agg(
        n_ok=(pl.col("status") == "ok").sum(), n_problems=(pl.col("status") != "ok").sum()
    )
    counts = {r["well"]: r for r in per_well.iter_rows(named=True)}
    bad = images.filter(pl.col("status").is_in(list(EXCLUDING_STATUSES)))
    for well in wells:
        reason = _exclude_reason(bad.filter(pl.col("well") == well))
        if reason:
            excluded[well] = reason
        row_letter, col = split_well(well)
        well_rows.append(
            {
                "plate": plate,
                "well": well,
                "row": row_letter,
                "column": col,
                "dose_ng": dose[well]["dose_ng"] if dose else None,
                "is_control": dose[well]["is_control"] if dose else None,
                "n_fields": len(fields),
                "n_frames_expected": n_frames,
                "n_images_ok": counts[well]["n_ok"],
                "n_problems": counts[well]["n_problems"],
                "excluded": bool(reason),
                "exclude_reason": reason,
            }
        )
    return pl.DataFrame(well_rows, schema=S.table("wells").polars_schema), excluded


def _plates_table(
    plate: str,
    plate_dir: Path,
    instrument: str,
    px_um: float,
    expected_shape: dict[int, tuple[tuple[int, int], str]],
    wells: list[str],
    fields: list[int],
    n_frames: int,
    entries: dict[GridKey, _Entry],
    channels: dict[str, int],
    images: pl.DataFrame,
    status_counts: dict[str, int],
    data_version: str,
) -> pl.DataFrame:
    """The plate's one ``plates`` row."""
    height_px = width_px = None
    common = Counter(shape for shape, _ in expected_shape.values()).most_common(1)
    if common:
        height_px, width_px = common[0][0]
    plate_row = {
        "plate": plate,
        "source_dir": str(plate_dir),
        "instrument": instrument,
        "pixel_size_um": px_um,
        "width_px": width_px,
        "height_px": height_px,
        "n_wells": len(wells),
        "n_fields": len(fields),
        "n_frames": n_frames,
        "frame_interval_min": _median_frame_interval_min(entries),
        "channels": json.dumps(channels),
        "n_images": images.height,
        "n_problems": images.height - status_counts["ok"],
        "data_version": data_version,
        "ingested_at": datetime.now(UTC),
        "package_version": __version__,
        "schema_version": S.SCHEMA_VERSION,
    }
    return pl.DataFrame([plate_row], schema=S.table("plates").polars_schema)


def _validate_and_write(
    store: Store, plate: str, images: pl.DataFrame, wells_df: pl.DataFrame, plates_df: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, bool]:
    """Validate the three tables, then write them in one batch, or nothing when the store already
    holds exactly this plate (then the stored ``plates`` row, with its first ingest time, is returned)."""
    images, wells_df, plates_df = (
        validate("images", images),
        validate("wells", wells_df),
        validate("plates", plates_df),
    )
    other_wells = store.read("wells").filter(pl.col("plate") != plate)
    all_wells = validate("wells", pl.concat([other_wells, wells_df]))
    written = not _already_stored(store, plate, plates_df, wells_df, images)
    if written:
        with store.batch():
            store.write("images", images, mode="replace")
            store.write("wells", all_wells, mode="replace")
            store.write("plates", plates_df, mode="upsert")
    else:
        plates_df = store.read("plates", plate=plate)
    return images, wells_df, plates_df, written


def write_plate_tables(
    store: Store,
    plate: str,
    images: pl.DataFrame,
    wells_df: pl.DataFrame,
    plates_df: pl.DataFrame,
    *,
    wells: Iterable[str],
    excluded: Iterable[str],
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, bool, dict[str, list[str]]]:
    """Write an ingested plate's tables (:func:`_validate_and_write`), then drop the downstream rows of
    its excluded wells and of stored wells no longer in its grid (:func:`drop_downstream_rows`); the
    one write path of every ingest (Yokogawa, OME-Zarr)."""
    gone = set(store.read("wells", plate=plate).get_column("well").to_list()) - set(wells)
    images, wells_df, plates_df, written = _validate_and_write(store, plate, images, wells_df, plates_df)
    dropped = drop_downstream_rows(store, plate, sorted(set(excluded) | gone))
    return images, wells_df, plates_df, written, dropped


#: Tables ingest writes itself; every other table with plate and well columns is downstream of a well.
INGEST_TABLES: tuple[str, ...] = ("plates", "wells", "images")


def downstream_tables() -> list[str]:
    """Tables holding rows of a plate's wells made by later stages (registration, seeds, tracks,
    label_images, cells, crops, features). Model-level tables (embeddings, predictions, models,
    metrics) name cells only by ``cell_uid``; their model ids hash the ``features`` and ``cells`` files,
    so removing a well's rows there makes the model stages train and predict anew."""
    return [
        name
        for name, t in S.TABLES.items()
        if name not in INGEST_TABLES and {"plate", "well"} <= set(t.column_names)
    ]


#: Tables holding an estimate over every field of a plate (registration's plate offset), with the
#: tables made from it: a well dropped from it changes them for the whole plate.
PLATE_WIDE: dict[str, tuple[str, ...]] = {"registration": ("crops", "features")}


def drop_downstream_rows(store: Store, plate: str, wells: list[str]) -> dict[str, list[str]]:
    """Remove the downstream rows (see :func:`downstream_tables`) of ``wells`` of ``plate``, and the
    label movies of the removed ``label_images`` rows; returns table -> wells whose rows were removed.

    Called by :func:`ingest_plate` with the plate's excluded wells and the wells no longer in the grid:
    stages never make rows for excluded wells, so after this the store holds what a fresh run would and
    the stages redo the rest: per-field tables (seeds, tracks, label_images, cells) lose the wells'
    rows (``cells`` is rebuilt per plate anyway); when a well was in the plate's registration (its offset
    is estimated over every field, see :data:`PLATE_WIDE`), the plate's registration, crops and features
    go whole; models hash the ``features`` and ``cells`` files into their ids, so they are trained anew.
    Only :class:`Store`'s public reads, writes and deletes are used."""
    if not wells:
        return {}
    dropped: dict[str, list[str]] = {}
    whole_plate: set[str] = set()
    for name, made_from_it in PLATE_WIDE.items():
        if store.table(name, plate=plate).filter(pl.col("well").is_in(wells)).head(1).collect().height:
            whole_plate |= {name, *made_from_it}
    for name in downstream_tables():
        if name in whole_plate:
            had = store.table(name, plate=plate).select("well").unique().collect()
            hit = sorted(had.get_column("well").to_list())
            if hit:
                store.delete(name, plate=plate)
        else:
            hit = _drop_wells(store, name, plate, wells)
        if hit:
            dropped[name] = hit
    return dropped


def _drop_wells(store: Store, name: str, plate: str, wells: list[str]) -> list[str]:
    """Remove ``wells``' rows of ``plate`` from table ``name``; returns the wells that had rows."""
    if "well" in S.table(name).partition_by:  # one partition file per well: delete it
        hit = [w for w in wells if store.exists(name, plate=plate, well=w)]
        for w in hit:
            store.delete(name, plate=plate, well=w)
        return hit
    rows = store.read(name, plate=plate)  # a partition per plate: rewrite it without the wells
    gone = rows.filter(pl.col("well").is_in(wells))
    if gone.height == 0:
        return []
    keep = rows.filter(~pl.col("well").is_in(wells))
    if keep.height:
        store.write(name, keep, mode="replace")
    else:
        store.delete(name, plate=plate)
    if name == "label_images":
        _remove_label_movies(store, gone.get_column("path").to_list())
    return sorted(set(gone.get_column("well").to_list()))


def _remove_label_movies(store: Store, paths: list[str]) -> None:
    """Delete the label movies of removed ``label_images`` rows (paths relative to the store root, or
    absolute in older stores); files outside the store are left alone."""
    root = store.root.resolve()
    for p in paths:
        path = (root / p).resolve()
        if path.is_relative_to(root):
            path.unlink(missing_ok=True)


def _dropped_text(dropped: dict[str, list[str]]) -> str:
    per_well = {t: ws for t, ws in dropped.items() if t not in _whole_plate_tables(dropped)}
    excluded = sorted({w for ws in per_well.values() for w in ws}) or sorted(
        {w for ws in dropped.values() for w in ws}
    )
    text = f"removed the downstream rows of excluded well(s) {', '.join(excluded)}"
    if per_well:
        text += f" from {', '.join(per_well)}"
    whole = [t for t in dropped if t not in per_well]
    if whole:
        text += f"; and the plate's {', '.join(whole)} (estimated with them)"
    return text + "; `lnpstore run` (or each stage) redoes what depends on them"


def _whole_plate_tables(dropped: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for name, made_from_it in PLATE_WIDE.items():
        if name in dropped:
            out |= {name, *made_from_it}
    return out


def ingest_to_store(
    store_root: str | os.PathLike, plate_dir: str | os.PathLike, *, ingest: Any = None, **kwargs: Any
) -> IngestReport:
    """:func:`ingest_plate` into the store at ``store_root``, created when it does not exist; when the
    ingest fails, a store it created is removed again (with any parent folders it made), so a failed
    ingest leaves nothing behind. ``kwargs`` go to :func:`ingest_plate`, or to ``ingest`` (another
    function of the same form, e.g. :func:`lnpstore.instrument.omezarr.ingest_omezarr`)."""
    root = Path(store_root).expanduser().absolute()
    created = _first_missing(root)
    was_empty = created is None and root.is_dir() and not any(root.iterdir())
    store = Store.create(root, exist_ok=True)
    try:
        return (ingest or ingest_plate)(store, plate_dir, **kwargs)
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        elif was_empty:
            for p in root.iterdir():
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        raise


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` (itself or a parent) that does not exist; None when it exists."""
    if path.exists():
        return None
    top = path
    while not top.parent.exists():
        top = top.parent
    return top


def _image_row(
    plate: str,
    plate_dir: Path,
    key: GridKey,
    e: _Entry,
    header: TiffHeader | None,
    expected: tuple[tuple[int, int], str] | None,
    dtypes: tuple[tuple[str, ...], str],
    n_frames: int,
) -> dict[str, Any]:
    well, fld, frame, ch = key
    name = e.filename or image_filename(plate, well, frame, fld, ch)
    channel = CHANNEL_BY_NUMBER.get(ch, f"C{ch:02d}")
    height = width = dtype = None
    if e.file_bytes is None:
        status = "missing"
        if e.record is not None:
            why = f"listed in {MLF_NAME} but not on disk"
        else:
            why = f"not on disk (the plate has frames 1-{n_frames} of field {fld}, channel {channel})"
        detail = (
            f"{name}: {why}. Hint: copy it from the instrument's export; until then well {well} is excluded"
        )
    else:
        assert header is not None
        if header.shape is not None and len(header.shape) >= 2:
            height, width = header.shape[0], header.shape[1]
        dtype = header.dtype
        if header.error is not None:
            status = "unreadable"
            detail = (
                f"{name}: cannot read the TIFF header ({header.error}). Hint: copy the file again from the "
                f"instrument's export; until then well {well} is excluded"
            )
        elif header.shape is None or len(header.shape) != 2 or (expected and header.shape != expected[0]):
            status = "wrong_size"
            want = f"{expected[0][0]}x{expected[0][1]} px ({expected[1]})" if expected else "a 2-D image"
            got = "x".join(str(n) for n in header.shape or ())
            detail = f"{name}: image is {got} px, expected {want}. Hint: re-export it; until then well {well} is excluded"
        elif header.dtype not in dtypes[0]:
            status = "wrong_dtype"
            want = " or ".join(dtypes[0])
            bits = "8" if dtypes[0] == ("uint8",) else "16"
            detail = (
                f"{name}: pixels are {header.dtype}, the instrument writes {want} ({dtypes[1]}); such an "
                f"image (e.g. rescaled to 0..1 by an export) gives wrong intensities. Hint: re-export it as a "
                f"{bits}-bit TIFF from the instrument's original; until then well {well} is excluded"
            )
        elif ch not in CHANNEL_BY_NUMBER:
            status = "unknown_channel"
            known = ", ".join(f"{k} C{v:02d}" for k, v in CHANNELS.items())
            detail = (
                f"{name}: channel C{ch:02d} is not one of this assay's channels ({known}); indexed but not used "
                "by later stages"
            )
        else:
            status, detail = "ok", None
    rec = e.record
    return {
        "plate": plate,
        "well": well,
        "field": fld,
        "frame": frame,
        "channel": channel,
        "channel_number": ch,
        "path": str(plate_dir / e.filename) if e.file_bytes is not None and e.filename else None,
        "status": status,
        "status_detail": detail,
        "height_px": height,
        "width_px": width,
        "dtype": dtype,
        "file_bytes": e.file_bytes,
        "acquired_at": rec.time or None if rec is not None else None,
        "stage_x_um": rec.x_um if rec is not None else None,
        "stage_y_um": rec.y_um if rec is not None else None,
    }


def _exclude_reason(bad: pl.DataFrame) -> str | None:
    """``"missing: 8 image(s), frame(s) 5-6 (field 2); unreadable: 1 image(s), ..."`` or None."""
    if bad.height == 0:
        return None
    parts = []
    for status in EXCLUDING_STATUSES:
        sub = bad.filter(pl.col("status") == status)
        if sub.height:
            flds = _ranges(sub["field"].to_list())
            what = status
            if status == "wrong_dtype":
                what += f" ({', '.join(sorted(set(sub['dtype'].drop_nulls().to_list())))})"
            parts.append(
                f"{what}: {sub.height} image(s), frame(s) {_ranges(sub['frame'].to_list())} (field(s) {flds})"
            )
    return "; ".join(parts)


def _already_stored(
    store: Store, plate: str, plates_df: pl.DataFrame, wells_df: pl.DataFrame, images: pl.DataFrame
) -> bool:
    """Whether the store holds exactly these rows for ``plate`` (``ingested_at`` aside)."""
    old_plate = store.read("plates", plate=plate)
    if old_plate.height != 1:
        return False
    if not old_plate.drop("ingested_at").equals(plates_df.drop("ingested_at")):
        return False
    old_wells = store.read("wells", plate=plate).sort("well")
    if not old_wells.equals(wells_df.sort("well")):
        return False
    key = list(S.table("images").key)
    return store.read("images", plate=plate).sort(key).equals(images.sort(key))
