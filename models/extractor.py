"""The frozen VGG16 base (blocks 1-3) and the per-crop feature cache it fills.

The base: conv 3x3 SAME + ReLU, 2 convs in blocks 1 and 2 (64, 128 channels) and 3 in block 3 (256),
2x2 max-pool after blocks 1 and 2, none after block 3: an (S, S, 3) crop gives block3_conv3's
(S/4, S/4, 256) map.

Preprocessing (:class:`Preprocessing`), as VGG expects its "caffe" input: each 16-bit crop channel is
scaled to 0-255 between its 0.1 and 99.9 percentiles over the *training* cells' crops (a sample of
their pixels; robust to hot pixels), clipped to that range (so test and control crops never leave the
training range), minus the training mean of the scaled channel. Channel -> input slot: CS -> B (slot 0),
BF -> G (slot 1), LNP -> R (slot 2), i.e. the crop tensor's order (:data:`lnpstore.layout.CROP_CHANNELS`)
fed as is into the BGR slots of the Keras/caffe weights.

The cache: with the base frozen, the head needs per crop and augmentation only the per-channel spatial
mean and mean of squares of block3_conv3's output (see :mod:`lnpstore.models.cnn`), stored in the
``features`` table under an ``extractor_id`` that hashes the weights and the preprocessing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from lnpstore.models.augment import N_AUGS
from lnpstore.models.weights import LAYERS, Params, WeightsInfo, load_vgg16_blocks

from lnpstore.instrument.layout import CROP_CHANNELS
from lnpstore.store.atomic import atomic_write_text
from lnpstore.store.core import Store
from lnpstore.store.errors import LnpstoreError

log = logging.getLogger(__name__)

SLOTS: dict[str, str] = {"B": "CS", "G": "BF", "R": "LNP"}  # input slot -> crop channel
PERCENTILES = (0.1, 99.9)
FIT_PIXELS_PER_CROP = 1024
FIT_MAX_CROPS = 5000


# -- network --------------------------------------------------------------------------------------
def vgg_module(dtype: Any = None) -> Any:
    """The Flax linen module of VGG16 blocks 1-3 (built lazily so that importing this file is cheap)."""
    import flax.linen as nn
    import jax.numpy as jnp

    class VGG16Blocks123(nn.Module):
        """(B, H, W, 3) preprocessed BGR input -> (B, H/4, W/4, 256) block3_conv3 output (after ReLU)."""

        dtype: Any = jnp.float32

        @nn.compact
        def __call__(self, x):
            for block, n_conv, feats in ((1, 2, 64), (2, 2, 128), (3, 3, 256)):
                for c in range(1, n_conv + 1):
                    conv = nn.Conv(
                        feats, (3, 3), padding="SAME", dtype=self.dtype, name=f"block{block}_conv{c}"
                    )
                    x = nn.relu(conv(x))
                if block < 3:
                    x = nn.max_pool(x, (2, 2), strides=(2, 2))
            return x

    return VGG16Blocks123(dtype=dtype or jnp.float32)


def flax_params(params: Params) -> dict:
    """Package layout -> Flax params tree ``{"block1_conv1": {"kernel", "bias"}, ...}``."""
    import jax.numpy as jnp

    return {
        n: {"kernel": jnp.asarray(params[f"{n}/kernel"]), "bias": jnp.asarray(params[f"{n}/bias"])}
        for n, _, _ in LAYERS
    }


# -- preprocessing --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocessing:
    """Per crop channel (CS, BF, LNP order): the 0-255 scaling range in counts and the training mean."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    mean: tuple[float, float, float]
    channels: tuple[str, ...] = CROP_CHANNELS
    slots: tuple[tuple[str, str], ...] = tuple(SLOTS.items())
    method: str = (
        "0.1/99.9 percentiles of a pixel sample of training-cell crops; clipped; minus training mean"
    )
    n_crops: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def decode_pixels(pixels: list[bytes], size_px: int) -> np.ndarray:
    """Crop blobs -> (N, 3, S, S) uint16."""
    n = len(pixels)
    out = np.empty((n, 3, size_px, size_px), np.uint16)
    for i, b in enumerate(pixels):
        out[i] = np.frombuffer(b, dtype="<u2").reshape(3, size_px, size_px)
    return out


