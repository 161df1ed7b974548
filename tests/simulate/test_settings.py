"""SimulationSettings on the settings base: validation, presets, what is stored, faults."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lnpstore.instrument.layout import CHANNELS
from lnpstore.simulate import HEPG2_DIVISION_RATE_PER_H, FaultSpec, SimulationSettings
from lnpstore.store.errors import SettingsError


def test_settings_validation_errors() -> None:
    with pytest.raises(ValueError, match="one dose per row"):
        SimulationSettings(rows=("C", "E"), doses_ng=(316.0,))
    with pytest.raises(ValueError, match="not one of"):
        SimulationSettings(faults=("broken:C03",))
    with pytest.raises(ValueError, match="not on the plate"):
        SimulationSettings(faults=("unreadable:H12",))
    for bad in (-0.01, 2.0, float("nan")):
        with pytest.raises(ValueError, match="division_rate_per_h"):
            SimulationSettings(division_rate_per_h=bad)
    assert HEPG2_DIVISION_RATE_PER_H == pytest.approx(np.log(2) / 48)
    assert SimulationSettings().division_rate_per_h == HEPG2_DIVISION_RATE_PER_H  # the default
    assert SimulationSettings.demo().division_rate_per_h == HEPG2_DIVISION_RATE_PER_H
    assert SimulationSettings.tiny().division_rate_per_h == HEPG2_DIVISION_RATE_PER_H
    hep = SimulationSettings.demo(division_rate_per_h=HEPG2_DIVISION_RATE_PER_H)
    assert hep.division_rate_per_h == HEPG2_DIVISION_RATE_PER_H
    with pytest.raises(ValueError, match="scale"):
        SimulationSettings(scale=0)
    demo = SimulationSettings.demo()
    assert (demo.width_px, demo.height_px, demo.pixel_size_um) == (640, 560, 0.325)
    assert SimulationSettings().n_cells > 50 and (
        SimulationSettings().width_px,
        SimulationSettings().height_px,
    ) == (
        2554,
        2154,
    )


def test_bad_values_name_the_field_and_single_values_stand_for_tuples() -> None:
    for kw, field in (
        (dict(plate="a b"), "plate"),
        (dict(seed=True), "seed"),
        (dict(rows=("C", "C", "E")), "rows"),
        (dict(columns=(3, 25, 4)), "columns"),
        (dict(n_frames=1), "n_frames"),
        (dict(compression="lzw"), "compression"),
        (dict(division_rate_per_h=True), "division_rate_per_h"),
        (dict(workers=0), "workers"),
    ):
        with pytest.raises(SettingsError, match=field):
            SimulationSettings(**kw)
    s = SimulationSettings(rows="e", doses_ng=31.6, columns=4, faults="empty_field:E04")
    assert (s.rows, s.doses_ng, s.columns, s.faults) == (("E",), (31.6,), (4,), ("empty_field:E04",))
    assert SimulationSettings(scale=1, doses_ng=(316, 0, 0)).doses_ng == (316.0, 0.0, 0.0)


def test_stored_settings_leave_out_workers_and_load_back(tmp_path: Path) -> None:
    s = SimulationSettings.tiny(seed=3, faults=("missing_frames:E03:5-6",), workers=2)
    d = s.to_dict()
    assert "workers" not in d and list(d["faults"]) == ["missing_frames:E03:5-6"]
    assert SimulationSettings.from_dict(d) == s  # workers does not take part in equality
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"settings": d, "derived": {}}))
    assert SimulationSettings.load(path) == s
    with pytest.raises(SettingsError, match="unknown setting"):
        SimulationSettings.from_dict({**d, "n_frame": 3})
    described = SimulationSettings.describe()
    assert set(described) == {*d, "workers"} and all(v["description"] for v in described.values())


def test_presets() -> None:
    assert SimulationSettings.from_preset("tiny", 4) == SimulationSettings.tiny(4)
    assert SimulationSettings.from_preset("default", 1, n_frames=5).n_frames == 5
    with pytest.raises(ValueError, match="unknown simulator preset"):
        SimulationSettings.from_preset("huge")
    tiny = SimulationSettings.tiny()
    assert list(tiny.wells) == ["C03", "E03", "G03"] and tiny.n_cells == 10


def test_fault_specs_parse_with_defaults_and_clamps() -> None:
    assert FaultSpec.parse("missing_frames:e03", 72) == FaultSpec(
        "missing_frames", "E03", frames=(30, 31, 32)
    )
    assert FaultSpec.parse("missing_frames:E03:70-80", 72).frames == (70, 71, 72)
    assert FaultSpec.parse("unreadable:C03:5:BF", 72) == FaultSpec(
        "unreadable", "C03", frames=(5,), channel_number=CHANNELS["BF"]
    )
    assert FaultSpec.parse("unreadable:C03", 8).frames == (8,)
    assert FaultSpec.parse("empty_field:G03:2", 72).field == 2
    for bad in ("missing_frames:E03:5-3", "unreadable:C03:5:C99", "empty_field:G03:1:2"):
        with pytest.raises(ValueError, match="fault"):
            FaultSpec.parse(bad, 72)
    with pytest.raises(SettingsError, match="field must be 1-1"):
        SimulationSettings.tiny(faults=("empty_field:G03:2",))
