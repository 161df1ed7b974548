"""simulate_plate's run of the fields: the output does not depend on how many processes write it."""

from __future__ import annotations

from pathlib import Path

from lnpstore.simulate import SimulationSettings, simulate_plate


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_output_does_not_depend_on_workers(tmp_path: Path) -> None:
    """One worker (in this process) and two (a spawned process pool) write the same bytes, every file."""
    kw = dict(n_frames=3, n_fields=2, field_width_px=160, field_height_px=128, cells_per_field=4)
    one = simulate_plate(tmp_path / "one", SimulationSettings.tiny(7, workers=1, **kw), show_progress=False)
    two = simulate_plate(tmp_path / "two", SimulationSettings.tiny(7, workers=2, **kw), show_progress=False)
    a, b = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert len(a) == 3 * 2 * 3 * 4 + 2 + 1 + 6 + 6 + 6 * (1 + 3)  # images, mlf/mrf, map, truth, labels, ctc
    assert a == b
    assert one.settings == two.settings  # workers is not part of the plate's identity


def test_a_plain_script_without_main_guard_simulates_with_two_workers(tmp_path):
    """The README's Python example: simulate_plate at a script's top level, 2 worker processes."""
    import subprocess
    import sys

    script = tmp_path / "plain.py"
    script.write_text(
        "from lnpstore.simulate import SimulationSettings, simulate_plate\n"
        "p = simulate_plate('plate', SimulationSettings.tiny(seed=0, workers=2), show_progress=False)\n"
        "print('fields', len(list(p.plate_dir.glob('*C07.tif'))))\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("fields ") and int(out.stdout.split()[1]) > 0
