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
write that is killed leaves the previous version intact (the temporary file is cleaned up by the next
writer). Writes are validated against :mod:`lnpstore.schema` before anything touches the disk.

One writer at a time: every write holds the store's lock (:mod:`lnpstore.store.lock`); readers
never take it. Each table's live files, with row counts and sizes, are listed in its manifest
(:mod:`lnpstore.store.manifest`), rewritten atomically with every write: a live file that is missing
or truncated makes reads raise :class:`StoreDamaged` (naming the file and the command to re-run)
and :meth:`Store.exists` answer False, so a stage redoes that work instead of skipping it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from lnpstore._version import __version__
from lnpstore.store import manifest as M
from lnpstore.store import schema as S
from lnpstore.store.atomic import atomic_path, atomic_write_bytes
from lnpstore.store.errors import QueryError, SchemaError, StoreDamaged, StoreError
from lnpstore.store.lock import remove_stale_tmp_tree, store_lock

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # duckdb is imported where used: the array code paths (models) do not need it
    import duckdb

MARKER = "lnpstore.json"
CATALOG = "lnpstore.duckdb"
DATA_FILE = "data.parquet"

WriteMode = Literal["upsert", "replace"]

_QUERY_DIR = Path(__file__).resolve().parents[2] / "queries"


#: The command that writes each table: what to re-run when one of its files is damaged.
REDO_COMMAND = {
    "plates": "lnpstore ingest PLATE_DIR --store {store}",
    "wells": "lnpstore ingest PLATE_DIR --store {store}",
    "images": "lnpstore ingest PLATE_DIR --store {store}",
    "registration": "lnpstore crop {store}",
    "seeds": "lnpstore track {store}",
    "tracks": "lnpstore track {store}",
    "label_images": "lnpstore track {store}",
    "cells": "lnpstore crop {store}",
    "crops": "lnpstore crop {store}",
    "features": "lnpstore embed {store}",
    "embeddings": "lnpstore train-cnn {store}",
    "models": "the training command of that model (lnpstore train-cnn / train-lstm / train-tsfresh {store})",
    "predictions": "the training command of that model (lnpstore train-cnn / train-lstm / train-tsfresh {store})",
    "search": "lnpstore train-lstm {store}",
    "metrics": "lnpstore evaluate {store}",
}
#: A row of ``models`` counts as done only while that model's partitions of these tables are intact.
MODEL_OUTPUT_COLUMN = "model_id"


