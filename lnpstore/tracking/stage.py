"""The plate stage: seed and track every field of a plate from the store's images, resumably.

``track_plate`` runs one :func:`track_field_job` per field through an
:class:`lnpstore.runtime.execution.Executor` and writes each well's seeds, tracks and label-movie rows
once all its fields are done. A field's label movie lies at :func:`labels_path_for`; the
``label_images`` table stores that path relative to the store's root.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import polars as pl

from lnpstore.store.errors import TrackingError
from lnpstore.tracking.field import track_field
from lnpstore.tracking.labels import LabelMovie
from lnpstore.tracking.settings import TRACK_CHANNELS, TrackSettings

log = logging.getLogger(__name__)


@dataclass
class TrackReport:
    """What :func:`track_plate` did."""

    plate: str
    fields_tracked: int = 0
    fields_skipped: int = 0
    fields_excluded: int = 0
    fields_without_seeds: list[tuple[str, int]] = field(default_factory=list)
    tracks: int = 0
    nodes: int = 0
    seconds: float = 0.0

    @property
    def cell_frames_per_s(self) -> float:
        return self.nodes / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"tracked {self.fields_tracked} field(s) of plate {self.plate} ({self.tracks} tracks, {self.nodes} "
            f"cell-frames, {self.cell_frames_per_s:.0f} cell-frames/s); skipped {self.fields_skipped} already "
            f"tracked, {self.fields_excluded} in excluded wells; {len(self.fields_without_seeds)} without seeds"
        )


def _read_image(path: str | None, where: str):
    from lnpstore.instrument.stackio import read_image

    if path is None:
        return None
    try:
        return read_image(path)
    except Exception as exc:  # tifffile raises several types for damaged files
        raise TrackingError(
            f"{where}: cannot read {path} ({exc!r}). Hint: re-run `lnpstore ingest` to re-check the images"
        ) from None


def _first_cs_where(job: dict) -> str:
    return f"plate {job['plate']}, well {job['well']}, field {job['field']}, frame 1, channel CS"


def _first_cs(job: dict):
    """Frame 1's CS image of the job's field (None when the field has no such image)."""
    return _read_image(job["frames"][0].get("CS"), _first_cs_where(job)) if job["frames"] else None


def _lazy_frames(
    job: dict, first_cs=None, channels: tuple[str, ...] = TRACK_CHANNELS
) -> Iterable[dict[str, np.ndarray]]:
    """One frame's images of ``channels`` at a time, read from the paths in ``job['frames']``."""
    where = f"plate {job['plate']}, well {job['well']}, field {job['field']}"
    for i, paths in enumerate(job["frames"], start=1):
        images = {}
        for ch in channels:
            if ch == "CS" and i == 1 and first_cs is not None:
                images[ch] = first_cs
                continue
            img = _read_image(paths.get(ch), f"{where}, frame {i}, channel {ch}")
            if img is not None:
                images[ch] = img
        yield images


def track_field_job(job: dict) -> dict:
    """Seed and track one field from image paths; a picklable unit of work for the Executor.

    ``job``: plate, well, field, pixel_size_um, settings (TrackSettings.to_dict()), seeds ((N, 2)
    array, or None for automatic seeds) and frames (list, frame 1 first, of {channel: path or None}).
    Returns the job's keys plus ``seeds`` ((N, 2) array), ``source`` and ``tracks`` (track_field's frame).
    """
    settings = TrackSettings.from_dict(job["settings"])
    px = float(job["pixel_size_um"])
    if job.get("masks_path") or settings.method == "detect":
        return _link_field_job(job, settings, px)
    first_cs = None
    seeds = job.get("seeds")
    if seeds is None:
        first_cs = _first_cs(job)
        from lnpstore.tracking.seeding import auto_seeds

        seeds = (
            np.zeros((0, 2))
            if first_cs is None
            else auto_seeds(first_cs, pixel_size_um=px, settings=settings.seeds)
        )
    seeds = np.asarray(seeds, dtype=np.float64).reshape(-1, 2)
    frames = _lazy_frames(job, first_cs)
    labels_path = job.get("labels_path")
    movie = None
    if labels_path is None or len(seeds) == 0:
        tracks = track_field(frames, seeds, pixel_size_um=px, settings=settings)
    else:
        from lnpstore.tracking.labels import LabelMovieWriter

        with LabelMovieWriter(labels_path) as w:
            tracks = track_field(frames, seeds, pixel_size_um=px, settings=settings, on_labels=w.write)
        movie = {"path": str(labels_path), "n_frames": w.n_frames, "shape": w.shape}
    return {
        "plate": job["plate"],
        "well": job["well"],
        "field": job["field"],
        "seeds": seeds,
        "tracks": tracks,
        "labels": movie,
    }


