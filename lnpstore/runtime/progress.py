"""Progress bars for long work (tqdm), quiet when LNPSTORE_QUIET=1 or stderr is not a terminal in CI."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def quiet() -> bool:
    return os.environ.get("LNPSTORE_QUIET", "") == "1"


def progress(it: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Wrap an iterable in a progress bar on stderr (rate shown in ``unit``/s)."""
    return iter(tqdm(it, desc=desc, total=total, unit=unit, disable=quiet(), dynamic_ncols=True, leave=False))


def bar(*, desc: str, total: int | None = None, unit: str = "it", disable: bool = False) -> tqdm:
    """A manual progress bar (``with bar(...) as b: b.update(n)``)."""
    return tqdm(
        desc=desc, total=total, unit=unit, disable=disable or quiet(), dynamic_ncols=True, leave=False
    )
