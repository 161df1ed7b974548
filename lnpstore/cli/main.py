"""The ``lnpstore`` command line: one entry point, one subcommand per stage.

Each stage's subcommands live in ``lnpstore/cli/<stage>.py`` with a ``register(subparsers)``
function, imported here, so that ``lnpstore --help`` does not import jax, tsfresh or xgboost.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
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
    "export_profiles",
    "score_tracks",
    "check",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lnpstore",
        description="Columnar cell-feature store and models for LNP-mRNA time-lapse plates.",
    )
    parser.add_argument("--version", action="version", version=f"lnpstore {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="-v: other libraries' INFO lines too (Dask, jax, ...); -vv: debug logging",
    )
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


class _Formatter(logging.Formatter):
    """``HH:MM:SS message`` for lnpstore's INFO lines; level and logger name for the rest."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        head = self.formatTime(record, "%H:%M:%S")
        if record.levelno == logging.INFO and record.name.startswith("lnpstore"):
            text = f"{head} {record.message}"
        else:
            text = f"{head} {record.levelname} {record.name}: {record.message}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


#: Loggers of other libraries that speak at INFO (or attach their own handlers); WARNING unless -v.
NOISY_LOGGERS = ("distributed", "dask", "jax", "absl", "pooch", "numba", "matplotlib", "tsfresh")
#: lnpstore modules that log a line per trained model (dozens per run); their INFO only with -v.
PER_MODEL_LOGGERS = (
    "lnpstore.models.cnn",
    "lnpstore.models.timeseries_stage",
    "lnpstore.models.tsgbm",
    "lnpstore.models.lstm",
)


class RepeatFilter(logging.Filter):
    """Lets the first ``limit`` WARNINGs from each place in the code through and counts the rest (a
    warning raised once per model would otherwise fill the log); ERROR and above always pass."""

    def __init__(self, limit: int = 3) -> None:
        super().__init__()
        self.limit = limit
        self.seen: dict[tuple[str, int], int] = {}
        self.hidden = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        key = (record.pathname, record.lineno)
        self.seen[key] = n = self.seen.get(key, 0) + 1
        if n > self.limit:
            self.hidden += 1
            return False
        return True


#: The filter of the CLI's handler (None before :func:`configure_logging`, or with -v).
repeat_filter: RepeatFilter | None = None


def configure_logging(verbose: int = 0) -> None:
    """lnpstore's INFO lines (stages, summaries) always; other libraries' INFO, lnpstore's per-model
    lines and repeated warnings only with ``-v``; DEBUG everywhere with ``-vv``. Also quiets what
    libraries print outside :mod:`logging`: Dask's own logging config (``DASK_LOGGING__DISTRIBUTED``)
    and XLA's C++ log (``TF_CPP_MIN_LOG_LEVEL``), unless the user set those variables."""
    global repeat_filter
    if verbose == 0:
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    handler = logging.StreamHandler()
    handler.setFormatter(_Formatter())
    repeat_filter = RepeatFilter() if verbose == 0 else None
    if repeat_filter is not None:
        handler.addFilter(repeat_filter)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG)
    logging.getLogger("lnpstore").setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    for name in NOISY_LOGGERS + PER_MODEL_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if verbose == 0 else logging.NOTSET)
    # tsfresh warns at every extraction that the optional matrixprofile package is missing
    logging.getLogger("tsfresh.feature_extraction.settings").setLevel(
        logging.ERROR if verbose == 0 else logging.NOTSET
    )
    logging.captureWarnings(True)
    # other libraries' Python warnings (deprecations and the like) only with -v
    logging.getLogger("py.warnings").setLevel(logging.ERROR if verbose == 0 else logging.NOTSET)


def _written(exc: OSError) -> str:
    """The file (or, for an atomic writer's temporary, the folder) that could not be written."""
    name = str(exc.filename or exc)
    return os.path.dirname(name) if os.path.basename(name).startswith(".tmp-") else name


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    from lnpstore.store.lock import command_scope

    try:
        with command_scope():  # a writing command holds its store's lock from its first write to its end
            rc = args.func(args)
    except LnpstoreError as exc:
        print(f"lnpstore {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. report files into a read-only folder
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        print(
            f"lnpstore {args.command}: error: no permission to write {_written(exc)}. Hint: the "
            "folder is read-only; give a writable one (or copy the store); reading commands work as is",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"lnpstore {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    finally:
        if repeat_filter is not None and repeat_filter.hidden:
            print(f"({repeat_filter.hidden} repeated warnings not shown; -v shows them)", file=sys.stderr)
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
