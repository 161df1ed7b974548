"""Scoring subcommand: ``lnpstore score-tracks RESULT GROUND_TRUTH [--json]`` (both in the CTC layout)."""

from __future__ import annotations

import argparse
import json
import math


def cmd_score_tracks(args: argparse.Namespace) -> int:
    from lnpstore.interop.scoring import format_scores, score_tracks

    scores = score_tracks(args.result, args.ground_truth, max_frame_buffer=args.frame_buffer)
    if args.json:
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in scores.items()}
        print(json.dumps(clean, indent=2))
    else:
        print(format_scores(scores))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score-tracks",
        help="score a CTC result against a CTC ground truth: DET, TRA, LNK, division F1 (traccuracy)",
        description="Score tracks like the Cell Tracking Challenge with the traccuracy package: DET, TRA "
        "and LNK on the CTC's matching and weights, and the division F1. RESULT holds res_track.txt and "
        "maskNNN.tif; GROUND_TRUTH holds TRA/man_track.txt and TRA/man_trackNNN.tif (or is that TRA "
        "folder). Both folders are checked against the CTC's rules first.",
    )
    p.add_argument("result", help="CTC result folder (res_track.txt + maskNNN.tif)")
    p.add_argument("ground_truth", help="CTC ground-truth folder (TRA/man_track.txt + masks), or its TRA/")
    p.add_argument(
        "--frame-buffer",
        type=int,
        default=0,
        help="frames a division may be early or late and still count (default 0: the exact frame)",
    )
    p.add_argument("--json", action="store_true", help="print the scores as JSON (NaN as null)")
    p.set_defaults(func=cmd_score_tracks)
