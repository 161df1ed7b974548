"""Tracks -> model inputs for one plate: register BF, build the cells table (targets, split), crop.

The one composition of the three steps, used by ``lnpstore crop`` and by the run pipeline (which
passes ``run_step`` to time each step as a stage of its own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import polars as pl

from lnpstore.runtime.execution import Executor
from lnpstore.store.core import Store
from lnpstore.study.crops import CropSettings, crop_plate
from lnpstore.study.registration import register_plate
from lnpstore.study.targets import SplitBy, build_cells

R = TypeVar("R")


@dataclass
class PreparedPlate:
    """What the three steps wrote for one plate."""

    plate: str
    registration: pl.DataFrame
    cells: pl.DataFrame
    n_crops: int


def _run_now(name: str, fn: Callable[[], R]) -> R:
    return fn()


def prepare_plate(
    store: Store,
    plate: str,
    *,
    crop: CropSettings | None = None,
    seed: int = 0,
    split_by: SplitBy = "cell",
    executor: Executor | None = None,
    run_step: Callable[[str, Callable[[], Any]], Any] = _run_now,
) -> PreparedPlate:
    """Register, build cells and crop ``plate`` (each step skips what the store already holds).

    ``crop`` sets the input frames 1..t_in and the division rule of both the cells table and the crops;
    ``seed`` and ``split_by`` set the train/test/fold split.
    """
    crop = crop or CropSettings()
    reg = run_step("register", lambda: register_plate(store, plate))
    cells = run_step(
        "cells",
        lambda: build_cells(
            store, plate, t_in=crop.t_in, seed=seed, split_by=split_by, division_rule=crop.division_rule
        ),
    )
    n = run_step("crop", lambda: crop_plate(store, plate, executor=executor, settings=crop))
    return PreparedPlate(plate, reg, cells, int(n))