def _link_field_job(job: dict, settings: TrackSettings, px: float) -> dict:
    """:func:`track_field_job` for a field segmented frame by frame: by a segmentation made elsewhere
    (``job['masks_path']``) or, with method 'detect', by :func:`lnpstore.tracking.detection.detect_cells`
    on each frame's CS image; the label movie is linked (:func:`lnpstore.tracking.linking.link_labels`)
    and the seeds are the centres of the tracks that start in frame 1."""
    from lnpstore.instrument.stackio import open_stack
    from lnpstore.tracking.labels import LabelMovieWriter
    from lnpstore.tracking.linking import link_labels

    masks: Iterable[np.ndarray]
    cs: Iterable[np.ndarray | None]
    if job.get("masks_path"):
        masks = open_stack(job["masks_path"])
        if len(masks) != len(job["frames"]):
            raise TrackingError(
                f"plate {job['plate']}, well {job['well']}, field {job['field']}: {job['masks_path']} holds "
                f"{len(masks)} label frames, the field has {len(job['frames'])} frames"
            )
        cs = (fr.get("CS") for fr in _lazy_frames(job, channels=("CS",)))
    else:
        masks, cs = _detected_masks(job, settings, px)
    with LabelMovieWriter(job["labels_path"]) as w:
        tracks = link_labels(masks, pixel_size_um=px, settings=settings, images=cs, on_labels=w.write)
    first = tracks.filter((pl.col("frame") == 1) & ~pl.col("gap_filled")).sort("track_id")
    return {
        "plate": job["plate"],
        "well": job["well"],
        "field": job["field"],
        "seeds": first.select("y_px", "x_px").to_numpy().reshape(-1, 2),
        "tracks": tracks,
        "labels": {"path": str(job["labels_path"]), "n_frames": w.n_frames, "shape": w.shape},
    }


def _detected_masks(job: dict, settings: TrackSettings, px: float) -> tuple[Iterable[np.ndarray], Iterable]:
    """(label frames, CS frames) of a field with method 'detect': each frame's cells detected on its CS
    image; a frame without a CS image (a missing or unreadable file) has no cells, so linking bridges it
    as a gap. ``settings.detect.cell_diameter_um`` must be set (``track_plate`` estimates it)."""
    from itertools import tee

    from lnpstore.tracking.detection import detect_cells

    diameter_um = settings.detect.cell_diameter_um
    if diameter_um is None:
        raise TrackingError("method 'detect' needs detect.cell_diameter_um (track_plate estimates it)")
    cs_a, cs_b = tee(fr.get("CS") for fr in _lazy_frames(job, channels=("CS",)))
    shape: list[tuple[int, ...]] = []

    def masks() -> Iterator[np.ndarray]:
        for img in cs_a:
            if img is None:
                if not shape:
                    raise TrackingError(
                        f"plate {job['plate']}, well {job['well']}, field {job['field']}: no CS image in "
                        "frame 1, so method 'detect' has nothing to start from. Hint: exclude the field, "
                        "or re-run `lnpstore ingest` if the file is back"
                    )
                yield np.zeros(shape[0], np.int32)
                continue
            shape[:] = [np.shape(img)]
            yield detect_cells(img, pixel_size_um=px, settings=settings.detect, cell_diameter_um=diameter_um)

    return masks(), cs_b


def masks_path_for(masks_dir: str | Path, well: str, field_: int) -> Path | None:
    """A field's given segmentation under ``masks_dir``: ``WELL/fFFF.tif`` (T x Y x X labels) or the
    folder ``WELL/fFFF/`` of 2-D label frames; None when neither exists."""
    base = Path(masks_dir) / well / f"f{int(field_):03d}"
    for p in (base.with_suffix(".tif"), base.with_suffix(".tiff"), base):
        if p.exists():
            return p
    return None