def fit_preprocessing(crops: np.ndarray, *, seed: int = 0) -> Preprocessing:
    """Fit the scaling on training crops (N, 3, S, S) uint16 (a sample of pixels per crop)."""
    if crops.ndim != 4 or crops.shape[1] != 3 or len(crops) == 0:
        raise LnpstoreError(
            f"fit_preprocessing needs training crops of shape (N, 3, S, S), got {crops.shape}"
        )
    rng = np.random.default_rng(seed)
    n, _, s, _ = crops.shape
    flat = crops.reshape(n, 3, s * s)
    k = min(FIT_PIXELS_PER_CROP, s * s)
    idx = rng.integers(0, s * s, size=(n, k))
    sample = (
        np.take_along_axis(flat, idx[:, None, :], axis=2).transpose(1, 0, 2).reshape(3, -1).astype(np.float64)
    )
    lo = np.percentile(sample, PERCENTILES[0], axis=1)
    hi = np.percentile(sample, PERCENTILES[1], axis=1)
    hi = np.where(hi > lo, hi, lo + 1.0)
    scaled = np.clip((sample - lo[:, None]) / (hi - lo)[:, None], 0, 1) * 255.0
    mean = scaled.mean(axis=1)
    return Preprocessing(_per_channel(lo), _per_channel(hi), _per_channel(mean), n_crops=n)


def _per_channel(values: np.ndarray) -> tuple[float, float, float]:
    """The three crop channels' values as floats."""
    cs, bf, lnp = (float(v) for v in values)
    return cs, bf, lnp


def preprocess(raw: Any, pre: Preprocessing) -> Any:
    """(B, 3, S, S) counts -> (B, S, S, 3) VGG input (jnp; CS, BF, LNP -> B, G, R slots)."""
    import jax.numpy as jnp

    lo = jnp.asarray(pre.lo, jnp.float32)
    hi = jnp.asarray(pre.hi, jnp.float32)
    mean = jnp.asarray(pre.mean, jnp.float32)
    x = jnp.transpose(raw.astype(jnp.float32), (0, 2, 3, 1))
    return jnp.clip((x - lo) / (hi - lo), 0.0, 1.0) * 255.0 - mean


# -- feature function -----------------------------------------------------------------------------
def make_feature_fn(pre: Preprocessing, *, n_augs: int = N_AUGS, dtype: Any = None) -> Callable:
    """A jitted ``fn(flax_params, raw (B, 3, S, S) uint16) -> (mean, mean_sq)``, each (B, n_augs, 256) float32."""
    import jax
    import jax.numpy as jnp
    from lnpstore.models.augment import all_dihedral

    model = vgg_module(dtype)

    @jax.jit
    def fn(params: dict, raw: jax.Array) -> tuple[jax.Array, jax.Array]:
        b, _, s, _ = raw.shape
        x = preprocess(raw, pre)
        xa = all_dihedral(x, n_augs).reshape(n_augs * b, s, s, 3)
        if dtype is not None:
            xa = xa.astype(dtype)
        f = model.apply({"params": params}, xa).astype(jnp.float32)
        m = f.mean(axis=(1, 2)).reshape(n_augs, b, -1).transpose(1, 0, 2)
        q = (f * f).mean(axis=(1, 2)).reshape(n_augs, b, -1).transpose(1, 0, 2)
        return m, q

    return fn


def run_batches(
    fn: Callable, params: dict, crops: np.ndarray, batch_size: int, on_batch: Callable | None = None
):
    """Apply ``fn`` in fixed-size batches (the last one padded, so one compile); returns numpy (mean, mean_sq).

    The next batch is sent to the device while the current one runs, and a batch's results are brought
    back only after the next one is dispatched (on an H100, bf16, 192 px: 30.5k vs 26.6k images/s
    without this; ``benchmarks/extract_gpu.py``). On a CPU it changes nothing.
    """
    import jax

    n = len(crops)

    def padded(start: int) -> tuple[np.ndarray, int]:
        chunk = crops[start : start + batch_size]
        k = len(chunk)
        if k < batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - k, *chunk.shape[1:]), chunk.dtype)])
        return chunk, k

    means, sqs = [], []

    def collect(res: tuple, k: int) -> None:
        m, q = res
        means.append(np.asarray(m)[:k])
        sqs.append(np.asarray(q)[:k])
        if on_batch is not None:
            on_batch(k)

    pending = None
    nxt = jax.device_put(padded(0)[0]) if n else None
    for start in range(0, n, batch_size):
        cur, k = nxt, min(batch_size, n - start)
        res = fn(params, cur)  # dispatched asynchronously
        if start + batch_size < n:
            nxt = jax.device_put(padded(start + batch_size)[0])
        if pending is not None:
            collect(*pending)
        pending = (res, k)
    if pending is not None:
        collect(*pending)
    if not means:
        return np.zeros((0, 0, 0), np.float32), np.zeros((0, 0, 0), np.float32)
    return np.concatenate(means), np.concatenate(sqs)


