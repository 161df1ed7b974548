"""The Python API from a plain script: no ``if __name__ == "__main__":`` guard needed for local work."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

#: The smallest plate and protocol that still runs every stage (as tests/study/test_pipeline.py TINY).
TINY = {
    "sim_preset": "tiny",
    "sim_overrides": (
        ("columns", (3, 4)),
        ("cells_per_field", 16),
        ("n_frames", 30),
    ),  # 30 frames: t <= 20 and a GFP target
    "n_augs": 1,
    "n_folds": 2,
    "cnn_epochs": 1,
    "lstm_samples": 1,
    "tsfresh_samples": 1,
    "checkpoints_frames": (5, 20),
    "n_permutations": 100,
}


def test_run_study_from_a_plain_script(tmp_path):
    script = tmp_path / "analysis.py"
    script.write_text(
        textwrap.dedent(
            f"""\
            from lnpstore.study.pipeline import run_study

            result = run_study({str(tmp_path / "run")!r}, overrides={TINY!r}, weights="random",
                               show_progress=False)
            print("REPORT", result.report_html)
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=1800
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bootstrapping phase" not in proc.stderr and "Nanny failed" not in proc.stderr
    report = proc.stdout.split("REPORT ", 1)[1].strip()
    assert report.endswith("report.html")
    (meta,) = (tmp_path / "run" / "store" / "artifacts" / "tracking").glob("*.json")
    assert "threads" in json.loads(meta.read_text())["executor"]  # local work in threads
