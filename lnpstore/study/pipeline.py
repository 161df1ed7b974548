"""The whole study as one command: simulate (or take a plate), ingest, track, crop, embed, CNN,
LSTM, tsfresh/XGBoost, evaluate, report.

Every stage is resumable on its own (it skips the units of work whose output the store already
holds), so an interrupted ``lnpstore run`` is simply run again. The presets:

- ``demo`` (default): a small simulated plate at scale 0.5 (96 px crops), 2 augmentations, 5 folds,
  small random searches and cheaper tsfresh settings, sized to finish in under 15 minutes on 2 cores.
  The report states every reduction.
- ``paper``: the published protocol: scale 1 (192 px crops), 8 augmentations, 200-sample searches,
  tsfresh EfficientFCParameters. It prints its projected time per stage, calibrated on this machine,
  before it starts.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from lnpstore._version import __version__
from lnpstore.runtime.settings import Field, Settings, settings
from lnpstore.store.atomic import atomic_write_bytes
from lnpstore.store.core import Store
from lnpstore.store.errors import LnpstoreError, SettingsError
from lnpstore.store.lock import store_lock
from lnpstore.study.crops import DivisionRule

log = logging.getLogger(__name__)

CHECKPOINTS_FRAMES = (5, 10, 15, 20)
#: Where local per-field work runs (see :func:`run_study`).
LocalBackend = Literal["threads", "processes"]
MODES: tuple[Literal["classify", "regress"], ...] = ("classify", "regress")


@settings
class RunConfig(Settings):
    """Settings of one ``lnpstore run``; stored with the report."""

    preset: str = Field("demo", description="the preset these settings started from")
    seed: int = Field(0, description="seed of the simulator, the split, the folds and every model")
    sim_preset: str = Field("demo", description="simulator preset when no plate is given")
    sim_overrides: tuple[tuple[str, Any], ...] = Field(
        (), description="(field, value) pairs for SimulationSettings"
    )
    sim_compression: Literal["zlib", "zstd"] | None = Field(
        None,
        description="TIFF compression of the simulated plate's images (None: as the instrument writes them; "
        "zlib: about half the disk, measured 843 MB vs 1.8 GB for the demo plate, ~2x the time to write)",
    )
    t_in_frames: int = Field(20, ge=1, description="input frames 1..t (frames)")
    division_rule: DivisionRule = Field(
        "exclude", description="a cell that divides: 'exclude' it, or 'follow' one daughter"
    )
    n_augs: int = Field(
        2, ge=1, le=8, description="dihedral augmentations for features, training and test-time augmentation"
    )
    n_folds: int = Field(5, ge=2, description="cross-validation folds")
    cnn_epochs: int = Field(50, ge=1, description="CNN epochs (best epoch by validation loss)")
    lstm_samples: int = Field(3, ge=1, description="LSTM random-search samples per (fold, mode, checkpoint)")
    lstm_units: tuple[int, ...] = Field((32, 64, 128, 256), min_length=1, description="LSTM units searched")
    lstm_max_epochs: int = Field(
        200, ge=1, description="LSTM epochs per trial at most (early stopping ends most)"
    )
    lstm_patience_epochs: int = Field(
        20, ge=0, description="LSTM epochs without a better validation loss before a trial stops"
    )
    tsfresh_samples: int = Field(10, ge=1, description="XGBoost random-search samples")
    tsfresh_fc: Literal["minimal", "fast", "efficient"] = Field("minimal", description="tsfresh feature set")
    tsfresh_average_augs: bool = Field(True, description="tsfresh on the augmentation-averaged sequence")
    tsfresh_engine: Literal["tsfresh", "array"] = Field(
        "array", description="tsfresh feature extraction engine"
    )
    ts_inputs: Literal["embeddings", "tracks", "both"] = Field(
        "embeddings",
        description="what the LSTM and tsfresh read: the CNN's embeddings (the study), the cells' per-frame "
        "track measures, or both (lnpstore.models.panel.Inputs)",
    )
    checkpoints_frames: tuple[int, ...] = Field(
        CHECKPOINTS_FRAMES, min_length=1, description="t (frames) of the time-series models"
    )
    n_permutations: int = Field(10_000, ge=1, description="randomization-test permutations")
    embed_controls: bool = Field(
        True,
        description="embed control cells too (their embeddings feed no model, only `export-profiles`)",
    )
    weights: str = Field("imagenet", description="'imagenet', 'random', or a path to a weights file")
    dask_address: str | None = Field(None, description="a Dask scheduler address; None works locally")
    reductions: tuple[str, ...] = Field((), description="how this preset departs from the study's protocol")

    def __post_init__(self) -> None:
        if max(self.checkpoints_frames) > self.t_in_frames:
            raise SettingsError(
                f"checkpoints_frames {self.checkpoints_frames} go beyond t_in_frames={self.t_in_frames}"
            )


PRESETS: dict[str, RunConfig] = {
    "demo": RunConfig(
        preset="demo",
        lstm_units=(32, 64),
        reductions=(
            "simulated plate at scale 0.5 (0.325 um pixels, 96 px crops) with small fields and few cells",
            "2 of the 8 dihedral augmentations for features, training and test-time augmentation",
            "LSTM random search: 3 samples per (fold, mode, checkpoint) instead of 200, units 32/64 only",
            "tsfresh: MinimalFCParameters on the augmentation-averaged sequence; 10 XGBoost samples instead of 200",
        ),
    ),
    "study": RunConfig(  # issue 17 item 5 (target: under 45 min on 2 cores)
        preset="study",
        sim_preset="default",
        sim_overrides=(("scale", 0.5),),
        n_augs=2,
        embed_controls=False,
        lstm_samples=4,
        lstm_units=(32, 64),
        lstm_max_epochs=60,
        lstm_patience_epochs=8,
        tsfresh_samples=20,
        tsfresh_fc="efficient",
        tsfresh_average_augs=True,
        # the CNN embeddings hold little of the particles' depth (README, "The study's plate"); the
        # tracker's measures hold it, and on 6 channels tsfresh's efficient set costs ~1 min
        ts_inputs="tracks",
        reductions=(
            "the study's plate size: the default simulated plate at scale 0.5 (0.325 um pixels, 96 px crops)",
            "2 of the 8 dihedral augmentations for features, training and test-time augmentation",
            "control cells not embedded (they only set the GFP threshold)",
            "LSTM random search: 4 samples per (fold, mode, checkpoint) instead of 200, units 32/64 only, "
            "at most 60 epochs, patience 8 (lr, batch size searched)",
            "tsfresh: 20 XGBoost samples instead of 200",
        ),
    ),
    "paper": RunConfig(
        preset="paper",
        sim_preset="default",
        n_augs=8,
        lstm_samples=200,
        tsfresh_samples=200,
        tsfresh_fc="efficient",
        tsfresh_average_augs=False,
    ),
}


@dataclass
class StageTiming:
    name: str
    seconds: float


@dataclass
class RunResult:
    store: Store
    report_html: Path
    report_md: Path
    timings: list[StageTiming]


def run_study(
    store_dir: str | Path = "lnpstore-run",
    *,
    preset: str = "demo",
    plate_dir: str | Path | None = None,
    plate_map: str | Path | None = None,
    seed: int | None = None,
    weights: str | None = None,
    dask_address: str | None = None,
    overrides: dict[str, Any] | None = None,
    show_progress: bool = True,
    local: LocalBackend = "threads",
) -> RunResult:
    """Run the whole study into ``store_dir`` and write the report; see the module docstring.

    Where per-field work (tracking, registration, crops) runs: on the Dask scheduler at
    ``dask_address`` when given; otherwise on this machine, ``local="threads"`` (the default: works
    from a plain script or a notebook, no ``if __name__ == "__main__":`` guard needed) or
    ``"processes"`` (spawned worker processes, faster on several cores; the calling script needs the
    guard: the ``lnpstore`` command has it).
    """
    from lnpstore.models.weights import ensure_weights

    cfg = config_for(preset, seed=seed, weights=weights, dask_address=dask_address, overrides=overrides)
    ensure_weights(cfg.weights, show_progress=show_progress)  # found or fetched, or stop before any work
    root = Path(store_dir)
    from lnpstore.instrument.ingest import _first_missing

    new_root = _first_missing(root.absolute())  # the outermost folder this run creates (None: it exists)
    if plate_dir is None:
        check_disk_for_plate(root / "plate", cfg)  # before anything is written
    root.mkdir(parents=True, exist_ok=True)
    timer = _StageTimer()
    if preset == "paper":
        print_estimate(cfg)  # before any work starts

    # One run per folder: a second `lnpstore run` on it waits (LNPSTORE_LOCK_TIMEOUT, logging who holds
    # it) or exits with StoreLocked. The first hold in a process also removes the temporaries
    # (.tmp-PID-*) that killed runs left under the folder (plate/, report/, the store).
    with store_lock(root):
        truth_dir = None
        if plate_dir is None:
            plate_dir, plate_map, truth_dir = _simulated_plate(root, cfg, timer, show_progress, local)
        try:
            store, plate = _ingest(root / "store", plate_dir, plate_map, timer, show_progress)
        except BaseException:
            if new_root is not None and truth_dir is None:  # a failed ingest leaves no run folder behind
                shutil.rmtree(new_root, ignore_errors=True)
            raise
        if truth_dir is None:
            truth_dir = truth_beside(Path(plate_dir))
        _images_to_model_inputs(store, plate, cfg, timer, show_progress, local)
        _train_models(store, cfg, timer, show_progress)
        html, md = _evaluate_and_report(
            store, root, cfg, timer, plate=plate, plate_dir=Path(plate_dir), truth_dir=truth_dir
        )
    return RunResult(store=store, report_html=html, report_md=md, timings=timer.timings)


def _ingest(
    store_root: Path,
    plate_dir: str | Path,
    plate_map: str | Path | None,
    stage: _StageTimer,
    show_progress: bool,
) -> tuple[Store, str]:
    """Ingest the plate into the run's store, created here when new; a failed ingest removes a store
    it created (:func:`lnpstore.instrument.ingest.ingest_to_store`). Returns the store and the plate."""
    from lnpstore.instrument.ingest import ingest_to_store

    report = stage(
        "ingest",
        lambda: ingest_to_store(store_root, plate_dir, plate_map=plate_map, show_progress=show_progress),
    )
    return Store.open(store_root), report.plate


def config_for(
    preset: str,
    *,
    seed: int | None = None,
    weights: str | None = None,
    dask_address: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """The preset's settings with the caller's changes applied and validated."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    changes: dict[str, Any] = dict(overrides or {})
    for name, value in (("seed", seed), ("weights", weights), ("dask_address", dask_address)):
        if value is not None:
            changes[name] = value
    return replace(PRESETS[preset], **changes)


