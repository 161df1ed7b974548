"""Cells of one frame of a real microscope image: a label image found at an expected cell size.

Built for images the simulator does not make: uneven illumination, dim cells next to bright ones, and
noise that is large against a dim cell's signal. Per frame (pixel units inside, um in the settings):

1. background: a low percentile of the image in windows of a few cell diameters (computed on a
   block-averaged copy and interpolated back), subtracted;
2. smoothing at the cell's scale (Gaussian, ``smoothing_fraction`` of the diameter), and the noise of the
   smoothed image from the pixel noise (a robust MAD of neighbour differences);
3. foreground: the smoothed image above ``threshold_snr`` times that noise: a dim cell whose pixels
   barely clear the noise is found because smoothing over its area lifts it far above it;
4. cells: a watershed of the smoothed distance transform from its h-maxima (``split_depth_fraction``
   of the cell radius: two touching nuclei meet at a waist, an elongated cell keeps one ridge);
5. each cell trimmed to where it is at least ``edge_fraction`` of its own peak (bright cells lose the
   halo of the blur, dim ones keep their pixels), then fragments smaller than ``min_area_fraction`` of a
   cell's area merged into the neighbour they touch most, or dropped.

:func:`estimate_cell_diameter_um` gives the diameter from a frame when it is not known.
scikit-image and scipy do every filter; what no library does is the composition, and the per-cell
trimming and fragment merging (steps 5).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from lnpstore.runtime.settings import Field, Settings, settings
from lnpstore.store.errors import TrackingError


@settings
class DetectSettings(Settings):
    """Per-frame detection of cells in a real image (see :mod:`lnpstore.tracking.detection`)."""

    cell_diameter_um: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="expected cell diameter; None: estimated from frame 1"
    )
    background_diameters: float = Field(
        4.0, gt=0, allow_inf_nan=False, description="background window, in cell diameters"
    )
    background_percentile: float = Field(
        10.0, ge=0, le=100, description="the background is this percentile of the image in its window"
    )
    smoothing_fraction: float = Field(
        0.08, gt=0, le=1, description="Gaussian sigma of the smoothing, as a fraction of the diameter"
    )
    threshold_snr: float = Field(
        5.0, gt=0, allow_inf_nan=False, description="foreground: smoothed signal above this times its noise"
    )
    split_depth_fraction: float = Field(
        0.15,
        ge=0,
        le=1,
        description="touching cells are split where the distance transform dips by this fraction of a "
        "cell's radius between two maxima",
    )
    edge_fraction: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="a cell's pixels are those at least this fraction of its own peak (0: all)",
    )
    markers: Literal["log", "distance"] = Field(
        "distance",
        description="log: one cell per blob of the cell's size (Laplacian of Gaussian; round cells, nuclei); "
        "distance: cells split at waists of the foreground (irregular, elongated cells)",
    )
    min_area_fraction: float = Field(
        0.15, ge=0, le=1, description="fragments below this fraction of a cell's area are merged or dropped"
    )


def _block_mean(img: np.ndarray, f: int) -> np.ndarray:
    """Means of f x f blocks (the image cropped to whole blocks: no zero padding at the edges)."""
    if f <= 1:
        return img
    h, w = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    return img[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def background(img: np.ndarray, window_px: float, percentile: float) -> np.ndarray:
    """A smooth background surface over windows of ``window_px``: a first guess (the ``percentile`` of
    the block-averaged image in each window), then, three times, on the pixels not brighter than the
    estimate by three times the background's spread: a cubic surface fitted to them (the illumination,
    without a window's bias at the image's edges) plus their local mean left over (normalized
    convolution). Cells do not lift it; noise or a gradient does not sink it below the true level."""
    from scipy import ndimage as ndi
    from skimage.transform import resize

    f = max(1, int(window_px // 24))  # about 24 block-averaged px per window
    small = _block_mean(img, f)
    size = max(3, int(round(window_px / f)) | 1)
    bg = ndi.uniform_filter(ndi.percentile_filter(small, percentile, size=size, mode="reflect"), size)
    yy, xx = np.mgrid[-1 : 1 : small.shape[0] * 1j, -1 : 1 : small.shape[1] * 1j]
    basis = np.stack([yy**i * xx**j for i in range(4) for j in range(4 - i)], -1).reshape(-1, 10)
    for _ in range(3):
        r = small - bg
        spread = max(float(np.median(r) - np.percentile(r, 15.87)), 1e-6)  # lower half: background
        w = ndi.binary_erosion(r <= 3.0 * spread, np.ones((3, 3), bool), border_value=1)
        if w.sum() < 20:
            break
        # the illumination: a cubic surface fitted to the background pixels (no edge bias) ...
        coef, *_ = np.linalg.lstsq(basis[w.ravel()], small[w], rcond=None)
        surface = (basis @ coef).reshape(small.shape)
        # ... plus the local mean of what the surface leaves on them (normalized convolution)
        wf = w.astype(np.float64)
        num = ndi.uniform_filter((small - surface) * wf, size=size, mode="nearest")
        den = ndi.uniform_filter(wf, size=size, mode="nearest")
        bg = surface + np.where(den > 0.05, num / np.maximum(den, 1e-9), 0.0)
    return resize(bg, img.shape, order=1, mode="edge", anti_aliasing=False) if f > 1 else bg


def pixel_noise(img: np.ndarray) -> float:
    """The pixel noise's standard deviation: a robust MAD of horizontal neighbour differences / sqrt(2)."""
    d = np.diff(img[:, ::1], axis=1).ravel()
    mad = float(np.median(np.abs(d - np.median(d))))
    return max(1.4826 * mad / math.sqrt(2.0), 1e-6)


