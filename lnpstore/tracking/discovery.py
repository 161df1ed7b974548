"""Where new cells can be: foreground the known cells do not explain, and blobs no track covers (px).

Cells enter the field, or were never seeded; the tracker gives each such cell a marker (a silent
competitor, or a track of its own with ``report_new_cells``) so a tracked cell's region cannot swallow
it. These functions only find the places; :class:`lnpstore.tracking.field.FieldTracker` makes the cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lnpstore.tracking.segmentation import Placed


def unexplained_blobs(
    fg: np.ndarray, known: Sequence[tuple[float, float, float]], slack_px: float
) -> tuple[np.ndarray, int, int] | None:
    """The foreground blobs larger than the known cells inside them explain: a blob with no known cell,
    or a cluster that a new cell joined.

    ``known``: per live cell its predicted centre (y_px, x_px) and its recent median area in px (inf
    when it has none yet); a blob is unexplained when its area exceeds 1.25 times the areas of the known
    cells whose centres lie in it plus ``slack_px``. Returns (mask of those blobs, row, column) cropped
    to their bounding box with a one-pixel background margin (so the distance transform is the one on
    the whole field), or None when every blob is explained."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(fg)
    if n == 0:
        return None
    area = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
    explained = np.zeros(n + 1)
    h, w = fg.shape
    for py, px_, median_area in known:
        iy, ix = min(max(int(round(py)), 0), h - 1), min(max(int(round(px_)), 0), w - 1)
        j = lab[iy, ix]
        if j:
            explained[j] += median_area
    ids = np.flatnonzero(area > 1.25 * explained + slack_px)
    ids = ids[ids > 0]
    if not len(ids):
        return None
    sel = np.isin(lab, ids)
    rows, cols = np.nonzero(sel.any(1))[0], np.nonzero(sel.any(0))[0]
    y0, y1 = max(0, int(rows[0]) - 1), min(h, int(rows[-1]) + 2)
    x0, x1 = max(0, int(cols[0]) - 1), min(w, int(cols[-1]) + 2)
    return sel[y0:y1, x0:x1], y0, x0


def leftover_blobs(
    fg: np.ndarray, labels: np.ndarray, competitors: Sequence[Placed], min_area_px: float
) -> list[Placed]:
    """Foreground blobs that no reported track's label (``labels`` > 0) and no silent competitor's region
    touches, and that hold at least ``min_area_px``: cells the seeding detector misses (mostly cells cut
    by the image's edge, too thin for a distance-transform peak). Each as (mask, row, column) of its
    bounding box, in label order."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(fg)
    if n == 0:
        return []
    taken = np.zeros(n + 1, bool)
    taken[np.unique(lab[labels > 0])] = True
    for mask, my0, mx0 in competitors:
        sub = lab[my0 : my0 + mask.shape[0], mx0 : mx0 + mask.shape[1]]
        taken[np.unique(sub[mask[: sub.shape[0], : sub.shape[1]]])] = True
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    out = []
    for j, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None or taken[j] or sizes[j] < min_area_px:
            continue
        out.append((lab[sl] == j, sl[0].start, sl[1].start))
    return out
