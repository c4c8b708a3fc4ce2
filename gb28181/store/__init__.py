"""Persistence: one async :class:`Store` interface over SQLite (default) and PostgreSQL.

``await open_store(url)`` picks the backend from the URL, connects and applies migrations.
The registrar keeps hot state in memory and persists through :class:`WriteBehind`, which
coalesces per-device writes into periodic batched transactions.
"""

from __future__ import annotations

from ._base import (
    AlarmRecord,
    ApiToken,
    BatchWriter,
    CertBinding,
    ChannelRecord,
    DeviceRecord,
    FaultRecord,
    IssuedId,
    PositionRecord,
    StatusEvent,
    Store,
)
from ._batcher import WriteBehind
from ._errors import (
    StoreClosedError,
    StoreConfigError,
    StoreConnectionError,
    StoreDataError,
    StoreError,
    StoreMigrationError,
)
from ._factory import open_store
from ._migrations import Migration, load_migrations
from ._postgres import PostgresStore
from ._recordings import RecordingRequest, RecordingRow
from ._sqlite import SqliteStore
from ._url import StoreUrl, parse_store_url, redact_url

__all__ = [
    "AlarmRecord",
    "ApiToken",
    "BatchWriter",
    "CertBinding",
    "ChannelRecord",
    "DeviceRecord",
    "FaultRecord",
    "IssuedId",
    "Migration",
    "PositionRecord",
    "PostgresStore",
    "RecordingRequest",
    "RecordingRow",
    "SqliteStore",
    "StatusEvent",
    "Store",
    "StoreClosedError",
    "StoreConfigError",
    "StoreConnectionError",
    "StoreDataError",
    "StoreError",
    "StoreMigrationError",
    "StoreUrl",
    "WriteBehind",
    "load_migrations",
    "open_store",
    "parse_store_url",
    "redact_url",
]
