"""The tracks/labels invariant holds on random stacks with divisions, gaps and touching cells.

A property test without a property-testing library: each seed draws a stack (cells on random walks,
some starting in touching pairs, one dividing, one vanishing for one or two frames, one empty frame),
which is tracked both as ``lnpstore track-stack`` does and with the plate's defaults. Every result must
satisfy :func:`lnpstore.tracking.integrity.check_tracks`, export to the CTC layout and read back, and its
label movie must read whole with ``tifffile.imread``.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import tifffile
from scipy import ndimage as ndi

from lnpstore.store.errors import TrackingError
from lnpstore.tracking import TrackSettings, track_stack
from lnpstore.tracking.integrity import check_frame, check_tracks, keep_largest_pieces

PX_UM = 0.325
SHAPE = (180, 220)
N_FRAMES = 12


def random_stack(seed: int) -> np.ndarray:
    """A T x Y x X uint16 stack of blurred discs (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 7))
    pos = rng.uniform([30, 30], [SHAPE[0] - 30, SHAPE[1] - 30], size=(n, 2))
    pos[1] = pos[0] + [0, 30]  # cells 0 and 1 start touching (radius 16 each)
    radius = rng.uniform(13, 18, n)
    vel = rng.normal(0, 1.5, size=(n, 2))
    divide_at = int(rng.integers(4, N_FRAMES - 3))
    gone = set(range(int(rng.integers(3, 8)), int(rng.integers(3, 8)) + int(rng.integers(1, 3))))
    blank = int(rng.integers(2, N_FRAMES))
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    frames = []
    for f in range(1, N_FRAMES + 1):
        pos = np.clip(pos + vel + rng.normal(0, 0.7, pos.shape), 5, np.array(SHAPE) - 5)
        discs = [
            (y, x, r) for k, ((y, x), r) in enumerate(zip(pos, radius, strict=True)) if k != 2 and k != 3
        ]
        if f not in gone:
            discs.append((*pos[3], radius[3]))
        if f < divide_at:
            discs.append((*pos[2], radius[2]))
        else:  # cell 2 divides: two smaller daughters moving apart
            off = 11.0 + 3.0 * (f - divide_at)
            discs += [
                (pos[2][0] - off, pos[2][1], 0.75 * radius[2]),
                (pos[2][0] + off, pos[2][1], 0.75 * radius[2]),
            ]
        img = np.zeros(SHAPE, np.float32)
        if f != blank:
            for cy, cx, r in discs:
                img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = rng.uniform(600, 1200)
        img = ndi.gaussian_filter(img, 2.0) + 100
        frames.append((img + rng.normal(0, 20, SHAPE)).clip(0).astype(np.uint16))
    return np.stack(frames)


STACK_SETTINGS = TrackSettings(edge_margin_um=0.0, report_new_cells=True, new_peak_every_frames=1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("settings", [STACK_SETTINGS, TrackSettings()], ids=["track-stack", "plate"])
def test_invariant_on_random_stacks(seed, settings, tmp_path):
    from lnpstore.interop.ctc import read_ctc, write_ctc

    stack = random_stack(seed)
    tracks, movie = track_stack(stack, pixel_size_um=PX_UM, settings=settings, labels_out=tmp_path / "l.tif")
    whole = tifffile.imread(tmp_path / "l.tif")
    assert whole.shape == stack.shape  # one T x Y x X series
    check_tracks(tracks, whole)
    assert tracks.get_column("node_id").is_unique().all()
    write_ctc(tmp_path / "res", tracks, movie, kind="RES")
    back, _ = read_ctc(tmp_path / "res")
    assert back.height > 0


def test_check_frame_names_the_track_and_frame():
    lab = np.zeros((20, 20), np.uint16)
    lab[2:6, 2:6] = 3
    with pytest.raises(TrackingError, match="frame 7: track 5's label 4 is not in"):
        check_frame(7, [(3, 3, False), (5, 4, False)], lab)
    with pytest.raises(TrackingError, match="tracks 3 and 5 both claim label 3"):
        check_frame(7, [(3, 3, False), (5, 3, False)], lab)
    lab[10:12, 10:12] = 3
    with pytest.raises(TrackingError, match="frame 7: track 3's label 3 is 2 separate regions"):
        check_frame(7, [(3, 3, False)], lab)
    assert keep_largest_pieces(lab) == 4 and (lab == 3).sum() == 16
    check_frame(7, [(3, 3, False), (5, None, True)], lab)  # a gap node has no label
    lab[15, 15] = 9
    with pytest.raises(TrackingError, match=r"label\(s\) \[9\] belong to no track"):
        check_frame(7, [(3, 3, False)], lab)


def test_check_tracks_on_a_result():
    from _track_data import movie

    tracks, stack = movie()
    stack = stack.copy()
    stack[1][stack[1] == 99] = 0  # the unreported cell is no node
    check_tracks(tracks, stack)
    with pytest.raises(TrackingError, match="frame 2"):
        check_tracks(tracks.filter(~((pl.col("track_id") == 1) & (pl.col("frame") == 2))), stack)
