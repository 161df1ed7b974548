"""The plate: write every field (in parallel through :class:`~lnpstore.runtime.execution.Executor`), the
instrument metadata, the plate map and the truth folder (tables, registration, settings, CTC layout)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from lnpstore._version import __version__
from lnpstore.instrument.geometry import geometry_for
from lnpstore.runtime.execution import Backend, Executor
from lnpstore.simulate.field import FieldJob, simulate_field
from lnpstore.simulate.field_truth import FieldResult
from lnpstore.simulate.metadata import write_metadata
from lnpstore.simulate.omezarr import check_omezarr_settings, write_omezarr_plate
from lnpstore.simulate.render import registration_offset_px
from lnpstore.simulate.settings import SimulationSettings
from lnpstore.simulate.truth import LABELS_DIR, label_stack_name, write_ctc_ground_truth

log = logging.getLogger(__name__)

#: With ``workers=None``, a plate of fewer pixel-frames than this (all fields) is written in this process:
#: starting spawned workers (~2 s) costs more than they save (the tiny preset: 3.5e7, ~4 s on one core).
MIN_PARALLEL_PX_FRAMES = 5e7


@dataclass
class SimulatedPlate:
    """Where :func:`simulate_plate` wrote the plate folder, plate map and truth folder."""

    plate_dir: Path
    plate_map: Path
    truth_dir: Path
    settings: SimulationSettings


def simulate_plate(
    out_dir: str | os.PathLike,
    settings: SimulationSettings = SimulationSettings(),  # noqa: B008 - frozen, so a safe default
    *,
    show_progress: bool = True,
    ctc_ground_truth: bool = True,
    plate_format: Literal["yokogawa", "ome-zarr"] = "yokogawa",
) -> SimulatedPlate:
    """Write a simulated plate: ``out_dir/<plate>/`` (TIFFs, mlf, mrf), ``plate_map.csv`` and ``truth/``
    (with ``ctc_ground_truth``, also each field's truth in the Cell Tracking Challenge layout under
    ``truth/ctc/``, see :func:`lnpstore.simulate.truth.write_ctc_ground_truth`).

    ``plate_format="ome-zarr"`` writes the images as the OME-Zarr HCS plate ``out_dir/<plate>.zarr``
    instead of the TIFF folder (:mod:`lnpstore.simulate.omezarr`; no ``faults``).

    Existing files of the same names are overwritten. Fields are written by ``settings.workers``
    processes (default up to 2, 1 for a small plate; forked, so a plain script needs no ``__main__`` guard,
    unless jax/xgboost/torch/distributed is already imported: then spawned, and the guard is needed); the
    output does not depend on the number of workers.
    """
    if plate_format not in ("yokogawa", "ome-zarr"):
        raise ValueError(f"plate_format must be 'yokogawa' or 'ome-zarr', not {plate_format!r}")
    if plate_format == "ome-zarr":
        check_omezarr_settings(settings.faults)
    out = Path(out_dir)
    plate_dir, truth_dir = out / settings.plate, out / "truth"
    plate_dir.mkdir(parents=True, exist_ok=True)
    (truth_dir / LABELS_DIR).mkdir(parents=True, exist_ok=True)
    reg = registration_offset_px(settings)
    jobs = [
        FieldJob(settings, well, dose, f, str(plate_dir), reg, str(truth_dir / label_stack_name(well, f)))
        for well, dose in settings.wells.items()
        for f in range(1, settings.n_fields + 1)
    ]
    results = _run_fields(jobs, settings, show_progress)
    write_metadata(settings, plate_dir)
    _write_plate_map(settings, out / "plate_map.csv")
    _write_truth_tables(settings, results, truth_dir)
    _write_registration(reg, truth_dir / "registration.json")
    _write_settings(settings, truth_dir / "settings.json")
    if ctc_ground_truth:
        write_ctc_ground_truth(truth_dir)
    if plate_format == "ome-zarr":
        plate_dir = _as_omezarr(settings, plate_dir, out / f"{settings.plate}.zarr")
    return SimulatedPlate(
        plate_dir=plate_dir, plate_map=out / "plate_map.csv", truth_dir=truth_dir, settings=settings
    )


def _as_omezarr(settings: SimulationSettings, plate_dir: Path, zarr_path: Path) -> Path:
    """Rewrite the TIFF plate folder as the OME-Zarr plate ``zarr_path`` and remove the folder."""
    write_omezarr_plate(
        plate_dir,
        zarr_path,
        plate=settings.plate,
        wells=list(settings.wells),
        n_fields=settings.n_fields,
        n_frames=settings.n_frames,
        pixel_size_um=settings.pixel_size_um,
        frame_interval_min=settings.frame_interval_min,
    )
    shutil.rmtree(plate_dir)
    return zarr_path


def _run_fields(jobs: list[FieldJob], settings: SimulationSettings, show_progress: bool) -> list[FieldResult]:
    """Simulate every field, in field order: in this process with one worker, else in a process pool."""
    workers = settings.workers or _default_workers(settings, len(jobs))
    workers = max(1, min(workers, len(jobs)))
    backend: Backend = "serial" if workers == 1 else "processes"
    # fork when safe: the workers use only numpy/scipy/tifffile, and spawn would re-run a caller's
    # unguarded script (the README's Python example); spawn once a threaded runtime is loaded
    start = "spawn" if _threaded_runtime_loaded() else "fork"
    with Executor(backend=backend, n_workers=workers, start_method=start) as ex:
        return list(
            ex.map(
                simulate_field,
                jobs,
                desc=f"simulate {settings.plate}",
                unit="field",
                ordered=True,
                show_progress=show_progress,
            )
        )


def _threaded_runtime_loaded() -> bool:
    """Whether a library whose threads make ``fork`` unsafe is already imported in this process."""
    return any(m in sys.modules for m in ("jax", "jaxlib", "xgboost", "torch", "distributed"))


def _default_workers(settings: SimulationSettings, n_fields: int) -> int:
    """Up to 2 by the CPUs; 1 for a small plate (under ``MIN_PARALLEL_PX_FRAMES``)."""
    px_frames = n_fields * settings.n_frames * settings.width_px * settings.height_px
    return 1 if px_frames < MIN_PARALLEL_PX_FRAMES else min(2, os.cpu_count() or 1)


def _write_plate_map(settings: SimulationSettings, path: Path) -> None:
    """``well,dose_ng,is_control``."""
    wells = settings.wells
    pl.DataFrame(
        {"well": list(wells), "dose_ng": list(wells.values()), "is_control": [d == 0 for d in wells.values()]}
    ).write_csv(path)


def _head(settings: SimulationSettings, r: FieldResult) -> list[pl.Expr]:
    """The ``plate, well, field`` columns of a field's rows."""
    return [
        pl.lit(settings.plate, pl.String).alias("plate"),
        pl.lit(r.well, pl.String).alias("well"),
        pl.lit(r.field, pl.Int16).alias("field"),
    ]


