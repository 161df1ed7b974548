"""Ingest of plate folders: grid, statuses, excluded wells, plate maps, idempotence, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tifffile
from _plates import TABLES, make_plate, read_tables, simulate
from polars.testing import assert_frame_equal

from lnpstore.cli.main import main
from lnpstore.instrument.ingest import IngestReport, ingest_plate, read_tiff_header
from lnpstore.instrument.layout import image_filename
from lnpstore.instrument.platemap import read_plate_map
from lnpstore.store.core import Store
from lnpstore.store.errors import IngestError, PlateMapError

CV8000 = Path(__file__).parent / "data" / "cv8000-minimal"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.create(tmp_path / "store")


# -- simulated plates ------------------------------------------------------------------------------
def test_simulated_plate_with_faults(tmp_path: Path, store: Store) -> None:
    faults = ("missing_frames:E03:4-5", "unreadable:C03:2", "empty_field:G03")
    p = simulate(tmp_path / "sim", faults=faults)
    r = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    assert (r.plate, r.instrument, r.pixel_size_um) == ("LNP_Tiny01", "simulated", 0.325)
    assert r.channels == {"GFP": 5, "LNP": 6, "CS": 7, "BF": 9}
    # 3 wells x 1 field x 6 frames x 4 channels; E03 lacks frames 4-5 in every channel
    assert r.status_counts == {
        "ok": 63,
        "missing": 8,
        "unreadable": 1,
        "wrong_size": 0,
        "wrong_dtype": 0,
        "unknown_channel": 0,
    }
    assert r.excluded_wells == {
        "C03": "unreadable: 1 image(s), frame(s) 2 (field(s) 1)",
        "E03": "missing: 8 image(s), frame(s) 4-5 (field(s) 1)",
    }
    wells = store.read("wells").sort("well")
    assert wells.select("well", "dose_ng", "is_control", "excluded").rows() == [
        ("C03", 316.0, False, True),
        ("E03", 31.6, False, True),
        ("G03", 0.0, True, False),  # an empty field is not an ingest problem
    ]
    assert store.read("plates")["frame_interval_min"].to_list() == [10.0]
    bad = store.read("images").filter(status="unreadable").row(0, named=True)
    assert (bad["well"], bad["frame"], bad["channel"]) == ("C03", 2, "CS")
    assert "cannot read the TIFF header" in bad["status_detail"] and bad["path"].endswith(".tif")
    text = r.summary()
    assert "excluded wells (2 of 3)" in text and "missing 8" in text and "unreadable 1" in text

    # a second ingest changes nothing
    first = read_tables(store)
    r2 = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    assert not r2.written and r2.data_version == r.data_version
    for t in TABLES:
        assert_frame_equal(store.read(t), first[t])


# -- a clean plate ---------------------------------------------------------------------------------
def test_clean_plate(tmp_path: Path, store: Store) -> None:
    p = make_plate(tmp_path)
    r = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    assert isinstance(r, IngestReport)
    assert r.plate == "AssayPlate_Greiner_#781091"
    assert (r.n_wells, r.n_fields, r.n_frames, r.channels) == (4, 2, 3, {"CS": 7, "BF": 9})
    assert r.status_counts == {
        "ok": 48,
        "missing": 0,
        "unreadable": 0,
        "wrong_size": 0,
        "wrong_dtype": 0,
        "unknown_channel": 0,
    }
    assert r.excluded_wells == {} and r.written and r.warnings == [] and r.extra == {}
    assert r.grid_source.startswith("MeasurementData.mlf (48 images listed)")

    images = store.read("images")
    assert (
        images.height == 48
        and images.null_count().select("path", "height_px", "acquired_at").sum_horizontal()[0] == 0
    )
    row = images.filter(well="C04", field=2, frame=3, channel="BF").row(0, named=True)
    assert row["path"] == str(p.plate_dir.resolve() / image_filename(p.plate, "C04", 3, 2, 9))
    assert (row["height_px"], row["width_px"], row["dtype"], row["channel_number"]) == (24, 32, "uint16", 9)
    assert (row["stage_x_um"], row["stage_y_um"], row["acquired_at"]) == (
        200.0,
        -100.0,
        "2024-03-01T10:20:02+01:00",
    )

    wells = store.read("wells").sort("well")
    assert wells["dose_ng"].to_list() == [0.0, 10.0, 20.0, 30.0]
    assert wells["is_control"].to_list() == [True, False, False, False]
    assert wells["n_images_ok"].to_list() == [12] * 4 and not wells["excluded"].any()

    plate = store.read("plates").row(0, named=True)
    assert plate["instrument"] == "simulated"  # the mrf says lnpstore's writer made it
    assert (plate["pixel_size_um"], plate["height_px"], plate["width_px"]) == (0.65, 24, 32)
    assert (
        plate["n_wells"],
        plate["n_fields"],
        plate["n_frames"],
        plate["n_images"],
        plate["n_problems"],
    ) == (4, 2, 3, 48, 0)
    assert plate["frame_interval_min"] == 10.0
    assert json.loads(plate["channels"]) == {"CS": 7, "BF": 9}
    assert plate["data_version"] == r.data_version and len(r.data_version) == 64
    assert "excluded wells: none" in r.summary()


# -- faults ----------------------------------------------------------------------------------------
def test_faults_are_flagged_reported_and_excluded(tmp_path: Path, store: Store) -> None:
    p = make_plate(tmp_path)
    d = p.plate_dir
    for t in (2, 3):  # well C04 loses frames 2-3 of field 1 (still listed in the mlf)
        (d / image_filename(p.plate, "C04", t, 1, 7)).unlink()
    (d / image_filename(p.plate, "D03", 2, 2, 9)).write_bytes(b"this is not a TIFF")
    truncated = d / image_filename(p.plate, "D03", 3, 1, 7)
    truncated.write_bytes(truncated.read_bytes()[:-200])
    tifffile.imwrite(d / image_filename(p.plate, "D04", 1, 1, 7), np.zeros((10, 10), np.uint16))
    stray = image_filename(p.plate, "C03", 1, 1, 1)  # a channel the mlf does not list
    tifffile.imwrite(d / stray, np.zeros((24, 32), np.uint16))

    r = ingest_plate(store, d, plate_map=p.plate_map, show_progress=False)
    # the mlf's grid: 4 wells x 2 fields x 3 frames x 2 channels; the C01 file is extra, outside it
    assert r.status_counts == {
        "ok": 43,
        "missing": 2,
        "unreadable": 2,
        "wrong_size": 1,
        "wrong_dtype": 0,
        "unknown_channel": 0,
    }
    assert r.extra == {stray: "channel C01 is not in MeasurementData.mlf (channels C07, C09)"}
    images = store.read("images")
    assert images.height == 48 and "C01" not in images["channel"].to_list()
    status = {
        (w, f, t, c): s
        for w, f, t, c, s in images.select("well", "field", "frame", "channel", "status").rows()
    }
    assert status[("C04", 1, 2, "CS")] == "missing" and status[("C04", 1, 3, "CS")] == "missing"
    assert status[("D03", 2, 2, "BF")] == "unreadable" and status[("D03", 1, 3, "CS")] == "unreadable"
    assert status[("D04", 1, 1, "CS")] == "wrong_size"
    detail = images.filter(well="D04", field=1, frame=1, channel="CS")["status_detail"].item()
    assert "10x10 px, expected 24x32 px" in detail and image_filename(p.plate, "D04", 1, 1, 7) in detail
    detail = images.filter(well="C04", field=1, frame=2, channel="CS")["status_detail"].item()
    assert "listed in MeasurementData.mlf but not on disk" in detail
    assert "truncated" in images.filter(well="D03", field=1, frame=3, channel="CS")["status_detail"].item()
    assert images.filter(status="missing")["path"].null_count() == images.filter(status="missing").height

    # each damaged well is excluded with its reason; C03 (only the stray file) is not
    wells = store.read("wells").sort("well")
    assert wells.select("well", "excluded").rows() == [
        ("C03", False),
        ("C04", True),
        ("D03", True),
        ("D04", True),
    ]
    reason = dict(wells.select("well", "exclude_reason").rows())
    assert reason["C04"] == "missing: 2 image(s), frame(s) 2-3 (field(s) 1)"
    assert "unreadable: 2 image(s)" in reason["D03"] and "wrong_size: 1 image(s)" in reason["D04"]
    text = r.summary()
    assert "excluded wells (3 of 4)" in text and "unreadable 2" in text and "wrong_size 1" in text
    assert "extra files (1)" in text and f"    {stray}: channel C01 is not in" in text
    assert "first wrong_size: " + image_filename(p.plate, "D04", 1, 1, 7) in text


def test_missing_frames_exclude_only_that_well(tmp_path: Path, store: Store) -> None:
    p = make_plate(tmp_path, "P_1")
    for c in (7, 9):
        (p.plate_dir / image_filename(p.plate, "D03", 2, 1, c)).unlink()
    (p.plate_dir / "MeasurementData.mlf").unlink()  # no mlf: the gap is found from the grid alone
    r = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    assert r.excluded_wells == {"D03": "missing: 2 image(s), frame(s) 2 (field(s) 1)"}
    assert r.status_counts["missing"] == 2 and r.status_counts["ok"] == 46
    assert any("MeasurementData.mlf" in w for w in r.warnings)
    got = store.query("missing_frames", plate="P_1")
    assert got.select("well", "field", "channel", "missing_frames").rows() == [
        ("D03", 1, "BF", [2]),
        ("D03", 1, "CS", [2]),
    ]
    assert "not on disk" in store.query("image_problems", plate="P_1")["status_detail"][0]


def test_last_frames_missing_everywhere_needs_expected_frames(tmp_path: Path, store: Store) -> None:
    p = make_plate(tmp_path, with_metadata=False)
    r = ingest_plate(store, p.plate_dir, pixel_size_um=0.65, expected_frames=4, show_progress=False)
    assert r.n_frames == 4 and r.status_counts["missing"] == 16 and len(r.excluded_wells) == 4


# -- idempotence and several plates ----------------------------------------------------------------
def test_reingest_changes_nothing_and_second_plate_adds(tmp_path: Path, store: Store) -> None:
    p = make_plate(tmp_path / "a")
    (p.plate_dir / image_filename(p.plate, "C03", 2, 1, 7)).unlink()
    r1 = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    first = read_tables(store)
    mtimes = {f: f.stat().st_mtime_ns for t in TABLES for f in store.files(t)}
    r2 = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    assert r1.written and not r2.written and r2.data_version == r1.data_version
    for t in TABLES:
        assert_frame_equal(store.read(t), first[t])
    assert {f: f.stat().st_mtime_ns for t in TABLES for f in store.files(t)} == mtimes
    assert "unchanged" in r2.summary()

    q = make_plate(tmp_path / "b", "Plate_2", wells=("E05",))
    ingest_plate(store, q.plate_dir, plate_map=q.plate_map, show_progress=False)
    assert sorted(store.read("plates")["plate"]) == ["AssayPlate_Greiner_#781091", "Plate_2"]
    assert store.read("wells").height == 5
    for t in TABLES:  # the first plate's rows are untouched
        assert_frame_equal(store.read(t).filter(pl.col("plate") == p.plate), first[t])

    # a changed plate map replaces that plate's wells, nothing else
    pl.DataFrame({"well": ["C03", "C04", "D03", "D04"], "dose_ng": [5.0, 5.0, 5.0, 0.0]}).write_csv(
        p.plate_map
    )
    r3 = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    assert r3.written and r3.data_version == r1.data_version
    assert store.read("wells").filter(plate=p.plate).sort("well")["dose_ng"].to_list() == [5.0, 5.0, 5.0, 0.0]
    assert store.read("wells").filter(plate="Plate_2").height == 1


def test_data_version_follows_the_files(tmp_path: Path, store: Store) -> None:
    p = make_plate(tmp_path)
    v1 = ingest_plate(store, p.plate_dir, show_progress=False).data_version
    (p.plate_dir / image_filename(p.plate, "C03", 1, 1, 7)).unlink()
    v2 = ingest_plate(store, p.plate_dir, show_progress=False).data_version
    assert v1 != v2
    assert store.read("plates")["data_version"].to_list() == [v2]


# -- plate maps ------------------------------------------------------------------------------------
def test_plate_map_errors_leave_the_store_untouched(tmp_path: Path, store: Store) -> None:
    p = make_plate(tmp_path)
    ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    before = read_tables(store)

    extra = tmp_path / "extra.csv"
    pl.DataFrame({"well": ["C03", "C04", "D03", "D04", "H12"], "dose_ng": [0, 1, 2, 3, 4]}).write_csv(extra)
    with pytest.raises(PlateMapError, match=r"1 well\(s\) in the plate map have no images: H12"):
        ingest_plate(store, p.plate_dir, plate_map=extra, show_progress=False)

    short = tmp_path / "short.parquet"
    pl.DataFrame({"well": ["C03", "D03"], "dose_ng": [0.0, 1.0]}).write_parquet(short)
    with pytest.raises(
        PlateMapError, match=r"2 well\(s\) with images are missing from the plate map: C04, D04"
    ):
        ingest_plate(store, p.plate_dir, plate_map=short, show_progress=False)

    for t in TABLES:
        assert_frame_equal(store.read(t), before[t])


def test_plate_map_validation(tmp_path: Path) -> None:
    def csv(text: str) -> Path:
        path = tmp_path / "pm.csv"
        path.write_text(text)
        return path

    got = read_plate_map(csv("well,dose_ng,is_control,notes\nc3,0,,x\nC04,5,yes,\nD05,0,false,\n"))
    assert got.rows() == [("C03", 0.0, True), ("C04", 5.0, True), ("D05", 0.0, False)]
    with pytest.raises(PlateMapError, match=r"missing column\(s\) \['dose_ng'\]"):
        read_plate_map(csv("well,dose\nC03,1\n"))
    with pytest.raises(PlateMapError, match=r"well\(s\) C03 appear more than once"):
        read_plate_map(csv("well,dose_ng\nC03,1\nc03,2\n"))
    with pytest.raises(PlateMapError, match="are not well ids like C03: Z9"):
        read_plate_map(csv("well,dose_ng\nZ9,1\n"))
    with pytest.raises(PlateMapError, match=r"well\(s\) C04 have no dose_ng"):
        read_plate_map(csv("well,dose_ng\nC03,1\nC04,\n"))
    with pytest.raises(PlateMapError, match="negative"):
        read_plate_map(csv("well,dose_ng\nC03,-1\n"))
    with pytest.raises(PlateMapError, match="no such file"):
        read_plate_map(tmp_path / "nope.csv")


def test_without_plate_map_doses_are_null_and_a_warning_is_given(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    p = make_plate(tmp_path)
    r = ingest_plate(store, p.plate_dir, show_progress=False)
    wells = store.read("wells")
    assert wells["dose_ng"].null_count() == 4 and wells["is_control"].null_count() == 4
    assert any("no plate map" in w for w in r.warnings)
    assert "no plate map" in caplog.text and "warning: no plate map" in r.summary()


# -- pixel size, bad folders -----------------------------------------------------------------------
def test_pixel_size_rules(tmp_path: Path, store: Store) -> None:
    p = make_plate(tmp_path, with_metadata=False)
    with pytest.raises(
        IngestError, match=r"no MeasurementDetail.mrf .*pixel size is unknown.*pixel_size_um=0.325"
    ):
        ingest_plate(store, p.plate_dir, show_progress=False)
    r = ingest_plate(store, p.plate_dir, pixel_size_um=0.1625, show_progress=False)
    assert r.pixel_size_um == 0.1625 and r.instrument == "unknown"
    assert store.read("plates")["frame_interval_min"].to_list() == [None]

    q = make_plate(tmp_path / "q", "Q")
    with pytest.raises(IngestError, match="gives a pixel size of 0.65 um but pixel_size_um=0.5"):
        ingest_plate(store, q.plate_dir, pixel_size_um=0.5, show_progress=False)
    assert store.read("plates")["plate"].to_list() == [p.plate]


def test_bad_folders(tmp_path: Path, store: Store) -> None:
    with pytest.raises(IngestError, match="not a folder"):
        ingest_plate(store, tmp_path / "nope", show_progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match=r"no image files named like"):
        ingest_plate(store, tmp_path / "empty", show_progress=False)
    p = make_plate(tmp_path / "outer")
    make_plate(tmp_path / "outer" / "second", "P2")
    shutil.move(tmp_path / "outer" / "second" / "P2", tmp_path / "outer" / "P2")
    with pytest.raises(IngestError, match=r"holds 2 plate folders \('AssayPlate_Greiner_#781091', 'P2'\)"):
        ingest_plate(store, tmp_path / "outer", show_progress=False)
    shutil.copy(
        p.plate_dir / image_filename(p.plate, "C03", 1, 1, 7),
        p.plate_dir / image_filename("Other", "C03", 1, 1, 7),
    )
    with pytest.raises(IngestError, match="image files of 2 plates in one folder"):
        ingest_plate(store, p.plate_dir, show_progress=False)
    assert store.read("images").height == 0


def test_the_folder_around_one_plate(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """The simulator's output folder: the one plate folder inside is found, and the plate map beside it."""
    p = simulate(tmp_path / "sim")
    assert p.plate_dir.parent == tmp_path / "sim" and p.plate_map.parent == tmp_path / "sim"
    st = str(tmp_path / "cli-store")
    assert main(["ingest", str(tmp_path / "sim"), "--store", st]) == 0
    out = capsys.readouterr().out
    assert f"plate {p.plate} " in out and f"plate map: {p.plate_map.resolve()}" in out
    assert "no plate map" not in out
    wells = Store.open(st).read("wells")
    assert wells["dose_ng"].null_count() == 0 and wells["is_control"].any()
    # the plate folder itself, without --plate-map: not guessed, but the warning points to it
    r = ingest_plate(store, p.plate_dir, show_progress=False)
    assert any(f"there is one beside the plate folder: {p.plate_map.resolve()}" in w for w in r.warnings)


