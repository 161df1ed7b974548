"""Our tracker next to laptrack on real Cell Tracking Challenge sequences (issue #16).

    python benchmarks/track_real.py DATA_DIR                       # the three development sequences
    python benchmarks/track_real.py DATA_DIR --sequences Fluo-N2DH-SIM+/01 --with-window

DATA_DIR holds the CTC's training layout (``Fluo-N2DH-SIM+/01``, ``Fluo-N2DH-SIM+/01_GT/TRA``, ...);
``../shared/data/README.md`` says how to get the development sequences (CTC terms: evaluation only; never
commit them). Per sequence, each run in a child process (time and peak memory are its own):

* ``ours``: ``lnpstore track-stack`` as a new user runs it: default settings except the pixel size, the
  stain and (optionally, ``--give-diameter``) the cell diameter; then ``export-tracks --format ctc``;
* ``ours+GT``: ``track-stack --labels SEQ_GT/TRA`` (the CTC's own masks linked by our linker);
* ``laptrack``: ``laptrack.LapTrack`` linking *our* segmentation (the regions of our label movie, by
  centroid; gap closing 1 frame, splitting on; cutoffs one and two cell diameters);
* ``window`` (``--with-window``): our study's method (seeds + window watershed), for reference.

Scores: Valid, DET, SEG, TRA and LNK from py-ctcmetrics (the CTC's measures); TRA again and division
F1 from ``lnpstore.interop.scoring.score_tracks`` (traccuracy), as a cross-check; ``valid`` also needs
the export to pass ``lnpstore.interop.ctc.validate_ctc``. Prints one row per (sequence, tracker) and writes
``WORK/track_real.csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

#: name -> (pixel size um, stain) from the data's documentation
SEQUENCES = {
    "Fluo-N2DH-SIM+/01": (0.125, "nucleus"),
    "Fluo-N2DH-SIM+/02": (0.125, "nucleus"),
    "Fluo-C2DL-MSC/02": (0.3, "cytoplasm"),
}


PEAK_FILE = "peak_mb.txt"


def run_child(args: list[str]) -> tuple[float, float]:
    """Run this script's ``--child`` mode; (seconds, peak resident memory in MB) of that process (its
    VmHWM after exec: ru_maxrss would count the parent's memory copied at fork)."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, __file__, "--child", *args])
    if p.returncode:
        raise SystemExit(f"child failed ({p.returncode}): {args}")
    peak = Path(args[3]) / PEAK_FILE
    return time.perf_counter() - t0, float(peak.read_text()) if peak.exists() else float("nan")


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def child(argv: list[str]) -> None:
    """One tracker on one sequence, writing a CTC result folder."""
    kind, seq, gt, out, px, stain, diameter = argv
    from lnpstore.cli.main import main

    res = Path(out) / "res"
    if kind in ("ours", "ours+GT", "window"):
        cmd = ["track-stack", seq, "--out", out, "--pixel-size-um", px, "--stain", stain]
        if kind == "ours+GT":
            cmd += ["--labels", str(Path(gt) / "TRA")]
        if kind == "window":
            cmd += ["--method", "window"]
        if diameter != "-":
            cmd += ["--cell-diameter-um", diameter]
        assert main(cmd) == 0
        assert main(["export-tracks", out, "--format", "ctc", "--out", str(res)]) == 0
    elif kind == "laptrack":
        from track_ctc import laptrack_on_labels

        from lnpstore.interop.ctc import write_ctc
        from lnpstore.tracking.labels import LabelMovie

        ours = Path(out).parent / "ours"
        meta = json.loads((ours / "track_stack.json").read_text())
        d_um = meta["settings"]["detect"]["cell_diameter_um"]
        movie = LabelMovie(ours / "labels.tif")
        lap = laptrack_on_labels(
            movie, pixel_size_um=float(px), max_step_um=d_um, split_um=2 * d_um, gap_frames=1
        )
        write_ctc(res, lap, movie, kind="RES")
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / PEAK_FILE).write_text(f"{_peak_mb():.1f}")


def ctc_scores(res: Path, gt: Path) -> dict[str, float]:
    """Valid, DET, SEG, TRA and LNK from py-ctcmetrics (the CTC's own measures, reimplemented and
    maintained by the challenge's community)."""
    try:
        from ctc_metrics import evaluate_sequence
    except ModuleNotFoundError:
        raise SystemExit(
            "this benchmark scores with py-ctcmetrics: pip install py-ctcmetrics==1.3.3"
        ) from None

    got = evaluate_sequence(str(res), str(gt), metrics=["Valid", "DET", "SEG", "TRA", "LNK"], threads=1)
    return {k: float(got[k]) for k in ("Valid", "DET", "SEG", "TRA", "LNK")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="folder with the CTC sequences (e.g. ~/.cache/lnpstore-dev/ctc)")
    ap.add_argument(
        "--sequences", nargs="*", default=list(SEQUENCES), help="default: the three dev sequences"
    )
    ap.add_argument("--work", type=Path, default=Path("/tmp/lnpstore-track-real"))
    ap.add_argument("--with-window", action="store_true", help="also our study's window method")
    ap.add_argument("--give-diameter", action="store_true", help="pass the GT's median cell diameter")
    args = ap.parse_args(argv)
    os.environ.setdefault("LNPSTORE_QUIET", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    from lnpstore.interop.ctc import validate_ctc
    from lnpstore.interop.scoring import score_tracks

    kinds = ["ours", "ours+GT", "laptrack"] + (["window"] if args.with_window else [])
    rows = []
    for name in args.sequences:
        px, stain = SEQUENCES[name]
        seq, gt = args.data / name, args.data / f"{name}_GT"
        diameter = f"{_gt_diameter_um(gt, px):.2f}" if args.give_diameter else "-"
        for kind in kinds:
            out = args.work / name.replace("/", "_") / kind.replace("+", "_")
            secs, mb = run_child([kind, str(seq), str(gt), str(out), str(px), stain, diameter])
            res = out / "res"
            try:
                validate_ctc(res)
                valid = True
            except Exception:
                valid = False
            sc = score_tracks(res, gt)
            ctc = ctc_scores(res, gt)
            rows.append(
                {
                    "sequence": name,
                    "tracker": kind,
                    "valid": valid and ctc["Valid"] == 1.0,
                    "DET": round(ctc["DET"], 4),
                    "TRA": round(ctc["TRA"], 4),
                    "LNK": round(ctc["LNK"], 4),
                    "SEG": round(ctc["SEG"], 4),
                    "TRA_traccuracy": round(sc["TRA"], 4),
                    "division_f1": round(sc["division_f1"], 4),
                    "divisions": f"{sc['tp_divisions']}/{sc['gt_divisions']} (+{sc['fp_divisions']} false)",
                    "seconds": round(secs, 1),
                    "peak_mb": round(mb),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    table = pl.DataFrame(rows)
    args.work.mkdir(parents=True, exist_ok=True)
    table.write_csv(args.work / "track_real.csv")
    with pl.Config(tbl_rows=50, tbl_cols=20, tbl_width_chars=200):
        print(table)
    return 0


def _gt_diameter_um(gt: Path, px: float) -> float:
    import tifffile

    g = tifffile.imread(sorted((gt / "TRA").glob("man_track*.tif"))[0])
    areas = np.bincount(g.ravel())[1:]
    return float(2 * np.sqrt(np.median(areas[areas > 0]) / np.pi) * px)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        sys.exit(0)
    sys.exit(main())
