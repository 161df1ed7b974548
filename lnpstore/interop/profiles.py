"""Per-cell profiles for the cytomining tools (pycytominer, scanpy): measurements and embeddings out.

A profile table has ``Metadata_*`` columns (plate, well, site, cell, frame, treatment) and feature
columns named as CellProfiler names them, ``<Compartment>_<Category>_<Measurement>``, so that
pycytominer's ``infer_cp_features`` finds them by their ``Cells_`` prefix:

=======================================  ===================================================  ========
feature                                  from                                                 unit
=======================================  ===================================================  ========
Cells_AreaShape_Area                     tracks.area_px                                       px^2
Cells_AreaShape_Perimeter                tracks.perimeter_px                                  px
Cells_AreaShape_Eccentricity             tracks.eccentricity                                  -
Cells_AreaShape_Solidity                 tracks.solidity                                      -
Cells_Intensity_MeanIntensity_CS         tracks.mean_cs (and _LNP, _GFP)                      counts
Cells_Count_LNPSpots                     tracks.lnp_spots                                     count
Cells_RadialDistribution_MeanDist_LNP    tracks.lnp_radial_frac (spot signal's depth)         radii
Cells_Motion_Displacement                tracks.displacement_px                               px
Cells_Motion_AreaRatio                   tracks.area_ratio                                    -
Cells_Motion_IoUPrev                     tracks.iou_prev                                      -
Cells_Embedding_00 .. _31                embeddings.embedding (aug 0) of one CNN model        -
=======================================  ===================================================  ========

Two grains: ``cell_frame`` (one row per tracked cell per frame, a node of the tracks) and ``cell``
(one row per tracked cell: each feature's mean over the cell's frames, nulls ignored). Written as
Parquet (``Metadata_`` columns first) or h5ad (``X`` = features as float32, ``obs`` = Metadata,
``var`` = feature names), atomically.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from lnpstore._version import __version__
from lnpstore.store.atomic import atomic_path
from lnpstore.store.core import Store
from lnpstore.store.errors import LnpstoreError
from lnpstore.store.schema import EMBEDDING_DIM

log = logging.getLogger(__name__)

ProfileFormat = Literal["parquet", "h5ad"]
Grain = Literal["cell", "cell_frame"]
FORMATS: tuple[str, ...] = ("parquet", "h5ad")
GRAINS: tuple[str, ...] = ("cell", "cell_frame")

#: tracks column -> CellProfiler-style feature name.
TRACK_FEATURES: dict[str, str] = {
    "area_px": "Cells_AreaShape_Area",
    "perimeter_px": "Cells_AreaShape_Perimeter",
    "eccentricity": "Cells_AreaShape_Eccentricity",
    "solidity": "Cells_AreaShape_Solidity",
    "mean_cs": "Cells_Intensity_MeanIntensity_CS",
    "mean_lnp": "Cells_Intensity_MeanIntensity_LNP",
    "mean_gfp": "Cells_Intensity_MeanIntensity_GFP",
    "lnp_spots": "Cells_Count_LNPSpots",
    "lnp_radial_frac": "Cells_RadialDistribution_MeanDist_LNP",
    "displacement_px": "Cells_Motion_Displacement",
    "area_ratio": "Cells_Motion_AreaRatio",
    "iou_prev": "Cells_Motion_IoUPrev",
}
#: tracks column -> Metadata column (per node).
TRACK_METADATA: dict[str, str] = {
    "plate": "Metadata_Plate",
    "well": "Metadata_Well",
    "field": "Metadata_Site",
    "track_id": "Metadata_TrackID",
    "cell_uid": "Metadata_CellUID",
    "frame": "Metadata_Frame",
    "parent_track_id": "Metadata_ParentTrackID",
    "lineage_id": "Metadata_LineageID",
    "y_px": "Metadata_Location_Center_Y",
    "x_px": "Metadata_Location_Center_X",
    "in_bounds": "Metadata_InBounds",
    "gap_filled": "Metadata_GapFilled",
}
CELL_KEY = ("Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_TrackID", "Metadata_CellUID")


def embedding_columns(dim: int = EMBEDDING_DIM) -> list[str]:
    """``Cells_Embedding_00`` .. ``Cells_Embedding_{dim-1}``."""
    return [f"Cells_Embedding_{i:02d}" for i in range(dim)]


def feature_columns(df: pl.DataFrame) -> list[str]:
    """The profile's feature columns (every column that is not ``Metadata_``), in order."""
    return [c for c in df.columns if not c.startswith("Metadata_")]


