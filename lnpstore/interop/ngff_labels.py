"""A tracked field's label movie and tracks as OME-Zarr labels (NGFF 0.5 ``labels/`` + ``image-label``).

Two targets, both opened by napari (napari-ome-zarr) with the image and its labels as layers:

* a standalone OME-Zarr image (``out.zarr``): the field's channels (T x C x 1 x Y x X, from the store's
  images, TIFF or OME-Zarr alike) with ``labels/tracks``;
* the field's own image inside the OME-Zarr plate it was ingested from (``plate.zarr/C/3/0``): only
  ``labels/tracks`` is added (NGFF 0.5 plates; the image is left untouched).

The label image ``labels/tracks/0`` has the image's axes but its channel axis, z of size 1 (pixel value =
track_id, 0 = background, as the store's label movies), and the image's scale: napari-ome-zarr shows
the image as one layer per channel and the labels as one more layer of the same axes. Its ``image-label``
metadata hold a colour per track (seeded, stable) and per-track ``properties``: ``track_id``,
``parent_track_id`` (-1: none), ``lineage_id``, ``first_frame``, ``last_frame`` (1-based), ``n_nodes``:
a lineage browser reads the division graph from them. Written with yaozarrs through zarr-python,
atomically (the label group in a temporary folder, then renamed; the ``labels`` list rewritten whole).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lnpstore._version import __version__
from lnpstore.store.atomic import atomic_dir, atomic_write_bytes
from lnpstore.store.core import Store
from lnpstore.store.errors import TrackExportError

log = logging.getLogger(__name__)

LABEL_NAME = "tracks"
#: Seed of the label colours (a track keeps its colour across exports).
COLOR_SEED = 0


def track_properties(tracks: pl.DataFrame) -> list[dict[str, Any]]:
    """One ``image-label`` property per track: label-value (= track_id), parent, lineage, frames."""
    per = (
        tracks.group_by("track_id")
        .agg(
            pl.col("parent_track_id").first(),
            pl.col("lineage_id").first(),
            pl.col("frame").min().alias("first_frame"),
            pl.col("frame").max().alias("last_frame"),
            pl.len().alias("n_nodes"),
        )
        .sort("track_id")
    )
    return [
        {
            "label-value": int(r["track_id"]),
            "track_id": int(r["track_id"]),
            "parent_track_id": -1 if r["parent_track_id"] is None else int(r["parent_track_id"]),
            "lineage_id": -1 if r["lineage_id"] is None else int(r["lineage_id"]),
            "first_frame": int(r["first_frame"]),
            "last_frame": int(r["last_frame"]),
            "n_nodes": int(r["n_nodes"]),
        }
        for r in per.iter_rows(named=True)
    ]


def track_colors(track_ids: Sequence[int], seed: int = COLOR_SEED) -> list[dict[str, Any]]:
    """A bright opaque RGBA colour per track id, from a generator seeded with ``seed`` and the id."""
    out = []
    for t in track_ids:
        rgb = np.random.default_rng([seed, int(t)]).integers(64, 256, size=3)
        out.append({"label-value": int(t), "rgba": [*(int(v) for v in rgb), 255]})
    return out


def label_image_model(axes: Sequence[Any], scale: Sequence[float], tracks: pl.DataFrame):  # noqa: ANN201
    """The NGFF 0.5 ``LabelImage`` of the tracks' label movie: the parent image's ``axes`` (yaozarrs
    axis models) and ``scale``, one level ``0``, colours and properties per track."""
    from yaozarrs import v05

    props = track_properties(tracks)
    image_label: dict[str, Any] = {"source": {"image": "../../"}}
    if props:
        image_label["colors"] = track_colors([p["track_id"] for p in props])
        image_label["properties"] = props
    return v05.LabelImage.model_validate(
        {
            "version": "0.5",
            "multiscales": [
                {
                    "name": LABEL_NAME,
                    "axes": [a.model_dump(exclude_none=True) for a in axes],
                    "datasets": [
                        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": list(scale)}]}
                    ],
                }
            ],
            "image-label": image_label,
        }
    )


def _label_array(labels: Any, axes: Sequence[str], n_frames: int) -> np.ndarray:
    """The label movie (T x Y x X, frame 1 first) as an array of ``axes`` (z of size 1) and
    ``n_frames`` time points (frames past the movie's end are background)."""
    first = np.asarray(labels[0])
    stack = np.zeros((n_frames, *first.shape), np.uint32)
    for i in range(min(n_frames, len(labels))):
        stack[i] = labels[i]
    shape = {"t": n_frames, "y": stack.shape[1], "x": stack.shape[2]}
    missing = set(axes) - {"t", "z", "y", "x"}
    if missing or "t" not in axes:
        raise TrackExportError(f"the image's axes {list(axes)} are not t[, c][, z], y, x")
    return stack.reshape([shape.get(a, 1) for a in axes])


def add_labels(
    image_path: str | os.PathLike, labels: Any, tracks: pl.DataFrame, *, name: str = LABEL_NAME
) -> Path:
    """Add (or replace) ``labels/<name>`` in the NGFF 0.5 image ``image_path`` from a label movie
    (``labels[i]`` = frame i + 1, Y x X) and its tracks; returns the label image's path."""
    import yaozarrs
    from yaozarrs.write.v05 import write_image

    image_path = Path(image_path)
    try:
        meta = yaozarrs.open_group(str(image_path)).ome_metadata()
    except Exception as exc:
        raise TrackExportError(
            f"{image_path} is not an OME-Zarr image ({exc}). Hint: export a standalone image"
        ) from None
    multiscales = getattr(meta, "multiscales", None)  # an image's (any NGFF document type here)
    if getattr(meta, "version", None) != "0.5" or not multiscales:
        raise TrackExportError(
            f"{image_path} is not an NGFF 0.5 image (labels are added to 0.5 images only). Hint: export a "
            "standalone image with --out FIELD.zarr"
        )
    ms = multiscales[0]
    names = [a.name for a in ms.axes]
    scale = next(t.scale for t in ms.datasets[0].coordinateTransformations if t.type == "scale")
    if "t" not in names:
        raise TrackExportError(f"{image_path} has no time axis (axes {names}); the labels are a movie")
    n_t = _open_shape(image_path / ms.datasets[0].path)[names.index("t")]
    if len(labels) == 0:
        raise TrackExportError(f"the label movie for {image_path} has no frames")
    # the image's axes without its channel axis: napari-ome-zarr splits the image into one layer per
    # channel and shows the labels as one more layer of the same axes
    keep = [i for i, a in enumerate(ms.axes) if a.type != "channel"]
    axes = [ms.axes[i] for i in keep]
    data = _label_array(labels, [a.name for a in axes], n_t)
    model = label_image_model(axes, [float(scale[i]) for i in keep], tracks)
    labels_dir = image_path / "labels"
    with atomic_dir(labels_dir / name) as tmp:
        tmp.rmdir()  # the writer creates the group itself
        write_image(tmp, model, data, writer="zarr", chunks="auto")
        _keep_properties(tmp, track_properties(tracks))
    _list_label(labels_dir, name)
    return labels_dir / name


def _keep_properties(label_group: Path, props: list[dict[str, Any]]) -> None:
    """Put the full per-track properties into the label group's ``image-label`` (yaozarrs' model keeps
    only ``label-value`` of a property; NGFF allows any keys there)."""
    if not props:
        return
    path = label_group / "zarr.json"
    meta = json.loads(path.read_text())
    meta["attributes"]["ome"]["image-label"]["properties"] = props
    atomic_write_bytes(json.dumps(meta, indent=2).encode(), path)


def _open_shape(array_path: Path) -> tuple[int, ...]:
    import zarr

    return tuple(zarr.open_array(str(array_path), mode="r").shape)


def _list_label(labels_dir: Path, name: str) -> None:
    """Write ``labels/zarr.json`` listing ``name`` beside the labels already there (NGFF 0.5)."""
    path = labels_dir / "zarr.json"
    names: list[str] = []
    if path.is_file():
        names = list(json.loads(path.read_text()).get("attributes", {}).get("ome", {}).get("labels", []))
    if name not in names:
        names.append(name)
    group = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {"ome": {"version": "0.5", "labels": names}},
    }
    atomic_write_bytes(json.dumps(group, indent=2).encode(), path)