def labels_path_for(store, plate: str, well: str, field_: int) -> Path:
    """Where :func:`track_plate` writes a field's label movie: ``STORE/labels/PLATE/WELL/fFFF.tif``."""
    return store.root / "labels" / plate / well / f"f{int(field_):03d}.tif"


def load_field_labels(store, plate: str, well: str, field_: int) -> tuple[pl.DataFrame, LabelMovie]:
    """A tracked field's tracks (the tracks table's rows, :data:`FIELD_COLUMNS` and keys) and its lazy
    label movie (pixel value = track_id = label_id)."""
    rows = store.read("label_images", plate=plate).filter(
        (pl.col("well") == well) & (pl.col("field") == int(field_))
    )
    if rows.height == 0:
        raise TrackingError(
            f"plate {plate}, well {well}, field {field_}: no label images in store {store.root}. Hint: "
            "track it with this lnpstore version (`lnpstore track`; remove its tracks first if it was "
            "tracked before label images were kept)"
        )
    tracks = (
        store.read("tracks", plate=plate)
        .filter((pl.col("well") == well) & (pl.col("field") == int(field_)))
        .sort("track_id", "frame")
    )
    return tracks, LabelMovie(resolve_label_path(store, rows.get_column("path")[0]))


def resolve_label_path(store, path: str) -> Path:
    """A ``label_images.path`` as a path on disk: relative paths (written now) are under the
    store's root; absolute ones (older stores) are used as they are."""
    p = Path(path)
    return p if p.is_absolute() else store.root / p


def _relative_label_path(store, path: str) -> str:
    """``path`` relative to the store's root (POSIX separators), so a moved store keeps its movies."""
    p = Path(path)
    try:
        return p.resolve().relative_to(store.root).as_posix()
    except ValueError:  # outside the store (a custom labels_path): kept absolute
        return str(p.resolve())


def _plate_info(store, plate: str) -> tuple[float, pl.DataFrame, set[str]]:
    plates = store.read("plates", plate=plate)
    if plates.height == 0:
        known = store.read("plates").get_column("plate").to_list()
        raise TrackingError(
            f"plate {plate!r} is not in store {store.root} (plates: {known}). Hint: `lnpstore ingest` it first"
        )
    px = plates.get_column("pixel_size_um")[0]
    if px is None or not px > 0:
        raise TrackingError(
            f"plate {plate}: pixel_size_um is {px} in the plates table; re-ingest with a pixel size"
        )
    images = (
        store.table("images", plate=plate)
        .filter(pl.col("channel").is_in(list(TRACK_CHANNELS)))
        .select("well", "field", "frame", "channel", "path", "status")
        .collect()
    )
    wells = store.read("wells", plate=plate)
    excluded = set(wells.filter(pl.col("excluded")).get_column("well").to_list())
    return float(px), images, excluded


