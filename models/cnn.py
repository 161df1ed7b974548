"""The per-frame CNN head on the frozen VGG16 base: config, network, training loop, store stage.

Head: BN -> global average pool -> Dense 32 -> BN (the embedding) -> ReLU -> Dense 1 (a logit for
``classify``, the log-centred GFP for ``regress``).

Why training reads the feature cache, not the crops: with the base frozen, the first BN in training
mode normalises channel c with the batch mean mu_c and (biased) variance var_c over all samples and
positions. With per-sample spatial means m_ic and mean squares q_ic (equal map sizes):
mu_c = mean_i m_ic, var_c = mean_i q_ic - mu_c^2, and GAP(BN(x))_ic = gamma_c (m_ic - mu_c) /
sqrt(var_c + eps) + beta_c, since BN is affine per channel. So :class:`HeadFromStats` on
(mean, mean_sq) equals :class:`HeadFromMaps` on the full maps -- outputs, gradients and running
statistics (tested in tests/test_cnn.py) -- for a fraction of the cost.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import polars as pl
from lnpstore.models import provenance as P

from lnpstore.runtime.settings import Field, Settings, settings
from lnpstore.store.atomic import atomic_write_bytes
from lnpstore.store.core import Store
from lnpstore.store.errors import LnpstoreError

log = logging.getLogger(__name__)

Mode = Literal["classify", "regress"]
MODES: tuple[str, ...] = ("classify", "regress")


# -- config ---------------------------------------------------------------------------------------
@settings
class CNNConfig(Settings):
    """Settings of one head training run (serialised into ``models.config``)."""

    mode: Mode = Field("classify", description="'classify' (weighted BCE) or 'regress' (MSE)")
    embedding_dim: int = Field(
        32, ge=1, description="width of the Dense layer whose BN output is the embedding"
    )
    learning_rate: float = Field(1e-3, gt=0, description="Adam step size")
    batch_size: int = Field(32, ge=1, description="crops per step")
    epochs: int = Field(50, ge=1, description="epochs; the best by validation loss is kept")
    bn_momentum: float = Field(0.99, gt=0, lt=1, description="BatchNorm momentum (Keras default)")
    bn_epsilon: float = Field(1e-3, gt=0, description="BatchNorm epsilon (Keras default)")
    class_weights: Literal["balanced", "none"] = Field(
        "balanced", description="classify only: loss weights per class"
    )
    augmentation: str = Field(
        "one random dihedral augmentation per sample per step", description="training augmentation (recorded)"
    )
    validation_aug: int = Field(
        0, ge=0, le=7, description="the augmentation the validation loss is measured on"
    )
    patience: int | None = Field(
        None, ge=1, description="epochs without improvement before stopping; None runs all"
    )
    extractor_id: str = Field("", description="the features' extractor")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


# -- network --------------------------------------------------------------------------------------
class StatsBatchNorm(nn.Module):
    """BatchNorm of a (B, H, W, C) map followed by spatial mean, from per-sample (mean, mean_sq) (B, C).

    Same variables as :class:`flax.linen.BatchNorm` (params scale/bias, batch_stats mean/var), same
    biased variance and running-average update, so parameters move freely between the two heads.
    """

    use_running_average: bool
    momentum: float = 0.99
    epsilon: float = 1e-3

    @nn.compact
    def __call__(self, m: jax.Array, q: jax.Array) -> jax.Array:
        c = m.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (c,))
        ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (c,))
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        if self.use_running_average:
            mu, var = ra_mean.value, ra_var.value
        else:
            mu = m.mean(axis=0)
            var = jnp.maximum(q.mean(axis=0) - mu * mu, 0.0)
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mu
                ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * var
        return (m - mu) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias


def _tail(x: jax.Array, train: bool, cfg: CNNConfig) -> tuple[jax.Array, jax.Array]:
    """Dense -> BN (embedding) -> ReLU -> Dense 1, created inside the caller's compact scope."""
    h = nn.Dense(cfg.embedding_dim, name="dense")(x)
    emb = nn.BatchNorm(
        use_running_average=not train, momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon, name="bn_emb"
    )(h)
    out = nn.Dense(1, name="out")(nn.relu(emb))[..., 0]
    return out, emb


