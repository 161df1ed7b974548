"""The window watershed of one cell: its window, markers, elevation and region (pixel units throughout).

A cell is segmented only inside a window centred on its previous centre. The markers are the cell's own
core (label 1), the window border (label 2, the outside; not where the window meets the image's edge)
and the cores of every other live cell that reaches into the window (labels 3, 4, ...). scikit-image's
``watershed`` floods the elevation from them inside the frame's foreground.
"""

from __future__ import annotations

import math

import numpy as np

OWN, OUTSIDE, FIRST_NEIGHBOUR = 1, 2, 3  # marker labels

#: A mask placed in frame coordinates: (bool mask, top row, left column).
Placed = tuple[np.ndarray, int, int]


def iou(a: np.ndarray, ay: int, ax: int, b: np.ndarray, by: int, bx: int) -> float:
    """Intersection over union of two boolean masks placed at (ay, ax) and (by, bx) in one frame."""
    y0, x0 = max(ay, by), max(ax, bx)
    y1, x1 = min(ay + a.shape[0], by + b.shape[0]), min(ax + a.shape[1], bx + b.shape[1])
    inter = 0
    if y1 > y0 and x1 > x0:
        inter = int(
            np.count_nonzero(
                a[y0 - ay : y1 - ay, x0 - ax : x1 - ax] & b[y0 - by : y1 - by, x0 - bx : x1 - bx]
            )
        )
    union = int(a.sum()) + int(b.sum()) - inter
    return inter / union if union else 0.0


def paint_mask(target: np.ndarray, mask: np.ndarray, y0: int, x0: int, value) -> bool:
    """Set ``target[y0:, x0:][mask] = value`` where they overlap; whether anything was painted."""
    ty0, tx0 = max(0, y0), max(0, x0)
    ty1, tx1 = min(target.shape[0], y0 + mask.shape[0]), min(target.shape[1], x0 + mask.shape[1])
    if ty1 <= ty0 or tx1 <= tx0:
        return False
    sub = mask[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0]
    if not sub.any():
        return False
    target[ty0:ty1, tx0:tx1][sub] = value
    return True


def crop_to_box(region: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``region`` (bool, at least one pixel set) cut to its bounding box, with the box's row and column."""
    rows, cols = np.nonzero(region)
    ry0, rx0 = int(rows.min()), int(cols.min())
    return region[ry0 : rows.max() + 1, rx0 : cols.max() + 1], ry0, rx0


def half_window(half_px: int, cy: int, cx: int, previous: Placed | None, margin_px: float) -> tuple[int, int]:
    """Half the window's height and width in px: ``half_px``, grown where needed so that the cell's
    ``previous`` region plus a frame's largest motion (``margin_px``) fits inside it.

    Why: a cell nearly as large as the window (HepG2 spread to 25 um in a 32.5 um window) touches the
    window's edge, and the outside marker placed there floods part of the cell itself."""
    hy = hx = half_px
    if previous is not None:
        mask, my0, mx0 = previous
        margin = int(math.ceil(margin_px))
        my1, mx1 = my0 + mask.shape[0], mx0 + mask.shape[1]
        hy = max(hy, max(cy - my0, my1 - cy) + margin)
        hx = max(hx, max(cx - mx0, mx1 - cx) + margin)
    return hy, hx


def window_box(
    cy: int, cx: int, hy: int, hx: int, shape: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of the window around (cy, cx) clipped to the image; None when under 3 px wide."""
    h, w = shape
    y0, y1 = max(0, cy - hy), min(h, cy + hy)
    x0, x1 = max(0, cx - hx), min(w, cx + hx)
    if y1 - y0 < 3 or x1 - x0 < 3:
        return None
    return y0, y1, x0, x1


def window_markers(
    box: tuple[int, int, int, int], shape: tuple[int, int], neighbours: list[Placed]
) -> np.ndarray:
    """The outside marker (the window border, except where it is the image's edge: a cell cut by the
    image edge is still one cell) and the neighbours' cores (3, 4, ... in the order given, a label only
    for a core that reaches into the window)."""
    y0, y1, x0, x1 = box
    h, w = shape
    markers = np.zeros((y1 - y0, x1 - x0), np.int32)
    if y0 > 0:
        markers[0, :] = OUTSIDE
    if y1 < h:
        markers[-1, :] = OUTSIDE
    if x0 > 0:
        markers[:, 0] = OUTSIDE
    if x1 < w:
        markers[:, -1] = OUTSIDE
    label = FIRST_NEIGHBOUR
    for core, ry, rx in neighbours:
        if paint_mask(markers, core, ry - y0, rx - x0, label):
            label += 1
    return markers


def nearest_foreground(win: np.ndarray, yx: tuple[float, float], radius_px: int) -> np.ndarray | None:
    """The pixel ``yx`` of ``win`` when it is foreground, else the nearest foreground pixel within
    ``radius_px``; None when there is none."""
    iy, ix = int(round(yx[0])), int(round(yx[1]))
    iy, ix = min(max(iy, 0), win.shape[0] - 1), min(max(ix, 0), win.shape[1] - 1)
    if win[iy, ix]:
        return np.array([iy, ix])
    r = radius_px
    ys, xs = slice(max(0, iy - r), iy + r + 1), slice(max(0, ix - r), ix + r + 1)
    pts = np.argwhere(win[ys, xs])
    if len(pts) == 0:
        return None
    pts = pts + (ys.start, xs.start)
    return pts[np.argmin(((pts - (iy, ix)) ** 2).sum(1))]


def elevation(
    win: np.ndarray, smoothed_win: np.ndarray, threshold: float, kind: str, disc_marker: bool
) -> np.ndarray:
    """The watershed's elevation in the window: "intensity" (the negative smoothed intensity above the
    foreground threshold, scaled to 0..1), "distance" (the foreground's negative distance transform) or
    "both" (their sum, the distance scaled to 0..1).

    A cell with no previous region (frame 1, or a lost core) has a small disc marker at its centre,
    which lies in the dim nucleus of a cytoplasm stain: on the intensity its flood would stay in the
    nucleus while the neighbours' floods take the cytoplasm around it. Its region is found as the seeds
    were, on the distance transform alone (its peak is at the cell's centre)."""
    from scipy import ndimage as ndi

    elev = None
    if kind != "intensity" or disc_marker:  # the intensity elevation needs no distance transform
        dist = ndi.distance_transform_edt(win).astype(np.float32)
        elev = -dist if kind == "distance" or disc_marker else -dist / max(float(dist.max()), 1e-6)
    if kind != "distance" and not disc_marker:
        sm = smoothed_win
        inten = (sm - threshold) / max(float(sm[win].max() - threshold), 1e-6) if win.any() else sm * 0
        elev = -inten if elev is None else elev - inten
    assert elev is not None  # every kind sets it above
    return elev
