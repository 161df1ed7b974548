"""lnpstore: a columnar cell-feature store, ingest, tracking and models for LNP-mRNA time-lapse plates.

One folder per stage of the pipeline (images -> tables -> arrays -> models -> tables):

- :mod:`lnpstore.store`: the tables (schema, catalog, atomic writes, errors)
- :mod:`lnpstore.instrument`: the CV7000/CV8000 layout, plate maps, stacks, ingest
- :mod:`lnpstore.simulate`: the simulated plate with ground truth
- :mod:`lnpstore.tracking`: seeds, watershed tracking, divisions, label movies
- :mod:`lnpstore.interop`: CTC, GEFF, napari, CSV, scoring
- :mod:`lnpstore.study`: registration, targets, crops, figures, report, the run pipeline
- :mod:`lnpstore.models`: extractor, CNN, LSTM, tsfresh + XGBoost, evaluation
- :mod:`lnpstore.cli`: the command line
- :mod:`lnpstore.runtime`: the parallel map, progress, the settings base

Heavy stages are imported lazily so that ``import lnpstore`` stays fast.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

from lnpstore._version import __version__
from lnpstore.store.core import Store
from lnpstore.store.errors import (
    IngestError,
    LnpstoreError,
    PlateMapError,
    QueryError,
    SchemaError,
    StoreError,
    WeightsNotFoundError,
)
from lnpstore.store.schema import SCHEMA_VERSION, TABLES

#: Module paths of lnpstore <= 0.1 (flat layout) -> where they live now. Importing an old path still
#: works, with a DeprecationWarning that names the new one.
MOVED_MODULES = {
    "lnpstore.schema": "lnpstore.store.schema",
    "lnpstore.errors": "lnpstore.store.errors",
    "lnpstore.execution": "lnpstore.runtime.execution",
    "lnpstore.progress": "lnpstore.runtime.progress",
    "lnpstore.layout": "lnpstore.instrument.layout",
    "lnpstore.cvmeta": "lnpstore.instrument.cvmeta",
    "lnpstore.platemap": "lnpstore.instrument.platemap",
    "lnpstore.stackio": "lnpstore.instrument.stackio",
    "lnpstore.ingest": "lnpstore.instrument.ingest",
    "lnpstore.geometry": "lnpstore.instrument.geometry",
    "lnpstore.simulator": "lnpstore.simulate.simulator",
    "lnpstore.truth": "lnpstore.simulate.truth",
    "lnpstore.seeding": "lnpstore.tracking.seeding",
    "lnpstore.spots": "lnpstore.tracking.spots",
    "lnpstore.labels": "lnpstore.tracking.labels",
    "lnpstore.lineage": "lnpstore.tracking.lineage",
    "lnpstore.ctc": "lnpstore.interop.ctc",
    "lnpstore.export": "lnpstore.interop.export",
    "lnpstore.scoring": "lnpstore.interop.scoring",
    "lnpstore.registration": "lnpstore.study.registration",
    "lnpstore.targets": "lnpstore.study.targets",
    "lnpstore.crops": "lnpstore.study.crops",
    "lnpstore.figures": "lnpstore.study.figures",
    "lnpstore.report": "lnpstore.study.report",
    "lnpstore.pipeline": "lnpstore.study.pipeline",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves an old flat module path as the module that now holds its code (one mechanism, no shims)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MOVED_MODULES[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; import it from there (the old path will be removed)",
            DeprecationWarning,
            stacklevel=3,
        )
        return importlib.import_module(new)

    def exec_module(self, module) -> None:  # the module is already executed under its new name
        return None


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())

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
