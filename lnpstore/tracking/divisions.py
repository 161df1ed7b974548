"""Division tests: whether a cell's watershed region in this frame is two daughters (pixel units).

A division is found in one of three ways, each requiring every daughter to hold
``division_min_fraction`` of the mother's previous area:

* the cell's own region falls apart into two parts on separate foreground blobs;
* the cell went through a mitotic round-up just before (:func:`rounded_up`) and its region is two
  blobs joined by a waist (:func:`two_blobs`);
* its marker reached one daughter while the other is foreground left unmarked (or taken by the
  window's outside marker) that lies mostly on the mother's previous region, and the mother's region
  shrank to match.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lnpstore.tracking.seeding import SeedSettings
from lnpstore.tracking.segmentation import OUTSIDE, Placed, paint_mask
from lnpstore.tracking.settings import ROUND_UP_AREA, ROUND_UP_FRAMES


def division_parts(
    lab: np.ndarray,
    region: np.ndarray,
    win: np.ndarray,
    origin: tuple[int, int],
    previous: Placed | None,
    prev_area_px: float,
    areas_px: Sequence[float],
    *,
    min_fraction: float,
    min_area_px: float,
    seeds: SeedSettings,
    pixel_size_um: float,
) -> list[np.ndarray] | None:
    """The two daughters' masks (in window coordinates) when the cell divided in this frame, else None.

    ``lab``: the window's watershed labels; ``region``: the cell's (``lab == 1``); ``win``: the window's
    foreground at ``origin`` (row, column) in the frame; ``previous``: the cell's previous region, of
    ``prev_area_px``; ``areas_px``: its areas so far."""
    from scipy import ndimage as ndi

    prev_area = float(prev_area_px or 0.0)
    min_part = max(min_area_px, min_fraction * prev_area)
    comp, n = ndi.label(region)
    if n >= 2:
        sizes = np.bincount(comp.ravel())[1:]
        order = np.argsort(sizes)[::-1]
        a, b = comp == order[0] + 1, comp == order[1] + 1
        if sizes[order[1]] < min_part:
            return None
        fg_parts, _ = ndi.label(win)  # daughters must lie on separate foreground blobs (a gap between)
        return None if np.isin(fg_parts[a], fg_parts[b]).any() else [a, b]
    if rounded_up(areas_px):
        two = two_blobs(region, min_part, seeds, pixel_size_um)
        if two is not None:
            return two
    if previous is None or np.count_nonzero(region) > (1 - min_fraction) * prev_area:
        return None
    return _unmarked_daughter(lab, region, win, origin, previous, min_part)


def _unmarked_daughter(
    lab: np.ndarray,
    region: np.ndarray,
    win: np.ndarray,
    origin: tuple[int, int],
    previous: Placed,
    min_part: float,
) -> list[np.ndarray] | None:
    """[region, the other daughter] when a foreground part left unmarked (or taken by the outside
    marker), off the cell's own blob and lying mostly on its previous region, holds ``min_part`` px."""
    from scipy import ndimage as ndi

    y0, x0 = origin
    mask, my0, mx0 = previous
    prev = np.zeros(win.shape, bool)
    paint_mask(prev, mask, my0 - y0, mx0 - x0, True)
    fg_parts, _ = ndi.label(win)
    free = win & ((lab == 0) | (lab == OUTSIDE)) & ~np.isin(fg_parts, fg_parts[region])
    comp, n = ndi.label(free)
    if n == 0:
        return None
    sizes = np.bincount(comp.ravel(), minlength=n + 1)
    on_prev = np.bincount(comp[prev].ravel(), minlength=n + 1)
    on_prev[0] = 0
    ok = np.flatnonzero((sizes >= min_part) & (on_prev >= 0.5 * sizes))
    ok = ok[ok > 0]
    if not len(ok):
        return None
    return [region, comp == ok[np.argmax(on_prev[ok])]]


def rounded_up(areas_px: Sequence[float]) -> bool:
    """Whether a cell went through a mitotic round-up just before this frame: in its last
    ``ROUND_UP_FRAMES`` frames its area fell to at most ``ROUND_UP_AREA`` of its median before.
    Cells round up before they divide; without this test an irregular cell with a waist would be
    taken for two daughters."""
    a = areas_px
    k = ROUND_UP_FRAMES
    if len(a) < k + 3:
        return False
    before = float(np.median(a[-(k + 10) : -k]))
    return min(a[-k:]) <= ROUND_UP_AREA * before


def two_blobs(
    region: np.ndarray, min_part: float, seeds: SeedSettings, pixel_size_um: float
) -> list[np.ndarray] | None:
    """``region`` split in two at its two deepest distance-transform peaks when it is two blobs with
    a waist (its solidity below ``seeds.merge_solidity``), each part at least ``min_part`` px."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.measure import regionprops
    from skimage.segmentation import watershed

    rows, cols = np.nonzero(region)
    y0, x0 = int(rows.min()), int(cols.min())
    sub = region[y0 : rows.max() + 1, x0 : cols.max() + 1]
    if regionprops(sub.astype(np.uint8))[0].solidity >= seeds.merge_solidity:
        return None
    dist = ndi.gaussian_filter(ndi.distance_transform_edt(np.pad(sub, 1))[1:-1, 1:-1], 1.0)
    peaks = peak_local_max(
        dist,
        min_distance=max(1, int(round(seeds.min_cell_distance_um / pixel_size_um))),
        threshold_abs=seeds.min_radius_um / pixel_size_um,
        num_peaks=2,
        exclude_border=False,
    )
    if len(peaks) < 2:
        return None
    markers = np.zeros(sub.shape, np.int32)
    markers[peaks[:, 0], peaks[:, 1]] = (1, 2)
    ws = watershed(-dist, markers, mask=sub)
    parts = []
    for k in (1, 2):
        m = np.zeros(region.shape, bool)
        m[y0 : y0 + sub.shape[0], x0 : x0 + sub.shape[1]] = ws == k
        if np.count_nonzero(m) < min_part:
            return None
        parts.append(m)
    return parts
