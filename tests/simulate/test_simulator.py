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

from lnpstore.instrument import cvmeta
from lnpstore.instrument.layout import CHANNELS, image_filename, parse_image_name
from lnpstore.simulate import divisions
from lnpstore.simulate.simulator import (
    SimulatedPlate,
    SimulationSettings,
    load_truth,
    simulate_plate,
)
from lnpstore.store.errors import ExecutionError


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


#: A division rate far above HepG2's, so that a 2 h film of the tiny plate holds many divisions.
FAST_DIVISION_PER_H = 0.5


@pytest.fixture(scope="module")
def dividing(tmp_path_factory: pytest.TempPathFactory) -> SimulatedPlate:
    """The tiny plate over 12 frames with fast divisions (~60 % of the cells split)."""
    s = _short(n_frames=12, division_rate_per_h=FAST_DIVISION_PER_H)
    return simulate_plate(tmp_path_factory.mktemp("dividing"), s, show_progress=False)


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
    # every cell has one row per frame of its life: 72 for a cell that does not divide (or is a daughter
    # born on frame 1 -- none are), the frames up to its division or from its birth otherwise
    life = truth["lineage"].join(cells.select("well", "field", "true_id"), on=["well", "field", "true_id"])
    assert tracks.height == int((life["last_frame"] - life["first_frame"] + 1).sum())
    assert (life.filter(~pl.col("divides") & pl.col("parent_id").is_null())["last_frame"] == 72).all()
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


def test_cli_simulate(tmp_path: Path) -> None:
    from lnpstore.cli.main import main

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
    assert SimulationSettings.load(tmp_path / "truth" / "settings.json").division_rate_per_h > 0  # HepG2's
    assert main(["simulate", str(tmp_path), "--preset", "tiny", "--fault", "nonsense"]) == 2
    rc = main(
        ["simulate", str(tmp_path / "z"), "--preset", "tiny", "--frames", "2", "--division-rate-per-h", "0"]
    )
    assert (
        rc == 0
        and SimulationSettings.load(tmp_path / "z" / "truth" / "settings.json").division_rate_per_h == 0
    )
    assert main(["simulate", str(tmp_path / "bad"), "--preset", "tiny", "--division-rate-per-h", "7"]) == 2


# -- divisions ---------------------------------------------------------------------------------------------
def test_divisions_happen_and_the_lineage_is_consistent(dividing: SimulatedPlate) -> None:
    truth = load_truth(dividing.truth_dir)
    lin, tracks = truth["lineage"], truth["tracks"]
    key = ["well", "field"]
    parents = lin.filter(pl.col("divides"))
    assert parents.height >= 6
    daughters = lin.filter(pl.col("parent_id").is_not_null()).join(
        lin.select(
            *key,
            pl.col("true_id").alias("parent_id"),
            pl.col("last_frame").alias("p_last"),
            pl.col("divides").alias("p_divides"),
            pl.col("generation").alias("p_generation"),
            pl.col("lineage_id").alias("p_lineage"),
        ),
        on=[*key, "parent_id"],
    )
    assert daughters.height >= 10
    assert daughters["p_divides"].all()
    assert (daughters["first_frame"] == daughters["p_last"] + 1).all()  # born the frame after
    assert (daughters["generation"] == daughters["p_generation"] + 1).all()
    assert (daughters["lineage_id"] == daughters["p_lineage"]).all()
    per_parent = daughters.group_by(*key, "parent_id").agg(pl.len().alias("n"), pl.col("mask_value"))
    assert per_parent["n"].max() == 2
    for pair in per_parent.filter(pl.col("n") == 2)["mask_value"].to_list():
        assert abs(pair[0] - pair[1]) == 1  # born together
    # two daughters per parent; only at the edge may one of them never show in the image
    last_in_bounds = tracks.join(parents.select(*key, "true_id", "last_frame"), on=[*key, "true_id"]).filter(
        (pl.col("frame") == pl.col("last_frame")) & pl.col("in_bounds")
    )
    inside = per_parent.join(
        last_in_bounds.select(*key, pl.col("true_id").alias("parent_id")), on=[*key, "parent_id"]
    )
    assert inside.height >= 6 and (inside["n"] == 2).all()
    # a cell that divides lives until its last frame (in tracks.parquet too), then has no outcome
    span = tracks.group_by(*key, "true_id").agg(
        pl.col("frame").min().alias("t0"), pl.col("frame").max().alias("t1"), pl.len().alias("n")
    )
    both = span.join(lin.filter("in_cells"), on=[*key, "true_id"])
    assert both.height == span.height
    assert (both["t0"] == both["first_frame"]).all() and (both["t1"] == both["last_frame"]).all()
    assert (both["n"] == both["t1"] - both["t0"] + 1).all()
    cells = truth["cells"].join(lin, on=[*key, "true_id"])
    assert cells.filter(pl.col("divides"))["gfp_sum_true"].is_nan().all()
    assert not cells.filter(~pl.col("divides"))["gfp_sum_true"].is_nan().any()
    # founders are the first ids; generation 0 has no parent
    assert lin.filter(pl.col("generation") == 0)["parent_id"].is_null().all()


