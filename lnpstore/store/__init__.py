"""The store: Parquet tables declared once (:mod:`.schema`), the DuckDB catalog, the one atomic writer
(:mod:`.atomic`) and the package's error classes (:mod:`.errors`)."""

from lnpstore.store.core import Store

__all__ = ["Store"]
