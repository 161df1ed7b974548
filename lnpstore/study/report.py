"""The evaluation report: one self-contained HTML file (images as base64 PNG) and a Markdown summary.

Both state the data (plate, cells, train/test, data_version), preset, seeds, package versions, the
weights the CNN started from (ImageNet or RANDOM, the latter loudly), time taken, the metrics table and
Table 1 (paired randomization tests), and show Figures 6 and 7 plus any extra figures passed in.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import json
import logging
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import polars as pl

from lnpstore.store.atomic import atomic_path, atomic_write_text
from lnpstore.store.core import Store
from lnpstore.study.verdict import central_result

log = logging.getLogger(__name__)

PACKAGES = ("lnpstore", "jax", "flax", "polars", "duckdb", "tsfresh", "xgboost")
TABLE1_FILE = "table1.parquet"


def table1_path(store: Store) -> Path:
    """Where ``lnpstore evaluate`` keeps Table 1 (store artifacts, evaluation/)."""
    return store.artifacts_dir("evaluation") / TABLE1_FILE


def write_table1(store: Store, table1: pl.DataFrame) -> Path:
    """Keep Table 1 (the randomization tests) in the store's artifacts, atomically; returns its path."""
    path = table1_path(store)
    with atomic_path(path) as tmp:
        table1.write_parquet(tmp)
    return path


def package_versions() -> dict[str, str]:
    """Installed versions of the packages the results depend on."""
    out = {}
    for p in PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def _weights_kind(info: str | None) -> str:
    """'ImageNet', 'RANDOM' or 'unknown' from a models.weights_info JSON text."""
    if not info:
        return "unknown"
    text = info.lower()
    try:
        d = json.loads(info)
        text = json.dumps(d).lower()
    except (json.JSONDecodeError, TypeError):
        pass
    if "random" in text:
        return "RANDOM"
    if "imagenet" in text:
        return "ImageNet"
    return "unknown"


def collect_run_info(store: Store) -> dict[str, Any]:
    """What the store itself records about the run: data, seeds, weights, preset, versions."""
    info: dict[str, Any] = {}
    plates = store.read("plates")
    if plates.height:
        info["plate"] = ", ".join(plates["plate"].to_list())
        info["data_version"] = ", ".join(str(v) for v in plates["data_version"].to_list())
    cells = store.read("cells")
    info["n_cells"] = cells.height
    if cells.height:
        counts = dict(cells.group_by("split").len().iter_rows())
        info["n_train"] = int(counts.get("train", 0))
        info["n_test"] = int(counts.get("test", 0))
    models = store.read("models")
    if models.height:
        info["seeds"] = sorted({int(s) for s in models["seed"].drop_nulls().to_list()})
        cnn = models.filter(pl.col("kind") == "cnn")
        kinds = {_weights_kind(w) for w in (cnn if cnn.height else models)["weights_info"].to_list()}
        info["weights"] = (
            "RANDOM" if "RANDOM" in kinds else ("ImageNet" if kinds == {"ImageNet"} else "unknown")
        )
        presets = set()
        for c in models["config"].drop_nulls().to_list():
            try:
                p = json.loads(c).get("preset")
            except (json.JSONDecodeError, AttributeError):
                p = None
            if p:
                presets.add(str(p))
        if presets:
            info["preset"] = ", ".join(sorted(presets))
        t = models["created_at"].drop_nulls()
        if t.len() > 1:
            first, last = cast(datetime, t.min()), cast(datetime, t.max())  # a Datetime column
            info["time_taken"] = f"{(last - first).total_seconds() / 60:.1f} min (first to last model)"
    return info


# -- tables as text ---------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:
            return "nan"
        return f"{v:.3g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}"
    return str(v)


def df_to_markdown(df: pl.DataFrame) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join(lines)


