import json

import numpy as np
import polars as pl
import pytest
from _ts_data import make_store
from lnpstore.models.lstm import SearchConfig, TrainConfig
from lnpstore.models.panel import TRACK_CHANNELS, load_panels, panel_from_long
from lnpstore.models.timeseries_stage import TimeseriesSettings, run_timeseries
from lnpstore.models.tsgbm import TsfreshXGB

from lnpstore.cli.main import build_parser


@pytest.fixture(scope="module")
def store_cells(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("ts") / "store")


def test_sequences_roles_order_and_own_cnn(store_cells):
    store, cells = store_cells
    p = load_panels(store, mode="classify", fold=1, checkpoint=6)
    uid = {r: set(p[r].ids["cell_uid"]) for r in p}
    by = lambda expr: set(cells.filter(expr)["cell_uid"])  # noqa: E731
    assert uid["val"] == by((pl.col("split") == "train") & (pl.col("fold") == 1))
    assert uid["train"] == by((pl.col("split") == "train") & (pl.col("fold") != 1))
    assert uid["test"] == by(pl.col("split") == "test")
    assert not uid["train"] & (uid["val"] | uid["test"])
    for pn in p.values():
        np.testing.assert_array_equal(
            pn.X[:, :, 30], np.broadcast_to(np.arange(1, 7), pn.X.shape[:2])
        )  # frame order
        assert (pn.X[:, :, 31] == 2).all()  # fold 1's own CNN
        assert pn.ids.columns == ["cell_uid", "aug"] and pn.ids.height == len(set(pn.ids.rows()))


def test_checkpoint_truncation_matches_sql(store_cells):
    store, _ = store_cells
    full = load_panels(store, mode="classify", fold=0, checkpoint=6)
    cut = load_panels(store, mode="classify", fold=0, checkpoint=3)
    for r in full:
        t = full[r].truncate(3)
        np.testing.assert_array_equal(t.X, cut[r].X)
        assert t.X.shape[1] == 3 and t.frames.tolist() == [1, 2, 3]


def test_track_measures_as_inputs(store_cells):
    store, cells = store_cells
    trk = load_panels(store, mode="classify", fold=1, checkpoint=6, inputs="tracks")
    emb = load_panels(store, mode="classify", fold=1, checkpoint=6)
    both = load_panels(store, mode="classify", fold=1, checkpoint=6, inputs="both")
    first = cells["cell_uid"][0]  # fold 0: a train cell of fold 1, with a gap-filled frame 3
    label = dict(zip(cells["cell_uid"], cells["label"], strict=True))
    tr = trk["train"]
    assert tr.channels == TRACK_CHANNELS and tr.ids["aug"].unique().to_list() == [-1]
    assert tr.n_cases == tr.ids["cell_uid"].n_unique() == emb["train"].n_cases // 2  # a case per cell
    for r in emb:
        assert set(trk[r].ids["cell_uid"]) == set(emb[r].ids["cell_uid"])  # the same roles
    i = tr.ids["cell_uid"].to_list().index(first)
    area = np.exp(tr.X[i, :, 0])
    np.testing.assert_allclose(area, [100, 200, 200, 400, 500, 600], rtol=1e-5)  # frame 3 carried on
    np.testing.assert_allclose(
        np.expm1(tr.X[i, :, 1]), label[first] * np.array([1, 2, 2, 4, 5, 6]), atol=1e-4
    )
    np.testing.assert_allclose(tr.X[:, 0, 5], 1.0)  # no spot yet: depth at the membrane
    np.testing.assert_allclose(tr.X[i, 1:, 5], [0.8, 0.8, 0.6, 0.5, 0.4], rtol=1e-6)
    np.testing.assert_array_equal(tr.y, [label[u] for u in tr.ids["cell_uid"]])
    b = both["test"]
    assert b.channels == emb["test"].channels + TRACK_CHANNELS
    np.testing.assert_array_equal(b.X[:, :, :32], emb["test"].X)
    rows = {u: k for k, u in enumerate(trk["test"].ids["cell_uid"])}
    idx = [rows[u] for u in b.ids["cell_uid"]]
    np.testing.assert_array_equal(b.X[:, :, 32:], trk["test"].X[idx])


