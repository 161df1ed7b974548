"""Tracking speed (cell-frames/s) and peak memory for 1 field vs several fields.

    python benchmarks/track.py --preset demo            # simulates the demo plate once (cached in --work,
                                                        # in a folder keyed on settings, version, simulator)
    python benchmarks/track.py --preset tiny --fields 1 3

Each field is tracked by ``track_field_job`` (the unit the Executor runs), in this process, one after
the other, reading frames lazily from the TIFFs. Speed is timed without tracemalloc; peak memory is the
tracemalloc peak of Python/NumPy allocations during a second, untimed run (plus the process's max RSS,
which includes the imported libraries); it must not grow with the number of fields, since a field's
movie is never held in memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import polars as pl


def field_jobs(store, plate: str) -> list[dict]:
    """One ``track_field_job`` job per (well, field) of the plate, automatic seeds, default settings,
    writing its label movie where ``lnpstore track`` does (so the figures include that I/O)."""
    from lnpstore.tracking import TRACK_CHANNELS, TrackSettings, labels_path_for

    px = float(store.read("plates", plate=plate)["pixel_size_um"][0])
    images = store.read("images", plate=plate).filter(pl.col("status") == "ok")
    n_frames = int(images["frame"].max())
    jobs = []
    for (well, fld), g in sorted(images.group_by(["well", "field"]), key=lambda kv: kv[0]):
        paths = {(r["frame"], r["channel"]): r["path"] for r in g.iter_rows(named=True)}
        frames = [{ch: paths.get((f, ch)) for ch in TRACK_CHANNELS} for f in range(1, n_frames + 1)]
        jobs.append(
            {
                "plate": plate,
                "well": well,
                "field": int(fld),
                "pixel_size_um": px,
                "settings": TrackSettings().to_dict(),
                "seeds": None,
                "frames": frames,
                "labels_path": str(labels_path_for(store, plate, well, int(fld))),
            }
        )
    return jobs


def run(jobs: list[dict]) -> dict:
    """Track ``jobs`` twice: timed without tracemalloc (it slows allocation-heavy code about twofold,
    so speeds measured under it are not the tracker's), then under tracemalloc for the peak memory."""
    from lnpstore.tracking import track_field_job

    t0 = time.perf_counter()
    nodes = 0
    for job in jobs:
        nodes += track_field_job(job)["tracks"].height
    secs = time.perf_counter() - t0
    tracemalloc.start()
    for job in jobs:
        track_field_job(job)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "fields": len(jobs),
        "cell_frames": nodes,
        "seconds": secs,
        "cell_frames_per_s": nodes / secs,
        "peak_traced_mb": peak / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=["default", "demo", "tiny"], default="demo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fields", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--work", type=Path, default=Path("/tmp/lnpstore-track-bench"))
    args = ap.parse_args(argv)
    os.environ.setdefault("LNPSTORE_QUIET", "1")

    from lnpstore.instrument.ingest import ingest_plate
    from lnpstore.simulate.simulator import SimulationSettings, simulate_plate
    from lnpstore.store.core import Store

    # the "default simulated plate" is scored at scale 0.5
    extra = {"scale": 0.5} if args.preset == "default" else {}
    s = SimulationSettings.from_preset(args.preset, args.seed, workers=1, **extra)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from track_accuracy import cached_plate_dir, cached_plate_is_valid

    work = cached_plate_dir(args.work, args.preset, s)
    if not (cached_plate_is_valid(work, s) and (work / "store" / "lnpstore.json").exists()):
        if work.exists():
            import shutil

            shutil.rmtree(work)
        sim = simulate_plate(work, s, show_progress=False)
        store = Store.create(work / "store")
        ingest_plate(store, sim.plate_dir, plate_map=sim.plate_map, show_progress=False)
    store = Store.open(work / "store")
    jobs = field_jobs(store, s.plate)
    print(
        f"plate {s.plate} ({args.preset}): {len(jobs)} fields of {s.height_px} x {s.width_px} px, "
        f"{s.n_frames} frames, pixel {s.pixel_size_um:.4f} um"
    )
    rows = []
    for k in args.fields:
        if k > len(jobs):
            continue
        r = run(jobs[:k])
        rows.append(r)
        print(
            f"  {r['fields']} field(s): {r['cell_frames']} cell-frames in {r['seconds']:.1f} s = "
            f"{r['cell_frames_per_s']:.0f} cell-frames/s; peak traced memory {r['peak_traced_mb']:.1f} MB"
        )
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  process max RSS {maxrss_mb:.0f} MB (includes numpy/scipy/skimage/polars)")
    if len(rows) >= 2:
        growth = rows[-1]["peak_traced_mb"] / rows[0]["peak_traced_mb"]
        verdict = "flat" if growth < 1.25 else "GROWS"
        print(
            f"  peak memory {rows[-1]['fields']} vs {rows[0]['fields']} field(s): x{growth:.2f} ({verdict})"
        )
        return 0 if growth < 1.25 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
