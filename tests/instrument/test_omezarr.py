"""OME-Zarr HCS plates in: the simulator's plate as OME-Zarr ingests to the same tables (up to the image
addresses) and gives the same tracks as its Yokogawa layout; channel names map to roles; NGFF checks."""

from __future__ import annotations

import os

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lnpstore.cli.main import main
from lnpstore.instrument.ingest import ingest_plate
from lnpstore.instrument.omezarr import (
    find_omezarr_plate,
    image_model,
    ingest_omezarr,
    parse_channel_map,
    parse_plane_address,
    read_plane,
)
from lnpstore.instrument.stackio import read_image
from lnpstore.simulate.omezarr import write_omezarr_plate
from lnpstore.simulate.simulator import SimulationSettings, simulate_plate
from lnpstore.store.core import Store
from lnpstore.store.errors import IngestError, SettingsError

TINY = dict(n_frames=6, field_width_px=320, field_height_px=320, workers=1)  # cells tracked to frame 6


@pytest.fixture(scope="module")
def plates(tmp_path_factory):
    """The tiny plate (320 x 320 px, 6 frames) in the Yokogawa layout and the same images as an OME-Zarr
    plate, each ingested into its own store."""
    os.environ["LNPSTORE_QUIET"] = "1"
    root = tmp_path_factory.mktemp("omezarr")
    s = SimulationSettings.tiny(0, **TINY)
    sim = simulate_plate(root / "sim", s, show_progress=False, ctc_ground_truth=False)
    zarr_path = write_omezarr_plate(
        sim.plate_dir,
        root / "zarr" / f"{s.plate}.zarr",
        plate=s.plate,
        wells=list(s.wells),
        n_fields=s.n_fields,
        n_frames=s.n_frames,
        pixel_size_um=s.pixel_size_um,
        frame_interval_min=s.frame_interval_min,
    )
    yoko = Store.create(root / "yoko")
    ingest_plate(yoko, sim.plate_dir, plate_map=sim.plate_map, show_progress=False)
    omez = Store.create(root / "omez")
    report = ingest_omezarr(omez, zarr_path, plate_map=sim.plate_map)
    return yoko, omez, report, zarr_path, s


def test_the_ome_zarr_plate_is_valid_ngff(plates):
    import yaozarrs

    *_, zarr_path, s = plates
    yaozarrs.validate_zarr_store(str(zarr_path))
    assert yaozarrs.open_group(str(zarr_path)).ome_metadata().plate.name == s.plate
    field = yaozarrs.open_group(str(zarr_path / "C" / "3" / "0")).ome_metadata()
    ms = field.multiscales[0]
    assert [a.name for a in ms.axes] == ["t", "c", "z", "y", "x"]
    assert ms.datasets[0].coordinateTransformations[0].scale == [10.0, 1.0, 1.0, 0.325, 0.325]
    assert [c.label for c in field.omero.channels] == ["GFP", "LNP", "CS", "BF"]


def test_same_tables_as_the_yokogawa_layout(plates):
    yoko, omez, report, zarr_path, s = plates
    assert (report.plate, report.instrument, report.pixel_size_um) == (s.plate, "OME-Zarr", s.pixel_size_um)
    assert report.status_counts["ok"] == 3 * 1 * 6 * 4 and report.n_problems == 0
    p_y, p_o = yoko.read("plates"), omez.read("plates")
    same = [
        "plate",
        "pixel_size_um",
        "width_px",
        "height_px",
        "n_wells",
        "n_fields",
        "n_frames",
        "frame_interval_min",
    ]
    assert p_y.select(same).rows() == p_o.select(same).rows()
    w_cols = [
        "plate",
        "well",
        "dose_ng",
        "is_control",
        "n_fields",
        "n_frames_expected",
        "n_images_ok",
        "excluded",
    ]
    assert_frame_equal(yoko.read("wells").select(w_cols), omez.read("wells").select(w_cols))
    key = ["plate", "well", "field", "frame", "channel"]
    i_y, i_o = yoko.read("images").sort(key), omez.read("images").sort(key)
    assert_frame_equal(
        i_y.select(*key, "status", "height_px", "width_px"),
        i_o.select(*key, "status", "height_px", "width_px"),
    )
    # every plane reads back as the same pixels as its TIFF, through the stages' one reader
    for (p_tif,), (p_zarr,) in zip(
        i_y.select("path").rows()[::7], i_o.select("path").rows()[::7], strict=True
    ):
        assert parse_plane_address(p_zarr)[0].startswith(str(zarr_path))
        np.testing.assert_array_equal(read_image(p_tif), read_image(p_zarr))


