"""Every table of the store, declared once: columns, types, units, roles, keys and partitioning.

The store validates every write against these declarations and writes the schema version, each
column's unit and role into the Parquet files' key-value metadata, so the files describe themselves
to readers that do not have this package (DuckDB, polars, pyarrow).

Grain of each table (one row per ...):

=============  =====================================================  =====================
table          grain                                                  partitioned by
=============  =====================================================  =====================
plates         plate                                                  -
wells          plate x well                                           -
images         plate x well x field x frame x channel                 plate
registration   plate x well x field (BF -> fluorescence offset)       plate
seeds          plate x well x field x track (frame-1 centre)          plate, well
tracks         plate x well x field x track x frame (a node)          plate, well
label_images   plate x well x field (path of the label movie)         plate
cells          plate x well x field x track (targets, split)          plate, well
crops          cell x frame (uint16 tensor C x H x W)                 plate, well
features       cell x frame x augmentation (block3 mean, mean sq)     extractor, plate, well
embeddings     model x cell x frame x augmentation (32-dim)           model_id
models         model (config, seed, versions, weights)                -
predictions    model x cell x frame/checkpoint x augmentation         model_id
search         search trial (hyper-parameters, validation loss)       -
metrics        model kind x mode x frame/checkpoint x fold x metric   -
=============  =====================================================  =====================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import polars as pl

SCHEMA_VERSION = "1.2"  # 1.1: tracks.link_cost_px and gap_filled, the label_images table; 1.2:
# tracks.lnp_radial_frac (each additive: older files read the new columns as nulls)

EMBEDDING_DIM = 32
BLOCK3_CHANNELS = 256


class Role(StrEnum):
    """What a column is for; written into each file's metadata."""

    KEY = "key"
    METADATA = "metadata"
    MEASUREMENT = "measurement"
    FLAG = "flag"
    TARGET = "target"
    EMBEDDING = "embedding"
    PREDICTION = "prediction"
    PROVENANCE = "provenance"


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType | type[pl.DataType]
    unit: str = ""
    role: Role = Role.MEASUREMENT
    description: str = ""
    nullable: bool = True


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    partition_by: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def polars_schema(self) -> pl.Schema:
        return pl.Schema({c.name: c.dtype for c in self.columns})

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table `{self.name}` has no column `{name}`")


def _k(name: str, dtype, description: str = "", unit: str = "") -> Column:
    return Column(name, dtype, unit=unit, role=Role.KEY, description=description, nullable=False)


PLATE = _k("plate", pl.String, "plate name as the instrument wrote it")
WELL = _k("well", pl.String, "well id, row letter + 2-digit column, e.g. C03")
FIELD = _k("field", pl.Int16, "field of view, 1-based")
FRAME = _k("frame", pl.Int16, "time point, 1-based", unit="frame")
TRACK = _k("track_id", pl.Int32, "track id, unique within (plate, well, field)")
CELL_UID = Column(
    "cell_uid",
    pl.String,
    role=Role.KEY,
    nullable=False,
    description="stable cell id '{plate}|{well}|F{field:03d}|{track_id:05d}', survives re-ingest",
)
MODEL_ID = _k("model_id", pl.String, "model id: '{kind}-{mode}-f{fold}-t{checkpoint}-{hash8}'")
AUG = _k("aug", pl.Int8, "dihedral augmentation 0..7 (0 = identity)")


def cell_uid(plate: str, well: str, field_: int, track_id: int) -> str:
    """The stable id of a cell; see :data:`CELL_UID`."""
    return f"{plate}|{well}|F{int(field_):03d}|{int(track_id):05d}"


def cell_uid_expr() -> pl.Expr:
    """The same id as :func:`cell_uid`, as a polars expression over plate, well, field, track_id."""
    return pl.format(
        "{}|{}|F{}|{}",
        pl.col("plate"),
        pl.col("well"),
        pl.col("field").cast(pl.String).str.zfill(3),
        pl.col("track_id").cast(pl.String).str.zfill(5),
    )


M = Role.MEASUREMENT
MD = Role.METADATA
PROV = Role.PROVENANCE

TABLES: dict[str, Table] = {}


def _table(t: Table) -> Table:
    assert set(t.key) <= set(t.column_names), t.name
    assert set(t.partition_by) <= set(t.key), t.name
    TABLES[t.name] = t
    return t


