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
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the shared fault catalogue

from _fault_catalog import (  # noqa: E402
    BAD,
    OUTCOMES,
    Result,
    catalog,
    kill9,
    make_pristine,
    run_fault,
    run_study_subprocess,
    table_contents,
)


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
