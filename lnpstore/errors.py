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
