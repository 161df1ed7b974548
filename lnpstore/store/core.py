"""The columnar store: a folder of Parquet tables plus a DuckDB catalog with one view per table.

Layout of a store folder::

    STORE/
      lnpstore.json             store marker: schema version, created_at, package version
      lnpstore.duckdb           DuckDB catalog: one view per table over the Parquet files
      tables/<table>/data.parquet                          unpartitioned tables
      tables/<table>/<col>=<value>/.../data.parquet        partitioned tables
      artifacts/                model weights, figures, reports (referenced from tables)

Every Parquet file carries its partition columns inside it too (no reliance on hive paths) and the
schema version, table name, units and roles in its key-value metadata.

Writes are atomic per file: the new file is written beside the old one under a temporary name,
flushed, then renamed over it. A reader sees the old file or the new one, never half of one, and a
write that is killed leaves the previous version intact (the temporary file is cleaned up on the next
write, once it is an hour old). Writes are validated against :mod:`lnpstore.schema` before anything touches the disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from lnpstore._version import __version__
from lnpstore.store import schema as S
from lnpstore.store.atomic import atomic_path, atomic_write_bytes
from lnpstore.store.errors import QueryError, SchemaError, StoreError

if TYPE_CHECKING:  # duckdb is imported where used: the array code paths (models) do not need it
    import duckdb

MARKER = "lnpstore.json"
CATALOG = "lnpstore.duckdb"
DATA_FILE = "data.parquet"

WriteMode = Literal["upsert", "replace"]

_QUERY_DIR = Path(__file__).resolve().parents[2] / "queries"


def queries_dir() -> Path:
    """Folder of the named SQL queries (``queries/`` in a checkout, ``lnpstore/queries`` installed)."""
    try:
        from importlib.resources import files

        return Path(str(files("lnpstore.queries")))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - running from a bare checkout
        return _QUERY_DIR


def _safe_part(value: Any) -> str:
    """A partition value as a folder name: keeps letters, digits and ``-_.``; escapes the rest as %XX."""
    text = str(value)
    return re.sub(r"[^A-Za-z0-9_.\-]", lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


def validate(name: str, df: pl.DataFrame) -> pl.DataFrame:
    """Check ``df`` against table ``name``'s declaration and return it cast to the declared types.

    Raises :class:`SchemaError` naming the table and column for a missing or unknown column, a value
    that does not convert, a null in a non-nullable column, or a duplicated key.
    """
    t = S.table(name)
    got = set(df.columns)
    missing = [c for c in t.column_names if c not in got]
    extra = [c for c in df.columns if c not in set(t.column_names)]
    if missing or extra:
        msg = f"table `{name}`: "
        if missing:
            msg += f"missing column(s) {missing}; "
        if extra:
            msg += f"unknown column(s) {extra}; "
        raise SchemaError(msg + f"declared columns are {t.column_names} (lnpstore.schema)")
    out = {}
    for col in t.columns:
        s = df.get_column(col.name)
        if s.dtype != col.dtype:
            try:
                s = s.cast(col.dtype, strict=True)
            except Exception as exc:  # polars raises several types for failed casts
                raise SchemaError(
                    f"table `{name}`, column `{col.name}`: cannot convert {s.dtype} to {col.dtype} "
                    f"({str(exc).splitlines()[0]})"
                ) from None
        if not col.nullable and s.null_count():
            raise SchemaError(
                f"table `{name}`, column `{col.name}`: {s.null_count()} null value(s) in a non-nullable column"
            )
        out[col.name] = s
    df = pl.DataFrame(out)
    if df.height:
        dup = df.select(t.key).is_duplicated()
        if dup.any():
            first = df.filter(dup).select(t.key).row(0, named=True)
            raise SchemaError(
                f"table `{name}`: {int(dup.sum())} rows share a key, e.g. {first}; key is {t.key}"
            )
    return df


def _arrow_with_metadata(t: S.Table, df: pl.DataFrame) -> pa.Table:
    at = df.to_arrow()
    meta = {
        "lnpstore.schema_version": S.SCHEMA_VERSION,
        "lnpstore.table": t.name,
        "lnpstore.key": json.dumps(list(t.key)),
        "lnpstore.columns": json.dumps(
            {c.name: {"unit": c.unit, "role": str(c.role), "description": c.description} for c in t.columns}
        ),
        "lnpstore.package_version": __version__,
    }
    return at.replace_schema_metadata(
        {**(at.schema.metadata or {}), **{k: v.encode() for k, v in meta.items()}}
    )


def atomic_write_parquet(table_decl: S.Table, df: pl.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` atomically, with the table's schema metadata."""
    with atomic_path(path) as tmp:
        pq.write_table(_arrow_with_metadata(table_decl, df), tmp, compression="zstd")