_table(
    Table(
        "plates",
        "One row per ingested plate: geometry, acquisition and provenance.",
        (
            PLATE,
            Column("source_dir", pl.String, role=PROV, description="absolute path of the plate folder"),
            Column("instrument", pl.String, role=MD, description="e.g. CV7000, CV8000, or 'simulated'"),
            Column("pixel_size_um", pl.Float64, "um", MD, "pixel edge length"),
            Column("width_px", pl.Int32, "px", MD),
            Column("height_px", pl.Int32, "px", MD),
            Column("n_wells", pl.Int32, role=MD),
            Column("n_fields", pl.Int32, role=MD),
            Column("n_frames", pl.Int32, "frame", MD),
            Column("frame_interval_min", pl.Float64, "min", MD),
            Column(
                "channels", pl.String, role=MD, description="JSON map channel name -> instrument C number"
            ),
            Column("n_images", pl.Int64, role=MD),
            Column("n_problems", pl.Int64, role=MD, description="images whose status is not 'ok'"),
            Column("data_version", pl.String, role=PROV, description="sha256 of the image index"),
            Column("ingested_at", pl.Datetime("us", "UTC"), role=PROV),
            Column("package_version", pl.String, role=PROV),
            Column("schema_version", pl.String, role=PROV),
        ),
        key=("plate",),
    )
)

_table(
    Table(
        "wells",
        "One row per well: treatment from the plate map and the ingest verdict.",
        (
            PLATE,
            WELL,
            Column("row", pl.String, role=MD, description="row letter"),
            Column("column", pl.Int16, role=MD),
            Column("dose_ng", pl.Float64, "ng", MD, "mRNA dose"),
            Column("is_control", pl.Boolean, role=MD, description="control well (LNPs without mRNA)"),
            Column("n_fields", pl.Int16, role=MD),
            Column("n_frames_expected", pl.Int16, "frame", MD),
            Column("n_images_ok", pl.Int32, role=MD),
            Column("n_problems", pl.Int32, role=MD),
            Column("excluded", pl.Boolean, role=Role.FLAG, nullable=False),
            Column("exclude_reason", pl.String, role=Role.FLAG),
        ),
        key=("plate", "well"),
    )
)

_table(
    Table(
        "images",
        "One row per expected image (plate x well x field x frame x channel) and its status.",
        (
            PLATE,
            WELL,
            FIELD,
            FRAME,
            _k("channel", pl.String, "CS, BF, LNP or GFP (or C{nn} for an unknown channel)"),
            Column("channel_number", pl.Int16, role=MD, description="instrument C number"),
            Column("path", pl.String, role=PROV, description="absolute path; null when missing"),
            Column(
                "status",
                pl.String,
                role=Role.FLAG,
                nullable=False,
                description="ok | missing | unreadable | wrong_size | wrong_dtype | unknown_channel",
            ),
            Column("status_detail", pl.String, role=Role.FLAG),
            Column("height_px", pl.Int32, "px"),
            Column("width_px", pl.Int32, "px"),
            Column("dtype", pl.String, role=MD),
            Column("file_bytes", pl.Int64, "byte"),
            Column("acquired_at", pl.String, role=MD, description="time stamp from MeasurementData.mlf"),
            Column("stage_x_um", pl.Float64, "um", MD),
            Column("stage_y_um", pl.Float64, "um", MD),
        ),
        key=("plate", "well", "field", "frame", "channel"),
        partition_by=("plate",),
    )
)

_table(
    Table(
        "registration",
        "Brightfield-to-fluorescence offset per field, estimated by phase correlation.",
        (
            PLATE,
            WELL,
            FIELD,
            Column("dy_px", pl.Float64, "px", M, "shift to apply to BF (row)"),
            Column("dx_px", pl.Float64, "px", M, "shift to apply to BF (column)"),
            Column("field_dy_px", pl.Float64, "px", M, "this field's own estimate"),
            Column("field_dx_px", pl.Float64, "px", M),
            Column("error", pl.Float64, role=M, description="phase-correlation error of this field"),
            Column("agrees_with_plate", pl.Boolean, role=Role.FLAG),
        ),
        key=("plate", "well", "field"),
        partition_by=("plate",),
    )
)