def _write_truth_tables(settings: SimulationSettings, results: list[FieldResult], truth_dir: Path) -> None:
    """``cells``, ``tracks``, ``lineage`` and ``label_tracks`` of every field as Parquet."""
    wells = settings.wells
    cells, tracks = [], []
    for r in results:
        dose = wells[r.well]
        c = pl.DataFrame(r.cells).with_columns(
            *_head(settings, r),
            pl.lit(dose, pl.Float64).alias("dose_ng"),
            pl.lit(dose == 0, pl.Boolean).alias("is_control"),
        )
        cells.append(c.select("plate", "well", "field", "dose_ng", "is_control", *r.cells))
        t = pl.DataFrame(r.tracks).with_columns(*_head(settings, r))
        tracks.append(t.select("plate", "well", "field", *r.tracks))
    cells_df = pl.concat(cells).with_columns(pl.col("true_id").cast(pl.Int32))
    tracks_df = pl.concat(tracks).with_columns(
        pl.col("true_id").cast(pl.Int32), pl.col("frame").cast(pl.Int16)
    )
    cells_df.write_parquet(truth_dir / "cells.parquet")
    tracks_df.write_parquet(truth_dir / "tracks.parquet")
    _lineage_frame(settings, results, "lineage").write_parquet(truth_dir / "lineage.parquet")
    _lineage_frame(settings, results, "label_tracks").write_parquet(truth_dir / "label_tracks.parquet")


def _lineage_frame(settings: SimulationSettings, results: list[FieldResult], which: str) -> pl.DataFrame:
    """The ``lineage`` or ``label_tracks`` truth of every field as one DataFrame (ids Int32, frames Int16)."""
    parts = []
    for r in results:
        df = pl.DataFrame(getattr(r, which)).with_columns(*_head(settings, r))
        parts.append(df.select("plate", "well", "field", *getattr(r, which)))
    out = pl.concat(parts).with_columns(
        pl.col("true_id").cast(pl.Int32), pl.col("^.*_frame$|^frame$").cast(pl.Int16)
    )
    if which == "lineage":
        out = out.with_columns(
            pl.when(pl.col("parent_id") > 0).then(pl.col("parent_id")).cast(pl.Int32).alias("parent_id"),
            pl.col("lineage_id").cast(pl.Int32),
            pl.col("generation").cast(pl.Int16),
            pl.col("mask_value").cast(pl.Int32),
        )
    return out


def _write_registration(reg: tuple[int, int], path: Path) -> None:
    """The BF offset and the correction that undoes it (px)."""
    dy, dx = reg
    convention = (
        "BF content appears at the fluorescence position + (bf_offset_dy_px, bf_offset_dx_px);"
        " shifting BF by (correction_dy_px, correction_dx_px) aligns it (the registration table's dy_px, dx_px,"
        " and what skimage phase_cross_correlation(reference=CS, moving=BF) returns)"
    )
    record = {
        "bf_offset_dy_px": dy,
        "bf_offset_dx_px": dx,
        "correction_dy_px": -dy,
        "correction_dx_px": -dx,
        "convention": convention,
    }
    path.write_text(json.dumps(record, indent=2))


def _write_settings(settings: SimulationSettings, path: Path) -> None:
    """The settings, what they imply (pixel size, image size, cells, geometry) and the package version."""
    geom = geometry_for(settings.pixel_size_um)
    derived = {
        "pixel_size_um": settings.pixel_size_um,
        "width_px": settings.width_px,
        "height_px": settings.height_px,
        "cells_per_field": settings.n_cells,
        "geometry": geom.to_dict(),
        "gfp_sum_definition": "sum over the target window (geometry.target_window_px square, rows "
        "round(y) - w/2 .. round(y) + w/2 - 1, same for x) of the last frame's GFP: gfp_sum_true from "
        "the noise-free image including the camera offset, gfp_sum_written from the written image",
    }
    record = {"settings": settings.to_dict(), "derived": derived, "package_version": __version__}
    path.write_text(json.dumps(record, indent=2))