class _StageTimer:
    """Runs named stages, logs and keeps their wall times."""

    def __init__(self) -> None:
        self.timings: list[StageTiming] = []
        self.t_start = time.perf_counter()

    def __call__(self, name: str, fn: Callable[..., Any]) -> Any:  # `...`: lambdas binding a loop variable
        from lnpstore.runtime.progress import format_seconds

        log.debug("stage %s ...", name)
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        self.timings.append(StageTiming(name, dt))
        log.info("%-16s %s", name, format_seconds(dt))  # one line per stage
        return out


#: File a simulated plate's folder gets once every image is written (a re-run then skips simulate).
SIM_COMPLETE_MARKER = ".complete"
#: Share of the uncompressed size a compressed simulated plate is counted at by the disk check: zlib
#: wrote the demo plate in 843 MB of 1.86 GB (0.45); the camera noise sets it, so it varies little.
COMPRESSED_SHARE = 0.5


def check_disk_for_plate(sim_dir: Path, cfg: RunConfig) -> None:
    """Refuse to start when the disk under ``sim_dir`` cannot hold the simulated plate's images (what
    is already there counts as written): a disk that fills half-way stops the run later, less clearly.
    Raises :class:`~lnpstore.store.errors.LnpstoreError` naming the folder, the need and the free space."""
    from lnpstore.instrument.ingest import _first_missing
    from lnpstore.study.estimate import sizes_for

    if (sim_dir / SIM_COMPLETE_MARKER).exists():
        return
    need = int(sizes_for(cfg).plate_bytes * (COMPRESSED_SHARE if cfg.sim_compression else 1.0))
    have = sum(f.stat().st_size for f in sim_dir.rglob("*") if f.is_file()) if sim_dir.exists() else 0
    missing = _first_missing(sim_dir.absolute())
    free = shutil.disk_usage(sim_dir if missing is None else missing.parent).free
    if need - have > free:
        raise LnpstoreError(
            f"not enough disk for the simulated plate in {sim_dir}: its images need {need / 1e9:.1f} GB "
            f"({have / 1e9:.1f} GB already written there) and {free / 1e9:.1f} GB are free. Hint: free "
            f"{(need - have - free) / 1e9:.1f} GB, or give a run folder on a larger disk "
            "(`lnpstore run FOLDER`); `lnpstore run --dry-run` shows what each preset needs"
        )


