"""Issue 14's faults (a fast, representative subset of ``benchmarks/faults.py``): each injected on a
fresh copy of a tiny simulated plate or its store, the real commands run, and the outcome must be a
clear error, a flagged problem or a correct result: never silent acceptance, never a traceback, and
no table the fault did not touch may lose rows. The catalogue is ``tests/_fault_catalog.py``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _fault_catalog import BAD, Case, Pristine, catalog, cli, make_pristine, probe_label_movie, run_fault

FAULTS = [f for f in catalog(full=False, n_upserts=40) if f.fast]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    return make_pristine(tmp_path_factory.mktemp("pristine"))


def test_the_subset_covers_every_family() -> None:
    assert {f.family for f in FAULTS} == {f.family for f in catalog(full=False)}
    assert len(catalog(full=True)) >= 86


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault_is_loud_and_loses_no_rows(fault, pristine: Pristine, tmp_path: Path) -> None:
    r = run_fault(fault, pristine, tmp_path / "case")
    assert r.outcome not in BAD, f"{r.outcome}: {r.detail}"
    assert not r.rows_lost, f"rows lost: {r.detail}"


def test_a_deleted_label_movie_is_named_by_check_and_tracked_again(
    pristine: Pristine, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(pristine.store, store)
    assert cli("track", store).rc == 0
    case = Case(pristine, tmp_path, pristine.plate_dir, pristine.plate_map, store, "store")
    movie = sorted((store / "labels").rglob("*.tif"))[0]
    case.note["file"] = movie
    movie.unlink()
    v = probe_label_movie(case)
    assert v.outcome == "flagged", v.detail
    assert movie.exists()
