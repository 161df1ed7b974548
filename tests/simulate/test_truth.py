"""Matching tracked cells to the simulator's truth; the true label images, tracks and lineage."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tifffile

from lnpstore.instrument.layout import CHANNELS, image_filename
from lnpstore.simulate.simulator import SimulatedPlate, SimulationSettings, load_truth, simulate_plate
from lnpstore.simulate.truth import TRUE_TRACK_COLUMNS, match_cells_to_truth, true_label_frames, true_tracks


def test_same_true_id_in_two_wells_both_match_and_far_cells_do_not():
    tracked = pl.DataFrame(
        {
            "cell_uid": ["a", "b", "c", "d"],
            "well": ["C03", "C04", "C04", "C04"],
            "field": [1, 1, 1, 1],
            "y_px": [10.0, 10.5, 11.0, 300.0],
            "x_px": [10.0, 10.0, 10.0, 300.0],
        }
    )
    truth = pl.DataFrame(
        {
            "well": ["C03", "C04"],
            "field": [1, 1],
            "true_id": [7, 7],
            "y_px": [10.0, 10.0],
            "x_px": [10.0, 10.0],
        }
    )
    m = match_cells_to_truth(tracked, truth, max_distance_px=5.0)
    # one tracked cell per true cell per (well, field): the closest one; 'd' is too far from any
    assert sorted(m.get_column("cell_uid").to_list()) == ["a", "b"]
    assert m.get_column("true_id").to_list() == [7, 7]


# -- true label images and tracks ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dividing(tmp_path_factory: pytest.TempPathFactory) -> SimulatedPlate:
    """The tiny plate over 10 frames with fast divisions (~40 % of the cells split)."""
    s = SimulationSettings.tiny(seed=1, n_frames=10, workers=1, division_rate_per_h=0.5)
    return simulate_plate(tmp_path_factory.mktemp("dividing"), s, show_progress=False)


def test_true_label_frames_match_the_cells_drawn_in_cs(dividing: SimulatedPlate) -> None:
    s = dividing.settings
    for well in s.wells:
        tracks = true_tracks(dividing.truth_dir, well)
        frames = true_label_frames(dividing.truth_dir, well)
        assert not isinstance(frames, list)  # lazy
        n = 0
        for frame, lab in enumerate(frames, start=1):
            n += 1
            assert lab.shape == (s.height_px, s.width_px) and lab.dtype == np.uint16
            cs = tifffile.imread(
                dividing.plate_dir / image_filename(s.plate, well, frame, 1, CHANNELS["CS"])
            ).astype(float)
            bg = np.median(cs[lab == 0])
            assert np.median(cs[lab > 0]) > bg + 200  # cells ~500 counts above a ~120 background
            assert (lab[cs > bg + 130] > 0).mean() > 0.99  # what looks like a cell is labelled
            assert (cs[lab > 0] < bg + 40).mean() < 0.01  # and the labels hold no background
            ids, area = np.unique(lab[lab > 0], return_counts=True)
            for tid, a in zip(ids, area, strict=True):  # every label, even a sliver at the edge, is stained
                assert cs[lab == tid].mean() > bg + (60 if a >= 50 else 30), (well, frame, tid, a)
            rows = tracks.filter(pl.col("frame") == frame).sort("label_id")
            assert rows["label_id"].to_list() == ids.tolist()  # each label is a node of that frame
            assert rows["label_area_px"].to_list() == area.tolist()
        assert n == s.n_frames


def test_true_tracks_follow_the_tracks_contract_with_divisions(dividing: SimulatedPlate) -> None:
    truth = load_truth(dividing.truth_dir)
    n_divisions = 0
    for well in dividing.settings.wells:
        t = true_tracks(dividing.truth_dir, well)
        assert dict(t.schema) == TRUE_TRACK_COLUMNS
        assert (t["track_id"] > 0).all() and (t["frame"] >= 1).all()
        assert not t.select("track_id", "frame").is_duplicated().any()
        assert (t["label_id"] == t["true_id"]).all()
        per = t.group_by("track_id").agg(
            pl.col("frame").min().alias("b"),
            pl.col("frame").max().alias("e"),
            pl.len().alias("n"),
            pl.col("parent_track_id").n_unique().alias("np"),
            pl.col("parent_track_id").first(),
            pl.col("lineage_id").first(),
        )
        assert (per["n"] == per["e"] - per["b"] + 1).all() and (per["np"] == 1).all()  # contiguous
        info = {r["track_id"]: r for r in per.iter_rows(named=True)}
        kids: dict[int, int] = {}
        for r in per.filter(pl.col("parent_track_id").is_not_null()).iter_rows(named=True):
            p = info[r["parent_track_id"]]
            assert p["e"] < r["b"] and p["lineage_id"] == r["lineage_id"]
            kids[p["track_id"]] = kids.get(p["track_id"], 0) + 1
        roots = per.filter(pl.col("parent_track_id").is_null())
        assert (roots["lineage_id"] == roots["track_id"]).all()
        assert per["lineage_id"].is_in(roots["track_id"].implode()).all()
        assert max(kids.values(), default=0) <= 2
        n_divisions += sum(k == 2 for k in kids.values())
        # the true centre of a cell of cells.parquet is its tracks.parquet centre; the other labelled
        # cells are the ones only partly in the image (centre outside in every frame)
        centres = truth["tracks"].filter(pl.col("well") == well).select("true_id", "frame", "y_px", "x_px")
        both = t.join(centres, on=["true_id", "frame"], suffix="_t")
        assert both.height > 0.5 * t.height and (both["y_px"] == both["y_px_t"]).all()
        n_cells = truth["cells"].filter(pl.col("well") == well).height
        edge = t.filter(pl.col("true_id") > n_cells)
        assert edge.height + both.height == t.height
        h, w = dividing.settings.height_px, dividing.settings.width_px
        assert not edge.select(
            (
                pl.col("y_px").is_between(0, h, closed="left")
                & pl.col("x_px").is_between(0, w, closed="left")
            ).any()
        ).item()
    assert n_divisions >= 4


def _synthetic_truth(d: Path) -> None:
    """A field C03:1 of 8 frames: cell 1 leaves at frame 4, returns at 5, splits into 2 and 3 after 6."""
    d.mkdir(parents=True)
    (d / "labels").mkdir()
    ids = {1: [1, 2, 3, 5, 6], 2: [7, 8], 3: [7, 8], 4: list(range(2, 9))}
    stack = np.zeros((8, 12, 12), np.uint8)
    rows = []
    for tid, frames in ids.items():
        for f in frames:
            stack[f - 1, 3 * (tid - 1) : 3 * tid, :4] = tid + 10  # the stack holds mask values
            rows.append((tid, f, 12, float(tid), float(f)))
    tifffile.imwrite(d / "labels" / "C03_F001.tif", stack)
    common = {"plate": ["P"] * 4, "well": ["C03"] * 4, "field": pl.Series([1] * 4, dtype=pl.Int16)}
    pl.DataFrame(
        {
            **common,
            "true_id": pl.Series([1, 2, 3, 4], dtype=pl.Int32),
            "parent_id": pl.Series([None, 1, 1, None], dtype=pl.Int32),
            "mask_value": pl.Series([11, 12, 13, 14], dtype=pl.Int32),
        }
    ).write_parquet(d / "lineage.parquet")
    lt = pl.DataFrame(rows, schema=["true_id", "frame", "label_area_px", "y_px", "x_px"], orient="row")
    lt.with_columns(pl.lit("C03").alias("well"), pl.lit(1, pl.Int16).alias("field")).write_parquet(
        d / "label_tracks.parquet"
    )


def test_true_tracks_split_a_cell_that_leaves_and_returns(tmp_path: Path) -> None:
    _synthetic_truth(tmp_path / "truth")
    t = true_tracks(tmp_path / "truth", "C03", 1)
    per = {
        r["track_id"]: r
        for r in t.group_by("track_id")
        .agg(
            pl.col("frame"),
            pl.col("parent_track_id").first(),
            pl.col("lineage_id").first(),
            pl.col("true_id").first(),
        )
        .iter_rows(named=True)
    }
    assert sorted(per) == [1, 2, 3, 4, 5]
    assert per[1]["frame"] == [1, 2, 3] and per[1]["parent_track_id"] is None
    assert per[5]["frame"] == [5, 6] and per[5]["parent_track_id"] == 1 and per[5]["true_id"] == 1  # back
    assert per[2]["parent_track_id"] == 5 and per[3]["parent_track_id"] == 5  # daughters of the last stretch
    assert {per[k]["lineage_id"] for k in (1, 2, 3, 5)} == {1} and per[4]["lineage_id"] == 4
    labels = list(true_label_frames(tmp_path / "truth", "C03", 1))
    assert len(labels) == 8 and set(np.unique(labels[6])) == {0, 2, 3, 4}  # mask values -> true ids
    assert not (labels[3] == 1).any()


def test_true_labels_give_clear_errors(tmp_path: Path) -> None:
    _synthetic_truth(tmp_path / "truth")
    with pytest.raises(ValueError, match="no true labels for well 'E05' field 1; the plate has"):
        true_tracks(tmp_path / "truth", "E05", 1)
    (tmp_path / "old").mkdir()
    pl.DataFrame({"true_id": [1]}).write_parquet(tmp_path / "old" / "cells.parquet")
    with pytest.raises(FileNotFoundError, match="simulate"):
        next(true_label_frames(tmp_path / "old", "C03", 1))


def test_the_simulator_writes_its_truth_in_the_ctc_layout(dividing: SimulatedPlate) -> None:
    """truth/ctc/{well}_F001/TRA: valid by the CTC's rules, with the divisions as parent links, and a
    perfect score against itself."""
    from lnpstore.interop.ctc import read_ctc, validate_ctc
    from lnpstore.interop.scoring import score_tracks

    gt_dirs = sorted((dividing.truth_dir / "ctc").iterdir())
    assert [p.name for p in gt_dirs] == [f"{w}_F001" for w in sorted(dividing.settings.wells)]
    validate_ctc(gt_dirs[0])
    tracks, _ = read_ctc(gt_dirs[0])
    truth = true_tracks(dividing.truth_dir, gt_dirs[0].name[:3], 1)
    assert tracks.get_column("track_id").n_unique() == truth.get_column("track_id").n_unique()
    assert (
        tracks["parent_track_id"].drop_nulls().n_unique() == truth["parent_track_id"].drop_nulls().n_unique()
    )
    scores = score_tracks(gt_dirs[0], gt_dirs[0])
    assert scores["DET"] == scores["TRA"] == 1.0