def truth_beside(plate_dir: Path) -> Path | None:
    """The simulator's truth folder of a plate given with ``--plate`` when it is a simulated one
    (``lnpstore simulate OUT`` writes ``OUT/<plate>/`` and ``OUT/truth/``, whose settings name the plate):
    the report then gets the oracle rows as for a plate the run simulated. None for any other plate."""
    from lnpstore.simulate import SimulationSettings

    settings = plate_dir.parent / "truth" / "settings.json"
    if not settings.is_file():
        return None
    try:
        name = SimulationSettings.load(settings).plate
    except Exception as e:  # noqa: BLE001 - a foreign or damaged file there: no truth, say why
        log.warning("%s: not read as a simulator's settings (%s); no oracle for this plate", settings, e)
        return None
    if name != plate_dir.name:
        return None
    log.info("simulated plate: its truth in %s gives the oracle rows", settings.parent)
    return settings.parent


def _simulated_plate(
    root: Path, cfg: RunConfig, stage: _StageTimer, show_progress: bool, local: LocalBackend = "threads"
) -> tuple[Path, Path, Path]:
    """Simulate the plate (once: a marker file says it is complete); returns its folder, plate map and
    ground truth folder."""
    from lnpstore.simulate import SimulationSettings, simulate_plate

    sim_settings = SimulationSettings.from_preset(cfg.sim_preset, cfg.seed)
    if cfg.sim_overrides:
        sim_settings = replace(sim_settings, **dict(cfg.sim_overrides))
    if cfg.sim_compression is not None:
        sim_settings = replace(sim_settings, compression=cfg.sim_compression)
    if local == "threads" and sim_settings.workers is None:
        sim_settings = replace(sim_settings, workers=1)  # spawn no process: no __main__ guard needed
    sim_dir = root / "plate"
    marker = sim_dir / SIM_COMPLETE_MARKER
    if marker.exists():
        log.info("simulated plate already written in %s", sim_dir)
    else:
        stage("simulate", lambda: simulate_plate(sim_dir, sim_settings, show_progress=show_progress))
        atomic_write_bytes(b"ok\n", marker)
    return sim_dir / sim_settings.plate, sim_dir / "plate_map.csv", sim_dir / "truth"


