"""The CTC layout: written by lnpstore, read back by traccuracy's CTC loader and by read_ctc; every rule
the CTC's tools enforce is caught with a message naming the file, frame and label; bad inputs are
refused clearly."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import tifffile
from _track_data import N_EDGES, N_FRAMES, N_NODES, movie
from polars.testing import assert_frame_equal

from lnpstore.interop.ctc import (
    CtcFormatError,
    TrackExportError,
    read_ctc,
    validate_ctc,
    write_ctc,
)
from lnpstore.store.errors import LnpstoreError

CONTRACT = ["track_id", "frame", "parent_track_id", "lineage_id", "y_px", "x_px"]


@pytest.fixture(scope="module")
def data():
    return movie()


def test_write_res_layout_and_read_back(tmp_path, data):
    tracks, stack = data
    res = write_ctc(tmp_path / "01_RES", tracks, stack)
    assert (res.n_frames, res.n_tracks, res.n_nodes, res.dropped_labels) == (N_FRAMES, 4, N_NODES, 1)
    folder = tmp_path / "01_RES"
    assert sorted(p.name for p in folder.iterdir()) == [f"mask{i:03d}.tif" for i in range(6)] + [
        "res_track.txt"
    ]
    # L B E P with 0-based frames; the daughters begin after their parent's last frame
    assert (folder / "res_track.txt").read_text().split("\n")[:4] == [
        "1 0 5 0",
        "2 0 2 0",
        "3 3 5 2",
        "4 3 5 2",
    ]
    mask = tifffile.imread(folder / "mask003.tif")
    assert mask.dtype == np.uint16
    assert set(np.unique(mask)) == {0, 1, 3, 4}  # relabelled: pixel value = track id
    assert 99 not in np.unique(tifffile.imread(folder / "mask001.tif"))  # unreported cell dropped

    back, frames = read_ctc(folder)
    assert_frame_equal(back.select(CONTRACT), tracks.sort("track_id", "frame").select(CONTRACT))
    assert back["label_id"].to_list() == back["track_id"].to_list()
    assert len(frames) == N_FRAMES and frames.frame_shape == (64, 64)
    assert np.array_equal(frames[3], mask)


def test_traccuracy_reads_our_result_and_ground_truth(tmp_path, data):
    from traccuracy.loaders import load_ctc_data

    tracks, stack = data
    write_ctc(tmp_path / "01_RES", tracks, stack)
    write_ctc(tmp_path / "01_GT", tracks, stack, kind="GT")
    assert (tmp_path / "01_GT" / "TRA" / "man_track.txt").is_file()
    assert (tmp_path / "01_GT" / "TRA" / "man_track005.tif").is_file()
    for folder in (tmp_path / "01_RES", tmp_path / "01_GT" / "TRA"):
        g = load_ctc_data(str(folder), run_checks=True)
        assert g.graph.number_of_nodes() == N_NODES
        assert g.graph.number_of_edges() == N_EDGES
        (div,) = g.get_divisions()
        attrs = g.graph.nodes[div]
        assert (attrs["segmentation_id"], attrs["t"]) == (2, 2)  # track 2 divides after frame 3
        for _, a in g.graph.nodes(data=True):
            row = tracks.filter(
                (pl.col("track_id") == a["segmentation_id"]) & (pl.col("frame") == a["t"] + 1)
            )
            assert (a["y"], a["x"]) == pytest.approx((row["y_px"][0], row["x_px"][0]))
    assert validate_ctc(tmp_path / "01_GT").folder == tmp_path / "01_GT" / "TRA"


def test_lazy_labels_rerun_replaces_and_foreign_files_refused(tmp_path, data):
    tracks, stack = data
    out = tmp_path / "res"
    write_ctc(out, tracks, (frame for frame in stack))  # a generator, consumed once, frame by frame
    only_a = tracks.filter(pl.col("track_id") == 1)
    write_ctc(out, only_a, list(stack))
    assert (out / "res_track.txt").read_text() == "1 0 5 0\n"
    assert set(np.unique(tifffile.imread(out / "mask004.tif"))) == {0, 1}
    assert not list(tmp_path.glob(".res.*"))  # no temporary folder left behind
    (out / "notes.txt").write_text("mine")
    with pytest.raises(TrackExportError, match=r"holds files that are not .*notes\.txt"):
        write_ctc(out, tracks, stack)
    assert (out / "notes.txt").exists()


def _tamper(folder, *, lines=None, mask=None):
    if lines is not None:
        (folder / "res_track.txt").write_text("".join(f"{line}\n" for line in lines))
    if mask is not None:
        index, edit = mask
        path = folder / f"mask{index:03d}.tif"
        tifffile.imwrite(path, edit(tifffile.imread(path)))


def _paint(label, y=60, x=5):
    def edit(a):
        a = a.copy()
        a[y - 1 : y + 2, x - 1 : x + 2] = label
        return a

    return edit


VALID = ["1 0 5 0", "2 0 2 0", "3 3 5 2", "4 3 5 2"]


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ({"lines": [*VALID, "1 0 5 0"]}, r"res_track\.txt: label 1 is listed 2 times"),
        ({"lines": ["0 0 5 0", *VALID[1:]]}, r"track '0 0 5 0': labels must be positive"),
        ({"lines": [VALID[0], "2 2 0 0", *VALID[2:]]}, r"track '2 2 0 0': needs 0 <= begin <= end"),
        (
            {"lines": [VALID[0], "2 0 3 0", *VALID[2:]]},
            r"its parent 2 ends at frame 3, not before the daughter",
        ),
        ({"lines": [*VALID[:3], "4 3 5 7"]}, r"track '4 3 5 7': its parent 7 is not listed"),
        ({"lines": [*VALID[:3], "4 3 9 2"]}, r"ends at frame 9 but the folder holds masks of frames 0\.\.5"),
        ({"mask": (2, _paint(9))}, r"mask002\.tif \(frame 2\): label 9 is not listed in res_track\.txt"),
        (
            {"mask": (4, _paint(2))},
            r"mask004\.tif \(frame 4\): label 2 lies outside its track's frames 0\.\.2",
        ),
        (
            {"mask": (1, lambda a: np.where(a == 1, 0, a).astype(a.dtype))},
            r"mask001\.tif \(frame 1\): track 1 .* is missing",
        ),
        ({"lines": ["1 0 5"]}, r"line 1: '1 0 5' is not four integers"),
    ],
)
def test_validate_ctc_names_file_frame_and_label(tmp_path, data, tamper, message):
    tracks, stack = data
    folder = write_ctc(tmp_path / "res", tracks, stack).folder
    validate_ctc(folder)
    _tamper(folder, **tamper)
    with pytest.raises(CtcFormatError, match=message) as err:
        validate_ctc(folder)
    assert "Hint:" in str(err.value) or "is not four integers" in str(err.value)
    with pytest.raises(LnpstoreError):  # read_ctc validates too
        read_ctc(folder)


def test_validate_ctc_layout_problems(tmp_path, data):
    tracks, stack = data
    with pytest.raises(CtcFormatError, match="not a CTC folder"):
        validate_ctc(tmp_path)
    folder = write_ctc(tmp_path / "res", tracks, stack).folder
    (folder / "mask002.tif").unlink()
    with pytest.raises(CtcFormatError, match=r"not numbered 0\.\.4 without gaps"):
        validate_ctc(folder)
    folder = write_ctc(tmp_path / "res2", tracks, stack).folder
    tifffile.imwrite(folder / "mask001.tif", np.zeros((32, 64), np.uint16))
    with pytest.raises(
        CtcFormatError, match=r"mask001\.tif \(frame 1\) is 32 x 64 px but mask000\.tif is 64 x 64"
    ):
        validate_ctc(folder)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (lambda s: s[None], r"shape \(1, 6, 64, 64\) \(4-D\); expected T x Y x X"),
        (lambda s: s[0], r"shape \(64, 64\) \(2-D\); expected T x Y x X"),
        (lambda s: [s[0], s[1][:32], *s[2:]], r"label frame 2 is 32 x 64 px but frame 1 is 64 x 64 px"),
        (lambda s: s.astype(np.float32), r"label frame 1 has dtype float32; label images must be integer"),
        (lambda s: [f > 0 for f in s], r"dtype bool; label images must be integer"),
        (lambda s: [s[0], s[1][None], *s[2:]], r"label frame 2 has shape \(1, 64, 64\)"),
        (lambda s: s.astype(np.int32) - 1, r"label frame 1 holds negative labels"),
        (lambda s: s[:4], r"tracks reach frame 6 but the label images hold only 4 frame"),
        (lambda s: np.where(s == 7 * 3 + 5, 0, s), r"label frame 5 does not hold label 26 of track 3"),
        (lambda s: "masks/", r"labels must be arrays, not a path"),
    ],
)
def test_bad_label_images_are_refused(tmp_path, data, labels, message):
    tracks, stack = data
    with pytest.raises(TrackExportError, match=message):
        write_ctc(tmp_path / "res", tracks, labels(stack))
    assert not (tmp_path / "res").exists()
    assert not list(tmp_path.iterdir())  # the temporary folder is gone too


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.drop("label_id"), r"tracks lack column\(s\) \['label_id'\]"),
        (
            lambda t: t.filter(~((pl.col("track_id") == 1) & (pl.col("frame") == 3))),
            r"track 1 has 5 nodes over frames 1\.\.6",
        ),
        (lambda t: pl.concat([t, t.head(1)]), r"nodes share a track and frame"),
        (
            lambda t: t.with_columns(
                pl.when(pl.col("track_id") == 3)
                .then(1)
                .otherwise(pl.col("parent_track_id"))
                .alias("parent_track_id")
            ),
            r"track 3 begins at frame 4 but its parent 1 ends at frame 6",
        ),
        (
            lambda t: t.with_columns(
                pl.when(pl.col("track_id") == 4).then(1).otherwise(pl.col("lineage_id")).alias("lineage_id")
            ),
            r"track 4 has lineage 1 but its parent 2 has lineage 2",
        ),
        (lambda t: t.with_columns(pl.lit(1).alias("lineage_id")), r"lineage 1 has several root tracks"),
        (lambda t: t.with_columns(pl.col("frame") - 1), r"`frame` < 1"),
    ],
)
def test_bad_tracks_are_refused(tmp_path, data, edit, message):
    tracks, stack = data
    with pytest.raises(TrackExportError, match=message):
        write_ctc(tmp_path / "res", edit(tracks), stack)
