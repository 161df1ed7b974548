"""How long ``lnpstore run`` will take on this machine: counts per stage x unit costs measured here.

:func:`stage_counts` counts the work of each stage of a :class:`~lnpstore.study.pipeline.RunConfig`
(pixels x frames to simulate, ingest and track; VGG images; CNN head steps; LSTM trial-epochs bounded
by the search's successive-halving rungs; tsfresh series, relevance tests and XGBoost trees).
:func:`calibrate` measures the unit cost of each on this machine in well under a minute, with the
real code at the preset's shapes and random inputs (timing does not depend on the values): one
simulated field of the preset's size and density (at most 768 px a side) simulated, ingested and
tracked for 2 and 6 frames (per-field work is then shared by the processes ``lnpstore run`` uses), VGG16 blocks 1-3 on random crops at the
preset's crop size, a CNN head epoch on cached-feature-shaped arrays, a few LSTM epochs of trials
drawn from the preset's own search, a batch of series through the preset's tsfresh engine, a
relevance table and an XGBoost fit. :func:`project` multiplies the two; :func:`print_projection`
prints the table (``lnpstore run --dry-run``; ``--preset paper`` prints it before it starts).

What is not counted, and why: register / cells / crop and evaluate / randomization are not
calibrated (listed with no time; on the demo they are a few % of the run); validation and test series
of the tsfresh stage are extracted for the selected features only and not counted; compile time of
the VGG and CNN programs (a few seconds once) is not counted.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    from lnpstore.simulate import SimulationSettings


class RunConfig(Protocol):
    """What the projection reads of :class:`lnpstore.study.pipeline.RunConfig` (not imported: the
    pipeline imports this module); read-only."""

    @property
    def preset(self) -> str: ...

    @property
    def seed(self) -> int: ...

    @property
    def sim_preset(self) -> str: ...

    @property
    def sim_overrides(self) -> tuple[tuple[str, Any], ...]: ...

    @property
    def t_in_frames(self) -> int: ...

    @property
    def n_augs(self) -> int: ...

    @property
    def n_folds(self) -> int: ...

    @property
    def cnn_epochs(self) -> int: ...

    @property
    def lstm_samples(self) -> int: ...

    @property
    def lstm_units(self) -> tuple[int, ...]: ...

    @property
    def lstm_max_epochs(self) -> int: ...

    @property
    def lstm_patience_epochs(self) -> int: ...

    @property
    def embed_controls(self) -> bool: ...

    @property
    def tsfresh_samples(self) -> int: ...

    @property
    def tsfresh_fc(self) -> str: ...

    @property
    def tsfresh_average_augs(self) -> bool: ...

    @property
    def tsfresh_engine(self) -> Literal["tsfresh", "array"]: ...

    @property
    def ts_inputs(self) -> Literal["embeddings", "tracks", "both"]: ...

    @property
    def checkpoints_frames(self) -> tuple[int, ...]: ...


#: Cells within this distance of a field's edge at frame 1 (px at the study's 0.1625 um pixels; scaled
#: with the plate) rarely become complete cells (they leave the field, or their crop window does,
#: before the last frame; divisions are excluded too). Fitted on the demo run (seed 0: 85 complete of
#: 225 frame-1 cells on 640 x 560 px fields at scale 0.5, i.e. 115 px at 0.325 um pixels):
#: ``lnpstore run /tmp/run --preset demo`` then the ``cells`` table's complete rows.
EDGE_LOSS_REF_PX = 230
#: Share of the targeted cells (wells with a dose) in the training part (targets: test_fraction 0.2).
TRAIN_SHARE = 0.8
#: Epoch at which an LSTM trial reaches its best validation loss, typically; a trial stops
#: ``patience`` epochs later. Measured on the demo run (seed 0): mean ``best_epoch`` 3.06 over the
#: 120 trials of its ``search`` table (40 searches; 38.2 epochs trained per search, 38 projected).
LSTM_TYPICAL_BEST_EPOCH = 3
#: Trees an XGBoost trial grows before early stopping (10 rounds after its best), typically: mean
#: ``n_trees`` 23.6 over the 400 tsfresh trials of the demo run's ``search`` table.
XGB_TYPICAL_TREES = 24
#: Embedding dimensions of the time series (the CNN head's embedding).
EMBEDDING_DIM = 32
#: Feature-map channels of block3_conv3 (the CNN head's input).
BASE_CHANNELS = 256
#: Stages the projection lists without a time (not calibrated; small on the demo).
UNTIMED = ("register", "cells", "crop", "evaluate", "randomization")


# -- counts -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageCount:
    """The work of one stage: ``count`` units of ``unit`` (``fixed``: extra units of ``fixed_unit``)."""

    stage: str
    count: float
    unit: str
    cost_key: str
    fixed: float = 0.0
    fixed_key: str = ""
    workers: int = 1  # processes sharing the stage's work (``lnpstore run`` spreads fields over them)


def sim_settings_for(cfg: RunConfig) -> SimulationSettings:
    """The simulator settings ``lnpstore run`` uses for ``cfg`` (as pipeline._simulated_plate)."""
    from lnpstore.simulate import SimulationSettings

    s = SimulationSettings.from_preset(cfg.sim_preset, cfg.seed)
    return replace(s, **dict(cfg.sim_overrides)) if cfg.sim_overrides else s


@dataclass(frozen=True)
class Sizes:
    """The sizes every count is built from."""

    fields: int
    frames: int
    field_px: int  # pixels of one field (one channel)
    cells: int  # simulated cells at frame 1
    complete: float  # expected complete cells
    embedded: float  # complete cells the extractor embeds (controls only with cfg.embed_controls)
    train_cells_fold: float  # training cells of one fold's model (other folds' training cells)
    crop_px: int
    cases_fold: float  # time-series training cases of one fold (cells x augmentations, or cells)
    cases_ts: float  # the same for the tsfresh stage (augmentation-averaged or not)

    @property
    def plate_bytes(self) -> int:
        """Bytes of the plate's images: one uint16 TIFF per field, frame and channel (uncompressed,
        as the instrument writes them)."""
        from lnpstore.instrument.layout import CHANNELS

        return self.fields * self.frames * len(CHANNELS) * self.field_px * 2


def complete_share(sim: SimulationSettings) -> float:
    """Expected share of the frame-1 cells that become complete cells: those outside the edge band
    (:data:`EDGE_LOSS_REF_PX`, scaled to the plate's pixels) of a field."""
    m = 2 * EDGE_LOSS_REF_PX * sim.scale
    return max(0.0, sim.width_px - m) * max(0.0, sim.height_px - m) / (sim.width_px * sim.height_px)


def sizes_for(cfg: RunConfig) -> Sizes:
    """The plate's and the models' sizes for ``cfg``."""
    from lnpstore.instrument.geometry import geometry_for

    sim = sim_settings_for(cfg)
    fields = len(sim.wells) * sim.n_fields
    cells = fields * sim.n_cells
    complete = cells * complete_share(sim)
    dosed = sum(d > 0 for d in sim.wells.values()) / len(sim.wells)  # control wells have no target
    train_fold = complete * dosed * TRAIN_SHARE * (cfg.n_folds - 1) / cfg.n_folds
    return Sizes(
        fields=fields,
        frames=sim.n_frames,
        field_px=sim.width_px * sim.height_px,
        cells=cells,
        complete=complete,
        embedded=complete if cfg.embed_controls else complete * dosed,
        train_cells_fold=train_fold,
        crop_px=geometry_for(sim.pixel_size_um).crop_px,
        cases_fold=train_fold * (1 if cfg.ts_inputs == "tracks" else cfg.n_augs),
        cases_ts=train_fold * (1 if (cfg.tsfresh_average_augs or cfg.ts_inputs == "tracks") else cfg.n_augs),
    )


def ts_channels(cfg: RunConfig) -> int:
    """Channels of the time-series models' sequences: the embedding's, the track measures' or both."""
    from lnpstore.models.panel import TRACK_CHANNELS

    n_track = len(TRACK_CHANNELS)
    return {"embeddings": EMBEDDING_DIM, "tracks": n_track, "both": EMBEDDING_DIM + n_track}[cfg.ts_inputs]


def lstm_search_config(cfg: RunConfig) -> Any:
    """The LSTM search ``lnpstore run`` uses for ``cfg`` (pipeline._train_models and the projection)."""
    from lnpstore.models.lstm import SearchConfig

    select = replace(SearchConfig().select, epochs=cfg.lstm_max_epochs, patience=cfg.lstm_patience_epochs)
    return SearchConfig(units=tuple(cfg.lstm_units), select=select)


def trial_epochs(n_trials: int, sc: Any, best_epoch: int = LSTM_TYPICAL_BEST_EPOCH) -> tuple[int, int]:
    """(expected, bound) epochs over all trials of one search with successive halving: at each rung
    the live trials train up to the rung's epoch count, then the best 1/eta go on. The bound ignores
    early stopping; the expected count stops a trial at ``best_epoch + patience`` (when patience > 0)."""
    from lnpstore.models.lstm import rungs_of

    total = sc.select.epochs
    stop = best_epoch + sc.select.patience if sc.select.patience > 0 else total
    alive, prev, bound, expected = n_trials, 0, 0, 0
    rungs = rungs_of(total, sc)
    for k, r in enumerate(rungs):
        bound += alive * (r - prev)
        expected += alive * max(0, min(r, stop) - min(prev, stop))
        prev = r
        if sc.halving and k < len(rungs) - 1:
            alive = max(1, math.ceil(alive / sc.eta))
    return expected, bound


def lstm_groups(cfg: RunConfig) -> int:
    """Distinct (architecture shape, batch size) groups of the search: one compile each per run (the
    same seed draws the same trials for every fold, checkpoint and mode)."""
    from lnpstore.models.lstm import sample_trials

    sc = lstm_search_config(cfg)
    return len({(t.arch.shape, t.batch_size) for t in sample_trials(cfg.lstm_samples, cfg.seed, sc)})


def n_ts_features(cfg: RunConfig) -> int:
    """tsfresh features per series of the preset's feature set (the array engine's own list)."""
    from lnpstore.models.tsfeatures import array_features
    from lnpstore.models.tsgbm import fc_settings

    t = max(cfg.checkpoints_frames)
    _, names = array_features(np.random.default_rng(0).normal(size=(2, t)), fc_settings(cfg.tsfresh_fc))
    return len(names)


def stage_counts(cfg: RunConfig, *, n_features: int | None = None) -> list[StageCount]:
    """The work of each stage of ``lnpstore run`` with ``cfg`` (exact arithmetic on :func:`sizes_for`).

    ``n_features``: tsfresh features per series (None: counted with the array engine)."""
    from lnpstore.simulate.plate import MIN_PARALLEL_PX_FRAMES

    z = sizes_for(cfg)
    n_modes = 2
    field_frames = z.fields * z.frames
    # as `lnpstore run` (--local processes): fields tracked one per CPU, the plate simulated by up to 2
    field_workers = min(os.cpu_count() or 1, z.fields)
    big = z.fields * z.frames * z.field_px >= MIN_PARALLEL_PX_FRAMES
    sim_workers = min(2, os.cpu_count() or 1, z.fields) if big else 1
    sc = lstm_search_config(cfg)
    expected_epochs, _ = trial_epochs(cfg.lstm_samples, sc)
    searches = n_modes * cfg.n_folds * len(cfg.checkpoints_frames)
    cnn_fits = n_modes * cfg.n_folds
    nf = n_ts_features(cfg) if n_features is None else n_features
    ts_searches = n_modes * cfg.n_folds
    return [
        *(
            StageCount(
                st,
                field_frames,
                "field-frames" + (f" /{w}" if w > 1 else ""),
                f"{st}_s_per_frame",
                z.fields,
                f"{st}_s_per_field",
                workers=w,
            )
            for st, w in (("simulate", sim_workers), ("ingest", 1), ("track", field_workers))
        ),
        StageCount("embed", z.embedded * cfg.t_in_frames * cfg.n_augs, "VGG images", "embed_s_per_image"),
        StageCount("cnn", cnn_fits * cfg.cnn_epochs, "epochs", "cnn_s_per_epoch", cnn_fits, "cnn_s_per_fold"),
        StageCount(
            "lstm",
            searches * expected_epochs * z.cases_fold,
            "trial-epoch-cases",
            "lstm_s_per_case_epoch",
        ),
        # once per run; a later run loads them from JAX's persistent cache (lnpstore.models.jaxcache)
        StageCount("lstm-compile", lstm_groups(cfg), "compiles", "lstm_s_per_compile"),
        StageCount(
            "tsfresh-extract",
            ts_searches * sum(z.cases_ts * t for t in cfg.checkpoints_frames) * ts_channels(cfg),
            "series-steps",
            "tsfresh_s_per_series_step",
        ),
        StageCount(
            "tsfresh-select",
            ts_searches * len(cfg.checkpoints_frames) * nf * ts_channels(cfg),
            "features tested",
            "select_s_per_feature",
        ),
        StageCount(
            "xgboost",
            ts_searches * len(cfg.checkpoints_frames) * cfg.tsfresh_samples * XGB_TYPICAL_TREES,
            "trees",
            "xgb_s_per_tree",
        ),
    ]


#: VGG16 blocks 1-3: the (input, output) channels of each 3x3 convolution, block by block; each block
#: after the first sees the side halved by the previous block's 2x2 max pool.
VGG_B3_CONVS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((3, 64), (64, 64)),
    ((64, 128), (128, 128)),
    ((128, 256), (256, 256), (256, 256)),
)


