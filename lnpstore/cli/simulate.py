"""The ``lnpstore simulate`` subcommand: write a simulated plate folder, plate map and truth."""

from __future__ import annotations

import argparse
import time

from lnpstore.store.errors import LnpstoreError


def _field_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--field-size {text!r} is not WIDTHxHEIGHT in px, e.g. 640x560"
        ) from None
    return w, h


def cmd_simulate(args: argparse.Namespace) -> int:
    from lnpstore.simulate import SimulationSettings, simulate_plate

    overrides: dict = {}
    if args.scale is not None:
        overrides["scale"] = args.scale
    if args.fields is not None:
        overrides["n_fields"] = args.fields
    if args.frames is not None:
        overrides["n_frames"] = args.frames
    if args.cells_per_field is not None:
        overrides["cells_per_field"] = args.cells_per_field
    if args.field_size is not None:
        overrides["field_width_px"], overrides["field_height_px"] = args.field_size
    if args.compression is not None:
        overrides["compression"] = args.compression
    if args.fault:
        overrides["faults"] = tuple(args.fault)
    if args.no_control_lnp:
        overrides["control_lnp"] = False
    if args.plate is not None:
        overrides["plate"] = args.plate
    if args.division_rate_per_h is not None:
        overrides["division_rate_per_h"] = args.division_rate_per_h
    if args.workers is not None:
        overrides["workers"] = args.workers
    try:
        settings = SimulationSettings.from_preset(args.preset, args.seed, **overrides)
    except ValueError as exc:
        raise LnpstoreError(str(exc)) from None
    t0 = time.perf_counter()
    plate = simulate_plate(args.out_dir, settings, show_progress=True, plate_format=args.format)
    files = [p for p in plate.plate_dir.rglob("*") if p.is_file()]
    n_bytes, n_files = sum(p.stat().st_size for p in files), len(files)
    print(
        f"wrote {plate.plate_dir} ({n_files} files, {n_bytes / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s\n"
        f"plate map {plate.plate_map}\ntruth     {plate.truth_dir}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="write a simulated plate (TIFFs + mlf/mrf), plate map and ground truth",
        description="Write a simulated time-lapse plate in the CV7000 layout: OUT_DIR/<plate>/ (images and "
        "metadata), OUT_DIR/plate_map.csv and OUT_DIR/truth/ (cells, tracks, registration, settings). "
        "Options override the preset.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created)")
    p.add_argument(
        "--preset",
        choices=["default", "demo", "tiny"],
        default="default",
        help="default: full 2554x2154 fields; demo: small plate; tiny: unit-test plate",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--scale", type=float, help="px per 0.1625 um px; pixel size = 0.1625/scale um")
    p.add_argument("--plate", help="plate name")
    p.add_argument("--fields", type=int, help="fields per well")
    p.add_argument("--frames", type=int, help="frames (time points)")
    p.add_argument("--cells-per-field", type=int, help="cells in the image at frame 1")
    p.add_argument("--field-size", type=_field_size, metavar="WxH", help="image size in px, e.g. 640x560")
    p.add_argument("--compression", choices=["zlib", "zstd"], help="TIFF compression (default: none)")
    p.add_argument(
        "--fault",
        action="append",
        metavar="SPEC",
        help="repeatable: missing_frames:WELL[:FIRST-LAST], unreadable:WELL[:FRAME[:CHANNEL]], "
        "empty_field:WELL[:FIELD]",
    )
    p.add_argument(
        "--format",
        choices=["yokogawa", "ome-zarr"],
        default="yokogawa",
        help="plate layout: yokogawa (CV7000 TIFFs + mlf/mrf, default) or ome-zarr (OUT_DIR/<plate>.zarr, "
        "an NGFF 0.5 HCS plate)",
    )
    p.add_argument("--no-control-lnp", action="store_true", help="control wells get no LNPs at all")
    p.add_argument(
        "--workers", type=int, help="processes writing fields (default: up to 2; 1 for small plates)"
    )
    p.add_argument(
        "--division-rate-per-h",
        type=float,
        help="cell divisions per cell and hour (default: HepG2's, ln 2 / 48 h = 0.0144; 0: none)",
    )
    p.set_defaults(func=cmd_simulate)
