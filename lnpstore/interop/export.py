"""Export tracks in the community's formats: CTC, GEFF, napari and CSV.

Every format takes the tracks contract of :mod:`lnpstore.ctc` (one row per node: ``track_id``,
``frame`` 1-based, ``parent_track_id``, ``lineage_id``, ``label_id``, ``y_px``, ``x_px``) and is
written atomically (a temporary file or folder beside ``out``, then a rename), so a re-run replaces
the previous export and an interrupted one leaves it intact.

* ``ctc``: the Cell Tracking Challenge result layout (``res_track.txt`` + ``maskNNN.tif``) in the
  folder ``out``: :func:`lnpstore.ctc.write_ctc`. The only format that needs the label images.
* ``geff``: a GEFF zarr folder (Graph Exchange File Format, written by the ``geff`` package). Nodes
  carry the axes ``t`` (minutes since the first frame), ``y``, ``x`` (um), and ``frame`` (1-based),
  ``y_px``, ``x_px``, ``label_id``, ``track_id``, ``lineage_id``, ``parent_track_id`` and every other
  numeric or boolean column of the tracks; edges are the links within a track and parent -> daughter.
  ``track_id`` is declared the tracklet property (when every parent has 0 or >= 2 daughters, as GEFF's
  maximal-tracklet rule needs) and ``lineage_id`` the lineage property.
* ``napari``: an ``.npz`` holding the tracks layer's (N, 4) array ``track_id, t, y, x`` (``t`` the
  0-based frame index, ``y, x`` in px, as the movie's own layers) and the parent graph. Load it with
  two lines::

      data, kwargs = napari_tracks("tracks.npz")
      viewer.add_tracks(data, **kwargs)

* ``csv``: one row per node: ``track_id, frame, t_min, parent_track_id, lineage_id, label_id,
  y_px, x_px, y_um, x_um`` and then every other column of the tracks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import polars as pl

from lnpstore._version import __version__
from lnpstore.interop.ctc import (
    LabelFrames,
    TrackExportError,
    check_tracks,
    track_table,
    write_ctc,
)
from lnpstore.store.atomic import atomic_dir, atomic_open

log = logging.getLogger(__name__)

ExportFormat = Literal["ctc", "geff", "napari", "csv"]
FORMATS: tuple[str, ...] = ("ctc", "geff", "napari", "csv")

#: node_id = track_id * NODE_STRIDE + frame where the tracks carry no usable ``node_id``.
NODE_STRIDE = 100_000


def _check_units(pixel_size_um: float, frame_interval_min: float) -> None:
    for name, v in (("pixel_size_um", pixel_size_um), ("frame_interval_min", frame_interval_min)):
        if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
            raise TrackExportError(f"`{name}` must be a positive number, got {v!r}")


def export_tracks(
    tracks: pl.DataFrame,
    labels: LabelFrames | None,
    out: str | os.PathLike,
    *,
    format: ExportFormat = "ctc",
    pixel_size_um: float,
    frame_interval_min: float,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``tracks`` to ``out`` in ``format`` ("ctc", "geff", "napari" or "csv"); return the path.

    ``labels`` (T x Y x X integer array or iterable of 2-D frames, frame 1 first) is needed for
    "ctc" only. ``pixel_size_um`` (um per px) and ``frame_interval_min`` (minutes between frames)
    give the units. ``metadata`` (JSON-serialisable, e.g. plate, well, field) goes into the GEFF's
    ``extra`` and the napari file.
    """
    _check_units(pixel_size_um, frame_interval_min)
    out = Path(out)
    if format == "ctc":
        if labels is None:
            raise TrackExportError("the CTC format needs the label images (labels=None was given)")
        return write_ctc(out, tracks, labels, kind="RES").folder
    if format == "geff":
        return write_geff(
            out, tracks, pixel_size_um=pixel_size_um, frame_interval_min=frame_interval_min, metadata=metadata
        )
    if format == "napari":
        return write_napari(
            out, tracks, pixel_size_um=pixel_size_um, frame_interval_min=frame_interval_min, metadata=metadata
        )
    if format == "csv":
        return write_tracks_csv(
            out, tracks, pixel_size_um=pixel_size_um, frame_interval_min=frame_interval_min
        )
    raise TrackExportError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")


