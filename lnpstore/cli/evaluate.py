"""Evaluation subcommands: evaluate (metrics table + Table 1) and report (HTML + Markdown)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from lnpstore.store.core import Store


def _read_oracle(path: str | None, scale: str, store: Store) -> pl.DataFrame | None:
    if not path:
        return None
    from lnpstore.store.errors import LnpstoreError

    p = Path(path)
    if not p.exists():
        raise LnpstoreError(
            f"oracle file {p} does not exist. Hint: a Parquet/CSV of cell_uid, oracle_prob, oracle_log_gfp"
        )
    oracle = pl.read_csv(p) if p.suffix.lower() == ".csv" else pl.read_parquet(p)
    if scale == "log":
        from lnpstore.models.evaluation import center_oracle

        oracle = center_oracle(store, oracle)
    return oracle


def cmd_evaluate(args: argparse.Namespace) -> int:
    from lnpstore.models.evaluation import evaluate
    from lnpstore.models.randomization import compare_models
    from lnpstore.store.core import Store
    from lnpstore.study.report import write_table1

    t0 = time.perf_counter()
    store = Store.open(args.store)
    oracle = _read_oracle(args.oracle, args.oracle_scale, store)
    metrics = evaluate(store, oracle=oracle)
    table1 = compare_models(store, n_permutations=args.permutations, seed=args.seed)
    path = write_table1(store, table1)
    with pl.Config(tbl_rows=200, tbl_cols=20, tbl_width_chars=200):
        print(metrics.filter(pl.col("fold") == -1).drop("run_id", "fold"))
        print(table1)
    print(
        f"metrics: {metrics.height} rows (table `metrics`); Table 1: {path}  ({time.perf_counter() - t0:.1f} s)"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from lnpstore.store.core import Store
    from lnpstore.study.report import write_report

    t0 = time.perf_counter()
    store = Store.open(args.store)
    out = Path(args.out) if args.out else store.artifacts_dir("report")
    extra = []
    for spec in args.figure or []:
        path, _, caption = spec.partition("=")
        extra.append((path, caption or Path(path).stem))
    oracle = _read_oracle(args.oracle, args.oracle_scale, store)
    info = {"time_taken": args.time_taken} if args.time_taken else {}
    html_path, md_path = write_report(
        store, out, run_info=info, extra_figures=extra, oracle=oracle, n_permutations=args.permutations,
        seed=args.seed,
    )  # fmt: skip
    print(f"report: {html_path}\n        {md_path}  ({time.perf_counter() - t0:.1f} s)")
    return 0


def _add_oracle(p: argparse.ArgumentParser) -> None:
    p.add_argument("--oracle", help="Parquet/CSV of cell_uid, oracle_prob, oracle_log_gfp (simulated plates)")
    p.add_argument(
        "--oracle-scale",
        choices=["centered", "log"],
        default="centered",
        help="oracle_log_gfp is log-centred already, or ln(counts) to centre like the cells (default: %(default)s)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="metrics per model, frame and fold, and the randomization tests")
    p.add_argument("store", help="store folder")
    p.add_argument(
        "--permutations", type=int, default=10_000, help="randomization permutations (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="randomization seed (default: %(default)s)")
    _add_oracle(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="HTML + Markdown report with Figures 6 and 7, metrics and Table 1")
    p.add_argument("store", help="store folder")
    p.add_argument("--out", help="output folder (default: STORE/artifacts/report)")
    p.add_argument("--figure", action="append", metavar="PNG=CAPTION", help="extra figure, repeatable")
    p.add_argument("--permutations", type=int, default=10_000, help="used when `evaluate` has not run")
    p.add_argument("--seed", type=int, default=0, help="used when `evaluate` has not run")
    p.add_argument("--time-taken", help="free text for the report, e.g. '3 h 10 min'")
    _add_oracle(p)
    p.set_defaults(func=cmd_report)
