"""JAX's persistent compilation cache for lnpstore: compiled programs survive the process.

Call :func:`enable` before the first compile (the LSTM and CNN stages do). The cache lives in
``$LNPSTORE_CACHE_DIR/jax`` (default ``~/.cache/lnpstore/jax``); ``LNPSTORE_JAX_CACHE=0`` turns it off.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_OFF = "LNPSTORE_JAX_CACHE"
_enabled: Path | None = None


def cache_root() -> Path:
    env = os.environ.get("LNPSTORE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "lnpstore"


def enable(path: str | Path | None = None, *, min_compile_time_s: float = 0.1) -> Path | None:
    """Turn on JAX's persistent compilation cache at ``path`` (default ``cache_root() / 'jax'``).

    Returns the folder, or None when disabled by ``LNPSTORE_JAX_CACHE=0`` or the folder cannot be
    created. Idempotent; compiles shorter than ``min_compile_time_s`` are not stored.
    """
    global _enabled
    if os.environ.get(ENV_OFF, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    d = Path(path) if path is not None else cache_root() / "jax"
    if _enabled == d:
        return d
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(d))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    try:  # the cache is initialised once per process: re-initialise if a compile already happened
        from jax._src import compilation_cache as cc

        cc.reset_cache()
    except Exception:  # pragma: no cover - private API moved
        pass
    _enabled = d
    return d


def enabled() -> Path | None:
    """The folder of the cache enabled in this process, or None."""
    return _enabled


__all__ = ["cache_root", "enable", "enabled"]
