"""Benchmark of the time-series models on one (fold, mode, checkpoint): wall time, peak memory,
tsfresh series/s per setting, the costliest tsfresh calculators, and what each LSTM-search speed-up buys.

Synthetic data (default): a panel of the demo's size (cells x 8 augmentations x frames x 32 channels)
with a planted temporal signal (label = sign of a slope in channel 0, per-cell offsets). Sizes are
arguments::

    python benchmarks/timeseries.py --cells 150 --frames 20 --lstm-samples 16 --xgb-samples 20
    python benchmarks/timeseries.py --skip tsfresh,profile --cells 40 --augs 2 --lstm-samples 3

LSTM: each speed-up variant from a cold start, on one (fold, mode, checkpoint) search and on a loop
of ``--loop-folds`` folds x ``--loop-checkpoints`` (the stage's unit of work), with ratios against the
plain loop (one candidate at a time, compiled afresh per candidate).

Store data (``--store STORE``, or ``--simulated [DIR]``: ``DIR/store``, after running ``lnpstore run``
(demo preset) into ``DIR`` when it holds no CNN embeddings yet): the real 32-dim embeddings of one
(``--fold``, ``--mode``, ``--checkpoint``), read through ``queries/sequences.sql`` as the time-series
stage reads them. Prints the SQL read time, then wall time and peak resident memory (sampled RSS) of
one search per model -- the LSTM with the stage's search settings (``--lstm-variants``: the stage's
``vmap_halving`` unless given), tsfresh -> XGBoost with ``--fc`` (and ``--average-augs``) -- and
tsfresh rows/s (rows of the long table, one per case x frame) and series/s (case x channel)::

    python benchmarks/timeseries.py --store lnpstore-run/store --fold 0 --mode classify --checkpoint 20
    python benchmarks/timeseries.py --simulated /tmp/ts_run --skip tsfresh,profile --units 256 \
        --lstm-variants plain_loop,vmap_halving --lstm-samples 8

``--units 256`` restricts the LSTM candidates' units (both data sources); the per-shape lines show
the time of each architecture shape in the search and its vmap width (width 1 = trained one
candidate at a time, the XLA CPU deadlock workaround of ``models/lstm/search.py``: on CPU every shape
trains one trial at a time unless ``--cpu-vmap-width`` says otherwise; width 8 hangs on 2-layer shapes).

``--compare-settings``: the accuracy cost of the cheaper tsfresh settings on the same data and split:
EfficientFCParameters per augmentation (the reference), ``fast`` per augmentation, and both (and
``minimal``, the demo preset's) on the augmentation-averaged sequence (one per cell), for each mode of
``--compare-modes``: test weighted F1 (classify) or RMSE (regress) on per-cell predictions (averaged
over a cell's augmentations, as the evaluation does), validation loss, and time::

    python benchmarks/timeseries.py --store lnpstore-run/store --skip lstm,tsfresh,profile --compare-settings
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

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

    warm_tsfresh()  # else the first calculators are charged tsfresh's one-off set-up
    eff = fc_settings("efficient")
    Xs = X[:n_series, :, :1]
    out = []
    for name, params in eff.items():
        t0 = time.perf_counter()
        extract(Xs, ["c"], default_fc_parameters={name: params})
        out.append((name, time.perf_counter() - t0))
    return sorted(out, key=lambda x: -x[1])


def units_of(a) -> tuple[int, ...]:
    """The LSTM units choices of ``--units`` (default: the study's 32/64/128/256)."""
    from lnpstore.models.lstm import UNITS

    return tuple(int(u) for u in a.units.split(",")) if a.units else UNITS


def lstm_variants(full, names: str) -> dict:
    """The LSTM-search speed-up variants (SearchConfig each), ``names`` a comma list ('' = all)."""
    variants = {
        "plain_loop": replace(
            full, vmap_width=1, cpu_vmap_width=1, fused=False, halving=False, cache_compiles=False
        ),
        "compile_once": replace(full, vmap_width=1, cpu_vmap_width=1, fused=False, halving=False),
        "fused_epochs": replace(full, vmap_width=1, cpu_vmap_width=1, halving=False),
        "vmap": replace(full, halving=False),
        "vmap_halving": full,
    }
    if names:
        unknown = set(names.split(",")) - set(variants)
        if unknown:
            raise SystemExit(f"unknown --lstm-variants {sorted(unknown)}; choose from {list(variants)}")
        variants = {k: v for k, v in variants.items() if k in names.split(",")}
    return variants


def _rss_mb() -> float:
    """Resident memory of this process now, MB (Linux /proc; else the high-water mark)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def measured_rss(fn: Callable[[], Any], interval_s: float = 0.02) -> tuple[Any, dict]:
    """(result, figures): wall s, and resident memory of the process sampled every ``interval_s`` s
    while ``fn`` runs (native allocations of JAX/XGBoost/pandas included; no tracemalloc slowdown):
    ``rss_before_mb``, ``peak_rss_mb`` and ``peak_rss_added_mb`` (peak minus before)."""
    before = _rss_mb()
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval_s):
            peak[0] = max(peak[0], _rss_mb())

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    try:
        out = fn()
    finally:
        wall = time.perf_counter() - t0
        stop.set()
        th.join()
    peak[0] = max(peak[0], _rss_mb())
    return out, {
        "wall_s": round(wall, 2),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak[0], 1),
        "peak_rss_added_mb": round(peak[0] - before, 1),
    }


class ShapeTimer:
    """Times every training call of an LSTM search by architecture shape and vmap width.

    Wraps ``lnpstore.models.lstm._Trainer`` (``__init__`` to note the shape, ``train`` to time the
    call, blocking until its result is ready: the search fetches it right after anyway). Seconds
    include each shape's compiles. ``rows``: (shape, phase 'search'|'final', width, epochs, seconds).
    """

    def __enter__(self) -> ShapeTimer:
        import jax
        from lnpstore.models import lstm as L

        self.rows: list[tuple[tuple, str, int, int, float]] = []
        self._orig = (L._Trainer.__init__, L._Trainer.train)
        orig_init, orig_train = self._orig
        rows = self.rows

        def init(tr, shape_cfg, *args, **kw):
            orig_init(tr, shape_cfg, *args, **kw)
            tr._bench_shape = shape_cfg.shape

        def train(tr, state, n_epochs, **kw):
            t0 = time.perf_counter()
            out = jax.block_until_ready(orig_train(tr, state, n_epochs, **kw))
            phase = "final" if kw.get("restart") else "search"
            rows.append((tr._bench_shape, phase, len(state["epoch"]), n_epochs, time.perf_counter() - t0))
            return out

        L._Trainer.__init__, L._Trainer.train = init, train
        return self

    def __exit__(self, *exc) -> None:
        from lnpstore.models import lstm as L

        L._Trainer.__init__, L._Trainer.train = self._orig

    def by_shape(self, trials) -> dict[str, dict]:
        """Per shape 'units-layers-bi/uni-dense/nodense': candidates, vmap width, candidate-epochs
        trained in the search (from ``trials``), search and final seconds, s per candidate-epoch, and
        ``deadlock_workaround``: the shape trained one trial at a time (measured width 1; on CPU the
        search's default, ``SearchConfig.cpu_vmap_width``, because of XLA CPU's vmap deadlock)."""
        out: dict[str, dict] = {}
        shapes = sorted({r[0] for r in self.rows})
        for sh in shapes:
            u, layers, bi, dense = sh
            t = trials.filter(
                (trials["units"] == u)
                & (trials["layers"] == layers)
                & (trials["bidirectional"] == bi)
                & (trials["dense"] == dense)
            )
            search = [r for r in self.rows if r[0] == sh and r[1] == "search"]
            final = [r for r in self.rows if r[0] == sh and r[1] == "final"]
            cand_epochs = int(t["epochs_trained"].sum())
            s_search = sum(r[4] for r in search)
            key = f"{u}-{layers}L-{'bi' if bi else 'uni'}-{'dense' if dense else 'nodense'}"
            out[key] = {
                "candidates": t.height,
                "width": max((r[2] for r in search), default=0),
                "train_calls": len(search),
                "candidate_epochs": cand_epochs,
                "search_s": round(s_search, 2),
                "s_per_candidate_epoch": round(s_search / cand_epochs, 3) if cand_epochs else None,
                "final_s": round(sum(r[4] for r in final), 2),
                "deadlock_workaround": max((r[2] for r in search), default=0) == 1,
            }
        return out


def bench_lstm(a, X, y, cell, parts) -> dict:
    """Each LSTM-search speed-up, from a cold start (compiled functions and JAX caches cleared):
    one (fold, mode, checkpoint) search, then a loop over ``--loop-folds`` folds (different case
    counts) x ``--loop-checkpoints`` in one process, as the time-series stage runs them."""
    from lnpstore.models import lstm as L

    if a.jax_cache:
        from lnpstore.models.jaxcache import enable

        print("persistent JAX cache:", enable(a.jax_cache, min_compile_time_s=0.0))
    cfgs = L.sample_configs(a.lstm_samples, 0, units=units_of(a))
    print("LSTM candidates:", [c.shape for c in cfgs])
    full = L.SearchConfig(  # fixed lr and batch size: the variants differ only in speed-ups
        select=L.TrainConfig(lr=1e-3, epochs=a.lstm_epochs, patience=0),
        final=L.TrainConfig(lr=1e-5, epochs=a.lstm_final_epochs or 0, patience=0),
        lr_range=None,
        extra_lrs=(),
        batch_sizes=(),
        vmap_width=8,
        cpu_vmap_width=a.cpu_vmap_width,
        rung_epochs=max(1, a.lstm_epochs // 4),
    )
    variants = lstm_variants(full, a.lstm_variants)
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
        with ShapeTimer() as shapes:
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
        }
        if n_loop:
            r |= {f"loop_{n_loop}_searches_s": round(loop, 2), "loop_speedup": round(base["loop"] / loop, 2)}
        r |= {
            "traces": {k: v - traces0.get(k, 0) for k, v in L.TRACES.items() if v - traces0.get(k, 0)},
            "peak_py_mb": round(peak, 1),
            "max_rss_mb": round(rss, 1),
            "best_trial": int(trials.filter("selected")["trial"][0]),
            "best_val_loss": round(float(trials["val_loss"].min()), 4),
            "test_acc": round(acc, 3),
        }
        if a.per_shape:
            r["shapes"] = shapes.by_shape(trials)
        print(f"lstm {name:13s}", json.dumps({k: v for k, v in r.items() if k != "shapes"}), flush=True)
        for k, v in r.get("shapes", {}).items():
            print(f"  shape {k:24s}", json.dumps(v), flush=True)
    return res


# ------------------------------------------------------------------------------------------ store data
#: tsfresh settings of ``--compare-settings``: (fc_parameters, average_augs); the first is the reference.
COMPARE: tuple[tuple[str, bool], ...] = (
    ("efficient", False),
    ("fast", False),
    ("efficient", True),
    ("fast", True),
    ("minimal", True),
)


def has_embeddings(store_dir: Path) -> bool:
    """Whether ``store_dir`` is a store with CNN models and their embeddings."""
    from lnpstore.store.core import MARKER, Store

    if not (store_dir / MARKER).exists():
        return False
    store = Store.open(store_dir)
    if not store.files("embeddings"):
        return False
    n = store.sql("SELECT count(*) AS n FROM models WHERE kind = 'cnn'")["n"][0]
    return bool(n)


def simulated_store(directory: str | Path, *, weights: str, seed: int) -> Path:
    """``DIR/store`` of an ``lnpstore run`` (demo preset) into ``directory``, run first when that store
    has no CNN embeddings yet (5-6 min on 2 cores; an existing run is reused as is)."""
    root = Path(directory)
    store_dir = root / "store"
    if has_embeddings(store_dir):
        print(f"reusing {store_dir} (delete {root} to simulate afresh)", flush=True)
        return store_dir
    from lnpstore.study.pipeline import run_study

    print(f"lnpstore run --preset demo {root} (weights {weights}, seed {seed}) ...", flush=True)
    t0 = time.perf_counter()
    run_study(root, preset="demo", seed=seed, weights=weights)
    print(f"  built {store_dir} in {time.perf_counter() - t0:.0f} s", flush=True)
    return store_dir


def store_panels(store, *, mode: str, fold: int, checkpoint: int) -> tuple[dict, dict]:
    """(train/val/test panels, figures) of one (fold, mode, checkpoint) from ``queries/sequences.sql``,
    exactly as :func:`lnpstore.models.timeseries_stage.run_timeseries` reads and truncates them."""
    from lnpstore.models.panel import panels_from_sequences
    from lnpstore.models.timeseries_stage import _check_panels

    t0 = time.perf_counter()
    df = store.query("sequences", mode=mode, fold=fold, checkpoint=checkpoint)
    t1 = time.perf_counter()
    panels = panels_from_sequences(df, mode=mode)
    _check_panels(panels, mode=mode, fold=fold)
    panels = {r: pn.truncate(checkpoint) for r, pn in panels.items()}
    t2 = time.perf_counter()
    if panels["train"].X.shape[1] != checkpoint:
        raise SystemExit(f"checkpoint {checkpoint}: the embeddings have frames {panels['train'].frames}")
    figs = {
        "sql_rows": df.height,
        "sql_s": round(t1 - t0, 3),
        "panel_s": round(t2 - t1, 3),
        "cnn_model_id": df.get_column("cnn_model_id")[0],
        **{f"n_{r}_cases": pn.n_cases for r, pn in panels.items()},
        **{f"n_{r}_cells": pn.ids["cell_uid"].n_unique() for r, pn in panels.items()},
        "augs": int(panels["train"].ids["aug"].n_unique()),
        "frames": checkpoint,
        "channels": len(panels["train"].channels),
    }
    return panels, figs


def synthetic_panels(parts: dict, frames: int, channels: int) -> dict:
    """The synthetic split as panels (ids ``cell_uid``, ``aug``), for the store-path functions."""
    import polars as pl
    from lnpstore.models.panel import Panel

    out = {}
    for r, (X, y, cell) in parts.items():
        aug = np.zeros(len(cell), np.int64)
        for c in np.unique(cell):
            aug[cell == c] = np.arange((cell == c).sum())
        ids = pl.DataFrame({"cell_uid": [f"c{c:05d}" for c in cell], "aug": aug})
        out[r] = Panel(
            X,
            ids,
            y.astype(np.float64),
            np.arange(1, frames + 1),
            tuple(f"e{i:02d}" for i in range(channels)),
        )
    return out


def cell_metric(mode: str, panel, score: np.ndarray) -> float:
    """Weighted F1 (classify) or RMSE (regress) of per-cell predictions: ``score`` (one per case)
    averaged over each cell's cases (its augmentations), as the evaluation averages them."""
    import polars as pl
    from lnpstore.models.evaluation import metric_value

    df = (
        pl.DataFrame({"cell": panel.ids["cell_uid"], "y": panel.y, "p": np.asarray(score, np.float64)})
        .group_by("cell")
        .agg(pl.col("y").first(), pl.col("p").mean())
    )
    return float(metric_value(mode, df["y"].to_numpy(), df["p"].to_numpy()))


METRIC = {"classify": "f1_weighted", "regress": "rmse"}


_WARM: list[bool] = []


def warm_tsfresh() -> None:
    """One tiny Efficient extraction: the first call of a process pays ~3 s of imports and set-up
    (measured), which would otherwise be charged to the first setting timed."""
    if not _WARM:
        from lnpstore.models.tsgbm import extract, fc_settings

        X = np.random.default_rng(0).normal(size=(2, 6, 1)).astype(np.float32)
        extract(X, ["w"], default_fc_parameters=fc_settings("efficient"))
        _WARM.append(True)


def fit_tsfresh(a, mode: str, panels: dict, fc: str, average_augs: bool) -> dict:
    """One tsfresh -> XGBoost search (fit on train, early stopping and choice on val), its test
    metric on per-cell predictions, time, peak memory and extraction rates."""
    from lnpstore.models.tsgbm import TsfreshXGB

    warm_tsfresh()
    p = {r: (pn.average_augs() if average_augs else pn) for r, pn in panels.items()}
    tr, va, te = p["train"], p["val"], p["test"]

    def run():
        m = TsfreshXGB(
            mode,
            fc_parameters=fc,
            n_samples=a.xgb_samples,
            seed=0,
            n_jobs=a.n_jobs,
            channels=list(tr.channels),
            engine=a.tsfresh_engine,
        ).fit(tr.X, tr.y, va.X, va.y)
        t0 = time.perf_counter()
        score = m.predict_score(te.X)
        return m, score, time.perf_counter() - t0

    (m, score, t_pred), figs = measured_rss(run)
    n, t, c = tr.X.shape
    ext = m.timings_["extract_train_s"]
    return {
        "fc": fc,
        "average_augs": average_augs,
        "mode": mode,
        "n_train_cases": n,
        "n_test_cells": te.ids["cell_uid"].n_unique(),
        **figs,
        "extract_train_s": round(ext, 2),
        "rows_per_s": round(n * t / ext, 1),
        "series_per_s": round(n * c / ext, 1),
        "predict_test_s": round(t_pred, 2),
        "timings_s": {k: round(v, 2) for k, v in m.timings_.items()},
        "n_extracted": m.n_extracted_,
        "n_selected": len(m.selected_),
        "selection_fallback": m.selection_fallback_,
        "val_loss": round(m.val_loss_, 4),
        METRIC[mode]: round(cell_metric(mode, te, score), 4),
    }


def bench_lstm_panels(a, panels: dict, mode: str) -> dict:
    """One LSTM search per ``--lstm-variants`` (default: the stage's, ``vmap_halving``), each from a
    cold start, with the stage's search settings (lr 1e-4, ``--lstm-epochs``, winner retrained
    ``--lstm-final-epochs`` at lr 1e-5, frames padded to max(checkpoint, 20) as the stage pads them
    with its default checkpoints): wall time, peak memory, traces, test metric, time per shape."""
    from lnpstore.models import lstm as L

    if a.jax_cache:
        from lnpstore.models.jaxcache import enable

        print("persistent JAX cache:", enable(a.jax_cache, min_compile_time_s=0.0))
    units = units_of(a)
    cfgs = L.sample_configs(a.lstm_samples, 0, units=units)
    print("LSTM candidates:", [c.shape for c in cfgs], flush=True)
    default = L.SearchConfig(units=units, cpu_vmap_width=a.cpu_vmap_width)
    full = replace(
        default,
        select=replace(default.select, epochs=a.lstm_epochs),
        final=replace(default.final, epochs=30 if a.lstm_final_epochs is None else a.lstm_final_epochs),
    )
    variants = lstm_variants(full, a.lstm_variants or "vmap_halving")
    tr, va, te = panels["train"], panels["val"], panels["test"]
    t_pad = max(tr.X.shape[1], 20)
    res: dict = {}
    base = None
    for name, sc in variants.items():
        L.clear_compiled()
        traces0 = dict(L.TRACES)
        with ShapeTimer() as shapes:
            (m, trials), figs = measured_rss(
                lambda sc=sc: L.lstm_search(
                    tr.X,
                    tr.y,
                    va.X,
                    va.y,
                    mode=mode,
                    seed=0,
                    search=sc,
                    configs=cfgs,
                    t_pad=t_pad if sc.cache_compiles else None,
                )
            )
        base = base or figs["wall_s"]
        per_shape = shapes.by_shape(trials)
        res[f"lstm_{name}"] = r = {
            "one_search_s": figs["wall_s"],
            "one_speedup": round(base / figs["wall_s"], 2),
            **{k: v for k, v in figs.items() if k != "wall_s"},
            "candidates": len(cfgs),
            "units": list(units),
            "deadlock_workaround_candidates": sum(
                v["candidates"] for v in per_shape.values() if v["deadlock_workaround"]
            ),
            "final_s": round(sum(v["final_s"] for v in per_shape.values()), 2),
            "traces": {k: v - traces0.get(k, 0) for k, v in L.TRACES.items() if v - traces0.get(k, 0)},
            "best_trial": int(trials.filter("selected")["trial"][0]),
            "search_val_loss": round(float(m.search_val_loss_), 4),
            "val_loss": round(float(m.val_loss_), 4),
            METRIC[mode]: round(cell_metric(mode, te, m.predict_score(te.X)), 4),
            "shapes": per_shape,
        }
        print(f"lstm {name:13s}", json.dumps({k: v for k, v in r.items() if k != "shapes"}), flush=True)
        for k, v in per_shape.items():
            print(f"  shape {k:24s}", json.dumps(v), flush=True)
    return res


def compare_settings(a, panels_by_mode: dict[str, dict]) -> dict:
    """Each setting of :data:`COMPARE` on the same panels, per mode; prints the test metric and its
    difference to the reference (EfficientFCParameters per augmentation), val loss and times."""
    res: dict = {}
    for mode, panels in panels_by_mode.items():
        ref = None
        for fc, avg in COMPARE:
            r = fit_tsfresh(a, mode, panels, fc, avg)
            ref = ref or r
            r[f"{METRIC[mode]}_minus_reference"] = round(r[METRIC[mode]] - ref[METRIC[mode]], 4)
            r["time_vs_reference"] = round(r["wall_s"] / ref["wall_s"], 3)
            key = f"{mode}_{fc}{'_avg' if avg else '_per_aug'}"
            res[key] = r
            show = {k: v for k, v in r.items() if k not in ("timings_s", "fc", "average_augs", "mode")}
            print(f"compare {key:28s}", json.dumps(show), flush=True)
    return res


def main_store(a) -> dict:
    """The benchmark on a store's embeddings (``--store`` / ``--simulated``)."""
    from lnpstore.store.core import Store

    skip = set(a.skip.split(","))
    store_dir = Path(a.store) if a.store else simulated_store(a.simulated, weights=a.weights, seed=a.seed)
    store = Store.open(store_dir)
    res: dict = {"store": str(store_dir), "fold": a.fold, "mode": a.mode, "checkpoint": a.checkpoint}
    modes = [a.mode]
    if a.compare_settings:
        modes += [m for m in a.compare_modes.split(",") if m and m != a.mode]
    panels: dict[str, dict] = {}
    for mode in modes:
        panels[mode], figs = store_panels(store, mode=mode, fold=a.fold, checkpoint=a.checkpoint)
        res[f"data_{mode}"] = figs
        print(f"data {mode}:", json.dumps(figs), flush=True)
    p = panels[a.mode]

    if "profile" not in skip:
        X = p["train"].X
        prof = bench_tsfresh_calculators(X, min(a.tsfresh_series, len(X)))
        tot = sum(s for _, s in prof)
        res["tsfresh_calculators_top"] = [(n, round(s, 3), round(s / tot, 3)) for n, s in prof[:12]]
        print("tsfresh calculators, share of Efficient time:", res["tsfresh_calculators_top"], flush=True)
    if a.compare_settings:
        res["compare"] = compare_settings(
            a, {m: panels[m] for m in a.compare_modes.split(",") if m in panels}
        )
    if "tsfresh" not in skip:
        key = f"{a.mode}_{a.fc}{'_avg' if a.average_augs else '_per_aug'}"
        r = res.get("compare", {}).get(key)
        if r is None:
            r = fit_tsfresh(a, a.mode, p, a.fc, a.average_augs)
        else:
            print("(tsfresh search: the compare-settings run of the same setting)")
        res["tsfresh_xgb"] = r
        print(f"tsfresh_xgb {key}:", json.dumps({k: v for k, v in r.items() if k != "timings_s"}), flush=True)
    if "lstm" not in skip:
        res |= bench_lstm_panels(a, p, a.mode)
    return res


def _diff_stats(ref, got) -> dict:
    """Max |array - tsfresh| and max relative difference (over |tsfresh| > 1e-8) over all features,
    the NaN cells that differ, and the three features with the largest relative difference."""
    assert list(ref.columns) == list(got.columns), "the engines' feature names or order differ"
    r, g = ref.to_numpy(np.float64), got.to_numpy(np.float64)
    both = np.isfinite(r) & np.isfinite(g)
    absd = np.where(both, np.abs(g - r), 0.0)
    big = both & (np.abs(r) > 1e-8)
    reld = np.where(big, absd / np.where(big, np.abs(r), 1.0), 0.0)
    per_feature = reld.max(axis=0)
    kinds = [c.split("__", 1)[1] for c in ref.columns]
    worst = sorted(zip(per_feature, kinds, strict=True), reverse=True)[:3]
    return {
        "max_abs": float(absd.max()),
        "max_rel": float(reld.max()),
        "nan_mismatch": int((np.isnan(r) != np.isnan(g)).sum()),
        "n_features": r.shape[1],
        "worst_rel": [(k, float(v)) for v, k in worst],
    }


def bench_engines(a) -> dict:
    """tsfresh's extract_features vs the array engine (lnpstore.models.tsfeatures) on the same series,
    EfficientFCParameters, at each of ``--engine-frames`` x ``--channels``: series/s on one core (tsfresh
    n_jobs=0; BLAS limited to one thread), speed-up, and the largest differences over all features.
    The array engine is timed on the same ``--engine-cases`` cases and on a batch of
    ``--engine-batch-cases`` cases (its throughput grows with the batch; the speed-up uses the batch)."""
    import warnings

    from lnpstore.models.tsfeatures import panel_features
    from lnpstore.models.tsgbm import extract, fc_settings
    from threadpoolctl import threadpool_limits

    warm_tsfresh()
    eff = fc_settings("efficient")
    frames = [int(f) for f in a.engine_frames.split(",") if f]
    cells = max(a.engine_batch_cases, a.engine_cases)
    Xall, _, _ = synthetic(cells, 1, max(frames), a.channels, seed=1)
    chans = [f"e{i:02d}" for i in range(a.channels)]
    res: dict = {}
    print(
        f"engines: EfficientFCParameters, {a.channels} channels, tsfresh on {a.engine_cases} cases "
        f"({a.engine_cases * a.channels} series), the array engine on the same and on "
        f"{cells} cases ({cells * a.channels} series); one core each"
    )
    head = (
        f"{'frames':>6} {'tsfresh s/s':>11} {'array s/s same':>14} {'array s/s batch':>15} "
        f"{'speed-up':>8} {'max abs diff':>12} {'max rel diff':>12} {'NaN diff':>8}  worst relative"
    )
    print(head)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in frames:
            X = np.ascontiguousarray(Xall[:, :t]).astype(np.float64)
            Xs = X[: a.engine_cases]
            t0 = time.perf_counter()
            ref = extract(Xs, chans, default_fc_parameters=eff, n_jobs=0)
            t_ts = time.perf_counter() - t0
            t0 = time.perf_counter()
            got = panel_features(Xs, chans, default_fc_parameters=eff)
            t_same = time.perf_counter() - t0
            t0 = time.perf_counter()
            panel_features(X, chans, default_fc_parameters=eff)
            t_batch = time.perf_counter() - t0
            d = _diff_stats(ref, got)
            ts_rate = Xs.shape[0] * a.channels / t_ts
            same_rate = Xs.shape[0] * a.channels / t_same
            batch_rate = X.shape[0] * a.channels / t_batch
            r = {
                "tsfresh_series_per_s": round(ts_rate, 1),
                "array_series_per_s_same": round(same_rate, 1),
                "array_series_per_s_batch": round(batch_rate, 1),
                "speedup": round(batch_rate / ts_rate, 1),
                "speedup_same_series": round(same_rate / ts_rate, 1),
                **d,
            }
            res[f"frames_{t}"] = r
            worst = ", ".join(f"{k} {v:.1e}" for k, v in d["worst_rel"])
            print(
                f"{t:>6} {ts_rate:>11.1f} {same_rate:>14.1f} {batch_rate:>15.1f} {r['speedup']:>7.1f}x "
                f"{d['max_abs']:>12.2e} {d['max_rel']:>12.2e} {d['nan_mismatch']:>8d}  {worst}",
                flush=True,
            )
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=150)
    ap.add_argument("--augs", type=int, default=8)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--lstm-samples", type=int, default=16)
    ap.add_argument("--lstm-epochs", type=int, default=20)
    ap.add_argument(
        "--lstm-final-epochs",
        type=int,
        default=None,
        help="retraining epochs of the winner (default: 0 on synthetic data, the stage's 30 on a store)",
    )
    ap.add_argument("--loop-folds", type=int, default=2, help="folds of the LSTM loop")
    ap.add_argument("--loop-checkpoints", default="5,10,15,20", help="checkpoints of the LSTM loop")
    ap.add_argument(
        "--lstm-variants",
        default="",
        help="comma list of plain_loop,compile_once,fused_epochs,vmap,vmap_halving "
        "(default: all on synthetic data, vmap_halving on a store)",
    )
    ap.add_argument("--units", default="", help="comma list: the LSTM units sampled (default 32,64,128,256)")
    ap.add_argument(
        "--cpu-vmap-width",
        type=int,
        default=1,
        help="trials of a shape trained at once on CPU (default 1; 8 hangs XLA CPU on 2-layer shapes)",
    )
    ap.add_argument(
        "--per-shape", action="store_true", help="synthetic: per-shape LSTM times (store: always)"
    )
    ap.add_argument("--jax-cache", default=None, help="enable JAX's persistent compilation cache here")
    ap.add_argument("--xgb-samples", type=int, default=20)
    ap.add_argument("--tsfresh-series", type=int, default=200, help="series for the calculator profile")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: lstm,tsfresh,profile,engines")
    ap.add_argument("--engine-frames", default="5,10,15,20", help="frames of the engine comparison")
    ap.add_argument("--engine-cases", type=int, default=4, help="cases extracted by both engines")
    ap.add_argument(
        "--engine-batch-cases", type=int, default=400, help="cases of the array engine's throughput batch"
    )
    ap.add_argument(
        "--tsfresh-engine", choices=("array", "tsfresh"), default="array", help="engine of the tsfresh models"
    )
    ap.add_argument("--json", default=None, help="write the results here")
    g = ap.add_argument_group("store data (instead of the synthetic panel)")
    g.add_argument("--store", default=None, help="a store with CNN embeddings, e.g. lnpstore-run/store")
    g.add_argument(
        "--simulated",
        nargs="?",
        const="lnpstore-run",
        default=None,
        metavar="DIR",
        help="use DIR/store (default DIR: lnpstore-run), running `lnpstore run` (demo preset) into DIR "
        "first when it has no embeddings",
    )
    g.add_argument("--weights", default="imagenet", help="VGG16 weights of the --simulated run")
    g.add_argument("--seed", type=int, default=0, help="seed of the --simulated run")
    g.add_argument("--fold", type=int, default=0)
    g.add_argument("--mode", choices=("classify", "regress"), default="classify")
    g.add_argument("--checkpoint", type=int, default=20, help="last input frame t (frames 1..t)")
    g.add_argument("--fc", default="efficient", help="tsfresh setting of the one tsfresh search")
    g.add_argument("--average-augs", action="store_true", help="tsfresh search on aug-averaged sequences")
    g.add_argument("--n-jobs", type=int, default=0, help="tsfresh n_jobs (the stage's default: 0)")
    ap.add_argument(
        "--compare-settings",
        action="store_true",
        help="accuracy and time of the cheaper tsfresh settings against Efficient per augmentation",
    )
    ap.add_argument(
        "--compare-modes", default="classify,regress", help="modes of --compare-settings (store data)"
    )
    a = ap.parse_args(argv)
    if a.store and a.simulated:
        ap.error("give --store or --simulated, not both")
    if a.store or a.simulated:
        res = main_store(a)
        if a.json:
            with open(a.json, "w") as fh:
                json.dump(res, fh, indent=1, default=str)
        return
    skip = set(a.skip.split(","))
    X, y, cell = synthetic(a.cells, a.augs, a.frames, a.channels)
    parts = split(X, y, cell)
    (Xtr, ytr, ctr), (Xv, yv, _), (Xte, yte, _) = parts["train"], parts["val"], parts["test"]
    res: dict = {"size": vars(a), "n_train_cases": len(Xtr), "n_val_cases": len(Xv), "n_test_cases": len(Xte)}
    print(json.dumps(res["size"]))

    if "engines" not in skip:
        res["engines"] = bench_engines(a)

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
                    "classify", fc_parameters=fc, n_samples=a.xgb_samples, seed=0, engine=a.tsfresh_engine
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

    if a.compare_settings:  # the synthetic panel has labels only: classify
        res["compare"] = compare_settings(a, {"classify": synthetic_panels(parts, a.frames, a.channels)})
    if "lstm" not in skip:
        res |= bench_lstm(a, X, y, cell, parts)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