def choose_model(store: Store, model_id: str | None) -> str | None:
    """The CNN model whose embeddings go into the profiles: ``model_id`` when given (checked), else the
    first stored one in sorted order (None when the store holds no embeddings)."""
    ids = sorted(store.sql("SELECT DISTINCT model_id FROM embeddings")["model_id"].to_list())
    if model_id is not None:
        if model_id not in ids:
            raise LnpstoreError(
                f"no embeddings of model `{model_id}` in {store.root}. Hint: the stored ones are "
                f"{', '.join(ids) or 'none (run `lnpstore embed` first, or export without embeddings)'}"
            )
        return model_id
    if len(ids) > 1:
        log.info("embeddings of %s (of %d models; --model chooses another)", ids[0], len(ids))
    return ids[0] if ids else None


def _treatments(store: Store, plate: str | None) -> pl.DataFrame:
    """Per well: dose and control from the plate map (the wells table)."""
    wells = store.read("wells") if plate is None else store.read("wells").filter(pl.col("plate") == plate)
    return wells.select(
        pl.col("plate").alias("Metadata_Plate"),
        pl.col("well").alias("Metadata_Well"),
        pl.col("dose_ng").alias("Metadata_dose_ng"),
        pl.col("is_control").alias("Metadata_is_control"),
        pl.when(pl.col("is_control"))
        .then(pl.lit("control"))
        .otherwise(pl.format("{} ng", pl.col("dose_ng")))
        .alias("Metadata_Treatment"),
    )


def _cells(store: Store, plate: str | None) -> pl.DataFrame:
    """Per cell: target, label and split from the cells table (empty before ``crop``)."""
    lf = store.table("cells") if plate is None else store.table("cells", plate=plate)
    return lf.select(
        pl.col("cell_uid").alias("Metadata_CellUID"),
        pl.col("complete").alias("Metadata_Complete"),
        pl.col("label").alias("Metadata_Label"),
        pl.col("gfp_sum").alias("Metadata_GFPSum"),
        pl.col("split").alias("Metadata_Split"),
    ).collect()


def _embeddings(store: Store, model_id: str) -> pl.DataFrame:
    """Per cell and frame: the model's identity-augmentation embedding as 32 columns."""
    emb = store.table("embeddings", model_id=model_id).filter(pl.col("aug") == 0).collect()
    cols = embedding_columns()
    return emb.select(
        pl.col("cell_uid").alias("Metadata_CellUID"),
        pl.col("frame").alias("Metadata_Frame"),
        *[pl.col("embedding").arr.get(i).alias(c) for i, c in enumerate(cols)],
    )


def cell_frame_profiles(
    store: Store, *, plate: str | None = None, model_id: str | None = None
) -> pl.DataFrame:
    """One row per tracked cell per frame: Metadata_ columns then features (see the module docstring).

    ``model_id`` chooses the CNN whose embeddings are added (default: :func:`choose_model`); frames
    without an embedding have null embedding columns.
    """
    lf = store.table("tracks") if plate is None else store.table("tracks", plate=plate)
    tracks = lf.collect()
    if tracks.height == 0:
        where = f"plate {plate}" if plate else str(store.root)
        raise LnpstoreError(f"no tracks in {where}. Hint: run `lnpstore track` first")
    df = tracks.select(
        *[pl.col(c).alias(m) for c, m in TRACK_METADATA.items()],
        *[pl.col(c).cast(pl.Float64).alias(f) for c, f in TRACK_FEATURES.items()],
    )
    df = df.join(_treatments(store, plate), on=["Metadata_Plate", "Metadata_Well"], how="left")
    cells = _cells(store, plate)
    if cells.height:
        df = df.join(cells, on="Metadata_CellUID", how="left")
    model = choose_model(store, model_id)
    if model is not None:
        df = df.join(_embeddings(store, model), on=["Metadata_CellUID", "Metadata_Frame"], how="left")
        df = df.with_columns(pl.lit(model).alias("Metadata_EmbeddingModel"))
    meta = [c for c in df.columns if c.startswith("Metadata_")]
    return df.select(*meta, *feature_columns(df)).sort("Metadata_CellUID", "Metadata_Frame")


def cell_profiles(frames: pl.DataFrame) -> pl.DataFrame:
    """One row per cell from :func:`cell_frame_profiles`: each feature's mean over the cell's frames
    (nulls ignored), the per-cell Metadata, and ``Metadata_FirstFrame``, ``Metadata_LastFrame``,
    ``Metadata_NFrames``."""
    per_cell_meta = [
        c
        for c in frames.columns
        if c.startswith("Metadata_")
        and c not in CELL_KEY
        and c
        not in {
            "Metadata_Frame",
            "Metadata_Location_Center_Y",
            "Metadata_Location_Center_X",
            "Metadata_InBounds",
            "Metadata_GapFilled",
        }
    ]
    feats = feature_columns(frames)
    return (
        frames.group_by(list(CELL_KEY), maintain_order=True)
        .agg(
            *[pl.col(c).first() for c in per_cell_meta],
            pl.col("Metadata_Frame").min().alias("Metadata_FirstFrame"),
            pl.col("Metadata_Frame").max().alias("Metadata_LastFrame"),
            pl.len().cast(pl.Int32).alias("Metadata_NFrames"),
            *[pl.col(f).mean() for f in feats],
        )
        .sort("Metadata_CellUID")
    )