_sha_cache: dict[tuple[str, int, int], str] = {}
_sha_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, cached per (path, size, mtime) within the process."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _sha_lock:
        if key in _sha_cache:
            return _sha_cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _sha_lock:
        _sha_cache[key] = digest
    return digest


class Store:
    """A store folder. Use :meth:`create` for a new one and :meth:`open` for an existing one."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self._defer_catalog = 0
        self._catalog_stale = False

    # -- life cycle ---------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, *, exist_ok: bool = True) -> Store:
        """Create a store folder (or open it, when ``exist_ok`` and it is already a store)."""
        root = Path(root)
        if (root / MARKER).exists():
            if not exist_ok:
                raise StoreError(
                    f"{root} is already an lnpstore store. Hint: use Store.open or another folder"
                )
            return cls.open(root)
        if root.exists() and any(root.iterdir()):
            raise StoreError(
                f"{root} exists, is not empty and is not an lnpstore store (no {MARKER}). "
                "Hint: give a new or empty folder"
            )
        root.mkdir(parents=True, exist_ok=True)
        marker = {
            "schema_version": S.SCHEMA_VERSION,
            "created_at": datetime.now(UTC).isoformat(),
            "package_version": __version__,
        }
        atomic_write_bytes(json.dumps(marker, indent=2).encode(), root / MARKER)
        store = cls(root)
        store.refresh_catalog()
        return store

    @classmethod
    def open(cls, root: str | os.PathLike) -> Store:
        """Open an existing store; a clear error when ``root`` is not one or has a newer schema."""
        root = Path(root)
        marker = root / MARKER
        if not marker.exists():
            raise StoreError(
                f"{root} is not an lnpstore store (no {MARKER}). Hint: create one with "
                f"`lnpstore ingest PLATE_DIR --store {root}` or Store.create"
            )
        info = json.loads(marker.read_text())
        major = str(info.get("schema_version", "0")).split(".")[0]
        if major != S.SCHEMA_VERSION.split(".")[0]:
            raise StoreError(
                f"store {root} has schema version {info.get('schema_version')}, this lnpstore "
                f"{__version__} reads {S.SCHEMA_VERSION}. Hint: use the lnpstore version that wrote it"
            )
        return cls(root)

    @property
    def info(self) -> dict:
        return json.loads((self.root / MARKER).read_text())

    # -- paths --------------------------------------------------------------------------------
    def table_dir(self, name: str) -> Path:
        S.table(name)
        return self.root / "tables" / name

    def artifacts_dir(self, *parts: str) -> Path:
        d = self.root.joinpath("artifacts", *parts)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def partition_path(self, name: str, values: Mapping[str, Any]) -> Path:
        t = S.table(name)
        d = self.table_dir(name)
        for col in t.partition_by:
            d = d / f"{col}={_safe_part(values[col])}"
        return d / DATA_FILE

    def files(self, name: str) -> list[Path]:
        d = self.table_dir(name)
        if not d.exists():
            return []
        return sorted(p for p in d.rglob(DATA_FILE) if p.is_file())

    # -- reading ------------------------------------------------------------------------------
    def table(self, name: str, **filters: Any) -> pl.LazyFrame:
        """The table as a polars LazyFrame (empty, with the declared schema, when nothing is stored).

        Keyword filters on partition columns prune files before reading, e.g. ``table("tracks",
        plate="P1", well="C03")``; filters on other columns are applied lazily.
        """
        t = S.table(name)
        files = self.files(name)
        part_filters = {k: v for k, v in filters.items() if k in t.partition_by}
        if part_filters:
            files = [
                f for f in files if all(f"{k}={_safe_part(v)}" in f.parts for k, v in part_filters.items())
            ]
        if not files:
            lf = pl.LazyFrame(schema=t.polars_schema)
        else:
            # Files written under an older minor schema version lack the columns added since: they read
            # as nulls (schema versions only add columns within a major version).
            lf = pl.scan_parquet(
                [str(f) for f in files],
                hive_partitioning=False,
                schema=t.polars_schema,
                missing_columns="insert",
            )
        for k, v in filters.items():
            if k not in t.column_names:
                raise SchemaError(f"table `{name}` has no column `{k}` to filter on")
            lf = lf.filter(pl.col(k) == v)
        return lf

    def read(self, name: str, **filters: Any) -> pl.DataFrame:
        """:meth:`table` collected."""
        return self.table(name, **filters).collect()

    def exists(self, name: str, **filters: Any) -> bool:
        """Whether any row matches (cheap for partition filters: used to skip finished work)."""
        return self.table(name, **filters).head(1).collect().height > 0

    # -- writing ------------------------------------------------------------------------------
    def write(self, name: str, df: pl.DataFrame, *, mode: WriteMode = "upsert") -> int:
        """Validate ``df`` and write it; returns the rows written.

        ``upsert`` replaces stored rows with the same key and keeps the others; ``replace`` replaces
        every partition that ``df`` touches wholesale (rows of those partitions absent from ``df``
        are dropped). Each partition file is replaced atomically.
        """
        if mode not in ("upsert", "replace"):
            raise ValueError(f"mode must be 'upsert' or 'replace', not {mode!r}")
        t = S.table(name)
        df = validate(name, df)
        groups: Iterable[tuple[dict, pl.DataFrame]]
        if t.partition_by:
            groups = [
                (dict(zip(t.partition_by, k, strict=True)), g)
                for k, g in df.group_by(list(t.partition_by), maintain_order=True)
            ]
        else:
            groups = [({}, df)]
        for values, part in groups:
            path = self.partition_path(name, values)
            if mode == "upsert" and path.exists():
                old = pl.read_parquet(path)
                old = validate(name, old)  # an old file of an older minor schema is re-cast here
                part = pl.concat([old.join(part.select(t.key), on=list(t.key), how="anti"), part])
            part = part.sort(list(t.key))
            atomic_write_parquet(t, part, path)
        self._catalog_changed()
        return df.height

    def delete(self, name: str, **partition: Any) -> int:
        """Delete the partition files matching ``partition`` (all of the table when empty)."""
        n = 0
        for f in self.table_files_matching(name, partition):
            f.unlink()
            n += 1
        self._catalog_changed()
        return n

    def table_files_matching(self, name: str, partition: Mapping[str, Any]) -> list[Path]:
        t = S.table(name)
        bad = set(partition) - set(t.partition_by)
        if bad:
            raise SchemaError(f"table `{name}` is partitioned by {t.partition_by}, not by {sorted(bad)}")
        return [
            f
            for f in self.files(name)
            if all(f"{k}={_safe_part(v)}" in f.parts for k, v in partition.items())
        ]

    # -- SQL ----------------------------------------------------------------------------------
    def _view_sql(self, name: str) -> str:
        t = S.table(name)
        files = self.files(name)
        if files:
            lst = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
            # Parquet has no fixed-size list: DuckDB reads Array columns back as LIST, so cast them to
            # the declared FLOAT[n] again.
            arrays = [c for c in t.columns if isinstance(c.dtype, pl.Array)]
            replace = ""
            if arrays:
                casts = ", ".join(f'CAST("{c.name}" AS {_duck_type(c.dtype)}) AS "{c.name}"' for c in arrays)
                replace = f" REPLACE ({casts})"
            return f"SELECT *{replace} FROM read_parquet([{lst}], union_by_name = true, hive_partitioning = false)"
        cols = ", ".join(f'CAST(NULL AS {_duck_type(c.dtype)}) AS "{c.name}"' for c in t.columns)
        return f"SELECT {cols} WHERE false"

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one view per table (never locks the catalog file)."""
        import duckdb

        con = duckdb.connect(":memory:")
        for name in S.TABLES:
            con.execute(f'CREATE VIEW "{name}" AS {self._view_sql(name)}')
        return con

    @contextmanager
    def batch(self) -> Iterator[Store]:
        """Group several writes: the DuckDB catalog is rebuilt once at the end instead of per write."""
        self._defer_catalog += 1
        try:
            yield self
        finally:
            self._defer_catalog -= 1
            if self._defer_catalog == 0 and self._catalog_stale:
                self.refresh_catalog()

    def _catalog_changed(self) -> None:
        if self._defer_catalog:
            self._catalog_stale = True
        else:
            self.refresh_catalog()

    def refresh_catalog(self) -> None:
        """Rewrite the DuckDB catalog file's views so that ``duckdb STORE/lnpstore.duckdb`` sees the tables.

        The catalog is rebuilt under a temporary name and renamed into place, so a reader with the file
        open is never disturbed. Paths in the views are absolute: after moving a store, open it once
        with lnpstore (or run ``lnpstore info``) to refresh them.
        """
        import duckdb

        with atomic_path(self.root / CATALOG) as tmp:  # duckdb creates the file itself
            try:
                con = duckdb.connect(str(tmp))
                try:
                    for name in S.TABLES:
                        con.execute(f'CREATE VIEW "{name}" AS {self._view_sql(name)}')
                    con.execute("CHECKPOINT")
                finally:
                    con.close()
            finally:
                Path(f"{tmp}.wal").unlink(missing_ok=True)
        self._catalog_stale = False

    def sql(self, text: str, **params: Any) -> pl.DataFrame:
        """Run SQL over the store's tables; ``$name`` placeholders take ``params``. Returns polars."""
        import duckdb

        con = self.connect()
        try:
            used = {k: v for k, v in params.items() if re.search(rf"\${re.escape(k)}\b", text)}
            unused = set(params) - set(used)
            if unused:
                raise QueryError(f"parameter(s) {sorted(unused)} do not appear in the SQL as $name")
            rel = con.sql(text, params=used) if used else con.sql(text)
            if rel is None:  # a statement without a result (e.g. SET)
                return pl.DataFrame()
            return pl.from_arrow(rel.to_arrow_table())
        except duckdb.Error as exc:
            raise QueryError(f"SQL failed: {exc}") from None
        finally:
            con.close()

    def query(self, name: str, **params: Any) -> pl.DataFrame:
        """Run the named query ``queries/NAME.sql`` with ``params``; see :func:`list_queries`."""
        text = read_query(name)
        needed = query_params(text)
        missing = needed - set(params)
        if missing:
            raise QueryError(
                f"query `{name}` needs parameter(s) {sorted(missing)}. Hint: "
                + " ".join(f"--param {m}=..." for m in sorted(missing))
            )
        return self.sql(text, **{k: v for k, v in params.items() if k in needed})

    # -- provenance ---------------------------------------------------------------------------
    def data_version(self, *tables: str, **partition: Any) -> str:
        """sha256 over the content of the named tables' files (optionally only matching partitions)."""
        h = hashlib.sha256()
        for name in tables:
            files = self.table_files_matching(name, partition) if partition else self.files(name)
            for f in files:
                h.update(str(f.relative_to(self.root)).encode())
                h.update(file_sha256(f).encode())
        return h.hexdigest()[:16]

    def summary(self) -> pl.DataFrame:
        """Rows and files per table."""
        rows = []
        for name in S.TABLES:
            files = self.files(name)
            n = pl.scan_parquet([str(f) for f in files]).select(pl.len()).collect().item() if files else 0
            size = sum(f.stat().st_size for f in files)
            rows.append({"table": name, "rows": n, "files": len(files), "mbytes": round(size / 1e6, 3)})
        return pl.DataFrame(rows)