# -- the store stage ------------------------------------------------------------------------------
def extractor_id_for(info: WeightsInfo, pre: Preprocessing, n_augs: int, dtype: str = "float32") -> str:
    """A stable id of what decides the features: weights, preprocessing, augmentations and compute dtype
    (bfloat16 features differ from float32 ones in the 3rd digit, so they never share an id)."""
    d = {"weights": info.sha256, "pre": pre.to_dict(), "n_augs": n_augs}
    if dtype != "float32":  # float32 ids stay as they were before the dtype was part of the id
        d["dtype"] = dtype
    payload = json.dumps(d, sort_keys=True)
    return f"vgg16b3-{info.sha256[:8]}-{hashlib.sha256(payload.encode()).hexdigest()[:8]}"


def _dtype_name(dtype: Any) -> str:
    """'float32' (None, the default) or the numpy name of the compute dtype (e.g. 'bfloat16')."""
    if dtype is None:
        return "float32"
    import jax.numpy as jnp

    return jnp.dtype(dtype).name


def default_batch_size() -> int:
    """Crops per forward pass when the user names none: 64 on an accelerator (512 images, where an
    H100 reaches its rate, ``benchmarks/extract_gpu.py``), 4 on a CPU (larger batches only use more memory)."""
    import jax

    return 4 if jax.default_backend() == "cpu" else 64


def _complete_cells(store: Store) -> pl.DataFrame:
    cells = store.read("cells").filter(pl.col("complete").fill_null(False))
    if cells.height == 0:
        raise LnpstoreError("no complete cells in the store's `cells` table. Hint: run the crop stage first")
    return cells


def _read_train_sample(store: Store, cells: pl.DataFrame, seed: int) -> np.ndarray:
    train = cells.filter(pl.col("split") == "train")
    if train.height == 0:
        raise LnpstoreError("no training cells (split == 'train'): cannot fit the preprocessing")
    rows = (
        store.table("crops")
        .join(train.lazy().select("cell_uid"), on="cell_uid", how="semi")
        .select("cell_uid", "frame", "size_px")
        .collect()
        .sort("cell_uid", "frame")
    )
    if rows.height == 0:
        raise LnpstoreError("training cells have no crops in the `crops` table. Hint: run the crop stage")
    if rows.height > FIT_MAX_CROPS:
        rows = rows.sample(FIT_MAX_CROPS, seed=seed).sort("cell_uid", "frame")
    size = _one_size(rows)
    px = (
        store.table("crops")
        .join(rows.lazy().select("cell_uid", "frame"), on=["cell_uid", "frame"], how="semi")
        .select("cell_uid", "frame", "pixels")
        .collect()
        .sort("cell_uid", "frame")
    )
    return decode_pixels(px.get_column("pixels").to_list(), size)


def _one_size(df: pl.DataFrame) -> int:
    sizes = df.get_column("size_px").unique().to_list()
    if len(sizes) != 1:
        raise LnpstoreError(f"crops have several sizes {sorted(sizes)}; the extractor needs one crop size")
    return int(sizes[0])