_table(
    Table(
        "seeds",
        "Frame-1 cell centres (automatic or manual) that start the tracks.",
        (
            PLATE,
            WELL,
            FIELD,
            TRACK,
            Column("y_px", pl.Float64, "px", M),
            Column("x_px", pl.Float64, "px", M),
            Column("source", pl.String, role=PROV, description="auto | csv:<path>"),
        ),
        key=("plate", "well", "field", "track_id"),
        partition_by=("plate", "well"),
    )
)

_table(
    Table(
        "tracks",
        "One row per tracked cell per frame (a node of the track graph).",
        (
            PLATE,
            WELL,
            FIELD,
            TRACK,
            FRAME,
            Column("cell_uid", pl.String, role=MD, nullable=False),
            Column("node_id", pl.Int64, role=MD, description="unique within the field"),
            Column("parent_track_id", pl.Int32, role=MD, description="null for a track without parent"),
            Column("lineage_id", pl.Int32, role=MD),
            Column("label_id", pl.Int32, role=MD, description="label in the frame's label image"),
            Column("y_px", pl.Float64, "px", M, "centroid row"),
            Column("x_px", pl.Float64, "px", M, "centroid column"),
            Column("displacement_px", pl.Float64, "px", M, "distance from the previous frame's centre"),
            Column("area_px", pl.Float64, "px^2", M),
            Column("perimeter_px", pl.Float64, "px", M),
            Column("eccentricity", pl.Float64, "", M),
            Column("solidity", pl.Float64, "", M),
            Column("mean_cs", pl.Float64, "counts", M),
            Column("mean_lnp", pl.Float64, "counts", M),
            Column("mean_gfp", pl.Float64, "counts", M),
            Column("lnp_spots", pl.Int32, "count", M),
            Column(
                "lnp_radial_frac",
                pl.Float64,
                "",
                M,
                "LNP spot signal's mean distance from the centroid in equivalent radii (falls as particles "
                "reach the nucleus; null without spot signal or before schema 1.2)",
            ),
            Column("area_ratio", pl.Float64, "", M, "area / previous frame's area"),
            Column("iou_prev", pl.Float64, "", M, "overlap with the previous frame's region"),
            Column(
                "link_cost_px",
                pl.Float64,
                "px",
                M,
                "distance of the centre from the motion-predicted one (null on a track's first node)",
            ),
            Column(
                "gap_filled",
                pl.Boolean,
                role=Role.FLAG,
                description="a node bridging a frame without a region (centre motion-predicted, no label)",
            ),
            Column(
                "in_bounds", pl.Boolean, role=Role.FLAG, description="centre >= edge margin from every edge"
            ),
            Column("flag_jump", pl.Boolean, role=Role.FLAG),
            Column("flag_area", pl.Boolean, role=Role.FLAG),
            Column("flag_lost", pl.Boolean, role=Role.FLAG),
            Column("stop_reason", pl.String, role=Role.FLAG, description="set on a track's last node"),
        ),
        key=("plate", "well", "field", "track_id", "frame"),
        partition_by=("plate", "well"),
    )
)

_table(
    Table(
        "label_images",
        "One row per tracked field: its label movie (T x Y x X uint16 TIFF, pixel = track_id, 0 = none).",
        (
            PLATE,
            WELL,
            FIELD,
            Column(
                "path",
                pl.String,
                role=Role.PROVENANCE,
                nullable=False,
                description="relative to the store root (older stores: absolute)",
            ),
            Column("n_frames", pl.Int16, "frames"),
            Column("height_px", pl.Int32, "px"),
            Column("width_px", pl.Int32, "px"),
        ),
        key=("plate", "well", "field"),
        partition_by=("plate",),
    )
)

_table(
    Table(
        "cells",
        "One row per tracked cell: completeness, target, label and split.",
        (
            PLATE,
            WELL,
            FIELD,
            TRACK,
            Column("cell_uid", pl.String, role=MD, nullable=False),
            Column("dose_ng", pl.Float64, "ng", MD),
            Column("is_control", pl.Boolean, role=MD),
            Column("last_frame", pl.Int16, "frame", MD, "last frame tracked in bounds"),
            Column("complete", pl.Boolean, role=Role.FLAG, description="in bounds to the last frame"),
            Column("any_flag", pl.Boolean, role=Role.FLAG),
            Column("gfp_sum", pl.Float64, "counts", Role.TARGET, "GFP sum, central window, last frame"),
            Column("label", pl.Int8, role=Role.TARGET, description="1 if gfp_sum > control threshold"),
            Column("gfp_log_centered", pl.Float64, "ln(counts)", Role.TARGET, "centred on training cells"),
            Column("split", pl.String, role=MD, description="train | test | control | excluded"),
            Column("fold", pl.Int8, role=MD, description="CV fold 0..4 for train cells, else null"),
        ),
        key=("plate", "well", "field", "track_id"),
        partition_by=("plate", "well"),
    )
)

