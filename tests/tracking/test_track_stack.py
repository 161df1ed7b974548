"""track_stack on synthetic stacks: a division with its parent link, lazy label movies, clear errors."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import tifffile
from scipy import ndimage as ndi

from lnpstore.tracking import TrackingError, TrackSettings, track_stack
from lnpstore.tracking.labels import LabelMovie

PX_UM = 0.325  # scale 0.5: window 100 px, edge margin 48 px
SHAPE = (200, 260)


def disc_frame(discs: list[tuple[float, float, float]], seed: int) -> np.ndarray:
    """A CS-like frame: flat discs (y, x, radius px), blurred, plus noise (uint16)."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    img = np.zeros(SHAPE, np.float32)
    for cy, cx, r in discs:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = 1000.0
    img = ndi.gaussian_filter(img, 2.0) + 100
    return (img + np.random.default_rng(seed).normal(0, 20, SHAPE)).clip(0).astype(np.uint16)


def dividing_stack(n_frames: int = 8, split_at: int = 4) -> np.ndarray:
    """Cell A (left) divides at frame ``split_at`` into two daughters drifting apart; cell B stays whole."""
    frames = []
    for f in range(1, n_frames + 1):
        b = (100.0, 190.0, 20.0)
        if f < split_at:
            discs = [(100.0, 90.0, 20.0), b]
        else:
            gap = 20.0 + 2.0 * (f - split_at)  # a background gap between the daughters
            discs = [(100.0 - gap, 90.0, 14.0), (100.0 + gap, 90.0, 14.0), b]
        frames.append(disc_frame(discs, seed=f))
    return np.stack(frames)


def test_division_starts_two_daughters_linked_to_the_parent(tmp_path):
    stack = dividing_stack()
    tracks, labels = track_stack(stack, pixel_size_um=PX_UM, labels_out=tmp_path / "labels.tif")
    assert isinstance(labels, LabelMovie) and labels.shape == stack.shape
    per_track = tracks.group_by("track_id").agg(
        pl.col("frame").min().alias("begin"),
        pl.col("frame").max().alias("end"),
        pl.col("parent_track_id").first(),
        pl.col("lineage_id").first(),
        pl.col("stop_reason").last(),
    )
    parent = per_track.filter(pl.col("stop_reason") == "divided")
    assert parent.height == 1, per_track
    pid = int(parent["track_id"][0])
    assert int(parent["end"][0]) == 3
    daughters = per_track.filter(pl.col("parent_track_id") == pid)
    assert daughters.height == 2
    assert daughters["begin"].to_list() == [4, 4]
    assert daughters["lineage_id"].to_list() == [pid, pid]
    assert (daughters["end"] == 8).all()
    # the other cell is one track over all frames, without parent
    other = per_track.filter(pl.col("lineage_id") != pid)
    assert other.height == 1 and other["begin"][0] == 1 and other["end"][0] == 8
    # label images: each node's label sits under its centre, and labels match the table per frame
    for f in (1, 4, 8):
        lab = labels[f - 1]
        nodes = tracks.filter(pl.col("frame") == f)
        assert sorted(np.unique(lab[lab > 0]).tolist()) == sorted(nodes["label_id"].to_list())
        for row in nodes.iter_rows(named=True):
            assert lab[int(round(row["y_px"])), int(round(row["x_px"]))] == row["label_id"]


def test_division_detection_can_be_switched_off():
    tracks, labels = track_stack(
        dividing_stack(), pixel_size_um=PX_UM, settings=TrackSettings(division_min_fraction=0.0)
    )
    assert tracks["parent_track_id"].null_count() == tracks.height
    assert isinstance(labels, np.ndarray) and labels.dtype == np.uint16


def test_seeds_from_a_label_image_and_from_centres():
    stack = dividing_stack(n_frames=3)
    first = np.zeros(SHAPE, np.int32)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    first[(yy - 100) ** 2 + (xx - 90) ** 2 <= 100] = 7
    first[(yy - 100) ** 2 + (xx - 190) ** 2 <= 100] = 9
    a, _ = track_stack(stack, seeds=first, pixel_size_um=PX_UM)
    b, _ = track_stack(stack, seeds=np.array([[100.0, 90.0], [100.0, 190.0]]), pixel_size_um=PX_UM)
    assert a.select("track_id", "frame", "y_px").equals(b.select("track_id", "frame", "y_px"))


