"""Export formats round-trip through their own readers (the geff package, traccuracy's CTC loader,
napari's tracks-layer arguments, a CSV reader); the CLI exports a CTC folder in every format."""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl
import pytest
from _track_data import INTERVAL_MIN, N_EDGES, N_NODES, PX_UM, movie

from lnpstore.cli import export_tracks as export_cmd
from lnpstore.interop.ctc import TrackExportError, write_ctc
from lnpstore.interop.export import NODE_STRIDE, export_tracks, napari_tracks
from lnpstore.store.errors import LnpstoreError

UNITS = {"pixel_size_um": PX_UM, "frame_interval_min": INTERVAL_MIN}


@pytest.fixture(scope="module")
def data():
    tracks, stack = movie()
    tracks = tracks.with_columns(
        (pl.col("frame") % 2 == 0).alias("flag_jump"),
        pl.when(pl.col("frame") == 6).then(pl.lit("end")).otherwise(None).alias("stop_reason"),
    )
    return tracks, stack


def _expected_edges(tracks: pl.DataFrame) -> set[tuple[int, int]]:
    ids = {(t, f): t * NODE_STRIDE + f for t, f in tracks.select("track_id", "frame").iter_rows()}
    edges = {(ids[t, f], ids[t, f + 1]) for t, f in ids if (t, f + 1) in ids}
    return edges | {(ids[2, 3], ids[3, 4]), (ids[2, 3], ids[4, 4])}


def test_geff_round_trips_through_the_geff_reader(tmp_path, data):
    import geff
    from geff.validate.data import ValidationConfig

    tracks, stack = data
    out = export_tracks(
        tracks, None, tmp_path / "tracks.geff", format="geff", metadata={"well": "C03"}, **UNITS
    )
    export_tracks(tracks, stack, out, format="geff", **UNITS)  # a re-run replaces it
    check = ValidationConfig(graph=True, lineage=True, tracklet=True)
    graph, meta = geff.read(str(out), data_validation=check)
    assert graph.number_of_nodes() == N_NODES and graph.number_of_edges() == N_EDGES
    assert set(graph.edges) == _expected_edges(tracks)
    assert [(a.name, a.type, a.unit) for a in meta.axes] == [
        ("t", "time", "minute"),
        ("y", "space", "micrometer"),
        ("x", "space", "micrometer"),
    ]
    assert meta.track_node_props == {"lineage": "lineage_id", "tracklet": "track_id"}
    assert meta.extra["lnpstore"]["pixel_size_um"] == PX_UM
    for row in tracks.iter_rows(named=True):
        node = graph.nodes[row["track_id"] * NODE_STRIDE + row["frame"]]
        assert node["t"] == pytest.approx((row["frame"] - 1) * INTERVAL_MIN)
        assert (node["y"], node["x"]) == pytest.approx((row["y_px"] * PX_UM, row["x_px"] * PX_UM))
        assert (node["y_px"], node["label_id"], node["lineage_id"]) == (
            row["y_px"],
            row["label_id"],
            row["lineage_id"],
        )
        assert node.get("parent_track_id") == row["parent_track_id"]  # missing where there is no parent
        assert node["flag_jump"] == row["flag_jump"]
    # a parent with one daughter (a track broken by a gap) is valid, but track_id is no GEFF tracklet
    one = tracks.filter(pl.col("track_id") != 4)
    export_tracks(one, None, out, format="geff", **UNITS)
    graph, meta = geff.read(str(out), data_validation=check)
    assert meta.track_node_props == {"lineage": "lineage_id"}
    assert graph.number_of_edges() == N_EDGES - 3


def test_geff_keeps_the_trackers_node_ids(tmp_path, data):
    import geff

    tracks, _ = data
    with_ids = tracks.with_columns(
        (pl.col("track_id").cast(pl.Int64) * 1000 + pl.col("frame")).alias("node_id")
    )
    graph, _ = geff.read(str(export_tracks(with_ids, None, tmp_path / "t.geff", format="geff", **UNITS)))
    assert sorted(graph.nodes) == sorted(with_ids["node_id"].to_list())


def test_ctc_export_is_read_by_traccuracy(tmp_path, data):
    from traccuracy.loaders import load_ctc_data

    tracks, stack = data
    out = export_tracks(tracks, stack, tmp_path / "01_RES", format="ctc", **UNITS)
    g = load_ctc_data(str(out))
    assert (g.graph.number_of_nodes(), g.graph.number_of_edges(), len(g.get_divisions())) == (
        N_NODES,
        N_EDGES,
        1,
    )


