"""Figures: written, non-empty PNGs; a clear error without tracks."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_crops import build_synthetic_store

from lnpstore.store.core import Store
from lnpstore.store.errors import LnpstoreError
from lnpstore.study.figures import make_tracking_figures, plot_displacement

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_figures_written(tmp_path: Path):
    store = build_synthetic_store(tmp_path)
    paths = make_tracking_figures(store, tmp_path / "figs")
    assert [p.name for p in paths] == ["fig2_uptake_expression.png", "fig5_displacement.png"]
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_figures_need_tracks(tmp_path: Path):
    with pytest.raises(LnpstoreError, match="no tracks"):
        plot_displacement(Store.create(tmp_path / "s"), tmp_path / "x.png")


def test_figures_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from lnpstore.cli.main import main

    store = build_synthetic_store(tmp_path)
    assert main(["figures", str(store.root), "--out", str(tmp_path / "cli")]) == 0
    assert "fig5_displacement.png" in capsys.readouterr().out
    assert (tmp_path / "cli" / "fig2_uptake_expression.png").stat().st_size > 0
    assert main(["crop", str(store.root), "--plate", "NOPE"]) == 2
