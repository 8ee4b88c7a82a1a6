"""oupsish: ordered, partitioned Parquet datasets, appendable and safe.

Import everything from here::

    from oupsish import OrderedParquetDataset, Store, sublevel, toplevel, write
"""

from oupsish._version import __version__
from oupsish.dataset import DatasetView, OrderedParquetDataset, write
from oupsish.errors import (
    CorruptDatasetError,
    InvalidFrameError,
    LockTimeoutError,
    OrderedOnMismatchError,
    OupsishError,
    ReadOnlyError,
    SchemaMismatchError,
    SnapshotExpiredError,
    UnsafeMetadataError,
)
from oupsish.indexer import is_toplevel, sublevel, toplevel
from oupsish.snapshot import Snapshot
from oupsish.store import Store

__all__ = [
    "CorruptDatasetError",
    "DatasetView",
    "InvalidFrameError",
    "LockTimeoutError",
    "OrderedOnMismatchError",
    "OrderedParquetDataset",
    "OupsishError",
    "ReadOnlyError",
    "SchemaMismatchError",
    "Snapshot",
    "SnapshotExpiredError",
    "Store",
    "UnsafeMetadataError",
    "__version__",
    "is_toplevel",
    "sublevel",
    "toplevel",
    "write",
]
