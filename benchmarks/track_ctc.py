"""Our tracker next to laptrack, scored like the Cell Tracking Challenge on a simulated plate with divisions.

    python benchmarks/track_ctc.py                         # demo plate (scale 0.5), HepG2 division rate, 5 fields
    python benchmarks/track_ctc.py --fields 4 --division-rate 0.05 --seed 1

For each of the first ``--fields`` fields (one per well, in well order), in one run:

* ours: ``lnpstore.tracking`` on the CS channel, as ``lnpstore track-stack`` runs it on any stack (every
  cell, also cells that enter later; followed to the image edge; divisions on);
* laptrack: ``laptrack.LapTrack`` linking *the same per-frame segmentation* (our label images' regions,
  by centroid; splitting on for divisions, no gap closing, cutoffs from the motion scale below);
* ground truth: the simulator's true label images and lineage, in the CTC layout (``truth/ctc/``).

Both results are written as CTC folders and scored with ``lnpstore.scoring.score_tracks`` (traccuracy:
DET, TRA, LNK, division F1). Bars (issue #8): our TRA >= laptrack's, and >= 0.95. Prints one row per field
and the mean over fields.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

MAX_STEP_UM = 12.0  # laptrack's linking cutoff: twice the tracker's largest plausible step (jump_max_um)
SPLIT_UM = 25.0  # laptrack's splitting cutoff: a daughter's centre lies within about a cell radius


def laptrack_on_labels(
    movie,
    *,
    pixel_size_um: float,
    max_step_um: float = MAX_STEP_UM,
    split_um: float = SPLIT_UM,
    gap_frames: int = 0,
) -> pl.DataFrame:
    """Link the regions of a label movie with laptrack; returns the tracks contract of ``lnpstore.ctc``
    (track_id, frame, parent_track_id, lineage_id, label_id, y_px, x_px). ``gap_frames`` > 0 turns on
    laptrack's gap closing (same cutoff) over that many frames."""
    import pandas as pd
    from laptrack import LapTrack
    from skimage.measure import regionprops

    from lnpstore.tracking.lineage import roots

    rows = []
    for f, lab in enumerate(movie):
        for r in regionprops(np.asarray(lab)):
            rows.append({"frame": f, "label_id": r.label, "y_px": r.centroid[0], "x_px": r.centroid[1]})
    df = pd.DataFrame(rows)
    step_px, split_px = max_step_um / pixel_size_um, split_um / pixel_size_um
    lt = LapTrack(
        metric="sqeuclidean",
        cutoff=step_px**2,
        gap_closing_cutoff=step_px**2 if gap_frames > 0 else False,
        gap_closing_max_frame_count=max(1, gap_frames),
        splitting_metric="sqeuclidean",
        splitting_cutoff=split_px**2,
    )
    track_df, split_df, _ = lt.predict_dataframe(df, ["y_px", "x_px"], only_coordinate_cols=False)
    track_df = track_df.reset_index(drop=True)
    parent = {
        int(c) + 1: int(p) + 1
        for p, c in zip(split_df["parent_track_id"], split_df["child_track_id"], strict=True)
    }
    out = pl.DataFrame(
        {
            "track_id": (track_df["track_id"].to_numpy() + 1).astype(np.int32),
            "frame": (track_df["frame"].to_numpy() + 1).astype(np.int16),
            "lineage_id": (track_df["tree_id"].to_numpy() + 1).astype(np.int32),
            "label_id": track_df["label_id"].to_numpy().astype(np.int32),
            "y_px": track_df["y_px"].to_numpy(),
            "x_px": track_df["x_px"].to_numpy(),
        }
    )
    out = out.with_columns(gap_filled=pl.lit(False))
    if gap_frames > 0:  # frames a closed gap skips: gap_filled nodes (no region), as our tracker writes them
        span = (
            out.group_by("track_id")
            .agg(pl.int_ranges(pl.col("frame").min(), pl.col("frame").max() + 1).alias("frame"))
            .explode("frame")
            .with_columns(pl.col("frame").cast(pl.Int16))
        )
        out = (
            span.join(out, on=["track_id", "frame"], how="left")
            .with_columns(pl.col("gap_filled").fill_null(True))
            .sort("track_id", "frame")
        )
    out = out.with_columns(
        pl.col("track_id")
        .replace_strict(parent, default=None, return_dtype=pl.Int32)
        .alias("parent_track_id")
    )
    # lineage = the root track's id (the CTC contract: one root per lineage)
    root = roots({t: parent.get(t) for t in out.get_column("track_id").unique().to_list()})
    return out.with_columns(
        pl.col("track_id").replace_strict(root, return_dtype=pl.Int32).alias("lineage_id")
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=["demo", "tiny", "default"], default="demo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fields", type=int, default=5, help="fields scored (one per well, in well order)")
    ap.add_argument("--division-rate", type=float, default=None, help="per h (default: HepG2, ln 2 / 48 h)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lnpstore-track-ctc"))
    args = ap.parse_args(argv)
    os.environ.setdefault("LNPSTORE_QUIET", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # traccuracy's progress bars
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from track_accuracy import cached_plate_dir, cached_plate_is_valid

    from lnpstore.interop.ctc import write_ctc
    from lnpstore.interop.scoring import score_tracks
    from lnpstore.simulate.simulator import HEPG2_DIVISION_RATE_PER_H, SimulationSettings, simulate_plate
    from lnpstore.simulate.truth import true_tracks
    from lnpstore.tracking import TrackSettings, track_stack
    from lnpstore.tracking.labels import LabelMovie

    rate = HEPG2_DIVISION_RATE_PER_H if args.division_rate is None else args.division_rate
    extra = {"scale": 0.5} if args.preset == "default" else {}
    sim_settings = SimulationSettings.from_preset(
        args.preset, args.seed, workers=1, division_rate_per_h=rate, **extra
    )
    work = cached_plate_dir(args.work, args.preset, sim_settings)
    t0 = time.perf_counter()
    if not cached_plate_is_valid(work, sim_settings):
        import shutil

        if work.exists():
            shutil.rmtree(work)
        simulate_plate(work, sim_settings, show_progress=False)
    plate_dir, truth_dir = work / sim_settings.plate, work / "truth"
    px = sim_settings.pixel_size_um
    print(
        f"plate {sim_settings.plate} ({args.preset}, seed {args.seed}, scale {sim_settings.scale}, "
        f"division rate {rate:.4f}/h = doubling {np.log(2) / rate if rate else float('inf'):.0f} h); "
        f"simulate {time.perf_counter() - t0:.0f} s"
    )
    import tifffile

    settings = TrackSettings(edge_margin_um=0.0, report_new_cells=True, new_peak_every_frames=1)
    wells = list(sim_settings.wells)[: args.fields]
    rows = []
    for well in wells:
        fld = 1
        files = sorted(plate_dir.glob(f"{sim_settings.plate}_{well}_T*F{fld:03d}L01A01Z01C07.tif"))
        frames = (tifffile.imread(p) for p in files)
        out = work / "scored" / f"{well}_f{fld}"
        out.mkdir(parents=True, exist_ok=True)
        t1 = time.perf_counter()
        tracks, movie = track_stack(
            frames, pixel_size_um=px, settings=settings, labels_out=out / "labels.tif"
        )
        t_ours = time.perf_counter() - t1
        gt_dir = truth_dir / "ctc" / f"{well}_F{fld:03d}"  # written by the simulator
        gt = true_tracks(truth_dir, well, fld)
        write_ctc(out / "ours", tracks, movie, kind="RES")
        t2 = time.perf_counter()
        lap = laptrack_on_labels(LabelMovie(out / "labels.tif"), pixel_size_um=px)
        t_lap = time.perf_counter() - t2
        write_ctc(out / "laptrack", lap, LabelMovie(out / "labels.tif"), kind="RES")
        n_div_true = gt.filter(pl.col("parent_track_id").is_not_null()).select("parent_track_id").n_unique()
        for name, res, secs in (("ours", out / "ours", t_ours), ("laptrack", out / "laptrack", t_lap)):
            sc = score_tracks(res, gt_dir)
            rows.append(
                {
                    "well": well,
                    "tracker": name,
                    "DET": sc["DET"],
                    "TRA": sc["TRA"],
                    "LNK": sc.get("LNK"),
                    "division_f1": sc.get("division_f1"),
                    "true_divisions": n_div_true,
                    "seconds": round(secs, 1),
                }
            )
        print(pl.DataFrame(rows[-2:]))
    res = pl.DataFrame(rows)
    mean = res.group_by("tracker", maintain_order=True).agg(pl.col("DET", "TRA", "LNK", "division_f1").mean())
    print("mean over fields:")
    print(mean)
    ours = float(mean.filter(pl.col("tracker") == "ours")["TRA"][0])
    lap = float(mean.filter(pl.col("tracker") == "laptrack")["TRA"][0])
    ok = ours >= lap and ours >= 0.95
    print(f"bar: our TRA {ours:.4f} >= laptrack's {lap:.4f} and >= 0.95: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
