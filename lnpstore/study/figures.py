"""The study's tracking figures from the ``tracks`` table (PNG, matplotlib's Agg backend).

* Figure 2 (:func:`plot_uptake_expression`): mean LNP spots per cell area (per 100 um^2) and mean GFP
  intensity per cell, each +- sem over cells, against time (h), one line per dose (controls as
  "control").
* Figure 5 (:func:`plot_displacement`): histogram of the per-frame displacement of the tracked centres
  (um per frame interval), mean and sd marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import polars as pl

from lnpstore.store.atomic import atomic_path
from lnpstore.store.core import Store
from lnpstore.store.errors import LnpstoreError

__all__ = ["make_tracking_figures", "plot_displacement", "plot_uptake_expression"]

_PER_CELL_SQL = """
SELECT t.plate, t.well, t.frame,
       (t.frame - 1) * coalesce(p.frame_interval_min, 10.0) / 60.0 AS time_h,
       w.dose_ng, w.is_control,
       t.lnp_spots / nullif(t.area_px * p.pixel_size_um * p.pixel_size_um, 0) * 100.0 AS spots_per_100um2,
       t.mean_gfp,
       t.displacement_px * p.pixel_size_um AS displacement_um
FROM tracks t
JOIN wells w USING (plate, well)
JOIN plates p USING (plate)
WHERE NOT w.excluded AND coalesce(t.in_bounds, true)
"""


def _per_node(store: Store) -> pl.DataFrame:
    df = store.sql(_PER_CELL_SQL)
    if df.height == 0:
        raise LnpstoreError(
            f"store {store.root} has no tracks in non-excluded wells to plot. Hint: run `lnpstore track` first"
        )
    return df


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _dose_label(dose_ng: float | None, is_control: bool | None) -> str:
    if is_control:
        return "control"
    return "dose ?" if dose_ng is None else f"{dose_ng:g} ng"


def plot_uptake_expression(store: Store, out_png: str | Path) -> Path:
    """Figure 2: LNP spots per cell area and GFP per cell over time, mean +- sem, one line per dose."""
    plt = _pyplot()
    df = _per_node(store).with_columns(pl.col("is_control").fill_null(False))
    stats = (
        df.group_by("is_control", "dose_ng", "time_h")
        .agg(
            *[
                e
                for c in ("spots_per_100um2", "mean_gfp")
                for e in (
                    pl.col(c).mean().alias(f"{c}_mean"),
                    (pl.col(c).std() / pl.col(c).count().sqrt()).fill_null(0.0).alias(f"{c}_sem"),
                )
            ]
        )
        .sort("is_control", "dose_ng", "time_h", descending=[True, False, False], nulls_last=True)
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    panels = [
        ("spots_per_100um2", "LNP spots per 100 µm² cell area"),
        ("mean_gfp", "mean GFP intensity per cell (counts)"),
    ]
    for (ctrl, dose), g in stats.group_by("is_control", "dose_ng", maintain_order=True):
        label = _dose_label(dose, ctrl)
        for ax, (col, _) in zip(axes, panels, strict=True):
            t, m, s = g["time_h"].to_numpy(), g[f"{col}_mean"].to_numpy(), g[f"{col}_sem"].to_numpy()
            (line,) = ax.plot(t, m, label=label, color="0.4" if ctrl else None, lw=1.5)
            ax.fill_between(t, m - s, m + s, color=line.get_color(), alpha=0.25, lw=0)
    for ax, (_, ylabel) in zip(axes, panels, strict=True):
        ax.set_xlabel("time (h)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].set_title("LNP uptake (mean ± sem over cells)")
    axes[1].set_title("GFP expression (mean ± sem over cells)")
    axes[1].legend(title="mRNA dose", fontsize=8)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return out


def plot_displacement(store: Store, out_png: str | Path) -> Path:
    """Figure 5: histogram of per-frame displacements (um per frame interval), mean and sd marked."""
    plt = _pyplot()
    d = _per_node(store)["displacement_um"].drop_nulls().drop_nans()
    if d.len() == 0:
        raise LnpstoreError(
            "no displacements in `tracks` (tracks of one frame only?). Hint: track more frames"
        )
    mean, sd = float(cast(float, d.mean())), float(cast(float | None, d.std()) or 0.0)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.hist(d.to_numpy(), bins=60, color="tab:blue", alpha=0.8)
    ax.axvline(mean, color="k", lw=1.5, label=f"mean {mean:.2f} µm")
    ax.axvspan(max(0.0, mean - sd), mean + sd, color="k", alpha=0.12, label=f"± sd {sd:.2f} µm")
    ax.set_xlabel("displacement per frame (µm)")
    ax.set_ylabel("cell-frames")
    ax.set_title(f"per-frame displacement of tracked cells (n = {d.len():,})")
    ax.legend()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return out


def make_tracking_figures(store: Store, out_dir: str | Path | None = None) -> list[Path]:
    """Both figures into ``out_dir`` (default ``STORE/artifacts/figures``); returns their paths."""
    out = Path(out_dir) if out_dir is not None else store.artifacts_dir("figures")
    return [
        plot_uptake_expression(store, out / "fig2_uptake_expression.png"),
        plot_displacement(store, out / "fig5_displacement.png"),
    ]
