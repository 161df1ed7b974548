"""Throughput of the package's feature extractor on an accelerator (or any JAX backend).

Times the function the ``embed`` stage runs (:func:`lnpstore.models.extractor.make_feature_fn`:
uint16 crops -> preprocessing -> 8 dihedral augmentations -> VGG16 blocks 1-3 -> per-channel mean and
mean of squares), in float32 and bfloat16, over batch sizes, in two ways:

* device-resident: the crops already on the device (the compute bar: "plain XLA ran VGG blocks 1-3
  at about 32k crops/s, 192 px, bf16, H100", counted in images through the base);
* end to end: :func:`lnpstore.models.extractor.run_batches` from host numpy uint16, the results back
  on the host (what a user gets; ``run_batches`` sends the next batch while the current one runs).

and one step of the study's formulation (a base forward per training step, batch 32) frozen and with
block 3 fine-tuned (``make_study_train_step(finetune_block3=True)``), in steps/s.

    python benchmarks/extract_gpu.py [--size 192] [--batches 16 32 64] [--n-crops 2048] [--json out.json]

Random weights (throughput does not depend on them); the figures are printed and optionally saved.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=192, help="crop side in px")
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64], help="crops per call (x8 images)")
    ap.add_argument("--n-crops", type=int, default=2048, help="crops in the end-to-end run")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import optax

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from extract import _time as _median_s  # median of reps after a warm-up, as the CPU benchmark
    from lnpstore.models import cnn as C
    from lnpstore.models.augment import N_AUGS
    from lnpstore.models.extractor import Preprocessing, flax_params, make_feature_fn, run_batches
    from lnpstore.models.weights import random_params

    dev = jax.devices()[0]
    print(
        f"jax {jax.__version__} on {dev.platform} ({dev.device_kind}), {jax.device_count()} device(s)",
        flush=True,
    )
    out: dict = {"jax": jax.__version__, "device": dev.device_kind, "size_px": args.size, "rows": []}
    params = jax.device_put(flax_params(random_params()))
    pre = Preprocessing((100.0,) * 3, (4000.0,) * 3, (120.0,) * 3)
    rng = np.random.default_rng(0)
    s = args.size

    for dname, dt in (("float32", None), ("bfloat16", jnp.bfloat16)):
        fn = make_feature_fn(pre, dtype=dt)
        for b in args.batches:
            raw = jax.device_put(rng.integers(0, 4096, (b, 3, s, s)).astype(np.uint16))
            t = _median_s(lambda fn=fn, raw=raw: jax.block_until_ready(fn(params, raw)), args.reps)
            row = {"dtype": dname, "batch_crops": b, "way": "device", "images_per_s": b * N_AUGS / t}
            out["rows"].append(row)
            print(
                f"{dname:8s} batch {b:4d} crops ({b * N_AUGS} images) device-resident: "
                f"{row['images_per_s']:9.0f} images/s = {b / t:8.0f} crops/s x 8 augs",
                flush=True,
            )
        # end to end from host uint16 (the stage's real path), largest batch
        b = max(args.batches)
        host = rng.integers(0, 4096, (args.n_crops, 3, s, s)).astype(np.uint16)
        run_batches(fn, params, host[:b], b)  # compile outside the timing
        t0 = time.perf_counter()
        run_batches(fn, params, host, b)
        tt = time.perf_counter() - t0
        row = {"dtype": dname, "batch_crops": b, "way": "host", "images_per_s": args.n_crops * N_AUGS / tt}
        out["rows"].append(row)
        print(
            f"{dname:8s} batch {b:4d} crops, {args.n_crops} crops from host (run_batches): "
            f"{row['images_per_s']:9.0f} images/s",
            flush=True,
        )

    if not args.skip_train:
        cfg = C.CNNConfig(batch_size=32)
        head = C.init_head(cfg, jax.random.PRNGKey(0))
        raw = rng.integers(0, 4096, (32, 3, s, s)).astype(np.uint16)
        y = (rng.random(32) < 0.4).astype(np.float32)
        w = np.ones(32, np.float32)
        for ft in (False, True):
            tx = optax.adam(cfg.learning_rate)
            trainable = {"head": head["params"]}
            if ft:
                trainable["base"] = {k: v for k, v in params.items() if k.startswith("block3")}
            step = C.make_study_train_step(cfg, pre, tx, finetune_block3=ft)
            opt = tx.init(trainable)
            state = {"p": params, "h": head, "o": opt}

            def one(state=state, step=step) -> None:
                res = step(state["p"], state["h"], state["o"], jax.random.PRNGKey(1), raw, y, w)
                jax.block_until_ready(res[-1])

            try:
                t = _median_s(one, args.reps)
                row = {"train": "finetune_block3" if ft else "frozen", "steps_per_s": 1 / t, "batch": 32}
                print(f"study train step, batch 32 at {s}px, {row['train']}: {1 / t:.1f} steps/s", flush=True)
            except Exception as exc:  # report and go on: the figure is missing, not wrong
                row = {"train": "finetune_block3" if ft else "frozen", "error": repr(exc)[:300]}
                print(f"study train step {row['train']} failed: {row['error']}", flush=True)
            out["rows"].append(row)

    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
