"""Time-series model subcommands: train-lstm, train-tsfresh (per fold and checkpoint, resumable)."""

from __future__ import annotations

import argparse

from lnpstore.store.errors import LnpstoreError


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated frames like 5,10,15,20, got {text!r}"
        ) from None


def _run(args: argparse.Namespace, kind: str) -> int:
    from lnpstore.models.timeseries_stage import run_timeseries
    from lnpstore.store.core import Store

    if args.folds < 1:
        raise LnpstoreError(f"--folds must be >= 1, got {args.folds}")
    store = Store.open(args.store)
    out = run_timeseries(
        store,
        kind,  # type: ignore[arg-type]
        args.mode,
        folds=range(args.folds),
        checkpoints=args.checkpoints,
        n_samples=args.samples,
        seed=args.seed,
        fc_parameters=getattr(args, "fc", "efficient"),
        average_augs=getattr(args, "average_augs", False),
        dask_address=getattr(args, "dask", None),
        n_jobs=getattr(args, "jobs", 0),
        tsfresh_engine=getattr(args, "tsfresh_engine", "array"),
        inputs=args.inputs,
    )
    for r in out.iter_rows(named=True):
        loss = "" if r["val_loss"] is None else f"  val_loss {r['val_loss']:.4f}"
        print(f"{r['model_id']}  {r['status']}{loss}")
    return 0


def add_engine_option(p: argparse.ArgumentParser) -> None:
    """``--tsfresh-engine tsfresh|array`` (shared with ``lnpstore run``)."""
    p.add_argument(
        "--tsfresh-engine",
        choices=["array", "tsfresh"],
        default="array",
        help="feature extraction: array (default; every series at once, the same features as tsfresh's, "
        "tested to 1e-6) or tsfresh (tsfresh's extract_features; with --dask, on the cluster)",
    )


def add_inputs_option(p: argparse.ArgumentParser, default: str | None = "embeddings") -> None:
    """``--inputs embeddings|tracks|both`` (shared with ``lnpstore run``)."""
    p.add_argument(
        "--inputs",
        choices=["embeddings", "tracks", "both"],  # lnpstore.models.panel.INPUTS (--help stays fast)
        default=default,
        help="what the time-series models read: the CNN's embeddings (the study's protocol), the cells' "
        "per-frame track measures (area, LNP spots, mean LNP, mean CS, eccentricity, LNP depth; "
        "queries/track_sequences.sql) or both"
        + (" (default: %(default)s)" if default else " (default: the preset's)"),
    )


def cmd_train_lstm(args: argparse.Namespace) -> int:
    return _run(args, "lstm")


def cmd_train_tsfresh(args: argparse.Namespace) -> int:
    return _run(args, "tsfresh_xgb")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="store folder")
    p.add_argument("--mode", choices=["classify", "regress"], required=True)
    p.add_argument(
        "--checkpoints",
        type=_int_list,
        default=[5, 10, 15, 20],
        help="last input frames (default 5,10,15,20)",
    )
    p.add_argument("--samples", type=int, default=200, help="random-search samples (default %(default)s)")
    p.add_argument("--folds", type=int, default=5, help="train folds 0..N-1 (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    add_inputs_option(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-lstm", help="LSTM random search on CNN embeddings (or track measures) per fold and checkpoint"
    )
    _common(p)
    p.set_defaults(func=cmd_train_lstm)

    p = sub.add_parser(
        "train-tsfresh",
        help="tsfresh -> PCA -> XGBoost on CNN embeddings (or track measures) per fold and checkpoint",
    )
    _common(p)
    p.add_argument(
        "--fc", choices=["efficient", "fast", "minimal"], default="efficient", help="tsfresh calculators"
    )
    p.add_argument(
        "--average-augs", action="store_true", help="average the 8 augmentations into one sequence per cell"
    )
    p.add_argument(
        "--dask", metavar="ADDRESS", default=None, help="Dask scheduler address for tsfresh extraction"
    )
    p.add_argument("--jobs", type=int, default=0, help="tsfresh/xgboost worker processes (0 = serial)")
    add_engine_option(p)
    p.set_defaults(func=cmd_train_tsfresh)