def vgg_b3_flops(crop_px: int) -> float:
    """FLOPs (2 per multiply-add) of one crop through VGG16 blocks 1-3: 13.5 GFLOP at 192 px. A 'same'
    3x3 convolution over a side of s pixels multiplies (3 s - 2)^2 taps per channel pair (the zero
    padding's taps are not work), as XLA's own cost analysis counts them (checked in the tests)."""
    return float(
        sum(
            (3 * (crop_px // 2**b) - 2) ** 2 * cin * cout * 2
            for b, convs in enumerate(VGG_B3_CONVS)
            for cin, cout in convs
        )
    )


def floor_flops(cfg: RunConfig) -> dict[str, float]:
    """FLOPs of the two stages that dominate a long run: ``embed`` (the frozen VGG pass over every image)
    and ``lstm`` (every trial-epoch of the searches: the recurrence's multiply-adds per step,
    :func:`_lstm_work`, x steps x 2 FLOPs x 3 for the forward and backward pass). Divided by a CPU's
    matmul peak they give a floor: no run of ``cfg`` on that CPU is faster (why a preset cannot fit a
    time budget, whatever the code)."""
    from lnpstore.models.lstm import sample_trials

    counts = {c.stage: c.count for c in stage_counts(cfg, n_features=0)}
    trials = sample_trials(cfg.lstm_samples, cfg.seed, lstm_search_config(cfg))
    work = float(np.mean([_lstm_work(t.arch) for t in trials]))
    steps = max(cfg.checkpoints_frames)  # every checkpoint is padded to the last one (one program)
    return {
        "embed": counts["embed"] * vgg_b3_flops(sizes_for(cfg).crop_px),
        "lstm": counts["lstm"] * steps * work * 2 * 3,
    }


def matmul_flops_per_s(n: int = 1024, repeats: int = 5) -> float:
    """This CPU's float32 matmul rate (FLOP/s; best of ``repeats`` n x n products, every core)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
    a @ b  # warm up the BLAS threads
    best = min(_timed(lambda: a @ b)[0] for _ in range(repeats))
    return 2.0 * n**3 / best


# -- calibration ------------------------------------------------------------------------------------
@dataclass
class Calibration:
    """Unit costs measured on this machine (seconds per unit; keys as in :class:`StageCount`)."""

    unit_s: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # wall time of the calibration itself
    cpus: int = 0  # CPUs of this machine
    load: float = 0.0  # 1-minute load average when the calibration ended (a shared machine's share)
    matmul_flops_per_s: float = 0.0  # this CPU's float32 matmul peak (the floor's divisor)


def _timed(fn: Callable[..., Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def calibrate(cfg: RunConfig, *, lstm_trials: int = 1, workdir: str | Path | None = None) -> Calibration:
    """Measure every unit cost of :func:`stage_counts` on this machine (well under a minute on 2 cores
    for the paper preset). ``lstm_trials``: trials of the preset's search timed (their mean is used)."""
    t0 = time.perf_counter()
    cal = Calibration()
    with tempfile.TemporaryDirectory(dir=workdir, prefix="lnpstore-calibrate-") as tmp:
        cal.unit_s |= _calibrate_field(cfg, Path(tmp))
    cal.unit_s["embed_s_per_image"] = _calibrate_vgg(cfg)
    cal.unit_s |= _calibrate_cnn(cfg)
    cal.unit_s |= _calibrate_lstm(cfg, lstm_trials)
    cal.unit_s |= _calibrate_tsfresh(cfg)
    cal.matmul_flops_per_s = matmul_flops_per_s()
    cal.seconds = time.perf_counter() - t0
    cal.cpus, cal.load = os.cpu_count() or 1, os.getloadavg()[0]
    return cal


def _calibrate_field(
    cfg: RunConfig, tmp: Path, frames: tuple[int, int] = (2, 6), max_side: int = 768
) -> dict[str, float]:
    """Simulate, ingest and track one field at the preset's scale and cell density (at most
    ``max_side`` px a side), twice: for ``frames[0]`` and ``frames[1]`` frames. The difference gives
    the cost per frame (scaled to the preset's field area), the rest the cost per field."""
    sim = sim_settings_for(cfg)
    w, h = min(sim.width_px, max_side), min(sim.height_px, max_side)
    density = sim.n_cells / (sim.width_px * sim.height_px)  # cells per px, as the preset's field
    small = replace(
        sim,
        rows=sim.rows[:1],
        doses_ng=sim.doses_ng[:1],
        columns=sim.columns[:1],
        n_fields=1,
        field_width_px=w,
        field_height_px=h,
        cells_per_field=max(1, round(density * w * h)),
        faults=(),
        workers=1,
    )
    short, long_ = (_field_times(replace(small, n_frames=f), tmp / f"f{f}") for f in frames)
    area = (sim.width_px * sim.height_px) / (w * h)
    out: dict[str, float] = {}
    for stage in ("simulate", "ingest", "track"):
        per_frame = max(0.0, (long_[stage] - short[stage]) / (frames[1] - frames[0]))
        out[f"{stage}_s_per_frame"] = per_frame * area
        out[f"{stage}_s_per_field"] = max(0.0, short[stage] - per_frame * frames[0])
    return out


def _field_times(sim: SimulationSettings, tmp: Path) -> dict[str, float]:
    """Seconds to simulate, ingest and track the one-field plate of ``sim`` in ``tmp``."""
    from lnpstore.instrument.ingest import ingest_plate
    from lnpstore.simulate import simulate_plate
    from lnpstore.store.core import Store
    from lnpstore.tracking import track_plate

    t_sim, _ = _timed(lambda: simulate_plate(tmp / "plate", sim, show_progress=False))
    store = Store.create(tmp / "store")
    t_ing, report = _timed(
        lambda: ingest_plate(
            store, tmp / "plate" / sim.plate, plate_map=tmp / "plate" / "plate_map.csv", show_progress=False
        )
    )
    t_trk, _ = _timed(lambda: track_plate(store, report.plate, show_progress=False))
    return {"simulate": t_sim, "ingest": t_ing, "track": t_trk}


def _calibrate_vgg(cfg: RunConfig, batches: int = 2) -> float:
    """Seconds per image (crop x augmentation) through VGG16 blocks 1-3 at the preset's crop size, with
    the extractor's own jitted function and batch size (random weights and crops: same cost)."""
    from lnpstore.models.extractor import (
        Preprocessing,
        default_batch_size,
        flax_params,
        make_feature_fn,
        run_batches,
    )
    from lnpstore.models.weights import random_params

    s = sizes_for(cfg).crop_px
    n_augs = min(cfg.n_augs, 2)  # images per crop: the cost is per image
    pre = Preprocessing(lo=(0.0,) * 3, hi=(4095.0,) * 3, mean=(100.0,) * 3)
    fn = make_feature_fn(pre, n_augs=n_augs)
    params = flax_params(random_params())
    bs = default_batch_size()
    crops = np.random.default_rng(0).integers(0, 4096, size=(bs * batches, 3, s, s), dtype=np.uint16)
    run_batches(fn, params, crops[:bs], bs)  # compile
    dt, _ = _timed(lambda: run_batches(fn, params, crops, bs))
    return dt / (len(crops) * n_augs)


def _calibrate_cnn(cfg: RunConfig, epochs: int = 5) -> dict[str, float]:
    """Seconds per epoch and per fold of the CNN head on cached features, on random arrays of one
    fold's training rows (cells x frames): per epoch, the stage's jitted epoch and validation loss
    (as :func:`~lnpstore.models.cnn.train_head` runs them) timed over ``epochs`` epochs once
    compiled; per fold, a one-epoch :func:`~lnpstore.models.cnn.train_head` (its compiles) less one
    epoch."""
    import jax
    import jax.numpy as jnp
    import optax

    from lnpstore.models.cnn import CNNConfig, init_head, loss_fn, make_epoch_fn, make_eval_fn, train_head

    z = sizes_for(cfg)
    n = int(max(z.train_cells_fold * cfg.t_in_frames, 64))
    nv = max(8, n // (cfg.n_folds - 1))
    rng = np.random.default_rng(0)

    def arrays(*shape: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(mean, mean_sq, y, w) of random features, ``shape`` rows x (augmentations) x channels."""
        m = rng.normal(size=(*shape, BASE_CHANNELS)).astype(np.float32)
        k = shape[0]
        return m, m * m + 1.0, rng.integers(0, 2, k).astype(np.float32), np.ones(k, np.float32)

    train, val = arrays(n, cfg.n_augs), arrays(nv)
    hc = CNNConfig(epochs=1)
    tx = optax.adam(hc.learning_rate)
    v = init_head(hc, jax.random.PRNGKey(0))
    epoch_fn, ev = make_epoch_fn(hc, tx), make_eval_fn(hc)
    M, Q, y, w = (jnp.asarray(a) for a in train)
    vm, vq, vy, vw = (jnp.asarray(a) for a in val)

    def run(k: int) -> None:
        p, bs, opt = v["params"], v["batch_stats"], tx.init(v["params"])
        for e in range(k):
            p, bs, opt, _ = epoch_fn(p, bs, opt, jax.random.PRNGKey(e), M, Q, y, w)
            out, _ = ev({"params": p, "batch_stats": bs}, vm, vq)
            float(loss_fn(out, vy, vw, hc.mode))

    run(1)  # compile
    per_epoch = _timed(lambda: run(epochs))[0] / epochs
    t_fold, _ = _timed(lambda: train_head(hc, train, val, seed=0))
    return {"cnn_s_per_epoch": per_epoch, "cnn_s_per_fold": max(0.0, t_fold - per_epoch)}


def _calibrate_lstm(cfg: RunConfig, n_trials: int, epochs: int = 3) -> dict[str, float]:
    """Seconds per (trial, epoch, training case) and per compile, from ``n_trials`` trials of the
    preset's own search (same seed; those nearest its median work, :func:`_lstm_work`, scaled to its
    mean work) trained on random data at the study's shape (steps padded to the last checkpoint, 32
    dims; training cases as one fold's, at most 512, validation a quarter)."""
    import jax

    from lnpstore.models.lstm import _Trainer, sample_trials
    from lnpstore.models.lstm.train import _prepare

    # JAX's persistent cache is not turned on here: the compile is measured, not loaded

    sc = lstm_search_config(cfg)
    z = sizes_for(cfg)
    n = int(min(max(z.cases_fold, 32), 512))
    t = max(cfg.checkpoints_frames)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, t, ts_channels(cfg))).astype(np.float32)
    Xv = rng.normal(size=(max(1, n // 4), t, ts_channels(cfg))).astype(np.float32)
    y, yv = rng.integers(0, 2, len(X)).astype(np.float32), rng.integers(0, 2, len(Xv)).astype(np.float32)
    trials = sample_trials(cfg.lstm_samples, cfg.seed, sc)
    work = np.array([_lstm_work(t.arch) for t in trials])
    # the trials nearest the median work are timed; the mean trial is extrapolated by work (FLOPs)
    chosen = np.argsort(np.abs(work - np.median(work)), kind="stable")[:n_trials]
    per_case, compiles = [], []
    for i in chosen:
        tr_in = trials[i]
        data = _prepare(X, y, Xv, yv, "classify", tr_in.batch_size, t_pad=t)
        tr = _Trainer(tr_in.arch, "classify", data, patience=0, fused=sc.fused, cached=False)
        keys = np.asarray(jax.random.PRNGKey(i))[None]
        rates = np.array([[tr_in.arch.dropout, tr_in.arch.recurrent_dropout]], np.float32)
        st = tr.init(keys, rates, [tr_in.lr])
        t_first, st = _timed(lambda tr=tr, st=st: jax.device_get(tr.train(st, 1)[0]))  # compile + 1 epoch
        dt, _ = _timed(lambda tr=tr, st=st: jax.device_get(tr.train(st, epochs)[0]))
        per_case.append(dt / epochs / n / work[i])
        compiles.append(max(0.0, t_first - dt / epochs))
    return {
        "lstm_s_per_case_epoch": float(np.mean(per_case) * work.mean()),
        "lstm_s_per_compile": float(np.mean(compiles)),
    }


def _lstm_work(arch: Any) -> float:
    """Multiply-adds per step of the recurrence (4 gates x units x (inputs + units), per layer and
    direction): the measure by which the timed trials stand for the search's mean trial."""
    inputs = arch.conv or EMBEDDING_DIM
    dirs = 2 if arch.bidirectional else 1
    first = 4 * arch.units * (inputs + arch.units)
    later = 4 * arch.units * (dirs * arch.units + arch.units)
    return float(dirs * (first + (arch.layers - 1) * later))


def _calibrate_tsfresh(cfg: RunConfig, n_cases: int = 64) -> dict[str, float]:
    """Seconds per series-step of the preset's feature set and engine (``n_cases`` x 32 series at each
    checkpoint length), per feature of the relevance table and per tree of XGBoost, at one fold's
    training cases."""
    from lnpstore.models.tsgbm import extract, fc_settings

    rng = np.random.default_rng(0)
    fc = fc_settings(cfg.tsfresh_fc)
    channels = [f"e{i:02d}" for i in range(EMBEDDING_DIM)]
    steps, spent = 0, 0.0
    for t in cfg.checkpoints_frames:
        X = rng.normal(size=(n_cases, t, EMBEDDING_DIM))
        dt, F = _timed(
            lambda X=X: extract(X, channels, default_fc_parameters=fc, engine=cfg.tsfresh_engine, n_jobs=0)
        )
        spent, steps = spent + dt, steps + n_cases * t * EMBEDDING_DIM
    cases = int(max(sizes_for(cfg).cases_ts, 64))
    return {
        "tsfresh_s_per_series_step": spent / steps,
        "select_s_per_feature": _calibrate_select(cases, rng),
        "xgb_s_per_tree": _calibrate_xgb(cases, rng),
    }


def _calibrate_select(cases: int, rng: np.random.Generator, n_cols: int = 64) -> float:
    """Seconds per feature of tsfresh's relevance table at ``cases`` training cases (the mean of a
    classification and a regression table on random features)."""
    import pandas as pd
    from tsfresh.feature_selection.relevance import calculate_relevance_table

    F = pd.DataFrame(rng.normal(size=(cases, n_cols)), columns=[f"f{i}" for i in range(n_cols)])
    dts = []
    for task, y in (
        ("classification", rng.integers(0, 2, cases)),
        ("regression", rng.normal(size=cases)),
    ):
        dt, _ = _timed(
            lambda task=task, y=y: calculate_relevance_table(F, pd.Series(y), ml_task=task, n_jobs=0)
        )
        dts.append(dt)
    return float(np.mean(dts)) / n_cols


def _calibrate_xgb(cases: int, rng: np.random.Generator, trees: int = 50) -> float:
    """Seconds per tree of an XGBoost classifier on ``cases`` rows of 32 components (the stage's
    settings: hist, one thread)."""
    import xgboost as xgb

    Z = rng.normal(size=(cases, EMBEDDING_DIM))
    y = (Z[:, 0] + rng.normal(size=cases) > 0).astype(np.int64)
    m = xgb.XGBClassifier(
        n_estimators=trees, max_depth=4, learning_rate=0.1, subsample=0.5, tree_method="hist", n_jobs=1
    )
    dt, _ = _timed(lambda: m.fit(Z, y, verbose=False))
    return dt / trees


# -- projection -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageProjection:
    stage: str
    count: float
    unit: str
    unit_s: float
    seconds: float


@dataclass
class Projection:
    """Projected seconds per stage (count x unit cost) and in total, for one preset on this machine."""

    preset: str
    stages: list[StageProjection]
    untimed: tuple[str, ...]
    calibration: Calibration
    sizes: Sizes
    floor_flops: dict[str, float] = field(default_factory=dict)  # :func:`floor_flops`

    @property
    def total_s(self) -> float:
        return sum(s.seconds for s in self.stages)

    def as_dict(self) -> dict[str, float]:
        """Stage -> projected seconds."""
        return {s.stage: s.seconds for s in self.stages}

    def table(self) -> str:
        """The projection as a plain-text table with the total."""
        from lnpstore.runtime.progress import format_seconds

        z, c = self.sizes, self.calibration
        lines = [
            f"projected time of `lnpstore run --preset {self.preset}` on this machine ({c.cpus} CPUs, "
            f"load {c.load:.1f}; calibrated in {c.seconds:.0f} s): {z.fields} fields x {z.frames} frames, "
            f"~{z.cells} cells, ~{z.complete:.0f} complete, {z.crop_px} px crops",
            f"  {'stage':<16}{'count':>14}  {'unit':<18}{'s/unit':>10}{'time':>10}",
        ]
        for s in self.stages:
            lines.append(
                f"  {s.stage:<16}{s.count:>14,.0f}  {s.unit:<18}{s.unit_s:>10.3g}{format_seconds(s.seconds):>10}"
            )
        lines.append(f"  {'total':<16}{'':>14}  {'':<18}{'':>10}{format_seconds(self.total_s):>10}")
        lines.append(f"  not timed (small on the demo): {', '.join(self.untimed)}")
        if c.matmul_flops_per_s > 0:
            floor = {k: v / c.matmul_flops_per_s for k, v in self.floor_flops.items()}
            lines.append(
                f"  floor at this CPU's matmul peak ({c.matmul_flops_per_s / 1e9:.0f} GFLOP/s, 100 % "
                f"efficiency): embed {format_seconds(floor['embed'])} "
                f"({self.floor_flops['embed'] / 1e15:.3g} PFLOP), lstm {format_seconds(floor['lstm'])} "
                f"({self.floor_flops['lstm'] / 1e15:.3g} PFLOP); no run of this preset here is faster"
            )
        lines.append(
            f"  disk: the simulated plate's images take {z.plate_bytes / 1e9:.1f} GB (uncompressed 16-bit TIFF), "
            "the store a few % of that (about half of it with `--compression zlib`)"
        )
        return "\n".join(lines)


def project(cfg: RunConfig, calibration: Calibration | None = None) -> Projection:
    """Projected seconds per stage of ``lnpstore run`` with ``cfg``: :func:`stage_counts` x the unit
    costs of ``calibration`` (None: :func:`calibrate` now)."""
    cal = calibration or calibrate(cfg)
    out = []
    for c in stage_counts(cfg):
        u = cal.unit_s[c.cost_key]
        sec = (c.count * u + (c.fixed * cal.unit_s[c.fixed_key] if c.fixed_key else 0.0)) / c.workers
        out.append(StageProjection(c.stage, c.count, c.unit, u, sec))
    return Projection(cfg.preset, out, UNTIMED, cal, sizes_for(cfg), floor_flops(cfg))


def print_projection(cfg: RunConfig) -> Projection:
    """Calibrate, print the projection table (flushed, before any work) and return it."""
    p = project(cfg)
    print(p.table(), flush=True)
    return p
