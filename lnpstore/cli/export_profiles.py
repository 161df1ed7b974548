"""``lnpstore export-profiles STORE OUT --format parquet|h5ad [--grain cell|cell_frame]``."""

from __future__ import annotations

import argparse


def cmd_export_profiles(args: argparse.Namespace) -> int:
    from lnpstore.interop.profiles import export_profiles, feature_columns

    out, df = export_profiles(
        args.store, args.out, format=args.format, grain=args.grain, plate=args.plate, model_id=args.model
    )
    n_cells = df.get_column("Metadata_CellUID").n_unique()
    n_meta = sum(c.startswith("Metadata_") for c in df.columns)
    print(
        f"{args.format}: {df.height} rows ({args.grain}; {n_cells} cells), "
        f"{len(feature_columns(df))} features, {n_meta} Metadata_ columns -> {out}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-profiles",
        help="per-cell measurements and embeddings for pycytominer / scanpy (Parquet or h5ad)",
        description="Write per-cell (or per-cell, per-frame) profiles: Metadata_ columns (plate, well, "
        "site, cell, frame, dose and control from the plate map, split and label when `crop` ran) and "
        "CellProfiler-style features (Cells_AreaShape_*, Cells_Intensity_*, Cells_Motion_* from the "
        "tracks; Cells_Embedding_00..31 from a CNN's embeddings). Parquet for pycytominer; h5ad "
        "(X = features, obs = Metadata) for scanpy, which needs `pip install 'lnpstore[profiles]'`.",
    )
    p.add_argument("store", metavar="STORE", help="store folder")
    p.add_argument("out", metavar="OUT", help="output file, e.g. profiles.parquet or profiles.h5ad")
    p.add_argument("--format", choices=["parquet", "h5ad"], default="parquet", help="default: parquet")
    p.add_argument(
        "--grain",
        choices=["cell", "cell_frame"],
        default="cell",
        help="cell: one row per cell, features averaged over its frames (default); cell_frame: one "
        "row per cell per frame",
    )
    p.add_argument("--plate", help="only this plate (default: every plate of the store)")
    p.add_argument(
        "--model",
        metavar="MODEL_ID",
        help="CNN model whose embeddings are exported (default: the first stored one)",
    )
    p.set_defaults(func=cmd_export_profiles)
