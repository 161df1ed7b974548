"""The report on a tiny synthetic store: HTML with embedded images and tables, Markdown, PNGs, CLI."""

from __future__ import annotations

import argparse
import base64
import re
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from lnpstore.cli import evaluate as cmd
from lnpstore.store.core import Store
from lnpstore.study.report import collect_run_info, df_to_markdown, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _tiny_store(root, *, weights: str = "random-init") -> Store:
    rng = np.random.default_rng(0)
    n_test, n_train = 12, 8
    n = n_test + n_train
    gfp = rng.normal(size=n)
    uid = [f"P1|C03|F001|{i:05d}" for i in range(n)]
    store = Store.create(root)
    store.write(
        "cells",
        pl.DataFrame(
            {
                "plate": "P1", "well": "C03", "field": 1, "track_id": np.arange(n), "cell_uid": uid,
                "dose_ng": 1.0, "is_control": False, "last_frame": 72, "complete": True, "any_flag": False,
                "gfp_sum": np.exp(gfp + 6), "label": (gfp > 0).astype(np.int8), "gfp_log_centered": gfp,
                "split": ["test"] * n_test + ["train"] * n_train, "fold": [None] * n_test + [i % 5 for i in range(n_train)],
            }
        ),
    )  # fmt: skip
    rows, models = [], []
    for kind, frames in (("cnn", range(1, 21)), ("lstm", (5, 10, 15, 20)), ("tsfresh_xgb", (5, 10, 15, 20))):
        for mode in ("classify", "regress"):
            y = (gfp > 0).astype(float) if mode == "classify" else gfp
            for fold in range(5):
                mid = f"{kind}-{mode}-f{fold}"
                models.append(
                    {"model_id": mid, "kind": kind, "mode": mode, "fold": fold, "checkpoint": None,
                     "config": '{"preset": "tiny"}', "seed": 100 + fold, "best_epoch": 1, "val_loss": 0.5,
                     "weights_path": None, "weights_info": f'{{"source": "{weights}"}}', "data_version": "dv1",
                     "package_version": "0.1.0", "schema_version": "1.0",
                     "created_at": datetime(2025, 1, 1, 0, fold, tzinfo=UTC)}
                )  # fmt: skip
                for f in frames:
                    for aug in range(2):
                        e = gfp + rng.normal(size=n) * 2 / np.sqrt(f)
                        pred = 1 / (1 + np.exp(-3 * e)) if mode == "classify" else e
                        rows.append(
                            pl.DataFrame(
                                {"model_id": mid, "cell_uid": uid, "frame": f, "aug": aug, "kind": kind,
                                 "mode": mode, "fold": fold, "y_true": y, "y_pred": pred}
                            )
                        )  # fmt: skip
    store.write("predictions", pl.concat(rows))
    store.write("models", pl.DataFrame(models))
    return store


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return _tiny_store(tmp_path_factory.mktemp("rep") / "s")


def _extra_png(path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(path)
    plt.close(fig)


def test_report_html_and_markdown(tiny: Store, tmp_path) -> None:
    extra = tmp_path / "fig2_tracking.png"
    _extra_png(extra)
    oracle = pl.DataFrame({"cell_uid": tiny.read("cells")["cell_uid"]}).with_columns(
        oracle_prob=pl.lit(0.7), oracle_log_gfp=pl.lit(0.0)
    )
    out = tmp_path / "report"
    html_path, md_path = write_report(
        tiny, out, run_info={"time_taken": "2 min"}, extra_figures=[(extra, "Figure 2. Tracks")], oracle=oracle,
        n_permutations=500,
    )  # fmt: skip
    assert html_path.exists() and md_path.exists()
    text = html_path.read_text()

    # every image embedded as a decodable PNG, none referenced by file name
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(imgs) == 3
    for b64 in imgs:
        assert base64.b64decode(b64).startswith(PNG_MAGIC)
    assert 'src="figure' not in text
    # tables: metrics with the oracle, Table 1 with its pairs
    assert text.count("<table") == 3
    assert "f1_weighted" in text and "rmse" in text and "oracle" in text
    assert "cnn vs lstm" in text and "lstm vs tsfresh_xgb" in text
    # provenance, and the random weights said loudly
    assert "RANDOM WEIGHTS, NOT IMAGENET" in text
    for item in ("P1", "data_version", "tiny", "2 min", "polars", "duckdb", "xgboost", "100, 101"):
        assert item in text, item
    assert "n train / n test" in text and "8 / 12" in text

    md = md_path.read_text()
    assert "RANDOM WEIGHTS" in md and "| mode | checkpoint | pair |" in md
    pngs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(pngs) == 3
    for name in pngs:
        p = out / name
        assert p.exists() and p.stat().st_size > 1000 and p.read_bytes().startswith(PNG_MAGIC), name


def test_imagenet_weights_have_no_banner(tmp_path) -> None:
    store = _tiny_store(tmp_path / "s", weights="imagenet-vgg16")
    info = collect_run_info(store)
    assert info["weights"] == "ImageNet" and info["n_test"] == 12 and info["preset"] == "tiny"
    html_path, _ = write_report(store, tmp_path / "r", n_permutations=200)
    assert "WARNING" not in html_path.read_text()


def test_markdown_table() -> None:
    md = df_to_markdown(pl.DataFrame({"a": [1, 2], "b": [0.5, None]}))
    assert md.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.5000 |", "| 2 |  |"]


def test_cli_evaluate_then_report(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    store = _tiny_store(tmp_path / "s")
    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", str(store.root), "--permutations", "300", "--seed", "1"])
    assert args.func(args) == 0
    t1 = pl.read_parquet(store.root / "artifacts" / "evaluation" / "table1.parquet")
    assert t1.height == 2 * 4 * 3 and (t1["n_permutations"] == 300).all()
    assert store.read("metrics").height > 0
    args = parser.parse_args(["report", str(store.root), "--out", str(tmp_path / "out")])
    assert args.func(args) == 0
    assert (tmp_path / "out" / "report.html").exists()
    assert "300" in (tmp_path / "out" / "report.md").read_text()  # the permutations of the stored Table 1
    assert "report:" in capsys.readouterr().out