def df_to_html(df: pl.DataFrame) -> str:
    """An HTML table (escaped)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in df.iter_rows()
    )
    return f'<table class="t"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# -- report -----------------------------------------------------------------------------------------
def _facts(run_info: dict[str, Any]) -> list[tuple[str, str]]:
    versions = run_info.get("versions") or package_versions()
    seeds = run_info.get("seeds", run_info.get("seed"))
    return [
        ("plate", str(run_info.get("plate", "not recorded"))),
        ("n cells", str(run_info.get("n_cells", "not recorded"))),
        ("n train / n test", f"{run_info.get('n_train', '?')} / {run_info.get('n_test', '?')}"),
        ("data_version", str(run_info.get("data_version", "not recorded"))),
        ("preset", str(run_info.get("preset", "not recorded"))),
        ("seeds", str(seeds if seeds is not None else "not recorded")),
        ("weights", str(run_info.get("weights", "unknown"))),
        ("time taken", str(run_info.get("time_taken", "not recorded"))),
        ("permutations", str(run_info.get("n_permutations", "not recorded"))),
        ("reductions from the study's protocol", "; ".join(run_info.get("reductions") or ["none recorded"])),
        ("simulated plate", str(run_info.get("simulated", "not recorded"))),
        ("generated", datetime.now(UTC).isoformat(timespec="seconds")),
        ("package versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
    ]


def _weights_banner(weights: str) -> str | None:
    if weights == "ImageNet":
        return None
    if weights == "RANDOM":
        return (
            "WARNING: THE CNN WAS BUILT ON RANDOM WEIGHTS, NOT IMAGENET. "
            "These results do not reproduce the study's transfer-learning models."
        )
    return "WARNING: the CNN's base weights are not recorded as ImageNet; treat the CNN results with care."


def write_report(
    store: Store,
    out_dir: str | Path,
    *,
    run_info: dict[str, Any] | None = None,
    extra_figures: Sequence[tuple[str | Path, str]] = (),
    oracle: pl.DataFrame | None = None,
    n_permutations: int = 10_000,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` (+ its PNGs) into ``out_dir``.

    ``run_info`` overrides/extends what :func:`collect_run_info` finds in the store (keys: plate,
    n_cells, n_train, n_test, data_version, preset, seeds, weights, time_taken, n_permutations,
    versions). ``extra_figures``: (PNG path, caption) pairs, e.g. tracking Figures 2 and 5 and training
    curves; they are copied next to ``report.md``. The metrics are recomputed when the ``metrics``
    table is empty or an ``oracle`` is given; Table 1 is read from the store's artifacts when
    ``lnpstore evaluate`` wrote it, otherwise computed with ``n_permutations`` and ``seed``.
    """
    from lnpstore.models.evaluation import ensemble_predictions, evaluate, metrics_summary
    from lnpstore.models.randomization import compare_models
    from lnpstore.study.report_figures import figure6, figure7

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = {**collect_run_info(store), **(run_info or {})}

    if oracle is not None or not store.exists("metrics"):
        evaluate(store, oracle=oracle)
    summary = metrics_summary(store)
    t1_file = table1_path(store)
    if t1_file.exists():
        table1 = pl.read_parquet(t1_file)
        info.setdefault(
            "n_permutations",
            int(cast(int | None, table1["n_permutations"].max()) or 0) if table1.height else 0,
        )
    else:
        table1 = compare_models(store, n_permutations=n_permutations, seed=seed)
        info.setdefault("n_permutations", n_permutations)
    ens = ensemble_predictions(store)

    figs: list[tuple[Path, str]] = [
        (figure6(summary, out / "figure6_metrics.png"),
         "Figure 6. Weighted F1 (classify) and RMSE (regress) on the test cells against the frames seen. "
         "CNN: fold ensemble with TTA (line), fold mean +- 1 sd (band). LSTM and tsfresh: fold mean +- 1 sd "
         "(error bars), ensemble (open markers). Dashed: the simulator's oracle, when known; dash-dot: "
         "its oracle from a perfect linear reading of frames 1..20 (true particle count and depth per "
         "frame, cell area); dotted: from the particle count at frame 20 and the cell size alone."),
        (figure7(ens, out / "figure7_regression.png"),
         "Figure 7. Test cells sorted by measured GFP (log-centred) with the LSTM's and tsfresh's "
         "regression predictions at t = 20 (ensembles)."),
    ]  # fmt: skip
    for i, (p, caption) in enumerate(extra_figures):
        src = Path(p)
        if not src.exists():
            log.warning("report: extra figure %s does not exist; skipped", src)
            continue
        dst = out / src.name
        if dst.exists() and dst.resolve() != src.resolve():
            dst = out / f"extra{i}_{src.name}"
        if dst.resolve() != src.resolve():
            shutil.copyfile(src, dst)
        figs.append((dst, caption))

    metrics_view = summary.select(
        "kind", "mode", "frame", "metric", "ensemble", "fold_mean", "fold_sd", "n_folds", "n_cells"
    )
    facts = _facts(info)
    checkpoints = (info.get("config") or {}).get("checkpoints_frames") or [20]
    result = central_result(summary, table1, checkpoint=int(max(checkpoints)))
    if result:
        facts.append(("central result (ensembles)", " ".join(result)))
    banner = _weights_banner(str(info.get("weights", "unknown")))
    html_path = out / "report.html"
    md_path = out / "report.md"
    atomic_write_text(_html(facts, banner, figs, metrics_view, table1), html_path)
    atomic_write_text(_markdown(facts, banner, figs, metrics_view, table1), md_path)
    log.info("report: %s and %s", html_path, md_path)
    return html_path, md_path