def test_read_tiff_header(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, np.ones((5, 7), np.uint16))
    h = read_tiff_header(path)
    assert (h.shape, h.dtype, h.error) == ((5, 7), "uint16", None)
    path.write_bytes(b"\x00" * 10)
    assert read_tiff_header(path).error is not None


# -- the real CV8000 measurement -------------------------------------------------------------------
def test_real_cv8000_folder(tmp_path: Path, store: Store) -> None:
    with pytest.raises(IngestError, match=r"4 z-planes \(1-4\).*z_plane=K"):
        ingest_plate(store, CV8000, show_progress=False)
    r = ingest_plate(store, CV8000, z_plane=1, show_progress=False)
    assert r.plate == "CV8000-Minimal-DataSet-2C-3W-4S-FP2-stack" and r.instrument == "CV8000"
    assert (r.pixel_size_um, r.n_wells, r.n_fields, r.n_frames) == (0.325, 3, 4, 1)
    assert r.channels == {"C01": 1, "C02": 2}  # not channels of this assay
    # only well D08's plane-1 images are in tests/data; the mlf lists E03's and F08's too -> missing
    assert r.status_counts == {
        "ok": 0,
        "missing": 16,
        "unreadable": 0,
        "wrong_size": 0,
        "wrong_dtype": 0,
        "unknown_channel": 8,
    }
    assert sorted(r.excluded_wells) == ["E03", "F08"]
    d08 = store.read("images").filter(well="D08", field=1, channel="C01").row(0, named=True)
    assert (d08["height_px"], d08["width_px"], d08["dtype"]) == (2000, 2000, "uint16")
    assert (d08["stage_x_um"], d08["stage_y_um"]) == (-567.1, 402.9)
    assert store.read("plates")["width_px"].to_list() == [2000]


