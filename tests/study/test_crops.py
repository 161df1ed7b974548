"""Crops: window geometry, encoding, registered BF, and the crop stage on a small synthetic store.

``build_synthetic_store`` (also used by test_targets and test_figures) writes a store by hand: plates,
wells, images (TIFF files) and tracks, so these tests do not depend on the simulator/ingest/tracking.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tifffile
from scipy import ndimage as ndi

from lnpstore.instrument.geometry import geometry_for
from lnpstore.store import schema as S
from lnpstore.store.core import Store
from lnpstore.study.crops import (
    CropError,
    cell_completeness,
    crop_plate,
    crop_window,
    decode_crops,
    encode_crop,
)
from lnpstore.study.registration import estimate_offset, register_plate

PIXEL_SIZE_UM = 0.65  # scale 0.25: crop 48 px, target window 24 px, edge margin 24 px
SIZE_PX = 160
N_FRAMES = 6
BF_SHIFT_PX = (2.6, -1.8)  # BF is displaced by this; the registration must find minus it
WELLS = {"C03": (0.0, True), "C04": (1.0, False), "C05": (4.0, False)}
N_FIELDS = 2
CELLS_PER_FIELD = 4


def _frame(table: str, records: list[dict]) -> pl.DataFrame:
    """A frame with every declared column of ``table`` (missing ones null)."""
    t = S.table(table)
    return pl.DataFrame([{c: r.get(c) for c in t.column_names} for r in records], schema=t.polars_schema)


def _disc_images(centres: list[tuple[float, float]], gfp: list[float], rng: np.random.Generator) -> dict:
    """CS (filled discs), BF (halos at the outlines, displaced by BF_SHIFT_PX), LNP (spots) and GFP."""
    yy, xx = np.mgrid[:SIZE_PX, :SIZE_PX]
    mask = np.zeros((SIZE_PX, SIZE_PX), bool)
    gfp_img = np.full((SIZE_PX, SIZE_PX), 100.0)
    for (cy, cx), g in zip(centres, gfp, strict=True):
        d = np.hypot(yy - cy, xx - cx) < 7
        mask |= d
        gfp_img += d * g
    cs = ndi.gaussian_filter(mask * 1000.0, 1) + 200 + rng.normal(0, 20, mask.shape)
    d_in, d_out = ndi.distance_transform_edt(mask), ndi.distance_transform_edt(~mask)
    bf = 3000 + 400 * np.exp(-(d_out**2) / 4) - 300 * np.exp(-(d_in**2) / 4) + rng.normal(0, 20, mask.shape)
    bf = ndi.shift(bf, BF_SHIFT_PX, order=3, mode="reflect")
    lnp = 150 + 800 * (rng.random(mask.shape) < 0.002) + rng.normal(0, 5, mask.shape)
    return {
        k: np.clip(v, 0, 65535).astype(np.uint16)
        for k, v in {"CS": cs, "BF": bf, "LNP": lnp, "GFP": gfp_img}.items()
    }


def build_synthetic_store(root: Path, *, seed: int = 0) -> Store:
    """A store with 3 wells (C03 control) x 2 fields x 4 cells x 6 frames; cell 4 of C05 F1 leaves bounds."""
    rng = np.random.default_rng(seed)
    store = Store.create(root / "store")
    plate = "P1"
    margin = geometry_for(PIXEL_SIZE_UM).edge_margin_px
    store.write(
        "plates",
        _frame(
            "plates",
            [
                {
                    "plate": plate,
                    "pixel_size_um": PIXEL_SIZE_UM,
                    "width_px": SIZE_PX,
                    "height_px": SIZE_PX,
                    "n_wells": len(WELLS),
                    "n_fields": N_FIELDS,
                    "n_frames": N_FRAMES,
                    "frame_interval_min": 10.0,
                    "instrument": "synthetic",
                }
            ],
        ),
    )
    store.write(
        "wells",
        _frame(
            "wells",
            [
                {"plate": plate, "well": w, "dose_ng": d, "is_control": c, "excluded": False}
                for w, (d, c) in WELLS.items()
            ],
        ),
    )
    images, tracks = [], []
    img_dir = root / "images"
    img_dir.mkdir()
    for wi, (well, (dose, _)) in enumerate(WELLS.items()):
        for field_ in range(1, N_FIELDS + 1):
            start = [
                (45.0 + 25 * i + rng.uniform(-2, 2), 50.0 + 20 * i + rng.uniform(-2, 2))
                for i in range(CELLS_PER_FIELD)
            ]
            step = [(rng.uniform(-1, 1), rng.uniform(-1, 1)) for _ in range(CELLS_PER_FIELD)]
            if well == "C05" and field_ == 1:
                step[3] = (6.0, 6.0)  # leaves the in-bounds area: an incomplete cell
            gfp = [(50.0 + 40 * dose * (i + 1)) * rng.uniform(0.8, 1.2) for i in range(CELLS_PER_FIELD)]
            for frame in range(1, N_FRAMES + 1):
                centres = [
                    (y + (frame - 1) * sy, x + (frame - 1) * sx)
                    for (y, x), (sy, sx) in zip(start, step, strict=True)
                ]
                imgs = _disc_images(centres, gfp, rng)
                for ch, img in imgs.items():
                    path = img_dir / f"{plate}_{well}_F{field_}_T{frame}_{ch}.tif"
                    tifffile.imwrite(path, img)
                    images.append(
                        {
                            "plate": plate,
                            "well": well,
                            "field": field_,
                            "frame": frame,
                            "channel": ch,
                            "path": str(path),
                            "status": "ok",
                            "height_px": SIZE_PX,
                            "width_px": SIZE_PX,
                        }
                    )
                for i, (y, x) in enumerate(centres):
                    tid = i + 1
                    inb = margin <= y <= SIZE_PX - 1 - margin and margin <= x <= SIZE_PX - 1 - margin
                    tracks.append(
                        {
                            "plate": plate,
                            "well": well,
                            "field": field_,
                            "track_id": tid,
                            "frame": frame,
                            "cell_uid": S.cell_uid(plate, well, field_, tid),
                            "y_px": y,
                            "x_px": x,
                            "displacement_px": None if frame == 1 else float(np.hypot(*step[i])),
                            "area_px": 154.0,
                            "mean_gfp": 100.0 + gfp[i] * (frame / N_FRAMES) * (wi > 0),
                            "lnp_spots": int(rng.integers(0, 5)) * (frame + wi),
                            "in_bounds": inb,
                            "flag_jump": False,
                            "flag_area": False,
                            "flag_lost": False,
                        }
                    )
    store.write("images", _frame("images", images))
    store.write("tracks", _frame("tracks", tracks))
    return store


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return build_synthetic_store(tmp_path_factory.mktemp("crops"))


def test_crop_window_centres_marked_pixel():
    img = np.zeros((100, 120), np.uint16)
    img[40, 70] = 1000
    crop = crop_window(img, 40.3, 69.6, 32)
    assert crop.shape == (32, 32) and crop.dtype == np.uint16
    assert crop[16, 16] == 1000 and crop.sum() == 1000


def test_crop_window_pads_at_edge_and_shift_moves_content():
    img = np.zeros((64, 64), np.uint16)
    img[2, 2] = 500
    assert crop_window(img, 2, 2, 16).shape == (16, 16)
    img = np.zeros((64, 64), np.uint16)
    img[30, 30] = 1000
    shifted = crop_window(img, 30, 30, 16, shift_px=(2.0, -3.0), margin_px=4)
    assert np.unravel_index(shifted.argmax(), shifted.shape) == (8 + 2, 8 - 3)
    with pytest.raises(ValueError, match="margin_px"):
        crop_window(img, 30, 30, 16, shift_px=(5.0, 0.0), margin_px=4)


def test_encode_decode_roundtrip_and_errors():
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 65535, (3, 8, 8), dtype=np.uint16)
    b = encode_crop(arr)
    assert len(b) == 3 * 8 * 8 * 2 and np.frombuffer(b, "<u2")[0] == arr[0, 0, 0]
    df = pl.DataFrame(
        {"cell_uid": ["a", "b"], "size_px": [8, 8], "pixels": [b, encode_crop(arr[::-1].copy())]}
    )
    out = decode_crops(df)
    assert out.shape == (2, 3, 8, 8) and out.dtype == np.uint16
    np.testing.assert_array_equal(out[0], arr)
    np.testing.assert_array_equal(out[1], arr[::-1])
    with pytest.raises(ValueError, match="uint16"):
        encode_crop(arr.astype(np.float32))
    with pytest.raises(CropError, match="cell b"):
        decode_crops(df.with_columns(pl.Series("pixels", [b, b[:-2]])))


def test_cell_completeness():
    rows = []
    for tid, inb in {1: [True] * 4, 2: [True, True, False, True], 3: [False] * 4}.items():
        for f, ok in enumerate(inb, start=1):
            rows.append(
                {
                    "plate": "P",
                    "well": "C03",
                    "field": 1,
                    "track_id": tid,
                    "frame": f,
                    "in_bounds": ok,
                    "flag_jump": tid == 3 and f == 2,
                    "flag_area": False,
                    "flag_lost": False,
                }
            )
    rows = [r for r in rows if not (r["track_id"] == 1 and r["frame"] == 2)] + [
        {
            "plate": "P",
            "well": "C03",
            "field": 1,
            "track_id": 1,
            "frame": 2,
            "in_bounds": True,
            "flag_jump": False,
            "flag_area": False,
            "flag_lost": False,
        }
    ]
    out = cell_completeness(pl.DataFrame(rows), 4)
    assert out["last_frame"].to_list() == [4, 2, 0]
    assert out["complete"].to_list() == [True, False, False]
    assert out["any_flag"].to_list() == [False, False, True]
    assert out["cell_uid"][0] == "P|C03|F001|00001"


def test_register_and_crop_synthetic_store(synthetic_store: Store):
    store = synthetic_store
    reg = register_plate(store, "P1")
    assert reg.height == len(WELLS) * N_FIELDS
    assert reg["dy_px"][0] == pytest.approx(-BF_SHIFT_PX[0], abs=0.5)
    assert reg["dx_px"][0] == pytest.approx(-BF_SHIFT_PX[1], abs=0.5)
    assert reg["agrees_with_plate"].all()

    n = crop_plate(store, "P1", t_in=3)
    n_complete = len(WELLS) * N_FIELDS * CELLS_PER_FIELD - 1
    assert n == n_complete * 3
    crops = store.read("crops", plate="P1").sort("cell_uid", "frame")
    assert crops["frame"].unique().sort().to_list() == [1, 2, 3]
    assert "P1|C05|F001|00004" not in crops["cell_uid"].to_list()
    s = geometry_for(PIXEL_SIZE_UM).crop_px
    arr = decode_crops(crops)
    assert arr.shape == (crops.height, 3, s, s) and arr.dtype == np.uint16

    # CS crop: the cell's disc is centred; the registered BF crop lies on the CS crop (per crop)
    cs = arr[:, 0].astype(float)
    cy, cx = np.unravel_index(ndi.gaussian_filter(cs.mean(0), 2).argmax(), (s, s))
    assert abs(cy - s // 2) <= 1 and abs(cx - s // 2) <= 1
    resid = np.array([estimate_offset(a[1], a[0], sigma_px=1.0, upsample_factor=10)[:2] for a in arr[:12]])
    assert np.median(np.hypot(resid[:, 0], resid[:, 1])) < 0.5, resid

    # resumable: a second run skips every well
    assert crop_plate(store, "P1", t_in=3) == 0


def test_crop_plate_errors(tmp_path: Path, synthetic_store: Store):
    empty = Store.create(tmp_path / "empty")
    with pytest.raises(CropError, match="not in the store"):
        crop_plate(empty, "P1")
    with pytest.raises(CropError, match="t_in must be in 1..6"):
        crop_plate(synthetic_store, "P1", t_in=50)


def test_follow_divisions_continues_a_cell_in_the_daughter_that_stays():
    from lnpstore.study.crops import cell_completeness, follow_divisions

    def node(tid, frame, parent=None, iou=None, stop=None):
        return {
            "plate": "P", "well": "C03", "field": 1, "track_id": tid, "frame": frame,
            "parent_track_id": parent, "iou_prev": iou, "in_bounds": True, "stop_reason": stop,
            "y_px": 0.0, "x_px": 0.0, "cell_uid": "x",
        }  # fmt: skip

    rows = [node(1, f, stop="divided" if f == 3 else None) for f in (1, 2, 3)]
    rows += [node(2, 4, 1, 0.2), node(2, 5), node(2, 6, stop="end")]  # moved away from the mother
    rows += [node(3, 4, 1, 0.6), node(3, 5, stop="divided")]  # stays; divides again
    rows += [node(4, 6, 3, 0.1, stop="end"), node(5, 6, 3, 0.5, stop="end")]
    rows += [node(9, f, stop="end" if f == 6 else None) for f in range(1, 7)]  # never divides
    schema = {"field": pl.Int16, "track_id": pl.Int32, "frame": pl.Int16, "parent_track_id": pl.Int32}
    tracks = pl.DataFrame(rows).with_columns(*(pl.col(c).cast(t) for c, t in schema.items()))
    out = follow_divisions(tracks)
    one = out.filter(pl.col("track_id") == 1).sort("frame")
    assert one["frame"].to_list() == [1, 2, 3, 4, 5, 6]  # mother, daughter 3, granddaughter 5
    assert one["stop_reason"].to_list()[-1] == "end" and one["stop_reason"].null_count() == 5
    assert sorted(out["track_id"].unique().to_list()) == [1, 2, 4, 9]
    assert one["cell_uid"].unique().to_list() == ["P|C03|F001|00001"]
    done = cell_completeness(out, 6).sort("track_id")
    assert done.filter(pl.col("complete"))["track_id"].to_list() == [1, 9]
    # the stored tracks (rule "exclude"): only the cell that never divided is complete
    assert cell_completeness(tracks, 6).filter(pl.col("complete"))["track_id"].to_list() == [9]


def test_lineage_roots():
    from lnpstore.tracking.lineage import roots

    assert roots({1: None, 2: 1, 3: 1, 4: 3, 7: 99}) == {1: 1, 2: 1, 3: 1, 4: 1, 7: 99}
    with pytest.raises(ValueError, match="cycle"):
        roots({1: 2, 2: 1})
