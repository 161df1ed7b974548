"""The 8 dihedral augmentations, the VGG base and preprocessing, and the feature cache in the store."""

from __future__ import annotations

import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest
from lnpstore.models import augment as A
from lnpstore.models import extractor as X
from lnpstore.models.weights import random_params

from lnpstore.store.core import Store
from lnpstore.store.schema import cell_uid

S = 32  # crop size px: small so that compiles stay quick


def make_store(root, *, n_cells: int = 6, n_frames: int = 2, seed: int = 0, n_controls: int = 0) -> Store:
    """A store with synthetic `cells` (train folds 0/1 + test, then ``n_controls`` control cells) and
    `crops` (uint16 3 x S x S)."""
    rng = np.random.default_rng(seed)
    store = Store.create(root)
    cells, crops = [], []
    for i in range(n_cells + n_controls):
        control = i >= n_cells
        well = "G03" if control else ("C03" if i % 2 else "C04")
        uid = cell_uid("P1", well, 1, i)
        split = "control" if control else ("test" if i >= n_cells - 2 else "train")
        cells.append(
            {
                "plate": "P1",
                "well": well,
                "field": 1,
                "track_id": i,
                "cell_uid": uid,
                "dose_ng": 0.0 if control else 10.0,
                "is_control": control,
                "last_frame": n_frames,
                "complete": True,
                "any_flag": False,
                "gfp_sum": float(i),
                "label": i % 2,
                "gfp_log_centered": float(i % 2) - 0.5,
                "split": split,
                "fold": (i % 2) if split == "train" else None,
            }
        )
        for t in range(1, n_frames + 1):
            px = rng.integers(100, 4000, (3, S, S), dtype=np.uint16)
            crops.append(
                {
                    "plate": "P1",
                    "well": well,
                    "field": 1,
                    "track_id": i,
                    "frame": t,
                    "cell_uid": uid,
                    "size_px": S,
                    "pixels": px.astype("<u2").tobytes(),
                }
            )
    store.write("cells", pl.DataFrame(cells))
    store.write("crops", pl.DataFrame(crops))
    return store


# -- augmentations --------------------------------------------------------------------------------
def test_eight_distinct_elements_of_d4():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 5, 2)), jnp.float32)
    outs = [np.asarray(A.dihedral(x, k)) for k in range(8)]
    np.testing.assert_array_equal(outs[0], np.asarray(x))  # 0 = identity
    for i, j in itertools.combinations(range(8), 2):
        assert not np.array_equal(outs[i], outs[j]), (i, j)
    # closed under composition: g_j(g_i(x)) is one of the 8 (a group of order 8 = D4)
    for i, j in itertools.product(range(8), repeat=2):
        y = np.asarray(A.dihedral(A.dihedral(x, i), j))
        assert sum(np.array_equal(y, o) for o in outs) == 1
    # rot90 has order 4, the flips order 2
    assert np.array_equal(np.asarray(A.dihedral(A.dihedral(x, 1), 3)), outs[0])
    for k in range(4, 8):
        assert np.array_equal(np.asarray(A.dihedral(A.dihedral(x, k), k)), outs[0])
    # traced and stacked versions agree with the Python-int one
    stacked = np.asarray(A.all_dihedral(x))
    traced = np.asarray(jax.vmap(A.dihedral_traced, in_axes=(None, 0))(x, jnp.arange(8)))
    np.testing.assert_array_equal(stacked, np.stack(outs))
    np.testing.assert_array_equal(traced, np.stack(outs))


# -- preprocessing and base -----------------------------------------------------------------------
def test_preprocessing_scales_with_training_range():
    rng = np.random.default_rng(1)
    train = rng.integers(1000, 2000, (20, 3, 8, 8)).astype(np.uint16)
    pre = X.fit_preprocessing(train)
    assert all(1000 <= lo < hi <= 2000 for lo, hi in zip(pre.lo, pre.hi, strict=True))
    assert dict(pre.slots) == {"B": "CS", "G": "BF", "R": "LNP"}
    x = np.asarray(X.preprocess(jnp.asarray(train), pre))
    assert x.shape == (20, 8, 8, 3)
    np.testing.assert_allclose(x.reshape(-1, 3).mean(0), 0.0, atol=2.0)  # training mean removed
    test = np.full((1, 3, 8, 8), 60000, np.uint16)  # far outside: clipped to the training range
    np.testing.assert_allclose(
        np.asarray(X.preprocess(jnp.asarray(test), pre))[0, 0, 0], 255.0 - np.array(pre.mean), rtol=1e-5
    )