_CSS = """
body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table.t{border-collapse:collapse;font-size:12px;margin:1em 0}
table.t td,table.t th{border:1px solid #ccc;padding:2px 6px;text-align:right}
.banner{background:#b00;color:#fff;font-size:20px;font-weight:bold;padding:12px;margin:1em 0}
figure{margin:1.5em 0} img{max-width:100%} figcaption{font-size:13px;color:#444}
"""


def _html(
    facts: list[tuple[str, str]],
    banner: str | None,
    figs: list[tuple[Path, str]],
    metrics: pl.DataFrame,
    table1: pl.DataFrame,
) -> str:
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>lnpstore evaluation report</title>",
        f"<style>{_CSS}</style></head><body><h1>lnpstore evaluation report</h1>",
    ]
    if banner:
        parts.append(f'<div class="banner">{html.escape(banner)}</div>')
    parts.append(
        "<h2>Run</h2>"
        + df_to_html(pl.DataFrame({"item": [k for k, _ in facts], "value": [v for _, v in facts]}))
    )
    parts.append("<h2>Metrics (test cells)</h2>")
    parts.append(
        "<p>ensemble: fold ensemble with test-time augmentation; fold_mean, fold_sd: over the folds' models "
        "(each TTA-averaged). Oracle rows have frame 0.</p>" + df_to_html(metrics)
    )
    parts.append("<h2>Table 1. Paired approximate randomization tests</h2>")
    parts.append("<p>difference = metric A - metric B; p = (#{|d_perm| &ge; |d_obs|} + 1) / (n + 1).</p>")
    parts.append(df_to_html(table1))
    parts.append("<h2>Figures</h2>")
    for p, caption in figs:
        b64 = base64.b64encode(p.read_bytes()).decode("ascii")
        parts.append(
            f'<figure><img alt="{html.escape(p.name)}" src="data:image/png;base64,{b64}"/>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown(
    facts: list[tuple[str, str]],
    banner: str | None,
    figs: list[tuple[Path, str]],
    metrics: pl.DataFrame,
    table1: pl.DataFrame,
) -> str:
    lines = ["# lnpstore evaluation report", ""]
    if banner:
        lines += [f"> **{banner}**", ""]
    lines += ["## Run", ""] + [f"- **{k}**: {v}" for k, v in facts] + [""]
    lines += ["## Metrics (test cells)", "", df_to_markdown(metrics), ""]
    lines += ["## Table 1. Paired approximate randomization tests", "", df_to_markdown(table1), ""]
    lines += ["## Figures", ""]
    for p, caption in figs:
        lines += [f"![{p.stem}]({p.name})", "", f"*{caption}*", ""]
    return "\n".join(lines)
