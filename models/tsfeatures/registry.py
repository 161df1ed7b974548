"""The calculator registry of the array engine: tsfresh calculator name -> batched implementation.

A batched calculator takes ``X`` (n_series, n_steps) float64 and returns, like tsfresh's own calculator
of the same name, a list of ``(key, values)`` pairs, ``values`` one float per series; the feature name is
``{kind}__{calculator}`` plus ``__{key}`` when the key is not empty, exactly as
``tsfresh.feature_extraction.extraction._do_extraction_on_chunk`` builds it.

* ``@simple(name)``: tsfresh's ``fctype="simple"``; the function gets ``X`` and one parameter dict as
  keyword arguments; the key is tsfresh's ``convert_to_output_format(param)``.
* ``@combiner(name)``: tsfresh's ``fctype="combiner"``; the function gets ``X`` and the parameter list
  and returns the keys itself (in tsfresh's order, with tsfresh's spelling).
* :func:`per_series`: tsfresh's own calculator, called series by series (correct by construction; used
  for parameters the batched code does not cover, e.g. a ``query`` of ``query_similarity_count``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lnpstore.store.errors import SettingsError

Batched = Callable[[np.ndarray, Any], list[tuple[str, np.ndarray]]]

#: name -> batched implementation (filled by the calculator modules on import)
REGISTRY: dict[str, Batched] = {}

#: Calculators tsfresh itself leaves out on our data: ``linear_trend_timewise`` needs a DatetimeIndex,
#: and the time column of :func:`lnpstore.models.tsgbm.panel_to_tsfresh` is an integer frame, so
#: ``extract_features`` warns and computes nothing for it (tested); the array engine does the same.
SKIPPED_BY_TSFRESH: frozenset[str] = frozenset({"linear_trend_timewise"})


def simple(name: str) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Register a batched tsfresh ``simple`` calculator ``f(X, **param) -> (n_series,)``."""

    def deco(f: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        def run(X: np.ndarray, params: Sequence[dict] | None) -> list[tuple[str, np.ndarray]]:
            from tsfresh.utilities.string_manipulation import convert_to_output_format

            if not params:
                return [("", _as_float(f(X), X))]
            return [(convert_to_output_format(p), _as_float(f(X, **p), X)) for p in params]

        REGISTRY[name] = run
        return f

    return deco


def combiner(name: str) -> Callable[[Batched], Batched]:
    """Register a batched tsfresh ``combiner`` calculator ``f(X, params) -> [(key, (n_series,))]``."""

    def deco(f: Batched) -> Batched:
        def run(X: np.ndarray, params: Sequence[dict]) -> list[tuple[str, np.ndarray]]:
            return [(k, _as_float(v, X)) for k, v in f(X, params)]

        REGISTRY[name] = run
        return f

    return deco


def _as_float(v: Any, X: np.ndarray) -> np.ndarray:
    """(n_series,) float64 of a batched result (scalars broadcast; booleans 0/1 as tsfresh stores them)."""
    return np.broadcast_to(np.asarray(v, dtype=np.float64), (X.shape[0],)).copy()


def per_series(name: str, X: np.ndarray, params: Sequence[dict] | None) -> list[tuple[str, np.ndarray]]:
    """tsfresh's own calculator ``name`` on each row of ``X`` (slow; correct by construction)."""
    import warnings

    import tsfresh.feature_extraction.feature_calculators as fc

    func = getattr(fc, name)
    keys: list[str] | None = None
    cols: list[list[float]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for x in X:
            if func.fctype == "combiner":
                res = list(func(x, param=params))
            elif params:
                from tsfresh.utilities.string_manipulation import convert_to_output_format

                res = [(convert_to_output_format(p), func(x, **p)) for p in params]
            else:
                res = [("", func(x))]
            if keys is None:
                keys, cols = [k for k, _ in res], [[] for _ in res]
            for c, (_, v) in zip(cols, res, strict=True):
                c.append(float(v))
    if keys is None:  # no series
        return []
    return [(k, np.asarray(c, np.float64)) for k, c in zip(keys, cols, strict=True)]


def check_supported(fc_parameters: dict[str, Any]) -> None:
    """Raise :class:`SettingsError` naming every calculator the array engine does not know."""
    import tsfresh.feature_extraction.feature_calculators as fc

    unknown = [n for n in fc_parameters if n not in REGISTRY and n not in SKIPPED_BY_TSFRESH]
    if unknown:
        known_to_tsfresh = [n for n in unknown if hasattr(fc, n)]
        raise SettingsError(
            f"the array engine has no batched implementation of the tsfresh calculator(s) {unknown} "
            f"({'known to this tsfresh version' if known_to_tsfresh else 'unknown to tsfresh too'}). "
            "Hint: use engine='tsfresh' (--tsfresh-engine tsfresh), or add the calculator to "
            "lnpstore/models/tsfeatures/ with a test against tsfresh."
        )


__all__ = ["REGISTRY", "SKIPPED_BY_TSFRESH", "check_supported", "combiner", "per_series", "simple"]