def profiles(
    store: Store, *, grain: Grain = "cell", plate: str | None = None, model_id: str | None = None
) -> pl.DataFrame:
    """The store's profiles at ``grain`` ("cell" or "cell_frame")."""
    if grain not in GRAINS:
        raise LnpstoreError(f"unknown grain {grain!r}; choose one of {', '.join(GRAINS)}")
    frames = cell_frame_profiles(store, plate=plate, model_id=model_id)
    return frames if grain == "cell_frame" else cell_profiles(frames)


def write_parquet_profiles(df: pl.DataFrame, out: Path) -> Path:
    """Write the profiles to the Parquet file ``out`` atomically."""
    with atomic_path(out) as tmp:
        df.write_parquet(tmp, compression="zstd")
    return out


def _obs_frame(meta: pl.DataFrame):  # noqa: ANN202 - a pandas DataFrame (pandas imported lazily)
    """Metadata as pandas with text as Python objects. anndata 0.12.6 (the last release installable
    beside pandas 3 on Python 3.11) writes no pandas-3 ``str`` arrays; object columns it writes (and
    turns into categoricals, as scanpy expects)."""
    import pandas as pd

    data = {}
    for name in meta.columns:
        s = meta.get_column(name)
        if s.dtype == pl.String:
            data[name] = pd.Series(s.to_list(), dtype=object)
        else:
            data[name] = s.to_pandas()
    obs = pd.DataFrame(data)
    uid = pl.col("Metadata_CellUID").cast(pl.String)
    if "Metadata_Frame" in meta.columns and meta["Metadata_CellUID"].is_duplicated().any():
        uid = pl.format("{}|T{}", uid, pl.col("Metadata_Frame").cast(pl.String).str.zfill(3))
    index = meta.select(uid.alias("obs_id")).get_column("obs_id")
    obs.index = pd.Index(index.to_list(), dtype=object, name="obs_id")
    return obs


def write_h5ad_profiles(df: pl.DataFrame, out: Path, *, grain: str) -> Path:
    """Write the profiles as an AnnData ``.h5ad`` at ``out`` atomically: X (cells x features, float32),
    obs (the Metadata_ columns, indexed by cell uid, or cell uid + frame), var (feature names)."""
    try:
        import anndata as ad
        import pandas as pd
    except ImportError:
        raise LnpstoreError(
            "the h5ad format needs the `anndata` package. Hint: pip install 'lnpstore[profiles]' "
            "(or pip install anndata), or use --format parquet"
        ) from None
    feats = feature_columns(df)
    meta = df.select([c for c in df.columns if c.startswith("Metadata_")])
    x = df.select(feats).to_numpy().astype(np.float32) if feats else np.zeros((df.height, 0), np.float32)
    var = pd.DataFrame(index=pd.Index(feats, dtype=object, name="feature"))
    adata = ad.AnnData(X=x, obs=_obs_frame(meta), var=var)
    adata.uns["lnpstore"] = {"package_version": __version__, "grain": grain}
    with atomic_path(out, keep_suffix=True) as tmp:
        adata.write_h5ad(tmp)
    return out


def export_profiles(
    store: Store | str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: ProfileFormat = "parquet",
    grain: Grain = "cell",
    plate: str | None = None,
    model_id: str | None = None,
) -> tuple[Path, pl.DataFrame]:
    """Write the store's profiles to ``out`` in ``format`` ("parquet" or "h5ad"); return (path, table)."""
    if format not in FORMATS:
        raise LnpstoreError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    st = store if isinstance(store, Store) else Store.open(store)
    out = Path(out)
    if out.is_dir():
        raise LnpstoreError(f"{out} is a folder; give a file path, e.g. profiles.{format}")
    df = profiles(st, grain=grain, plate=plate, model_id=model_id)
    if format == "parquet":
        path = write_parquet_profiles(df, out)
    else:
        path = write_h5ad_profiles(df, out, grain=grain)
    log.info("%s profiles: %d rows, %d features -> %s", grain, df.height, len(feature_columns(df)), path)
    return path, df


def describe(df: pl.DataFrame) -> str:
    """One line: rows, cells, features and metadata columns (for the CLI)."""
    n_cells = df.get_column("Metadata_CellUID").n_unique()
    meta = [c for c in df.columns if c.startswith("Metadata_")]
    return json.dumps(
        {"rows": df.height, "cells": n_cells, "features": len(feature_columns(df)), "metadata": len(meta)}
    )