def test_clear_errors_for_bad_stacks_and_seeds():
    stack = dividing_stack(n_frames=3)
    with pytest.raises(TrackingError, match="3-D"):
        track_stack(stack[0], pixel_size_um=PX_UM)
    with pytest.raises(TrackingError, match="frame 2 has shape"):
        track_stack([stack[0], stack[1][:, :100]], pixel_size_um=PX_UM)
    with pytest.raises(TrackingError, match="no cells to track"):
        track_stack(np.full((3, *SHAPE), 100, np.uint16), pixel_size_um=PX_UM)
    with pytest.raises(TrackingError, match="seed 2 .* outside every cell"):
        track_stack(stack, seeds=np.array([[100.0, 90.0], [20.0, 20.0]]), pixel_size_um=PX_UM)
    with pytest.raises(TrackingError, match="must hold integers"):
        track_stack(stack, seeds=np.zeros(SHAPE, np.float32) + 0.5, pixel_size_um=PX_UM)
    with pytest.raises(TrackingError, match="pixel_size_um"):
        track_stack(stack, pixel_size_um=0)


def test_an_empty_frame_is_bridged_and_two_end_the_tracks_as_lost(tmp_path, caplog):
    stack = dividing_stack(n_frames=6, split_at=99).copy()  # two cells, no division
    stack[2] = 100  # frame 3: no cells at all
    with caplog.at_level("WARNING", logger="lnpstore.tracking.field"):
        tracks, labels = track_stack(stack, pixel_size_um=PX_UM, labels_out=tmp_path / "l.tif")
    assert "frame 3: the CS image has no cell pixels" in caplog.text
    assert len(labels) == 6 and not labels[2].any()
    gap = tracks.filter(pl.col("frame") == 3)
    assert gap.height == 2 and gap["gap_filled"].all() and gap["label_id"].null_count() == 2
    assert (tracks.group_by("track_id").agg(pl.col("frame").max())["frame"] == 6).all()
    assert tracks.filter(pl.col("frame") != 3)["gap_filled"].not_().all()
    assert tifffile.imread(tmp_path / "l.tif", key=slice(None)).shape == (6, *SHAPE)  # one page per frame
    stack[3] = 100  # frames 3 and 4 empty: longer than max_gap_frames (1)
    tracks, _ = track_stack(stack, pixel_size_um=PX_UM)
    last = tracks.sort("frame").group_by("track_id").agg(pl.col("frame").last(), pl.col("stop_reason").last())
    assert (last["frame"] == 2).all() and (last["stop_reason"] == "lost").all()
    assert not tracks["gap_filled"].any()  # the bridging node of a gap that never closed is dropped
    none, _ = track_stack(stack, pixel_size_um=PX_UM, settings=TrackSettings(max_gap_frames=0))
    assert none["frame"].max() == 2


