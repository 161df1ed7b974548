"""tsfresh's features at array speed: every series of a batch at once, with tsfresh's names.

:func:`array_features` computes a tsfresh ``fc_parameters`` dict (e.g. ``EfficientFCParameters()``)
for a float array (n_series, n_steps) of equal-length series; :func:`panel_features` does it for a panel
(n_cases, n_steps, n_channels) and returns the DataFrame ``tsfresh.extract_features`` returns for the
same panel in :func:`lnpstore.models.tsgbm.panel_to_tsfresh` layout: one row per case (index ``id``),
columns ``{channel}__{calculator}__{params}`` in tsfresh's order. tsfresh stays the reference: the tests
compare every feature with its ``extract_features`` on the same series.

The calculators are batched in ``basic``, ``symbolic``, ``spectral`` and ``regression`` (numpy / scipy /
pywt along the batch axis); the calculator list comes from the settings given (never a copy), and a
calculator without a batched implementation is an error naming it (:func:`check_supported`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from lnpstore.models.tsfeatures import basic, regression, spectral, symbolic  # noqa: F401 (registers)
from lnpstore.models.tsfeatures.registry import REGISTRY, SKIPPED_BY_TSFRESH, check_supported

from lnpstore.store.errors import SettingsError

#: Series computed together: bounds the intermediates (e.g. (series, steps, 30) for the Langevin bins)
#: to a few hundred MB at 20 steps while keeping numpy's per-call overhead negligible.
CHUNK_SERIES = 4096


def array_features(
    X: np.ndarray, fc_parameters: Mapping[str, Any], kind: str = "x"
) -> tuple[np.ndarray, list[str]]:
    """Features of every row of ``X`` (n_series, n_steps): (values (n_series, n_features), names
    ``{kind}__{calculator}[__{params}]`` in tsfresh's order). Finite values only; computed in chunks
    of :data:`CHUNK_SERIES` rows."""
    import warnings

    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"array_features needs (n_series, n_steps), got shape {X.shape}")
    if X.shape[1] == 0:
        raise ValueError("array_features: series of length 0 (tsfresh extracts nothing from them)")
    if not np.isfinite(X).all():
        raise SettingsError(
            "the array engine needs finite series (NaN/inf found). Hint: use engine='tsfresh' "
            "(--tsfresh-engine tsfresh) for series with missing values"
        )
    fc = dict(fc_parameters)
    check_supported(fc)
    if X.shape[0] > CHUNK_SERIES:
        parts = [array_features(X[i : i + CHUNK_SERIES], fc, kind) for i in range(0, len(X), CHUNK_SERIES)]
        return np.concatenate([v for v, _ in parts]), parts[0][1]
    names: list[str] = []
    cols: list[np.ndarray] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for calc, params in fc.items():
            if calc in SKIPPED_BY_TSFRESH:
                continue
            for key, v in REGISTRY[calc](X, params):
                names.append(f"{kind}__{calc}" + (f"__{key}" if key else ""))
                cols.append(v)
    values = np.stack(cols, axis=1) if cols else np.zeros((X.shape[0], 0))
    return values, names


def panel_features(
    X: np.ndarray,
    channels: list[str],
    *,
    default_fc_parameters: Mapping[str, Any] | None = None,
    kind_to_fc_parameters: Mapping[str, Mapping[str, Any]] | None = None,
    lengths: np.ndarray | None = None,
) -> pd.DataFrame:
    """tsfresh features of a panel (n_cases, n_steps, n_channels): what ``extract_features`` returns
    for :func:`lnpstore.models.tsgbm.panel_to_tsfresh` of it (rows = cases, index ``id``; channel by
    channel, calculators in settings order). ``kind_to_fc_parameters`` as tsfresh's: a channel listed
    there gets its own settings, the others ``default_fc_parameters``; a channel with no settings is
    left out. ``lengths``: real steps per case; cases are grouped by length (padding is not used)."""
    X = np.asarray(X, dtype=np.float64)
    n, t, c = X.shape
    if len(channels) != c:
        raise ValueError(f"{len(channels)} channel names for {c} channels")
    if default_fc_parameters is None and kind_to_fc_parameters is None:  # tsfresh's default
        from tsfresh.feature_extraction import ComprehensiveFCParameters

        default_fc_parameters = ComprehensiveFCParameters()
    per_channel: list[dict[str, Any] | None] = []
    for ch in channels:
        if kind_to_fc_parameters and ch in kind_to_fc_parameters:
            per_channel.append(dict(kind_to_fc_parameters[ch]))
        else:
            per_channel.append(dict(default_fc_parameters) if default_fc_parameters is not None else None)
    L = np.full(n, t) if lengths is None else np.asarray(lengths, dtype=np.int64)
    frames: list[pd.DataFrame] = []
    for length in np.unique(L):
        rows = np.nonzero(L == length)[0]
        if length == 0:
            continue
        frames.append(_panel_block(X[rows, :length, :], channels, per_channel, rows))
    if not frames:
        return pd.DataFrame(index=pd.RangeIndex(n, name="id"), dtype=np.float64)
    out = pd.concat(frames).sort_index()
    out = out.reindex(np.arange(n))
    out.index.name = "id"
    return out


def _panel_block(X: np.ndarray, channels: list[str], per_channel: list, rows: np.ndarray) -> pd.DataFrame:
    """Features of equal-length cases; channels that share settings are computed as one batch."""
    n, _, c = X.shape
    blocks: dict[int, tuple[np.ndarray, list[str]]] = {}
    groups: dict[str, list[int]] = {}
    import json

    for j, fc in enumerate(per_channel):
        if fc is not None:
            groups.setdefault(json.dumps(fc, sort_keys=True, default=str), []).append(j)
    for idxs in groups.values():
        fc = per_channel[idxs[0]]
        batch = np.ascontiguousarray(np.moveaxis(X[:, :, idxs], 2, 0).reshape(len(idxs) * n, -1))
        vals, names = array_features(batch, fc, kind="")
        vals = vals.reshape(len(idxs), n, -1)
        for k, j in enumerate(idxs):
            blocks[j] = (vals[k], [f"{channels[j]}{nm}" for nm in names])
    data, cols = [], []
    for j in range(c):
        if j in blocks:
            data.append(blocks[j][0])
            cols += blocks[j][1]
    values = np.concatenate(data, axis=1) if data else np.zeros((n, 0))
    return pd.DataFrame(values, index=pd.Index(rows, name="id"), columns=cols)


def supported() -> list[str]:
    """Names of the calculators with a batched implementation."""
    return sorted(REGISTRY)


__all__ = ["array_features", "check_supported", "panel_features", "supported"]
