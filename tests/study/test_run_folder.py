"""A run folder (``lnpstore run``): one run at a time, no store left by a failed ingest, no stale
temporaries of killed runs (issue 14). Real plate, real processes, real files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lnpstore.cli.main import main
from lnpstore.store import lock
from lnpstore.store.errors import LnpstoreError, PlateMapError, StoreLocked
from lnpstore.study.pipeline import check_disk_for_plate, run_study

HOLDER = """
import sys, time
from lnpstore.store.lock import store_lock
with store_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.fixture(scope="module")
def plate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from lnpstore.simulate import SimulationSettings, simulate_plate

    kw = dict(n_frames=6, field_width_px=96, field_height_px=96, cells_per_field=3, workers=1)
    sim = simulate_plate(
        tmp_path_factory.mktemp("plate") / "p", SimulationSettings.tiny(0, **kw), show_progress=False
    )
    return Path(sim.plate_dir), Path(sim.plate_map)


def _bad_map(tmp_path: Path, good: Path) -> Path:
    bad = tmp_path / "bad_map.csv"
    lines = good.read_text().splitlines()
    well = lines[1].split(",")[0]
    bad.write_text("\n".join([lines[0], f"{well},inf,false", *lines[2:]]) + "\n")
    return bad


def test_a_failed_ingest_leaves_no_run_folder_or_store(tmp_path: Path, plate: tuple[Path, Path]) -> None:
    plate_dir, good = plate
    bad = _bad_map(tmp_path, good)
    new = tmp_path / "new" / "run"
    with pytest.raises(PlateMapError, match="not a finite number"):
        run_study(new, plate_dir=plate_dir, plate_map=bad, weights="random", show_progress=False)
    assert not (tmp_path / "new").exists()  # nor the parent folder the run made

    existing = tmp_path / "existing"
    existing.mkdir()
    rc = main(
        ["run", str(existing), "--plate", str(plate_dir), "--plate-map", str(bad), "--weights", "random"]
    )
    assert rc == 2
    assert existing.is_dir() and not (existing / "store").exists()  # the user's folder stays, no store


def test_a_plate_larger_than_the_free_disk_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    # 9 wells of 16384 x 16384 px x 4 channels x 72 frames: ~1.4 TB of uint16, more than this disk holds
    huge = {"sim_overrides": (("field_width_px", 16384), ("field_height_px", 16384))}
    run = tmp_path / "new" / "run"
    with pytest.raises(LnpstoreError, match=r"not enough disk for the simulated plate in .*run/plate: "):
        run_study(run, overrides=huge, weights="random", show_progress=False)
    assert not (tmp_path / "new").exists()


def test_a_compressed_plate_is_counted_at_half_and_written_compressed(tmp_path: Path) -> None:
    import shutil

    import tifffile

    from lnpstore.study.estimate import sizes_for
    from lnpstore.study.pipeline import COMPRESSED_SHARE, _simulated_plate, _StageTimer, config_for

    # a plate 1.5x the free disk uncompressed (0.75x compressed): refused plain, accepted compressed
    free = shutil.disk_usage(tmp_path).free
    side = 4096
    for _ in range(3):  # the plate's bytes grow with the field's area
        cfg = config_for(
            "demo", overrides={"sim_overrides": (("field_width_px", side), ("field_height_px", side))}
        )
        side = int(side * (1.5 * free / sizes_for(cfg).plate_bytes) ** 0.5)
    assert 1.4 * free < sizes_for(cfg).plate_bytes < 1.6 * free and COMPRESSED_SHARE * 1.6 < 1
    with pytest.raises(LnpstoreError, match="not enough disk"):
        check_disk_for_plate(tmp_path / "plain", cfg)
    check_disk_for_plate(tmp_path / "zlib", cfg.replace(sim_compression="zlib"))

    tiny = config_for("demo", overrides={"sim_preset": "tiny", "sim_compression": "zlib"}).replace(
        sim_overrides=(("n_frames", 2), ("workers", 1))
    )
    plate_dir, _, _ = _simulated_plate(tmp_path / "run", tiny, _StageTimer(), show_progress=False)
    with tifffile.TiffFile(next(plate_dir.glob("*.tif"))) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE


