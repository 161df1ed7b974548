"""The calibrated projection of ``lnpstore run``: counts per stage, the calibration, ``--dry-run``."""

from __future__ import annotations

import math

import pytest
from lnpstore.models.lstm import SearchConfig, sample_trials

from lnpstore.study import estimate as E
from lnpstore.study.pipeline import RunConfig

#: The tiny simulated plate (3 wells C03/E03/G03 with doses 316, 31.6, 0 ng; 1 field; 72 frames;
#: 400 x 400 px at scale 0.5; 10 cells per field) with small models.
TINY = RunConfig(
    preset="tiny",
    sim_preset="tiny",
    t_in_frames=10,
    n_augs=2,
    n_folds=2,
    cnn_epochs=3,
    lstm_samples=3,
    lstm_units=(32,),
    tsfresh_samples=2,
    checkpoints_frames=(5, 10),
)


def test_trial_epochs_follow_the_rungs():
    sc = SearchConfig()  # 200 epochs, patience 20, rungs 5, 10, 20, 40, 80, 160, 200 (eta 2)
    # bound: 3 trials x 5, 2 x 5 (to 10), then 1 trial to 20, 40, 80, 160, 200
    assert E.trial_epochs(3, sc, best_epoch=8) == (3 * 5 + 2 * 5 + 10 + 8, 15 + 10 + 10 + 20 + 40 + 80 + 40)
    no_halving = SearchConfig(halving=False)
    assert E.trial_epochs(4, no_halving, best_epoch=8) == (4 * 28, 4 * 200)


def test_counts_of_a_small_config_are_exact():
    z = E.sizes_for(TINY)
    fields, cells = 3, 30
    inner = (400 - 2 * 230 * 0.5) ** 2 / 400**2  # the edge band at scale 0.5
    complete = cells * inner
    train_fold = complete * (2 / 3) * 0.8 * (1 / 2)  # 2 of 3 wells dosed, 80 % train, 1 of 2 folds
    assert (z.fields, z.frames, z.field_px, z.cells, z.crop_px) == (fields, 72, 400 * 400, cells, 96)
    assert z.complete == pytest.approx(complete)
    assert z.train_cells_fold == pytest.approx(train_fold)
    assert z.plate_bytes == fields * 72 * 4 * 400 * 400 * 2  # 4 channels of uint16

    counts = {c.stage: c for c in E.stage_counts(TINY, n_features=10)}
    assert list(counts) == [
        "simulate",
        "ingest",
        "track",
        "embed",
        "cnn",
        "lstm",
        "lstm-compile",
        "tsfresh-extract",
        "tsfresh-select",
        "xgboost",
    ]
    for st in ("simulate", "ingest", "track"):
        assert (counts[st].count, counts[st].fixed) == (fields * 72, fields)
    assert counts["embed"].count == pytest.approx(complete * 10 * 2)
    assert (counts["cnn"].count, counts["cnn"].fixed) == (2 * 2 * 3, 2 * 2)  # modes x folds (x epochs)
    # LSTM: searches (modes x folds x checkpoints) x expected trial-epochs x training cases
    assert counts["lstm"].count == pytest.approx(2 * 2 * 2 * (3 * 5 + 2 * 5 + 10 + 3) * train_fold * 2)
    drawn = sample_trials(3, TINY.seed, SearchConfig(units=(32,)))
    assert counts["lstm-compile"].count == len({(t.arch.shape, t.batch_size) for t in drawn})  # one each
    # tsfresh on the augmentation-averaged sequences: one series per cell and embedding dimension
    assert counts["tsfresh-extract"].count == pytest.approx(2 * 2 * train_fold * (5 + 10) * 32)
    assert counts["tsfresh-select"].count == 2 * 2 * 2 * 10 * 32
    assert counts["xgboost"].count == 2 * 2 * 2 * 2 * E.XGB_TYPICAL_TREES


def test_calibration_gives_positive_finite_unit_costs_and_a_projection(tmp_path):
    cal = E.calibrate(TINY, workdir=tmp_path)
    keys = {c.cost_key for c in E.stage_counts(TINY, n_features=10)}
    keys |= {c.fixed_key for c in E.stage_counts(TINY, n_features=10) if c.fixed_key}
    assert keys <= set(cal.unit_s)
    assert all(math.isfinite(v) and v >= 0 for v in cal.unit_s.values()), cal.unit_s
    positive = ("embed_s_per_image", "cnn_s_per_epoch", "lstm_s_per_case_epoch", "tsfresh_s_per_series_step")
    assert all(cal.unit_s[k] > 0 for k in positive), cal.unit_s
    assert list(tmp_path.iterdir()) == []  # its temporary plate and store are gone

    p = E.project(TINY, cal)
    assert p.total_s == pytest.approx(sum(p.as_dict().values())) and p.total_s > 0
    lstm = next(s for s in p.stages if s.stage == "lstm")
    assert lstm.seconds == pytest.approx(lstm.count * cal.unit_s["lstm_s_per_case_epoch"])
    text = p.table()
    assert "total" in text and all(s in text for s in p.as_dict())
    assert cal.matmul_flops_per_s > 1e9 and "floor at this CPU's matmul peak" in text
    assert set(p.floor_flops) == {"embed", "lstm"} and min(p.floor_flops.values()) > 0


