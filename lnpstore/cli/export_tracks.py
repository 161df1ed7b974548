"""Export subcommand: ``lnpstore export-tracks (STORE | CTC_DIR) --format ctc|geff|napari|csv --out OUT``."""

from __future__ import annotations

import argparse
import sys

from lnpstore.store.errors import LnpstoreError

FORMAT_HELP = {
    "ctc": "Cell Tracking Challenge result folder (res_track.txt + maskNNN.tif)",
    "geff": "GEFF zarr folder (t in minutes, y/x in um; track and lineage ids)",
    "napari": ".npz for napari's tracks layer (track_id, t, y, x + parent graph)",
    "csv": "one row per node, coordinates in px and um, t in frames and minutes",
    "ome-zarr": "OME-Zarr labels (labels/tracks, one property per track) in a standalone image "
    "--out FIELD.zarr, or with --into-plate in the OME-Zarr plate the store was ingested from",
}


def cmd_export_tracks(args: argparse.Namespace) -> int:
    if args.format == "ome-zarr" or args.into_plate:
        return _export_ngff(args)
    if not args.out:
        raise LnpstoreError(f"--format {args.format} needs --out")
    from lnpstore.interop.export import export_tracks
    from lnpstore.interop.sources import export_input

    src = export_input(
        args.source,
        plate=args.plate,
        well=args.well,
        field_=args.field,
        pixel_size_um=args.pixel_size_um,
        frame_interval_min=args.frame_interval_min,
    )
    for note in src.notes:
        print(f"note: {note}", file=sys.stderr)
    out = export_tracks(
        src.tracks,
        src.labels,
        args.out,
        format=args.format,
        pixel_size_um=src.pixel_size_um,
        frame_interval_min=src.frame_interval_min,
        metadata=src.metadata,
    )
    n_tracks = src.tracks.get_column("track_id").n_unique()
    print(f"{args.format}: {n_tracks} tracks, {src.tracks.height} nodes -> {out}")
    if args.format == "napari":
        print(
            "load it in napari with:\n"
            "  from lnpstore.interop.export import napari_tracks\n"
            f"  data, kwargs = napari_tracks({str(out)!r}); viewer.add_tracks(data, **kwargs)"
        )
    return 0


def _export_ngff(args: argparse.Namespace) -> int:
    from lnpstore.interop.ngff_labels import export_field_labels

    if args.format != "ome-zarr" or bool(args.out) == bool(args.into_plate):
        raise LnpstoreError("--format ome-zarr takes --out FIELD.zarr or --into-plate (one of them)")
    if not args.well:
        raise LnpstoreError("choose the field with --well W (and --field F, default 1)")
    out = export_field_labels(
        args.source, args.out or None, plate=args.plate, well=args.well, field_=args.field or 1
    )
    print(f"ome-zarr: labels/tracks -> {out} (open it in napari with the napari-ome-zarr plugin)")
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
    p.add_argument(
        "--out",
        help="output folder (ctc, geff, ome-zarr) or file (napari .npz, csv); required but for --into-plate",
    )
    p.add_argument(
        "--into-plate",
        action="store_true",
        help="ome-zarr: add the labels to the field's image in the OME-Zarr plate the store was ingested from",
    )
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