def test_a_second_run_on_one_folder_waits_then_exits_clearly(
    tmp_path: Path,
    plate: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plate_dir, good = plate
    folder = tmp_path / "run"
    folder.mkdir()
    env = {**os.environ, "LNPSTORE_QUIET": "1"}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), "60"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("LNPSTORE_LOCK_TIMEOUT", "1")
        with pytest.raises(StoreLocked, match=f"PID {holder.pid}"):
            run_study(folder, plate_dir=plate_dir, plate_map=good, weights="random", show_progress=False)
        args = [
            "run",
            str(folder),
            "--plate",
            str(plate_dir),
            "--plate-map",
            str(good),
            "--weights",
            "random",
        ]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"PID {holder.pid}" in err and "Traceback" not in err
        assert not (folder / "store").exists()  # the second run did nothing
    finally:
        holder.kill()
        holder.wait()


def test_stale_temporaries_under_the_run_folder_are_removed(tmp_path: Path, plate: tuple[Path, Path]) -> None:
    """Temporaries of a killed run (a dead PID, older than this process) under plate/ and report/ go
    at the next run's start, before anything else (here the ingest then fails); a live one stays."""
    plate_dir, good = plate
    folder = tmp_path / "run"
    old = lock._PROCESS_START - 5
    stale = [
        folder / "plate" / ".tmp-999999-0a1b2c3d-x.tif",
        folder / "report" / ".tmp-999999-0a1b2c3d-r.png.tmp",
    ]
    live = folder / "report" / f".tmp-{os.getpid()}-0a1b2c3d-mine.tmp"
    for p in [*stale, live]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
        os.utime(p, (old, old))
    with pytest.raises(PlateMapError):
        run_study(
            folder,
            plate_dir=plate_dir,
            plate_map=_bad_map(tmp_path, good),
            weights="random",
            show_progress=False,
        )
    assert not any(p.exists() for p in stale)
    assert live.exists()


@pytest.mark.slow  # two small runs of every stage (~2 min on 2 cores); benchmarks/faults.py does 10 kills
def test_a_run_killed_with_sigkill_resumes_identical(tmp_path: Path) -> None:
    """The study run once uninterrupted, then (in the same folder) killed with SIGKILL at a seeded
    random time within its duration and re-run: every table equals the uninterrupted run's, but for
    the columns that are run-specific by nature (``_fault_catalog.RUN_SPECIFIC_COLUMNS``)."""
    from _fault_catalog import kill9, run_study_subprocess, table_contents

    run_dir = tmp_path / "run"
    _, duration = run_study_subprocess(run_dir)
    want = table_contents(run_dir / "store")
    results = kill9(run_dir, want, duration, 1, seed=1)
    assert results[0]["killed"] and results[0]["differences"] == []  # seed 1: at 13 % of the run


def test_the_truth_beside_a_simulated_plate_is_found_and_no_other(
    tmp_path: Path, plate: tuple[Path, Path]
) -> None:
    import shutil

    from lnpstore.study.pipeline import truth_beside

    plate_dir, _ = plate
    assert truth_beside(plate_dir) == plate_dir.parent / "truth"  # `lnpstore simulate OUT`'s layout
    other = tmp_path / "elsewhere" / plate_dir.name
    shutil.copytree(plate_dir, other)
    assert truth_beside(other) is None  # no truth folder beside it: a real plate
    renamed = plate_dir.parent / "Other_Plate"
    renamed.mkdir()
    assert truth_beside(renamed) is None  # a truth folder, but of another plate
    (tmp_path / "elsewhere" / "truth").mkdir()
    (tmp_path / "elsewhere" / "truth" / "settings.json").write_text("{not json")
    assert truth_beside(other) is None  # unreadable: no oracle, a warning
