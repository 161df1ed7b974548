"""Tracking subcommand: ``lnpstore track STORE [--plate P] [--seeds auto|CSV] [--dask ADDRESS] [--workers N]``."""

from __future__ import annotations

import argparse


def cmd_track(args: argparse.Namespace) -> int:
    from lnpstore.runtime.execution import Executor
    from lnpstore.store.core import Store
    from lnpstore.tracking import track_plate

    store = Store.open(args.store)
    plates = [args.plate] if args.plate else store.read("plates").get_column("plate").to_list()
    if not plates:
        print(f"store {store.root} holds no plates; run `lnpstore ingest` first")
        return 1
    if args.dask:
        ex = Executor(address=args.dask)
    elif args.workers and args.workers > 1:
        ex = Executor(n_workers=args.workers)
    else:
        ex = Executor.synchronous()
    with ex:
        for plate in plates:
            print(track_plate(store, plate, seeds=args.seeds, executor=ex, show_progress=True))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "track",
        help="seed and track the cells of every field (resumable); writes seeds and tracks",
        description="Seed cells in frame 1 (automatically from the CS channel, or from a CSV) and track "
        "them through every frame with window-based marker-controlled watershed. Fields already tracked "
        "are skipped, so an interrupted run resumes where it stopped.",
    )
    p.add_argument("store", help="store folder")
    p.add_argument("--plate", help="plate to track (default: every plate in the store)")
    p.add_argument(
        "--seeds",
        default="auto",
        metavar="auto|CSV",
        help="'auto' (default) or a CSV of manual frame-1 centres with columns well, field, y_px, x_px",
    )
    p.add_argument(
        "--dask", metavar="ADDRESS", help="Dask scheduler address (e.g. tcp://host:8786) to use a cluster"
    )
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default: 1, in-process)")
    p.set_defaults(func=cmd_track)
    register_track_stack(sub)


def cmd_track_stack(args: argparse.Namespace) -> int:
    from lnpstore.tracking import TrackSettings, track_stack_to_folder

    # any stack: follow every cell, to the edge, looking for new ones on every frame
    settings = TrackSettings.for_stain(
        args.stain,
        edge_margin_um=args.edge_margin_um,
        report_new_cells=not args.frame1_cells_only,
        new_peak_every_frames=1,
    )
    if args.no_divisions:
        settings = settings.replace(division_min_fraction=0.0)
    run = track_stack_to_folder(
        args.input,
        args.out,
        pixel_size_um=args.pixel_size_um,
        settings=settings,
        seeds=args.seeds,
        frame_interval_min=args.frame_interval_min,
        stain=args.stain,
    )
    print(run)
    return 0


def register_track_stack(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "track-stack",
        help="track the cells of any time-lapse stack (TIFF folder or T x Y x X TIFF)",
        description="Track cells in one stained channel of any time-lapse with the plate tracker "
        "(seeded watershed in a window around each cell, divisions, quality flags). Writes "
        "tracks.parquet, labels.tif (one page per frame, pixel = track_id) and track_stack.json into "
        "--out; export them with `lnpstore export-tracks DIR --format ctc|geff|napari|csv`.",
    )
    p.add_argument(
        "input", help="a folder of 2-D TIFF frames in time order (t000.tif, ...) or a T x Y x X TIFF"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--pixel-size-um", type=float, required=True, help="um per px (sets every length)")
    p.add_argument("--frame-interval-min", type=float, default=None, help="minutes between frames (recorded)")
    p.add_argument(
        "--seeds",
        default="auto",
        metavar="auto|CSV|LABELS.tif",
        help="'auto' (default), a CSV with columns y_px, x_px, or a label image of frame 1",
    )
    p.add_argument(
        "--stain",
        choices=["cytoplasm", "nucleus"],
        default="cytoplasm",
        help="cytoplasm (default): intensity elevation, dim nucleus filled; nucleus: distance + "
        "intensity elevation, no hole filling (see TrackSettings.for_stain)",
    )
    p.add_argument("--no-divisions", action="store_true", help="do not detect divisions")
    p.add_argument(
        "--frame1-cells-only",
        action="store_true",
        help="track only the cells seeded in frame 1, as the study did (default: also cells that appear later)",
    )
    p.add_argument(
        "--edge-margin-um",
        type=float,
        default=0.0,
        help="stop a track when its centre comes this close to the image edge (default: 0, follow cells "
        "to the edge; the study used 15.6 um)",
    )
    p.set_defaults(func=cmd_track_stack)