def test_daughters_inherit_the_parents_latents_with_noise(dividing: SimulatedPlate) -> None:
    truth = load_truth(dividing.truth_dir)
    key = ["well", "field"]
    cells = truth["cells"].join(truth["lineage"].select(*key, "true_id", "parent_id"), on=[*key, "true_id"])
    latents = ["uptake_propensity", "uptake_tau_frames", "perinuclear_rate_per_frame", "cs_level"]
    pairs = cells.filter(pl.col("parent_id").is_not_null()).join(
        cells.select(
            *key, pl.col("true_id").alias("parent_id"), pl.all().exclude(*key, "true_id", "parent_id")
        ).rename(lambda c: c if c in (*key, "parent_id") else f"p_{c}"),
        on=[*key, "parent_id"],
    )
    assert pairs.height >= 8
    for col in latents:
        log_ratio = np.log(pairs[col].to_numpy() / pairs[f"p_{col}"].to_numpy())
        assert np.abs(log_ratio).max() < 0.5, col  # lognormal sd 0.1: within 5 sd
        assert np.abs(log_ratio).max() > 0, col  # with noise, not copies
    assert (pairs["expressing"] == pairs["p_expressing"]).all()  # the fate is the parent's
    assert np.allclose(pairs["eta"], pairs["p_eta"]) and np.allclose(
        pairs["oracle_prob"], pairs["p_oracle_prob"]
    )
    area_ratio = (pairs["radius_um"] / pairs["p_radius_um"]).to_numpy() ** 2
    assert 0.35 < area_ratio.min() and area_ratio.max() < 0.7  # about half the area each
    # the particles are shared: the two daughters hold about what the parent had
    sums = pairs.group_by(*key, "parent_id").agg(
        pl.col("n_lnp_particles").sum(), pl.col("p_n_lnp_particles").first(), pl.len().alias("n")
    )
    two = sums.filter(pl.col("n") == 2)
    assert (two["n_lnp_particles"] >= two["p_n_lnp_particles"]).all()


def test_a_dividing_cell_rounds_up_brightens_then_splits(dividing: SimulatedPlate) -> None:
    from lnpstore.simulate.truth import true_label_frames

    truth = load_truth(dividing.truth_dir)
    tracks = truth["tracks"]
    checked = 0
    for well in ("C03", "E03", "G03"):
        lin = truth["lineage"].filter((pl.col("well") == well) & pl.col("divides") & pl.col("in_cells"))
        labels = list(true_label_frames(dividing.truth_dir, well))
        for tid, last in lin.filter(pl.col("last_frame") >= 6).select("true_id", "last_frame").iter_rows():
            tr = tracks.filter((pl.col("well") == well) & (pl.col("true_id") == tid)).sort("frame")
            area = dict(zip(tr["frame"], tr["area_px"], strict=True))
            assert area[last] < 0.65 * area[last - 5]  # rounded: ~half the footprint
            before, now = labels[last - 6] == tid, labels[last - 1] == tid
            if before.sum() < 500 or now.sum() < 300:
                continue  # mostly outside the image
            cs_before = _img(dividing, well, last - 5, "CS")[before].mean()
            cs_now = _img(dividing, well, last, "CS")[now].mean()
            assert cs_now > 1.2 * cs_before, (well, tid)
            checked += 1
    assert checked >= 2