def track_plate(
    store,
    plate: str,
    *,
    seeds: str | Path = "auto",
    settings: TrackSettings | None = None,
    executor=None,
    show_progress: bool = True,
    masks: str | Path | None = None,
) -> TrackReport:
    """Seed and track every field of ``plate`` that is not excluded and not tracked yet; write seeds, tracks.

    ``masks``: a folder of segmentations made elsewhere, one per field (``WELL/fFFF.tif`` or the folder
    ``WELL/fFFF/``, see :func:`masks_path_for`), linked instead of segmented; the tables are the same.

    Resumable: a (well, field) that already has rows in ``tracks`` is skipped. Work runs through
    ``executor`` (an :class:`lnpstore.execution.Executor`; in-process when None); the driver writes
    each well's seeds and tracks once all its fields are done. ``seeds`` is "auto" (from frame 1's CS
    image) or the path of a CSV with columns well, field, y_px, x_px. The settings, seed source and
    versions are written to ``artifacts/tracking/<plate>.json``.
    """
    import time

    from lnpstore.tracking.seeding import read_seed_csv

    s = settings or TrackSettings()
    t0 = time.perf_counter()
    report = TrackReport(plate)
    manual = None
    source = "auto"
    if masks is not None:
        source = f"masks:{Path(masks).resolve()}"
    elif str(seeds) != "auto":
        manual = read_seed_csv(seeds)
        source = f"csv:{Path(seeds).resolve()}"
    detect = s.method == "detect" and masks is None  # given masks are linked whatever the method
    if detect:
        if manual is not None:
            raise TrackingError(
                f"plate {plate}: seeds from {seeds} apply to method 'window'; method 'detect' finds the "
                "cells of every frame. Hint: drop --seeds, or use --method window"
            )
        source = "detect"
    px, jobs = _field_jobs(store, plate, s, manual, masks, report)
    if detect and jobs:
        s = _with_plate_diameter(s, jobs[0], px)  # once per plate, so the run's record holds it
        for job in jobs:
            job["settings"] = s.to_dict()
    _record_run(store, plate, s, source, px, executor)
    _run_jobs(store, plate, jobs, source, executor, show_progress, report)
    report.seconds = time.perf_counter() - t0
    return report


def _with_plate_diameter(s: TrackSettings, job: dict, px: float) -> TrackSettings:
    """``s`` with ``detect.cell_diameter_um`` estimated from the first field's frame-1 CS image when not
    given (:func:`lnpstore.tracking.stack.with_cell_diameter`)."""
    from lnpstore.tracking.stack import with_cell_diameter

    if s.detect.cell_diameter_um is not None:
        return s
    first = _first_cs(job)
    if first is None:
        raise TrackingError(
            f"{_first_cs_where(job)}: no image to estimate the cell diameter from. "
            "Hint: give --cell-diameter-um"
        )
    return with_cell_diameter(s, first, px)


def _field_jobs(
    store, plate: str, s: TrackSettings, manual, masks, report: TrackReport
) -> tuple[float, list[dict]]:
    """The plate's pixel size and one :func:`track_field_job` job per field to track (excluded wells and
    fields already tracked are counted in ``report`` and skipped)."""
    from lnpstore.tracking.seeding import seeds_for

    px, images, excluded = _plate_info(store, plate)
    done = set(store.table("tracks", plate=plate).select("well", "field").unique().collect().iter_rows())
    done -= _fields_without_label_movie(store, plate)
    ok = images.filter(pl.col("status") == "ok")
    n_frames = int(cast(int | None, images.get_column("frame").max()) or 0)
    jobs: list[dict] = []
    for well, fld in sorted(images.select("well", "field").unique().iter_rows()):
        if well in excluded:
            report.fields_excluded += 1
            continue
        if (well, fld) in done:
            report.fields_skipped += 1
            continue
        paths = {
            (r["frame"], r["channel"]): r["path"]
            for r in ok.filter((pl.col("well") == well) & (pl.col("field") == fld)).iter_rows(named=True)
        }
        job = {
            "plate": plate,
            "well": well,
            "field": int(fld),
            "pixel_size_um": px,
            "settings": s.to_dict(),
            "seeds": None if manual is None else seeds_for(manual, well, int(fld)),
            "frames": [{ch: paths.get((f, ch)) for ch in TRACK_CHANNELS} for f in range(1, n_frames + 1)],
            "labels_path": str(labels_path_for(store, plate, well, int(fld))),
        }
        if masks is not None:
            given = masks_path_for(masks, well, int(fld))
            if given is None:
                raise TrackingError(
                    f"plate {plate}, well {well}, field {fld}: no segmentation under {masks} (expected "
                    f"{well}/f{int(fld):03d}.tif or the folder {well}/f{int(fld):03d}/)"
                )
            job["masks_path"] = str(given)
        jobs.append(job)
    return px, jobs


def _fields_without_label_movie(store, plate: str) -> set[tuple[str, int]]:
    """Fields whose label movie (listed in ``label_images``) is gone from disk: tracked again, since
    the movie is written with the tracks (deleted by hand, or lost with a copied store)."""
    rows = store.read("label_images", plate=plate)
    gone = set()
    for r in rows.iter_rows(named=True):
        if not resolve_label_path(store, r["path"]).exists():
            gone.add((r["well"], int(r["field"])))
    if gone:
        log.warning(
            "plate %s: the label movie of %d tracked field(s) is missing (e.g. well %s field %d): tracking them again",
            plate,
            len(gone),
            *sorted(gone)[0],
        )
    return gone