def test_base_shapes_and_cache_stats():
    pre = X.fit_preprocessing(np.random.default_rng(2).integers(0, 5000, (4, 3, S, S)).astype(np.uint16))
    params = X.flax_params(random_params())
    raw = np.random.default_rng(3).integers(0, 5000, (3, 3, S, S)).astype(np.uint16)
    maps = X.vgg_module().apply({"params": params}, X.preprocess(jnp.asarray(raw), pre))
    assert maps.shape == (3, S // 4, S // 4, 256)  # pooled after blocks 1 and 2 only
    fn = X.make_feature_fn(pre, n_augs=8)
    m, q = X.run_batches(fn, params, raw, batch_size=2)  # 3 crops in padded batches of 2
    assert m.shape == q.shape == (3, 8, 256)
    np.testing.assert_allclose(m[:, 0], np.asarray(maps).mean(axis=(1, 2)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(q[:, 0], (np.asarray(maps) ** 2).mean(axis=(1, 2)), rtol=1e-4, atol=1e-3)
    # augmentation k is the base applied to the k-th dihedral image of the preprocessed crop
    rot = X.vgg_module().apply({"params": params}, A.dihedral(X.preprocess(jnp.asarray(raw), pre), 5))
    np.testing.assert_allclose(m[:, 5], np.asarray(rot).mean(axis=(1, 2)), rtol=1e-4, atol=1e-4)


def test_run_batches_one_or_more_batches_and_dtype_in_extractor_id():
    pre = X.fit_preprocessing(np.random.default_rng(2).integers(0, 5000, (4, 3, S, S)).astype(np.uint16))
    params = X.flax_params(random_params())
    raw = np.random.default_rng(4).integers(0, 5000, (5, 3, S, S)).astype(np.uint16)
    fn = X.make_feature_fn(pre, n_augs=2)
    seen = []
    one, _ = X.run_batches(fn, params, raw, batch_size=8, on_batch=seen.append)  # one padded batch
    many, _ = X.run_batches(fn, params, raw, batch_size=2, on_batch=seen.append)  # 2 + 2 + 1
    assert seen == [5, 2, 2, 1]
    np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-5)
    info = X.WeightsInfo(source="x", format="npz", sha256="ab" * 32, verified=False)
    f32 = X.extractor_id_for(info, pre, 8)
    assert f32 == X.extractor_id_for(info, pre, 8, "float32")
    assert X.extractor_id_for(info, pre, 8, "bfloat16") != f32
    assert X._dtype_name(jnp.bfloat16) == "bfloat16" and X._dtype_name(None) == "float32"


def test_extract_features_into_store_resumable(tmp_path):
    store = make_store(tmp_path / "s", n_cells=4, n_frames=2)
    xid = X.extract_features(store, weights="random", n_augs=2, batch_size=4, show_progress=False)
    f = store.read("features", extractor_id=xid)
    assert f.height == 4 * 2 * 2
    assert f.schema["mean"] == pl.Array(pl.Float32, 256)
    assert set(f.get_column("aug").to_list()) == {0, 1}
    info = X.read_extractor(store, xid)
    assert info["weights_info"]["source"] == "random" and info["preprocessing"]["slots"][0] == ["B", "CS"]
    before = store.data_version("features")
    assert X.extract_features(store, weights="random", n_augs=2, batch_size=4, show_progress=False) == xid
    assert store.data_version("features") == before  # nothing recomputed


def test_controls_are_skipped_when_asked_then_added_under_the_same_extractor(tmp_path):
    store = make_store(tmp_path / "s", n_cells=4, n_frames=2, n_controls=2)
    kw = dict(weights="random", n_augs=1, batch_size=4, show_progress=False)
    xid = X.extract_features(store, include_controls=False, **kw)
    wells = store.read("features", extractor_id=xid).get_column("well")
    assert wells.len() == 4 * 2 and "G03" not in wells.to_list()
    assert X.extract_features(store, **kw) == xid  # controls added, treated cells not redone
    f = store.read("features", extractor_id=xid)
    assert f.height == 6 * 2 and (f.get_column("well") == "G03").sum() == 2 * 2


def test_no_train_cells_is_an_error(tmp_path):
    store = make_store(tmp_path / "s", n_cells=2)  # both test cells
    with pytest.raises(Exception, match="no training cells"):
        X.extract_features(store, weights="random", show_progress=False)


def test_cli_embed_then_train_cnn(tmp_path, capsys):
    """End to end through the CLI: crops -> features -> models, embeddings, predictions."""
    from lnpstore.cli.main import main

    store = make_store(tmp_path / "s", n_cells=6, n_frames=2)
    assert main(["embed", str(store.root), "--weights", "random", "--augs", "1", "--batch-size", "4"]) == 0
    assert main(["train-cnn", str(store.root), "--mode", "classify", "--folds", "2", "--epochs", "2"]) == 0
    ids = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("cnn-")]
    assert len(ids) == 2
    assert store.read("embeddings", model_id=ids[0]).height == 6 * 2
    assert json.loads(store.read("models", model_id=ids[0])["weights_info"][0])["source"] == "random"
