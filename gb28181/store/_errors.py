"""Typed storage errors.

Driver exceptions (``sqlite3.Error``, ``asyncpg.PostgresError``, ``OSError``...) never escape the
store untyped: each backend wraps them in one of these classes, keeps the original as
``__cause__`` and records which operation failed on which dialect, so a log line or an alert says
what was being written, not just "database is locked".
"""

from __future__ import annotations

__all__ = [
    "StoreClosedError",
    "StoreConfigError",
    "StoreConnectionError",
    "StoreDataError",
    "StoreError",
    "StoreMigrationError",
]


class StoreError(Exception):
    """Base class of every error raised by the storage layer.

    ``operation`` names the store method (``"upsert_devices"``), ``dialect`` the backend
    (``"sqlite"`` / ``"postgresql"``); both may be empty when not applicable.
    """

    def __init__(self, message: str, *, operation: str = "", dialect: str = "") -> None:
        self.message = message
        self.operation = operation
        self.dialect = dialect
        super().__init__(message)

    def __str__(self) -> str:
        where = ", ".join(
            part
            for part in (
                f"dialect={self.dialect}" if self.dialect else "",
                f"operation={self.operation}" if self.operation else "",
            )
            if part
        )
        return f"{self.message} ({where})" if where else self.message


class StoreConfigError(StoreError):
    """The store URL or options are invalid (unknown scheme, malformed path...)."""


class StoreConnectionError(StoreError):
    """The database could not be reached, or the connection was lost."""


class StoreDataError(StoreError):
    """A value was rejected: not JSON-serialisable, out of range, constraint violation."""


class StoreMigrationError(StoreError):
    """A migration file is malformed or failed to apply (its transaction was rolled back)."""


class StoreClosedError(StoreError):
    """The store was used before ``open()`` or after ``close()``."""
