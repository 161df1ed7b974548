"""Brightfield-to-fluorescence registration: the BF offset per field and per plate, by phase correlation.

Brightfield (BF) and the fluorescence channels come through different light paths, so BF is displaced
by a few px relative to CS/LNP/GFP. BF shows cells as halos at their outlines while the counterstain
(CS) fills them, so the raw images do not correlate well; their *gradient magnitudes* (Sobel of a
Gaussian-smoothed image) both light up at cell outlines and do. Each field's offset is estimated on
frame 1 (optionally a few more frames, median), the plate's offset is the median over fields, and every
field is checked against it (``agrees_with_plate``). The offset stored as ``dy_px, dx_px`` is the
plate's and is the shift to *apply to BF* (``scipy.ndimage.shift(bf, (dy_px, dx_px))`` aligns it with
CS), the sign convention of :func:`skimage.registration.phase_cross_correlation` with CS as reference.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy import ndimage as ndi

from lnpstore.instrument.geometry import geometry_for
from lnpstore.runtime.execution import Executor, parallel_map
from lnpstore.runtime.settings import Field, Settings, settings
from lnpstore.store.core import Store
from lnpstore.store.errors import RegistrationError

log = logging.getLogger(__name__)

__all__ = [
    "RegistrationSettings",
    "RegistrationError",
    "edge_map",
    "estimate_offset",
    "register_field",
    "register_plate",
    "plate_offset",
]


@settings
class RegistrationSettings(Settings):
    """Settings of the registration stage (BF -> fluorescence offset per field)."""

    frames: tuple[int, ...] = Field(
        (1,), min_length=1, description="frames (1-based) whose offsets are combined (median) per field"
    )
    smooth_ref_px: float = Field(
        2.0,
        gt=0,
        description="Gaussian sigma before the gradient, px at the reference 0.1625 um (scaled to the plate)",
    )
    upsample_factor: int = Field(20, ge=1, description="sub-pixel precision: 1/upsample_factor px")
    tolerance_px: float = Field(
        1.5, ge=0, description="a field agrees with the plate when its offset is this close (px)"
    )


def edge_map(image: np.ndarray, *, sigma_px: float = 2.0) -> np.ndarray:
    """Gradient magnitude (Sobel) of the Gaussian-smoothed image, times a Hann window.

    Parameters
    ----------
    image : (H, W) ndarray, any real dtype
    sigma_px : Gaussian sigma in px.

    Returns
    -------
    (H, W) float64 ndarray, bright at cell outlines in both BF (halos) and CS (filled cells).
    """
    from skimage.filters import sobel, window

    if image.ndim != 2:
        raise ValueError(f"`image` must be 2-D (H, W), got shape {image.shape}")
    smooth = ndi.gaussian_filter(np.asarray(image, dtype=np.float64), sigma_px)
    return sobel(smooth) * window("hann", image.shape)


def estimate_offset(
    bf: np.ndarray, cs: np.ndarray, *, sigma_px: float = 2.0, upsample_factor: int = 20
) -> tuple[float, float, float]:
    """The shift (dy_px, dx_px) to apply to ``bf`` to align it with ``cs``, and the correlation error.

    Parameters
    ----------
    bf, cs : (H, W) ndarray, the brightfield and counterstain images of one field and frame.
    sigma_px : Gaussian sigma (px) of :func:`edge_map`.
    upsample_factor : sub-pixel precision 1/upsample_factor px.

    Returns
    -------
    (dy_px, dx_px, error): ``scipy.ndimage.shift(bf, (dy_px, dx_px))`` lies on ``cs``; ``error`` is
    skimage's translation-invariant normalised RMS error (0 = perfect match).
    """
    from skimage.registration import phase_cross_correlation

    if bf.shape != cs.shape:
        raise ValueError(f"`bf` (shape {bf.shape}) must have the same shape as `cs` (shape {cs.shape})")
    shift, error, _ = phase_cross_correlation(
        edge_map(cs, sigma_px=sigma_px),
        edge_map(bf, sigma_px=sigma_px),
        upsample_factor=upsample_factor,
        normalization=None,
    )
    return float(shift[0]), float(shift[1]), float(error)


def register_field(task: dict[str, Any]) -> dict[str, Any]:
    """One field's offset (median over its frames); a picklable unit of work for the Executor.

    ``task`` holds plate, well, field, ``paths`` (list of (bf_path, cs_path), one per frame), sigma_px
    and upsample_factor. Returns the field's row without the plate columns.
    """
    from lnpstore.instrument.stackio import read_image

    estimates = []
    for bf_path, cs_path in task["paths"]:
        bf = read_image(bf_path)
        cs = read_image(cs_path)
        estimates.append(
            estimate_offset(bf, cs, sigma_px=task["sigma_px"], upsample_factor=task["upsample_factor"])
        )
    arr = np.asarray(estimates, dtype=np.float64)
    dy, dx, err = np.median(arr, axis=0)
    return {
        "plate": task["plate"],
        "well": task["well"],
        "field": task["field"],
        "field_dy_px": float(dy),
        "field_dx_px": float(dx),
        "error": float(err),
    }


def plate_offset(field_dy_px: Sequence[float], field_dx_px: Sequence[float]) -> tuple[float, float]:
    """The plate's offset: the median of the fields' offsets (robust to a few failed fields)."""
    if len(field_dy_px) == 0:
        raise RegistrationError("no field offsets to combine")
    return float(np.median(field_dy_px)), float(np.median(field_dx_px))


def _pixel_size_um(store: Store, plate: str) -> float:
    plates = store.read("plates", plate=plate)
    if plates.height == 0:
        raise RegistrationError(
            f"plate {plate!r} is not in the store's `plates` table. Hint: run `lnpstore ingest` for it first"
        )
    return float(plates["pixel_size_um"][0])


def _field_paths(
    store: Store, plate: str, frames: Iterable[int]
) -> dict[tuple[str, int], list[tuple[str, str]]]:
    """(well, field) -> [(bf_path, cs_path) per frame], over wells not excluded and frames with both ok."""
    frames = sorted(set(int(f) for f in frames))
    images = (
        store.table("images", plate=plate)
        .filter(
            pl.col("channel").is_in(["BF", "CS"]) & pl.col("frame").is_in(frames) & (pl.col("status") == "ok")
        )
        .select("well", "field", "frame", "channel", "path")
        .collect()
    )
    if images.height == 0:
        raise RegistrationError(
            f"plate {plate!r}: no readable BF/CS images for frame(s) {frames}. "
            'Hint: check `lnpstore sql "SELECT status, count(*) FROM images GROUP BY status"`'
        )
    excluded = store.read("wells", plate=plate).filter(pl.col("excluded")).get_column("well").to_list()
    wide = images.pivot(on="channel", index=["well", "field", "frame"], values="path")
    if "BF" not in wide.columns or "CS" not in wide.columns:
        raise RegistrationError(f"plate {plate!r}: need both BF and CS images of frame(s) {frames}")
    wide = (
        wide.drop_nulls(["BF", "CS"]).filter(~pl.col("well").is_in(excluded)).sort("well", "field", "frame")
    )
    out: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for row in wide.iter_rows(named=True):
        out.setdefault((row["well"], int(row["field"])), []).append((row["BF"], row["CS"]))
    return out


def register_plate(
    store: Store,
    plate: str,
    *,
    settings: RegistrationSettings | None = None,
    executor: Executor | None = None,
    overwrite: bool = False,
) -> pl.DataFrame:
    """Estimate the BF offset of every field of ``plate`` and write table ``registration``.

    Resumable: when the plate already has rows and ``overwrite`` is False, they are returned unchanged.
    Returns the plate's ``registration`` rows (plate offset in ``dy_px, dx_px``, each field's own in
    ``field_dy_px, field_dx_px``).
    """
    settings = settings or RegistrationSettings()
    if not overwrite and store.exists("registration", plate=plate):
        log.info("plate %s: registration already in the store, skipped", plate)
        return store.read("registration", plate=plate)
    geom = geometry_for(_pixel_size_um(store, plate))
    sigma_px = settings.smooth_ref_px * geom.scale
    paths = _field_paths(store, plate, settings.frames)
    if not paths:
        raise RegistrationError(
            f"plate {plate!r}: every well is excluded or lacks BF/CS images; nothing to register"
        )
    tasks = [
        {
            "plate": plate,
            "well": well,
            "field": field_,
            "paths": p,
            "sigma_px": sigma_px,
            "upsample_factor": settings.upsample_factor,
        }
        for (well, field_), p in sorted(paths.items())
    ]
    rows = parallel_map(register_field, tasks, desc=f"register {plate}", executor=executor)
    df = pl.DataFrame(rows)
    dy, dx = plate_offset(df["field_dy_px"].to_list(), df["field_dx_px"].to_list())
    dist = ((pl.col("field_dy_px") - dy) ** 2 + (pl.col("field_dx_px") - dx) ** 2).sqrt()
    df = df.with_columns(
        pl.lit(dy).alias("dy_px"),
        pl.lit(dx).alias("dx_px"),
        (dist <= settings.tolerance_px).alias("agrees_with_plate"),
    ).select(
        "plate", "well", "field", "dy_px", "dx_px", "field_dy_px", "field_dx_px", "error", "agrees_with_plate"
    )
    n_bad = df.height - int(df["agrees_with_plate"].sum())
    if n_bad:
        bad = df.filter(~pl.col("agrees_with_plate")).select("well", "field").rows()[:5]
        log.warning(
            "plate %s: %d of %d field(s) disagree with the plate offset (%.2f, %.2f) px by more than %.1f px, "
            "e.g. (well, field) %s; the plate offset is used for them too",
            plate,
            n_bad,
            df.height,
            dy,
            dx,
            settings.tolerance_px,
            bad,
        )
    log.info("plate %s: BF offset (dy, dx) = (%.2f, %.2f) px over %d fields", plate, dy, dx, df.height)
    store.write("registration", df, mode="replace")
    return store.read("registration", plate=plate)


def plate_registration(store: Store, plate: str) -> tuple[float, float]:
    """The stored plate offset (dy_px, dx_px) to apply to BF; a clear error when it is missing."""
    reg = store.read("registration", plate=plate)
    if reg.height == 0:
        raise RegistrationError(
            f"plate {plate!r} has no rows in `registration`. Hint: run register_plate(store, {plate!r}) "
            "or `lnpstore crop STORE --plate ...`, which registers first"
        )
    return float(reg["dy_px"][0]), float(reg["dx_px"][0])