def _duck_type(dtype: Any) -> str:
    mapping = {
        pl.String: "VARCHAR",
        pl.Int8: "TINYINT",
        pl.Int16: "SMALLINT",
        pl.Int32: "INTEGER",
        pl.Int64: "BIGINT",
        pl.Float32: "FLOAT",
        pl.Float64: "DOUBLE",
        pl.Boolean: "BOOLEAN",
        pl.Binary: "BLOB",
    }
    if isinstance(dtype, pl.Array):
        return f"{_duck_type(dtype.inner)}[{dtype.size}]"
    if isinstance(dtype, pl.Datetime) or dtype == pl.Datetime:
        return "TIMESTAMPTZ"
    for k, v in mapping.items():
        if dtype == k:
            return v
    raise TypeError(f"no DuckDB type for {dtype}")


def list_queries() -> dict[str, str]:
    """Named queries and the first line of their header comment."""
    out = {}
    for p in sorted(queries_dir().glob("*.sql")):
        first = next((ln[2:].strip() for ln in p.read_text().splitlines() if ln.startswith("--")), "")
        out[p.stem] = first
    return out


def read_query(name: str) -> str:
    p = queries_dir() / f"{name}.sql"
    if not re.fullmatch(r"[A-Za-z0-9_]+", name) or not p.exists():
        raise QueryError(f"no named query `{name}`. Hint: the queries are {', '.join(list_queries())}")
    return p.read_text()


def query_params(text: str) -> set[str]:
    """The ``$name`` parameters a SQL text uses (ignoring comments and string literals)."""
    body = re.sub(r"--[^\n]*", "", text)
    body = re.sub(r"'(?:[^']|'')*'", "''", body)
    return set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", body))
