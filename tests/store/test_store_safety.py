"""One writer at a time, manifests of live files, damage that is loud: real processes, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest
from _fault_catalog import (  # the racing writer and the lock holder of the fault benchmark
    HOLDER,
    RACER,
    wells_rows,
)

from lnpstore.store import schema as S
from lnpstore.store.core import CATALOG, MARKER, Store
from lnpstore.store.errors import StoreDamaged, StoreLocked, StoreReadOnly
from lnpstore.store.lock import LOCK_FILE, remove_stale_tmp_tree
from lnpstore.store.manifest import MANIFEST


def _python(code: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "LNPSTORE_QUIET": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True, **kw)


def _images(plate: str, n: int = 3) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "plate": [plate] * n,
            "well": ["C03"] * n,
            "field": [1] * n,
            "frame": list(range(1, n + 1)),
            "channel": ["CS"] * n,
            "channel_number": [7] * n,
            "path": [f"/x/{plate}_{t}.tif" for t in range(n)],
            "status": ["ok"] * n,
            "status_detail": [None] * n,
            "height_px": [8] * n,
            "width_px": [8] * n,
            "dtype": ["uint16"] * n,
            "file_bytes": [100] * n,
            "acquired_at": [None] * n,
            "stage_x_um": [1.0] * n,
            "stage_y_um": [2.0] * n,
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.create(tmp_path / "store")


# -- one writer at a time --------------------------------------------------------------------------
def test_two_processes_racing_upserts_keep_every_row(store: Store) -> None:
    """Two processes upsert 1,000 rows each (250 upserts of 4 rows) into one unpartitioned table at
    the same time. Without the lock, read-modify-write races lost rows (52 of 60 kept)."""
    procs = [_python(RACER, str(store.root), plate, "250", "4") for plate in ("A", "B")]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    got = store.read("wells")
    assert got.height == 2000
    assert dict(got.group_by("plate").len().iter_rows()) == {"A": 1000, "B": 1000}
    live = store.live("wells")
    assert live is not None and sum(e["rows"] for e in live.values()) == 2000


def test_second_writer_times_out_with_a_clear_error(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    holder = _python(HOLDER, str(store.root), "30", stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("LNPSTORE_LOCK_TIMEOUT", "1")
        with pytest.raises(StoreLocked, match=rf"being written by PID {holder.pid} .* gave up after 1 s"):
            store.write("wells", wells_rows("P1", ["C03"]))
        # readers never take the lock
        assert store.read("wells").height == 0
        assert store.sql("SELECT count(*) AS n FROM wells")["n"][0] == 0
    finally:
        holder.kill()
        holder.wait()
    store.write("wells", wells_rows("P1", ["C03"]))  # the lock died with its holder
    assert store.read("wells").height == 1


def test_lock_is_reentrant_within_a_process(store: Store) -> None:
    with store.writing(), store.writing():
        store.write("wells", wells_rows("P1", ["C03"]))
        with store.batch():
            store.write("wells", wells_rows("P1", ["C04"]))
    assert store.read("wells").height == 2
    assert (store.root / LOCK_FILE).exists()


def test_stale_temporaries_of_dead_writers_are_removed(store: Store, tmp_path: Path) -> None:
    stale = store.root / "labels" / ".tmp-999999-abcd-x.tif"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a label movie")
    old = time.time() - 86400
    os.utime(stale, (old, old))
    mine = store.root / f".tmp-{os.getpid()}-abcd-y.tmp"
    mine.write_bytes(b"")
    running = store.root / f".tmp-{os.getppid()}-abcd-z.tmp"  # a writer that still runs
    running.write_bytes(b"")
    os.utime(running, (time.time() - 600, time.time() - 600))
    assert remove_stale_tmp_tree(store.root) == 1
    assert not stale.exists() and mine.exists() and running.exists()
    mine.unlink()
    running.unlink()
    # and a new writing process removes them on its first write
    stale.write_bytes(b"x")
    os.utime(stale, (old, old))
    p = _python(RACER, str(store.root), "A", "1", "1")
    assert p.wait(timeout=120) == 0
    assert not stale.exists()


# -- manifests and damage --------------------------------------------------------------------------
def test_manifest_lists_live_files_with_rows_and_bytes(store: Store) -> None:
    store.write("images", _images("P1"))
    store.write("images", _images("P2", 5))
    doc = json.loads((store.table_dir("images") / MANIFEST).read_text())
    assert doc["files"] == {
        "plate=P1/data.parquet": {
            "rows": 3,
            "bytes": store.partition_path("images", {"plate": "P1"}).stat().st_size,
        },
        "plate=P2/data.parquet": {
            "rows": 5,
            "bytes": store.partition_path("images", {"plate": "P2"}).stat().st_size,
        },
    }
    assert store.delete("images", plate="P1") == 1
    assert list(json.loads((store.table_dir("images") / MANIFEST).read_text())["files"]) == [
        "plate=P2/data.parquet"
    ]
    assert store.summary().filter(pl.col("table") == "images").row(0, named=True) == {
        "table": "images",
        "rows": 5,
        "files": 1,
        "mbytes": round(store.partition_path("images", {"plate": "P2"}).stat().st_size / 1e6, 3),
        "damaged": 0,
    }


def test_a_deleted_partition_is_damage_not_an_empty_result(store: Store) -> None:
    store.write("images", _images("P1"))
    store.write("images", _images("P2"))
    store.write("wells", wells_rows("P1", ["C03"]))
    lost = store.partition_path("images", {"plate": "P2"})
    lost.unlink()
    with pytest.raises(
        StoreDamaged, match=r"table `images` .*plate=P2/data.parquet \(missing\).*lnpstore ingest"
    ):
        store.read("images")
    with pytest.raises(StoreDamaged, match="plate=P2"):
        store.sql("SELECT count(*) FROM images")
    assert store.read("images", plate="P1").height == 3  # the intact partition still reads
    assert store.sql("SELECT count(*) AS n FROM wells")["n"][0] == 1  # other tables are unaffected
    # the stage's skip check sees the partition as not done, and its rewrite repairs the table
    assert not store.exists("images", plate="P2") and store.exists("images", plate="P1")
    store.write("images", _images("P2", 2))
    assert store.read("images").height == 5 and store.damage("images") == {}
    # the plain DuckDB catalog: the damaged table's view raises, the others keep working
    lost.unlink()
    store.refresh_catalog()
    con = duckdb.connect(str(store.root / CATALOG), read_only=True)
    try:
        assert con.sql("SELECT count(*) FROM wells").fetchall() == [(1,)]
        with pytest.raises(duckdb.Error, match="images of store .* is damaged"):
            con.sql("SELECT count(*) FROM images").fetchall()
    finally:
        con.close()


def test_a_truncated_file_is_damage_and_an_upsert_rewrites_it(store: Store) -> None:
    store.write("images", _images("P1"))
    path = store.partition_path("images", {"plate": "P1"})
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    with pytest.raises(StoreDamaged, match=r"size \d+ bytes, the manifest says \d+"):
        store.read("images")
    assert store.summary().filter(pl.col("table") == "images")["damaged"].item() == 1
    store.write("images", _images("P1", 2))  # upsert onto a damaged file: rewritten from the new rows
    assert store.read("images").height == 2


def test_a_model_with_damaged_outputs_is_not_done(store: Store) -> None:
    """train-cnn skips a model when ``exists("models", model_id=...)``: a deleted predictions partition
    of that model must make it redo the model instead of saying "already in the store"."""
    store.write(
        "models",
        pl.DataFrame({"model_id": ["m1"]}).with_columns(
            [pl.lit(None).alias(c) for c in S.table("models").column_names if c != "model_id"]
        ),
    )
    store.write(
        "predictions",
        pl.DataFrame(
            {"model_id": ["m1"], "cell_uid": ["P1|C03|F001|00001"], "frame": [1], "aug": [0]}
        ).with_columns([pl.lit(None).alias(c) for c in ("kind", "mode", "fold", "y_true", "y_pred")]),
    )
    assert store.exists("models", model_id="m1")
    store.files("predictions")[0].unlink()
    assert not store.exists("models", model_id="m1")


def test_a_store_without_manifests_is_migrated_by_the_first_writer(store: Store) -> None:
    store.write("images", _images("P1"))
    store.write("wells", wells_rows("P1", ["C03"]))
    for name in ("images", "wells"):
        (store.table_dir(name) / MANIFEST).unlink()  # as lnpstore <= 0.2 left it
    assert store.live("images") is None and store.read("images").height == 3  # reads from the files
    p = _python(RACER, str(store.root), "B", "1", "1")
    assert p.wait(timeout=120) == 0
    assert sum(e["rows"] for e in store.live("images").values()) == 3
    assert sum(e["rows"] for e in store.live("wells").values()) == 2


def test_a_corrupt_marker_is_a_clear_error(store: Store) -> None:
    (store.root / MARKER).write_text('{"schema_version": "1.1", "crea')
    with pytest.raises(StoreDamaged, match=r"lnpstore.json is corrupt .*lnpstore check .* --repair"):
        Store.open(store.root)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_read_only_store_reads_and_refuses_writes_clearly(store: Store) -> None:
    store.write("wells", wells_rows("P1", ["C03"]))
    os.chmod(store.root, 0o555)
    try:
        ro = Store.open(store.root)
        assert ro.read("wells").height == 1
        assert ro.sql("SELECT count(*) AS n FROM wells")["n"][0] == 1
        with pytest.raises(StoreReadOnly, match="read-only"):
            ro.write("wells", wells_rows("P1", ["C04"]))
    finally:
        os.chmod(store.root, 0o755)


def test_repair_drops_damaged_partitions_and_the_models_they_belong_to(store: Store) -> None:
    """Stages that list their finished work by reading a table (tracking reads `tracks`) cannot skip
    around a damaged file: `repair` drops it (and the model whose output it was), so a re-run redoes it."""
    models = pl.DataFrame({"model_id": ["m1", "m2"]}).with_columns(
        [pl.lit(None).alias(c) for c in S.table("models").column_names if c != "model_id"]
    )
    store.write("models", models)
    for mid in ("m1", "m2"):
        store.write(
            "predictions",
            pl.DataFrame(
                {"model_id": [mid], "cell_uid": ["P1|C03|F001|00001"], "frame": [1], "aug": [0]}
            ).with_columns([pl.lit(None).alias(c) for c in ("kind", "mode", "fold", "y_true", "y_pred")]),
        )
    store.write("images", _images("P1"))
    store.write("images", _images("P2"))
    store.partition_path("predictions", {"model_id": "m1"}).unlink()
    images_p2 = store.partition_path("images", {"plate": "P2"})
    images_p2.write_bytes(images_p2.read_bytes()[:-100])  # truncated
    assert {p["table"] for p in store.check()} == {"predictions", "images"}
    done = store.repair()
    assert any("predictions" in d and "missing" in d for d in done)
    assert any("images" in d and "plate=P2" in d for d in done)
    assert any("['m1'] dropped" in d for d in done)
    assert store.check() == []
    assert store.read("models")["model_id"].to_list() == ["m2"]  # m1 is redone by its training stage
    assert store.read("images")["plate"].unique().to_list() == ["P1"] and not images_p2.exists()
    assert not store.exists("images", plate="P2") and store.exists("models", model_id="m2")
