"""Matching tracked cells to the simulator's truth."""

import polars as pl

from lnpstore.truth import match_cells_to_truth


def test_same_true_id_in_two_wells_both_match_and_far_cells_do_not():
    tracked = pl.DataFrame(
        {
            "cell_uid": ["a", "b", "c", "d"],
            "well": ["C03", "C04", "C04", "C04"],
            "field": [1, 1, 1, 1],
            "y_px": [10.0, 10.5, 11.0, 300.0],
            "x_px": [10.0, 10.0, 10.0, 300.0],
        }
    )
    truth = pl.DataFrame(
        {
            "well": ["C03", "C04"],
            "field": [1, 1],
            "true_id": [7, 7],
            "y_px": [10.0, 10.0],
            "x_px": [10.0, 10.0],
        }
    )
    m = match_cells_to_truth(tracked, truth, max_distance_px=5.0)
    # one tracked cell per true cell per (well, field): the closest one; 'd' is too far from any
    assert sorted(m.get_column("cell_uid").to_list()) == ["a", "b"]
    assert m.get_column("true_id").to_list() == [7, 7]
