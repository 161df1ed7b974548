"""One writer per store at a time: an OS file lock (the ``filelock`` package) on ``STORE/.lnpstore.lock``.

Every writing path of :class:`lnpstore.store.core.Store` holds :func:`store_lock` while it writes;
readers never take it. The lock is re-entrant within a process (threads of one process share it:
the driver of a stage writes, its workers never touch the store). A second process that wants to
write waits up to :func:`lock_timeout_s` seconds, logging who holds the store, then raises
:class:`StoreLocked`.

In a command (``lnpstore ...``), :func:`command_scope` makes the first acquisition last until the
process exits, so that two commands writing one store never interleave their stages.

The first acquisition in a process also removes temporaries (``.tmp-PID-*``, see
:mod:`lnpstore.store.atomic`) left anywhere in the store by writers that are gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import filelock

from lnpstore.store.atomic import STALE_TMP_S, TMP_PREFIX, atomic_write_text
from lnpstore.store.errors import StoreLocked, StoreReadOnly

log = logging.getLogger(__name__)

LOCK_FILE = ".lnpstore.lock"
OWNER_FILE = ".lnpstore.lock.json"
#: Seconds a second writer waits for the store before :class:`StoreLocked` (env ``LNPSTORE_LOCK_TIMEOUT``).
DEFAULT_TIMEOUT_S = 600.0
#: A writer waits this long (s) without a message (another process's single write takes < 1 s).
QUIET_WAIT_S = 2.0

_PROCESS_START = time.time()
_held: dict[str, filelock.BaseFileLock] = {}  # store root -> lock held by this process
_sticky: set[str] = set()  # roots whose lock stays held until exit (commands)
_opened: set[str] = set()  # roots this process has cleaned up (once per process)
_hold_all_for_command = False
_guard = threading.RLock()
_thread_mutex: dict[str, threading.RLock] = {}  # store root -> one writing thread at a time


def lock_timeout_s() -> float:
    """How long (s) a writer waits for another one: ``LNPSTORE_LOCK_TIMEOUT`` or 600."""
    try:
        return float(os.environ.get("LNPSTORE_LOCK_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


@contextlib.contextmanager
def command_scope() -> Iterator[None]:
    """Within the block (a CLI command), a store lock taken is held until the block ends, so that a
    writing command keeps the store from its first write to its end and two commands never
    interleave their stages. Commands that only read never take the lock."""
    global _hold_all_for_command
    _hold_all_for_command = True
    try:
        yield
    finally:
        _hold_all_for_command = False
        with _guard:
            for key in list(_sticky):
                _sticky.discard(key)
                lock = _held.get(key)
                if lock is not None:
                    lock.release()
                    if not lock.is_locked:
                        _held.pop(key, None)


def owner(root: Path) -> dict:
    """Who holds (or last held) the store's lock: ``pid``, ``command``, ``since``; ``{}`` when unknown."""
    try:
        return json.loads((Path(root) / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _describe_owner(root: Path) -> str:
    o = owner(root)
    if not o:
        return f"store {root} is being written by another process"
    return f"store {root} is being written by PID {o.get('pid')} ({o.get('command', '?')}) since {o.get('since')}"


def _check_writable(root: Path) -> None:
    if not os.access(root, os.W_OK):
        raise StoreReadOnly(
            f"store {root} is read-only (no write permission on the folder), so it cannot be written. "
            "Hint: reading commands (info, query, sql, check) work; copy the store to a writable folder "
            "to run a writing command"
        )


def _acquire(root: Path) -> filelock.BaseFileLock:
    _check_writable(root)
    lock = filelock.FileLock(str(root / LOCK_FILE), thread_local=False)
    try:
        lock.acquire(timeout=min(QUIET_WAIT_S, lock_timeout_s()))  # short waits (another write) silently
        return lock
    except filelock.Timeout:
        pass
    except PermissionError:
        raise StoreReadOnly(
            f"cannot create the lock file {root / LOCK_FILE}: the store is read-only. "
            "Hint: copy the store to a writable folder to run a writing command"
        ) from None
    timeout = lock_timeout_s()
    log.warning("%s; waiting up to %.0f s more (LNPSTORE_LOCK_TIMEOUT)", _describe_owner(root), timeout)
    try:
        lock.acquire(timeout=timeout)
    except filelock.Timeout:
        raise StoreLocked(
            f"{_describe_owner(root)}; gave up after {timeout:.0f} s. Hint: wait for that command to "
            "finish (one writer per store), or set LNPSTORE_LOCK_TIMEOUT to wait longer"
        ) from None
    return lock


def _on_acquire(root: Path) -> None:
    """Record who holds the lock (for the message a waiting writer prints)."""
    command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv[:4]))
    info = {"pid": os.getpid(), "command": command, "since": datetime.now(UTC).isoformat(timespec="seconds")}
    atomic_write_text(json.dumps(info), root / OWNER_FILE)


def _clean(root: Path) -> None:
    n = remove_stale_tmp_tree(root)
    if n:
        log.info("store %s: removed %d temporary file(s) left by an interrupted writer", root, n)


def remove_stale_tmp_tree(root: Path) -> int:
    """Remove every ``.tmp-PID-*`` file or folder under ``root`` left by a writer that is gone: one
    whose process no longer runs and that is older than this process, or any older than
    :data:`STALE_TMP_S` (a PID reused, another host). Call with the store lock held."""
    n = 0
    now = time.time()
    for p in list(Path(root).rglob(f"{TMP_PREFIX}*")):
        pid = p.name[len(TMP_PREFIX) :].split("-", 1)[0]
        try:
            mtime = p.lstat().st_mtime
            dead = pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid))
            if not ((dead and mtime < _PROCESS_START) or now - mtime > STALE_TMP_S):
                continue
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            n += 1
        except FileNotFoundError:
            continue
    return n


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


@contextlib.contextmanager
def store_lock(root: str | os.PathLike, on_first: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the store's write lock for the block (re-entrant within the process).

    The first time this process takes the lock of a store, stale temporaries are removed and
    ``on_first`` (the store's recovery of interrupted writes) runs, with the lock held.
    """
    key = str(Path(root).resolve())
    with _guard:
        mutex = _thread_mutex.setdefault(key, threading.RLock())
    with mutex, _file_lock(key, on_first):
        yield


@contextlib.contextmanager
def _file_lock(key: str, on_first: Callable[[], None] | None) -> Iterator[None]:
    with _guard:
        lock = _held.get(key)
        if lock is None:
            lock = _acquire(Path(key))
            _held[key] = lock
            try:
                _on_acquire(Path(key))
                if key not in _opened:
                    _opened.add(key)
                    _clean(Path(key))
                    if on_first is not None:
                        on_first()
            except BaseException:
                _held.pop(key, None)
                lock.release()
                raise
            if _hold_all_for_command:
                _sticky.add(key)
        else:
            lock.acquire()  # already ours: only counts up
    try:
        yield
    finally:
        with _guard:
            if key in _sticky and lock.lock_counter == 1:
                pass  # a command keeps its store until it exits
            else:
                lock.release()
                if not lock.is_locked:
                    _held.pop(key, None)


def holds_lock(root: str | os.PathLike) -> bool:
    """Whether this process holds the store's write lock now."""
    return str(Path(root).resolve()) in _held


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "LOCK_FILE",
    "OWNER_FILE",
    "command_scope",
    "holds_lock",
    "lock_timeout_s",
    "owner",
    "remove_stale_tmp_tree",
    "store_lock",
]
