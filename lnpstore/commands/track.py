"""Tracking subcommand: ``lnpstore track STORE [--plate P] [--seeds auto|CSV] [--dask ADDRESS] [--workers N]``."""

from __future__ import annotations

import argparse


def cmd_track(args: argparse.Namespace) -> int:
    from ..execution import Executor
    from ..store import Store
    from ..tracking import track_plate

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
