"""The ``ingest`` subcommand: index and validate a plate folder into a store."""

from __future__ import annotations

import argparse
import logging


def cmd_ingest(args: argparse.Namespace) -> int:
    from lnpstore.instrument.ingest import ingest_to_store
    from lnpstore.runtime.progress import quiet

    # the summary lists the warnings; keep the log from printing them a second time
    ingest_log = logging.getLogger("lnpstore.instrument")  # ingest.py and omezarr.py
    level = ingest_log.level
    ingest_log.setLevel(logging.ERROR)
    from lnpstore.instrument.omezarr import ingest_omezarr, is_omezarr_plate

    if is_omezarr_plate(args.plate_dir):  # an OME-Zarr HCS plate (or a folder holding one)
        how = {"ingest": ingest_omezarr, "channel_map": args.channel_map}
    else:
        how = {"expected_frames": args.expected_frames, "show_progress": not quiet()}
    try:  # a failed ingest into a new store leaves no store folder behind
        report = ingest_to_store(
            args.store,
            args.plate_dir,
            plate_map=args.plate_map,
            pixel_size_um=args.pixel_size_um,
            z_plane=args.z_plane,
            **how,
        )
    finally:
        ingest_log.setLevel(level)
    print(report.summary())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="index and validate a plate folder (TIFFs + MeasurementData.mlf) into a store",
        description="Index every image of a CV7000/CV8000 plate folder, flag missing, unreadable, "
        "wrong-size and wrong-type (non-uint16/uint8) images, exclude wells with such images, list files "
        "outside MeasurementData.mlf's grid as extra, and write the plates, wells and images tables. "
        "Re-running on an unchanged plate changes nothing; a re-ingest that excludes a well removes its "
        "downstream rows. A failed ingest leaves no new store behind.",
    )
    p.add_argument(
        "plate_dir",
        metavar="PLATE_DIR",
        help="folder with the plate's TIFF files, an OME-Zarr HCS plate (.zarr), or a folder holding one "
        "of these and its plate_map.csv (the simulator's output)",
    )
    p.add_argument(
        "--store",
        required=True,
        help="store folder (created when it does not exist; removed again if the ingest fails)",
    )
    p.add_argument(
        "--plate-map",
        metavar="FILE",
        help="CSV or Parquet with well,dose_ng[,is_control] (default: plate_map.csv beside the plate "
        "folder when PLATE_DIR is the folder around it)",
    )
    p.add_argument(
        "--pixel-size-um",
        type=float,
        metavar="X",
        help="pixel size in um (required without MeasurementDetail.mrf)",
    )
    p.add_argument(
        "--expected-frames", type=int, metavar="N", help="time points per well (default: last seen)"
    )
    p.add_argument(
        "--channel-map",
        metavar="NAME=ROLE,...",
        help="OME-Zarr plates: channel names -> roles CS, BF, LNP, GFP where the names differ, e.g. "
        "'Hoechst=CS,Brightfield=BF,mCherry=LNP,EGFP=GFP'",
    )
    p.add_argument("--z-plane", type=int, metavar="K", help="z index to ingest from a z-stack")
    p.set_defaults(func=cmd_ingest)
