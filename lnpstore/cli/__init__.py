"""The ``lnpstore`` command line: only parsing and printing over the Python API (one module per stage)."""

from lnpstore.cli.main import main

__all__ = ["main"]
