"""A small synthetic tracked movie with a known division, shared by the CTC, export and scoring tests.

6 frames of 64 x 64 px: disc A (track 1) moves right through every frame; disc B (track 2) moves for
frames 1-3 and divides into C (track 3) and D (track 4), which move apart in frames 4-6. Label ids in
the label images differ from the track ids (``label_id = 7 * track_id + frame``), and frame 2 also
holds an unreported cell (label 99) that no track lists.
"""

from __future__ import annotations

import numpy as np
import polars as pl

N_FRAMES = 6
SHAPE = (64, 64)
PX_UM = 0.65
INTERVAL_MIN = 10.0


def _centre(track: int, frame: int) -> tuple[float, float, float] | None:
    """(y, x, radius) of a track's disc in a frame (1-based), or None when the track is absent."""
    k = frame - 4
    if track == 1:
        return 16.0, 10.0 + 4 * (frame - 1), 5.0
    if track == 2 and frame <= 3:
        return 44.0, 20.0 + 2 * (frame - 1), 6.0
    if track == 3 and frame >= 4:
        return 37.0 - 2 * k, 26.0 + 2 * k, 5.0
    if track == 4 and frame >= 4:
        return 51.0 + 2 * k, 26.0 + 2 * k, 5.0
    return None


PARENT = {1: None, 2: None, 3: 2, 4: 2}
LINEAGE = {1: 1, 2: 2, 3: 2, 4: 2}


def movie() -> tuple[pl.DataFrame, np.ndarray]:
    """(tracks DataFrame of the tracks contract, label stack T x Y x X uint16)."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    stack = np.zeros((N_FRAMES, *SHAPE), np.uint16)
    rows = []
    for frame in range(1, N_FRAMES + 1):
        img = stack[frame - 1]
        for track in (1, 2, 3, 4):
            c = _centre(track, frame)
            if c is None:
                continue
            cy, cx, r = c
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            label = 7 * track + frame
            img[disc] = label
            rows.append(
                {
                    "track_id": track,
                    "frame": frame,
                    "parent_track_id": PARENT[track],
                    "lineage_id": LINEAGE[track],
                    "label_id": label,
                    "y_px": float(yy[disc].mean()),
                    "x_px": float(xx[disc].mean()),
                    "area_px": float(disc.sum()),
                }
            )
        if frame == 2:
            img[(yy - 5) ** 2 + (xx - 55) ** 2 <= 9] = 99  # followed silently, never reported
    tracks = pl.DataFrame(rows).with_columns(
        pl.col("track_id").cast(pl.Int32),
        pl.col("frame").cast(pl.Int16),
        pl.col("parent_track_id").cast(pl.Int32),
        pl.col("lineage_id").cast(pl.Int32),
        pl.col("label_id").cast(pl.Int32),
    )
    return tracks, stack


N_NODES = 6 + 3 + 3 + 3
N_EDGES = 5 + 2 + 2 + 2 + 2  # links within the tracks, then the two parent -> daughter edges
