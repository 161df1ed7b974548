"""The CNN head: cache equivalence with the full maps, training, and its outputs in the store."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest
from lnpstore.models import cnn as C
from lnpstore.models.extractor import features_frame

from lnpstore.store.core import Store
from lnpstore.store.schema import cell_uid

XID = "vgg16b3-test"


def test_head_on_cache_equals_head_on_maps():
    """Same random maps: outputs, embeddings, running stats and gradients agree."""
    cfg = C.CNNConfig()
    maps = jax.random.normal(jax.random.PRNGKey(0), (6, 5, 5, 256)) * 2.0 + 1.0
    m, q = maps.mean(axis=(1, 2)), (maps * maps).mean(axis=(1, 2))
    full, cache = C.HeadFromMaps(cfg), C.HeadFromStats(cfg)
    v = full.init(jax.random.PRNGKey(1), maps, train=False)
    v_cache = cache.init(jax.random.PRNGKey(1), m, q, train=False)
    assert jax.tree_util.tree_structure(v) == jax.tree_util.tree_structure(v_cache)  # same variables
    v = jax.tree_util.tree_map(lambda a: a + 0.1 * jax.random.normal(jax.random.PRNGKey(2), a.shape), v)
    y = jnp.array([0, 1, 1, 0, 1, 0], jnp.float32)

    def loss_full(p):
        (o, e), u = full.apply(
            {"params": p, "batch_stats": v["batch_stats"]}, maps, train=True, mutable=["batch_stats"]
        )
        return C.loss_fn(o, y, jnp.ones(6), "classify"), (o, e, u)

    def loss_cache(p):
        (o, e), u = cache.apply(
            {"params": p, "batch_stats": v["batch_stats"]}, m, q, train=True, mutable=["batch_stats"]
        )
        return C.loss_fn(o, y, jnp.ones(6), "classify"), (o, e, u)

    (l1, (o1, e1, u1)), g1 = jax.value_and_grad(loss_full, has_aux=True)(v["params"])
    (l2, (o2, e2, u2)), g2 = jax.value_and_grad(loss_cache, has_aux=True)(v["params"])
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    np.testing.assert_allclose(o1, o2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(e1, e2, rtol=1e-4, atol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(u1), jax.tree_util.tree_leaves(u2), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)
    # inference mode (running statistics) too
    o_full, _ = full.apply(v, maps, train=False)
    o_cache, _ = cache.apply(v, m, q, train=False)
    np.testing.assert_allclose(o_full, o_cache, rtol=1e-4, atol=1e-5)


def synthetic(n_cells: int = 40, n_frames: int = 3, n_augs: int = 2, seed: int = 0):
    """Cells (train folds 0/1, test) and features whose mean carries the label in 8 channels."""
    rng = np.random.default_rng(seed)
    cells, keys, means = [], [], []
    for i in range(n_cells):
        uid = cell_uid("P1", "C03", 1, i)
        label = int(rng.random() < 0.35)  # imbalanced classes
        split = "test" if i % 5 == 4 else "train"
        cells.append(
            {
                "plate": "P1",
                "well": "C03",
                "field": 1,
                "track_id": i,
                "cell_uid": uid,
                "dose_ng": 1.0,
                "is_control": False,
                "last_frame": n_frames,
                "complete": True,
                "any_flag": False,
                "gfp_sum": 1.0,
                "label": label,
                "gfp_log_centered": 2.0 * label - 0.7 + 0.1 * rng.standard_normal(),
                "split": split,
                "fold": (i % 2) if split == "train" else None,
            }
        )
        for t in range(1, n_frames + 1):
            keys.append((uid, t))
            mu = rng.gamma(2.0, 1.0, (n_augs, 256)).astype(np.float32)
            mu[:, :8] += 1.5 * label
            means.append(mu)
    m = np.stack(means)
    q = m**2 + rng.gamma(1.0, 1.0, m.shape).astype(np.float32)
    keys_df = pl.DataFrame({"cell_uid": [k[0] for k in keys], "frame": [k[1] for k in keys]})
    return pl.DataFrame(cells), features_frame(XID, keys_df, m, q, plate="P1", well="C03")


def test_training_lowers_validation_loss():
    cells, feats = synthetic()
    store_like = feats.join(cells, on="cell_uid")
    m = np.stack(store_like["mean"].to_numpy()).reshape(-1, 2, 256)
    q = np.stack(store_like["mean_sq"].to_numpy()).reshape(-1, 2, 256)
    ks = store_like.filter(pl.col("aug") == 0)
    y = ks["label"].cast(pl.Float32).to_numpy()
    tr = (ks["split"] == "train").to_numpy() & (ks["fold"] == 1).fill_null(False).to_numpy()
    va = (ks["fold"] == 0).fill_null(False).to_numpy()
    cfg = C.CNNConfig(epochs=15, batch_size=8)
    w = np.ones_like(y)
    res = C.train_head(cfg, (m[tr], q[tr], y[tr], w[tr]), (m[va, 0], q[va, 0], y[va], w[va]), seed=0)
    init = C.init_head(cfg, jax.random.split(jax.random.PRNGKey(0))[1])
    out0, _ = C.make_eval_fn(cfg)(init, m[va, 0], q[va, 0])
    loss0 = float(C.loss_fn(out0, y[va], w[va], "classify"))
    assert res.val_loss < 0.8 * loss0, (res.val_loss, loss0)
    assert res.val_loss == min(res.val_curve) and res.val_curve[res.best_epoch - 1] == res.val_loss
    assert len(res.train_curve) == 15


@pytest.mark.parametrize("mode", ["classify", "regress"])
def test_train_cnn_writes_store_outputs(tmp_path, mode):
    cells, feats = synthetic(n_cells=20, n_frames=2, n_augs=2)
    store = Store.create(tmp_path / "s")
    store.write("cells", cells)
    store.write("features", feats)
    ids = C.train_cnn(store, mode, folds=[0, 1], epochs=3, seed=0, show_progress=False)
    assert len(ids) == 2 and all(i.startswith(f"cnn-{mode}-f") for i in ids)
    models = store.read("models").sort("fold")
    assert models["model_id"].to_list() == sorted(ids, key=lambda s: s.split("-")[2])
    row = models.row(0, named=True)
    assert row["kind"] == "cnn" and row["checkpoint"] is None and 1 <= row["best_epoch"] <= 3
    assert json.loads(row["config"])["mode"] == mode and row["data_version"] == store.data_version(
        "features", "cells"
    )
    assert (store.root / row["weights_path"]).is_file()
    assert (store.root / row["weights_path"].replace(".msgpack", "_curves.png")).is_file()
    cfg, variables = C.load_head(store, row["model_id"])
    assert cfg.mode == mode and variables["params"]["dense"]["kernel"].shape == (256, 32)

    emb = store.read("embeddings", model_id=ids[0])
    assert emb.height == 20 * 2 * 2  # every complete cell x frame x aug
    assert emb.schema["embedding"] == pl.Array(pl.Float32, 32)
    assert emb.select("cell_uid", "frame", "aug").is_unique().all()
    pred = store.read("predictions", model_id=ids[0])
    n_test = cells.filter(pl.col("split") == "test").height
    assert pred.height == n_test * 2 * 2 and set(pred["kind"]) == {"cnn"}
    if mode == "classify":
        assert pred["y_pred"].is_between(0, 1).all() and set(pred["y_true"]) <= {0.0, 1.0}

    # resumable: the same call trains nothing new
    before = store.data_version("models", "embeddings")
    assert C.train_cnn(store, mode, folds=[0, 1], epochs=3, seed=0, show_progress=False) == ids
    assert store.data_version("models", "embeddings") == before