def test_cli_track_stack_export_and_score(tmp_path, capsys):
    """track-stack on a folder of frames -> export-tracks ctc -> score-tracks against its own export."""
    from lnpstore.cli.main import main
    from lnpstore.interop.ctc import write_ctc

    stack = dividing_stack()
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, f in enumerate(stack):
        tifffile.imwrite(frames / f"t{i:03d}.tif", f)
    out = tmp_path / "out"
    assert main(["track-stack", str(frames), "--out", str(out), "--pixel-size-um", str(PX_UM)]) == 0
    assert "divided" in capsys.readouterr().out
    assert main(["export-tracks", str(out), "--format", "ctc", "--out", str(tmp_path / "res")]) == 0
    assert "tracks" in capsys.readouterr().out
    # ground truth: the same movie's true labels written in the CTC GT layout
    tracks = pl.read_parquet(out / "tracks.parquet")
    write_ctc(tmp_path / "gt", tracks, LabelMovie(out / "labels.tif"), kind="GT")
    assert main(["score-tracks", str(tmp_path / "res"), str(tmp_path / "gt"), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["DET"] == scores["TRA"] == 1.0 and scores["division_f1"] == 1.0, scores


def test_cli_settings_file_flags_and_errors(tmp_path, capsys):
    """Every setting through --settings (JSON, TOML, or a run's track_stack.json), flags on top, clear errors."""
    from lnpstore.cli.main import main
    from lnpstore.tracking.settings import TrackSettings

    tifffile.imwrite(tmp_path / "stack.tif", dividing_stack(n_frames=3), photometric="minisblack")
    base = ["track-stack", str(tmp_path / "stack.tif"), "--pixel-size-um", str(PX_UM)]
    toml = tmp_path / "s.toml"
    toml.write_text('max_gap_frames = 3\n[seeds]\nthreshold_method = "otsu"\n')
    out = tmp_path / "a"
    assert main([*base, "--out", str(out), "--settings", str(toml), "--threshold-factor", "1.1"]) == 0
    capsys.readouterr()
    rec = json.loads((out / "track_stack.json").read_text())["settings"]
    assert rec["max_gap_frames"] == 3 and rec["seeds"]["threshold_method"] == "otsu"
    assert rec["seeds"]["threshold_factor"] == 1.1 and rec["edge_margin_um"] == 0.0  # track-stack's default
    # a run's record reproduces its settings
    assert main([*base, "--out", str(tmp_path / "b"), "--settings", str(out / "track_stack.json")]) == 0
    again = json.loads((tmp_path / "b" / "track_stack.json").read_text())["settings"]
    assert TrackSettings.from_dict(again) == TrackSettings.from_dict(rec)
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "c"), "--show-settings", "--max-gap-frames", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["max_gap_frames"] == 0 and not (tmp_path / "c").exists()
    bad = tmp_path / "bad.json"
    bad.write_text('{"seeds": {"min_radius_um": -1}}')
    assert main([*base, "--out", str(tmp_path / "d"), "--settings", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "seeds.min_radius_um=-1" in err
    assert main([*base, "--out", str(tmp_path / "d"), "--max-gap-frames", "-2"]) == 2
    assert "max_gap_frames" in capsys.readouterr().err


def test_cells_appearing_later_are_tracks_only_when_asked():
    """A cell that appears at frame 3 (e.g. entering the field): a silent competitor by default (the
    study follows frame-1 cells), a reported track from frame 3 with ``report_new_cells``."""
    frames = [
        disc_frame([(100.0, 90.0, 20.0)] + ([(100.0, 190.0, 20.0)] if f >= 3 else []), seed=f)
        for f in range(1, 7)
    ]
    stack = np.stack(frames)
    s = TrackSettings(new_peak_every_frames=1)
    default, _ = track_stack(stack, pixel_size_um=PX_UM, settings=s)
    assert default["track_id"].unique().to_list() == [1]
    tracks, labels = track_stack(
        stack, pixel_size_um=PX_UM, settings=TrackSettings(new_peak_every_frames=1, report_new_cells=True)
    )
    new = tracks.filter(pl.col("track_id") == 2).sort("frame")
    assert new["frame"].to_list() == [3, 4, 5, 6] and new["parent_track_id"].null_count() == 4
    np.testing.assert_allclose(new.select("y_px", "x_px").to_numpy()[-1], [100.0, 190.0], atol=2.0)
    assert (labels[2] == 2).any() and not (labels[1] == 2).any()


def test_division_of_touching_daughters_after_a_round_up():
    """As in HepG2 films (and the simulator): the cell rounds up (smaller, brighter) for a few frames,
    then two daughters appear touching each other, and only later drift apart. The division is found at
    the frame the daughters appear (the rounded cell's region becomes two blobs with a waist)."""
    frames = []
    for f in range(1, 21):
        discs = [(100.0, 190.0, 20.0)]
        if f <= 10:
            discs.append((100.0, 90.0, 20.0))
        elif f <= 14:
            discs.append((100.0, 90.0, 14.0))  # rounded up: half the footprint
        else:
            half = 12.0 + 3.0 * max(0, f - 16)  # touching (overlapping) at frames 15-16, then apart
            discs += [(100.0, 90.0 - half, 13.0), (100.0, 90.0 + half, 13.0)]
        frames.append(disc_frame(discs, seed=f))
    tracks, _ = track_stack(np.stack(frames), pixel_size_um=PX_UM)
    ends = tracks.group_by("track_id").agg(
        pl.col("frame").min().alias("begin"),
        pl.col("frame").max().alias("end"),
        pl.col("parent_track_id").first(),
    )
    parent = tracks.filter(pl.col("stop_reason") == "divided")
    assert parent.height == 1 and parent["frame"][0] == 14, ends
    kids = ends.filter(pl.col("parent_track_id") == parent["track_id"][0])
    assert kids["begin"].to_list() == [15, 15] and (kids["end"] == 20).all()


def test_a_cell_with_a_waist_but_no_round_up_does_not_divide():
    """A peanut-shaped cell (two overlapping lobes) for 20 frames: two distance peaks and a waist, but it
    never rounded up, so it stays one track (checked: the waist test alone would split it)."""
    frames = [disc_frame([(100.0, 78.0, 16.0), (100.0, 102.0, 16.0)], seed=f) for f in range(1, 21)]
    tracks, _ = track_stack(np.stack(frames), pixel_size_um=PX_UM)
    assert tracks["track_id"].unique().to_list() == [1] and tracks.height == 20


def test_a_bridged_gap_is_exported_as_parent_and_daughter(tmp_path):
    """CTC masks have no pixels for a gap-filled node, so the track is split there, CTC-style."""
    from lnpstore.interop.ctc import read_ctc, write_ctc

    stack = dividing_stack(n_frames=6, split_at=99).copy()
    stack[2] = 100
    tracks, labels = track_stack(stack, pixel_size_um=PX_UM)
    write_ctc(tmp_path / "res", tracks, labels, kind="RES")
    back, _ = read_ctc(tmp_path / "res")
    per = back.group_by("track_id").agg(
        pl.col("frame").min(), pl.col("frame").max().alias("end"), pl.col("parent_track_id").first()
    )
    assert per.height == 4
    after = per.filter(pl.col("parent_track_id").is_not_null()).sort("parent_track_id")
    assert (
        after["parent_track_id"].to_list() == [1, 2]
        and (after["frame"] == 4).all()
        and (after["end"] == 6).all()
    )


def test_stack_inputs_from_disk_and_their_errors(tmp_path):
    from lnpstore.instrument.stackio import StackError, open_stack, read_seeds

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StackError, match="holds no .tif frames"):
        open_stack(empty)
    with pytest.raises(StackError, match="does not exist"):
        open_stack(tmp_path / "nope.tif")
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((3, 20, 20, 3), np.uint16))
    with pytest.raises(StackError, match=r"must be T x Y x X \(one channel\)"):
        open_stack(tmp_path / "rgb.tif")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in (0, 1, 2, 10):  # natural order: t10 comes after t2
        tifffile.imwrite(frames / f"t{i}.tif", np.full((8, 8), i, np.uint16))
    seq = open_stack(frames)
    assert [int(f[0, 0]) for f in seq] == [0, 1, 2, 10]
    tifffile.imwrite(frames / "t11.tif", np.zeros((2, 8, 8), np.uint16))
    with pytest.raises(StackError, match=r"t11.tif has shape \(2, 8, 8\)"):
        list(open_stack(frames))
    (tmp_path / "s.csv").write_text("y,x\n1,2\n")
    with pytest.raises(StackError, match=r"lacks column\(s\) \['x_px', 'y_px'\]"):
        read_seeds(str(tmp_path / "s.csv"), (8, 8))
    (tmp_path / "s.csv").write_text("y_px,x_px\n1.5,2\n")
    np.testing.assert_allclose(read_seeds(str(tmp_path / "s.csv"), (8, 8)), [[1.5, 2.0]])
    tifffile.imwrite(tmp_path / "lab.tif", np.zeros((4, 4), np.uint16))
    with pytest.raises(StackError, match="has shape"):
        read_seeds(str(tmp_path / "lab.tif"), (8, 8))