def _images_to_model_inputs(
    store: Store,
    plate: str,
    cfg: RunConfig,
    stage: _StageTimer,
    show_progress: bool,
    local: LocalBackend = "threads",
) -> str:
    """tables of an ingested plate -> track, register, cells, crop; returns the plate's name."""
    from lnpstore.runtime.execution import Executor
    from lnpstore.study.crops import CropSettings
    from lnpstore.study.prepare import prepare_plate
    from lnpstore.tracking import track_plate

    # a cluster only when asked for; local threads spawn no process, so no __main__ guard is needed
    executor = Executor(address=cfg.dask_address) if cfg.dask_address else Executor(backend=local)
    with executor as ex:
        stage("track", lambda: track_plate(store, plate, executor=ex, show_progress=show_progress))
        prepare_plate(
            store,
            plate,
            crop=CropSettings(t_in=cfg.t_in_frames, division_rule=cfg.division_rule),
            seed=cfg.seed,
            executor=ex,
            run_step=stage,
        )
    return plate


def _train_models(store: Store, cfg: RunConfig, stage: _StageTimer, show_progress: bool) -> None:
    """arrays -> models -> tables: features, the CNN per mode, then LSTM and tsfresh per mode."""
    from lnpstore.models.cnn import train_cnn
    from lnpstore.models.extractor import extract_features
    from lnpstore.models.timeseries_stage import run_timeseries
    from lnpstore.study.estimate import lstm_search_config

    stage(
        "embed",
        lambda: extract_features(
            store,
            weights=cfg.weights,
            n_augs=cfg.n_augs,
            include_controls=cfg.embed_controls,
            show_progress=show_progress,
        ),
    )
    folds = range(cfg.n_folds)
    for mode in MODES:
        stage(
            f"cnn-{mode}",
            lambda mode=mode: train_cnn(
                store, mode, folds=folds, epochs=cfg.cnn_epochs, seed=cfg.seed, show_progress=show_progress
            ),
        )
    lstm_search = lstm_search_config(cfg)

    def timeseries(
        kind: Literal["lstm", "tsfresh_xgb"],
        mode: Literal["classify", "regress"],
        n_samples: int,
        **extra: Any,
    ) -> Any:
        """One time-series stage; folds, checkpoints and seed are shared by both model kinds."""
        return run_timeseries(
            store,
            kind=kind,
            mode=mode,
            folds=folds,
            checkpoints=cfg.checkpoints_frames,
            n_samples=n_samples,
            seed=cfg.seed,
            show_progress=show_progress,
            **extra,
        )

    for mode in MODES:
        stage(
            f"lstm-{mode}",
            lambda mode=mode: timeseries(
                "lstm", mode, cfg.lstm_samples, lstm_search_config=lstm_search, inputs=cfg.ts_inputs
            ),
        )
        stage(
            f"tsfresh-{mode}",
            lambda mode=mode: timeseries(
                "tsfresh_xgb",
                mode,
                cfg.tsfresh_samples,
                fc_parameters=cfg.tsfresh_fc,
                average_augs=cfg.tsfresh_average_augs,
                dask_address=cfg.dask_address,
                tsfresh_engine=cfg.tsfresh_engine,
                inputs=cfg.ts_inputs,
            ),
        )


