"""The one atomic writer: every file and folder lnpstore writes appears whole or not at all.

A writer gets a temporary path beside the destination (same folder, so the final rename stays on one
file system), writes it, and on success the temporary is fsynced and renamed over the destination;
on any error, or a kill, the destination keeps its old content. Temporary names start with
``.tmp-PID-`` so that no ``*.parquet`` / ``*.tif`` glob sees them, and a later writer in the same
folder removes those older than :data:`STALE_TMP_S` (left by a killed process).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

#: A temporary older than this (s) was left by a killed writer and is removed by the next one.
STALE_TMP_S = 3600.0
TMP_PREFIX = ".tmp-"


def tmp_path_for(dest: Path, *, keep_suffix: bool = False) -> Path:
    """A fresh temporary path beside ``dest`` (not created). ``keep_suffix`` ends it in ``dest``'s
    suffix, for writers that choose the format by extension (``np.savez``, ``savefig``)."""
    tag = f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{dest.name}"
    return dest.with_name(f"{tag}{dest.suffix}" if keep_suffix else f"{tag}.tmp")


def remove_stale_tmp(folder: Path, max_age_s: float = STALE_TMP_S) -> int:
    """Remove temporaries older than ``max_age_s`` in ``folder``; returns how many were removed."""
    now = time.time()
    n = 0
    for p in folder.glob(f"{TMP_PREFIX}*"):
        try:
            if now - p.stat().st_mtime > max_age_s:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
                n += 1
        except FileNotFoundError:
            pass
    return n


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def commit_tmp(tmp: Path, dest: Path) -> Path:
    """Make a finished temporary durable and rename it over ``dest`` (for streaming writers that
    cannot live inside one ``with`` block, such as a label movie written frame by frame)."""
    _fsync_file(tmp)
    os.replace(tmp, dest)
    return dest


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``dest`` through; commit it by fsync + rename on success.

    For writers that take a path (``pq.write_table``, ``tifffile``, ``duckdb.connect``, ``np.savez``).
    The temporary is removed on error; ``dest`` is untouched then.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(dest.parent)
    tmp = tmp_path_for(dest, keep_suffix=keep_suffix)
    try:
        yield tmp
        commit_tmp(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(dest: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing; it replaces ``dest`` when the block ends without error."""
    with atomic_path(dest) as tmp, open(tmp, mode) as fh:
        yield fh
        fh.flush()


def atomic_write_bytes(data: bytes, dest: str | os.PathLike) -> Path:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_open(dest, "wb") as fh:
        fh.write(data)
    return Path(dest)


def atomic_write_text(text: str, dest: str | os.PathLike) -> Path:
    """Write UTF-8 ``text`` to ``dest`` atomically."""
    return atomic_write_bytes(text.encode("utf-8"), dest)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces the folder ``dest`` (two renames: the
    old copy is moved aside, the new one moved in, then the old one removed; on a failed rename the
    old copy is put back)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(dest.parent)
    tmp = tmp_path_for(dest)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if dest.exists():
            old = tmp_path_for(dest).with_suffix(".old")
            dest.rename(old)
        try:
            tmp.rename(dest)
        except BaseException:
            if old is not None:
                old.rename(dest)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = [
    "STALE_TMP_S",
    "atomic_dir",
    "atomic_open",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "commit_tmp",
    "remove_stale_tmp",
    "tmp_path_for",
]
