"""The command line as a user meets it: weights checked first, a quiet log, plain progress lines."""

from __future__ import annotations

import logging
import socket
import sys

import pytest
from lnpstore.models import weights as W

from lnpstore.cli.main import configure_logging, main
from lnpstore.runtime.progress import LineProgress, bar
from lnpstore.store.core import Store


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """A user's machine without any copy of the weights and without network."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(W.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.delenv(W.ENV_VAR, raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed: connection refused
    monkeypatch.setenv(W.URL_ENV_VAR, f"http://127.0.0.1:{port}/{W.KERAS_FILENAME}")
    real = W.search_locations
    monkeypatch.setattr(W, "search_locations", lambda: [p for p in real() if "shared" not in p.parts])


@pytest.fixture(autouse=True)
def _restore_logging():
    """configure_logging changes the root logger; put it back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def test_run_stops_before_any_work_without_weights(no_weights, tmp_path, capsys):
    rc = main(["run", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "lnpstore run: error:" in err and "no copy of the ImageNet VGG16 weights" in err
    assert "cannot download" in err and "--weights random" in err
    assert not (tmp_path / "run").exists()  # nothing simulated, no store created


def test_embed_stops_before_any_work_without_weights(no_weights, tmp_path, capsys):
    store = Store.create(tmp_path / "store")
    rc = main(["embed", str(store.root)])
    err = capsys.readouterr().err
    assert rc == 2 and "no copy of the ImageNet VGG16 weights" in err
    assert not store.exists("features")


def test_third_party_info_only_with_verbose(capsys):
    for verbose, shown in ((0, False), (1, True)):
        configure_logging(verbose)
        logging.getLogger("distributed.scheduler").info("scheduler at tcp://x")
        logging.getLogger("jax._src.xla_bridge").info("Unable to initialize backend 'tpu'")
        logging.getLogger("lnpstore.study.pipeline").info("track            42 s")
        logging.getLogger("distributed.worker").warning("worker lost")
        logging.getLogger("tsfresh.feature_extraction.settings").warning("matrix_profile disabled")
        err = capsys.readouterr().err
        assert ("scheduler at" in err) is shown and ("backend 'tpu'" in err) is shown
        assert ("matrix_profile" in err) is shown
        assert "track            42 s" in err and "WARNING distributed.worker: worker lost" in err
        logging.getLogger("lnpstore.models.timeseries_stage").info("lstm-c-f0-t5: val_loss 0.5")
        for i in range(5):  # one warning per model, from one place in the code
            logging.getLogger("lnpstore.models.tsgbm").warning("model %d: few features", i)
        err = capsys.readouterr().err
        assert ("val_loss 0.5" in err) is shown
        assert err.count("few features") == (5 if shown else 3)


def test_plain_progress_lines_off_a_terminal(capsys, monkeypatch):
    monkeypatch.delenv("LNPSTORE_QUIET", raising=False)  # CI sets it to silence every bar
    assert not sys.stderr.isatty()  # pytest captures stderr
    assert isinstance(bar(desc="x", total=3), LineProgress)
    b = LineProgress(desc="track P", total=200, unit="field", interval_s=0.0)
    for _ in range(200):
        b.update(1)
    b.close()
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("\n") == len(b.lines) == 10  # every 10 %
    assert b.lines[0].startswith("  track P: 20/200 field (10 %)") and "(100 %)" in b.lines[-1]
    slow = LineProgress(desc="embed", total=200, unit="crop")  # 30 s between lines
    for _ in range(200):
        slow.update(1)
    assert slow.lines == []  # short work prints nothing; the stage's own line reports it


# -- check and sql (issue 14) ----------------------------------------------------------------------
def _store_with_images(tmp_path):
    import polars as pl

    from lnpstore.store import schema as S

    store = Store.create(tmp_path / "store")
    for plate in ("P1", "P2"):
        rows = [
            {c: None for c in S.table("images").column_names}
            | {
                "plate": plate,
                "well": "C03",
                "field": 1,
                "frame": t,
                "channel": "CS",
                "path": f"/x/{t}.tif",
                "status": "ok",
            }
            for t in (1, 2, 3)
        ]
        store.write("images", pl.DataFrame(rows))
    return store


def test_check_names_the_damaged_file_and_what_to_rerun(tmp_path, capsys):
    store = _store_with_images(tmp_path)
    assert main(["check", str(store.root)]) == 0
    assert "all present and readable" in capsys.readouterr().out
    store.partition_path("images", {"plate": "P2"}).unlink()
    assert main(["check", str(store.root)]) == 1
    out = capsys.readouterr().out
    assert "plate=P2/data.parquet: missing" in out and "fix: re-run lnpstore ingest PLATE_DIR" in out
    # every reading command says so instead of a traceback or a smaller count
    assert main(["sql", "SELECT count(*) FROM images", "--store", str(store.root)]) == 2
    err = capsys.readouterr().err
    assert "table `images`" in err and "is damaged" in err and "plate=P2" in err and "Traceback" not in err
    assert main(["info", str(store.root)]) == 0
    assert "1 damaged file(s)" in capsys.readouterr().out


def test_check_repairs_a_corrupt_marker(tmp_path, capsys):
    store = _store_with_images(tmp_path)
    (store.root / "lnpstore.json").write_text("{not json")
    assert main(["info", str(store.root)]) == 2
    assert "lnpstore.json is corrupt" in capsys.readouterr().err
    assert main(["check", str(store.root), "--repair"]) == 0
    assert "lnpstore.json rewritten (schema version" in capsys.readouterr().out
    assert Store.open(store.root).read("images").height == 6


def test_sql_is_read_only_unless_allowed(tmp_path, capsys):
    store = _store_with_images(tmp_path)
    part = store.partition_path("images", {"plate": "P1"})
    before = part.read_bytes()
    s = str(store.root)
    assert (
        main(
            [
                "sql",
                "SELECT plate, count(*) AS n FROM images GROUP BY plate ORDER BY plate",
                "--store",
                s,
                "--format",
                "csv",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == "plate,n\nP1,3\nP2,3\n"
    for text in (
        f"COPY (SELECT 1 AS x) TO '{part}' (FORMAT parquet)",
        f"COPY (SELECT 1 AS x) TO '{tmp_path / 'out.csv'}'",
        "SELECT * FROM read_text('/etc/hostname')",
        f"SELECT * FROM read_csv('{tmp_path / 'out.csv'}')",
        f"ATTACH '{tmp_path / 'x.db'}'",
    ):
        assert main(["sql", text, "--store", s]) == 2, text
        err = capsys.readouterr().err
        assert "SQL refused" in err and "--allow-" in err, err
    assert part.read_bytes() == before and not (tmp_path / "out.csv").exists()
    # the explicit options allow exports and other files
    out = tmp_path / "out.csv"
    assert main(["sql", f"COPY (SELECT plate FROM images) TO '{out}'", "--store", s, "--allow-write"]) == 0
    assert out.read_text().splitlines()[0] == "plate"
    assert (
        main(
            [
                "sql",
                f"SELECT count(*) AS n FROM read_csv('{out}')",
                "--store",
                s,
                "--allow-files",
                "--format",
                "csv",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.endswith("n\n6\n")
