"""Progress for long work: a tqdm bar on a terminal, plain periodic lines otherwise.

On a terminal (stderr is a TTY) a bar redraws in place. Into a file, a pipe or a CI log, carriage
returns would pile up, so :class:`LineProgress` prints a plain line instead, when a further 10 % is
done and at least :data:`LINE_INTERVAL_S` seconds have passed since the last line (short work prints
nothing). ``LNPSTORE_QUIET=1`` silences both.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

#: The least time between two plain progress lines (seconds).
LINE_INTERVAL_S = 30.0
#: Plain lines are printed when at least this fraction more of the work is done.
LINE_STEP = 0.1


def quiet() -> bool:
    """True when ``LNPSTORE_QUIET=1``: no progress output at all."""
    return os.environ.get("LNPSTORE_QUIET", "") == "1"


def is_terminal() -> bool:
    """True when stderr is a terminal (bars redraw in place there)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


def format_seconds(s: float) -> str:
    """``42 s``, ``3.5 min`` or ``1.2 h``."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


class LineProgress:
    """A tqdm-like counter that prints plain lines to stderr (no carriage returns).

    It has what callers of :func:`bar` and pooch's downloader use: ``total`` (settable), ``n``,
    ``update``, ``reset``, ``set_postfix_str``, ``close`` and the context-manager protocol.
    """

    def __init__(
        self,
        *,
        desc: str,
        total: int | None = None,
        unit: str = "it",
        unit_scale: bool = False,
        interval_s: float = LINE_INTERVAL_S,
        step: float = LINE_STEP,
    ) -> None:
        self.desc = desc
        self.total = total
        self.unit = unit
        self.unit_scale = unit_scale
        self.interval_s = interval_s
        self.step = step
        self.n = 0
        self.postfix = ""
        self.lines: list[str] = []  # what was printed (for tests and summaries)
        self._t0 = time.monotonic()
        self._last_t = self._t0
        self._last_frac = 0.0

    def _amount(self, n: float) -> str:
        if not self.unit_scale:
            return f"{n:,.0f}"
        for prefix in ("", "k", "M", "G"):
            if abs(n) < 1000:
                return f"{n:.1f} {prefix}"
            n /= 1000
        return f"{n:.1f} T"

    def update(self, n: float = 1) -> None:
        """Count ``n`` more units; print a line when a further step is done and enough time passed."""
        self.n += n  # type: ignore[assignment]
        now = time.monotonic()
        if now - self._last_t < self.interval_s:
            return
        if self.total:
            frac = self.n / self.total
            if frac - self._last_frac < self.step and frac < 1:
                return
            self._last_frac = frac
            done = f"{self._amount(self.n)}/{self._amount(self.total)} {self.unit} ({100 * frac:.0f} %)"
        else:
            done = f"{self._amount(self.n)} {self.unit}"
        self._last_t = now
        extra = f", {self.postfix}" if self.postfix else ""
        self._emit(f"  {self.desc}: {done}, {format_seconds(now - self._t0)}{extra}")

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        print(line, file=sys.stderr, flush=True)

    def reset(self, total: int | None = None) -> None:
        """Start counting again (``total`` kept unless given)."""
        self.n = 0
        if total is not None:
            self.total = total

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        """Nothing to redraw (tqdm compatibility)."""

    def close(self) -> None:
        """Nothing to clear (the stage's own line reports the end)."""

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bar(
    *, desc: str, total: int | None = None, unit: str = "it", disable: bool = False, unit_scale: bool = False
) -> Any:
    """A progress counter (``with bar(...) as b: b.update(n)``): a tqdm bar on a terminal, plain
    periodic lines otherwise, nothing when ``disable`` or :func:`quiet`."""
    if disable or quiet():
        return tqdm(total=total, disable=True)
    if is_terminal():
        return tqdm(desc=desc, total=total, unit=unit, unit_scale=unit_scale, dynamic_ncols=True, leave=False)
    return LineProgress(desc=desc, total=total, unit=unit, unit_scale=unit_scale)


def progress(it: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Iterate ``it`` with a progress counter on stderr (see :func:`bar`)."""
    if total is None:
        try:
            total = len(it)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with bar(desc=desc, total=total, unit=unit) as b:
        for x in it:
            yield x
            b.update(1)
