"""Tracking settings (:class:`TrackSettings`) and the constants of the tracks contract.

Every length is in um and converted with the plate's (or stack's) pixel size; frame counts are ints
named ``*_frames``. The settings are recorded with every output (``artifacts/tracking/<plate>.json``,
``track_stack.json``) and load back with ``TrackSettings.load(path, key="settings")``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

import polars as pl

from lnpstore.runtime.settings import Field, Settings, read_settings_file, settings
from lnpstore.store.errors import SettingsError
from lnpstore.tracking.detection import DetectSettings
from lnpstore.tracking.seeding import SeedSettings
from lnpstore.tracking.spots import SpotSettings

NODE_ID_STRIDE = 100_000  # node_id = track_id * NODE_ID_STRIDE + frame, unique within a field
ROUND_UP_FRAMES = 6  # a division is looked for within this many frames of a mitotic round-up
ROUND_UP_AREA = 0.75  # round-up: area at most this fraction of the median area before it
TRACK_CHANNELS = ("CS", "LNP", "GFP")  # the channels a plate's tracker reads (CS is segmented)
ELEVATIONS = ("distance", "intensity", "both")
STAINS = ("cytoplasm", "nucleus")
#: Fields of settings files written by older versions that are ignored when loading.
RETIRED_FIELDS = ("new_peak_min_radius_um",)

#: Columns of :func:`lnpstore.tracking.track_field`'s result (the tracks table without plate, well,
#: field, cell_uid).
FIELD_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "track_id": pl.Int32,
    "frame": pl.Int16,
    "node_id": pl.Int64,
    "parent_track_id": pl.Int32,
    "lineage_id": pl.Int32,
    "label_id": pl.Int32,
    "y_px": pl.Float64,
    "x_px": pl.Float64,
    "displacement_px": pl.Float64,
    "area_px": pl.Float64,
    "perimeter_px": pl.Float64,
    "eccentricity": pl.Float64,
    "solidity": pl.Float64,
    "mean_cs": pl.Float64,
    "mean_lnp": pl.Float64,
    "mean_gfp": pl.Float64,
    "lnp_spots": pl.Int32,
    "lnp_radial_frac": pl.Float64,
    "area_ratio": pl.Float64,
    "iou_prev": pl.Float64,
    "link_cost_px": pl.Float64,
    "gap_filled": pl.Boolean,
    "in_bounds": pl.Boolean,
    "flag_jump": pl.Boolean,
    "flag_area": pl.Boolean,
    "flag_lost": pl.Boolean,
    "stop_reason": pl.String,
}


def _num(default: float, description: str, **bounds: float) -> Any:
    """A finite number field, non-negative unless ``bounds`` say otherwise."""
    limits: dict[str, Any] = dict(bounds) or {"ge": 0}
    return Field(default, allow_inf_nan=False, description=description, **limits)


@settings
class TrackSettings(Settings):
    """Settings of seeding and tracking; lengths in um (converted with the plate's pixel size).

    The foreground (threshold method and factor, hole filling) is ``seeds``' (one definition of "cell
    pixel" for seeding and tracking). See ``TrackSettings.describe()`` for every field.
    """

    smoothing_sigma_um: float = _num(0.6, "Gaussian sigma of the image smoothing (once per frame)", gt=0)
    elevation: Literal["distance", "intensity", "both"] = Field(
        "intensity",
        description="watershed elevation: the negative smoothed intensity (cells meet at a dim seam), the "
        "foreground's distance transform, or both",
    )
    compactness: float = _num(0.0, "compactness of the watershed (0: classic)")
    marker_radius_um: float = _num(1.0, "radius of the disc marker at a cell's seed or lost core", gt=0)
    core_erosion_um: float = _num(
        3.0,
        "a cell's marker is the part of its previous region deeper than max(core_erosion_um, core_fraction "
        "* the region's largest depth): its core, deeper than a frame's motion",
    )
    core_fraction: float = _num(0.5, "see core_erosion_um")
    min_area_um2: float = _num(20.0, "a region smaller than this is 'lost'")
    new_peak_min_distance_um: float = _num(
        12.0,
        "a cell found by the seeding detector this far from every known cell's predicted centre becomes "
        "a competitor (a cell never seeded); 0 disables",
    )
    new_peak_every_frames: int = Field(
        4,
        ge=1,
        description="the seeding detector runs on the whole field every this many frames, and on the frames "
        "between only on the foreground blobs the known cells' areas do not explain (1: every frame)",
    )
    jump_mad_k: float = _num(8.0, "flag_jump when a displacement exceeds median + jump_mad_k * MAD")
    jump_floor_um: float = _num(1.5, "flag_jump's threshold is at least this")
    jump_max_um: float = _num(6.0, "flag_jump beyond this displacement; also the window's motion margin")
    area_ratio_max: float = _num(1.5, "flag_area when area / previous area is outside [1/max, max]", gt=1)
    iou_min: float = _num(
        0.3, "flag_area when the overlap with the previous region is below this", ge=0, le=1
    )
    motion_damping: float = _num(
        0.0,
        "the marker is moved by this times the cell's last displacement (motion prediction); 0 keeps it",
        ge=0,
        le=1,
    )
    area_median_max: float = _num(
        1.3,
        "flag_area when the area leaves [median / max, median * max] of the track's last "
        "area_median_frames areas (took in a neighbour, or lost part of itself); 0 disables",
    )
    area_median_frames: int = Field(10, ge=0, description="frames of the running median area; 0 disables")
    core_taken_max: float = _num(
        0.2, "flag_area when more than this fraction of the marker lies on a neighbour's marker; 0 disables"
    )
    predicted_max_um: float = _num(
        5.0, "flag_jump when the centre lies farther than this from the motion-predicted one; 0 disables"
    )
    division_min_fraction: float = _num(
        0.25,
        "a division: the region falls apart into two parts each at least this fraction of the previous "
        "area; 0 disables",
        ge=0,
        le=0.5,
    )
    edge_margin_um: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="a track stops ('edge') when its centre comes this close to the image's edge; None: the "
        "study's 96 px at 0.1625 um/px (15.6 um); 0 follows cells to the edge",
    )
    max_gap_frames: int = Field(
        1,
        ge=0,
        description="a cell lost for up to this many frames in a row is bridged by gap_filled nodes at its "
        "predicted centre; a longer loss stops it ('lost'); 0: no gaps",
    )
    report_new_cells: bool = Field(
        False,
        description="cells found after frame 1 become tracks of their own (not silent competitors), and so "
        "do foreground blobs no track covers that hold leftover_min_area_um2",
    )
    leftover_min_area_um2: float = _num(5.0, "see report_new_cells; 0 disables the leftover blobs")
    link_max_um: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="linking given masks: the largest centre-to-centre link between frames for regions "
        "that do not overlap; None: the median cell diameter of the frame",
    )
    method: Literal["window", "detect"] = Field(
        "window",
        description="window: seeds in frame 1 followed by a watershed in a window around each cell (the "
        "study's method, tuned on the simulator); detect: cells found in every frame at the expected cell "
        "size (background removed, dim cells kept; see lnpstore.tracking.detection) and linked "
        "(lnpstore.tracking.linking); made for real microscopy",
    )
    detect: DetectSettings = Field(
        default_factory=DetectSettings, description="method 'detect': per-frame detection"
    )
    seeds: SeedSettings = Field(default_factory=SeedSettings, description="the seeding detector's settings")
    spots: SpotSettings = Field(default_factory=SpotSettings, description="the LNP spot counter's settings")

    @classmethod
    def for_stain(cls, stain: str = "cytoplasm", **overrides: Any) -> TrackSettings:
        """Settings for a stain. ``cytoplasm`` (CellTracker, the default): the elevation is the smoothed
        intensity (cells meet at a dim membrane seam) and holes up to ``seeds.max_hole_um2`` (the dim
        nucleus) are filled. ``nucleus`` (Hoechst, H2B-GFP, ...): the elevation is the distance transform
        plus the intensity ("both"; a nucleus is deepest and brightest at its centre, and two touching
        nuclei meet at a waist), and only holes up to 10 um^2 are filled (a nucleus has no dark core);
        method "detect" places one cell per blob of the cell's size (``detect.markers="log"``), where a
        cytoplasm stain's cells are split at waists of the foreground ("distance")."""
        if stain == "cytoplasm":
            return cls(**overrides)
        if stain == "nucleus":
            kw: dict = {
                "elevation": "both",
                "seeds": SeedSettings(max_hole_um2=10.0),
                "detect": DetectSettings(markers="log"),
            }
            return cls(**{**kw, **overrides})
        raise SettingsError(f"unknown stain {stain!r}; choose one of {', '.join(STAINS)}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        """Settings from a mapping (e.g. ``track_stack.json``'s ``settings``); retired fields are ignored."""
        return super().from_dict({k: v for k, v in d.items() if k not in RETIRED_FIELDS})


def resolve_settings(
    *,
    stain: str = "cytoplasm",
    file: str | Path | None = None,
    base: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> TrackSettings:
    """The settings of a run, from (in increasing precedence) the stain's preset
    (:meth:`TrackSettings.for_stain`), ``base`` (a caller's defaults, e.g. track-stack's), a JSON or
    TOML ``file`` (a full or partial settings mapping, or a ``track_stack.json`` whose ``settings``
    section is used) and ``overrides`` (given flags; None values are ignored; ``seeds__x`` or ``seeds.x``
    names a nested field). Every value is validated; an error names the file and the field."""
    merged = TrackSettings.for_stain(stain).to_dict()
    _deep_update(merged, dict(base or {}))
    if file is not None:
        _deep_update(merged, _settings_file(Path(file)))
    flags: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        parts = key.replace("__", ".").split(".")
        node = flags
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    _deep_update(merged, flags)
    try:
        return TrackSettings.from_dict(merged)
    except SettingsError as exc:
        where = f"settings file {file}: " if file is not None else ""
        raise SettingsError(f"{where}{exc}") from None


def _settings_file(path: Path) -> dict[str, Any]:
    """The settings mapping of a JSON/TOML file (its ``settings`` section when it has one, as in a
    run's ``track_stack.json``)."""
    data = read_settings_file(path)
    return data["settings"] if isinstance(data.get("settings"), dict) else data


def _deep_update(target: dict[str, Any], new: Mapping[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, Mapping) and isinstance(target.get(k), dict):
            _deep_update(target[k], v)
        else:
            target[k] = v


def gap_node(t: Any, frame: int, y_px: float, x_px: float, *, in_bounds: bool) -> dict[str, Any]:
    """The node of a frame in which track ``t`` (``track_id``, ``parent_track_id``, ``lineage_id``, and
    its last centre ``y``, ``x`` in px) lost its region: the centre is motion-predicted, no label pixels,
    ``gap_filled`` and ``flag_lost`` set (exports split the track there)."""
    node: dict[str, Any] = {c: None for c in FIELD_COLUMNS}
    node.update(
        track_id=t.track_id,
        frame=frame,
        node_id=t.track_id * NODE_ID_STRIDE + frame,
        parent_track_id=t.parent_track_id,
        lineage_id=t.lineage_id,
        y_px=y_px,
        x_px=x_px,
        displacement_px=math.hypot(y_px - t.y, x_px - t.x),
        in_bounds=in_bounds,
        gap_filled=True,
        flag_jump=False,
        flag_area=False,
        flag_lost=True,
    )
    return node
