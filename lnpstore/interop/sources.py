"""What to export: one field of a store, a ``track-stack`` output folder, or a CTC folder, resolved to
tracks, label frames, units and provenance (:func:`export_input`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from lnpstore.store.errors import LnpstoreError


@dataclass
class ExportInput:
    """Tracks and label frames to export, with their units and where they came from.

    ``notes``: what the caller should tell the user (units that were not recorded, options ignored)."""

    tracks: pl.DataFrame
    labels: Any
    pixel_size_um: float
    frame_interval_min: float
    metadata: dict
    notes: list[str] = field(default_factory=list)


def export_input(
    source: str | Path,
    *,
    plate: str | None = None,
    well: str | None = None,
    field_: int | None = None,
    pixel_size_um: float | None = None,
    frame_interval_min: float | None = None,
) -> ExportInput:
    """Resolve ``source``: a store (one field: ``plate``, ``well``, ``field_``), a ``lnpstore track-stack``
    output folder, or a Cell Tracking Challenge folder. Given units override the recorded ones."""
    from lnpstore.instrument import stackio
    from lnpstore.store.core import MARKER

    source = Path(source)
    if (source / MARKER).exists():
        return _from_store(source, plate, well, field_, pixel_size_um, frame_interval_min)
    if stackio.is_result(source):
        return _from_stack_result(source, pixel_size_um, frame_interval_min)
    return _from_ctc(source, plate, well, field_, pixel_size_um, frame_interval_min)


def _from_store(source, plate, well, field_, pixel_size_um, frame_interval_min) -> ExportInput:
    from lnpstore.store.core import Store
    from lnpstore.tracking.stage import load_field_labels

    store = Store.open(source)
    plates = store.read("plates")
    if plates.height == 0:
        raise LnpstoreError(f"store {store.root} holds no plates; run `lnpstore ingest` and `lnpstore track`")
    names = plates.get_column("plate").to_list()
    plate = plate or (names[0] if len(names) == 1 else None)
    if plate is None:
        raise LnpstoreError(f"store {store.root} holds plates {names}: choose one with --plate")
    row = plates.filter(pl.col("plate") == plate)
    if row.height == 0:
        raise LnpstoreError(f"store {store.root} has no plate {plate!r}; it holds {names}")
    if not well:
        raise LnpstoreError("a store holds many fields: choose one with --well W (and --field F, default 1)")
    field_ = field_ or 1
    tracks, labels = load_field_labels(store, plate, well, field_)
    px = pixel_size_um or float(row.get_column("pixel_size_um")[0])
    interval = frame_interval_min or float(row.get_column("frame_interval_min")[0])
    return ExportInput(tracks, labels, px, interval, {"plate": plate, "well": well, "field": field_})


def _from_stack_result(source: Path, pixel_size_um, frame_interval_min) -> ExportInput:
    from lnpstore.instrument import stackio

    tracks, labels, run = stackio.read_result(source)
    px = pixel_size_um or run.get("pixel_size_um") or 1.0
    interval = frame_interval_min or run.get("frame_interval_min") or 1.0
    notes = []
    if not (frame_interval_min or run.get("frame_interval_min")):
        notes.append("no frame interval recorded: times in minutes are frames")
    meta = {"source": str(source.resolve()), "track_stack": run.get("input")}
    return ExportInput(tracks, labels, px, interval, meta, notes)


def _from_ctc(source: Path, plate, well, field_, pixel_size_um, frame_interval_min) -> ExportInput:
    from lnpstore.interop.ctc import read_ctc

    notes = []
    if well or plate or field_:
        notes.append("--plate/--well/--field apply to a store only; ignored for a CTC folder")
    tracks, labels = read_ctc(source)
    unknown = [
        msg
        for given, msg in (
            (pixel_size_um, "lengths in um are px (give --pixel-size-um)"),
            (frame_interval_min, "times in minutes are frames (give --frame-interval-min)"),
        )
        if not given
    ]
    if unknown:
        notes.append(f"a CTC folder carries no units: {'; '.join(unknown)}")
    meta = {"source": str(source.resolve())}
    return ExportInput(tracks, labels, pixel_size_um or 1.0, frame_interval_min or 1.0, meta, notes)