def test_same_tracks_as_the_yokogawa_layout(plates):
    from lnpstore.tracking import track_plate

    yoko, omez, _, _, s = plates
    for st in (yoko, omez):
        track_plate(st, s.plate, show_progress=False)
    key = ["plate", "well", "field", "track_id", "frame"]
    t_y, t_o = yoko.read("tracks").sort(key), omez.read("tracks").sort(key)
    assert t_y.filter(pl.col("frame") == 6).height >= 5  # cells followed through every frame
    assert_frame_equal(t_y, t_o)


def test_simulator_writes_ome_zarr_and_ingest_finds_it_in_the_output_folder(tmp_path, capsys):
    s = SimulationSettings.tiny(
        1, n_frames=3, field_width_px=96, field_height_px=96, cells_per_field=2, workers=1
    )
    sim = simulate_plate(
        tmp_path / "out", s, show_progress=False, ctc_ground_truth=False, plate_format="ome-zarr"
    )
    assert sim.plate_dir == tmp_path / "out" / f"{s.plate}.zarr" and sim.plate_dir.is_dir()
    assert not (tmp_path / "out" / s.plate).exists()  # the TIFF folder is gone
    assert find_omezarr_plate(tmp_path / "out") == sim.plate_dir.resolve()
    store = tmp_path / "store"
    assert main(["ingest", str(tmp_path / "out"), "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "OME-Zarr" in out and "plate_map.csv" in out
    wells = Store.open(store).read("wells").sort("well")
    assert wells.select("well", "is_control").rows() == [("C03", False), ("E03", False), ("G03", True)]
    with pytest.raises(SettingsError, match="faults"):
        simulate_plate(
            tmp_path / "f", SimulationSettings.tiny(0, faults=("unreadable:C03:2",)), plate_format="ome-zarr"
        )


def _renamed_plate(path, names: tuple[str, ...]):
    """A 1-well plate (2 fields, 2 frames, 32 x 32 px) whose channels are named ``names``; pixel value =
    1000 * channel + 100 * frame + field, so a plane's channel, frame and field can be read off it."""
    from yaozarrs.write.v05 import PlateBuilder

    image = image_model(pixel_size_um=0.65, frame_interval_min=30.0, channels=names)
    fields = {}
    for f in range(2):
        arr = np.zeros((2, len(names), 1, 32, 32), np.uint16)
        for t in range(2):
            for c in range(len(names)):
                arr[t, c] = 1000 * c + 100 * (t + 1) + (f + 1)
        fields[str(f)] = (image, arr)
    PlateBuilder(path, writer="zarr").write_well(row="B", col="4", images=fields)
    return path


def test_channels_map_by_name_with_a_clear_error(tmp_path):
    names = ("Hoechst", "Brightfield", "mCherry", "EGFP", "Cy5")
    plate = _renamed_plate(tmp_path / "other.zarr", names)
    store = Store.create(tmp_path / "store")
    with pytest.raises(IngestError) as err:
        ingest_omezarr(store, plate)
    msg = str(err.value)
    assert all(repr(n) in msg for n in names) and "--channel-map" in msg and "CS" in msg
    assert not store.exists("images")
    report = ingest_omezarr(store, plate, channel_map="Hoechst=CS,Brightfield=BF,mCherry=LNP,EGFP=gfp")
    assert (report.plate, report.n_fields, report.n_frames, report.pixel_size_um) == ("other", 2, 2, 0.65)
    assert store.read("plates")["frame_interval_min"].to_list() == [30.0]
    images = store.read("images")
    assert images.filter(pl.col("channel") == "C05")["status"].unique().to_list() == ["unknown_channel"]
    ok = images.filter(pl.col("status") == "ok")
    assert ok.height == 2 * 2 * 4 and set(ok["well"]) == {"B04"}
    for r in ok.iter_rows(named=True):
        c = {"CS": 0, "BF": 1, "LNP": 2, "GFP": 3}[r["channel"]]
        assert int(read_plane(r["path"])[0, 0]) == 1000 * c + 100 * r["frame"] + r["field"]
    with pytest.raises(IngestError, match="NAME=ROLE"):
        parse_channel_map("Hoechst=nucleus")
    with pytest.raises(IngestError, match="pixel size of 0.65 um, the command 0.5"):
        ingest_omezarr(
            store, plate, channel_map="Hoechst=CS,Brightfield=BF,mCherry=LNP,EGFP=GFP", pixel_size_um=0.5
        )


def _ngff04_plate(path, units: bool = True):
    """An NGFF 0.4 plate (zarr v2, as bioformats2raw and older faim-hcs write it): well B/4, one field,
    axes t, c, y, x without z, time in seconds and pixels in nanometres; pixel = 1000 * c + 100 * t."""
    import zarr

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.attrs["plate"] = {
        "version": "0.4",
        "name": "v04plate",
        "rows": [{"name": "B"}],
        "columns": [{"name": "4"}],
        "wells": [{"path": "B/4", "rowIndex": 0, "columnIndex": 0}],
        "field_count": 1,
    }
    well = root.create_group("B").create_group("4")
    well.attrs["well"] = {"version": "0.4", "images": [{"path": "0"}]}
    image = well.create_group("0")
    window = {"start": 0, "end": 4095, "min": 0, "max": 65535}
    image.attrs.update(
        {
            "multiscales": [
                {
                    "version": "0.4",
                    "axes": [
                        {"name": "t", "type": "time", "unit": "second"},
                        {"name": "c", "type": "channel"},
                        {"name": "y", "type": "space", "unit": "nanometer"},
                        {"name": "x", "type": "space", "unit": "nanometer"},
                    ],
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [600.0, 1.0, 650.0, 650.0]}
                            ],
                        }
                    ],
                }
            ],
            "omero": {
                "channels": [
                    {"label": n, "color": "FFFFFF", "window": window} for n in ("BF", "CS", "GFP", "LNP")
                ]
            },
        }
    )
    if not units:  # as some converters write it: a scale without units
        ms = image.attrs["multiscales"]
        ms[0]["axes"] = [{k: v for k, v in a.items() if k != "unit"} for a in ms[0]["axes"]]
        image.attrs["multiscales"] = ms
    arr = image.create_array("0", shape=(3, 4, 16, 16), dtype="uint16", chunks=(1, 1, 16, 16))
    data = np.zeros(arr.shape, np.uint16)
    for t in range(3):
        for c in range(4):
            data[t, c] = 1000 * c + 100 * t
    arr[:] = data
    return path


