"""ChannelRecord <-> row conversion and the SQL pieces both backends share.

:data:`CHANNEL_COLUMNS` is the order of the ``channels`` table as seen from Python;
:data:`OPERATOR_COLUMNS` are the ones a catalog upsert must never overwrite.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from ._base import ChannelRecord
from ._errors import StoreDataError

__all__ = [
    "CHANNEL_COLUMNS",
    "OPERATOR_COLUMNS",
    "channel_from_row",
    "channel_values",
    "latest_per_channel",
    "like_patterns",
]

CHANNEL_COLUMNS: tuple[str, ...] = (
    "device_id",
    "channel_id",
    "parent_id",
    "parent_ids",
    "kind",
    "name",
    "manufacturer",
    "model",
    "owner",
    "civil_code",
    "address",
    "parental",
    "status",
    "longitude",
    "latitude",
    "ptz_type",
    "business_group_id",
    "info",
    "security_class",
    "owner_department",
    "shared",
    "updated_at",
)

OPERATOR_COLUMNS = frozenset({"security_class", "owner_department", "shared"})
"""Set by operators; written on insert only."""

UPDATE_COLUMNS = tuple(
    c for c in CHANNEL_COLUMNS if c not in OPERATOR_COLUMNS and c not in ("device_id", "channel_id")
)


def latest_per_channel(records: Iterable[ChannelRecord]) -> list[ChannelRecord]:
    """Keep the last record of each ``channel_id`` (one statement may not touch a row twice)."""
    latest: dict[str, ChannelRecord] = {}
    for record in records:
        latest[record.channel_id] = record
    return list(latest.values())


def channel_values(
    device_id: str, record: ChannelRecord, *, operation: str, dialect: str
) -> tuple[Any, ...]:
    """Values in :data:`CHANNEL_COLUMNS` order (``info`` as JSON text, ``shared`` as bool)."""
    try:
        info = json.dumps(record.info, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreDataError(
            f"channel {record.channel_id!r}: info is not JSON-serialisable: {exc}",
            operation=operation,
            dialect=dialect,
        ) from exc
    parents = record.parent_ids
    return (
        device_id,
        record.channel_id,
        parents[0] if parents else "",
        "/".join(parents),
        record.kind,
        record.name,
        record.manufacturer,
        record.model,
        record.owner,
        record.civil_code,
        record.address,
        record.parental,
        record.status,
        record.longitude,
        record.latitude,
        record.ptz_type,
        record.business_group_id,
        info,
        record.security_class,
        record.owner_department,
        record.shared,
        record.updated_at,
    )


def channel_from_row(row: Sequence[Any], *, operation: str, dialect: str) -> ChannelRecord:
    """Build a record from a row selected in :data:`CHANNEL_COLUMNS` order."""
    (
        device_id,
        channel_id,
        _parent_id,
        parent_ids,
        kind,
        name,
        manufacturer,
        model,
        owner,
        civil_code,
        address,
        parental,
        status,
        longitude,
        latitude,
        ptz_type,
        business_group_id,
        info_text,
        security_class,
        owner_department,
        shared,
        updated_at,
    ) = row
    try:
        info = json.loads(info_text) if info_text else {}
    except ValueError as exc:
        raise StoreDataError(
            f"channel {channel_id!r}: stored info is not valid JSON: {exc}",
            operation=operation,
            dialect=dialect,
        ) from exc
    if not isinstance(info, dict):
        raise StoreDataError(
            f"channel {channel_id!r}: stored info is {type(info).__name__}, expected an object",
            operation=operation,
            dialect=dialect,
        )
    return ChannelRecord(
        device_id=device_id,
        channel_id=channel_id,
        parent_ids=tuple(parent_ids.split("/")) if parent_ids else (),
        kind=kind,
        name=name,
        manufacturer=manufacturer,
        model=model,
        owner=owner,
        civil_code=civil_code,
        address=address,
        parental=None if parental is None else int(parental),
        status=status,
        longitude=None if longitude is None else float(longitude),
        latitude=None if latitude is None else float(latitude),
        ptz_type=None if ptz_type is None else int(ptz_type),
        business_group_id=business_group_id,
        info=info,
        security_class=int(security_class),
        owner_department=owner_department,
        shared=bool(shared),
        updated_at=float(updated_at),
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def like_patterns(text: str) -> tuple[str, str]:
    """``(name contains, id starts with)`` LIKE patterns, escaped with backslash."""
    escaped = _escape_like(text)
    return f"%{escaped}%", f"{escaped}%"
