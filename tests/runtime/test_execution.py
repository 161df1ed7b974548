"""The Executor: synchronous and local Dask runs, errors, thread caps."""

from __future__ import annotations

import os

import pytest

from lnpstore.runtime.execution import ExecutionError, Executor, thread_env
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