def _record_run(store, plate: str, s: TrackSettings, source: str, px: float, executor) -> None:
    """Write the run's settings, seed source and versions to ``artifacts/tracking/<plate>.json``."""
    import json

    from lnpstore._version import __version__
    from lnpstore.store.atomic import atomic_write_bytes

    meta = {
        "plate": plate,
        "seeds": source,
        "settings": s.to_dict(),
        "pixel_size_um": px,
        "package_version": __version__,
        "executor": repr(executor),
    }
    atomic_write_bytes(json.dumps(meta, indent=2).encode(), store.artifacts_dir("tracking") / f"{plate}.json")


def _run_jobs(
    store, plate: str, jobs: list[dict], source: str, executor, show_progress: bool, report: TrackReport
) -> None:
    """Run the jobs through the executor; write each well once all its fields are done."""
    import os

    from lnpstore.runtime.execution import Executor
    from lnpstore.store.schema import cell_uid_expr

    per_well: dict[str, int] = {}
    for job in jobs:
        per_well[job["well"]] = per_well.get(job["well"], 0) + 1
    pending: dict[str, list[dict]] = {}
    ex = executor or Executor.synchronous()
    quiet_before = os.environ.get("LNPSTORE_QUIET")
    if not show_progress:
        os.environ["LNPSTORE_QUIET"] = "1"
    try:
        for res in ex.map(track_field_job, jobs, desc=f"track {plate}"):
            well = res["well"]
            pending.setdefault(well, []).append(res)
            if len(pending[well]) == per_well[well]:
                _write_well(store, pending.pop(well), source, cell_uid_expr, report)
    finally:
        if not show_progress:
            if quiet_before is None:
                os.environ.pop("LNPSTORE_QUIET", None)
            else:
                os.environ["LNPSTORE_QUIET"] = quiet_before


def _write_well(store, results: list[dict], source: str, cell_uid_expr, report: TrackReport) -> None:
    seed_parts, track_parts, label_rows = [], [], []
    for r in sorted(results, key=lambda r: r["field"]):
        keys = {"plate": r["plate"], "well": r["well"], "field": r["field"]}
        report.fields_tracked += 1
        if len(r["seeds"]) == 0:
            report.fields_without_seeds.append((r["well"], r["field"]))
            continue
        seed_parts.append(
            pl.DataFrame(
                {
                    "track_id": np.arange(1, len(r["seeds"]) + 1, dtype=np.int32),
                    "y_px": r["seeds"][:, 0],
                    "x_px": r["seeds"][:, 1],
                }
            ).with_columns(**{k: pl.lit(v) for k, v in keys.items()}, source=pl.lit(source))
        )
        if r.get("labels"):
            m = r["labels"]
            label_rows.append(
                {
                    **keys,
                    "path": _relative_label_path(store, m["path"]),
                    "n_frames": m["n_frames"],
                    "height_px": m["shape"][0],
                    "width_px": m["shape"][1],
                }
            )
        t = r["tracks"].with_columns(**{k: pl.lit(v) for k, v in keys.items()})
        track_parts.append(t.with_columns(cell_uid=cell_uid_expr()))
        report.tracks += int(r["tracks"].get_column("track_id").n_unique())
        report.nodes += r["tracks"].height
    if track_parts:
        from lnpstore.store import schema as S

        # tracks last: a field with tracks counts as done (_field_jobs), so a kill between these writes
        # leaves it to be tracked again, never done without its seeds or label_images rows
        with store.batch():
            store.write("seeds", pl.concat(seed_parts).select(S.table("seeds").column_names), mode="upsert")
            if label_rows:
                store.write(
                    "label_images",
                    pl.DataFrame(label_rows, schema=S.table("label_images").polars_schema),
                    mode="upsert",
                )
            store.write(
                "tracks", pl.concat(track_parts).select(S.table("tracks").column_names), mode="upsert"
            )
