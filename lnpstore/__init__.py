"""lnpstore: a columnar cell-feature store, ingest, tracking and models for LNP-mRNA time-lapse plates.

Public API: :class:`Store` (``Store.create``, ``Store.open``, ``store.table``, ``store.sql``,
``store.query``), the schema declarations in :mod:`lnpstore.schema`, and the stage functions in their
own modules (``lnpstore.simulator``, ``lnpstore.ingest``, ``lnpstore.tracking``, ...), imported lazily
so that ``import lnpstore`` stays fast.
"""

from ._version import __version__
from .errors import (
    IngestError,
    LnpstoreError,
    PlateMapError,
    QueryError,
    SchemaError,
    StoreError,
    WeightsNotFoundError,
)
from .schema import SCHEMA_VERSION, TABLES
from .store import Store

__all__ = [
    "SCHEMA_VERSION",
    "TABLES",
    "IngestError",
    "LnpstoreError",
    "PlateMapError",
    "QueryError",
    "SchemaError",
    "Store",
    "StoreError",
    "WeightsNotFoundError",
    "__version__",
]