def test_napari_loads_in_two_lines(tmp_path, data):
    tracks, _ = data
    path = export_tracks(tracks, None, tmp_path / "tracks.npz", format="napari", **UNITS)
    data_, kwargs = napari_tracks(path)
    assert kwargs == {"graph": {3: [2], 4: [2]}}
    assert data_.shape == (N_NODES, 4) and data_.dtype == np.float64
    expected = tracks.sort("track_id", "frame").select(
        pl.col("track_id").cast(pl.Float64), pl.col("frame").cast(pl.Float64) - 1, "y_px", "x_px"
    )
    np.testing.assert_array_equal(data_, expected.to_numpy())
    with pytest.raises(TrackExportError, match=r"napari export is an \.npz file"):
        export_tracks(tracks, None, tmp_path / "tracks.txt", format="napari", **UNITS)


def test_csv_has_px_um_frames_and_minutes(tmp_path, data):
    tracks, _ = data
    path = export_tracks(tracks, None, tmp_path / "tracks.csv", format="csv", **UNITS)
    back = pl.read_csv(path)
    assert back.columns[:10] == [
        "track_id",
        "frame",
        "t_min",
        "parent_track_id",
        "lineage_id",
        "label_id",
        "y_px",
        "x_px",
        "y_um",
        "x_um",
    ]
    assert {"area_px", "flag_jump", "stop_reason"} <= set(back.columns)
    assert back.height == N_NODES
    assert back["t_min"].to_list() == [(f - 1) * INTERVAL_MIN for f in back["frame"]]
    np.testing.assert_allclose(back["x_um"], back["x_px"] * PX_UM)
    assert back.filter(pl.col("track_id") == 3)["parent_track_id"].to_list() == [2, 2, 2]
    assert back.filter(pl.col("track_id") == 1)["parent_track_id"].null_count() == 6


def test_export_refuses_bad_arguments(tmp_path, data):
    tracks, stack = data
    with pytest.raises(TrackExportError, match="CTC format needs the label images"):
        export_tracks(tracks, None, tmp_path / "r", format="ctc", **UNITS)
    with pytest.raises(TrackExportError, match="unknown format 'trackmate'"):
        export_tracks(tracks, stack, tmp_path / "r", format="trackmate", **UNITS)  # type: ignore[arg-type]
    with pytest.raises(TrackExportError, match="`pixel_size_um` must be a positive number"):
        export_tracks(tracks, stack, tmp_path / "r", format="csv", pixel_size_um=0, frame_interval_min=10)
    (tmp_path / "not_geff").mkdir()
    (tmp_path / "not_geff" / "x").write_text("x")
    with pytest.raises(TrackExportError, match="exists and is not a GEFF folder"):
        export_tracks(tracks, None, tmp_path / "not_geff", format="geff", **UNITS)


def _cli(argv: list[str]) -> int:
    """Run the subcommand as `lnpstore` does (its errors as LnpstoreError)."""
    parser = argparse.ArgumentParser(prog="lnpstore")
    export_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_exports_a_ctc_folder_in_every_format(tmp_path, data, capsys):
    import geff

    tracks, stack = data
    src = write_ctc(tmp_path / "01_RES", tracks, stack).folder
    for fmt, out in (("ctc", "ctc_out"), ("geff", "t.geff"), ("napari", "t.npz"), ("csv", "t.csv")):
        argv = ["export-tracks", str(src), "--format", fmt, "--out", str(tmp_path / out)]
        assert _cli([*argv, "--pixel-size-um", str(PX_UM), "--frame-interval-min", "10"]) == 0
    printed = capsys.readouterr().out
    assert "ctc: 4 tracks, 15 nodes" in printed and "viewer.add_tracks(data, **kwargs)" in printed
    assert (tmp_path / "ctc_out" / "res_track.txt").read_text() == (src / "res_track.txt").read_text()
    graph, _ = geff.read(str(tmp_path / "t.geff"))
    assert graph.number_of_edges() == N_EDGES
    assert pl.read_csv(tmp_path / "t.csv")["y_um"].max() == pytest.approx(tracks["y_px"].max() * PX_UM)
    with pytest.raises(LnpstoreError, match="not a CTC folder"):
        _cli(["export-tracks", str(tmp_path), "--format", "csv", "--out", str(tmp_path / "x.csv")])


def test_store_field_without_label_images_says_so(tmp_path):
    from lnpstore import Store
    from lnpstore.tracking import TrackingError, load_field_labels

    store = Store.create(tmp_path / "store")
    with pytest.raises(TrackingError, match=r"no label images in store .*`lnpstore track`"):
        load_field_labels(store, "P1", "C03", 1)
    with pytest.raises(LnpstoreError, match="holds no plates"):
        _cli(
            [
                "export-tracks",
                str(store.root),
                "--format",
                "csv",
                "--well",
                "C03",
                "--out",
                str(tmp_path / "x.csv"),
            ]
        )
