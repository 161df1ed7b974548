"""Deprecated: the tracker was split into :mod:`lnpstore.tracking`'s modules; import from
:mod:`lnpstore.tracking` (``from lnpstore.tracking import track_plate``)."""

import warnings

from lnpstore.tracking import *  # noqa: F403
from lnpstore.tracking import __all__  # noqa: F401

warnings.warn(
    "lnpstore.tracking.tracker is deprecated: import from lnpstore.tracking",
    DeprecationWarning,
    stacklevel=2,
)
