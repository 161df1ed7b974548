"""What defines a simulated plate: :class:`SimulationSettings` (validated, stored in ``truth/settings.json``),
its presets and the requested faults (:class:`FaultSpec`)."""

from __future__ import annotations

import dataclasses
import io
import os
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import tifffile
from pydantic import BeforeValidator, StringConstraints

from lnpstore.instrument.geometry import REFERENCE_PIXEL_SIZE_UM
from lnpstore.instrument.layout import CHANNELS
from lnpstore.runtime.settings import Field, Settings, settings
from lnpstore.simulate.constants import (
    CELL_DENSITY_PER_UM2,
    FAULT_KINDS,
    HEPG2_DIVISION_RATE_PER_H,
    MAX_DIVISION_RATE_PER_H,
    REF_FIELD_HEIGHT_PX,
    REF_FIELD_WIDTH_PX,
)
from lnpstore.store.errors import SettingsError

_FAULT_RE = re.compile(
    r"^(?P<kind>[a-z_]+):(?P<well>[A-Pa-p]\d{2})(?::(?P<arg>[^:]+))?(?::(?P<arg2>[^:]+))?$"
)


@dataclass(frozen=True)
class FaultSpec:
    """One requested fault, parsed from its text form (see :class:`SimulationSettings` ``faults``)."""

    kind: str
    well: str
    frames: tuple[int, ...] = ()
    field: int = 1
    channel_number: int = CHANNELS["CS"]

    @classmethod
    def parse(cls, text: str, n_frames: int) -> FaultSpec:
        """The fault of ``text`` (e.g. ``missing_frames:E04:30-32``) on a film of ``n_frames`` frames."""
        m = _FAULT_RE.match(text.strip())
        if not m or m["kind"] not in FAULT_KINDS:
            raise ValueError(
                f"fault {text!r} is not one of 'missing_frames:WELL[:FIRST-LAST]', "
                "'unreadable:WELL[:FRAME[:CHANNEL]]', 'empty_field:WELL[:FIELD]' (e.g. 'missing_frames:E04:30-32')"
            )
        kind, well, arg, arg2 = m["kind"], m["well"].upper(), m["arg"], m["arg2"]
        try:
            if kind == "missing_frames":
                if arg2 is not None:
                    raise ValueError("too many parts")
                first, last = (30, 32) if arg is None else _parse_range(arg)
                first, last = min(first, n_frames), min(last, n_frames)
                return cls(kind, well, frames=tuple(range(first, last + 1)))
            if kind == "unreadable":
                frame = min(10, n_frames) if arg is None else int(arg)
                ch = CHANNELS["CS"] if arg2 is None else _channel_number(arg2)
                return cls(kind, well, frames=(frame,), channel_number=ch)
            if arg2 is not None:
                raise ValueError("too many parts")
            return cls(kind, well, field=1 if arg is None else int(arg))
        except ValueError as exc:
            raise ValueError(f"fault {text!r}: {exc}") from None


def _parse_range(text: str) -> tuple[int, int]:
    """``FIRST-LAST`` or ``FRAME`` -> (first, last) frames, 1-based."""
    parts = text.split("-")
    if len(parts) == 1:
        return int(parts[0]), int(parts[0])
    if len(parts) != 2 or int(parts[0]) > int(parts[1]) or int(parts[0]) < 1:
        raise ValueError(f"frame range {text!r} must be FIRST-LAST with 1 <= FIRST <= LAST")
    return int(parts[0]), int(parts[1])


def _channel_number(text: str) -> int:
    """A channel name (``CS``) or C number (``C07``, ``7``) -> its C number."""
    if text.upper() in CHANNELS:
        return CHANNELS[text.upper()]
    num = int(text.upper().lstrip("C"))
    if num not in CHANNELS.values():
        raise ValueError(f"channel {text!r} is not one of {sorted(CHANNELS)} or their C numbers")
    return num


def _zstd_available() -> bool:
    """Whether tifffile can write zstd here (it needs imagecodecs)."""
    try:
        tifffile.imwrite(io.BytesIO(), np.zeros((4, 4), np.uint16), compression="zstd")
    except Exception:  # noqa: BLE001 - any failure means zstd cannot be written here
        return False
    return True


def _as_tuple(value: Any) -> Any:
    """A single value (a row letter, a dose, a fault) stands for a tuple of one."""
    return (value,) if isinstance(value, str | int | float) else value


