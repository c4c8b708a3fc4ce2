"""Record <-> row conversion shared by both backends.

The column order below is the single source of truth for the ``devices`` table as seen from
Python; both backends build their SQL from it, so adding a column is one edit here plus a
migration per dialect.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from ._base import DeviceRecord
from ._errors import StoreDataError

__all__ = [
    "DEVICE_COLUMNS",
    "TIME_COLUMNS",
    "check_limit",
    "decode_extra",
    "device_from_row",
    "encode_extra",
    "latest_per_device",
]

DEVICE_COLUMNS: tuple[str, ...] = (
    "device_id",
    "kind",
    "name",
    "password",
    "transport",
    "contact",
    "host",
    "port",
    "expires",
    "registered_at",
    "last_keepalive",
    "online",
    "user_agent",
    "gb_version",
    "charset",
    "extra",
)
"""Columns of ``devices`` in :class:`DeviceRecord` field order."""

TIME_COLUMNS = frozenset({"registered_at", "last_keepalive"})
"""Columns holding epoch seconds in Python (``timestamptz`` on PostgreSQL)."""


def latest_per_device(records: Iterable[DeviceRecord]) -> list[DeviceRecord]:
    """Drop all but the last record of each ``device_id``.

    PostgreSQL refuses to touch one row twice in a single ``INSERT ... ON CONFLICT`` statement,
    and on either dialect only the last state matters.
    """
    latest: dict[str, DeviceRecord] = {}
    for record in records:
        latest[record.device_id] = record
    return list(latest.values())


def encode_extra(record: DeviceRecord, *, operation: str, dialect: str) -> str:
    """Serialise ``record.extra`` to compact JSON (UTF-8 kept as is, NaN refused)."""
    try:
        return json.dumps(record.extra, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreDataError(
            f"device {record.device_id!r}: extra is not JSON-serialisable: {exc}",
            operation=operation,
            dialect=dialect,
        ) from exc


def decode_extra(
    text: str | None, device_id: str, *, operation: str, dialect: str
) -> dict[str, Any]:
    """Parse the stored ``extra`` column back into a dict."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise StoreDataError(
            f"device {device_id!r}: stored extra is not valid JSON: {exc}",
            operation=operation,
            dialect=dialect,
        ) from exc
    if not isinstance(value, dict):
        raise StoreDataError(
            f"device {device_id!r}: stored extra is {type(value).__name__}, expected an object",
            operation=operation,
            dialect=dialect,
        )
    return value


def device_from_row(row: Sequence[Any], *, operation: str, dialect: str) -> DeviceRecord:
    """Build a record from a row selected in :data:`DEVICE_COLUMNS` order."""
    (
        device_id,
        kind,
        name,
        password,
        transport,
        contact,
        host,
        port,
        expires,
        registered_at,
        last_keepalive,
        online,
        user_agent,
        gb_version,
        charset,
        extra,
    ) = row
    return DeviceRecord(
        device_id=device_id,
        kind=kind,
        name=name,
        password=password,
        transport=transport,
        contact=contact,
        host=host,
        port=int(port),
        expires=int(expires),
        registered_at=None if registered_at is None else float(registered_at),
        last_keepalive=None if last_keepalive is None else float(last_keepalive),
        online=bool(online),
        user_agent=user_agent,
        gb_version=gb_version,
        charset=charset,
        extra=decode_extra(extra, device_id, operation=operation, dialect=dialect),
    )


def check_limit(limit: int, *, operation: str, dialect: str) -> int:
    """Reject a negative page size before it reaches SQL (SQLite reads -1 as "no limit")."""
    if limit < 0:
        raise StoreDataError(
            f"limit must be >= 0, got {limit}", operation=operation, dialect=dialect
        )
    return limit
