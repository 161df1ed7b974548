"""Linking given masks (``track_stack(..., masks=...)``, ``track-stack --labels``): tracks, divisions, gaps."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import tifffile
from _track_data import PX_UM, movie

from lnpstore.store.errors import TrackingError
from lnpstore.tracking import TrackSettings, track_stack
from lnpstore.tracking.integrity import check_tracks

SETTINGS = TrackSettings(edge_margin_um=0.0, report_new_cells=True)


def _given() -> tuple[pl.DataFrame, np.ndarray]:
    truth, stack = movie()
    stack = stack.copy()
    stack[1][stack[1] == 99] = 0  # (the shared movie's unreported cell is not part of this truth)
    return truth, stack


def test_given_masks_are_linked_with_their_division():
    truth, masks = _given()
    tracks, labels = track_stack(None, masks=masks, pixel_size_um=PX_UM, settings=SETTINGS)
    check_tracks(tracks, labels)
    per = tracks.group_by("track_id").agg(
        pl.len().alias("n"), pl.col("parent_track_id").first(), pl.col("stop_reason").last()
    )
    assert sorted(per["n"].to_list()) == [3, 3, 3, 6]
    mother = per.filter(pl.col("stop_reason") == "divided")["track_id"].to_list()
    assert len(mother) == 1
    assert per.filter(pl.col("parent_track_id") == mother[0]).height == 2
    # each output region is exactly a given region
    for f in range(len(masks)):
        assert len(np.unique(labels[f])) == len(np.unique(masks[f]))
        assert ((labels[f] > 0) == (masks[f] > 0)).all()


def test_a_missing_frame_is_bridged_and_scores_perfectly(tmp_path):
    from lnpstore.interop.ctc import write_ctc
    from lnpstore.interop.scoring import score_tracks

    truth, masks = _given()
    masks = masks.copy()
    masks[4][masks[4] == 7 * 1 + 5] = 0  # cell A is missing from frame 5: one gap
    tracks, labels = track_stack(None, masks=masks, pixel_size_um=PX_UM, settings=SETTINGS)
    a = tracks.filter(pl.col("y_px").is_between(10, 22)).sort("frame")
    assert a["track_id"].n_unique() == 1 and a["gap_filled"].to_list() == [False] * 4 + [True, False]
    none, _ = track_stack(None, masks=masks, pixel_size_um=PX_UM, settings=SETTINGS.replace(max_gap_frames=0))
    assert none.filter(pl.col("y_px").is_between(10, 22))["track_id"].n_unique() == 2
    truth_masks = _given()[1]
    write_ctc(tmp_path / "gt", truth, truth_masks, kind="GT")
    write_ctc(
        tmp_path / "res",
        *track_stack(None, masks=truth_masks, pixel_size_um=PX_UM, settings=SETTINGS),
        kind="RES",
    )
    sc = score_tracks(tmp_path / "res", tmp_path / "gt")
    assert sc["TRA"] == 1.0 and sc["division_f1"] == 1.0, sc


def test_cli_track_stack_with_labels(tmp_path, capsys):
    from lnpstore.cli.main import main

    _, masks = _given()
    folder = tmp_path / "masks"
    folder.mkdir()
    for i, m in enumerate(masks):
        tifffile.imwrite(folder / f"mask{i:03d}.tif", m)
    tifffile.imwrite(tmp_path / "raw.tif", masks.astype(np.uint16) * 10, photometric="minisblack")
    out = tmp_path / "out"
    args = ["track-stack", str(tmp_path / "raw.tif"), "--labels", str(folder), "--out", str(out)]
    assert main([*args, "--pixel-size-um", str(PX_UM)]) == 0
    assert "divided" in capsys.readouterr().out
    meta = json.loads((out / "track_stack.json").read_text())
    assert meta["masks"] == str(folder.resolve()) and meta["seeds"] is None
    assert tifffile.imread(out / "labels.tif").shape == masks.shape
    assert main(["export-tracks", str(out), "--format", "ctc", "--out", str(tmp_path / "res")]) == 0


def test_bad_masks_are_refused():
    with pytest.raises(TrackingError, match="integers"):
        track_stack(None, masks=np.zeros((2, 8, 8), np.float32), pixel_size_um=1.0)
    with pytest.raises(TrackingError, match="3 frames and the masks 2"):
        track_stack(np.zeros((3, 8, 8)), masks=np.zeros((2, 8, 8), np.int32), pixel_size_um=1.0)