# -- GEFF -----------------------------------------------------------------------------------------


def _node_ids(df: pl.DataFrame) -> np.ndarray:
    """The tracks' ``node_id`` where present, complete, unique and >= 0; else track_id * stride + frame."""
    if "node_id" in df.columns:
        s = df.get_column("node_id")
        if (
            s.dtype.is_integer()
            and s.null_count() == 0
            and s.n_unique() == df.height
            and cast(int, s.min() or 0) >= 0
        ):
            return s.cast(pl.Int64).to_numpy()
        log.info(
            "tracks' node_id is incomplete or not unique: node ids are track_id * %d + frame", NODE_STRIDE
        )
    if (last := int(cast(int | None, df["frame"].max()) or 0)) >= NODE_STRIDE:
        raise TrackExportError(f"frames reach {last}; node ids need frames < {NODE_STRIDE}")
    return (
        df.get_column("track_id").cast(pl.Int64).to_numpy() * NODE_STRIDE + df.get_column("frame").to_numpy()
    )


def _edges(df: pl.DataFrame, node_ids: np.ndarray) -> np.ndarray:
    """(E, 2) source -> target node ids: consecutive nodes of a track, then parent end -> daughter start.
    ``df`` is sorted by track, frame (as :func:`check_tracks` returns it)."""
    tid = df.get_column("track_id").to_numpy()
    same = tid[1:] == tid[:-1]
    within = np.stack([node_ids[:-1][same], node_ids[1:][same]], axis=1)
    starts = np.r_[0, np.flatnonzero(~same) + 1] if tid.size else np.zeros(0, int)
    ends = np.r_[np.flatnonzero(~same), tid.size - 1] if tid.size else np.zeros(0, int)
    first = {int(tid[i]): int(node_ids[i]) for i in starts}
    last = {int(tid[i]): int(node_ids[i]) for i in ends}
    per_track = track_table(df, checked=False).filter(pl.col("parent_track_id").is_not_null())
    division = np.array(
        [[last[p], first[t]] for t, p in per_track.select("track_id", "parent_track_id").iter_rows()],
        dtype=np.int64,
    ).reshape(-1, 2)
    return np.concatenate([within.reshape(-1, 2), division]).astype(np.int64)


def _prop(series: pl.Series) -> dict[str, Any] | None:
    """A GEFF property (values, missing) from a column; None for a column GEFF cannot hold."""
    dt = series.dtype
    if dt == pl.Boolean:
        values = series.fill_null(False).to_numpy().astype(bool)
    elif dt.is_integer():
        values = series.fill_null(0).to_numpy()
    elif dt.is_float():
        values = series.fill_null(np.nan).to_numpy().astype(np.float64)
    elif dt in (pl.String, pl.Categorical, pl.Enum):
        values = np.asarray(series.cast(pl.String).fill_null("").to_list(), dtype=str)
    else:
        return None
    missing = series.is_null().to_numpy() if series.null_count() else None
    return {"values": values, "missing": missing}


