"""Synthetic data shared by the time-series tests: a planted temporal signal and a tiny store."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl


def planted_panel(n: int = 120, frames: int = 10, channels: int = 4, seed: int = 0, offset_sd: float = 12.0):
    """Label = sign of the slope of channel 0 over frames; a large per-case offset hides it in any one frame."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    slope = np.where(y == 1, 1.0, -1.0) * rng.uniform(0.5, 1.0, n)
    t = np.arange(frames) - (frames - 1) / 2
    X = rng.normal(0, 1, (n, frames, channels))
    X[:, :, 0] = rng.normal(0, offset_sd, (n, 1)) + slope[:, None] * t + rng.normal(0, 0.2, (n, frames))
    return X.astype(np.float32), y.astype(np.int64)


def best_single_frame_accuracy(Xtr, ytr, Xte, yte) -> float:
    from sklearn.linear_model import LogisticRegression

    return max(
        LogisticRegression(max_iter=1000).fit(Xtr[:, t], ytr).score(Xte[:, t], yte)
        for t in range(Xtr.shape[1])
    )


def make_store(root, *, n_per_fold: int = 8, n_test: int = 10, frames: int = 6, augs: int = 2, seed: int = 0):
    """A store with cells (5 folds, test, control) and CNN embeddings for mode 'classify', folds 0 and 1.

    Embedding element 31 holds the CNN's fold + 1 (to check that a fold reads its own CNN); element 30
    holds the frame number; rows are written in shuffled frame order. ``tracks`` holds every cell's
    measures (see :func:`track_rows`).
    """
    from lnpstore.store.core import Store

    rng = np.random.default_rng(seed)
    store = Store.create(root)
    rows = []
    k = 0
    for split, fold, n in [
        *[("train", f, n_per_fold) for f in range(5)],
        ("test", None, n_test),
        ("control", None, 3),
    ]:
        for _ in range(n):
            k += 1
            label = int(rng.integers(2))
            rows.append(
                {
                    "plate": "P1",
                    "well": "C03",
                    "field": 1,
                    "track_id": k,
                    "cell_uid": f"P1|C03|F001|{k:05d}",
                    "dose_ng": 10.0,
                    "is_control": split == "control",
                    "last_frame": 72,
                    "complete": True,
                    "any_flag": False,
                    "gfp_sum": 1.0,
                    "label": label,
                    "gfp_log_centered": float(label) - 0.5,
                    "split": split,
                    "fold": fold,
                }
            )
    cells = pl.DataFrame(rows)
    store.write("cells", cells)
    emb, models = [], []
    for f in (0, 1):
        mid = f"cnn-classify-f{f}-t0-deadbeef"
        models.append(
            {
                "model_id": mid,
                "kind": "cnn",
                "mode": "classify",
                "fold": f,
                "checkpoint": None,
                "config": "{}",
                "seed": 0,
                "best_epoch": 1,
                "val_loss": 0.5,
                "weights_path": "x",
                "weights_info": "{}",
                "data_version": "x",
                "package_version": "0",
                "schema_version": "1.0",
                "created_at": datetime.now(UTC),
            }
        )
        for r in rows:
            slope = 1.0 if r["label"] else -1.0
            off = rng.normal(0, 5)
            for a in range(augs):
                for fr in rng.permutation(np.arange(1, frames + 1)):
                    e = rng.normal(0, 1, 32).astype(np.float32)
                    e[0] = off + slope * fr
                    e[30] = fr
                    e[31] = f + 1
                    emb.append(
                        {
                            "model_id": mid,
                            "cell_uid": r["cell_uid"],
                            "frame": int(fr),
                            "aug": a,
                            "embedding": e,
                        }
                    )
    store.write("models", pl.DataFrame(models))
    store.write("tracks", track_rows(rows, frames))
    store.write(
        "embeddings", pl.DataFrame(emb).with_columns(pl.col("embedding").cast(pl.Array(pl.Float32, 32)))
    )
    return store, cells


def track_rows(cells: list[dict], frames: int) -> pl.DataFrame:
    """``tracks`` rows for ``cells``, frames 1..frames, with known measures: area 100 * frame px^2,
    lnp_spots = label * frame, mean_lnp = 10 * frame, mean_cs = track_id, eccentricity 0.5,
    lnp_radial_frac null on frame 1 (no spot yet) then 1 - frame / 10; the first cell's frame 3 is a
    gap-filled node (its measures null)."""
    from _rows import one_row

    rows = []
    for i, c in enumerate(cells):
        for fr in range(1, frames + 1):
            gap = i == 0 and fr == 3
            rows.append(
                {
                    "plate": c["plate"],
                    "well": c["well"],
                    "field": c["field"],
                    "track_id": c["track_id"],
                    "frame": fr,
                    "cell_uid": c["cell_uid"],
                    "area_px": None if gap else 100.0 * fr,
                    "lnp_spots": None if gap else c["label"] * fr,
                    "mean_lnp": None if gap else 10.0 * fr,
                    "mean_cs": None if gap else float(c["track_id"]),
                    "eccentricity": None if gap else 0.5,
                    "lnp_radial_frac": None if (gap or fr == 1) else 1.0 - fr / 10,
                    "gap_filled": gap,
                }
            )
    df = pl.DataFrame(rows, infer_schema_length=None)
    base = one_row("tracks")
    return df.with_columns(pl.lit(base[c][0]).alias(c) for c in base.columns if c not in df.columns)
