"""Benchmark of the time-series models on one (fold, mode, checkpoint): wall time, peak memory,
tsfresh series/s per setting, the costliest tsfresh calculators, and what each LSTM-search speed-up buys.

Data: a synthetic panel of the demo's size (cells x 8 augmentations x frames x 32 channels) with a
planted temporal signal (label = sign of a slope in channel 0, per-cell offsets). Sizes are arguments::

    python benchmarks/timeseries.py --cells 150 --frames 20 --lstm-samples 16 --xgb-samples 20
    python benchmarks/timeseries.py --skip tsfresh,profile --cells 40 --augs 2 --lstm-samples 3

LSTM: each speed-up variant from a cold start, on one (fold, mode, checkpoint) search and on a loop
of ``--loop-folds`` folds x ``--loop-checkpoints`` (the stage's unit of work), with ratios against the
plain loop (one candidate at a time, compiled afresh per candidate).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import tracemalloc
from dataclasses import replace

import numpy as np


def synthetic(cells: int, augs: int, frames: int, channels: int, seed: int = 0):
    """(cells*augs, frames, channels) panel, labels, and the cell index of each case."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, cells)
    slope = np.where(y == 1, 1.0, -1.0) * rng.uniform(0.2, 0.6, cells)
    t = np.arange(frames) - (frames - 1) / 2
    base = rng.normal(0, 1, (cells, frames, channels))
    base[:, :, 0] = rng.normal(0, 6, (cells, 1)) + slope[:, None] * t
    X = base[:, None] + rng.normal(0, 0.3, (cells, augs, frames, channels))
    return (
        X.reshape(cells * augs, frames, channels).astype(np.float32),
        np.repeat(y, augs),
        np.repeat(np.arange(cells), augs),
    )


def split(X, y, cell, seed=0):
    rng = np.random.default_rng(seed)
    cells = np.unique(cell)
    role = rng.choice(["train", "val", "test"], size=len(cells), p=[0.6, 0.2, 0.2])[cell]
    return {r: (X[role == r], y[role == r], cell[role == r]) for r in ("train", "val", "test")}


