"""The report's figures (matplotlib, Agg backend): Figure 6 (metrics against frame) and Figure 7.

Each function takes plain polars tables (no store), writes one PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from lnpstore.store.atomic import atomic_path  # noqa: E402

STYLE = {
    "cnn": {"color": "tab:blue", "label": "CNN (per frame)", "marker": "."},
    "lstm": {"color": "tab:orange", "label": "LSTM", "marker": "o"},
    "tsfresh_xgb": {"color": "tab:green", "label": "tsfresh + XGBoost", "marker": "s"},
    "oracle": {"color": "black", "label": "oracle (simulator)", "marker": ""},
    "oracle_frame": {"color": "grey", "label": "oracle from count at t = 20 and size", "marker": ""},
    "oracle_track": {"color": "dimgrey", "label": "oracle reading frames 1..20 perfectly", "marker": ""},
}
PANELS = (
    ("classify", "f1_weighted", "weighted F1 (higher is better)"),
    ("regress", "rmse", "RMSE, log-centred GFP"),
)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def figure6(summary: pl.DataFrame, path: str | Path) -> Path:
    """Weighted F1 and RMSE against the input frame / checkpoint.

    ``summary``: one row per kind, mode, frame, metric with ``ensemble`` (fold ensemble + TTA),
    ``fold_mean`` and ``fold_sd`` (the ``metrics_table`` query). CNN: the ensemble as a line and the fold
    mean +- 1 sd as a band; LSTM and tsfresh: fold mean +- 1 sd as error bars, ensemble as open markers;
    the oracles as horizontal lines (full: dashed, trajectory: dash-dot, count-and-size: dotted).
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (mode, metric, ylabel) in zip(axes, PANELS, strict=True):
        d = summary.filter((pl.col("mode") == mode) & (pl.col("metric") == metric)).sort("frame")
        for kind in ("cnn", "lstm", "tsfresh_xgb"):
            k = d.filter(pl.col("kind") == kind)
            if k.height == 0:
                continue
            st = STYLE[kind]
            x = k["frame"].to_numpy()
            mean = k["fold_mean"].fill_null(np.nan).to_numpy().astype(float)
            sd = k["fold_sd"].fill_null(0.0).to_numpy().astype(float)
            ens = k["ensemble"].fill_null(np.nan).to_numpy().astype(float)
            if kind == "cnn":
                ax.fill_between(
                    x, mean - sd, mean + sd, color=st["color"], alpha=0.2, label="CNN folds, mean +- 1 sd"
                )
                ax.plot(x, ens, color=st["color"], label="CNN ensemble + TTA")
            else:
                off = 0.25 if kind == "lstm" else -0.25  # keep the two kinds' bars apart
                ax.errorbar(
                    x + off,
                    mean,
                    yerr=sd,
                    fmt=st["marker"],
                    color=st["color"],
                    capsize=3,
                    label=f"{st['label']} folds, mean +- 1 sd",
                )
                ax.plot(
                    x + off, ens, st["marker"], mfc="none", color=st["color"], label=f"{st['label']} ensemble"
                )
        for kind, ls in (("oracle", "--"), ("oracle_track", "-."), ("oracle_frame", ":")):
            o = d.filter(pl.col("kind") == kind)
            if o.height:
                st = STYLE[kind]
                ax.axhline(float(o["ensemble"][0]), ls=ls, color=st["color"], label=st["label"])
        ax.set_xlabel("input frame (CNN) / checkpoint t (frames)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{mode}: {metric}")
        ax.grid(alpha=0.3)
        if d.height == 0:
            ax.text(0.5, 0.5, "no metrics", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize=7)
    fig.suptitle("Figure 6. Test-set performance against the number of frames seen")
    return _save(fig, path)


def figure7(ensemble: pl.DataFrame, path: str | Path, *, checkpoint: int = 20) -> Path:
    """Test cells sorted by true log-centred GFP with the LSTM's and tsfresh's regressions at ``checkpoint``.

    ``ensemble``: kind, mode, frame, cell_uid, y_true, y_pred (the ``ensemble_predictions`` query).
    """
    d = ensemble.filter((pl.col("mode") == "regress") & (pl.col("frame") == checkpoint))
    truth = d.group_by("cell_uid").agg(pl.col("y_true").first()).sort("y_true", "cell_uid")
    truth = truth.with_row_index("rank")
    fig, ax = plt.subplots(figsize=(9, 4.2))
    if truth.height:
        ax.plot(truth["rank"], truth["y_true"], color="black", lw=1.5, label="measured (frame 72)")
    for kind in ("lstm", "tsfresh_xgb"):
        k = d.filter(pl.col("kind") == kind).join(truth.select("cell_uid", "rank"), on="cell_uid")
        if k.height:
            st = STYLE[kind]
            ax.scatter(
                k["rank"],
                k["y_pred"],
                s=10,
                alpha=0.7,
                color=st["color"],
                marker=st["marker"],
                label=f"{st['label']}, t = {checkpoint}",
            )
    if truth.height == 0:
        ax.text(
            0.5,
            0.5,
            f"no regression predictions at t = {checkpoint}",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    else:
        ax.legend(fontsize=8)
    ax.set_xlabel("test cells, sorted by measured GFP")
    ax.set_ylabel("log-centred GFP")
    ax.grid(alpha=0.3)
    ax.set_title(f"Figure 7. Regression at t = {checkpoint}: predictions against measured GFP")
    return _save(fig, path)
