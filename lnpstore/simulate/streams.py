"""The plate's random streams, each keyed by position: fields are independent and may run in any order.

Every (well, field) draws from its own ``numpy.random.SeedSequence(seed)`` child (keyed by the well's
row, column and the field), divisions from a second child per field (so a plate without divisions draws
exactly what it drew before divisions existed), the oracle's Monte Carlo from a third, and the plate's
BF registration offset from a plate stream.
"""

from __future__ import annotations

import numpy as np

from lnpstore.instrument.layout import split_well

#: Spawn-key word of the division stream ("div").
DIVISION_STREAM = 0x646976
#: Spawn-key word of the oracle's Monte Carlo stream.
ORACLE_STREAM = 7777
#: Spawn key of the plate stream.
PLATE_STREAM = 9999


def _well_key(well: str) -> tuple[int, int]:
    """(row index from A = 0, column number) of a well."""
    row, col = split_well(well)
    return ord(row) - ord("A"), col


def field_rng(seed: int, well: str, field_: int) -> np.random.Generator:
    """The field's stream: latents, placement, motion, static images, camera noise."""
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(*_well_key(well), field_))
    return np.random.default_rng(ss)


def division_rng(seed: int, well: str, field_: int) -> np.random.Generator:
    """The field's division stream: separate from the field's stream, which it leaves untouched."""
    key = (*_well_key(well), field_, DIVISION_STREAM)
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=key))


def oracle_rng(seed: int, field_: int) -> np.random.Generator:
    """The oracle's Monte Carlo stream (keyed by the field number only, as it always was)."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(ORACLE_STREAM, field_)))


def plate_rng(seed: int) -> np.random.Generator:
    """The plate's stream (the BF registration offset)."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(PLATE_STREAM,)))
