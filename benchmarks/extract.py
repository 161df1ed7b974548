"""Benchmark the frozen VGG16 base on this CPU and the feature cache's speed-up for head training.

Prints: the FLOP rate of one large float32 matmul; per crop size, the base's crops/s, its achieved
GFLOP/s and the ratio to the matmul rate (bar: within 2x); and one epoch of head training on the cache
vs the study's way (a frozen-base forward pass every step) on the same samples (bar: over 20x).

    python benchmarks/extract.py [--sizes 192 96] [--batch 8] [--train-size 64] [--n-train 256]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _time(fn, reps: int) -> float:
    """Median seconds of ``fn()`` (which must block) after one warm-up call."""
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def base_flops(size_px: int) -> float:
    """Multiply-adds x 2 of blocks 1-3 for one (size, size, 3) image."""
    from lnpstore.models.weights import LAYERS

    total, s = 0.0, size_px
    for name, cin, cout in LAYERS:
        if name in ("block2_conv1", "block3_conv1"):
            s //= 2
        total += 2.0 * s * s * 9 * cin * cout
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[192, 96])
    ap.add_argument("--batch", type=int, default=8, help="images per base forward pass")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--train-size", type=int, default=64, help="crop px for the training comparison")
    ap.add_argument("--n-train", type=int, default=256, help="samples per epoch in the training comparison")
    ap.add_argument("--bf16", action="store_true", help="also time the base in bfloat16")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import optax
    from lnpstore.models import cnn as C
    from lnpstore.models.extractor import Preprocessing, flax_params, vgg_module
    from lnpstore.models.weights import random_params

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {jax.device_count()} device(s)")
    n = 2048
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    mm = jax.jit(lambda x: x @ x)
    t = _time(lambda: mm(a).block_until_ready(), args.reps)
    mm_rate = 2 * n**3 / t / 1e9
    print(f"matmul {n}x{n} float32: {mm_rate:.1f} GFLOP/s")

    params = flax_params(random_params())
    dtypes = [("float32", jnp.float32)] + ([("bfloat16", jnp.bfloat16)] if args.bf16 else [])
    for size in args.sizes:
        for dname, dt in dtypes:
            model = vgg_module(dt)
            fwd = jax.jit(lambda p, x, model=model: model.apply({"params": p}, x).mean(axis=(1, 2)))
            x = jax.random.normal(jax.random.PRNGKey(1), (args.batch, size, size, 3), jnp.float32).astype(dt)
            t = _time(lambda fwd=fwd, x=x: fwd(params, x).block_until_ready(), args.reps)
            rate = args.batch / t
            gf = rate * base_flops(size) / 1e9
            print(
                f"base {size}x{size} {dname}: {rate:.2f} crops/s (one augmentation each), "
                f"{gf:.1f} GFLOP/s = {gf / mm_rate:.2f} x matmul rate; 8 augmentations: {rate / 8:.2f} crops/s"
            )

    # -- head training: cache vs the study's way ---------------------------------------------------
    cfg = C.CNNConfig(batch_size=32)
    s, nt = args.train_size, args.n_train
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 4000, (nt, 3, s, s)).astype(np.uint16)
    y = (rng.random(nt) < 0.4).astype(np.float32)
    w = np.ones(nt, np.float32)
    pre = Preprocessing((0.0,) * 3, (4000.0,) * 3, (127.0,) * 3)
    tx = optax.adam(cfg.learning_rate)

    head = C.init_head(cfg, jax.random.PRNGKey(0))
    m = jnp.asarray(rng.gamma(2.0, 1.0, (nt, 8, 256)), jnp.float32)
    q = m * m + 1.0
    epoch = C.make_epoch_fn(cfg, tx)
    opt = tx.init(head["params"])

    def cache_epoch():
        out = epoch(
            head["params"],
            head["batch_stats"],
            opt,
            jax.random.PRNGKey(2),
            m,
            q,
            jnp.asarray(y),
            jnp.asarray(w),
        )
        out[3].block_until_ready()

    t_cache = _time(cache_epoch, args.reps)

    step = C.make_study_train_step(cfg, pre, tx)
    opt2 = tx.init({"head": head["params"]})
    nb = nt // cfg.batch_size

    def study_epoch():
        hv, o = head, opt2
        loss = None
        for i in range(nb):
            sl = slice(i * cfg.batch_size, (i + 1) * cfg.batch_size)
            _, hv, o, loss = step(params, hv, o, jax.random.PRNGKey(i), raw[sl], y[sl], w[sl])
        loss.block_until_ready()

    t_study = _time(study_epoch, 1)
    print(
        f"head training, one epoch of {nb * cfg.batch_size} samples at {s}x{s}: cache {t_cache * 1e3:.1f} ms, "
        f"study's way (base forward every step) {t_study * 1e3:.0f} ms: speed-up {t_study / t_cache:.0f}x"
    )


if __name__ == "__main__":
    main()
