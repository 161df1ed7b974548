"""Ingest speed against the plain read speed of the same files.

Simulates a plate (default: the demo preset), then times

* ``ingest_plate`` into a fresh store (header reads, validation, three table writes), and
* ``tifffile.imread`` of every image file of the plate (all pixels),

and prints images/s and MB/s of both and their ratio. Both read files the simulator just wrote, so
they come from the page cache: the figures compare CPU cost, not disk speed. No assertions on time.

    python benchmarks/ingest.py                       # demo preset (9 wells x 1 field x 72 frames)
    python benchmarks/ingest.py --preset tiny --frames 24 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import tifffile

from lnpstore.instrument.ingest import ingest_plate
from lnpstore.instrument.layout import parse_image_name
from lnpstore.simulate import SimulationSettings, simulate_plate
from lnpstore.store.core import Store


def plain_read_s(files: list[Path]) -> float:
    """Seconds to read every file's pixels with tifffile.imread, one after the other."""
    t0 = time.perf_counter()
    for f in files:
        tifffile.imread(f)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=["demo", "tiny"], default="demo", help="simulator preset")
    ap.add_argument("--frames", type=int, help="override the preset's number of frames (72)")
    ap.add_argument("--fields", type=int, help="override the preset's fields per well")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs of each (best is printed)")
    ap.add_argument("--workdir", help="folder for the plate and stores (default: a temporary one, removed)")
    args = ap.parse_args(argv)

    overrides: dict = {}
    if args.frames:
        overrides["n_frames"] = args.frames
    if args.fields:
        overrides["n_fields"] = args.fields
    settings = getattr(SimulationSettings, args.preset)(0, **overrides)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="lnpstore-bench-"))
    try:
        t0 = time.perf_counter()
        sim = simulate_plate(work / "sim", settings, show_progress=False)
        sim_s = time.perf_counter() - t0
        files = sorted(p for p in sim.plate_dir.iterdir() if parse_image_name(p.name))
        n_bytes = sum(p.stat().st_size for p in files)
        mb = n_bytes / 1e6
        print(
            f"plate {settings.plate} ({args.preset}): {len(files)} files, {mb:.1f} MB, "
            f"{settings.width_px}x{settings.height_px} px; simulated in {sim_s:.1f} s; CPUs {os.cpu_count()}"
        )

        read_s = min(plain_read_s(files) for _ in range(args.repeat))
        ingest_s = []
        for i in range(args.repeat):
            store = Store.create(work / f"store{i}")
            t0 = time.perf_counter()
            report = ingest_plate(store, sim.plate_dir, plate_map=sim.plate_map, show_progress=False)
            ingest_s.append(time.perf_counter() - t0)
        best = min(ingest_s)
        t0 = time.perf_counter()
        again = ingest_plate(store, sim.plate_dir, plate_map=sim.plate_map, show_progress=False)
        reingest_s = time.perf_counter() - t0
        assert not again.written

        print(f"{'':24s} {'seconds':>9s} {'images/s':>10s} {'MB/s':>9s}")
        print(f"{'ingest_plate':24s} {best:9.3f} {len(files) / best:10.0f} {mb / best:9.0f}")
        print(
            f"{'re-ingest (unchanged)':24s} {reingest_s:9.3f} {len(files) / reingest_s:10.0f} {mb / reingest_s:9.0f}"
        )
        print(f"{'tifffile.imread, all':24s} {read_s:9.3f} {len(files) / read_s:10.0f} {mb / read_s:9.0f}")
        print(f"ingest is {read_s / best:.1f}x the plain read speed (>1: faster than reading the pixels)")
        print(f"status counts: {report.status_counts}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
