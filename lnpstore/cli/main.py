"""The ``lnpstore`` command line: one entry point, one subcommand per stage.

Each stage's subcommands live in ``lnpstore/cli/<stage>.py`` with a ``register(subparsers)``
function, imported here, so that ``lnpstore --help`` does not import jax, tsfresh or xgboost.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from lnpstore._version import __version__
from lnpstore.store.errors import LnpstoreError

#: Stage modules under lnpstore.cli, in the order their subcommands are listed.
COMMAND_MODULES = [
    "data",
    "simulate",
    "ingest",
    "track",
    "crop",
    "run",
    "evaluate",
    "cnn",
    "timeseries",
    "export_tracks",
    "score_tracks",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lnpstore",
        description="Columnar cell-feature store and models for LNP-mRNA time-lapse plates.",
    )
    parser.add_argument("--version", action="version", version=f"lnpstore {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"lnpstore.cli.{name}").register(sub)
    return parser


def parse_params(pairs: list[str] | None) -> dict:
    """``["k=v", ...]`` -> dict; numbers become int/float, the rest stays text."""
    out: dict = {}
    for p in pairs or []:
        if "=" not in p:
            raise LnpstoreError(f"--param {p!r} is not of the form name=value")
        k, v = p.split("=", 1)
        for conv in (int, float):
            try:
                out[k] = conv(v)
                break
            except ValueError:
                continue
        else:
            out[k] = v
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        rc = args.func(args)
    except LnpstoreError as exc:
        print(f"lnpstore {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lnpstore {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
