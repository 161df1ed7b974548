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


def test_tracking_interrupted_between_its_writes_resumes_complete(
    pristine: Pristine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill between a well's table writes (here: the label_images write fails) must not leave a
    field that counts as tracked without its label_images row (kill -9 of the benchmark found it:
    tracks were written first, so the resumed run skipped the field and lost the row)."""
    from lnpstore.store.core import Store
    from lnpstore.tracking import track_plate

    store_dir = tmp_path / "store"
    shutil.copytree(pristine.store, store_dir)
    store = Store.open(store_dir)
    plate = store.read("plates")["plate"][0]
    real_write = Store.write

    def killed_at_label_images(self: Store, name: str, df, **kw):  # type: ignore[no-untyped-def]
        if name == "label_images":
            raise KeyboardInterrupt("killed")
        return real_write(self, name, df, **kw)

    monkeypatch.setattr(Store, "write", killed_at_label_images)
    with pytest.raises(KeyboardInterrupt):
        track_plate(store, plate, show_progress=False)
    monkeypatch.setattr(Store, "write", real_write)
    track_plate(Store.open(store_dir), plate, show_progress=False)
    done = Store.open(store_dir)
    fields = set(done.read("tracks").select("well", "field").unique().iter_rows())
    assert fields and fields <= set(done.read("label_images").select("well", "field").iter_rows())
    assert fields <= set(done.read("seeds").select("well", "field").unique().iter_rows())