def test_inputs_enter_the_model_id_only_when_not_the_default():
    import hashlib

    default = TimeseriesSettings(kind="lstm", mode="classify")
    without = {k: v for k, v in default.to_dict().items() if k != "inputs"}
    text = json.dumps({**without, "data_version": "v"}, sort_keys=True, default=str)
    assert default.hash8("v") == hashlib.sha256(text.encode()).hexdigest()[:8]  # ids of older runs hold
    ids = {TimeseriesSettings(kind="lstm", mode="classify", inputs=i).hash8("v") for i in ("tracks", "both")}
    assert len(ids | {default.hash8("v")}) == 3


def test_tsfresh_stage_on_track_measures(store_cells):
    store, cells = store_cells
    out = run_timeseries(
        store,
        "tsfresh_xgb",
        "classify",
        folds=[1],
        checkpoints=(5,),
        n_samples=2,
        fc_parameters="minimal",
        show_progress=False,
        inputs="tracks",
    )
    assert out["status"].to_list() == ["trained"]
    m = store.read("models").filter(pl.col("model_id") == out["model_id"][0])
    cfg = json.loads(m["config"][0])
    assert cfg["settings"]["inputs"] == "tracks" and cfg["cnn_model_id"] is None
    assert m["data_version"][0] == store.data_version("tracks", "cells")
    emb = run_timeseries(
        store,
        "tsfresh_xgb",
        "classify",
        folds=[1],
        checkpoints=(5,),
        n_samples=2,
        fc_parameters="minimal",
        show_progress=False,
    )  # the same (fold, checkpoint) on the embeddings: a second model and search beside the first
    search = store.read("search")
    for mid in (out["model_id"][0], emb["model_id"][0]):
        assert search.filter(pl.col("search_id") == mid).height == 2
    pred = store.read("predictions").filter(pl.col("model_id") == out["model_id"][0])
    test = cells.filter(pl.col("split") == "test")
    assert pred.height == test.height and pred["aug"].unique().to_list() == [-1]
    # lnp_spots = label * frame: the measures hold the label, and the model ranks by it
    from sklearn.metrics import roc_auc_score

    truth = dict(zip(test["cell_uid"], test["label"], strict=True))
    assert roc_auc_score([truth[u] for u in pred["cell_uid"]], pred["y_pred"]) >= 0.9


def test_long_table_panel_and_missing_frame_error():
    df = pl.DataFrame(
        {"id": [1, 1, 2, 2], "frame": [2, 1, 1, 2], "a": [2.0, 1.0, 3.0, 4.0], "y": [1, 1, 0, 0]}
    )
    p = panel_from_long(df, id_cols=["id"], target_col="y")
    assert p.X[:, :, 0].tolist() == [[1.0, 2.0], [3.0, 4.0]] and p.y.tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="do not have exactly the frames"):
        panel_from_long(df.head(3), id_cols=["id"])


def test_tsfresh_stage_writes_tables_resumes_and_never_leaks(store_cells, monkeypatch):
    store, cells = store_cells
    seen = {}
    real_select = TsfreshXGB._select

    def spy(self, F, y):
        seen["n_select"] = len(F)
        return real_select(self, F, y)

    monkeypatch.setattr(TsfreshXGB, "_select", spy)
    out = run_timeseries(
        store,
        "tsfresh_xgb",
        "classify",
        folds=[0],
        checkpoints=(3, 6),
        n_samples=2,
        fc_parameters="minimal",
        show_progress=False,
    )
    assert out["status"].to_list() == ["trained", "trained"]
    n_train = cells.filter((pl.col("split") == "train") & (pl.col("fold") != 0)).height * 2  # 2 augs
    assert seen["n_select"] == n_train
    models = store.read("models").filter(pl.col("model_id").is_in(out["model_id"].implode()))
    assert sorted(models["checkpoint"].to_list()) == [3, 6]
    cfg = json.loads(models["config"][0])
    assert cfg["n_train"] == n_train and "selected_features" in cfg and "selection_fallback" in cfg
    assert (store.root / models["weights_path"][0]).exists()
    pred = store.read("predictions").filter(pl.col("model_id") == out["model_id"][1])
    n_test = cells.filter(pl.col("split") == "test").height
    assert pred.height == n_test * 2 and pred["frame"].unique().to_list() == [6]
    assert pred["y_pred"].is_between(0, 1).all()
    assert (
        store.read("search").filter(pl.col("search_id").str.starts_with("tsfresh_xgb-classify-f0-")).height
        == 4
    )
    again = run_timeseries(
        store,
        "tsfresh_xgb",
        "classify",
        folds=[0],
        checkpoints=(3, 6),
        n_samples=2,
        fc_parameters="minimal",
        show_progress=False,
    )
    assert again["status"].to_list() == ["skipped", "skipped"]


