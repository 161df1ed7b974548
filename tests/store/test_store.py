"""The store: schema validation, atomic writes, SQL API and what plain DuckDB / polars see."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from lnpstore.store import schema as S
from lnpstore.store.core import CATALOG, Store, validate
from lnpstore.store.errors import QueryError, SchemaError, StoreError


def _wells(plate: str = "P1", wells: tuple[str, ...] = ("C03", "C04"), dose_ng: float = 1.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "plate": [plate] * len(wells),
            "well": list(wells),
            "row": [w[0] for w in wells],
            "column": [int(w[1:]) for w in wells],
            "dose_ng": [dose_ng] * len(wells),
            "is_control": [False] * len(wells),
            "n_fields": [2] * len(wells),
            "n_frames_expected": [5] * len(wells),
            "n_images_ok": [40] * len(wells),
            "n_problems": [0] * len(wells),
            "excluded": [False] * len(wells),
            "exclude_reason": [None] * len(wells),
        }
    )


def _images(plate: str, n_frames: int = 3) -> pl.DataFrame:
    rows = [
        {
            "plate": plate,
            "well": "C03",
            "field": 1,
            "frame": t,
            "channel": "CS",
            "channel_number": 7,
            "path": f"/x/{plate}_{t}.tif",
            "status": "ok",
            "status_detail": None,
            "height_px": 8,
            "width_px": 8,
            "dtype": "uint16",
            "file_bytes": 100,
            "acquired_at": None,
            "stage_x_um": 1.0,
            "stage_y_um": 2.0,
        }
        for t in range(1, n_frames + 1)
    ]
    return pl.DataFrame(rows)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.create(tmp_path / "store")


# -- life cycle ------------------------------------------------------------------------------------
def test_create_open_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not an lnpstore store"):
        Store.open(tmp_path)
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(StoreError, match="not empty"):
        Store.create(tmp_path)
    s = Store.create(tmp_path / "s")
    with pytest.raises(StoreError, match="already"):
        Store.create(tmp_path / "s", exist_ok=False)
    assert Store.open(tmp_path / "s").root == s.root


# -- schema validation -----------------------------------------------------------------------------
def test_validation_missing_column(store: Store) -> None:
    with pytest.raises(SchemaError, match=r"table `wells`: missing column\(s\) \['dose_ng'\]"):
        store.write("wells", _wells().drop("dose_ng"))


def test_validation_unknown_column(store: Store) -> None:
    with pytest.raises(SchemaError, match=r"unknown column\(s\) \['colour'\]"):
        store.write("wells", _wells().with_columns(colour=pl.lit("red")))


def test_validation_bad_type(store: Store) -> None:
    df = _wells().with_columns(dose_ng=pl.lit("a lot"))
    with pytest.raises(SchemaError, match="column `dose_ng`: cannot convert String to Float64"):
        store.write("wells", df)


def test_validation_casts_compatible_types() -> None:
    out = validate("wells", _wells().with_columns(pl.col("column").cast(pl.Int64)))
    assert out.schema == S.table("wells").polars_schema


def test_validation_null_key(store: Store) -> None:
    df = _wells().with_columns(well=pl.Series([None, "C04"], dtype=pl.String))
    with pytest.raises(SchemaError, match=r"column `well`: 1 null value\(s\) in a non-nullable column"):
        store.write("wells", df)


def test_validation_duplicate_key(store: Store) -> None:
    with pytest.raises(SchemaError, match=r"2 rows share a key, e.g. \{'plate': 'P1', 'well': 'C03'\}"):
        store.write("wells", _wells(wells=("C03", "C03")))


def test_failed_validation_writes_nothing(store: Store) -> None:
    store.write("wells", _wells())
    before = store.read("wells")
    with pytest.raises(SchemaError):
        store.write("wells", _wells(wells=("C03", "C03")))
    assert_frame_equal(store.read("wells"), before)


# -- write modes -----------------------------------------------------------------------------------
def test_upsert_and_replace(store: Store) -> None:
    store.write("wells", _wells())
    store.write("wells", _wells(wells=("C04", "C05"), dose_ng=2.0))  # upsert
    got = store.read("wells").sort("well")
    assert got["well"].to_list() == ["C03", "C04", "C05"]
    assert got["dose_ng"].to_list() == [1.0, 2.0, 2.0]
    store.write("images", _images("P1"))
    store.write("images", _images("P2"))
    store.write("images", _images("P1", n_frames=1), mode="replace")  # only P1's partition is replaced
    counts = dict(store.sql("SELECT plate, count(*) FROM images GROUP BY plate").iter_rows())
    assert counts == {"P1": 1, "P2": 3}
    assert store.exists("images", plate="P2") and not store.exists("images", plate="P3")


# -- atomic writes ---------------------------------------------------------------------------------
def test_crash_mid_write_keeps_the_old_file(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.write("images", _images("P1"))
    path = store.partition_path("images", {"plate": "P1"})
    old = pl.read_parquet(path)
    real_write = pq.write_table
    seen_during_write: dict = {}

    def crash_after_part(table, where, **kwargs):
        real_write(table, where, **kwargs)
        with open(where, "r+b") as fh:  # leave half a file behind, as a killed writer would
            fh.truncate(Path(where).stat().st_size // 2)
        seen_during_write["files"] = store.files("images")
        seen_during_write["rows"] = store.read("images").height
        seen_during_write["sql"] = store.sql("SELECT count(*) AS n FROM images")["n"][0]
        # a plain reader globbing the table folder (as after a writer killed here) skips the temp file
        glob = str(store.table_dir("images") / "**" / "*.parquet")
        seen_during_write["glob"] = pl.scan_parquet(glob, hive_partitioning=False).collect().height
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(pq, "write_table", crash_after_part)
    with pytest.raises(OSError, match="simulated"):
        store.write("images", _images("P1", n_frames=5))
    monkeypatch.undo()

    # readers never saw the half-written temporary file, and the old version is intact
    assert seen_during_write == {"files": [path], "rows": 3, "sql": 3, "glob": 3}
    assert_frame_equal(pl.read_parquet(path), old)
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.parquet"]  # temporary file removed
    assert not list(store.root.glob(".tmp-*"))
    assert store.read("images").height == 3


def test_files_carry_schema_metadata(store: Store) -> None:
    store.write("wells", _wells())
    meta = pq.read_schema(store.files("wells")[0]).metadata
    assert meta[b"lnpstore.table"] == b"wells"
    assert meta[b"lnpstore.schema_version"] == S.SCHEMA_VERSION.encode()
    assert b'"dose_ng": {"unit": "ng"' in meta[b"lnpstore.columns"]


# -- SQL -------------------------------------------------------------------------------------------
def test_sql_with_params(store: Store) -> None:
    store.write("wells", _wells())
    store.write("wells", _wells("P2", ("D01",)))
    got = store.sql("SELECT well FROM wells WHERE plate = $plate ORDER BY well", plate="P1")
    assert got["well"].to_list() == ["C03", "C04"]
    with pytest.raises(QueryError, match=r"parameter\(s\) \['colour'\] do not appear"):
        store.sql("SELECT 1", colour="red")
    with pytest.raises(QueryError, match="SQL failed"):
        store.sql("SELECT nope FROM wells")


def test_sql_on_empty_store_has_the_declared_columns(store: Store) -> None:
    got = store.sql("SELECT * FROM images")
    assert got.height == 0 and got.columns == S.table("images").column_names


def test_named_queries(store: Store) -> None:
    store.write("images", _images("P1"))
    store.write("wells", _wells())
    got = store.query("images_per_well", plate="P1")
    assert got.filter(pl.col("well") == "C03")["n_ok"].item() == 3
    with pytest.raises(QueryError, match=r"query `missing_frames` needs parameter\(s\) \['plate'\]"):
        store.query("missing_frames")
    with pytest.raises(QueryError, match="no named query `nope`"):
        store.query("nope")


@pytest.mark.parametrize("name", ["images_per_well", "plate_summary"])
def test_status_queries_count_every_image_status(store: Store, name: str) -> None:
    from lnpstore.instrument.ingest import STATUSES

    store.write("images", _images("P1"))
    store.write("wells", _wells())
    got = store.query(name, plate="P1") if name == "images_per_well" else store.query(name)
    assert {f"n_{s}" for s in STATUSES} <= set(got.columns)


# -- readable without lnpstore ---------------------------------------------------------------------
def test_catalog_and_files_readable_without_lnpstore(store: Store) -> None:
    store.write("images", _images("P1"))
    store.write("images", _images("P 2/#x"))  # a plate name that needs escaping in the folder name
    plates = pl.DataFrame(
        [
            {c: None for c in S.table("plates").column_names}
            | {"plate": "P1", "ingested_at": datetime.now(UTC)}
        ]
    )
    store.write("plates", plates)
    con = duckdb.connect(str(store.root / CATALOG), read_only=True)
    try:
        rows = dict(con.sql("SELECT plate, count(*) FROM images GROUP BY plate").fetchall())
        assert rows == {"P1": 3, "P 2/#x": 3}
        assert con.sql("SELECT plate FROM plates").fetchall() == [("P1",)]
    finally:
        con.close()
    lf = pl.scan_parquet(str(store.root / "tables" / "images" / "**" / "*.parquet"), hive_partitioning=False)
    assert lf.group_by("plate").len().sort("plate").collect().rows() == [("P 2/#x", 3), ("P1", 3)]


def test_files_of_an_older_minor_schema_read_with_the_new_columns_as_nulls(store: Store) -> None:
    """Schema 1.1 added columns (e.g. tracks.link_cost_px); a store written under 1.0 must still read,
    in polars and in DuckDB, with those columns null, next to files written since."""
    store.write("images", _images("P1"))
    store.write("images", _images("P2"))
    old = next(f for f in store.files("images") if "P1" in str(f))
    table = pq.read_table(old)
    pq.write_table(table.drop_columns(["stage_y_um"]), old)  # as an older lnpstore wrote it
    (store.table_dir("images") / "_manifest.json").unlink()  # older lnpstore wrote no manifest
    got = store.read("images").sort("plate", "frame")
    assert got.columns == S.table("images").column_names
    assert got.filter(pl.col("plate") == "P1")["stage_y_um"].null_count() == 3
    assert got.filter(pl.col("plate") == "P2")["stage_y_um"].to_list() == [2.0, 2.0, 2.0]
    store.refresh_catalog()
    n_null = store.sql("SELECT count(*) AS n FROM images WHERE stage_y_um IS NULL")["n"][0]
    assert n_null == 3
