"""The one settings base: every settings class is a frozen dataclass that pydantic validates.

Declare a settings class with :func:`settings` and :class:`Settings`::

    @settings
    class CropSettings(Settings):
        t_in_frames: int = Field(20, ge=1, description="frames 1..t_in are cropped")
        division_rule: Literal["exclude", "follow"] = Field("exclude", description="...")

and it gets, once for all: type and range checks at construction and in ``dataclasses.replace`` (an
error names the class, the field, the bad value and what is allowed), ``to_dict`` (JSON-able, stored
with every output), ``from_dict`` (unknown keys are an error that lists the known ones), ``load``
(a JSON or TOML file, e.g. the ``track_stack.json`` a run recorded) and ``describe`` (each field's type,
default and description, for ``--help`` texts and the docs). Cross-field rules stay in
``__post_init__``, which pydantic runs after the field checks.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self, TypeVar, cast, dataclass_transform

from pydantic import ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass

from lnpstore.store.errors import SettingsError

T = TypeVar("T")

#: Unknown keyword arguments are errors; numpy scalars and other arbitrary types are not accepted
#: silently as settings values.
SETTINGS_CONFIG = ConfigDict(extra="forbid", validate_default=True)


def _message(cls_name: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        if not err["loc"]:  # raised in __post_init__ (a cross-field rule): its own message says it all
            ctx_error = (err.get("ctx") or {}).get("error")
            parts.append(str(ctx_error) if ctx_error is not None else err["msg"])
            continue
        loc = ".".join(str(x) for x in err["loc"])
        parts.append(f"{loc}={err.get('input')!r}: {err['msg']}")
    return f"{cls_name}: " + "; ".join(parts)


# Type checkers see a frozen dataclass. `Field` is deliberately not a field specifier: they read only a
# `default=` keyword there, and the settings write `Field(value, ...)`; without it every `= Field(...)`
# reads as a default (pydantic still checks at run time that required fields are given).
@dataclass_transform(frozen_default=True)
def settings(cls: type[T]) -> type[T]:
    """Class decorator: a frozen, pydantic-validated dataclass whose errors are :class:`SettingsError`."""
    validated = _pydantic_dataclass(frozen=True, config=SETTINGS_CONFIG)(cls)
    init = validated.__init__

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as exc:
            raise SettingsError(_message(cls.__name__, exc)) from None

    validated.__init__ = __init__  # type: ignore[method-assign]
    return cast(type[T], validated)  # the same class, now a pydantic dataclass


class Settings:
    """Methods shared by every settings class (see the module docstring)."""

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (``json.dumps`` writes them; tuples stay tuples, so a hash of
        the settings does not change with the base)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        """Settings from a mapping, e.g. one :meth:`to_dict` wrote; an unknown key is an error."""
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - known)
        if unknown:
            raise SettingsError(
                f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**dict(d))

    @classmethod
    def load(cls, path: str | os.PathLike, *, key: str | None = None) -> Self:
        """Settings from a JSON or TOML file; ``key`` picks a section (e.g. ``"settings"``)."""
        p = Path(path)
        data = read_settings_file(p, key=key)
        try:
            return cls.from_dict(data)
        except SettingsError as exc:
            raise SettingsError(f"settings file {p}: {exc}") from None

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied and validated."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    @classmethod
    def describe(cls) -> dict[str, dict[str, Any]]:
        """Per field: its type, default and description."""
        out = {}
        for name, info in cls.__pydantic_fields__.items():  # type: ignore[attr-defined]
            out[name] = {
                "type": getattr(info.annotation, "__name__", str(info.annotation)),
                "default": info.default,
                "description": info.description or "",
            }
        return out


def read_settings_file(path: str | os.PathLike, *, key: str | None = None) -> dict[str, Any]:
    """The mapping of setting names to values in a JSON or TOML file: its ``key`` section when ``key``
    is given (an error when absent), else the whole file. Errors name the file and what is wrong."""
    p = Path(path)
    try:
        text = p.read_text()
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except FileNotFoundError:
        raise SettingsError(f"settings file {p} does not exist") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(
            f"settings file {p} is not valid {p.suffix.lstrip('.') or 'JSON'}: {exc}"
        ) from None
    if key is not None:
        if not isinstance(data, dict) or key not in data:
            raise SettingsError(f"settings file {p} has no section {key!r}")
        data = data[key]
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {p}: expected a mapping of setting names to values")
    return data


__all__ = ["Field", "SETTINGS_CONFIG", "Settings", "SettingsError", "read_settings_file", "settings"]
