"""Faults injected into tiny plates (issue #14, ingest): stray files outside the mlf, float images,
upper-case names, non-finite doses, a failed ingest into a new store, a re-ingest that excludes a
well with downstream rows, and label-movie temporaries left by a killed writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tifffile
from _plates import TABLES, make_plate, read_tables, simulate
from polars.testing import assert_frame_equal

from lnpstore.cli.main import main
from lnpstore.instrument.ingest import ingest_plate, ingest_to_store
from lnpstore.instrument.layout import image_filename
from lnpstore.store.core import Store
from lnpstore.store.errors import IngestError, PlateMapError
from lnpstore.tracking.labels import LabelMovie, LabelMovieWriter, remove_label_tmp_of_dead_writers

MLF = "MeasurementData.mlf"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.create(tmp_path / "store")


def _ok(images: pl.DataFrame) -> int:
    return images.filter(pl.col("status") == "ok").height


# -- files outside the mlf's grid ------------------------------------------------------------------
def test_stray_files_outside_the_mlf_are_extra_and_exclude_no_well(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    p = make_plate(tmp_path)
    clean = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    before = read_tables(store)
    img = np.full((24, 32), 100, np.uint16)
    strays = {
        image_filename(p.plate, "C03", 1, 1, 3): f"channel C03 is not in {MLF} (channels C07, C09)",
        image_filename(p.plate, "C04", 7, 2, 7): f"frame 7 is beyond the last frame of {MLF} (3)",
        image_filename(p.plate, "D03", 2, 3, 9): f"field 3 is not in {MLF} (fields 1-2)",
        image_filename(p.plate, "H12", 1, 1, 7): f"well H12 is not in {MLF} (wells C03, C04, D03, D04)",
    }
    for name in strays:
        tifffile.imwrite(p.plate_dir / name, img)
    junk = image_filename(p.plate, "D04", 1, 1, 8)  # not even a TIFF
    (p.plate_dir / junk).write_bytes(b"junk")
    strays[junk] = f"channel C08 is not in {MLF} (channels C07, C09)"

    r = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    assert r.extra == strays
    assert r.excluded_wells == {} and r.status_counts["ok"] == 48 and r.n_images == 48
    assert (r.n_wells, r.n_fields, r.n_frames, r.channels) == (4, 2, 3, {"CS": 7, "BF": 9})
    # the stored tables are the clean plate's: nothing rewritten, same data version
    assert not r.written and r.data_version == clean.data_version
    for t in TABLES:
        assert_frame_equal(store.read(t), before[t])
    text = r.summary()
    assert "extra files (5): outside the grid" in text and "no well excluded" in text
    assert f"    {junk}: channel C08 is not in {MLF}" in text and "excluded wells: none" in text
    assert f"grid: {MLF} (48 images listed)" in text

    assert (
        main(["ingest", str(p.plate_dir), "--store", str(store.root), "--plate-map", str(p.plate_map)]) == 0
    )
    out = capsys.readouterr().out
    assert "extra files (5)" in out and f"{image_filename(p.plate, 'C04', 7, 2, 7)}: frame 7 is beyond" in out


def test_frames_beyond_expected_frames_are_extra(tmp_path: Path, store: Store) -> None:
    p = make_plate(tmp_path)
    r = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, expected_frames=2, show_progress=False)
    assert r.n_frames == 2 and r.status_counts["ok"] == 32 and r.excluded_wells == {}
    assert len(r.extra) == 16
    assert set(r.extra.values()) == {"frame 3 is beyond expected_frames=2 (2)"}
    assert r.grid_source.endswith("cut to frames 1-2 (expected_frames)")
    assert store.read("images")["frame"].max() == 2


def test_without_mlf_the_grid_is_every_channel_seen_and_the_report_says_so(
    tmp_path: Path, store: Store
) -> None:
    p = make_plate(tmp_path)
    (p.plate_dir / MLF).unlink()
    tifffile.imwrite(p.plate_dir / image_filename(p.plate, "C03", 1, 1, 3), np.zeros((24, 32), np.uint16))
    r = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    # today's behaviour without the instrument's list: C03 joins the grid and its gaps exclude every well
    assert r.channels == {"C03": 3, "CS": 7, "BF": 9} and r.extra == {}
    assert r.status_counts["unknown_channel"] == 1 and r.status_counts["missing"] == 23
    assert len(r.excluded_wells) == 4
    assert r.grid_source.startswith(f"the file names (no {MLF}): every well, field and channel seen")
    assert f"grid: the file names (no {MLF})" in r.summary()


# -- pixel types -----------------------------------------------------------------------------------
def test_a_float_image_is_wrong_dtype_and_excludes_its_well(tmp_path: Path, store: Store) -> None:
    p = make_plate(tmp_path)
    name = image_filename(p.plate, "D03", 2, 1, 7)
    rng = np.random.default_rng(1)
    tifffile.imwrite(p.plate_dir / name, rng.random((24, 32), dtype=np.float32))  # 0..1, as an export makes
    r = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    assert r.status_counts["wrong_dtype"] == 1 and r.status_counts["ok"] == 47
    assert r.excluded_wells == {"D03": "wrong_dtype (float32): 1 image(s), frame(s) 2 (field(s) 1)"}
    row = store.read("images").filter(well="D03", field=1, frame=2, channel="CS").row(0, named=True)
    assert (row["status"], row["dtype"]) == ("wrong_dtype", "float32")
    assert row["status_detail"].startswith(f"{name}: pixels are float32, the instrument writes uint16")
    assert "Hint: re-export it as a 16-bit TIFF" in row["status_detail"]
    assert f"first wrong_dtype: {name}: pixels are float32" in r.summary()
    assert store.read("wells").filter(well="D03")["excluded"].item()


def test_a_plate_of_float_images_is_refused_and_nothing_is_written(tmp_path: Path, store: Store) -> None:
    p = make_plate(tmp_path, wells=("C03",), n_fields=1, n_frames=2)
    for f in sorted(p.plate_dir.glob("*.tif")):
        tifffile.imwrite(f, tifffile.imread(f).astype(np.float32) / 4000)
    with pytest.raises(IngestError) as e:
        ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    msg = str(e.value)
    assert "every readable image (4) has pixel type float32, not the instrument's uint16" in msg
    assert image_filename(p.plate, "C03", 1, 1, 7) in msg and "16-bit TIFFs" in msg
    assert msg.endswith("nothing was written")
    assert all(store.read(t).height == 0 for t in TABLES)


def test_pixel_type_follows_the_mrf_bit_depth(tmp_path: Path, store: Store) -> None:
    p = make_plate(tmp_path, wells=("C03", "C04"), n_fields=1, n_frames=2)
    name = image_filename(p.plate, "C04", 2, 1, 9)
    tifffile.imwrite(p.plate_dir / name, np.zeros((24, 32), np.uint8))  # an 8-bit copy in a 16-bit channel
    r = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    assert r.excluded_wells == {"C04": "wrong_dtype (uint8): 1 image(s), frame(s) 2 (field(s) 1)"}
    detail = store.read("images").filter(status="wrong_dtype")["status_detail"].item()
    assert (
        "pixels are uint8, the instrument writes uint16 (MeasurementDetail.mrf channel C09: 16-bit)" in detail
    )
    # without an mrf both instrument types are accepted
    (p.plate_dir / "MeasurementDetail.mrf").unlink()
    r = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, pixel_size_um=0.65, show_progress=False)
    assert r.excluded_wells == {} and r.status_counts["ok"] == 8


# -- file names ------------------------------------------------------------------------------------
def test_upper_case_file_names_are_found(tmp_path: Path, store: Store) -> None:
    p = make_plate(tmp_path, wells=("C03", "C04"), n_fields=1, n_frames=2)
    a = p.plate_dir / image_filename(p.plate, "C03", 2, 1, 7)
    a.rename(a.with_suffix(".TIF"))
    b = p.plate_dir / image_filename(p.plate, "C04", 1, 1, 9)
    b.rename(b.with_name(b.name.upper()))
    r = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    assert r.plate == p.plate and r.excluded_wells == {} and r.status_counts["ok"] == 8
    paths = store.read("images")["path"].to_list()
    assert (
        str(a.with_suffix(".TIF").resolve()) in paths and str(b.with_name(b.name.upper()).resolve()) in paths
    )


# -- plate maps ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999"])
def test_non_finite_doses_are_refused(tmp_path: Path, store: Store, value: str) -> None:
    p = make_plate(tmp_path)
    pm = tmp_path / "bad_map.csv"
    pm.write_text(f"well,dose_ng\nC03,0\nC04,{value}\nD03,10\nD04,20\n")
    want = {"inf": "inf", "-inf": "-inf", "nan": "nan", "1e999": "inf"}[value]
    with pytest.raises(PlateMapError) as e:
        ingest_plate(store, p.plate_dir, plate_map=pm, show_progress=False)
    assert str(e.value).startswith(
        f"plate map {pm}: column `dose_ng` is not a finite number for well(s) C04 ({want})"
    )
    assert all(store.read(t).height == 0 for t in TABLES)


def test_non_finite_dose_in_a_dataframe_plate_map(tmp_path: Path, store: Store) -> None:
    p = make_plate(tmp_path, wells=("C03", "C04"))
    pm = pl.DataFrame({"well": ["C03", "C04"], "dose_ng": [float("inf"), float("nan")]})
    with pytest.raises(
        PlateMapError, match=r"plate map \(DataFrame\): column `dose_ng` .* C03 \(inf\), C04 \(nan\)"
    ):
        ingest_plate(store, p.plate_dir, plate_map=pm, show_progress=False)


# -- a failed ingest leaves no store ---------------------------------------------------------------
def test_a_failed_ingest_leaves_no_new_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = make_plate(tmp_path / "plates")
    bad = tmp_path / "bad_map.csv"
    bad.write_text("well,dose_ng\nC03,0\nC04,inf\nD03,1\nD04,2\n")
    new = tmp_path / "new" / "deeper" / "store"
    assert main(["ingest", str(p.plate_dir), "--store", str(new), "--plate-map", str(bad)]) == 2
    assert "not a finite number for well(s) C04 (inf)" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # nor the parent folders it made

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PlateMapError):
        ingest_to_store(empty, p.plate_dir, plate_map=bad, show_progress=False)
    assert empty.is_dir() and list(empty.iterdir()) == []  # a folder the user made stays, empty

    good = tmp_path / "good"
    assert main(["ingest", str(p.plate_dir), "--store", str(good), "--plate-map", str(p.plate_map)]) == 0
    before = read_tables(Store.open(good))
    assert main(["ingest", str(p.plate_dir), "--store", str(good), "--plate-map", str(bad)]) == 2
    after = read_tables(Store.open(good))  # an existing store stays as it was
    for t in TABLES:
        assert_frame_equal(after[t], before[t])


# -- a re-ingest that excludes a well --------------------------------------------------------------
def _run_stages(store: Store, plate: str):
    """Track, register, build cells and crop (the real stages, on the tiny plate)."""
    from lnpstore.models.extractor import extract_features

    from lnpstore.study.crops import CropSettings, crop_plate
    from lnpstore.study.registration import RegistrationSettings, register_plate
    from lnpstore.study.targets import build_cells
    from lnpstore.tracking import track_plate

    report = track_plate(store, plate, show_progress=False)
    register_plate(store, plate, settings=RegistrationSettings(frames=(1,)))
    build_cells(store, plate, t_in=3, n_folds=2)
    crop_plate(store, plate, settings=CropSettings(t_in=3))
    extract_features(store, weights="random", n_augs=1, batch_size=16, show_progress=False)
    return report


DOWNSTREAM = ("registration", "seeds", "tracks", "label_images", "cells", "crops", "features")
PER_FIELD = ("seeds", "tracks", "label_images", "cells")  # the rest is made with the plate's registration


@pytest.mark.slow  # the real stages three times (track, register, cells, crops, random-weight features)
def test_reingest_that_excludes_a_well_drops_its_downstream_rows(tmp_path: Path, store: Store) -> None:
    p = simulate(
        tmp_path / "sim", field_width_px=256, field_height_px=256, cells_per_field=12, columns=(3, 4)
    )
    wells = ["C03", "C04", "E03", "E04", "G03", "G04"]
    ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    _run_stages(store, p.plate)
    before = {t: store.read(t) for t in DOWNSTREAM}
    for t in DOWNSTREAM:
        assert sorted(before[t]["well"].unique()) == wells, t
    movie = store.root / before["label_images"].filter(well="E03")["path"].item()
    assert movie.is_file()

    (p.plate_dir / image_filename(p.plate, "E03", 3, 1, 7)).unlink()  # E03 now lacks a frame
    r = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    assert r.written and list(r.excluded_wells) == ["E03"]
    # E03's rows go; its field was in the plate's BF offset, so registration, crops and features go whole
    assert r.dropped_downstream == {t: ["E03"] for t in PER_FIELD} | {
        t: sorted(before[t]["well"].unique()) for t in ("registration", "crops", "features")
    }
    assert (
        "removed the downstream rows of excluded well(s) E03 from seeds, tracks, label_images, cells; and the "
        "plate's registration, crops, features (estimated with them)" in r.summary()
    )
    for t in PER_FIELD:  # E03's rows are gone, the others' untouched
        key = store_key(t)
        assert_frame_equal(store.read(t).sort(key), before[t].filter(pl.col("well") != "E03").sort(key))
    assert all(store.read(t).height == 0 for t in ("registration", "crops", "features"))
    assert not movie.exists()

    # the stages skip the excluded well, redo what went, and end as a fresh store that never had E03
    report = _run_stages(store, p.plate)
    assert (report.fields_excluded, report.fields_skipped, report.fields_tracked) == (1, 5, 0)
    again = ingest_plate(store, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    assert not again.written and again.dropped_downstream == {}
    fresh = Store.create(tmp_path / "fresh")
    ingest_plate(fresh, p.plate_dir, plate_map=p.plate_map, show_progress=False)
    _run_stages(fresh, p.plate)
    for t in DOWNSTREAM:
        key = store_key(t)
        assert_frame_equal(store.read(t).sort(key), fresh.read(t).sort(key))  # (label paths: relative)


def store_key(table: str) -> list[str]:
    from lnpstore.store import schema as S

    return list(S.table(table).key)


# -- label movies left half-written by a killed writer ---------------------------------------------
def test_label_movie_temporaries_of_a_killed_writer_are_removed_by_the_next(tmp_path: Path) -> None:
    movie = tmp_path / "labels" / "P" / "C03" / "f001.tif"
    script = (
        "import os, signal, sys, numpy as np\n"
        "from lnpstore.tracking.labels import LabelMovieWriter\n"
        "w = LabelMovieWriter(sys.argv[1])\n"
        "w.write(np.ones((8, 8), np.uint16))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(movie)], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL
    left = sorted(p.name for p in movie.parent.iterdir())
    assert left and all(n.startswith(".tmp-") and n.endswith(".tif.tif.pages") for n in left), left
    assert not movie.exists()
    # a live writer's temporary (this process's) is kept; the dead one's goes, whatever its age
    mine = movie.parent / f".tmp-{os.getpid()}-0000-f002.tif.tif.pages"
    mine.write_bytes(b"")
    with LabelMovieWriter(movie) as w:
        w.write(np.full((8, 8), 3, np.uint16))
    names = sorted(p.name for p in movie.parent.iterdir())
    assert names == [mine.name, "f001.tif"]
    assert LabelMovie(movie).to_array().tolist() == [[[3] * 8] * 8]
    assert remove_label_tmp_of_dead_writers(movie.parent) == 0 and mine.exists()
