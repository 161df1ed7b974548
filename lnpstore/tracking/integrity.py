"""The tracks/labels invariant, kept by the tracker and checked on every frame it writes.

In every frame:

* every node with a region (not ``gap_filled``) has its ``label_id`` in the frame's label image;
* every label in the image belongs to exactly one node (one region is never claimed by two tracks);
* every label is one connected region (8-connectivity).

The tracker keeps it (:func:`keep_largest_pieces`, and a region mostly painted by another track is no
node of its own); :func:`check_frame` raises a :class:`TrackingError` naming the track and frame when it
does not hold, so an export never finds out first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from lnpstore.store.errors import TrackingError

EIGHT = np.ones((3, 3), bool)  # 8-connectivity


def label_pieces(labels: np.ndarray) -> dict[int, int]:
    """Per label value in ``labels``, how many connected pieces (8-connectivity) it has."""
    from skimage.measure import label as connected

    pieces = connected(labels, background=0, connectivity=2)  # equal-valued connected regions
    if not pieces.any():
        return {}
    # each piece's original label value: any pixel of the piece carries it
    idx = np.unique(pieces[pieces > 0], return_index=True)[1]
    values = labels[pieces > 0][idx]
    vals, counts = np.unique(values, return_counts=True)
    return dict(zip(vals.tolist(), counts.tolist(), strict=True))


def keep_largest_pieces(labels: np.ndarray) -> int:
    """Set to 0, in place, every piece of a label but its largest; returns the pixels removed.

    A label falls into pieces where an earlier track's region was painted across it (first come, first
    served) or where its watershed region is two parts that are not a division."""
    from scipy import ndimage as ndi

    split = [v for v, n in label_pieces(labels).items() if n > 1]
    removed = 0
    for v in split:
        own = labels == v
        comp, n = ndi.label(own, structure=EIGHT)
        sizes = np.bincount(comp.ravel(), minlength=n + 1)
        sizes[0] = 0
        drop = own & (comp != int(np.argmax(sizes)))
        removed += int(drop.sum())
        labels[drop] = 0
    return removed


def check_frame(frame: int, nodes: Iterable[tuple[int, int | None, bool]], labels: np.ndarray) -> None:
    """Raise :class:`TrackingError` unless the invariant holds in this frame.

    ``nodes``: (track_id, label_id, gap_filled) of every node in the frame."""
    present = set(np.unique(labels[labels > 0]).tolist())
    owner: dict[int, int] = {}
    for track_id, label_id, gap in nodes:
        if gap:
            continue
        if label_id is None or label_id not in present:
            raise TrackingError(
                f"frame {frame}: track {track_id}'s label {label_id} is not in the frame's label image "
                "(its region was claimed by another track). This is a bug in the tracker: please report it"
            )
        if label_id in owner:
            raise TrackingError(
                f"frame {frame}: tracks {owner[label_id]} and {track_id} both claim label {label_id}"
            )
        owner[label_id] = track_id
    orphans = sorted(present - set(owner))
    if orphans:
        raise TrackingError(f"frame {frame}: label(s) {orphans[:5]} belong to no track's node")
    split = {v: n for v, n in label_pieces(labels).items() if n > 1}
    if split:
        v, n = next(iter(split.items()))
        raise TrackingError(
            f"frame {frame}: track {owner.get(v, v)}'s label {v} is {n} separate regions (one expected)"
        )


def check_tracks(tracks: pl.DataFrame, labels: Sequence[np.ndarray]) -> None:
    """Check the invariant on a whole result: ``tracks`` (track_id, frame 1-based, label_id, gap_filled)
    and its label movie (frame 1 first)."""
    gap = pl.col("gap_filled").fill_null(False) if "gap_filled" in tracks.columns else pl.lit(False)
    by_frame = {
        int(f[0]): g for f, g in tracks.with_columns(gap.alias("_gap")).group_by("frame", maintain_order=True)
    }
    for i, lab in enumerate(labels, start=1):
        g = by_frame.get(i)
        rows = [] if g is None else g.select("track_id", "label_id", "_gap").iter_rows()
        check_frame(i, rows, np.asarray(lab))
