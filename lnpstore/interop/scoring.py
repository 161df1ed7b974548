"""Score tracks like the Cell Tracking Challenge: DET, TRA, LNK and division F1, with traccuracy.

Both folders are in the CTC layout (:mod:`lnpstore.ctc`): the result holds ``res_track.txt`` and
``maskNNN.tif``, the ground truth ``TRA/man_track.txt`` and ``TRA/man_trackNNN.tif`` (or is that
``TRA`` folder). The scores come from the maintained ``traccuracy`` package, not from lnpstore:

* DET, TRA, LNK: ``traccuracy.metrics.CTCMetrics`` on the CTC's own matching
  (``traccuracy.matchers.CTCMatcher``: a result region matches a reference marker when it covers
  more than half of it), with the CTC's AOGM weights;
* division F1 (and precision, recall): ``traccuracy.metrics.DivisionMetrics`` on the same matching.
  The division metrics need a one-to-one matching; where one result region covers several reference
  markers (a merge), those reference markers count as unmatched for the divisions (a merged region
  cannot carry a correct division), and ``division_matching`` says so.

A score is NaN where it is undefined (no reference edges for LNK; no divisions on either side for
the division scores; precision without result divisions). Where traccuracy leaves the division F1
undefined because no division is right but some exist, it is reported as 0 (= 2TP / (2TP + FP + FN)).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from lnpstore.interop.ctc import find_layout, validate_ctc
from lnpstore.store.errors import ScoringError

log = logging.getLogger(__name__)


def _load(layout_dir: Path, what: str) -> Any:
    from traccuracy.loaders import load_ctc_data

    layout = validate_ctc(layout_dir)  # lnpstore's messages name the file, frame and label
    try:
        return load_ctc_data(
            str(layout.folder), str(layout.track_path), name=f"{what}:{layout.folder}", run_checks=True
        )
    except ValueError as exc:
        raise ScoringError(f"traccuracy cannot read the {what} folder {layout.folder}: {exc}") from exc


def _one_to_one(matched: Any) -> tuple[Any, str]:
    """The matching for the division metrics: ``matched`` itself when it is one-to-one, else the
    same pairs less every pair whose result node matches several reference nodes."""
    from traccuracy.matchers import Matched

    if matched.matching_type == "one-to-one":
        return matched, "CTC (one-to-one)"
    many = {p for p, gts in matched.pred_gt_map.items() if len(gts) > 1}
    pairs = [(g, p) for g, p in matched.mapping if p not in many]
    info = {**matched.matcher_info, "matching type": "one-to-one", "dropped_merged_pred_nodes": len(many)}
    return (
        Matched(matched.gt_graph, matched.pred_graph, pairs, info),
        f"CTC less {len(many)} merged result region(s)",
    )


def score_tracks(
    result_dir: str | os.PathLike, gt_dir: str | os.PathLike, *, max_frame_buffer: int = 0
) -> dict[str, Any]:
    """Score a CTC result folder against a CTC ground-truth folder; return the scores.

    Returns a dict with ``DET``, ``TRA``, ``LNK`` (0..1, 1 = perfect), ``division_f1``,
    ``division_precision``, ``division_recall`` (0..1, NaN without divisions), the error counts
    behind them (``AOGM``, ``fp_nodes``, ``fn_nodes``, ``ns_nodes``, ``fp_edges``, ``fn_edges``,
    ``ws_edges``, ``gt_divisions``, ``result_divisions``, ``tp_divisions``, ``fp_divisions``,
    ``fn_divisions``), ``n_frames``, ``division_matching``, ``max_frame_buffer`` and the traccuracy
    version. ``max_frame_buffer`` (frames) lets a division detected that many frames early or late
    count as correct (the division metrics at that buffer; 0 = exact frame, as the CTC).
    """
    import traccuracy
    from traccuracy import run_metrics
    from traccuracy.matchers import CTCMatcher
    from traccuracy.metrics import CTCMetrics, DivisionMetrics

    res_layout = find_layout(result_dir)
    gt_layout = find_layout(gt_dir)
    n_res, n_gt = len(res_layout.masks()), len(gt_layout.masks())
    if n_res != n_gt:
        raise ScoringError(
            f"the result {res_layout.folder} has {n_res} masks but the ground truth {gt_layout.folder} "
            f"has {n_gt}: both must cover the same frames. Hint: export the result of the same movie"
        )
    gt = _load(gt_layout.folder, "ground truth")
    pred = _load(res_layout.folder, "result")
    if gt.segmentation.shape != pred.segmentation.shape:
        (ph, pw), (gh, gw) = pred.segmentation.shape[1:3], gt.segmentation.shape[1:3]
        raise ScoringError(
            f"the result's masks are {ph} x {pw} px but the ground truth's are {gh} x {gw} px: both must "
            "be of the same movie"
        )
    (ctc,), matched = run_metrics(gt, pred, CTCMatcher(), [CTCMetrics()])
    ctc_res = ctc["results"]
    div_matched, how = _one_to_one(matched)
    div_res = DivisionMetrics(max_frame_buffer=max_frame_buffer).compute(div_matched).results
    div = div_res[f"Frame Buffer {max_frame_buffer}"]

    def f(v: Any) -> float:
        return float("nan") if v is None else float(v)

    f1 = f(div["Division F1"])
    n_div = int(div.get("Total GT Divisions", 0)) + int(div.get("Total Predicted Divisions", 0))
    if math.isnan(f1) and n_div > 0 and int(div.get("True Positive Divisions", 0)) == 0:
        f1 = 0.0  # traccuracy leaves F1 undefined without a true positive; 2TP / (2TP + FP + FN) = 0
    out: dict[str, Any] = {
        "DET": f(ctc_res["DET"]),
        "TRA": f(ctc_res["TRA"]),
        "LNK": f(ctc_res["LNK"]),
        "division_f1": f1,
        "division_precision": f(div["Division Precision"]),
        "division_recall": f(div["Division Recall"]),
        "AOGM": f(ctc_res["AOGM"]),
    }
    for k in ("fp_nodes", "fn_nodes", "ns_nodes", "fp_edges", "fn_edges", "ws_edges"):
        out[k] = int(ctc_res[k])
    out.update(
        gt_divisions=int(div.get("Total GT Divisions", 0)),
        result_divisions=int(div.get("Total Predicted Divisions", 0)),
        tp_divisions=int(div.get("True Positive Divisions", 0)),
        fp_divisions=int(div.get("False Positive Divisions", 0)),
        fn_divisions=int(div.get("False Negative Divisions", 0)),
        n_frames=n_gt,
        division_matching=how,
        max_frame_buffer=max_frame_buffer,
        result=str(res_layout.folder),
        ground_truth=str(gt_layout.folder),
        traccuracy_version=traccuracy.__version__,
    )
    return out


def format_scores(scores: dict[str, Any]) -> str:
    """The scores as a short text table (NaN shown as 'n/a')."""

    def v(x: Any) -> str:
        return "n/a" if isinstance(x, float) and math.isnan(x) else f"{x:.4f}"

    lines = [
        f"result:       {scores['result']}",
        f"ground truth: {scores['ground_truth']}  ({scores['n_frames']} frames)",
        f"DET          {v(scores['DET'])}",
        f"TRA          {v(scores['TRA'])}",
        f"LNK          {v(scores['LNK'])}",
        f"division F1  {v(scores['division_f1'])}  (precision {v(scores['division_precision'])}, "
        f"recall {v(scores['division_recall'])}; {scores['tp_divisions']} of {scores['gt_divisions']} "
        f"reference divisions found, {scores['fp_divisions']} false; frame buffer {scores['max_frame_buffer']})",
        f"errors       AOGM {scores['AOGM']:g}: nodes fp {scores['fp_nodes']} fn {scores['fn_nodes']} "
        f"ns {scores['ns_nodes']}; edges fp {scores['fp_edges']} fn {scores['fn_edges']} ws {scores['ws_edges']}",
        f"(traccuracy {scores['traccuracy_version']}; division matching: {scores['division_matching']})",
    ]
    return "\n".join(lines)


__all__ = ["ScoringError", "format_scores", "score_tracks"]