_Tuple = BeforeValidator(_as_tuple)
_RowLetter = Annotated[
    str,
    StringConstraints(pattern=r"^[A-P]$"),
    BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
]
_Dose = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Column = Annotated[int, Field(ge=1, le=24)]
_FieldSizePx = Annotated[int, Field(ge=64, le=16384)]


@settings
class SimulationSettings(Settings):
    """Everything that defines a simulated plate; serialised to ``truth/settings.json``.

    The same settings and seed give identical files. See ``SimulationSettings.describe()`` for every field
    and ``docs/simulator.md`` for the model. Frame counts keep their stored names (``n_frames``,
    ``n_fields``) so that the settings of plates already written still load.
    """

    plate: str = Field(
        "LNP_Plate01",
        pattern=r"^[^\\/:*?\"<>|\s]+$",
        description="plate name used in file names (no spaces or path characters)",
    )
    seed: int = Field(0, ge=0, strict=True, description="the same settings and seed give identical files")
    scale: float = Field(
        1.0,
        ge=0.05,
        le=4.0,
        description="px per 0.1625 um px; the pixel size is 0.1625 / scale um (0.5 -> 0.325)",
    )
    rows: Annotated[tuple[_RowLetter, ...], _Tuple] = Field(
        ("C", "E", "G"), min_length=1, description="plate rows (distinct letters A-P)"
    )
    doses_ng: Annotated[tuple[_Dose, ...], _Tuple] = Field(
        (316.0, 31.6, 0.0), description="mRNA dose of each row, ng per well (0 = control)"
    )
    columns: Annotated[tuple[_Column, ...], _Tuple] = Field(
        (3, 4, 5), min_length=1, description="plate columns (distinct, 1-24), the same in every row"
    )
    n_fields: int = Field(2, ge=1, le=999, description="fields of view per well")
    n_frames: int = Field(
        72,
        ge=2,
        le=9999,
        description="time points (frames), 1-based in file names; the GFP target is read at the last",
    )
    frame_interval_min: float = Field(10.0, gt=0, allow_inf_nan=False, description="minutes between frames")
    field_width_px: _FieldSizePx | None = Field(None, description="image width, px (None: 2554 times scale)")
    field_height_px: _FieldSizePx | None = Field(
        None, description="image height, px (None: 2154 times scale)"
    )
    cells_per_field: int | None = Field(
        None,
        ge=0,
        le=5000,
        description="cells whose centre lies in the image at frame 1 (more live in a band around it); None: "
        "6.6e-4 cells per um^2 of field area",
    )
    control_lnp: bool = Field(
        True,
        description="control wells receive LNPs without mRNA (15 % of the top dose's particles); False: none",
    )
    compression: Literal["zlib", "zstd"] | None = Field(
        None, description="TIFF compression: None, zlib or zstd (zstd needs imagecodecs)"
    )
    faults: Annotated[tuple[str, ...], _Tuple] = Field(
        (),
        description="requested defects: missing_frames:WELL[:FIRST-LAST] (files of those frames absent, all "
        "fields and channels; default 30-32), unreadable:WELL[:FRAME[:CHANNEL]] (that file of field 1 holds "
        "garbage bytes; default frame 10, CS), empty_field:WELL[:FIELD] (no cells; default field 1)",
    )
    division_rate_per_h: float = Field(
        HEPG2_DIVISION_RATE_PER_H,
        ge=0,
        le=MAX_DIVISION_RATE_PER_H,
        strict=True,
        allow_inf_nan=False,
        description="cell divisions per cell and hour (0: none; default HepG2's, ln 2 / 48 h = "
        "HEPG2_DIVISION_RATE_PER_H); a cell rounds up, then becomes two daughters of half its area",
    )
    workers: int | None = dataclasses.field(
        default=Field(
            None,
            ge=1,
            description="processes writing fields (None: up to 2 by the CPUs, 1 for a plate under 5e7 "
            "pixel-frames); output does not depend on it",
        ),
        compare=False,
    )

    def __post_init__(self) -> None:
        def fail(msg: str) -> None:
            raise SettingsError(f"SimulationSettings: {msg}")

        if len(set(self.rows)) != len(self.rows):
            fail(f"`rows` must be distinct letters A-P, got {self.rows}")
        if len(self.doses_ng) != len(self.rows):
            fail(f"`doses_ng` needs one dose per row: {len(self.rows)} rows, {len(self.doses_ng)} doses")
        if len(set(self.columns)) != len(self.columns):
            fail(f"`columns` must be distinct integers 1-24, got {self.columns}")
        if self.compression == "zstd" and not _zstd_available():
            fail(
                "`compression='zstd'` needs the imagecodecs package. Hint: pip install imagecodecs, or use zlib"
            )
        for spec in self.fault_specs:
            if spec.well not in self.wells:
                fail(f"fault {spec} names well {spec.well}, which is not on the plate {list(self.wells)}")
            if spec.kind == "empty_field" and not 1 <= spec.field <= self.n_fields:
                fail(f"fault empty_field:{spec.well}:{spec.field}: field must be 1-{self.n_fields}")
            if spec.kind == "unreadable" and not 1 <= spec.frames[0] <= self.n_frames:
                fail(f"fault unreadable:{spec.well}:{spec.frames[0]}: frame must be 1-{self.n_frames}")

    # -- presets ------------------------------------------------------------------------------------
    @classmethod
    def demo(cls, seed: int = 0, **overrides: Any) -> SimulationSettings:
        """A small plate for the demo: 9 wells x 1 field x 72 frames, 640 x 560 px at scale 0.5, 25 cells.

        One field per well keeps the write under ~30 s on 2 cores (1.9 GB); ``demo(n_fields=2)`` doubles both.
        """
        kw: dict[str, Any] = dict(
            plate="LNP_Demo01",
            seed=seed,
            scale=0.5,
            n_fields=1,
            field_width_px=640,
            field_height_px=560,
            cells_per_field=25,
        )
        return cls(**{**kw, **overrides})

    @classmethod
    def tiny(cls, seed: int = 0, **overrides: Any) -> SimulationSettings:
        """For unit tests: 3 wells (one per dose), 1 field, 72 frames, 400 x 400 px at scale 0.5, 10 cells."""
        kw: dict[str, Any] = dict(
            plate="LNP_Tiny01",
            seed=seed,
            scale=0.5,
            columns=(3,),
            n_fields=1,
            field_width_px=400,
            field_height_px=400,
            cells_per_field=10,
        )
        return cls(**{**kw, **overrides})

    @classmethod
    def from_preset(cls, name: str, seed: int = 0, **overrides: Any) -> SimulationSettings:
        """Settings of a named preset: ``default`` (the study's plate), ``demo`` or ``tiny``."""
        if name == "default":
            return cls(**{"seed": seed, **overrides})
        if name in ("demo", "tiny"):
            return getattr(cls, name)(seed, **overrides)
        raise ValueError(f"unknown simulator preset {name!r}; choose default, demo or tiny")

    # -- derived ------------------------------------------------------------------------------------
    @property
    def pixel_size_um(self) -> float:
        """Pixel size, um."""
        return REFERENCE_PIXEL_SIZE_UM / self.scale

    @property
    def width_px(self) -> int:
        """Image width, px."""
        return self.field_width_px or int(round(REF_FIELD_WIDTH_PX * self.scale))

    @property
    def height_px(self) -> int:
        """Image height, px."""
        return self.field_height_px or int(round(REF_FIELD_HEIGHT_PX * self.scale))

    @property
    def n_cells(self) -> int:
        """Cells whose centre lies in the image at frame 1."""
        if self.cells_per_field is not None:
            return self.cells_per_field
        area_um2 = self.width_px * self.height_px * self.pixel_size_um**2
        return int(round(CELL_DENSITY_PER_UM2 * area_um2))

    @property
    def wells(self) -> dict[str, float]:
        """Well id -> dose in ng, row by row."""
        return {f"{r}{c:02d}": d for r, d in zip(self.rows, self.doses_ng, strict=True) for c in self.columns}

    @property
    def fault_specs(self) -> tuple[FaultSpec, ...]:
        """The parsed ``faults``."""
        return tuple(FaultSpec.parse(f, self.n_frames) for f in self.faults)

    def to_dict(self) -> dict[str, Any]:
        """The settings as stored in ``truth/settings.json``: ``workers`` left out (it does not change output)."""
        d = super().to_dict()
        d.pop("workers")
        return d

    @classmethod
    def load(cls, path: str | os.PathLike, *, key: str | None = "settings") -> SimulationSettings:
        """Read ``truth/settings.json`` back (its ``settings`` section by default)."""
        return super().load(path, key=key)
