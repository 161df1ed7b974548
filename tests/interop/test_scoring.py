"""CTC scores through traccuracy: a result scored against itself is perfect, broken links score lower,
and folders that cannot be compared are refused clearly."""

from __future__ import annotations

import argparse
import json

import numpy as np
import polars as pl
import pytest
from _track_data import movie

from lnpstore.cli import score_tracks as score_cmd
from lnpstore.interop.ctc import CtcFormatError, write_ctc
from lnpstore.interop.scoring import ScoringError, format_scores, score_tracks


@pytest.fixture(scope="module")
def gt(tmp_path_factory):
    tracks, stack = movie()
    root = tmp_path_factory.mktemp("ctc")
    write_ctc(root / "01_GT", tracks, stack, kind="GT")
    write_ctc(root / "01_RES", tracks, stack)
    return root, tracks, stack


def _orphan_daughter(tracks: pl.DataFrame) -> pl.DataFrame:
    """Track 4 loses its parent link (a missed division edge): a new lineage of its own."""
    is4 = pl.col("track_id") == 4
    return tracks.with_columns(
        pl.when(is4).then(None).otherwise(pl.col("parent_track_id")).alias("parent_track_id"),
        pl.when(is4).then(4).otherwise(pl.col("lineage_id")).alias("lineage_id"),
    )


def _broken_track(tracks: pl.DataFrame) -> pl.DataFrame:
    """Track 1 is cut after frame 3 into tracks 1 and 5, unlinked (a broken link, no division change)."""
    late = (pl.col("track_id") == 1) & (pl.col("frame") >= 4)
    return tracks.with_columns(
        pl.when(late).then(5).otherwise(pl.col("track_id")).alias("track_id"),
        pl.when(late).then(5).otherwise(pl.col("lineage_id")).alias("lineage_id"),
    )


def test_result_scored_against_itself_is_perfect(gt):
    root, _, _ = gt
    s = score_tracks(root / "01_RES", root / "01_GT")
    assert (s["DET"], s["TRA"], s["LNK"], s["division_f1"]) == (1.0, 1.0, 1.0, 1.0)
    assert (s["gt_divisions"], s["tp_divisions"], s["AOGM"]) == (1, 1, 0.0)
    assert s["ground_truth"].endswith("TRA") and s["traccuracy_version"]
    assert "TRA          1.0000" in format_scores(s)
    assert score_tracks(root / "01_RES", root / "01_GT" / "TRA")["TRA"] == 1.0  # the TRA folder itself


def test_broken_links_score_lower(gt, tmp_path):
    root, tracks, stack = gt
    write_ctc(tmp_path / "orphan", _orphan_daughter(tracks), stack)
    s = score_tracks(tmp_path / "orphan", root / "01_GT")
    assert s["DET"] == 1.0  # every cell is found ...
    assert s["TRA"] < 1.0 and s["LNK"] < 1.0  # ... but a link is missing
    assert s["division_f1"] == 0.0 and s["fn_divisions"] == 1

    write_ctc(tmp_path / "cut", _broken_track(tracks), stack)
    c = score_tracks(tmp_path / "cut", root / "01_GT")
    assert c["DET"] == 1.0 and c["fn_edges"] == 1
    assert c["TRA"] < 1.0 and c["LNK"] < 1.0
    assert c["division_f1"] == 1.0  # the division itself is intact


def test_merged_daughters_score_as_a_missed_division(gt, tmp_path):
    """One result region covers both daughters' markers: the CTC matching is many-to-one, which the
    division metrics cannot take as it is; the merged region's matches are left out for them."""
    root, tracks, stack = gt
    merged_stack = np.where(stack == 0, 0, stack)
    for frame in (4, 5, 6):
        merged_stack[frame - 1][stack[frame - 1] == 7 * 4 + frame] = 7 * 3 + frame
    write_ctc(tmp_path / "merged", tracks.filter(pl.col("track_id") != 4), merged_stack)
    s = score_tracks(tmp_path / "merged", root / "01_GT")
    assert s["ns_nodes"] == 3 and s["DET"] < 1.0 and s["TRA"] < 1.0
    assert s["division_matching"] == "CTC less 3 merged result region(s)"
    assert s["division_f1"] == 0.0 and s["result_divisions"] == 0


def test_folders_that_cannot_be_compared_are_refused(gt, tmp_path):
    root, tracks, stack = gt
    short = tracks.filter(pl.col("frame") <= 4)
    write_ctc(tmp_path / "short", short, stack[:4])
    with pytest.raises(ScoringError, match=r"has 4 masks but the ground truth .* has 6"):
        score_tracks(tmp_path / "short", root / "01_GT")
    write_ctc(tmp_path / "small", tracks, stack[:, :, :48])
    with pytest.raises(ScoringError, match=r"masks are 64 x 48 px but the ground truth's are 64 x 64 px"):
        score_tracks(tmp_path / "small", root / "01_GT")
    bad = write_ctc(tmp_path / "bad", tracks, stack).folder
    (bad / "res_track.txt").write_text("1 0 5 0\n2 0 2 0\n3 3 5 2\n")
    with pytest.raises(CtcFormatError, match=r"mask003\.tif \(frame 3\): label 4 is not listed"):
        score_tracks(bad, root / "01_GT")
    with pytest.raises(CtcFormatError, match="not a CTC folder"):
        score_tracks(tmp_path, root / "01_GT")


def test_cli_prints_the_scores(gt, capsys):
    root, _, _ = gt
    parser = argparse.ArgumentParser(prog="lnpstore")
    score_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["score-tracks", str(root / "01_RES"), str(root / "01_GT")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "DET          1.0000" in out and "division F1  1.0000" in out
    args = parser.parse_args(["score-tracks", str(root / "01_RES"), str(root / "01_GT"), "--json"])
    assert args.func(args) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["TRA"] == 1.0 and scores["division_f1"] == 1.0
