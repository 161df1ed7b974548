"""Where per-field work runs: in-process, on a local Dask cluster, or on a remote Dask scheduler.

``Executor`` is the one knob for parallelism and resources: every stage that works field by field
(tracking, registration, crops, tsfresh) passes its picklable unit of work to :meth:`Executor.map`
and writes the results to the store itself, in the driver (workers never touch the store).

Resources: each worker gets ``threads_per_worker`` threads, and the thread pools of the libraries it
runs (OpenMP/BLAS via OMP_NUM_THREADS etc., Polars, XLA, DuckDB through lnpstore's own reads) are
capped to the same number, so ``n_workers * threads_per_worker`` is the CPU the job uses. On a remote
cluster (``address=...``, e.g. one started by dask-jobqueue on SLURM) the caps are applied when the
workers are first used, which covers libraries they import afterwards; set the same variables in the
job script to cover libraries the workers have already imported.

    >>> with Executor(n_workers=2) as ex:                    # doctest: +SKIP
    ...     for result in ex.map(track_one_field, jobs, desc="track"):
    ...         store.write("tracks", result)
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, TypeVar

from lnpstore.runtime.progress import bar
from lnpstore.store.errors import ExecutionError, LnpstoreError

#: Where work runs: this process one item at a time; a thread pool (I/O-bound work such as reading
#: TIFF headers); a process pool (CPU-bound pure-Python work on one machine, no Dask needed); Dask (a
#: local cluster, or a remote scheduler at ``address``: the stages' default, for clusters).
Backend = Literal["serial", "threads", "processes", "dask"]
BACKENDS: tuple[str, ...] = ("serial", "threads", "processes", "dask")

T = TypeVar("T")
R = TypeVar("R")

#: Environment variables that cap a library's thread pool; all are set to ``threads_per_worker``.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "POLARS_MAX_THREADS",
)


def thread_env(threads: int) -> dict[str, str]:
    """The environment that caps every library's thread pool at ``threads`` (including XLA's)."""
    env = {k: str(threads) for k in THREAD_ENV_VARS}
    env["XLA_FLAGS"] = (
        f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} intra_op_parallelism_threads={threads}"
    )
    return env


def _apply_thread_env(env: dict[str, str]) -> None:
    """Set the caps in this process (for libraries imported later) and in already-loaded pools."""
    os.environ.update(env)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(env["OMP_NUM_THREADS"]))
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass


class Executor:
    """Runs ``fn`` over items in parallel with Dask and yields results as they complete.

    Parameters
    ----------
    address : str, optional
        A Dask scheduler address (``tcp://host:8786``) to use an existing cluster; None starts a
        LocalCluster with ``n_workers`` workers.
    n_workers : int, optional
        Local workers (default: the CPU count divided by ``threads_per_worker``, at least 1).
    threads_per_worker : int
        Threads per worker, and the cap on every library's thread pool inside it.
    processes : bool
        Local workers as processes (True, the default: no GIL contention) or threads.
    """

    def __init__(
        self,
        address: str | None = None,
        n_workers: int | None = None,
        threads_per_worker: int = 1,
        processes: bool = True,
        *,
        backend: Backend = "dask",
        start_method: str = "spawn",
        _synchronous: bool = False,
    ):
        if threads_per_worker < 1:
            raise ExecutionError(f"threads_per_worker must be >= 1, got {threads_per_worker}")
        if n_workers is not None and n_workers < 1:
            raise ExecutionError(f"n_workers must be >= 1, got {n_workers}")
        if backend not in BACKENDS:
            raise ExecutionError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.backend: Backend = "serial" if _synchronous else backend
        self.address = address
        self.threads_per_worker = threads_per_worker
        self.client: Any = None
        self.cluster: Any = None
        self.pool: cf.Executor | None = None
        self.env = thread_env(threads_per_worker)
        n = n_workers or max(1, (os.cpu_count() or 1) // threads_per_worker)
        if self.backend == "serial":
            self.n_workers = 1
        elif self.backend == "threads":
            self.pool = cf.ThreadPoolExecutor(max_workers=n)
            self.n_workers = n
        elif self.backend == "processes":
            # spawn (default): a fresh interpreter per worker (fork after jax/XLA threads start can
            # deadlock), but it re-imports the caller's __main__; "fork" suits numpy-only work called from
            # an unguarded script. The thread caps are set before the worker runs anything.
            if start_method not in mp.get_all_start_methods():
                start_method = "spawn"
            self.pool = cf.ProcessPoolExecutor(
                max_workers=n,
                mp_context=mp.get_context(start_method),
                initializer=_apply_thread_env,
                initargs=(self.env,),
            )
            self.n_workers = n
        else:
            self._start_dask(address, n, processes)

    def _start_dask(self, address: str | None, n: int, processes: bool) -> None:
        from dask.distributed import Client, LocalCluster

        if address:
            try:
                self.client = Client(address, timeout="30s")
            except (OSError, TimeoutError) as exc:
                raise ExecutionError(
                    f"cannot reach the Dask scheduler at {address} ({exc}). Hint: check the address "
                    "(tcp://host:port) and that the scheduler runs, or leave --dask out to work locally"
                ) from None
            self.client.run(_apply_thread_env, self.env)
            self.n_workers = len(self.client.scheduler_info().get("workers", {}))
            return
        kwargs: dict[str, Any] = {}
        if processes:
            kwargs["env"] = self.env  # set in each worker process before it imports anything
        self.cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=self.threads_per_worker,
            processes=processes,
            dashboard_address=None,
            **kwargs,
        )
        self.client = Client(self.cluster)
        self.n_workers = n

    @classmethod
    def serial(cls) -> Executor:
        """An executor that runs everything in this process, one item after the other (tests, tiny jobs)."""
        return cls(backend="serial")

    @classmethod
    def synchronous(cls) -> Executor:
        """The same as :meth:`serial` (its older name)."""
        return cls(backend="serial")

    def map(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        desc: str,
        unit: str = "field",
        ordered: bool = False,
        show_progress: bool = True,
    ) -> Iterator[R]:
        """``fn(item)`` for every item, yielded in completion order (``ordered``: in item order), with a
        progress bar.

        A failing item raises :class:`ExecutionError` naming the item (its ``repr``, shortened) and
        the original error; results already yielded stay valid, so a resumable stage can be re-run.
        """
        items = list(items)
        with bar(desc=desc, total=len(items), unit=unit, disable=not show_progress) as pb:
            if self.backend == "serial":
                for it in items:
                    yield _call(fn, it)
                    pb.update(1)
            elif self.backend == "dask":
                for res in self._map_dask(fn, items, desc, ordered):
                    yield res
                    pb.update(1)
            else:
                for res in self._map_pool(fn, items, desc, ordered):
                    yield res
                    pb.update(1)

    def _map_pool(self, fn: Callable[[T], R], items: list[T], desc: str, ordered: bool) -> Iterator[R]:
        assert self.pool is not None
        futures = [self.pool.submit(fn, it) for it in items]
        index = {f: i for i, f in enumerate(futures)}
        try:
            for fut in futures if ordered else cf.as_completed(futures):
                exc = fut.exception()
                if exc is not None:
                    _raise_item_error(desc, items[index[fut]], exc)
                yield fut.result()
        finally:
            for f in futures:
                f.cancel()

    def _map_dask(self, fn: Callable[[T], R], items: list[T], desc: str, ordered: bool) -> Iterator[R]:
        from dask.distributed import as_completed

        futures = self.client.map(fn, items, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut in futures if ordered else as_completed(futures):
                if ordered:
                    fut.exception() if fut.status == "error" else fut.result()  # wait for it
                if fut.status == "error":
                    _raise_item_error(desc, items[index[fut.key]], fut.exception())
                res = fut.result()
                fut.release()
                yield res
        finally:
            for f in futures:
                f.cancel()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.address or self.backend
        return f"Executor({where}, workers={self.n_workers}, threads_per_worker={self.threads_per_worker})"


def parallel_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    desc: str,
    unit: str = "field",
    executor: Executor | None = None,
) -> list[R]:
    """``fn`` over ``items`` in item order through ``executor`` (serially, in this process, when None)."""
    ex = executor if executor is not None else Executor.serial()
    return list(ex.map(fn, items, desc=desc, unit=unit, ordered=True))


def _raise_item_error(desc: str, item: Any, exc: BaseException) -> None:
    if isinstance(exc, LnpstoreError):
        raise exc
    raise ExecutionError(f"{desc}: work item {_short(item)} failed: {exc!r}") from exc


def _call(fn: Callable[[T], R], item: T) -> R:
    try:
        return fn(item)
    except LnpstoreError:
        raise
    except Exception as exc:
        raise ExecutionError(f"work item {_short(item)} failed: {exc!r}") from exc


def _short(item: Any, n: int = 160) -> str:
    text = repr(item)
    return text if len(text) <= n else text[: n - 3] + "..."