def _evaluate_and_report(
    store: Store,
    root: Path,
    cfg: RunConfig,
    stage: _StageTimer,
    *,
    plate: str,
    plate_dir: Path,
    truth_dir: Path | None,
) -> tuple[Path, Path]:
    """models -> tables -> report: metrics (with the simulator's oracle when there is one), Table 1,
    figures, report.html / report.md and run.json."""
    from lnpstore.models.evaluation import evaluate
    from lnpstore.models.randomization import compare_models
    from lnpstore.simulate.truth import oracle_for_store
    from lnpstore.study.report import write_report, write_table1

    oracle = oracle_for_store(store, truth_dir) if truth_dir is not None else None
    run_id = f"{cfg.preset}-s{cfg.seed}-{store.data_version('predictions')[:8]}"
    stage("evaluate", lambda: evaluate(store, oracle=oracle, run_id=run_id))
    table1 = stage(
        "randomization",
        lambda: compare_models(
            store, checkpoints=cfg.checkpoints_frames, n_permutations=cfg.n_permutations, seed=cfg.seed
        ),
    )
    write_table1(store, table1)
    out_dir = root / "report"
    run_info = _run_info(store, cfg, stage, plate=plate, plate_dir=plate_dir, simulated=truth_dir is not None)
    html, md = write_report(
        store,
        out_dir,
        run_info=run_info,
        extra_figures=_report_figures(store),
        n_permutations=cfg.n_permutations,
        seed=cfg.seed,
    )
    atomic_write_bytes(json.dumps(run_info, indent=2, default=str).encode(), out_dir / "run.json")
    return html, md