def test_ngff_0_4_plate_in_zarr_v2(tmp_path):
    import yaozarrs

    plate = _ngff04_plate(tmp_path / "old.zarr")
    yaozarrs.validate_zarr_store(str(plate))
    store = Store.create(tmp_path / "store")
    r = ingest_omezarr(store, plate)
    assert (r.plate, r.n_frames, r.pixel_size_um) == ("v04plate", 3, pytest.approx(0.65))
    assert store.read("plates")["frame_interval_min"].to_list() == [pytest.approx(10.0)]
    images = store.read("images")
    assert images["status"].unique().to_list() == ["ok"] and images.height == 3 * 4
    for row in images.iter_rows(named=True):
        c = ("BF", "CS", "GFP", "LNP").index(row["channel"])
        assert parse_plane_address(row["path"])[1] == (row["frame"] - 1, c)
        assert int(read_plane(row["path"])[5, 5]) == 1000 * c + 100 * (row["frame"] - 1)
    bare = _ngff04_plate(tmp_path / "bare.zarr", units=False)
    with pytest.raises(IngestError, match="no pixel size .* --pixel-size-um"):
        ingest_omezarr(store, bare)  # a scale without a unit is never taken for micrometres
    r = ingest_omezarr(Store.create(tmp_path / "bare-store"), bare, pixel_size_um=0.65)
    assert r.pixel_size_um == 0.65 and r.warnings[0].startswith("the metadata give no time increment")