def test_division_plate_is_deterministic_per_seed_and_field(tmp_path: Path) -> None:
    kw = dict(n_frames=6, division_rate_per_h=FAST_DIVISION_PER_H)
    a = simulate_plate(tmp_path / "a", _short(3, **kw), show_progress=False)
    b = simulate_plate(tmp_path / "b", _short(3, **kw), show_progress=False)
    c = simulate_plate(tmp_path / "c", _short(4, **kw), show_progress=False)
    d = simulate_plate(tmp_path / "d", _short(3, rows=("E",), doses_ng=(31.6,), **kw), show_progress=False)
    name = image_filename(a.settings.plate, "E03", 6, 1, CHANNELS["CS"])
    assert (a.plate_dir / name).read_bytes() == (b.plate_dir / name).read_bytes()
    assert (a.plate_dir / name).read_bytes() != (c.plate_dir / name).read_bytes()
    assert (a.plate_dir / name).read_bytes() == (d.plate_dir / name).read_bytes()
    for which in ("lineage", "tracks", "label_tracks"):
        assert load_truth(a.truth_dir)[which].equals(load_truth(b.truth_dir)[which]), which
    lab = "labels/E03_F001.tif"
    assert (a.truth_dir / lab).read_bytes() == (d.truth_dir / lab).read_bytes()
    assert load_truth(a.truth_dir)["lineage"]["divides"].sum() > 0


def test_rate_zero_never_touches_the_division_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate 0 draws nothing from the division stream: plates keep the bytes they had before divisions."""

    class Untouchable:
        def __getattr__(self, name: str) -> None:
            raise AssertionError(f"the division stream was used ({name}) at rate 0")

    monkeypatch.setattr(divisions, "division_rng", lambda *a: Untouchable())
    plate = simulate_plate(tmp_path / "zero", _short(5, division_rate_per_h=0.0), show_progress=False)
    assert load_truth(plate.truth_dir)["lineage"]["parent_id"].is_null().all()
    with pytest.raises(ExecutionError, match="division stream was used") as err:  # the field's job failed
        simulate_plate(tmp_path / "fast", _short(5, division_rate_per_h=0.1), show_progress=False)
    assert isinstance(err.value.__cause__, AssertionError)


def test_divisions_that_do_not_happen_change_no_byte(tmp_path: Path) -> None:
    """A rate so low that no cell divides in the film draws its stream but writes the rate-0 plate."""
    zero = simulate_plate(
        tmp_path / "zero", _short(6, n_frames=5, division_rate_per_h=0.0), show_progress=False
    )
    rare = simulate_plate(
        tmp_path / "rare", _short(6, n_frames=5, division_rate_per_h=1e-9), show_progress=False
    )
    assert not load_truth(rare.truth_dir)["lineage"]["divides"].any()
    names = sorted(p.name for p in zero.plate_dir.iterdir())
    assert len(names) == 3 * 5 * 4 + 2
    for name in names:
        assert (zero.plate_dir / name).read_bytes() == (rare.plate_dir / name).read_bytes(), name
    for name in ("cells.parquet", "tracks.parquet", "lineage.parquet", "label_tracks.parquet"):
        assert (zero.truth_dir / name).read_bytes() == (rare.truth_dir / name).read_bytes(), name