class HeadFromStats(nn.Module):
    """The head on cached (mean, mean_sq) (B, 256) each -> (output (B,), embedding (B, 32))."""

    cfg: CNNConfig

    @nn.compact
    def __call__(self, m: jax.Array, q: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        x = StatsBatchNorm(not train, self.cfg.bn_momentum, self.cfg.bn_epsilon, name="bn_in")(m, q)
        return _tail(x, train, self.cfg)


class HeadFromMaps(nn.Module):
    """The head on block3_conv3 maps (B, H, W, 256): the study's formulation."""

    cfg: CNNConfig

    @nn.compact
    def __call__(self, maps: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        x = nn.BatchNorm(
            use_running_average=not train,
            momentum=self.cfg.bn_momentum,
            epsilon=self.cfg.bn_epsilon,
            name="bn_in",
        )(maps)
        return _tail(x.mean(axis=(1, 2)), train, self.cfg)


def loss_fn(out: jax.Array, y: jax.Array, w: jax.Array, mode: str) -> jax.Array:
    """Weighted BCE on logits (classify) or MSE (regress); mean over the batch."""
    if mode == "classify":
        per = optax.sigmoid_binary_cross_entropy(out, y)
    else:
        per = (out - y) ** 2
    return jnp.mean(per * w)


def predict_value(out: jax.Array, mode: str) -> jax.Array:
    """Head output -> prediction: a probability (classify) or the regression value."""
    return jax.nn.sigmoid(out) if mode == "classify" else out


# -- training loop --------------------------------------------------------------------------------
@dataclass
class TrainResult:
    variables: dict
    best_epoch: int  # 1-based
    val_loss: float
    train_curve: list[float]
    val_curve: list[float]
    seconds: float


def init_head(cfg: CNNConfig, key: jax.Array, n_channels: int = 256) -> dict:
    z = jnp.zeros((2, n_channels), jnp.float32)
    return dict(HeadFromStats(cfg).init(key, z, z, train=False))


def make_epoch_fn(cfg: CNNConfig, tx: optax.GradientTransformation):
    """A jitted epoch: ``(params, batch_stats, opt_state, key, M, Q, y, w) -> (..., mean train loss)``.

    M, Q: (N, A, C) train features; y, w: (N,) targets and sample weights. One lax.scan over
    N // batch_size shuffled batches (the remainder is dropped; a new shuffle each epoch), each sample
    with a random augmentation of the A cached ones.
    """
    model = HeadFromStats(cfg)
    bs = cfg.batch_size

    @jax.jit
    def epoch(params, batch_stats, opt_state, key, M, Q, y, w):
        n, a = M.shape[0], M.shape[1]
        b = min(bs, n)
        nb = n // b
        kp, ka = jax.random.split(key)
        perm = jax.random.permutation(kp, n)[: nb * b].reshape(nb, b)
        augs = jax.random.randint(ka, (nb, b), 0, a)

        def step(carry, inp):
            params, batch_stats, opt_state = carry
            idx, aug = inp

            def lf(p):
                (out, _), upd = model.apply(
                    {"params": p, "batch_stats": batch_stats},
                    M[idx, aug],
                    Q[idx, aug],
                    train=True,
                    mutable=["batch_stats"],
                )
                return loss_fn(out, y[idx], w[idx], cfg.mode), upd["batch_stats"]

            (loss, new_bs), grads = jax.value_and_grad(lf, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), new_bs, opt_state), loss

        (params, batch_stats, opt_state), losses = jax.lax.scan(
            step, (params, batch_stats, opt_state), (perm, augs)
        )
        return params, batch_stats, opt_state, losses.mean()

    return epoch


def make_eval_fn(cfg: CNNConfig):
    """Jitted ``(variables, M, Q) -> (output, embedding)`` in inference mode, for (B, C) inputs."""
    model = HeadFromStats(cfg)

    @jax.jit
    def ev(variables, m, q):
        return model.apply(variables, m, q, train=False)

    return ev


def apply_in_chunks(
    ev, variables: dict, m: np.ndarray, q: np.ndarray, chunk: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """``ev`` over (N, C) arrays in fixed-size chunks (padded; one compile); numpy outputs."""
    n = len(m)
    outs, embs = [], []
    size = min(chunk, max(n, 1))
    for s in range(0, n, size):
        mm, qq = m[s : s + size], q[s : s + size]
        k = len(mm)
        if k < size:
            pad = ((0, size - k), (0, 0))
            mm, qq = np.pad(mm, pad), np.pad(qq, pad)
        o, e = ev(variables, mm, qq)
        outs.append(np.asarray(o)[:k])
        embs.append(np.asarray(e)[:k])
    if not outs:
        return np.zeros(0, np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(outs), np.concatenate(embs)


def train_head(
    cfg: CNNConfig,
    train: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    seed: int = 0,
    show_progress: bool = False,
) -> TrainResult:
    """Train the head on cached features; keep the epoch with the lowest validation loss.

    ``train``: (M (N, A, C), Q (N, A, C), y (N,), w (N,)); ``val``: (M (V, C), Q (V, C), y, w) on one
    augmentation. Returns the best epoch's variables.
    """
    from lnpstore.runtime.progress import progress

    t0 = time.perf_counter()
    key = jax.random.PRNGKey(seed)
    key, k_init = jax.random.split(key)
    variables = init_head(cfg, k_init, train[0].shape[-1])
    params, batch_stats = variables["params"], variables["batch_stats"]
    tx = optax.adam(cfg.learning_rate)
    opt_state = tx.init(params)
    epoch_fn = make_epoch_fn(cfg, tx)
    ev = make_eval_fn(cfg)
    M, Q, y, w = (jnp.asarray(a, jnp.float32) for a in train)
    vm, vq, vy, vw = (jnp.asarray(a, jnp.float32) for a in val)
    best = (np.inf, 0, {"params": params, "batch_stats": batch_stats})
    tr_curve: list[float] = []
    va_curve: list[float] = []
    epochs: Iterable[int] = range(1, cfg.epochs + 1)
    if show_progress:
        epochs = progress(epochs, desc=f"train-cnn {cfg.mode}", total=cfg.epochs, unit="epoch")
    for ep in epochs:
        key, k = jax.random.split(key)
        params, batch_stats, opt_state, tl = epoch_fn(params, batch_stats, opt_state, k, M, Q, y, w)
        out, _ = ev({"params": params, "batch_stats": batch_stats}, vm, vq)
        vl = float(loss_fn(out, vy, vw, cfg.mode))
        tr_curve.append(float(tl))
        va_curve.append(vl)
        if vl < best[0]:
            best = (vl, ep, {"params": params, "batch_stats": batch_stats})
        elif cfg.patience is not None and ep - best[1] >= cfg.patience:
            break
    variables = jax.tree_util.tree_map(np.asarray, best[2])
    return TrainResult(variables, best[1], float(best[0]), tr_curve, va_curve, time.perf_counter() - t0)


# -- the study's formulation: a base forward pass every step (benchmark; optional fine-tuning) ------
def make_study_train_step(
    cfg: CNNConfig, pre: Any, tx: optax.GradientTransformation, *, finetune_block3: bool = False
):
    """A jitted step on crops as in the study: random augmentation -> VGG base -> head on the maps.

    ``step(base_params, head_vars, opt_state, key, raw (B, 3, S, S) uint16, y, w)`` ->
    ``(base_params, head_vars, opt_state, loss)``. The base is frozen (stop_gradient) unless
    ``finetune_block3``: then block 3's convs are trained too (``tx`` must then be built over
    ``{"base": ..., "head": ...}``; not run by default -- worth it only on a GPU).
    """
    from lnpstore.models.augment import random_dihedral
    from lnpstore.models.extractor import preprocess, vgg_module

    base = vgg_module()
    head = HeadFromMaps(cfg)

    @jax.jit
    def step(base_params, head_vars, opt_state, key, raw, y, w):
        x = random_dihedral(key, preprocess(raw, pre))

        def lf(trainable):
            bp = base_params
            if finetune_block3:
                bp = {**base_params, **trainable["base"]}
            maps = base.apply({"params": bp}, x)
            if not finetune_block3:
                maps = jax.lax.stop_gradient(maps)
            (out, _), upd = head.apply(
                {"params": trainable["head"], "batch_stats": head_vars["batch_stats"]},
                maps,
                train=True,
                mutable=["batch_stats"],
            )
            return loss_fn(out, y, w, cfg.mode), upd["batch_stats"]

        trainable = {"head": head_vars["params"]}
        if finetune_block3:
            trainable["base"] = {k: v for k, v in base_params.items() if k.startswith("block3")}
        (loss, new_bs), grads = jax.value_and_grad(lf, has_aux=True)(trainable)
        updates, opt_state = tx.update(grads, opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        if finetune_block3:
            base_params = {**base_params, **trainable["base"]}
        return base_params, {"params": trainable["head"], "batch_stats": new_bs}, opt_state, loss

    return step


# -- the store stage ------------------------------------------------------------------------------
@dataclass
class FeatureArrays:
    """Features of all complete cells, one row per (cell, frame): M, Q (N, A, C)."""

    keys: pl.DataFrame  # cell_uid, frame, split, fold, label, gfp_log_centered
    mean: np.ndarray
    mean_sq: np.ndarray


def load_feature_arrays(store: Store, extractor_id: str) -> FeatureArrays:
    cells = store.read("cells").filter(pl.col("complete").fill_null(False))
    feats = (
        store.table("features", extractor_id=extractor_id)
        .join(cells.lazy().select("cell_uid"), on="cell_uid", how="semi")
        .sort("cell_uid", "frame", "aug")
        .collect()
    )
    if feats.height == 0:
        raise LnpstoreError(
            f"no features for extractor `{extractor_id}`. Hint: run `lnpstore embed STORE` first"
        )
    n_aug = feats.get_column("aug").n_unique()
    keys = feats.filter(pl.col("aug") == 0).select("cell_uid", "frame")
    if keys.height * n_aug != feats.height:
        raise LnpstoreError(
            f"features of `{extractor_id}` are incomplete ({feats.height} rows for {keys.height} "
            f"crops x {n_aug} augmentations). Hint: re-run `lnpstore embed` to finish it"
        )
    c = cast(pl.Array, feats.get_column("mean").dtype).size  # the embedding width
    m = feats.get_column("mean").to_numpy().reshape(keys.height, n_aug, c).astype(np.float32)
    q = feats.get_column("mean_sq").to_numpy().reshape(keys.height, n_aug, c).astype(np.float32)
    keys = keys.join(
        cells.select("cell_uid", "split", "fold", "label", "gfp_log_centered"),
        on="cell_uid",
        how="left",
        maintain_order="left",
    )
    return FeatureArrays(keys, m, q)


def _targets(keys: pl.DataFrame, mode: str) -> np.ndarray:
    col = "label" if mode == "classify" else "gfp_log_centered"
    return keys.get_column(col).cast(pl.Float64).fill_null(np.nan).to_numpy().astype(np.float32)


def _single_extractor(store: Store) -> str:
    ids = (
        store.table("features").select("extractor_id").unique().collect().get_column("extractor_id").to_list()
    )
    if len(ids) != 1:
        raise LnpstoreError(f"the store holds features of {len(ids)} extractors {ids}; pass extractor_id=")
    return ids[0]


def train_cnn(
    store: Store,
    mode: Mode,
    *,
    folds: Iterable[int] = range(5),
    epochs: int = 50,
    seed: int = 0,
    extractor_id: str | None = None,
    config: CNNConfig | None = None,
    show_progress: bool = True,
) -> list[str]:
    """Train the head per fold on cached features; write models, embeddings, predictions. Resumable.

    Per fold f: train = train cells with fold != f (every frame a sample with its cell's target),
    validation = train cells of fold f (identity augmentation). Embeddings (the 32-dim BN output) are
    written for every complete cell, frame and augmentation; predictions for every test cell, frame and
    augmentation. A fold whose model id is already in ``models`` is skipped. Returns the model ids.
    ``config`` overrides every setting but ``mode`` and ``extractor_id`` (its ``epochs`` wins over ``epochs``).
    """
    xid = extractor_id or _single_extractor(store)
    cfg = config or CNNConfig(mode=mode, epochs=epochs, extractor_id=xid)
    cfg = replace(cfg, mode=mode, extractor_id=xid, epochs=epochs if config is None else cfg.epochs)
    from lnpstore.models.extractor import read_extractor

    weights_info = read_extractor(store, xid).get("weights_info", {})
    data_version = store.data_version("features", "cells")
    fa: FeatureArrays | None = None
    ids: list[str] = []
    for fold in folds:
        mid = P.model_id(
            "cnn", mode, fold, None, {"config": cfg.to_json(), "seed": seed, "data": data_version}
        )
        ids.append(mid)
        if store.exists("models", model_id=mid):
            log.info("model %s already in the store: skipped", mid)
            continue
        if fa is None:
            fa = load_feature_arrays(store, xid)
        _train_fold(store, fa, cfg, fold, seed, mid, weights_info, data_version, show_progress)
    return ids


def _train_fold(
    store: Store,
    fa: FeatureArrays,
    cfg: CNNConfig,
    fold: int,
    seed: int,
    mid: str,
    weights_info: dict,
    data_version: str,
    show_progress: bool,
) -> None:
    """Train one fold's head on the other folds' training cells, then write its embeddings, its test
    predictions, its weights and its ``models`` row."""
    y_all = _targets(fa.keys, cfg.mode)
    split = fa.keys.get_column("split").to_numpy()
    tr, va = _fold_masks(fa, y_all, fold)
    w_all = _sample_weights(cfg, y_all, tr)
    a = cfg.validation_aug
    res = train_head(
        cfg,
        (fa.mean[tr], fa.mean_sq[tr], y_all[tr], w_all[tr]),
        (fa.mean[va, a], fa.mean_sq[va, a], y_all[va], w_all[va]),
        seed=int(jax.random.randint(jax.random.fold_in(jax.random.PRNGKey(seed), fold), (), 0, 2**31 - 1)),
        show_progress=show_progress,
    )
    log.info("%s: best epoch %d, val loss %.4f, %.1f s", mid, res.best_epoch, res.val_loss, res.seconds)
    _write_outputs(store, fa, cfg, res, mid, fold, y_all, split)
    _write_model(store, cfg, res, mid, fold, seed, weights_info, data_version)


def _fold_masks(fa: FeatureArrays, y_all: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """Training rows (training cells of the other folds) and validation rows (this fold), with a target."""
    split = fa.keys.get_column("split").to_numpy()
    fcol = fa.keys.get_column("fold").fill_null(-1).to_numpy()
    ok = ~np.isnan(y_all)
    tr = (split == "train") & (fcol != fold) & ok
    va = (split == "train") & (fcol == fold) & ok
    if tr.sum() == 0 or va.sum() == 0:
        raise LnpstoreError(f"fold {fold}: {tr.sum()} training and {va.sum()} validation samples; need both")
    return tr, va


def _sample_weights(cfg: CNNConfig, y_all: np.ndarray, tr: np.ndarray) -> np.ndarray:
    """Per-row loss weights: balanced classes from the training rows (classify), else ones."""
    if cfg.mode != "classify" or cfg.class_weights != "balanced":
        return np.ones_like(y_all)
    ytr = y_all[tr]
    n, n1 = len(ytr), float(ytr.sum())
    w_pos, w_neg = n / (2 * max(n1, 1.0)), n / (2 * max(n - n1, 1.0))
    return np.where(y_all > 0.5, w_pos, w_neg).astype(np.float32)


def _write_outputs(
    store: Store,
    fa: FeatureArrays,
    cfg: CNNConfig,
    res: TrainResult,
    mid: str,
    fold: int,
    y_all: np.ndarray,
    split: np.ndarray,
) -> None:
    """The head's 32-dim embedding of every crop and augmentation, and its predictions on the test cells."""
    n, n_aug, c = fa.mean.shape
    out, emb = apply_in_chunks(
        make_eval_fn(cfg), res.variables, fa.mean.reshape(-1, c), fa.mean_sq.reshape(-1, c)
    )
    cell = np.repeat(fa.keys.get_column("cell_uid").to_numpy(), n_aug)
    frame = np.repeat(fa.keys.get_column("frame").to_numpy(), n_aug)
    aug = np.tile(np.arange(n_aug, dtype=np.int8), n)
    store.write(
        "embeddings",
        pl.DataFrame(
            {
                "model_id": [mid] * len(cell),
                "cell_uid": cell,
                "frame": frame,
                "aug": aug,
                "embedding": pl.Series(emb.astype(np.float32)),
            }
        ),
        mode="replace",
    )
    test = np.repeat(split == "test", n_aug)
    pred = np.asarray(predict_value(jnp.asarray(out), cfg.mode), np.float64)
    store.write(
        "predictions",
        pl.DataFrame(
            {
                "model_id": [mid] * int(test.sum()),
                "cell_uid": cell[test],
                "frame": frame[test],
                "aug": aug[test],
                "kind": "cnn",
                "mode": cfg.mode,
                "fold": fold,
                "y_true": np.repeat(y_all, n_aug)[test].astype(np.float64),
                "y_pred": pred[test],
            }
        ),
        mode="replace",
    )


def _write_model(
    store: Store,
    cfg: CNNConfig,
    res: TrainResult,
    mid: str,
    fold: int,
    seed: int,
    weights_info: dict,
    data_version: str,
) -> None:
    """The head's weights and training curves (artifacts) and its ``models`` row (config, seed, data
    and package versions)."""
    from flax import serialization

    mdir = store.artifacts_dir("models")
    wpath = mdir / f"{mid}.msgpack"
    atomic_write_bytes(serialization.to_bytes(res.variables), wpath)
    P.plot_curves(res.train_curve, res.val_curve, res.best_epoch, mdir / f"{mid}_curves.png", title=mid)
    store.write(
        "models",
        pl.DataFrame(
            [
                {
                    "model_id": mid,
                    "kind": "cnn",
                    "mode": cfg.mode,
                    "fold": fold,
                    "checkpoint": None,
                    "config": cfg.to_json(),
                    "seed": seed,
                    "best_epoch": res.best_epoch,
                    "val_loss": res.val_loss,
                    "weights_path": str(wpath.relative_to(store.root)),
                    "weights_info": json.dumps(weights_info, sort_keys=True),
                    "data_version": data_version,
                    **P.versions(),
                    "created_at": P.now(),
                }
            ]
        ),
        mode="upsert",
    )


def load_head(store: Store, model_id: str) -> tuple[CNNConfig, dict]:
    """A trained head's config and variables from the store."""
    from flax import serialization

    row = store.read("models", model_id=model_id)
    if row.height == 0:
        raise LnpstoreError(f"no model `{model_id}` in the store")
    cfg = CNNConfig(**json.loads(row["config"][0]))
    target = init_head(cfg, jax.random.PRNGKey(0))
    data = (store.root / row["weights_path"][0]).read_bytes()
    return cfg, serialization.from_bytes(target, data)