def redo_hint(store_root: Path, table: str) -> str:
    """What to run to rewrite ``table`` in the store at ``store_root`` (or all of it: ``lnpstore run``)."""
    cmd = REDO_COMMAND.get(table, "the stage that writes it").format(store=store_root)
    return (
        f"`lnpstore check {store_root}` lists all damage; `lnpstore check {store_root} --repair` drops the "
        f"damaged partitions (their rows are lost anyway), then re-run {cmd} to redo them "
        "(`lnpstore run` redoes every stage)"
    )


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
        info = _read_marker(marker)
        major = str(info.get("schema_version", "0")).split(".")[0]
        if major != S.SCHEMA_VERSION.split(".")[0]:
            raise StoreError(
                f"store {root} has schema version {info.get('schema_version')}, this lnpstore "
                f"{__version__} reads {S.SCHEMA_VERSION}. Hint: use the lnpstore version that wrote it"
            )
        return cls(root)

    @property
    def info(self) -> dict:
        return _read_marker(self.root / MARKER)

    @property
    def writable(self) -> bool:
        """Whether this process may write the store folder (readers never need to)."""
        return os.access(self.root, os.W_OK)

    @contextmanager
    def writing(self) -> Iterator[Store]:
        """Hold the store's write lock for the block (re-entrant; every write method takes it itself).

        A second process waits (``LNPSTORE_LOCK_TIMEOUT`` s, default 600) and then raises
        :class:`StoreLocked`; a read-only store raises :class:`StoreReadOnly`.
        """
        with store_lock(self.root, on_first=self._recover):
            yield self

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

    def _disk_files(self, name: str) -> list[Path]:
        d = self.table_dir(name)
        if not d.exists():
            return []
        return sorted(p for p in d.rglob(DATA_FILE) if p.is_file())

    def live(self, name: str) -> dict[Path, M.Entry] | None:
        """The table's live files from its manifest (path -> rows, bytes); None for a table written
        before manifests (its files are then the ones on disk)."""
        d = self.table_dir(name)
        entries = M.load(d)
        if entries is None:
            return None
        return {d / rel: e for rel, e in entries.items()}

    def files(self, name: str) -> list[Path]:
        """The table's live files (from its manifest; the files on disk for a table without one)."""
        live = self.live(name)
        return sorted(live) if live is not None else self._disk_files(name)

    def damage(self, name: str, *, read_footer: bool = False, **partition: Any) -> dict[Path, str]:
        """Live files of ``name`` (optionally only matching ``partition``) that are missing or
        damaged -> what is wrong. Cheap (a stat per file) unless ``read_footer``."""
        live = self.live(name)
        if not live:
            return {}
        files = self._matching(name, sorted(live), partition)
        out = {}
        for f in files:
            why = M.problem(f, live[f], read_footer=read_footer)
            if why:
                out[f] = why
        return out

    def _raise_damaged(self, name: str, bad: Mapping[Path, str]) -> None:
        if not bad:
            return
        listed = "; ".join(f"{f} ({why})" for f, why in list(bad.items())[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise StoreDamaged(
            f"table `{name}` of store {self.root} is damaged: {listed}{more}. "
            f"Hint: {redo_hint(self.root, name)}"
        )

    # -- reading ------------------------------------------------------------------------------
    def table(self, name: str, **filters: Any) -> pl.LazyFrame:
        """The table as a polars LazyFrame (empty, with the declared schema, when nothing is stored).

        Keyword filters on partition columns prune files before reading, e.g. ``table("tracks",
        plate="P1", well="C03")``; filters on other columns are applied lazily.
        """
        t = S.table(name)
        part_filters = {k: v for k, v in filters.items() if k in t.partition_by}
        live = self.live(name)
        files = self._matching(
            name, sorted(live) if live is not None else self._disk_files(name), part_filters
        )
        if live is not None:
            self._raise_damaged(name, {f: why for f in files if (why := M.problem(f, live[f]))})
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
        """:meth:`table` collected; :class:`StoreDamaged` naming the file when a live file cannot be
        decoded (e.g. overwritten with junk of the same size, which the manifest's size check misses)."""
        lf = self.table(name, **filters)
        try:
            return lf.collect()
        except (pl.exceptions.PolarsError, OSError) as exc:
            self._raise_unreadable(name, filters, exc)
            raise

    def _raise_unreadable(self, name: str, filters: Mapping[str, Any], exc: Exception) -> None:
        """After a failed read: raise :class:`StoreDamaged` for the matching live files whose Parquet
        footer cannot be read; returns when every file reads (the error was not the files')."""
        t = S.table(name)
        files = self._matching(
            name, self.files(name), {k: v for k, v in filters.items() if k in t.partition_by}
        )
        bad = {}
        for f in files:
            try:
                pq.ParquetFile(f).metadata  # noqa: B018  reads the footer
            except Exception as e:  # pyarrow raises several types for a bad file
                bad[f] = f"unreadable: {str(e).splitlines()[0]}"
        if not bad:  # the footers read: say which file the reader choked on, if it named one
            bad = {f: f"unreadable: {str(exc).splitlines()[0]}" for f in files if str(f) in str(exc)}
        self._raise_damaged(name, bad)

    def exists(self, name: str, **filters: Any) -> bool:
        """Whether any row matches (cheap for partition filters: used to skip finished work).

        False when a matching live file is missing or damaged, so a stage redoes that work; for
        ``models``, also when that model's partitions of its output tables (``predictions``,
        ``embeddings``) are damaged, or it has no predictions at all.
        """
        t = S.table(name)
        part = {k: v for k, v in filters.items() if k in t.partition_by}
        bad = self.damage(name, **part)
        if name == "models" and MODEL_OUTPUT_COLUMN in filters:
            for other, decl in S.TABLES.items():
                if MODEL_OUTPUT_COLUMN in decl.partition_by:
                    bad |= self.damage(other, **{MODEL_OUTPUT_COLUMN: filters[MODEL_OUTPUT_COLUMN]})
        if bad:
            log.warning(
                "store %s: %s damaged (%s): redoing that work",
                self.root,
                ", ".join(str(f.relative_to(self.root)) for f in bad),
                next(iter(bad.values())),
            )
            return False
        lf = self.table(name, **filters).head(1)
        try:
            found = lf.collect().height > 0
        except (pl.exceptions.PolarsError, OSError) as exc:
            try:
                self._raise_unreadable(name, filters, exc)
            except StoreDamaged as damaged:
                log.warning("%s: redoing that work", str(damaged).split(". Hint")[0])
                return False
            raise
        if found and name == "models" and MODEL_OUTPUT_COLUMN in filters:
            return self._model_has_predictions(str(filters[MODEL_OUTPUT_COLUMN]))
        return found

    def _model_has_predictions(self, model_id: str) -> bool:
        """Whether a trained model's test predictions are in the store (every model writes them): a
        ``predictions`` folder deleted by hand (manifest and all) would otherwise leave models that
        are "already in the store" and predictions that are never made again."""
        if self.table_files_matching("predictions", {MODEL_OUTPUT_COLUMN: model_id}):
            return True
        log.warning("store %s: model %s has no predictions in the store: redoing it", self.root, model_id)
        return False

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
        with self.writing():
            d = self.table_dir(name)
            live = M.load(d) or {}
            for values, part in groups:
                path = self.partition_path(name, values)
                rel = path.relative_to(d).as_posix()
                if mode == "upsert" and rel in live:
                    old = self._read_old(name, path, live[rel])
                    if old is not None:
                        part = pl.concat([old.join(part.select(t.key), on=list(t.key), how="anti"), part])
                part = part.sort(list(t.key))
                atomic_write_parquet(t, part, path)
                live[rel] = M.Entry(rows=part.height, bytes=path.stat().st_size)
            M.save(d, name, live)
            self._catalog_changed()
        return df.height

    def _read_old(self, name: str, path: Path, entry: M.Entry) -> pl.DataFrame | None:
        """The stored rows of a partition an upsert adds to; None (with a warning) when the file is
        missing or damaged: the upsert then rewrites the partition from the new rows alone."""
        why = M.problem(path, entry)
        if why is None:
            try:
                return validate(name, pl.read_parquet(path))  # an older minor schema is re-cast here
            except (OSError, pl.exceptions.PolarsError) as exc:
                why = f"unreadable ({str(exc).splitlines()[0]})"
        log.warning("store %s: %s was damaged (%s); rewritten from the new rows", self.root, path, why)
        return None

    def delete(self, name: str, **partition: Any) -> int:
        """Delete the partition files matching ``partition`` (all of the table when empty)."""
        with self.writing():
            d = self.table_dir(name)
            live = M.load(d) or {}
            n = 0
            for f in self.table_files_matching(name, partition):
                f.unlink(missing_ok=True)
                live.pop(f.relative_to(d).as_posix(), None)
                n += 1
            M.save(d, name, live)
            self._catalog_changed()
        return n

    def _matching(self, name: str, files: list[Path], partition: Mapping[str, Any]) -> list[Path]:
        t = S.table(name)
        bad = set(partition) - set(t.partition_by)
        if bad:
            raise SchemaError(f"table `{name}` is partitioned by {t.partition_by}, not by {sorted(bad)}")
        return [f for f in files if all(f"{k}={_safe_part(v)}" in f.parts for k, v in partition.items())]

    def table_files_matching(self, name: str, partition: Mapping[str, Any]) -> list[Path]:
        return self._matching(name, self.files(name), partition)

    # -- manifests ----------------------------------------------------------------------------
    def _recover(self) -> None:
        """On the first writing open in a process (lock held): write the manifest of every table that
        has none (a store of an older lnpstore), and adopt a live file rewritten by a write that was
        killed before its manifest was (readable, lnpstore's metadata for this table)."""
        for name in S.TABLES:
            d = self.table_dir(name)
            live = M.load(d)
            if live is None:
                files = self._disk_files(name)
                if files:
                    adopted = {f.relative_to(d).as_posix(): e for f in files if (e := _adoptable(name, f))}
                    M.save(d, name, adopted)
                    log.info(
                        "store %s: table `%s`: manifest written (%d files)", self.root, name, len(adopted)
                    )
                continue
            changed = False
            for rel, entry in list(live.items()):
                f = d / rel
                if f.exists() and M.problem(f, entry) and (e := _adoptable(name, f)):
                    live[rel] = e
                    changed = True
                    log.info("store %s: %s: adopted the file of an interrupted write", self.root, f)
            if changed:
                M.save(d, name, live)

    def check(self, *, deep: bool = False) -> list[dict]:
        """Every problem of the store's tables: one dict per file (``table``, ``file``, ``problem``,
        ``redo``). Checks that each live file is present, its size and footer's row count match the
        manifest (``deep``: every page is decoded too); lists tables without a manifest and files on
        disk that no manifest lists (ignored by readers)."""
        out: list[dict] = []
        for name in S.TABLES:
            d = self.table_dir(name)

            def add(file: Path | None, problem: str, table: str = name) -> None:
                out.append({"table": table, "file": str(file) if file else "", "problem": problem})

            try:
                live = self.live(name)
            except StoreDamaged as exc:
                add(M.manifest_path(d), str(exc).split(". Hint")[0])
                continue
            if live is None:
                if self._disk_files(name):
                    add(
                        None,
                        "no manifest (written by an older lnpstore): `lnpstore check --repair` writes it",
                    )
                    live = {f: _entry_or_zero(f) for f in self._disk_files(name)}
                else:
                    continue
            for f, entry in sorted(live.items()):
                why = M.problem(f, entry, read_footer=True)
                if why is None and deep:
                    try:
                        pq.read_table(f)
                    except Exception as exc:  # pyarrow raises several types for a bad file
                        why = f"unreadable ({str(exc).splitlines()[0]})"
                if why:
                    add(f, why)
            for f in self._disk_files(name):
                if f not in live:
                    add(f, "not listed in the manifest (left by an interrupted write; readers ignore it)")
        for f in self._missing_label_movies(out):
            out.append(
                {
                    "table": "label_images",
                    "file": str(f),
                    "problem": "label movie missing (listed in label_images)",
                }
            )
        for row in out:
            row["redo"] = REDO_COMMAND.get(row["table"], "").format(store=self.root)
        return out

    def _missing_label_movies(self, problems: list[dict]) -> list[Path]:
        """Label movies the ``label_images`` table lists that are not on disk (``lnpstore track``
        writes them again); nothing when that table is itself damaged (already in ``problems``)."""
        if any(p["table"] == "label_images" for p in problems) or not self.files("label_images"):
            return []
        paths = [Path(p) for p in self.read("label_images").get_column("path").to_list()]
        return [
            p if p.is_absolute() else self.root / p
            for p in paths
            if not (p if p.is_absolute() else self.root / p).exists()
        ]

    def repair(self) -> list[str]:
        """Make the store consistent again (under the write lock), so that re-running the stages
        redoes what was lost: rebuild a corrupt manifest from the table's files, write missing
        manifests, adopt files of interrupted writes, drop damaged or missing partitions from their
        manifest (with the ``models`` rows of a damaged model's outputs, so training redoes that
        model), remove stale temporaries. Returns what was done."""
        done = []
        with self.writing():
            for name in S.TABLES:
                d = self.table_dir(name)
                try:
                    M.load(d)
                except StoreDamaged:
                    files = self._disk_files(name)
                    M.save(
                        d, name, {f.relative_to(d).as_posix(): e for f in files if (e := _adoptable(name, f))}
                    )
                    done.append(f"table `{name}`: corrupt manifest rebuilt from its {len(files)} file(s)")
            before = {n: M.load(self.table_dir(n)) for n in S.TABLES}
            self._recover()
            for name in S.TABLES:
                if M.load(self.table_dir(name)) != before[name]:
                    done.append(f"table `{name}`: manifest written / interrupted write adopted")
            done += self._drop_damaged()
            n = remove_stale_tmp_tree(self.root)
            if n:
                done.append(f"{n} stale temporary file(s) removed")
            self.refresh_catalog()
        return done

    def _drop_damaged(self) -> list[str]:
        done = []
        redo_models: set[str] = set()
        for name in S.TABLES:
            bad = self.damage(name, read_footer=True)
            if not bad:
                continue
            d = self.table_dir(name)
            live = M.load(d) or {}
            for f, why in bad.items():
                live.pop(f.relative_to(d).as_posix(), None)
                f.unlink(missing_ok=True)
                done.append(f"table `{name}`: {f.relative_to(self.root)} ({why}) dropped")
                part = dict(p.split("=", 1) for p in f.relative_to(d).parent.parts if "=" in p)
                if MODEL_OUTPUT_COLUMN in part:
                    redo_models.add(urllib.parse.unquote(part[MODEL_OUTPUT_COLUMN]))
            M.save(d, name, live)
        if redo_models and not self.damage("models"):
            models = self.read("models")
            keep = models.filter(~pl.col(MODEL_OUTPUT_COLUMN).is_in(sorted(redo_models)))
            if keep.height < models.height:
                self.delete("models")
                if keep.height:
                    self.write("models", keep)
                done.append(f"table `models`: {sorted(redo_models)} dropped, so training redoes them")
        return done

    @classmethod
    def repair_marker(cls, root: str | os.PathLike) -> str | None:
        """Rewrite a corrupt ``lnpstore.json`` from the schema version in the tables' files; returns
        what was done, or None when the marker is fine (or the folder has no tables)."""
        root = Path(root)
        try:
            _read_marker(root / MARKER)
            return None
        except StoreDamaged:
            pass
        version = S.SCHEMA_VERSION
        for f in sorted((root / "tables").rglob(DATA_FILE)):
            try:
                meta = pq.read_schema(f).metadata or {}
                version = meta[b"lnpstore.schema_version"].decode()
                break
            except Exception:  # an unreadable file: try the next one
                continue
        marker = {
            "schema_version": version,
            "created_at": None,
            "package_version": __version__,
            "repaired_at": datetime.now(UTC).isoformat(),
        }
        with store_lock(root):
            atomic_write_bytes(json.dumps(marker, indent=2).encode(), root / MARKER)
        return f"{root / MARKER} rewritten (schema version {version}, from the tables' files)"

    # -- SQL ----------------------------------------------------------------------------------
    def _view_sql(self, name: str) -> str:
        t = S.table(name)
        bad = self.damage(name)
        if bad:
            # a damaged table's view raises its error when queried; the other views keep working
            f, why = next(iter(bad.items()))
            msg = f"table {name} of store {self.root} is damaged: {f} ({why}). Hint: {redo_hint(self.root, name)}"
            cols = ", ".join(f'CAST(NULL AS {_duck_type(c.dtype)}) AS "{c.name}"' for c in t.columns)
            return f"SELECT {cols} FROM range(1) WHERE error({_sql_str(msg)}) IS NULL"
        files = self.files(name)
        if files:
            lst = ", ".join(_sql_str(str(f)) for f in files)
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

    def _create_views(self, con: duckdb.DuckDBPyConnection) -> None:
        import duckdb

        for name in S.TABLES:
            try:
                con.execute(f'CREATE VIEW "{name}" AS {self._view_sql(name)}')
            except duckdb.Error as exc:  # a live file that DuckDB cannot read (same size, bad bytes)
                t = S.table(name)
                msg = (
                    f"table {name} of store {self.root} is damaged: {str(exc).splitlines()[0]}. "
                    f"Hint: {redo_hint(self.root, name)}"
                )
                cols = ", ".join(f'CAST(NULL AS {_duck_type(c.dtype)}) AS "{c.name}"' for c in t.columns)
                con.execute(
                    f'CREATE VIEW "{name}" AS SELECT {cols} FROM range(1) WHERE error({_sql_str(msg)}) IS NULL'
                )
        for name, select in S.VIEWS.items():  # derived views, over the tables' views
            con.execute(f'CREATE VIEW "{name}" AS {select}')

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one view per table (never locks the catalog file)."""
        import duckdb

        con = duckdb.connect(":memory:")
        self._create_views(con)
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

        with self.writing(), atomic_path(self.root / CATALOG) as tmp:  # duckdb creates the file itself
            try:
                con = duckdb.connect(str(tmp))
                try:
                    self._create_views(con)
                    con.execute("CHECKPOINT")
                finally:
                    con.close()
            finally:
                Path(f"{tmp}.wal").unlink(missing_ok=True)
        self._catalog_stale = False

    def sql(self, text: str, **params: Any) -> pl.DataFrame:
        """Run SQL over the store's tables; ``$name`` placeholders take ``params``. Returns polars.

        For the package's own SQL (any statement, any file). SQL from a user goes through
        :meth:`sandboxed_sql`."""
        return self._run_sql(text, params, allow_write=True, allow_files=True)

    def sandboxed_sql(
        self,
        text: str,
        params: Mapping[str, Any] | None = None,
        *,
        allow_write: bool = False,
        allow_files: bool = False,
    ) -> pl.DataFrame:
        """Run a user's SQL read-only: only ``SELECT``/``EXPLAIN`` statements unless ``allow_write``,
        and DuckDB reads only the store's live files (external access off, configuration locked) unless
        ``allow_files`` or ``allow_write`` (``COPY ... TO`` an export file needs both the statement and
        the file access)."""
        return self._run_sql(
            text, dict(params or {}), allow_write=allow_write, allow_files=allow_files or allow_write
        )

    def _run_sql(
        self, text: str, params: Mapping[str, Any], *, allow_write: bool, allow_files: bool
    ) -> pl.DataFrame:
        import duckdb

        for name in S.TABLES:  # the tables the SQL names must be intact (the others may be damaged)
            if re.search(rf"\b{name}\b", text):
                self._raise_damaged(name, self.damage(name))
        con = self.connect()
        try:
            if not allow_write:
                _refuse_writes(con, text)
            if not allow_files:
                live = [str(f) for name in S.TABLES for f in self.files(name)]
                con.execute("SET allowed_paths = $p", {"p": live})
                con.execute("SET enable_external_access = false")
                con.execute("SET lock_configuration = true")
            used = {k: v for k, v in params.items() if re.search(rf"\${re.escape(k)}\b", text)}
            unused = set(params) - set(used)
            if unused:
                raise QueryError(f"parameter(s) {sorted(unused)} do not appear in the SQL as $name")
            rel = con.sql(text, params=used) if used else con.sql(text)
            if rel is None:  # a statement without a result (e.g. SET)
                return pl.DataFrame()
            return cast(pl.DataFrame, pl.from_arrow(rel.to_arrow_table()))  # a Table gives a DataFrame
        except duckdb.PermissionException as exc:
            raise QueryError(
                f"SQL refused: {str(exc).splitlines()[0]}. Hint: SQL over a store reads only the store's "
                "tables; give --allow-files to read other files, --allow-write (with --allow-files) to "
                "export with COPY ... TO"
            ) from None
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
            self._raise_damaged(name, self.damage(name, **partition))
            files = self.table_files_matching(name, partition) if partition else self.files(name)
            for f in files:
                h.update(str(f.relative_to(self.root)).encode())
                h.update(file_sha256(f).encode())
        return h.hexdigest()[:16]

    def summary(self) -> pl.DataFrame:
        """Rows, files, size and damaged files per table (from the manifests; a table without one is
        counted from its files' footers)."""
        rows = []
        for name in S.TABLES:
            live = self.live(name)
            if live is None:
                live = {f: _entry_or_zero(f) for f in self._disk_files(name)}
            n_bad = len(self.damage(name))
            rows.append(
                {
                    "table": name,
                    "rows": sum(e["rows"] for e in live.values()),
                    "files": len(live),
                    "mbytes": round(sum(e["bytes"] for e in live.values()) / 1e6, 3),
                    "damaged": n_bad,
                }
            )
        return pl.DataFrame(rows)


#: Statement types a read-only SQL session runs (DESCRIBE, SHOW, SUMMARIZE, FROM ... are SELECTs).
_READ_STATEMENTS = ("SELECT", "EXPLAIN")


def _refuse_writes(con: duckdb.DuckDBPyConnection, text: str) -> None:
    import duckdb

    try:
        statements = con.extract_statements(text)
    except duckdb.Error as exc:
        raise QueryError(f"SQL failed: {exc}") from None
    for st in statements:
        kind = str(st.type).rsplit(".", 1)[-1]
        if kind not in _READ_STATEMENTS:
            raise QueryError(
                f"SQL refused: a {kind} statement; SQL over a store only reads (SELECT). Hint: give "
                "--allow-write (and --allow-files) to run it, e.g. to export with COPY ... TO"
            )


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _entry_or_zero(path: Path) -> M.Entry:
    try:
        return M.entry_of(path)
    except Exception:  # pyarrow raises several types for a bad file: counted as damaged elsewhere
        return M.Entry(rows=0, bytes=path.stat().st_size)


def _adoptable(name: str, path: Path) -> M.Entry | None:
    """The manifest entry of a file lnpstore wrote for table ``name``; None for a file that is
    unreadable or is not that table's."""
    try:
        meta = pq.read_schema(path).metadata or {}
        if meta.get(b"lnpstore.table", name.encode()) != name.encode():
            return None
        return M.entry_of(path)
    except Exception:  # pyarrow raises several types for a bad file
        return None


def _read_marker(marker: Path) -> dict:
    """``lnpstore.json``; :class:`StoreDamaged` when it is not the JSON lnpstore writes."""
    try:
        info = json.loads(marker.read_text())
        if not isinstance(info, dict) or "schema_version" not in info:
            raise ValueError("no schema_version")
        return info
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreDamaged(
            f"{marker} is corrupt ({str(exc).splitlines()[0]}), so the store cannot be opened. Hint: run "
            f"`lnpstore check {marker.parent} --repair` to rewrite it from the tables' metadata"
        ) from None


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
