"""LNP spot counting inside a cell region.

Method (documented so numbers can be compared across plates): a white top-hat with a disc of radius
``background_radius_um`` removes the smooth cytoplasmic background; the top-hat image is smoothed
with a Gaussian of sigma ``spot_sigma_um`` (matched filter for a diffraction-limited spot); a spot is
a local maximum (``skimage.feature.peak_local_max``, at least ``2 * spot_sigma_um`` apart) inside the
cell region whose top-hat value exceeds ``median + k * MAD`` of the top-hat values in the window,
and at least ``min_prominence`` counts. All lengths scale with the pixel size.
"""

from __future__ import annotations

import numpy as np

from lnpstore.runtime.settings import Field, Settings, settings


@settings
class SpotSettings(Settings):
    """LNP spot detection; lengths in um, intensities in counts."""

    spot_sigma_um: float = Field(
        0.3, gt=0, allow_inf_nan=False, description="Gaussian sigma of the matched filter (a spot's size)"
    )
    background_radius_um: float = Field(
        1.5,
        gt=0,
        allow_inf_nan=False,
        description="radius of the white top-hat's disc (removes the background)",
    )
    mad_k: float = Field(
        6.0,
        ge=0,
        allow_inf_nan=False,
        description="a spot exceeds median + mad_k * MAD of the window's top-hat",
    )
    min_prominence: float = Field(
        20.0, ge=0, allow_inf_nan=False, description="a spot's smallest top-hat value, in counts"
    )


def count_spots(
    lnp: np.ndarray, region: np.ndarray, *, pixel_size_um: float, settings: SpotSettings | None = None
) -> int:
    """Number of LNP spots inside ``region`` (see :func:`spot_measures`)."""
    return spot_measures(lnp, region, pixel_size_um=pixel_size_um, settings=settings)[0]


def spot_measures(
    lnp: np.ndarray, region: np.ndarray, *, pixel_size_um: float, settings: SpotSettings | None = None
) -> tuple[int, float | None]:
    """Number of LNP spots inside ``region``, and how deep in the cell their signal sits.

    The depth (``lnp_radial_frac``) is the spot signal's mean distance from the region's centroid in
    equivalent radii (sqrt(area / pi)): each pixel of the region weighted by how far its smoothed
    top-hat exceeds the spot threshold (only spot light counts, not the background or noise). It falls
    as particles travel to the perinuclear region (~0.3) from the membrane (~0.9). One number where
    CellProfiler's MeasureObjectIntensityDistribution bins the same distances into rings. None when no
    pixel exceeds the threshold.

    Parameters
    ----------
    lnp : (H, W) ndarray
        LNP channel of a window around the cell (counts).
    region : (H, W) bool ndarray
        The cell's pixels in the same window.
    pixel_size_um : float
        Pixel edge length in um.
    """
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.morphology import disk, white_tophat

    s = settings or SpotSettings()
    if lnp.shape != region.shape:
        raise ValueError(f"`region` (shape {region.shape}) must have the shape of `lnp` (shape {lnp.shape})")
    if not region.any():
        return 0, None
    # Only the region's bounding box (plus the background radius) is filtered: cheaper than the window.
    r_px = max(1, int(round(s.background_radius_um / pixel_size_um)))
    rows, cols = np.nonzero(region)
    y0, y1 = max(0, rows.min() - r_px), min(lnp.shape[0], rows.max() + r_px + 1)
    x0, x1 = max(0, cols.min() - r_px), min(lnp.shape[1], cols.max() + r_px + 1)
    img = lnp[y0:y1, x0:x1].astype(np.float32)
    reg = region[y0:y1, x0:x1]
    th = white_tophat(img, disk(r_px))
    sigma_px = s.spot_sigma_um / pixel_size_um
    th = ndi.gaussian_filter(th, sigma_px)
    med = float(np.median(th))
    mad = float(np.median(np.abs(th - med))) * 1.4826
    thr = max(med + s.mad_k * mad, s.min_prominence)
    peaks = peak_local_max(
        th,
        min_distance=max(1, int(round(2 * sigma_px))),
        threshold_abs=thr,
        labels=reg.astype(np.uint8),
        exclude_border=False,
    )
    weight = np.where(reg, np.clip(th - thr, 0.0, None), 0.0)
    total = float(weight.sum())
    if total <= 0.0:
        return int(len(peaks)), None
    # the region's centroid and area from its pixels found above (bounding-box coordinates)
    cy, cx = rows.mean() - y0, cols.mean() - x0
    gy, gx = np.indices(reg.shape)
    dist = np.hypot(gy - cy, gx - cx)
    radius = np.sqrt(len(rows) / np.pi)
    return int(len(peaks)), float((weight * dist).sum() / total / radius)