def _report_figures(store: Store) -> list[tuple[Path, str]]:
    """The tracking figures and the CNN's fold-0 training curves, with captions."""
    from lnpstore.study.figures import make_tracking_figures

    figs = {p.stem: p for p in make_tracking_figures(store, store.artifacts_dir("figures"))}
    captions = {
        "fig2_uptake_expression": "Figure 2. Mean LNP spots per cell area and mean GFP per cell (+- sem) over time, by dose.",
        "fig5_displacement": "Figure 5. Per-frame displacement of tracked cells, with mean and sd.",
    }
    extra = [(p, captions.get(stem, stem.replace("_", " "))) for stem, p in figs.items()]
    for p in sorted(store.artifacts_dir("models").glob("cnn-*-f0-*_curves.png")):
        extra.append((p, f"CNN head training curve (fold 0): {p.stem.removesuffix('_curves')}"))
    return extra


def _run_info(
    store: Store, cfg: RunConfig, stage: _StageTimer, *, plate: str, plate_dir: Path, simulated: bool
) -> dict[str, Any]:
    """What the report and run.json say about this run: config, seed, times, versions."""
    total_s = time.perf_counter() - stage.t_start
    stage_s = _cumulative_timings(store, stage.timings)
    resumed = (
        f" (this invocation {total_s / 60:.1f} min, resumed)" if total_s < sum(stage_s.values()) - 1 else ""
    )
    return {
        "preset": cfg.preset,
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "plate": plate,
        "plate_dir": str(plate_dir.resolve()),
        "simulated": simulated,
        "reductions": _departures(cfg),
        "n_permutations": cfg.n_permutations,
        "timings_s": stage_s,
        "this_invocation_s": round(total_s, 1),
        "time_taken": f"{sum(stage_s.values()) / 60:.1f} min of stage time in total"
        + resumed
        + "; per stage: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in stage_s.items()),
        "finished_at": datetime.now(UTC).isoformat(),
        "lnpstore_version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def _departures(cfg: RunConfig) -> list[str]:
    """How the run departs from the study's protocol: the preset's reductions and the caller's changes."""
    out = list(cfg.reductions)
    if cfg.ts_inputs != "embeddings":
        read = {
            "tracks": "the cells' per-frame track measures (queries/track_sequences.sql)",
            "both": "the CNN embeddings and the cells' per-frame track measures",
        }
        out.append(
            f"LSTM and tsfresh read {read[cfg.ts_inputs]} instead of the CNN embeddings alone, the study's "
            "inputs (`--inputs embeddings` restores them)"
        )
    return out or ["none: the study's full protocol"]


def _cumulative_timings(store: Store, timings: list[StageTiming]) -> dict[str, float]:
    """Stage times over every invocation of a run: a stage that was skipped (resumed) keeps the time
    of the invocation that did its work. Kept in ``artifacts/run/timings.json``."""
    path = store.artifacts_dir("run") / "timings.json"
    prev: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}
    out = dict(prev)
    for t in timings:
        if t.name not in prev or t.seconds > prev[t.name]:
            out[t.name] = round(t.seconds, 1)
    atomic_write_bytes(json.dumps(out, indent=2).encode(), path)
    return out


def print_estimate(cfg: RunConfig) -> None:
    """Calibrate on this machine and print the projected time per stage before starting
    (:mod:`lnpstore.study.estimate`; ``lnpstore run --dry-run`` prints it for any preset)."""
    from lnpstore.study.estimate import print_projection

    print_projection(cfg)
