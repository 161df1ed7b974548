"""Rows of the store's tables for tests that need a valid row, not realistic values."""

from __future__ import annotations

import polars as pl

from lnpstore.store import schema as S


def one_row(table: str, **values: object) -> pl.DataFrame:
    """A row of ``table`` with the given values and a plain value of each other column's type."""
    schema = S.table(table).polars_schema
    row: dict[str, object] = {}
    for col, dtype in schema.items():
        if col in values:
            row[col] = values[col]
        elif dtype == pl.String:
            row[col] = "x"
        elif dtype == pl.Boolean:
            row[col] = False
        elif isinstance(dtype, pl.Array):
            row[col] = [0.0] * dtype.size
        elif dtype.is_temporal():
            row[col] = None
        else:
            row[col] = 0
    return pl.DataFrame([row], schema=schema)