def write_geff(
    out: str | os.PathLike,
    tracks: pl.DataFrame,
    *,
    pixel_size_um: float,
    frame_interval_min: float,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write the track graph as a GEFF zarr folder at ``out`` (see the module docstring); return it.

    Axes: ``t`` in minutes since frame 1 (``(frame - 1) * frame_interval_min``), ``y``, ``x`` in um
    (``px * pixel_size_um``). An existing GEFF at ``out`` is replaced; anything else there is an error.
    """
    import geff
    from geff.core_io import write_arrays
    from geff.validate.tracks import validate_lineages, validate_tracklets
    from geff_spec import Axis, DisplayHint, GeffMetadata

    _check_units(pixel_size_um, frame_interval_min)
    df = check_tracks(tracks)
    out = Path(out)
    if out.exists() and not _is_geff(out):
        raise TrackExportError(
            f"{out} exists and is not a GEFF folder. Hint: give a new path, e.g. tracks.geff"
        )
    node_ids = _node_ids(df)
    edges = _edges(df, node_ids)
    frame = df.get_column("frame").to_numpy().astype(np.int64)
    props: dict[str, dict[str, Any]] = {
        "t": {"values": (frame - 1) * float(frame_interval_min), "missing": None},
        "y": {"values": df.get_column("y_px").to_numpy() * float(pixel_size_um), "missing": None},
        "x": {"values": df.get_column("x_px").to_numpy() * float(pixel_size_um), "missing": None},
        "frame": {"values": frame, "missing": None},
    }
    skipped = []
    for c in df.columns:
        if c in props or c == "node_id":
            continue
        p = _prop(df.get_column(c))
        if p is None:
            skipped.append(c)
        else:
            props[c] = p
    if skipped:
        log.info("GEFF export leaves out column(s) of unsupported type: %s", skipped)
    per_track = track_table(df, checked=False)
    n_daughters = per_track.group_by("parent_track_id").len().drop_nulls("parent_track_id")
    track_props: dict[str, str] = {"lineage": "lineage_id"}
    lineage_id = df.get_column("lineage_id").to_numpy()
    ok, errors = validate_lineages(node_ids, edges, lineage_id)
    if not ok:  # check_tracks makes this unreachable; kept so a broken file is never declared valid
        raise TrackExportError(f"lineages are not the graph's connected components: {errors[:3]}")
    if n_daughters.filter(pl.col("len") == 1).height == 0:
        ok, errors = validate_tracklets(node_ids, edges, df.get_column("track_id").to_numpy())
        if ok:
            track_props["tracklet"] = "track_id"
    if "tracklet" not in track_props:
        log.info("tracks with a single daughter: track_id is not declared GEFF's tracklet property")
    extra = {
        "lnpstore": {
            "package_version": __version__,
            "pixel_size_um": float(pixel_size_um),
            "frame_interval_min": float(frame_interval_min),
            "t": "minutes since frame 1: (frame - 1) * frame_interval_min",
            "y_x": "um: px * pixel_size_um; y_px, x_px hold the pixel centroid",
            "frame": "1-based frame; label_id is the node's value in that frame's label image",
            **(dict(metadata) if metadata else {}),
        }
    }
    meta = GeffMetadata(
        geff_version=geff.__version__,
        directed=True,
        axes=[
            Axis(name="t", type="time", unit="minute"),
            Axis(name="y", type="space", unit="micrometer"),
            Axis(name="x", type="space", unit="micrometer"),
        ],
        node_props_metadata={},
        edge_props_metadata={},
        track_node_props=track_props,  # type: ignore[arg-type]
        display_hints=DisplayHint(display_horizontal="x", display_vertical="y", display_time="t"),
        extra=extra,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out) as tmp:
        tmp.rmdir()  # geff creates the folder itself
        write_arrays(
            str(tmp),
            node_ids.astype(np.uint64),
            props,  # type: ignore[arg-type]
            edges.astype(np.uint64),
            {},
            meta,
            structure_validation=True,
        )
    return out


def _is_geff(path: Path) -> bool:
    """Whether ``path`` is a GEFF zarr folder (its attributes hold GEFF metadata)."""
    from geff_spec import GeffMetadata

    if not path.is_dir():
        return False
    try:
        GeffMetadata.read(str(path))
    except Exception:
        return False
    return True


# -- napari ---------------------------------------------------------------------------------------


def _atomic_file(out: Path, write) -> Path:  # noqa: ANN001 - write(file object)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_dir():
        raise TrackExportError(f"{out} is a folder; give a file path")
    with atomic_open(out, "wb") as fh:
        write(fh)
    return out


def write_napari(
    out: str | os.PathLike,
    tracks: pl.DataFrame,
    *,
    pixel_size_um: float,
    frame_interval_min: float,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write napari's tracks-layer data to the ``.npz`` file ``out``; read it with :func:`napari_tracks`.

    Arrays: ``data`` (N, 4) float64 ``track_id, t, y, x`` (t = frame - 1, the 0-based index into the
    movie; y, x in px), sorted by track and t; ``graph_daughter``, ``graph_parent`` (int64 pairs: the
    parent graph); ``pixel_size_um``, ``frame_interval_min``; ``metadata`` (JSON text).
    """
    import json

    _check_units(pixel_size_um, frame_interval_min)
    df = check_tracks(tracks)
    out = Path(out)
    if out.suffix != ".npz":
        raise TrackExportError(f"the napari export is an .npz file; got {out.name}. Hint: --out tracks.npz")
    data = np.stack(
        [
            df.get_column("track_id").to_numpy().astype(np.float64),
            df.get_column("frame").to_numpy().astype(np.float64) - 1.0,
            df.get_column("y_px").to_numpy(),
            df.get_column("x_px").to_numpy(),
        ],
        axis=1,
    )
    links = track_table(df, checked=False).filter(pl.col("parent_track_id").is_not_null())
    arrays = {
        "data": data,
        "columns": np.asarray(["track_id", "t", "y", "x"]),
        "graph_daughter": links.get_column("track_id").to_numpy().astype(np.int64),
        "graph_parent": links.get_column("parent_track_id").to_numpy().astype(np.int64),
        "pixel_size_um": np.float64(pixel_size_um),
        "frame_interval_min": np.float64(frame_interval_min),
        "metadata": np.asarray(json.dumps({"package_version": __version__, **(dict(metadata or {}))})),
    }
    # numpy's stub lets a ** mapping fill savez's allow_pickle: bool
    return _atomic_file(out, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]


def napari_tracks(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Load an export of :func:`write_napari` as napari's ``add_tracks`` arguments.

    Returns ``(data, {"graph": graph})``: ``data`` (N, 4) ``track_id, t, y, x`` (t 0-based frame, y, x
    in px) and ``graph`` ``{daughter_track_id: [parent_track_id]}``. Usage::

        data, kwargs = napari_tracks("tracks.npz")
        viewer.add_tracks(data, **kwargs)

    Add ``scale=(1, px_um, px_um)`` to ``add_tracks`` (and the image layers) to show um.
    """
    p = Path(path)
    if not p.is_file():
        raise TrackExportError(
            f"{p} does not exist. Hint: export with `lnpstore export-tracks --format napari`"
        )
    with np.load(p, allow_pickle=False) as z:
        if "data" not in z or "graph_daughter" not in z:
            raise TrackExportError(f"{p} is not an lnpstore napari export (no `data` / `graph_*` arrays)")
        data = np.asarray(z["data"], dtype=np.float64)
        graph = {int(d): [int(q)] for d, q in zip(z["graph_daughter"], z["graph_parent"], strict=True)}
    return data, {"graph": graph}


# -- CSV ------------------------------------------------------------------------------------------

CSV_FIRST = (
    "track_id",
    "frame",
    "t_min",
    "parent_track_id",
    "lineage_id",
    "label_id",
    "y_px",
    "x_px",
    "y_um",
    "x_um",
)


def write_tracks_csv(
    out: str | os.PathLike, tracks: pl.DataFrame, *, pixel_size_um: float, frame_interval_min: float
) -> Path:
    """Write one row per node to the CSV file ``out``: ``track_id, frame`` (1-based), ``t_min``
    (minutes since frame 1), ``parent_track_id`` (empty for none), ``lineage_id, label_id``,
    ``y_px, x_px``, ``y_um, x_um``, then the tracks' other columns (list columns joined with ';')."""
    _check_units(pixel_size_um, frame_interval_min)
    df = check_tracks(tracks).with_columns(
        ((pl.col("frame").cast(pl.Float64) - 1.0) * float(frame_interval_min)).alias("t_min"),
        (pl.col("y_px") * float(pixel_size_um)).alias("y_um"),
        (pl.col("x_px") * float(pixel_size_um)).alias("x_um"),
    )
    rest = [c for c in df.columns if c not in CSV_FIRST]
    df = df.select(*CSV_FIRST, *rest)
    nested = [c for c, t in df.schema.items() if t.is_nested()]
    if nested:  # CSV holds no lists: join their items with ';'
        df = df.with_columns(pl.col(c).cast(pl.List(pl.String)).list.join(";") for c in nested)
    return _atomic_file(Path(out), lambda fh: df.write_csv(fh))
