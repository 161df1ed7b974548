"""The central result at t = 20 in words: models against the CNN, the oracle's bar, the truth's verdict."""

from __future__ import annotations

import polars as pl

from lnpstore.study.verdict import central_result


def _summary(rows: list[tuple[str, str, int, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["kind", "mode", "frame", "ensemble"], orient="row")


def _table1(rows: list[tuple[str, int, str, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["mode", "checkpoint", "model_a", "model_b", "p_value"], orient="row")


def test_a_tie_the_truth_expects_and_a_missed_bar_are_said():
    summary = _summary(
        [
            ("cnn", "classify", 20, 0.72),
            ("lstm", "classify", 20, 0.70),
            ("tsfresh_xgb", "classify", 20, 0.74),
            ("oracle", "classify", 0, 0.80),
            ("oracle_frame", "classify", 0, 0.79),
            ("cnn", "classify", 10, 0.99),  # another checkpoint: ignored
        ]
    )
    t1 = _table1([("classify", 20, "cnn", "lstm", 0.69), ("classify", 20, "cnn", "tsfresh_xgb", 0.5)])
    (s,) = central_result(summary, t1)
    assert "CNN 0.720" in s and "LSTM 0.700 (worse than the CNN, p = 0.69)" in s
    assert "tsfresh + XGBoost 0.740 (at or above the CNN, p = 0.5)" in s
    assert "Best: tsfresh + XGBoost 0.740, not within 0.05 of the oracle's 0.800" in s
    assert "Room above the CNN (oracle - CNN): +0.080." in s
    assert "size alone (+0.010); count and size hold nearly all the signal" in s


def test_regression_uses_lower_is_better_and_a_relative_gain():
    summary = _summary(
        [
            ("cnn", "regress", 20, 0.70),
            ("lstm", "regress", 20, 0.64),
            ("oracle", "regress", 0, 0.60),
            ("oracle_frame", "regress", 0, 0.66),
        ]
    )
    (s,) = central_result(summary, _table1([]))
    assert "LSTM 0.640 (at or below the CNN)" in s
    assert "Best: LSTM 0.640, within 10% of the oracle's 0.600" in s
    assert "Room above the CNN (oracle - CNN): +16.7%." in s
    assert "size alone (+9.1%); the uptake rate and drift" in s


def test_a_cnn_at_the_oracle_leaves_only_a_tie():
    summary = _summary(
        [("cnn", "classify", 20, 0.80), ("lstm", "classify", 20, 0.79), ("oracle", "classify", 0, 0.81)]
    )
    (s,) = central_result(summary, _table1([]))
    assert "the CNN already reaches the oracle, a tie is all the truth allows" in s


def test_nothing_to_say_without_the_checkpoint():
    assert central_result(_summary([("cnn", "classify", 5, 0.7)]), _table1([])) == []


def test_the_reading_gap_to_a_perfect_reader_of_the_frames_is_said():
    summary = _summary(
        [
            ("cnn", "regress", 20, 0.70),
            ("lstm", "regress", 20, 0.66),
            ("oracle", "regress", 0, 0.55),
            ("oracle_track", "regress", 0, 0.60),
            ("cnn", "classify", 20, 0.70),
            ("tsfresh_xgb", "classify", 20, 0.74),
            ("oracle", "classify", 0, 0.80),
            ("oracle_track", "classify", 0, 0.77),
        ]
    )
    classify, regress = central_result(summary, _table1([]))
    assert (
        "reader of frames 1..20" in classify
        and "scores 0.770: tsfresh + XGBoost is -0.030 from it" in classify
    )
    assert "lead over it (+0.030)" in classify
    assert "scores 0.600: LSTM is +10.0% from it" in regress and "lead over it (+9.1%)" in regress
    # without the trajectory oracle's rows nothing is said of it
    (s,) = central_result(
        summary.filter(pl.col("kind") != "oracle_track").filter(pl.col("mode") == "regress"), _table1([])
    )
    assert "reader of frames" not in s
