"""The package's own exception types, so callers can catch lnpstore's errors precisely."""


class LnpstoreError(Exception):
    """Base of every error lnpstore raises on purpose."""


class SchemaError(LnpstoreError, ValueError):
    """A table write or read does not match the declared schema."""


class StoreError(LnpstoreError):
    """The store folder is missing, locked or corrupt."""


class IngestError(LnpstoreError):
    """A plate folder or plate map cannot be ingested as given."""


class PlateMapError(IngestError):
    """The plate map disagrees with the images (wells without images or the reverse)."""


class QueryError(LnpstoreError):
    """A named query is unknown or a parameter is missing."""


class WeightsNotFoundError(LnpstoreError, FileNotFoundError):
    """No copy of the ImageNet VGG16 weights was found."""


class SettingsError(LnpstoreError, ValueError):
    """A settings value has the wrong type or range, or a settings file is unreadable or has unknown keys."""


class TrackExportError(LnpstoreError, ValueError):
    """Tracks or label images do not meet the tracks contract, so they cannot be exported."""


class CtcFormatError(TrackExportError):
    """A folder breaks a rule of the CTC layout (the rules the CTC's own tools enforce)."""


class ScoringError(LnpstoreError, ValueError):
    """The result and the ground truth cannot be compared as given."""


class ExecutionError(LnpstoreError):
    """The cluster cannot be started or reached, or a unit of work failed."""


class SeedError(LnpstoreError, ValueError):
    """Seeds cannot be found or read as given (bad settings, bad CSV)."""


class TrackingError(LnpstoreError, ValueError):
    """Tracking cannot run as asked (bad settings, bad frames)."""


class LabelMovieError(LnpstoreError, ValueError):
    """A label movie cannot be written or read as asked."""


class StackError(LnpstoreError, ValueError):
    """A stack or a track-stack folder cannot be read as given."""


class RegistrationError(LnpstoreError):
    """The BF offset cannot be estimated (missing images, no usable field)."""


class TargetError(LnpstoreError):
    """Targets or the split cannot be computed (no control cells, too few cells, missing GFP images)."""


class CropError(LnpstoreError):
    """Crops cannot be made (no tracks, missing images, bad crop bytes)."""


class PanelError(LnpstoreError, ValueError):
    """A panel (series x steps x channels) or its targets cannot be used as given (shape, lengths, labels)."""


class StoreLocked(StoreError):
    """Another process is writing the store (one writer per store) and did not finish in time."""


class StoreReadOnly(StoreError, PermissionError):
    """A writing command was given a store (or output folder) it has no permission to write."""


class StoreDamaged(StoreError):
    """A live file of a table is missing, truncated or unreadable, or ``lnpstore.json`` is corrupt."""
