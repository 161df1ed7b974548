"""End to end: a tiny simulated plate through every stage to the report, then a resumed re-run."""

from __future__ import annotations

import json

import polars as pl
import pytest

from lnpstore.store.core import list_queries, query_params, read_query
from lnpstore.study.pipeline import PRESETS, run_study

pytestmark = pytest.mark.slow

TINY = {
    "sim_preset": "tiny",
    "sim_overrides": (
        ("columns", (3, 4)),
        ("cells_per_field", 16),
        ("n_frames", 30),
    ),  # 30 frames: t <= 20 and a GFP target
    "n_augs": 2,
    "n_folds": 2,
    "cnn_epochs": 3,
    "lstm_samples": 1,
    "tsfresh_samples": 2,
    "checkpoints_frames": (5, 20),
    "n_permutations": 1000,
}


def test_tiny_plate_end_to_end_then_resume(tmp_path):
    res = run_study(tmp_path / "run", preset="demo", overrides=TINY, show_progress=False)
    assert res.report_html.exists() and res.report_md.exists()
    html = res.report_html.read_text()
    assert "data:image/png;base64," in html
    store = res.store

    models = store.read("models")
    assert set(models.get_column("kind")) == {"cnn", "lstm", "tsfresh_xgb"}
    assert set(models.get_column("mode")) == {"classify", "regress"}
    assert models.get_column("data_version").null_count() == 0
    assert models.get_column("package_version").null_count() == 0
    cfg = json.loads(models.filter(pl.col("kind") == "cnn").get_column("weights_info")[0])
    assert cfg  # the base weights are recorded with the model

    metrics = store.read("metrics")
    ens = metrics.filter(pl.col("fold") == -1)
    assert {"cnn", "lstm", "tsfresh_xgb", "oracle", "oracle_frame"} <= set(ens.get_column("kind"))
    assert ens.filter(pl.col("metric") == "rmse").get_column("value").is_finite().all()

    report_md = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "central result" in report_md and "from the particle count at frame 20" in report_md
    run_info = json.loads((tmp_path / "run" / "report" / "run.json").read_text())
    assert run_info["config"]["n_augs"] == 2 and run_info["simulated"] is True

    # every named query runs on a full store and agrees with the tables it summarises
    plate = store.read("plates")["plate"][0]
    cells = store.read("cells")
    per_well = store.query("cells_per_well", plate=plate)
    assert per_well["n_cells"].sum() == cells.height
    assert per_well["n_test"].sum() == cells.filter(pl.col("split") == "test").height
    quality = store.query("tracking_quality", plate=plate)
    tracks = store.read("tracks")
    assert quality["n_cell_frames"].sum() == tracks.height
    assert quality["reached_end"].sum() == tracks.filter(pl.col("stop_reason") == "end").height
    summary = store.query("plate_summary")
    assert summary["n_ok"][0] == store.read("images").filter(pl.col("status") == "ok").height
    ran = []
    for name in list_queries():
        needed = query_params(read_query(name))
        if needed <= {"plate"}:  # the model-level queries (fold, mode, ...) have their own tests
            store.query(name, **({"plate": plate} if needed else {}))
            ran.append(name)
    assert {"cells_per_well", "tracking_quality", "plate_summary", "track_fates"} <= set(ran)

    # a second run resumes: nothing is retrained, the models table is unchanged
    before = store.read("models").sort("model_id")
    res2 = run_study(tmp_path / "run", preset="demo", overrides=TINY, show_progress=False)
    after = res2.store.read("models").sort("model_id")
    assert before.select("model_id", "created_at").equals(after.select("model_id", "created_at"))
    assert "simulate" not in {t.name for t in res2.timings}


def test_presets_state_their_reductions():
    assert PRESETS["demo"].reductions, "the demo preset must say what it cuts"
    assert PRESETS["paper"].n_augs == 8 and PRESETS["paper"].lstm_samples == 200


def test_run_command_offers_every_preset():
    from lnpstore.cli.main import build_parser

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    preset = next(a for a in run._actions if a.dest == "preset")
    assert sorted(preset.choices) == sorted(PRESETS)


def test_time_series_inputs_other_than_the_embeddings_are_reported_as_a_departure():
    from lnpstore.study.pipeline import _departures, config_for

    assert not any("track measures" in d for d in _departures(config_for("paper")))
    for inputs in ("tracks", "both"):
        cfg = config_for("paper", overrides={"ts_inputs": inputs})
        assert cfg.ts_inputs == inputs and any("track measures" in d for d in _departures(cfg))
    with pytest.raises(Exception, match="ts_inputs"):
        config_for("paper", overrides={"ts_inputs": "pixels"})