def write_labeled_image(
    out: str | os.PathLike,
    image: np.ndarray,
    channels: Sequence[str],
    labels: Any,
    tracks: pl.DataFrame,
    *,
    pixel_size_um: float,
    frame_interval_min: float,
    name: str | None = None,
) -> Path:
    """A standalone NGFF 0.5 image at ``out`` (replaced when it exists): ``image`` (T x C x Y x X) with
    ``channels`` as its omero labels, and ``labels/tracks`` from the label movie and tracks."""
    from lnpstore.instrument.omezarr import image_model

    out = Path(out)
    if out.exists() and not (out / "zarr.json").is_file():
        raise TrackExportError(
            f"{out} exists and is not an OME-Zarr image. Hint: give a new path, e.g. field.zarr"
        )
    model = image_model(
        pixel_size_um=pixel_size_um,
        frame_interval_min=frame_interval_min,
        channels=tuple(channels),
        name=name,
    )
    from yaozarrs.write.v05 import write_image

    with atomic_dir(out) as tmp:
        tmp.rmdir()
        write_image(
            tmp,
            model,
            image[:, :, None],
            writer="zarr",
            chunks="auto",
            extra_attributes={"lnpstore": {"package_version": __version__}},
        )
        add_labels(tmp, labels, tracks)
    return out


