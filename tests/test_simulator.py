"""Tests of the plate simulator: files, metadata, determinism, realism figures and faults (real TIFFs)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tifffile
from skimage.filters import sobel
from skimage.registration import phase_cross_correlation

from lnpstore import cvmeta
from lnpstore.layout import CHANNELS, image_filename, parse_image_name
from lnpstore.simulator import SimulatedPlate, SimulationSettings, load_truth, simulate_plate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SimulatedPlate:
    """The tiny plate (3 wells x 1 field x 72 frames), written once for the module."""
    return simulate_plate(
        tmp_path_factory.mktemp("tiny"), SimulationSettings.tiny(seed=0), show_progress=False
    )


def _img(plate: SimulatedPlate, well: str, frame: int, channel: str, field: int = 1) -> np.ndarray:
    name = image_filename(plate.settings.plate, well, frame, field, CHANNELS[channel])
    return tifffile.imread(plate.plate_dir / name)


def _short(seed: int = 0, **kw) -> SimulationSettings:
    return SimulationSettings.tiny(seed=seed, n_frames=kw.pop("n_frames", 4), workers=1, **kw)


# -- files and metadata -------------------------------------------------------------------------------
def test_file_names_count_dtype_and_size(tiny: SimulatedPlate) -> None:
    s = tiny.settings
    tifs = sorted(p.name for p in tiny.plate_dir.glob("*.tif"))
    assert len(tifs) == 3 * 1 * 72 * 4
    parsed = [parse_image_name(n) for n in tifs]
    assert all(p is not None and p.plate == s.plate for p in parsed)
    assert {p.well for p in parsed} == {"C03", "E03", "G03"}
    assert {p.channel for p in parsed} == {"GFP", "LNP", "CS", "BF"}
    assert {p.frame for p in parsed} == set(range(1, 73))
    for ch in CHANNELS:
        img = _img(tiny, "E03", 36, ch)
        assert img.dtype == np.uint16 and img.shape == (400, 400)
        assert 90 < np.median(img) < 3000  # camera offset ~100, BF ~2000
    plate_map = pl.read_csv(tiny.plate_map)
    assert plate_map.columns == ["well", "dose_ng", "is_control"]
    assert plate_map.filter(pl.col("is_control"))["well"].to_list() == ["G03"]


def test_metadata_readable_by_cvmeta(tiny: SimulatedPlate) -> None:
    detail = cvmeta.read_measurement_detail(tiny.plate_dir / cvmeta.MRF_NAME)
    assert set(detail.channels) == set(CHANNELS.values())
    for ch in detail.channels.values():
        assert ch.pixel_size_um == pytest.approx(0.325)
        assert (ch.width_px, ch.height_px) == (400, 400)
    assert detail.time_point_count == 72 and detail.field_count == 1
    records = cvmeta.read_measurement_data(tiny.plate_dir / cvmeta.MLF_NAME)
    assert len(records) == 864
    assert all((tiny.plate_dir / r.filename).exists() for r in records)
    c03 = sorted((r for r in records if r.well == "C03" and r.channel == 7), key=lambda r: r.time_point)
    times = [datetime.fromisoformat(r.time) for r in c03]
    gaps_min = {round((b - a).total_seconds() / 60, 3) for a, b in zip(times, times[1:], strict=False)}
    assert gaps_min == {10.0}
    assert all(r.x_um is not None and r.y_um is not None for r in c03)


def test_truth_files_and_columns(tiny: SimulatedPlate) -> None:
    truth = load_truth(tiny.truth_dir)
    cells, tracks = truth["cells"], truth["tracks"]
    for col in (
        "well",
        "field",
        "true_id",
        "radius_um",
        "uptake_propensity",
        "uptake_tau_frames",
        "perinuclear_rate_per_frame",
        "n_lnp_particles",
        "gfp_sum_true",
        "gfp_sum_written",
        "expressing",
        "oracle_prob",
        "oracle_log_gfp",
    ):
        assert col in cells.columns, col
    for col in ("well", "field", "true_id", "frame", "y_px", "x_px", "area_px", "in_bounds"):
        assert col in tracks.columns, col
    assert tracks.height == cells.height * 72
    assert cells.select(pl.col("oracle_prob").is_between(0, 1).all()).item()
    settings = SimulationSettings.load(tiny.truth_dir / "settings.json")
    assert settings == tiny.settings
    # a 15-25 um cell at 0.325 um/px covers ~1700-4700 px^2
    assert 1200 < tracks["area_px"].median() < 5000


# -- determinism ------------------------------------------------------------------------------------------
def test_same_seed_identical_bytes_different_seed_differs(tmp_path: Path) -> None:
    a = simulate_plate(tmp_path / "a", _short(3), show_progress=False)
    b = simulate_plate(tmp_path / "b", _short(3), show_progress=False)
    c = simulate_plate(tmp_path / "c", _short(4), show_progress=False)
    # fields are independent streams: a plate of one well reproduces that well's files
    d = simulate_plate(tmp_path / "d", _short(3, rows=("E",), doses_ng=(31.6,)), show_progress=False)
    for name in [
        image_filename(a.settings.plate, w, 4, 1, CHANNELS[ch]) for w, ch in (("E03", "CS"), ("E03", "LNP"))
    ]:
        assert (a.plate_dir / name).read_bytes() == (b.plate_dir / name).read_bytes()
        assert (a.plate_dir / name).read_bytes() != (c.plate_dir / name).read_bytes()
        assert (a.plate_dir / name).read_bytes() == (d.plate_dir / name).read_bytes()
    assert load_truth(a.truth_dir)["tracks"].equals(load_truth(b.truth_dir)["tracks"])


# -- realism ----------------------------------------------------------------------------------------------
def test_motility_matches_9_plus_minus_5_px_at_scale_1(tiny: SimulatedPlate) -> None:
    tracks = load_truth(tiny.truth_dir)["tracks"].sort("well", "field", "true_id", "frame")
    disp = tracks.with_columns(
        ((pl.col("y_px").diff() ** 2 + pl.col("x_px").diff() ** 2).sqrt())
        .over("well", "field", "true_id")
        .alias("d")
    )["d"].drop_nulls()
    scale = tiny.settings.scale
    assert 8.0 * scale < disp.mean() < 10.0 * scale
    assert 3.5 * scale < disp.std() < 6.5 * scale


def test_dose_ordering_of_lnp_and_gfp(tiny: SimulatedPlate) -> None:
    dose_well = {316.0: "C03", 31.6: "E03", 0.0: "G03"}
    # from the written images: mean LNP signal at frame 30, mean GFP at the last frame
    lnp = {d: float(_img(tiny, w, 30, "LNP").mean()) for d, w in dose_well.items()}
    gfp = {d: float(_img(tiny, w, 72, "GFP").mean()) for d, w in dose_well.items()}
    assert lnp[316.0] > lnp[31.6] > lnp[0.0] > 100.0
    assert gfp[316.0] > gfp[0.0] and gfp[31.6] > gfp[0.0]
    cells = load_truth(tiny.truth_dir)["cells"]
    by_dose = cells.group_by("dose_ng").agg(pl.col("n_lnp_particles").mean(), pl.col("oracle_prob").mean())
    by = {r["dose_ng"]: r for r in by_dose.iter_rows(named=True)}
    assert by[316.0]["n_lnp_particles"] > by[31.6]["n_lnp_particles"] > by[0.0]["n_lnp_particles"] > 0
    assert by[316.0]["oracle_prob"] > by[31.6]["oracle_prob"] > by[0.0]["oracle_prob"] == 0.0


def test_registration_offset_recovered_by_phase_correlation(tiny: SimulatedPlate) -> None:
    reg = json.loads((tiny.truth_dir / "registration.json").read_text())
    truth = np.array([reg["correction_dy_px"], reg["correction_dx_px"]])
    assert np.abs(truth).max() >= 1  # an offset is present
    for well in ("C03", "G03"):
        cs = _img(tiny, well, 1, "CS").astype(float)
        bf = _img(tiny, well, 1, "BF").astype(float)
        shift, _, _ = phase_cross_correlation(sobel(cs), sobel(bf), upsample_factor=4)
        assert np.abs(shift - truth).max() <= 1.0, (well, shift, truth)


def test_controls_never_express_and_stay_below_expressing_cells(tiny: SimulatedPlate) -> None:
    cells = load_truth(tiny.truth_dir)["cells"].filter(pl.col("in_bounds_last"))
    control = cells.filter(pl.col("is_control"))
    expressing = cells.filter(pl.col("expressing"))
    assert control.height >= 3 and expressing.height >= 2
    assert not control["expressing"].any()
    assert control["gfp_sum_written"].max() < expressing["gfp_sum_written"].median()
    assert (expressing["gfp_sum_true"] > control["gfp_sum_true"].max()).mean() >= 0.75


# -- faults ------------------------------------------------------------------------------------------------
def test_faults_produce_what_they_claim(tmp_path: Path) -> None:
    s = _short(n_frames=8, faults=("missing_frames:E03:5-6", "unreadable:C03:3", "empty_field:G03"))
    plate = simulate_plate(tmp_path, s, show_progress=False)
    names = {p.name for p in plate.plate_dir.glob("*.tif")}
    assert len(names) == 3 * 8 * 4 - 2 * 4
    for frame in (5, 6):
        assert not any(f"_E03_T{frame:04d}" in n for n in names)
    records = cvmeta.read_measurement_data(plate.plate_dir / cvmeta.MLF_NAME)
    assert len(records) == len(names) and not any(r.well == "E03" and r.time_point in (5, 6) for r in records)
    bad = plate.plate_dir / image_filename(s.plate, "C03", 3, 1, CHANNELS["CS"])
    assert bad.exists()
    with pytest.raises(Exception):  # noqa: B017 - tifffile raises its own TiffFileError
        tifffile.imread(bad)
    _img(plate, "C03", 3, "BF")  # the other channels of that frame are fine
    cells = load_truth(plate.truth_dir)["cells"]
    assert cells.filter(pl.col("well") == "G03").height == 0
    assert cells.filter(pl.col("well") == "E03").height > 0
    cs_empty = _img(plate, "G03", 1, "CS")
    assert np.percentile(cs_empty, 99.9) < 200  # background + noise only, no stained cells


def test_settings_validation_errors() -> None:
    with pytest.raises(ValueError, match="one dose per row"):
        SimulationSettings(rows=("C", "E"), doses_ng=(316.0,))
    with pytest.raises(ValueError, match="not one of"):
        SimulationSettings(faults=("broken:C03",))
    with pytest.raises(ValueError, match="not on the plate"):
        SimulationSettings(faults=("unreadable:H12",))
    with pytest.raises(ValueError, match="reserved"):
        SimulationSettings(division_rate_per_h=0.1)
    with pytest.raises(ValueError, match="scale"):
        SimulationSettings(scale=0)
    demo = SimulationSettings.demo()
    assert (demo.width_px, demo.height_px, demo.pixel_size_um) == (640, 560, 0.325)
    assert SimulationSettings().n_cells > 50 and (
        SimulationSettings().width_px,
        SimulationSettings().height_px,
    ) == (
        2554,
        2154,
    )


def test_cli_simulate(tmp_path: Path) -> None:
    from lnpstore.cli import main

    rc = main(
        [
            "simulate",
            str(tmp_path),
            "--preset",
            "tiny",
            "--frames",
            "3",
            "--field-size",
            "200x160",
            "--fault",
            "empty_field:E03",
            "--workers",
            "1",
        ]
    )
    assert rc == 0
    img = tifffile.imread(tmp_path / "LNP_Tiny01" / image_filename("LNP_Tiny01", "C03", 3, 1, 9))
    assert img.shape == (160, 200)
    assert main(["simulate", str(tmp_path), "--preset", "tiny", "--fault", "nonsense"]) == 2
