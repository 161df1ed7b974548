"""The settings base: validation with clear errors, round trips through dicts and files, describe()."""

from __future__ import annotations

import json
from typing import Literal

import pytest

from lnpstore.runtime.settings import Field, Settings, settings
from lnpstore.store.errors import SettingsError


@settings
class Demo(Settings):
    t_in_frames: int = Field(20, ge=1, description="input frames")
    rule: Literal["exclude", "follow"] = Field("exclude", description="division rule")
    sizes_px: tuple[int, ...] = Field((1, 2), description="sizes")

    def __post_init__(self) -> None:
        if max(self.sizes_px) > self.t_in_frames:
            raise ValueError(f"sizes_px {self.sizes_px} above t_in_frames={self.t_in_frames}")


def test_bad_values_name_the_class_field_and_value():
    with pytest.raises(
        SettingsError, match=r"Demo: t_in_frames=0: Input should be greater than or equal to 1"
    ):
        Demo(t_in_frames=0)
    with pytest.raises(SettingsError, match=r"rule='both': Input should be 'exclude' or 'follow'"):
        Demo(rule="both")
    with pytest.raises(SettingsError, match=r"t_in_frames=2.5"):
        Demo(t_in_frames=2.5)
    with pytest.raises(SettingsError, match=r"^Demo: sizes_px \(1, 30\) above t_in_frames=20$"):
        Demo(sizes_px=(1, 30))  # a cross-field rule keeps its own message
    with pytest.raises(SettingsError, match="t_in_frames=0"):
        Demo().replace(t_in_frames=0)  # replace validates too


def test_round_trip_dict_json_and_toml(tmp_path):
    d = Demo(t_in_frames=7, rule="follow", sizes_px=(3,))
    assert Demo.from_dict(d.to_dict()) == d
    (tmp_path / "s.json").write_text(json.dumps({"settings": d.to_dict()}))
    assert Demo.load(tmp_path / "s.json", key="settings") == d
    (tmp_path / "s.toml").write_text('t_in_frames = 7\nrule = "follow"\nsizes_px = [3]\n')
    assert Demo.load(tmp_path / "s.toml") == d


def test_unknown_keys_and_bad_files_are_errors(tmp_path):
    with pytest.raises(SettingsError, match=r"unknown setting\(s\) t_in; known: rule, sizes_px, t_in_frames"):
        Demo.from_dict({"t_in": 3})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SettingsError, match="bad.json is not valid json"):
        Demo.load(tmp_path / "bad.json")
    with pytest.raises(SettingsError, match="does not exist"):
        Demo.load(tmp_path / "missing.toml")


def test_describe_lists_type_default_and_description():
    info = Demo.describe()
    assert info["t_in_frames"] == {"type": "int", "default": 20, "description": "input frames"}
    assert info["rule"]["description"] == "division rule"