def test_vgg_flops_match_xla_cost_analysis():
    """The hand count of VGG16 blocks 1-3 against XLA's own count of the extractor's network."""
    import jax
    import jax.numpy as jnp
    from lnpstore.models.extractor import vgg_module

    side = 32
    vgg = vgg_module()
    x = jnp.zeros((1, side, side, 3), jnp.float32)
    params = vgg.init(jax.random.PRNGKey(0), x)
    cost = jax.jit(vgg.apply).lower(params, x).compile().cost_analysis()
    xla = (cost[0] if isinstance(cost, list) else cost)["flops"]
    # XLA also counts the bias adds, ReLUs and pools (0.2 % here); the convolutions are the rest
    assert E.vgg_b3_flops(side) == pytest.approx(xla, rel=0.005)
    assert E.vgg_b3_flops(192) == pytest.approx(13.45e9, rel=0.01)


def test_floor_counts_every_image_and_trial_epoch():
    f = E.floor_flops(TINY)
    counts = {c.stage: c.count for c in E.stage_counts(TINY, n_features=0)}
    assert f["embed"] == pytest.approx(counts["embed"] * E.vgg_b3_flops(E.sizes_for(TINY).crop_px))
    work = sum(E._lstm_work(t.arch) for t in sample_trials(3, 0, E.lstm_search_config(TINY))) / 3
    assert f["lstm"] == pytest.approx(counts["lstm"] * 10 * work * 6)


@pytest.mark.slow
def test_dry_run_prints_the_projection_and_writes_no_store(tmp_path, capsys, monkeypatch):
    from lnpstore.cli.main import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", str(tmp_path / "run"), "--dry-run", "--preset", "demo"]) == 0
    out = capsys.readouterr().out
    assert "projected time of `lnpstore run --preset demo`" in out and "total" in out
    assert "GB (uncompressed 16-bit TIFF)" in out  # the disk the plate needs
    assert "nothing written" in out
    assert list(tmp_path.iterdir()) == []  # no run folder, no store, no calibration leftovers


def test_embed_without_controls_counts_dosed_cells_only_and_the_search_follows_the_config():
    from dataclasses import replace

    lean = replace(TINY, embed_controls=False, lstm_max_epochs=30, lstm_patience_epochs=4)
    z, z_lean = E.sizes_for(TINY), E.sizes_for(lean)
    assert z_lean.embedded == pytest.approx(z.complete * 2 / 3)  # 2 of 3 wells dosed
    embed = {c.stage: c for c in E.stage_counts(lean, n_features=10)}["embed"]
    assert embed.count == pytest.approx(z.complete * 2 / 3 * 10 * 2)
    sc = E.lstm_search_config(lean)
    assert (sc.select.epochs, sc.select.patience, sc.units) == (30, 4, (32,))
    # fewer epochs and less patience project less LSTM work
    lstm = {c.stage: c.count for c in E.stage_counts(TINY, n_features=10)}["lstm"]
    assert {c.stage: c.count for c in E.stage_counts(lean, n_features=10)}["lstm"] < lstm


def test_projection_counts_the_time_series_inputs():
    from lnpstore.study.estimate import sizes_for, ts_channels
    from lnpstore.study.pipeline import config_for

    emb = config_for("study", overrides={"ts_inputs": "embeddings", "tsfresh_average_augs": False})
    trk = config_for("study", overrides={"ts_inputs": "tracks", "tsfresh_average_augs": False})
    both = config_for("study", overrides={"ts_inputs": "both"})
    z_emb, z_trk = sizes_for(emb), sizes_for(trk)
    assert z_emb.cases_fold == z_trk.cases_fold * emb.n_augs  # a track sequence per cell, not per aug
    assert z_emb.cases_ts == z_trk.cases_ts * emb.n_augs
    assert (ts_channels(emb), ts_channels(trk), ts_channels(both)) == (32, 6, 38)
