"""Damage a manifest's size check cannot see is still loud (issue 14's fault injection found these)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl
import pytest
from _fault_catalog import wells_rows
from _rows import one_row

from lnpstore.store import schema as S
from lnpstore.store.core import Store
from lnpstore.store.errors import StoreDamaged


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.create(tmp_path / "store")
    s.write("wells", wells_rows("P1", ["C03", "C04"]))
    return s


def test_junk_of_the_manifests_size_is_damage_naming_the_file(store: Store) -> None:
    """Overwritten with junk of the same size, a file passes the manifest's size check: the read must
    still name it (was a raw polars ComputeError traceback in `lnpstore info`)."""
    (f,) = store.files("wells")
    size = f.stat().st_size
    f.unlink()
    f.write_bytes(os.urandom(size))
    with pytest.raises(StoreDamaged, match=f"{f}.*unreadable") as exc:
        store.read("wells")
    assert "lnpstore check" in str(exc.value)
    assert store.exists("wells", plate="P1") is False  # a stage redoes that work
    assert any(p["file"] == str(f) for p in store.check())


def test_check_names_a_missing_label_movie(store: Store) -> None:
    movie = store.root / "labels" / "P1" / "C03" / "f001.tif"
    movie.parent.mkdir(parents=True)
    movie.write_bytes(b"a movie")
    rows = pl.DataFrame(
        {"plate": ["P1"], "well": ["C03"], "field": [1], "path": ["labels/P1/C03/f001.tif"], "n_frames": [2]}
        | {"height_px": [8], "width_px": [8]},
        schema=S.table("label_images").polars_schema,
    )
    store.write("label_images", rows)
    assert store.check() == []
    movie.unlink()
    (problem,) = store.check()
    assert problem["file"] == str(movie) and "label movie missing" in problem["problem"]
    assert "lnpstore track" in problem["redo"]


def test_a_model_whose_predictions_folder_was_deleted_is_not_done(store: Store) -> None:
    """`rm -r STORE/tables/predictions` takes the manifest with it: the model must be redone, not
    "already in the store" forever (issue 14: train-cnn skipped it, predictions never came back)."""
    mid = "cnn-classify-f0-tNA-0000"
    store.write("models", one_row("models", model_id=mid, kind="cnn", mode="classify"))
    store.write("predictions", one_row("predictions", model_id=mid, kind="cnn", mode="classify"))
    assert store.exists("models", model_id=mid)
    shutil.rmtree(store.table_dir("predictions"))
    assert not store.exists("models", model_id=mid)