def test_lstm_stage_average_augs(store_cells):
    store, cells = store_cells
    sc = SearchConfig(
        select=TrainConfig(lr=1e-2, epochs=2, batch_size=16),
        final=TrainConfig(lr=1e-3, epochs=1, batch_size=16),
        rung_epochs=1,
        batch_sizes=(),  # one compiled program per shape: a fast test
    )
    # regress needs the regress CNN: only classify CNNs exist in this store, so the stage must say so
    from lnpstore.store.errors import LnpstoreError

    with pytest.raises(LnpstoreError, match="train-cnn"):
        run_timeseries(
            store,
            "lstm",
            "regress",
            folds=[1],
            checkpoints=(4,),
            n_samples=2,
            show_progress=False,
            lstm_search_config=sc,
        )
    out = run_timeseries(
        store,
        "lstm",
        "classify",
        folds=[1],
        checkpoints=(4,),
        n_samples=2,
        average_augs=True,
        show_progress=False,
        lstm_search_config=sc,
    )
    assert out["status"].to_list() == ["trained"]
    m = store.read("models").filter(pl.col("model_id") == out["model_id"][0])
    assert m["best_epoch"][0] >= 0 and m["data_version"][0] == store.data_version("embeddings", "cells")
    pred = store.read("predictions").filter(pl.col("model_id") == out["model_id"][0])
    assert pred.height == cells.filter(pl.col("split") == "test").height and pred[
        "aug"
    ].unique().to_list() == [-1]
    search = store.read("search").filter(pl.col("kind") == "lstm")
    assert search.height == 2
    assert {"lr", "batch_size", "best_epoch"} <= set(json.loads(search["config"][0]))
    cfg = json.loads(m["config"][0])
    assert cfg["settings"]["lstm_search"]["select"]["epochs"] == 2  # the search settings are stored


def test_cli_parses():
    a = build_parser().parse_args(
        ["train-lstm", "S", "--mode", "classify", "--checkpoints", "5,10", "--samples", "3"]
    )
    assert a.checkpoints == [5, 10] and a.samples == 3 and a.folds == 5
    a = build_parser().parse_args(
        ["train-tsfresh", "S", "--mode", "regress", "--fc", "fast", "--average-augs"]
    )
    assert a.fc == "fast" and a.average_augs and a.dask is None and a.inputs == "embeddings"
    a = build_parser().parse_args(["run", "--preset", "study", "--inputs", "tracks"])
    assert a.inputs == "tracks"
    assert build_parser().parse_args(["run"]).inputs is None  # the preset's own


def test_a_cell_missing_track_frames_is_named_and_nothing_is_lost(tmp_path):
    from _ts_data import track_rows

    from lnpstore.store.errors import PanelError

    store, cells = make_store(tmp_path / "s")
    gone = cells["cell_uid"][0]  # as if it had divided at frame 4 under the 'follow' rule
    rows = track_rows(cells.to_dicts(), 6).filter((pl.col("cell_uid") != gone) | (pl.col("frame") < 4))
    store.write("tracks", rows, mode="replace")
    before = {t: store.read(t).height for t in ("cells", "tracks", "models", "embeddings")}
    with pytest.raises(PanelError, match=gone.replace("|", r"\|")) as err:
        run_timeseries(
            store,
            "tsfresh_xgb",
            "classify",
            folds=[1],
            checkpoints=(6,),
            n_samples=2,
            fc_parameters="minimal",
            show_progress=False,
            inputs="tracks",
        )
    assert "division_rule='follow'" in str(err.value)
    assert {t: store.read(t).height for t in before} == before
    assert store.read("predictions").height == 0