# -- CLI -------------------------------------------------------------------------------------------
def test_cli_ingest_info_query_sql(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = make_plate(tmp_path, "P_cli")
    (p.plate_dir / image_filename(p.plate, "D04", 3, 2, 9)).unlink()
    st = str(tmp_path / "store")
    assert main(["ingest", str(p.plate_dir), "--store", st, "--plate-map", str(p.plate_map)]) == 0
    out = capsys.readouterr().out
    assert "plate P_cli (simulated)" in out and "excluded wells (1 of 4)" in out and "D04: missing" in out

    assert main(["info", st]) == 0
    assert "P_cli" in capsys.readouterr().out

    assert main(["query", "images_per_well", "--store", st, "--param", "plate=P_cli", "--format", "csv"]) == 0
    got = pl.read_csv(capsys.readouterr().out.encode())
    assert got.filter(pl.col("well") == "D04")["n_missing"].item() == 1

    assert main(["query", "plate_summary", "--store", st, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["n_wells_excluded"] == 1

    assert main(["query", "missing_frames", "--store", st]) == 2
    assert "needs parameter(s) ['plate']" in capsys.readouterr().err

    sql = "SELECT count(*) AS n FROM images WHERE plate = $plate AND status = 'ok'"
    assert main(["sql", sql, "--store", st, "--param", "plate=P_cli", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "47"]

    assert main(["ingest", str(p.plate_dir), "--store", st]) == 0  # no plate map now: doses become null
    assert "warning: no plate map" in capsys.readouterr().out
    assert main(["ingest", str(tmp_path / "nope"), "--store", st]) == 2
    assert "not a folder" in capsys.readouterr().err
