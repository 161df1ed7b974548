"""The Executor: synchronous and local Dask runs, errors, thread caps."""

from __future__ import annotations

import os

import pytest

from lnpstore.runtime.execution import ExecutionError, Executor, parallel_map, thread_env
from lnpstore.store.errors import LnpstoreError


def square(x: int) -> int:
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise RuntimeError("boom")
    return x


def read_env(_: int) -> str | None:
    return os.environ.get("OMP_NUM_THREADS")


def test_synchronous_map():
    with Executor.synchronous() as ex:
        assert sorted(ex.map(square, range(5), desc="sq")) == [0, 1, 4, 9, 16]


def test_synchronous_error_names_item():
    with Executor.synchronous() as ex, pytest.raises(ExecutionError, match="work item 3 failed.*boom"):
        list(ex.map(fail_on_three, range(5), desc="x"))


def test_thread_env():
    env = thread_env(2)
    assert env["OMP_NUM_THREADS"] == "2" and env["POLARS_MAX_THREADS"] == "2"
    assert "intra_op_parallelism_threads=2" in env["XLA_FLAGS"]
    with pytest.raises(LnpstoreError):
        Executor(threads_per_worker=0)


@pytest.mark.slow
def test_local_cluster_map_and_errors():
    """A real local Dask cluster (1 worker process): results as completed, thread caps set in the worker."""
    with Executor(n_workers=1, threads_per_worker=1) as ex:
        assert sorted(ex.map(square, range(6), desc="sq")) == [0, 1, 4, 9, 16, 25]
        assert list(ex.map(read_env, [0], desc="env")) == ["1"]
        with pytest.raises(ExecutionError, match="work item 3 failed.*boom"):
            list(ex.map(fail_on_three, range(5), desc="x"))
    assert ex.client is None


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_pool_backends_map_in_order_and_name_failures(backend):
    """Thread and process pools (no Dask): ordered results, thread caps in process workers, errors named."""
    with Executor(backend=backend, n_workers=2) as ex:
        assert list(ex.map(square, range(8), desc="sq", ordered=True)) == [x * x for x in range(8)]
        if backend == "processes":
            assert list(ex.map(read_env, [0], desc="env")) == ["1"]
        with pytest.raises(ExecutionError, match="work item 3 failed.*boom"):
            list(ex.map(fail_on_three, range(5), desc="x"))
    assert ex.pool is None


def test_parallel_map_defaults_to_serial_in_item_order():
    assert parallel_map(square, [3, 1, 2], desc="sq") == [9, 1, 4]
    with pytest.raises(ExecutionError, match="work item 3 failed"):
        parallel_map(fail_on_three, [1, 3], desc="x")


def test_unknown_backend_is_an_error():
    with pytest.raises(ExecutionError, match="backend must be one of"):
        Executor(backend="gpu")  # type: ignore[arg-type]
