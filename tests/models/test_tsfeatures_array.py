"""The array engine (lnpstore.models.tsfeatures) against tsfresh's own extract_features on the same
series: every EfficientFCParameters feature, names and order included."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from lnpstore.models.tsfeatures import array_features, check_supported, panel_features
from lnpstore.models.tsfeatures.registry import SKIPPED_BY_TSFRESH
from lnpstore.models.tsfeatures.symbolic import histogram_counts
from lnpstore.models.tsgbm import extract, panel_to_tsfresh

from lnpstore.store.errors import SettingsError

RTOL, ATOL = 1e-6, 1e-9


def _efficient() -> dict:
    from tsfresh.feature_extraction import EfficientFCParameters

    return dict(EfficientFCParameters())


def _tsfresh(X: np.ndarray, channels: list[str], fc: dict) -> pd.DataFrame:
    from tsfresh import extract_features

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        F = extract_features(
            panel_to_tsfresh(X, channels),
            column_id="id",
            column_sort="time",
            default_fc_parameters=fc,
            n_jobs=0,
            disable_progressbar=True,
        )
    return F.astype(np.float64)


def _assert_same(ref: pd.DataFrame, got: pd.DataFrame) -> None:
    assert list(got.columns) == list(ref.columns)  # names and order
    r, a = ref.to_numpy(), got.to_numpy()
    bad = ~np.isclose(a, r, rtol=RTOL, atol=ATOL, equal_nan=True)
    where = [(ref.columns[j], r[bad[:, j], j][:2], a[bad[:, j], j][:2]) for j in np.nonzero(bad.any(0))[0]]
    assert not bad.any(), f"{bad.sum()} values differ from tsfresh: {where[:5]}"


def _panel(kind: str, n_cases: int, n_steps: int, n_channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(size=(n_cases, n_steps, n_channels))
    if kind == "walk":  # the study's embeddings drift: random walks with an offset
        return 3.0 + np.cumsum(rng.normal(size=(n_cases, n_steps, n_channels)), axis=1)
    if kind == "int":  # ties everywhere
        return rng.integers(-2, 3, size=(n_cases, n_steps, n_channels)).astype(np.float64)
    if kind == "const":
        return np.full((n_cases, n_steps, n_channels), 2.5)
    if kind == "mixed":  # the pathological ones, two of each (n_cases is ignored)
        t = np.arange(n_steps, dtype=np.float64)[None, :, None] * np.ones((2, 1, n_channels))
        return np.concatenate(
            [
                rng.normal(size=(2, n_steps, n_channels)) * 1e3,  # large values
                rng.standard_t(2, size=(2, n_steps, n_channels)) * 1e-3,  # small, heavy-tailed
                np.round(rng.normal(size=(2, n_steps, n_channels)), 1),  # 0.3 is 0.2999..: Benford's digit
                rng.integers(0, 2, size=(2, n_steps, n_channels)).astype(np.float64),  # exact ADF fits
                np.sin(t),  # an exact AR(2): ADF's lag choice on residuals ~0
                t,  # a line: Langevin's cubic term ~0, an exact linear trend
            ]
        )
    raise ValueError(kind)


CASES = [
    ("walk", 4, 20, 3),  # the study's shape: 20 frames, a few embedding channels
    ("normal", 4, 5, 2),
    ("normal", 4, 10, 2),
    ("normal", 4, 15, 2),
    ("int", 5, 20, 2),
    ("int", 5, 10, 1),
    ("const", 2, 20, 1),
    ("const", 2, 25, 1),
    ("normal", 3, 3, 2),  # short: most lagged features are NaN or 0 by tsfresh's rules
    ("int", 3, 4, 1),
    ("normal", 3, 25, 1),  # > 20 steps: AR(10) is fitted, CWT-peak noise windows of 2 points
    ("mixed", 0, 15, 1),
    ("mixed", 0, 20, 1),
    ("normal", 2, 2, 1),
    ("normal", 2, 1, 1),
]


@pytest.mark.parametrize(("kind", "n_cases", "n_steps", "n_channels"), CASES)
def test_efficient_features_equal_tsfresh(kind: str, n_cases: int, n_steps: int, n_channels: int) -> None:
    X = _panel(kind, n_cases, n_steps, n_channels, seed=n_steps)
    channels = [f"e{i:02d}" for i in range(n_channels)]
    fc = _efficient()
    _assert_same(_tsfresh(X, channels, fc), panel_features(X, channels, default_fc_parameters=fc))


def test_selected_features_and_unequal_lengths_equal_the_tsfresh_engine() -> None:
    """tsgbm's second use: only the selected features (kind_to_fc_parameters), padded cases."""
    from tsfresh.feature_extraction.settings import from_columns

    X = _panel("walk", 6, 12, 3, seed=1)
    lengths = np.array([12, 12, 9, 12, 9, 5])
    channels = ["a", "b", "c"]
    full = extract(X, channels, default_fc_parameters=_efficient(), lengths=lengths)
    picked = [c for c in full.columns if c.startswith(("a__", "c__"))][::37]
    kind = from_columns(picked)
    ref = extract(X, channels, kind_to_fc_parameters=kind, lengths=lengths)
    got = extract(X, channels, kind_to_fc_parameters=kind, lengths=lengths, engine="array")
    _assert_same(ref, got)
    _assert_same(
        full, extract(X, channels, default_fc_parameters=_efficient(), lengths=lengths, engine="array")
    )


def test_every_efficient_calculator_is_batched() -> None:
    """The feature set is read from tsfresh's EfficientFCParameters: a calculator a new tsfresh adds
    fails here, and at run time with an error naming it."""
    check_supported(_efficient())
    with pytest.raises(SettingsError, match="brand_new_calculator"):
        array_features(np.zeros((2, 5)), {"brand_new_calculator": None})


def test_linear_trend_timewise_is_left_out_like_tsfresh_does() -> None:
    """tsfresh computes linear_trend_timewise only for a DatetimeIndex; our time column is an integer
    frame, so extract_features returns no column for it, and neither does the array engine."""
    X = _panel("normal", 2, 8, 1, seed=0)
    fc = {"linear_trend_timewise": [{"attr": "slope"}], "mean": None}
    ref = _tsfresh(X, ["e"], fc)
    assert list(ref.columns) == ["e__mean"]
    assert "linear_trend_timewise" in SKIPPED_BY_TSFRESH
    _assert_same(ref, panel_features(X, ["e"], default_fc_parameters=fc))


def test_row_histogram_is_numpys() -> None:
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(size=(20, 17)), rng.integers(0, 4, (5, 17)), np.ones((2, 17))])
    got = histogram_counts(X, 10)
    want = np.stack([np.histogram(x, bins=10)[0] for x in X])
    np.testing.assert_array_equal(got, want)


def test_non_finite_series_are_refused() -> None:
    X = np.zeros((2, 6))
    X[1, 3] = np.nan
    with pytest.raises(SettingsError, match="finite"):
        array_features(X, {"mean": None})


def test_chunks_give_the_whole_batch(monkeypatch) -> None:
    import lnpstore.models.tsfeatures as tf

    X = _panel("walk", 7, 12, 1, seed=5)[:, :, 0]
    whole, names = array_features(X, _efficient())
    monkeypatch.setattr(tf, "CHUNK_SERIES", 3)
    chunked, names3 = array_features(X, _efficient())
    assert names3 == names and whole.shape == (7, len(names))
    # equal to rounding: numpy's matrix products pick their kernels by the batch size
    np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=1e-13)