_table(
    Table(
        "crops",
        "Per cell per frame, the CS, BF (registered) and LNP crops as one uint16 C x H x W tensor.",
        (
            PLATE,
            WELL,
            FIELD,
            TRACK,
            FRAME,
            Column("cell_uid", pl.String, role=MD, nullable=False),
            Column("size_px", pl.Int16, "px", MD),
            Column(
                "pixels",
                pl.Binary,
                "counts",
                M,
                "uint16 little-endian, shape (3, size_px, size_px): CS, BF, LNP",
            ),
        ),
        key=("plate", "well", "field", "track_id", "frame"),
        partition_by=("plate", "well"),
    )
)

_table(
    Table(
        "features",
        "Per crop and augmentation: spatial mean and mean of squares of VGG block3_conv3's output.",
        (
            _k("extractor_id", pl.String, "extractor (weights + preprocessing) that made it"),
            PLATE,
            WELL,
            CELL_UID,
            FRAME,
            AUG,
            Column("mean", pl.Array(pl.Float32, BLOCK3_CHANNELS), role=Role.EMBEDDING),
            Column("mean_sq", pl.Array(pl.Float32, BLOCK3_CHANNELS), role=Role.EMBEDDING),
        ),
        # plate and well are implied by cell_uid; they are in the key only so that each well's
        # features are one partition file (a per-well write then rewrites one small file).
        key=("extractor_id", "plate", "well", "cell_uid", "frame", "aug"),
        partition_by=("extractor_id", "plate", "well"),
    )
)

_table(
    Table(
        "embeddings",
        "The CNN's 32-dim embedding per model, cell, frame and augmentation.",
        (
            MODEL_ID,
            CELL_UID,
            FRAME,
            AUG,
            Column("embedding", pl.Array(pl.Float32, EMBEDDING_DIM), role=Role.EMBEDDING),
        ),
        key=("model_id", "cell_uid", "frame", "aug"),
        partition_by=("model_id",),
    )
)

_table(
    Table(
        "models",
        "Every trained model with its config, seed and versions.",
        (
            MODEL_ID,
            Column("kind", pl.String, role=MD, description="cnn | lstm | tsfresh_xgb"),
            Column("mode", pl.String, role=MD, description="classify | regress"),
            Column("fold", pl.Int8, role=MD),
            Column("checkpoint", pl.Int16, "frame", MD, "last input frame; null for the per-frame CNN"),
            Column("config", pl.String, role=PROV, description="JSON"),
            Column("seed", pl.Int64, role=PROV),
            Column("best_epoch", pl.Int32, role=M),
            Column("val_loss", pl.Float64, role=M),
            Column("weights_path", pl.String, role=PROV, description="relative to the store"),
            Column(
                "weights_info", pl.String, role=PROV, description="JSON: base weights source and checksum"
            ),
            Column("data_version", pl.String, role=PROV),
            Column("package_version", pl.String, role=PROV),
            Column("schema_version", pl.String, role=PROV),
            Column("created_at", pl.Datetime("us", "UTC"), role=PROV),
        ),
        key=("model_id",),
    )
)

_table(
    Table(
        "predictions",
        "Per model, test cell, input frame/checkpoint and augmentation: the prediction.",
        (
            MODEL_ID,
            CELL_UID,
            _k("frame", pl.Int16, "frame (CNN) or checkpoint (time-series models)", "frame"),
            AUG,
            Column("kind", pl.String, role=MD),
            Column("mode", pl.String, role=MD),
            Column("fold", pl.Int8, role=MD),
            Column("y_true", pl.Float64, role=Role.TARGET),
            Column("y_pred", pl.Float64, role=Role.PREDICTION, description="probability or log-centred GFP"),
        ),
        key=("model_id", "cell_uid", "frame", "aug"),
        partition_by=("model_id",),
    )
)