def measured(fn):
    """(result, wall s, peak Python-heap MB via tracemalloc, max RSS MB of the process so far)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return out, wall, peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def average(X, y, cell):
    u, inv = np.unique(cell, return_inverse=True)
    Xa = np.zeros((len(u),) + X.shape[1:])
    np.add.at(Xa, inv, X)
    c = np.bincount(inv)[:, None, None]
    return (Xa / c).astype(np.float32), np.bincount(inv, weights=y) / c[:, 0, 0]


def bench_tsfresh_calculators(X, n_series: int) -> list[tuple[str, float]]:
    """Seconds per calculator of EfficientFCParameters on ``n_series`` series (1 channel)."""
    from lnpstore.models.tsgbm import extract, fc_settings

    eff = fc_settings("efficient")
    Xs = X[:n_series, :, :1]
    out = []
    for name, params in eff.items():
        t0 = time.perf_counter()
        extract(Xs, ["c"], default_fc_parameters={name: params})
        out.append((name, time.perf_counter() - t0))
    return sorted(out, key=lambda x: -x[1])


def bench_lstm(a, X, y, cell, parts) -> dict:
    """Each LSTM-search speed-up, from a cold start (compiled functions and JAX caches cleared):
    one (fold, mode, checkpoint) search, then a loop over ``--loop-folds`` folds (different case
    counts) x ``--loop-checkpoints`` in one process, as the time-series stage runs them."""
    from lnpstore.models import lstm as L

    if a.jax_cache:
        from lnpstore.models.jaxcache import enable

        print("persistent JAX cache:", enable(a.jax_cache, min_compile_time_s=0.0))
    cfgs = L.sample_configs(a.lstm_samples, 0)
    print("LSTM candidates:", [c.shape for c in cfgs])
    full = L.SearchConfig(
        select=L.TrainConfig(lr=1e-3, epochs=a.lstm_epochs),
        final=L.TrainConfig(lr=1e-5, epochs=a.lstm_final_epochs),
        vmap_width=8,
        rung_epochs=max(1, a.lstm_epochs // 4),
    )
    variants = {
        "plain_loop": replace(full, vmap_width=1, fused=False, halving=False, cache_compiles=False),
        "compile_once": replace(full, vmap_width=1, fused=False, halving=False),
        "fused_epochs": replace(full, vmap_width=1, halving=False),
        "vmap": replace(full, halving=False),
        "vmap_halving": full,
    }
    if a.lstm_variants:
        variants = {k: v for k, v in variants.items() if k in a.lstm_variants.split(",")}
    cps = [int(c) for c in a.loop_checkpoints.split(",")]
    t_max = min(max(cps), a.frames)
    (Xtr, ytr, _), (Xv, yv, _), (Xte, yte, _) = parts["train"], parts["val"], parts["test"]
    folds = [split(X, y, cell, seed=f) for f in range(a.loop_folds)]
    res: dict = {}
    base: dict = {}

    def search(sc, Xa, ya, Xb, yb, t):
        t_pad = t_max if sc.cache_compiles else None  # padding frames only pays with cached compiles
        return L.lstm_search(
            Xa[:, :t], ya, Xb[:, :t], yb, mode="classify", seed=0, search=sc, configs=cfgs, t_pad=t_pad
        )

    for name, sc in variants.items():
        L.clear_compiled()
        traces0 = dict(L.TRACES)
        (m, trials), wall, peak, rss = measured(lambda sc=sc: search(sc, Xtr, ytr, Xv, yv, t_max))
        acc = float((m.predict(Xte[:, :t_max]) == yte).mean())
        L.clear_compiled()
        t0 = time.perf_counter()
        n_loop = 0
        for f in folds:
            (Xa, ya, _), (Xb, yb, _) = f["train"], f["val"]
            for t in cps:
                search(sc, Xa, ya, Xb, yb, min(t, a.frames))
                n_loop += 1
        loop = time.perf_counter() - t0
        base = base or {"one": wall, "loop": loop}
        res[f"lstm_{name}"] = r = {
            "one_search_s": round(wall, 2),
            "one_speedup": round(base["one"] / wall, 2),
            f"loop_{n_loop}_searches_s": round(loop, 2),
            "loop_speedup": round(base["loop"] / loop, 2),
            "traces": {k: v - traces0.get(k, 0) for k, v in L.TRACES.items() if v - traces0.get(k, 0)},
            "peak_py_mb": round(peak, 1),
            "max_rss_mb": round(rss, 1),
            "best_trial": int(trials.filter("selected")["trial"][0]),
            "best_val_loss": round(float(trials["val_loss"].min()), 4),
            "test_acc": round(acc, 3),
        }
        print(f"lstm {name:13s}", json.dumps(r), flush=True)
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=150)
    ap.add_argument("--augs", type=int, default=8)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--lstm-samples", type=int, default=16)
    ap.add_argument("--lstm-epochs", type=int, default=20)
    ap.add_argument("--lstm-final-epochs", type=int, default=0, help="retraining epochs of the winner")
    ap.add_argument("--loop-folds", type=int, default=2, help="folds of the LSTM loop")
    ap.add_argument("--loop-checkpoints", default="5,10,15,20", help="checkpoints of the LSTM loop")
    ap.add_argument("--lstm-variants", default="", help="comma list (default: all)")
    ap.add_argument("--jax-cache", default=None, help="enable JAX's persistent compilation cache here")
    ap.add_argument("--xgb-samples", type=int, default=20)
    ap.add_argument("--tsfresh-series", type=int, default=200, help="series for the calculator profile")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: lstm,tsfresh,profile")
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args(argv)
    skip = set(a.skip.split(","))
    X, y, cell = synthetic(a.cells, a.augs, a.frames, a.channels)
    parts = split(X, y, cell)
    (Xtr, ytr, ctr), (Xv, yv, _), (Xte, yte, _) = parts["train"], parts["val"], parts["test"]
    res: dict = {"size": vars(a), "n_train_cases": len(Xtr), "n_val_cases": len(Xv), "n_test_cases": len(Xte)}
    print(json.dumps(res["size"]))

    if "profile" not in skip:
        prof = bench_tsfresh_calculators(Xtr, min(a.tsfresh_series, len(Xtr)))
        tot = sum(s for _, s in prof)
        res["tsfresh_calculators_top"] = [(n, round(s, 3), round(s / tot, 3)) for n, s in prof[:12]]
        print("tsfresh calculators, share of Efficient time:", res["tsfresh_calculators_top"])

    if "tsfresh" not in skip:
        from lnpstore.models.tsgbm import TsfreshXGB, extract, fc_settings

        n = min(a.tsfresh_series, len(Xtr))
        chans = [f"e{i:02d}" for i in range(a.channels)]
        for fc in ("minimal", "fast", "efficient"):
            _, wall, _, _ = measured(
                lambda fc=fc: extract(Xtr[:n], chans, default_fc_parameters=fc_settings(fc))
            )
            res[f"tsfresh_{fc}_series_per_s"] = round(n * a.channels / wall, 1)
            print(f"tsfresh {fc}: {n * a.channels / wall:.1f} series/s")
        for fc, avg in (("efficient", False), ("fast", False), ("efficient", True), ("fast", True)):
            tr, va, te = (Xtr, ytr), (Xv, yv), (Xte, yte)
            if avg:
                tr = average(Xtr, ytr, ctr)
                va = average(*parts["val"])
                te = average(*parts["test"])
            m, wall, peak, rss = measured(
                lambda fc=fc, tr=tr, va=va: TsfreshXGB(
                    "classify", fc_parameters=fc, n_samples=a.xgb_samples, seed=0
                ).fit(*tr, *va)
            )
            acc = float((m.predict(te[0]) == (te[1] > 0.5)).mean())
            key = f"tsfresh_xgb_{fc}{'_avg' if avg else ''}"
            res[key] = {
                "wall_s": round(wall, 2),
                "peak_py_mb": round(peak, 1),
                "max_rss_mb": round(rss, 1),
                "val_loss": round(m.val_loss_, 4),
                "test_acc": round(acc, 3),
                "n_selected": len(m.selected_),
                "timings_s": {k: round(v, 2) for k, v in m.timings_.items()},
            }
            print(key, res[key])

    if "lstm" not in skip:
        res |= bench_lstm(a, X, y, cell, parts)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