def _field_images(store: Store, plate: str, well: str, field_: int) -> tuple[np.ndarray, list[str]]:
    """The field's images of every assay channel as T x C x Y x X (channels in CS, BF, LNP, GFP order)."""
    from lnpstore.instrument.stackio import read_image

    rows = (
        store.read("images", plate=plate)
        .filter((pl.col("well") == well) & (pl.col("field") == field_) & (pl.col("status") == "ok"))
        .filter(pl.col("channel").is_in(["CS", "BF", "LNP", "GFP"]))
    )
    channels = [c for c in ("CS", "BF", "LNP", "GFP") if c in set(rows["channel"].to_list())]
    frames = sorted(set(rows["frame"].to_list()))
    if not frames:
        raise TrackExportError(
            f"plate {plate}, well {well}, field {field_}: no readable images in {store.root}"
        )
    path = {(r["frame"], r["channel"]): r["path"] for r in rows.iter_rows(named=True)}
    first = read_image(path[frames[0], channels[0]])
    out = np.zeros((len(frames), len(channels), *first.shape), first.dtype)
    for i, f in enumerate(frames):
        for j, c in enumerate(channels):
            if (f, c) in path:
                out[i, j] = read_image(path[f, c])
    return out, channels


def plate_image_path(store: Store, plate: str, well: str, field_: int) -> Path | None:
    """The field's image group in the OME-Zarr plate it was ingested from; None for a TIFF plate."""
    from lnpstore.instrument.omezarr import parse_plane_address

    paths = (
        store.read("images", plate=plate)
        .filter((pl.col("well") == well) & (pl.col("field") == field_) & pl.col("path").is_not_null())
        .get_column("path")
        .head(1)
        .to_list()
    )
    parsed = parse_plane_address(paths[0]) if paths else None
    return Path(parsed[0]).parent if parsed else None


def export_field_labels(
    store: Store | str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    plate: str | None = None,
    well: str,
    field_: int = 1,
) -> Path:
    """Export a tracked field's labels as OME-Zarr: into the standalone image ``out``, or, with ``out``
    None, into the field's image of the OME-Zarr plate it was ingested from. Returns the image path."""
    from lnpstore.tracking.stage import load_field_labels

    st = store if isinstance(store, Store) else Store.open(store)
    plates = st.read("plates")
    names = plates.get_column("plate").to_list()
    plate = plate or (names[0] if len(names) == 1 else None)
    if plate is None or plate not in names:
        raise TrackExportError(f"store {st.root} holds plates {names}: choose one with --plate")
    row = plates.filter(pl.col("plate") == plate).row(0, named=True)
    tracks, labels = load_field_labels(st, plate, well, field_)
    if out is None:
        image_path = plate_image_path(st, plate, well, field_)
        if image_path is None:
            raise TrackExportError(
                f"plate {plate} was not ingested from an OME-Zarr plate. Hint: give --out FIELD.zarr for a "
                "standalone image with the labels"
            )
        add_labels(image_path, labels, tracks)
        return image_path
    image, channels = _field_images(st, plate, well, field_)
    return write_labeled_image(
        out,
        image,
        channels,
        labels,
        tracks,
        pixel_size_um=float(row["pixel_size_um"]),
        frame_interval_min=float(row["frame_interval_min"] or 1.0),
        name=f"{plate} {well} field {field_}",
    )
