"""Fault injection (issue 14): what a hostile or clumsy user, or a crash, does to a plate, a store or
the command line, and what lnpstore makes of it.

Makes, once, a tiny simulated plate (3 wells x 6 frames, 96 px) and its ingested store, and a full
store of every stage (``run_study`` on a small simulated plate, the same run the kill -9 part uses);
then injects every fault of ``tests/_fault_catalog.py`` on a fresh copy, runs the real commands
(``lnpstore ...``: in this process, or in a subprocess where a process boundary matters) and
classifies the outcome: handled, clear_error, flagged, silently_accepted, traceback; plus rows_lost
(a table the fault did not touch lost rows). Then kill -9: the run is killed with SIGKILL at 10
seeded random times spread over the uninterrupted run's duration, re-run to completion, and every
table compared with the uninterrupted run's.

    python benchmarks/faults.py                      # everything (~25 min on 2 slow cores)
    python benchmarks/faults.py --kills 0 --verbose  # the faults only (~6 min), one line per fault
    python benchmarks/faults.py --json faults.json   # per-fault results as JSON

Exit status 1 when a fault ends silently accepted or in a traceback, rows are lost, or a resume
differs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the shared fault catalogue

from _fault_catalog import BAD, OUTCOMES, Result, catalog, make_pristine, run_fault, table_names  # noqa: E402

#: The run the kill -9 part interrupts (and whose store the store faults damage): a small simulated
#: plate (6 wells, 400 px fields, 8 frames) through every stage with the smallest searches.
RUN_OVERRIDES = {
    "sim_preset": "tiny",
    "sim_overrides": (("columns", (3, 4)), ("cells_per_field", 16), ("n_frames", 8)),
    "t_in_frames": 6,
    "n_augs": 1,
    "n_folds": 2,
    "cnn_epochs": 1,
    "lstm_samples": 1,
    "lstm_units": (32,),
    "tsfresh_samples": 2,
    "checkpoints_frames": (3, 6),
    "n_permutations": 200,
    "weights": "random",
}
RUN = """
import sys
from lnpstore.study.pipeline import run_study
run_study(sys.argv[1], preset="demo", overrides={overrides!r}, show_progress=False)
"""

#: What legitimately differs between two runs of the same study in the same folder (every other
#: column, content hashes, model ids and run ids included, must be equal):
#: - ``plates.ingested_at``, ``models.created_at``: wall-clock times of the ingest and of training;
#: - the ``timings_s`` entry of ``models.config`` (tsfresh models record their stages' durations, s).
#: The kill -9 runs use the reference run's folder path, so that absolute paths (``plates.source_dir``,
#: ``images.path``, ``models.weights_path``) and everything hashed from them compare equal too.
RUN_SPECIFIC_COLUMNS = {"plates": ("ingested_at",), "models": ("created_at",)}
RUN_SPECIFIC_CONFIG_KEYS = ("timings_s",)


def _without_timings(config: str) -> str:
    doc = json.loads(config)
    if isinstance(doc, dict):
        for k in RUN_SPECIFIC_CONFIG_KEYS:
            doc.pop(k, None)
    return json.dumps(doc, sort_keys=True)


def run_study_subprocess(folder: Path, *, kill_after_s: float | None = None) -> tuple[int, float]:
    """``run_study`` in a fresh process; SIGKILL after ``kill_after_s``. Returns (exit status, seconds)."""
    env = {**os.environ, "LNPSTORE_QUIET": "1"}
    code = RUN.format(overrides=RUN_OVERRIDES)
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = p.communicate(timeout=kill_after_s)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.communicate()
        return -9, time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"run_study in {folder} failed:\n{err[-3000:]}")
    return 0, time.perf_counter() - t0


def table_contents(store: Path) -> dict[str, pl.DataFrame]:
    """Every table, run-specific columns dropped, rows sorted (every column), read through the store."""
    from lnpstore.store.core import Store

    s = Store.open(store)
    out = {}
    for t in table_names():
        df = s.read(t)
        df = df.drop(RUN_SPECIFIC_COLUMNS.get(t, ()))
        if t == "models" and df.height:
            df = df.with_columns(pl.col("config").map_elements(_without_timings, return_dtype=pl.String))
        sortable = [
            c
            for c, dt in df.schema.items()
            if dt.is_numeric() or dt in (pl.String, pl.Boolean) or dt.is_temporal()
        ]
        out[t] = df.sort(sortable, nulls_last=True) if df.height else df
    return out


def differences(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> list[str]:
    out = []
    for t in a:
        if a[t].shape != b[t].shape:
            out.append(f"{t}: shape {b[t].shape} vs {a[t].shape}")
        elif not a[t].equals(b[t]):
            diff_cols = [c for c in a[t].columns if not a[t][c].equals(b[t][c])]
            out.append(f"{t}: columns {diff_cols} differ")
    return out


def kill9(run_dir: Path, want: dict[str, pl.DataFrame], duration_s: float, n: int, seed: int) -> list[dict]:
    """Kill the run at ``n`` seeded random times within its duration, re-run it to completion in the
    same folder, compare every table with ``want`` (the uninterrupted run's)."""
    rng = random.Random(seed)
    # one time in each of n equal slices of the run (seeded), so the kills spread over every stage
    times = [duration_s * (i + rng.random()) / n for i in range(n)]
    out = []
    for t_kill in times:
        shutil.rmtree(run_dir, ignore_errors=True)
        rc, _ = run_study_subprocess(run_dir, kill_after_s=t_kill)
        _, resume_s = run_study_subprocess(run_dir)
        diffs = differences(want, table_contents(run_dir / "store"))
        out.append(
            {
                "kill_at_s": round(t_kill, 1),
                "killed": rc == -9,
                "resume_s": round(resume_s, 1),
                "identical": not diffs,
                "differences": diffs,
            }
        )
        state = "killed" if rc == -9 else "finished first"
        verdict = "identical" if not diffs else "DIFFERENT: " + "; ".join(diffs)
        print(f"  kill -9 at {t_kill:5.1f} s ({state}): resumed in {resume_s:.0f} s, {verdict}", flush=True)
    return out


def summary(results: list[Result], kills: list[dict]) -> str:
    counts = {o: sum(r.outcome == o for r in results) for o in OUTCOMES}
    lines = [
        f"faults tried            {len(results)}",
        f"  handled (same data)   {counts['handled']}",
        f"  clear errors          {counts['clear_error']}",
        f"  flagged               {counts['flagged']}",
        f"  silently accepted     {counts['silently_accepted']}",
        f"  tracebacks            {counts['traceback']}",
        f"rows lost               {sum(r.rows_lost for r in results)}",
    ]
    if kills:
        lines.append(
            f"kill -9 at {len(kills)} points: {sum(k['identical'] for k in kills)}/{len(kills)} identical"
        )
    families: dict[str, list[Result]] = {}
    for r in results:
        families.setdefault(r.family, []).append(r)
    lines.append("per family: " + "; ".join(f"{f} {len(rs)}" for f, rs in families.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=10, help="kill -9 points (default 10; 0: skip)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    ap.add_argument("--upserts", type=int, default=1000, help="upserts per racing writer (default 1000)")
    ap.add_argument("--only", default=None, help="only faults whose name contains this text")
    ap.add_argument("--verbose", action="store_true", help="one line per fault")
    ap.add_argument("--json", default=None, help="write per-fault results (and kill -9 results) here")
    args = ap.parse_args(argv)
    os.environ.setdefault("LNPSTORE_QUIET", "1")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lnpstore-faults-") as d:
        tmp = Path(d)
        print("uninterrupted run (the reference for kill -9; its store is the full store) ...", flush=True)
        run_dir = tmp / "run"
        rc, duration = run_study_subprocess(run_dir)
        print(f"  {duration:.0f} s", flush=True)
        want = table_contents(run_dir / "store")
        pristine = make_pristine(tmp / "pristine", full_store=run_dir / "store")
        faults = [
            f for f in catalog(full=True, n_upserts=args.upserts) if not args.only or args.only in f.name
        ]
        results = []
        for i, f in enumerate(faults):
            r = run_fault(f, pristine, tmp / "faults" / f"{i:03d}")
            shutil.rmtree(tmp / "faults" / f"{i:03d}", ignore_errors=True)
            results.append(r)
            if args.verbose or r.outcome in BAD or r.rows_lost:
                lost = " ROWS LOST" if r.rows_lost else ""
                print(
                    f"  [{r.outcome:17s}]{lost} {r.family:12s} {r.name}: {r.detail[:220]} ({r.seconds:.1f} s)",
                    flush=True,
                )
        t_faults = time.perf_counter() - t_start
        kills = []
        if args.kills:
            print(
                f"kill -9 at {args.kills} random points of a {duration:.0f} s run (seed {args.seed}) ...",
                flush=True,
            )
            kills = kill9(run_dir, want, duration, args.kills, args.seed)
    print()
    print(summary(results, kills))
    total = time.perf_counter() - t_start
    print(f"wall time: {total / 60:.1f} min (faults {t_faults / 60:.1f} min)")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"faults": [asdict(r) for r in results], "kill9": kills, "wall_s": round(total, 1)}, indent=1
            )
        )
    bad = any(r.outcome in BAD or r.rows_lost for r in results) or not all(k["identical"] for k in kills)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