def extract_features(
    store: Store,
    *,
    weights: str | Path = "imagenet",
    n_augs: int = N_AUGS,
    batch_size: int | None = None,
    dtype: Any = None,
    show_progress: bool = True,
    seed: int = 0,
    include_controls: bool = True,
) -> str:
    """Fill the ``features`` table for every crop of every complete cell; returns the ``extractor_id``.

    ``include_controls=False`` skips control cells (``split == "control"``): no model reads their
    embeddings (they only set the GFP threshold), so a run that does not export profiles saves their
    share of the VGG passes; a later call with True adds them (same ``extractor_id``).

    ``batch_size`` is in crops per forward pass (each gives ``n_augs`` images; None:
    :func:`default_batch_size`). ``dtype``: the base's compute dtype (None: float32; ``"bfloat16"``
    on a GPU). Resumable: cells whose
    rows are all stored (frames x augmentations) are skipped; work is written per (plate, well). The
    extractor's description (weights info, preprocessing, slots) is written to
    ``artifacts/extractors/<extractor_id>.json``.
    """
    from lnpstore.runtime.progress import bar

    if not 1 <= n_augs <= N_AUGS:
        raise ValueError(f"n_augs must be 1..8, not {n_augs}")
    params_np, info = load_vgg16_blocks(weights)  # first: fetched, or a clear error, before other work
    cells = _complete_cells(store)
    if not include_controls:
        cells = cells.filter(pl.col("split") != "control")
    pre = fit_preprocessing(_read_train_sample(store, cells, seed), seed=seed)
    dtype_name = _dtype_name(dtype)
    xid = extractor_id_for(info, pre, n_augs, dtype_name)
    desc = {
        "extractor_id": xid,
        "weights_info": asdict(info),
        "preprocessing": pre.to_dict(),
        "n_augs": n_augs,
        "layer": "block3_conv3",
        "dtype": dtype_name,
    }
    atomic_write_text(json.dumps(desc, indent=2), store.artifacts_dir("extractors") / f"{xid}.json")

    crops_index = (
        store.table("crops")
        .join(cells.lazy().select("cell_uid"), on="cell_uid", how="semi")
        .select("plate", "well", "cell_uid", "frame", "size_px")
        .collect()
    )
    size = _one_size(crops_index)
    done = (
        store.table("features", extractor_id=xid).group_by("cell_uid").agg(pl.len().alias("n_rows")).collect()
    )
    need = crops_index.group_by("cell_uid").agg((pl.len() * n_augs).alias("n_need"))
    finished = (
        need.join(done, on="cell_uid").filter(pl.col("n_rows") >= pl.col("n_need")).get_column("cell_uid")
    )
    todo = crops_index.filter(~pl.col("cell_uid").is_in(finished.implode()))
    log.info("extractor %s: %d crops to do, %d cells already done", xid, todo.height, finished.len())
    if todo.height == 0:
        return xid

    fn = make_feature_fn(pre, n_augs=n_augs, dtype=dtype)
    params = flax_params(params_np)
    batch_size = batch_size or default_batch_size()
    t0 = time.perf_counter()
    ctx = bar(desc=f"embed {xid}", total=todo.height, unit="crop") if show_progress else nullcontext(_NoBar())
    with ctx as b:
        for (plate, well), part in todo.group_by(["plate", "well"], maintain_order=True):
            rows = (
                store.table("crops", plate=plate, well=well)
                .join(part.lazy().select("cell_uid", "frame"), on=["cell_uid", "frame"], how="semi")
                .select("cell_uid", "frame", "pixels")
                .collect()
                .sort("cell_uid", "frame")
            )
            raw = decode_pixels(rows.get_column("pixels").to_list(), size)
            m, q = run_batches(fn, params, raw, batch_size, on_batch=b.update)
            store.write(
                "features",
                features_frame(xid, rows.select("cell_uid", "frame"), m, q, plate=plate, well=well),
                mode="upsert",
            )
    dt = time.perf_counter() - t0
    log.info(
        "extractor %s: %d crops in %.1f s (%.1f crops/s)", xid, todo.height, dt, todo.height / max(dt, 1e-9)
    )
    return xid


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


def features_frame(
    xid: str, keys: pl.DataFrame, mean: np.ndarray, mean_sq: np.ndarray, *, plate: str, well: str
) -> pl.DataFrame:
    """Rows of the ``features`` table for one well from keys (cell_uid, frame) and (N, A, 256) arrays."""
    n, a, c = mean.shape
    return pl.DataFrame(
        {
            "plate": [plate] * (n * a),
            "well": [well] * (n * a),
            "cell_uid": np.repeat(keys.get_column("cell_uid").to_numpy(), a),
            "frame": np.repeat(keys.get_column("frame").to_numpy(), a),
            "aug": np.tile(np.arange(a, dtype=np.int8), n),
            "extractor_id": [xid] * (n * a),
            "mean": pl.Series(mean.reshape(n * a, c).astype(np.float32)),
            "mean_sq": pl.Series(mean_sq.reshape(n * a, c).astype(np.float32)),
        }
    )


def read_extractor(store: Store, extractor_id: str) -> dict:
    """The description written by :func:`extract_features` (``{}`` when absent)."""
    p = Path(store.artifacts_dir("extractors")) / f"{extractor_id}.json"
    return json.loads(p.read_text()) if p.exists() else {}
