"""Export subcommand: ``lnpstore export-tracks (STORE | CTC_DIR) --format ctc|geff|napari|csv --out OUT``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

FORMAT_HELP = {
    "ctc": "Cell Tracking Challenge result folder (res_track.txt + maskNNN.tif)",
    "geff": "GEFF zarr folder (t in minutes, y/x in um; track and lineage ids)",
    "napari": ".npz for napari's tracks layer (track_id, t, y, x + parent graph)",
    "csv": "one row per node, coordinates in px and um, t in frames and minutes",
}


def _from_store(args: argparse.Namespace) -> tuple[Any, Any, float, float, dict]:
    """(tracks, label frames, pixel_size_um, frame_interval_min, metadata) of one field of a store."""
    import polars as pl

    from lnpstore.store.core import Store
    from lnpstore.store.errors import LnpstoreError
    from lnpstore.tracking.tracker import load_field_labels

    store = Store.open(args.source)
    plates = store.read("plates")
    if plates.height == 0:
        raise LnpstoreError(f"store {store.root} holds no plates; run `lnpstore ingest` and `lnpstore track`")
    names = plates.get_column("plate").to_list()
    plate = args.plate or (names[0] if len(names) == 1 else None)
    if plate is None:
        raise LnpstoreError(f"store {store.root} holds plates {names}: choose one with --plate")
    row = plates.filter(pl.col("plate") == plate)
    if row.height == 0:
        raise LnpstoreError(f"store {store.root} has no plate {plate!r}; it holds {names}")
    if not args.well:
        raise LnpstoreError("a store holds many fields: choose one with --well W (and --field F, default 1)")
    field = args.field or 1
    tracks, labels = load_field_labels(store, plate, args.well, field)
    px = args.pixel_size_um or float(row.get_column("pixel_size_um")[0])
    interval = args.frame_interval_min or float(row.get_column("frame_interval_min")[0])
    return tracks, labels, px, interval, {"plate": plate, "well": args.well, "field": field}


def cmd_export_tracks(args: argparse.Namespace) -> int:
    from lnpstore.instrument import stackio
    from lnpstore.interop.ctc import read_ctc
    from lnpstore.interop.export import export_tracks
    from lnpstore.store.core import MARKER

    source = Path(args.source)
    if (source / MARKER).exists():
        tracks, labels, px, interval, meta = _from_store(args)
    elif stackio.is_result(source):
        tracks, labels, run = stackio.read_result(source)
        px = args.pixel_size_um or run.get("pixel_size_um") or 1.0
        interval = args.frame_interval_min or run.get("frame_interval_min") or 1.0
        if not (args.frame_interval_min or run.get("frame_interval_min")):
            print("note: no frame interval recorded: times in minutes are frames", file=sys.stderr)
        meta = {"source": str(source.resolve()), "track_stack": run.get("input")}
    else:
        if args.well or args.plate or args.field:
            print(
                "note: --plate/--well/--field apply to a store only; ignored for a CTC folder",
                file=sys.stderr,
            )
        tracks, labels = read_ctc(source)
        px = args.pixel_size_um or 1.0
        interval = args.frame_interval_min or 1.0
        unknown = [
            msg
            for given, msg in (
                (args.pixel_size_um, "lengths in um are px (give --pixel-size-um)"),
                (args.frame_interval_min, "times in minutes are frames (give --frame-interval-min)"),
            )
            if not given
        ]
        if unknown:
            print(f"note: a CTC folder carries no units: {'; '.join(unknown)}", file=sys.stderr)
        meta = {"source": str(source.resolve())}
    out = export_tracks(
        tracks,
        labels,
        args.out,
        format=args.format,
        pixel_size_um=px,
        frame_interval_min=interval,
        metadata=meta,
    )
    n_tracks = tracks.get_column("track_id").n_unique()
    print(f"{args.format}: {n_tracks} tracks, {tracks.height} nodes -> {out}")
    if args.format == "napari":
        print(
            "load it in napari with:\n"
            "  from lnpstore.export import napari_tracks\n"
            f"  data, kwargs = napari_tracks({str(out)!r}); viewer.add_tracks(data, **kwargs)"
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-tracks",
        help="export one field's tracks as CTC, GEFF, napari or CSV",
        description="Export tracks (a field of a store, or a Cell Tracking Challenge folder) in the "
        "community's formats: "
        + "; ".join(f"{k}: {v}" for k, v in FORMAT_HELP.items())
        + ". The output is written atomically and replaced on a re-run.",
    )
    p.add_argument(
        "source",
        metavar="STORE|DIR",
        help="a store folder, a `track-stack` output folder, or a CTC folder (res_track.txt or TRA/)",
    )
    p.add_argument("--format", required=True, choices=list(FORMAT_HELP), help="output format")
    p.add_argument("--out", required=True, help="output folder (ctc, geff) or file (napari .npz, csv)")
    p.add_argument("--plate", help="plate (store input; default: the store's only plate)")
    p.add_argument("--well", help="well, e.g. C03 (store input)")
    p.add_argument("--field", type=int, help="field, 1-based (store input; default 1)")
    p.add_argument(
        "--pixel-size-um", type=float, help="um per px (default: the plate's; 1.0 for a CTC folder)"
    )
    p.add_argument(
        "--frame-interval-min",
        type=float,
        help="minutes between frames (default: the plate's; 1.0 for a CTC folder)",
    )
    p.set_defaults(func=cmd_export_tracks)