def estimate_cell_diameter_um(image: np.ndarray, pixel_size_um: float) -> float:
    """A cell's typical diameter in a frame: the median equivalent diameter of the foreground's objects
    on a block-averaged copy (long side ~256 px), thresholded with Otsu after removing the background."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    img = np.asarray(image, np.float64)
    f = max(1, int(math.ceil(max(img.shape) / 256)))
    small = ndi.gaussian_filter(_block_mean(img, f), 1.0)
    small = small - background(small, max(small.shape) / 4, 10.0)
    if float(small.max()) <= float(small.min()):
        raise TrackingError(
            "cannot estimate the cell diameter: frame 1 is flat. Hint: give --cell-diameter-um"
        )
    lab, n = ndi.label(small > threshold_otsu(small))
    areas = np.bincount(lab.ravel())[1:]
    areas = areas[areas >= 4]
    if not len(areas):
        raise TrackingError(
            "cannot estimate the cell diameter: no objects in frame 1. Hint: give --cell-diameter-um"
        )
    return float(2.0 * math.sqrt(float(np.median(areas)) / math.pi) * f * pixel_size_um)


def detect_cells(
    image: np.ndarray, *, pixel_size_um: float, settings: DetectSettings, cell_diameter_um: float
) -> np.ndarray:
    """The cells of one frame as a label image (int32, 0 = background, each label one connected region)."""
    from scipy import ndimage as ndi

    s = settings
    img = np.asarray(image, np.float64)
    diam_px = cell_diameter_um / pixel_size_um
    radius_px = diam_px / 2.0
    sigma_px = max(1.0, s.smoothing_fraction * diam_px)
    sig = img - background(img, s.background_diameters * diam_px, s.background_percentile)
    sm = ndi.gaussian_filter(sig, sigma_px)
    noise = pixel_noise(img) / (2.0 * math.sqrt(math.pi) * sigma_px)  # of the smoothed image
    fg = sm > s.threshold_snr * noise
    fg = ndi.binary_fill_holes(fg)
    cell_area = math.pi * radius_px**2
    if s.markers == "log":
        lab = _log_regions(fg, sig, sm, radius_px)
        lab = _trim(lab, sm, s.edge_fraction)
    else:
        objects = _bright_then_dim(fg, sm, s.edge_fraction, radius_px, s.min_area_fraction * cell_area)
        lab = _split(objects, radius_px, s.split_depth_fraction)
    return _merge_fragments(lab, s.min_area_fraction * cell_area)


def _log_regions(fg: np.ndarray, sig: np.ndarray, sm: np.ndarray, radius_px: float) -> np.ndarray:
    """One region per blob of the cell's size: markers at the maxima of the negative Laplacian of
    Gaussian (sigma = radius / sqrt 2, the scale at which a disc of that radius answers most) inside
    the foreground, at least 0.6 radius apart; a watershed of the smoothed intensity from them."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    log = -ndi.gaussian_laplace(sig, radius_px / math.sqrt(2.0))
    comps, _ = ndi.label(fg)
    peaks = peak_local_max(log, min_distance=max(1, int(0.6 * radius_px)), labels=comps, exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    lab = watershed(-sm, markers, mask=fg)
    rest, n = ndi.label(fg & (lab == 0))  # foreground without a marker: whole, for the size rule
    if n:
        lab[rest > 0] = rest[rest > 0] + lab.max()
    return lab.astype(np.int32)


def _trim(lab: np.ndarray, sm: np.ndarray, edge_fraction: float) -> np.ndarray:
    """Each label kept where the smoothed signal is at least ``edge_fraction`` of its own 99th percentile
    (the blur's halo goes); every remaining piece becomes a label of its own."""
    from scipy import ndimage as ndi
    from skimage.measure import label as connected

    if edge_fraction <= 0 or not lab.any():
        return lab
    ids = np.arange(1, int(lab.max()) + 1)
    peak = np.zeros(len(ids) + 1)
    peak[1:] = ndi.labeled_comprehension(sm, lab, ids, lambda v: np.percentile(v, 99), float, 0.0)
    out = np.where(sm >= edge_fraction * peak[lab], lab, 0)
    return connected(out, background=0, connectivity=1).astype(np.int32)


def _split(fg: np.ndarray, radius_px: float, depth_fraction: float) -> np.ndarray:
    """Touching cells apart: watershed of the distance transform from its h-maxima."""
    from scipy import ndimage as ndi
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    dist = ndi.distance_transform_edt(fg)
    dist = ndi.gaussian_filter(dist, max(1.0, 0.1 * radius_px))
    h = max(depth_fraction * radius_px, 0.5)
    peaks = h_maxima(dist, h) & fg
    markers, _ = ndi.label(peaks)
    lab = watershed(-dist, markers, mask=fg)
    # blobs without a maximum (too thin or small for one) stay whole
    rest, n = ndi.label(fg & (lab == 0))
    if n:
        lab[rest > 0] = rest[rest > 0] + lab.max()
    return lab.astype(np.int32)


def _bright_then_dim(
    fg: np.ndarray,
    sm: np.ndarray,
    edge_fraction: float,
    radius_px: float,
    min_area_px: float,
    rounds: int = 3,
) -> np.ndarray:
    """The foreground's objects, each trimmed to where the signal is at least ``edge_fraction`` of its
    own peak (the 99th percentile of its blob): bright cells lose the blur's halo that joins them to
    their neighbours. What the trimming left, away from the objects kept (half a radius), is searched
    again for dimmer cells, ``rounds`` times. Returns a boolean mask of the objects."""
    from scipy import ndimage as ndi

    kept = np.zeros(fg.shape, bool)
    todo = fg.copy()
    disc = _disc(max(1, int(round(radius_px / 2))))
    for _ in range(rounds):
        lab, n = ndi.label(todo)
        if n == 0:
            break
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        ids = np.flatnonzero(sizes >= min_area_px)
        ids = ids[ids > 0]
        if not len(ids):
            break
        peak = np.zeros(n + 1)
        peak[ids] = ndi.labeled_comprehension(sm, lab, ids, lambda v: np.percentile(v, 99), float, 0.0)
        found = todo & (peak[lab] > 0) & (sm >= edge_fraction * peak[lab])
        kept |= found
        todo &= ~ndi.binary_dilation(found, disc) & (peak[lab] > 0)
    return ndi.binary_fill_holes(kept)


def _disc(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return yy**2 + xx**2 <= r**2


def _merge_fragments(lab: np.ndarray, min_area_px: float) -> np.ndarray:
    """Labels in one piece each (largest piece kept), fragments below ``min_area_px`` merged into the
    touching label they share the longest border with, or dropped; labels renumbered 1..n."""
    from scipy import ndimage as ndi
    from skimage.segmentation import relabel_sequential

    from lnpstore.tracking.integrity import keep_largest_pieces

    keep_largest_pieces(lab)
    sizes = np.bincount(lab.ravel())
    small = [int(v) for v in np.flatnonzero(sizes) if v > 0 and sizes[v] < min_area_px]
    objs = ndi.find_objects(lab)
    for v in sorted(small, key=lambda v: sizes[v]):
        sl = objs[v - 1]
        if sl is None:
            continue
        sl = tuple(slice(max(0, a.start - 1), a.stop + 1) for a in sl)
        sub = lab[sl]
        own = sub == v
        ring = ndi.binary_dilation(own, np.ones((3, 3), bool)) & ~own & (sub > 0)
        if ring.any():
            nb = np.bincount(sub[ring]).argmax()
            sub[own] = nb
        else:
            sub[own] = 0
    return relabel_sequential(lab)[0].astype(np.int32)