_table(
    Table(
        "search",
        "Every configuration sampled by a hyper-parameter search, with its validation loss.",
        (
            _k(
                "search_id",
                pl.String,
                "the model_id the search chose ('{kind}-{mode}-f{fold}-t{checkpoint}-{hash8}'; stores "
                "before 2026-12-08: without the hash, so a re-run with other settings replaced its rows)",
            ),
            _k("trial", pl.Int32),
            Column("kind", pl.String, role=MD),
            Column("mode", pl.String, role=MD),
            Column("fold", pl.Int8, role=MD),
            Column("checkpoint", pl.Int16, "frame", MD),
            Column("config", pl.String, role=PROV, description="JSON"),
            Column("val_loss", pl.Float64, role=M),
            Column("stopped_early", pl.Boolean, role=Role.FLAG),
            Column("seed", pl.Int64, role=PROV),
        ),
        key=("search_id", "trial"),
    )
)

_table(
    Table(
        "metrics",
        "Evaluation metrics per model kind, mode, frame/checkpoint and fold (fold -1 = ensemble).",
        (
            _k(
                "kind",
                pl.String,
                "cnn | lstm | tsfresh_xgb | oracle | oracle_frame (the simulator's, from count at t = 20 and size)"
                " | oracle_track (the simulator's, a perfect linear reader of frames 1..20)",
            ),
            _k("mode", pl.String, "classify | regress"),
            _k("frame", pl.Int16, "input frame or checkpoint", "frame"),
            _k("fold", pl.Int8, "fold; -1 for the fold ensemble with test-time augmentation"),
            _k("metric", pl.String, "f1_weighted | rmse | ..."),
            Column("value", pl.Float64, role=M),
            Column("n_cells", pl.Int32, role=MD),
            Column("run_id", pl.String, role=PROV),
        ),
        key=("kind", "mode", "frame", "fold", "metric"),
    )
)


#: Derived views over the tables (name -> SELECT), defined in every DuckDB connection and in the
#: catalog file after the tables' views. Read-only: nothing is stored under these names.
VIEWS: dict[str, str] = {
    # each model cell's role in each CV fold's models: with held-out fold k, a training cell of another
    # fold is 'train', one of fold k 'val', a test cell 'test' (control and excluded cells never appear);
    # the time-series queries take their fold's rows (queries/sequences.sql, track_sequences.sql)
    "fold_roles": """
        SELECT
            k.cv_fold,
            c.cell_uid,
            c.label,
            c.gfp_log_centered,
            CASE
                WHEN c.split = 'train' AND c.fold <> k.cv_fold THEN 'train'
                WHEN c.split = 'train' AND c.fold = k.cv_fold THEN 'val'
                WHEN c.split = 'test' THEN 'test'
            END AS role
        FROM cells AS c
        CROSS JOIN (SELECT DISTINCT fold AS cv_fold FROM cells WHERE fold IS NOT NULL) AS k
        WHERE c.split IN ('train', 'test') AND NOT (c.split = 'train' AND c.fold IS NULL)
    """,
    # the predictions of the newest model of each kind, mode, fold and frame (models.created_at; a
    # prediction without a models row counts as oldest): training again with changed settings stores a
    # new model_id beside the old one, and only the new one should count in metrics and figures
    "current_predictions": """
        SELECT p.*
        FROM predictions AS p
        JOIN (
            SELECT k.kind, k.mode, k.fold, k.frame, k.model_id,
                   row_number() OVER (
                       PARTITION BY k.kind, k.mode, k.fold, k.frame
                       ORDER BY m.created_at DESC NULLS LAST, k.model_id DESC
                   ) AS rank
            FROM (SELECT DISTINCT kind, mode, fold, frame, model_id FROM predictions) AS k
            LEFT JOIN models AS m USING (model_id)
        ) AS newest USING (kind, mode, fold, frame, model_id)
        WHERE newest.rank = 1
    """,
}


def table(name: str) -> Table:
    """The declaration of table ``name``; a clear error for an unknown one."""
    try:
        return TABLES[name]
    except KeyError:
        from lnpstore.store.errors import SchemaError

        raise SchemaError(
            f"unknown table `{name}`. Hint: the tables are {', '.join(sorted(TABLES))}"
        ) from None
