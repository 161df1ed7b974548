"""``lnpstore run``: the whole study in one command."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lnpstore.study.pipeline import RunResult


def cmd_run(args: argparse.Namespace) -> int:
    from lnpstore.study.pipeline import run_study

    if (args.plate is None) != (args.plate_map is None):
        from lnpstore.store.errors import LnpstoreError

        raise LnpstoreError("--plate and --plate-map go together: give both, or neither to simulate a plate")
    overrides = (
        {"tsfresh_engine": args.tsfresh_engine}
        | ({"division_rule": args.division_rule} if args.division_rule else {})
        | ({"sim_compression": args.compression} if args.compression else {})
        | ({"ts_inputs": args.inputs} if args.inputs else {})
    )
    if args.dry_run:
        return dry_run(args, overrides)
    result = run_study(
        args.store,
        preset=args.preset,
        plate_dir=args.plate,
        plate_map=args.plate_map,
        seed=args.seed,
        weights=args.weights,
        dask_address=args.dask,
        local=args.local,
        overrides=overrides,
    )
    print(summary(result))
    return 0


def dry_run(args: argparse.Namespace, overrides: dict) -> int:
    """``--dry-run``: calibrate on this machine, print the projected time per stage, write nothing."""
    from lnpstore.study.estimate import print_projection
    from lnpstore.study.pipeline import config_for

    cfg = config_for(args.preset, seed=args.seed, weights=args.weights, overrides=overrides)
    if args.plate is not None:
        print("note: the projection counts the preset's simulated plate, not the plate given", flush=True)
    print_projection(cfg)
    print(f"dry run: nothing written ({args.store} not created)")
    return 0


def summary(result: RunResult) -> str:
    """The few lines printed at the end of a run: time, what was made, where the report is."""
    from lnpstore.runtime.progress import format_seconds

    total = sum(t.seconds for t in result.timings)
    cells = result.store.read("cells")
    models = result.store.read("models")
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(models.group_by("kind").len().iter_rows()))
    n_test = cells.filter(cells["split"] == "test").height if "split" in cells.columns else 0
    slowest = max(result.timings, key=lambda t: t.seconds, default=None)
    return "\n".join(
        [
            f"lnpstore run: done in {format_seconds(total)}"
            + (f" (longest stage: {slowest.name}, {format_seconds(slowest.seconds)})" if slowest else ""),
            f"  cells: {cells.height} ({n_test} in the test split); models: {models.height} ({kinds})",
            f"  report:  {result.report_html}",
            f"  summary: {result.report_md}",
        ]
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="the whole study: (simulate,) ingest, track, crop, embed, CNN, LSTM, tsfresh, evaluate, report",
        description="Run the whole study. Without --plate it simulates the default plate of the preset. "
        "Every stage skips work already done, so an interrupted run resumes when re-run.",
    )
    p.add_argument("store", nargs="?", default="lnpstore-run", help="run folder (default: %(default)s)")
    p.add_argument(
        "--preset",
        choices=[
            "demo",
            "study",
            "paper",
        ],  # lnpstore.study.pipeline.PRESETS (not imported: --help stays fast)
        default="demo",
        help="demo (default), study (the study's plate size, 26-31 min on 2 cores) or paper (the full protocol)",
    )
    p.add_argument("--plate", help="a plate folder as the instrument wrote it (with --plate-map)")
    p.add_argument("--plate-map", help="CSV/Parquet with well, dose_ng, is_control")
    p.add_argument("--seed", type=int, default=None, help="seed for every random choice (default 0)")
    p.add_argument(
        "--weights",
        default=None,
        help="imagenet (default; found in the Keras/torch caches, $LNPSTORE_VGG16_WEIGHTS, ../shared/weights "
        "or the lnpstore cache, else downloaded there once, md5 checked), random (a fixed-seed random base, "
        "reported loudly) or a path to a weights file",
    )
    p.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS",
        help="a Dask scheduler (tcp://host:8786) to spread tracking and tsfresh over; default: this machine "
        "(no cluster is started; see --local)",
    )
    p.add_argument(
        "--local",
        choices=["threads", "processes"],
        default="processes",
        help="without --dask, per-field work runs in worker processes (default here: the command line "
        "has its __main__ guard, and tracking holds the GIL ~half the time) or in threads (the Python "
        "API's default, which needs no guard)",
    )
    p.add_argument(
        "--division-rule",
        choices=["exclude", "follow"],
        default=None,
        help="a cell that divides before the last frame: exclude it (default), or follow one daughter",
    )
    p.add_argument(
        "--compression",
        choices=["zlib", "zstd"],
        default=None,
        help="write the simulated plate's TIFFs compressed: about half the disk (the demo plate 843 MB "
        "instead of 1.8 GB) for ~2x the time to write it; zstd needs imagecodecs. Ignored with --plate",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="calibrate on this machine (well under a minute), print the projected time per stage and "
        "exit: no store is written",
    )
    from lnpstore.cli.timeseries import add_engine_option, add_inputs_option

    add_engine_option(p)
    add_inputs_option(p, default=None)
    p.set_defaults(func=cmd_run)
