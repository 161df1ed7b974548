"""Tracking subcommands: ``lnpstore track STORE ...`` (the plate stage) and ``lnpstore track-stack INPUT ...``
(any time-lapse). Only parsing and printing: the work is :mod:`lnpstore.tracking`'s."""

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
    settings = settings_from_args(args)
    if args.show_settings:
        return _show(settings)
    with ex:
        for plate in plates:
            print(
                track_plate(
                    store,
                    plate,
                    seeds=args.seeds,
                    settings=settings,
                    executor=ex,
                    show_progress=True,
                    masks=args.labels,
                )
            )
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
    p.add_argument(
        "--labels",
        metavar="DIR",
        help="link segmentations made elsewhere instead of segmenting: DIR/WELL/fFFF.tif (T x Y x X labels) "
        "or DIR/WELL/fFFF/ (2-D label frames) per field",
    )
    p.add_argument(
        "--stain", choices=["cytoplasm", "nucleus"], default="cytoplasm", help="the CS channel's stain"
    )
    add_settings_args(p)
    p.set_defaults(func=cmd_track)
    register_track_stack(sub)


#: Flags that set one tracking setting each: (flag, setting, type, help). ``seeds.x`` is a nested field.
SETTING_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    (
        "--method",
        "method",
        str,
        "window (seeds + window watershed) or detect (cells found every frame, linked)",
    ),
    (
        "--cell-diameter-um",
        "detect.cell_diameter_um",
        float,
        "expected cell diameter (default: from frame 1)",
    ),
    (
        "--edge-margin-um",
        "edge_margin_um",
        float,
        "stop a track when its centre comes this close to the edge",
    ),
    ("--max-gap-frames", "max_gap_frames", int, "frames a lost cell is bridged before it stops"),
    ("--min-area-um2", "min_area_um2", float, "a region smaller than this is lost"),
    (
        "--division-min-fraction",
        "division_min_fraction",
        float,
        "each daughter's share of the mother (0: off)",
    ),
    ("--elevation", "elevation", str, "watershed elevation: intensity, distance or both"),
    ("--threshold-method", "seeds.threshold_method", str, "foreground threshold: li, otsu or triangle"),
    ("--threshold-factor", "seeds.threshold_factor", float, "multiplies the foreground threshold"),
    ("--seed-min-area-um2", "seeds.min_area_um2", float, "the seed detector's smallest cell"),
    ("--seed-min-distance-um", "seeds.min_cell_distance_um", float, "smallest distance between two seeds"),
)


def add_settings_args(p: argparse.ArgumentParser) -> None:
    """``--settings FILE``, ``--show-settings`` and one flag per common setting (default: unset)."""
    g = p.add_argument_group(
        "tracking settings",
        "Every setting can be given in --settings FILE (JSON or TOML: a full or partial mapping, nested "
        "'seeds'/'spots' sections, or a track_stack.json, whose 'settings' are used). Precedence: "
        "--stain's preset < this command's defaults < FILE < the flags below. "
        "`python -c 'from lnpstore.tracking import TrackSettings as T; print(T.describe())'` lists them.",
    )
    g.add_argument("--settings", metavar="FILE", help="tracking settings (JSON or TOML)")
    g.add_argument(
        "--show-settings", action="store_true", help="print the resolved settings as JSON and exit"
    )
    for flag, name, typ, text in SETTING_FLAGS:
        g.add_argument(
            flag, dest="set__" + name.replace(".", "__"), type=typ, default=None, help=f"{text} ({name})"
        )


def settings_from_args(args: argparse.Namespace, base: dict | None = None):
    """The run's :class:`TrackSettings` from ``--stain``, ``base``, ``--settings`` and the flags."""
    from lnpstore.tracking.settings import resolve_settings

    flags = {k[len("set__") :]: v for k, v in vars(args).items() if k.startswith("set__")}
    return resolve_settings(stain=getattr(args, "stain", "cytoplasm"), file=args.settings, base=base, **flags)


def _show(settings) -> int:
    import json

    print(json.dumps(settings.to_dict(), indent=2))
    return 0


def cmd_track_stack(args: argparse.Namespace) -> int:
    from lnpstore.tracking import track_stack_to_folder

    # any stack: follow every cell, to the edge, looking for new ones on every frame
    base = {
        # real microscopy: cells found in every frame, then linked; given seeds: the study's method
        "method": "detect" if args.seeds == "auto" else "window",
        "edge_margin_um": 0.0,
        "report_new_cells": not args.frame1_cells_only,
        "new_peak_every_frames": 1,
    }
    if args.no_divisions:
        base["division_min_fraction"] = 0.0
    settings = settings_from_args(args, base)
    if args.no_divisions:
        settings = settings.replace(division_min_fraction=0.0)
    if args.show_settings:
        return _show(settings)
    run = track_stack_to_folder(
        args.input,
        args.out,
        pixel_size_um=args.pixel_size_um,
        settings=settings,
        seeds=args.seeds,
        frame_interval_min=args.frame_interval_min,
        stain=args.stain,
        masks=args.labels,
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
    p.add_argument(
        "--labels",
        metavar="DIR|STACK.tif",
        help="link a segmentation made elsewhere (Cellpose, StarDist, ilastik, CTC masks: a folder of 2-D "
        "label TIFFs in time order or a T x Y x X label TIFF) instead of segmenting; same gap closing, "
        "divisions and outputs",
    )
    p.add_argument("--no-divisions", action="store_true", help="do not detect divisions")
    p.add_argument(
        "--frame1-cells-only",
        action="store_true",
        help="track only the cells seeded in frame 1, as the study did (default: also cells that appear later)",
    )
    add_settings_args(p)
    p.set_defaults(func=cmd_track_stack)
