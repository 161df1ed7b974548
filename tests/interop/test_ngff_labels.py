"""Label movies and tracks out as OME-Zarr labels: into the OME-Zarr plate a store was ingested from, and
as a standalone image; read back with yaozarrs (NGFF validation) and zarr, and through the CLI."""

from __future__ import annotations

import os

import numpy as np
import polars as pl
import pytest

from lnpstore.cli.main import main
from lnpstore.interop.ngff_labels import export_field_labels
from lnpstore.store.errors import TrackExportError


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """The tiny plate simulated as OME-Zarr, ingested and tracked; (store, plate path, settings)."""
    os.environ["LNPSTORE_QUIET"] = "1"
    from lnpstore.instrument.ingest import ingest_to_store
    from lnpstore.instrument.omezarr import ingest_omezarr
    from lnpstore.simulate.simulator import SimulationSettings, simulate_plate
    from lnpstore.store.core import Store
    from lnpstore.tracking import track_plate

    root = tmp_path_factory.mktemp("labels")
    s = SimulationSettings.tiny(0, n_frames=5, field_width_px=320, field_height_px=320, workers=1)
    sim = simulate_plate(
        root / "sim", s, show_progress=False, ctc_ground_truth=False, plate_format="ome-zarr"
    )
    ingest_to_store(root / "store", root / "sim", ingest=ingest_omezarr)
    store = Store.open(root / "store")
    track_plate(store, s.plate, show_progress=False)
    return store, sim.plate_dir, s


def _check_labels(image_path, store, plate, well, field_):
    """The labels group read back: valid NGFF, one label per track with its lineage, pixels = the movie."""
    import yaozarrs
    import zarr

    from lnpstore.tracking.stage import load_field_labels

    yaozarrs.validate_zarr_store(str(image_path))
    image = yaozarrs.open_group(str(image_path)).ome_metadata()
    assert yaozarrs.open_group(str(image_path / "labels")).ome_metadata().labels == ["tracks"]
    label = yaozarrs.open_group(str(image_path / "labels" / "tracks")).ome_metadata()
    lab_ms, img_ms = label.multiscales[0], image.multiscales[0]
    assert [a.name for a in img_ms.axes] == ["t", "c", "z", "y", "x"]
    assert [a.name for a in lab_ms.axes] == ["t", "z", "y", "x"]  # the image's, but its channel axis
    img_scale = img_ms.datasets[0].coordinateTransformations[0].scale
    assert lab_ms.datasets[0].coordinateTransformations[0].scale == [img_scale[i] for i in (0, 2, 3, 4)]
    assert label.image_label.source.image == "../../"
    tracks, movie = load_field_labels(store, plate, well, field_)
    raw = yaozarrs.open_group(str(image_path / "labels" / "tracks")).attrs["ome"]["image-label"]
    props = {p["label-value"]: p for p in raw["properties"]}
    assert [p.label_value for p in label.image_label.properties] == list(props)
    per_track = tracks.group_by("track_id").agg(pl.col("parent_track_id").first(), pl.col("frame").max())
    assert set(props) == set(per_track["track_id"].to_list())
    for t, parent, last in per_track.iter_rows():
        assert props[t]["parent_track_id"] == (-1 if parent is None else parent)
        assert props[t]["last_frame"] == last
    assert {c.label_value for c in label.image_label.colors} == set(props)
    data = zarr.open_array(str(image_path / "labels" / "tracks" / "0"), mode="r")
    img = zarr.open_array(str(image_path / "0"), mode="r")
    assert data.shape == (img.shape[0], 1, *img.shape[-2:])
    assert np.issubdtype(data.dtype, np.integer)
    for i in range(len(movie)):
        np.testing.assert_array_equal(data[i, 0], movie[i])
    assert len(np.unique(data[len(movie) - 1])) > 2  # tracks reach the last frame
    return img


def test_labels_into_the_ome_zarr_plate(tracked):
    import yaozarrs

    store, plate_path, s = tracked
    out = export_field_labels(store, well="C03")
    assert out == plate_path / "C" / "3" / "0"
    _check_labels(out, store, s.plate, "C03", 1)
    # a re-export (here through the CLI) replaces the label group; the list still names it once
    argv = ["export-tracks", str(store.root), "--format", "ome-zarr", "--well", "C03", "--into-plate"]
    assert main(argv) == 0
    assert yaozarrs.open_group(str(out / "labels")).ome_metadata().labels == ["tracks"]
    yaozarrs.validate_zarr_store(str(plate_path))  # the whole plate is still valid NGFF


def test_standalone_image_with_labels_through_the_cli(tmp_path, tracked, capsys):
    from lnpstore.instrument.stackio import read_image

    store, _, s = tracked
    out = tmp_path / "field.zarr"
    rc = main(["export-tracks", str(store.root), "--format", "ome-zarr", "--well", "E03", "--out", str(out)])
    assert rc == 0 and str(out) in capsys.readouterr().out
    img = _check_labels(out, store, s.plate, "E03", 1)
    rows = store.read("images").filter(
        (pl.col("well") == "E03") & (pl.col("frame") == 2) & (pl.col("channel") == "LNP")
    )
    np.testing.assert_array_equal(img[1, 2, 0], read_image(rows["path"][0]))  # channels CS, BF, LNP, GFP
    with pytest.raises(TrackExportError, match="not an OME-Zarr image"):
        export_field_labels(store, tmp_path, well="E03")  # an existing folder that is no image


def test_labels_into_a_tiff_plate_need_an_out_path(tmp_path, tracked):
    from lnpstore.instrument.ingest import ingest_plate
    from lnpstore.simulate.simulator import SimulationSettings, simulate_plate
    from lnpstore.store.core import Store
    from lnpstore.tracking import track_plate

    s = SimulationSettings.tiny(
        0, n_frames=3, field_width_px=96, field_height_px=96, cells_per_field=2, workers=1
    )
    sim = simulate_plate(tmp_path / "sim", s, show_progress=False, ctc_ground_truth=False)
    store = Store.create(tmp_path / "store")
    ingest_plate(store, sim.plate_dir, plate_map=sim.plate_map, show_progress=False)
    track_plate(store, s.plate, show_progress=False)
    with pytest.raises(TrackExportError, match="--out FIELD.zarr"):
        export_field_labels(store, well="C03")
