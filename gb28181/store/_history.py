"""Row conversion for the history tables (faults, alarms, mobile positions) of both backends.

Columns are listed once here in the order the records' fields have; times stay float epoch
seconds (the PostgreSQL backend converts in SQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._base import AlarmRecord, FaultRecord, PositionRecord

__all__ = [
    "ALARM_COLUMNS",
    "FAULT_COLUMNS",
    "POSITION_COLUMNS",
    "alarm_from_row",
    "alarm_row",
    "fault_from_row",
    "fault_row",
    "position_from_row",
    "position_row",
]

FAULT_COLUMNS = "device_id, channel_id, kind, cause, at, cleared_at"
ALARM_COLUMNS = (
    "device_id, channel_id, sn, received_at, priority, method, alarm_type, alarm_time, "
    "description, longitude, latitude"
)
POSITION_COLUMNS = (
    "device_id, channel_id, received_at, capture_time, longitude, latitude, speed, direction, "
    "altitude"
)


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


def fault_row(f: FaultRecord) -> tuple[Any, ...]:
    return (f.device_id, f.channel_id, f.kind, f.cause, f.at, f.cleared_at)


def fault_from_row(r: Sequence[Any]) -> FaultRecord:
    return FaultRecord(r[0], r[1], r[2], r[3], float(r[4]), _f(r[5]))


def alarm_row(a: AlarmRecord) -> tuple[Any, ...]:
    return (
        a.device_id,
        a.channel_id,
        a.sn,
        a.received_at,
        a.priority,
        a.method,
        a.alarm_type,
        a.alarm_time,
        a.description,
        a.longitude,
        a.latitude,
    )


def alarm_from_row(r: Sequence[Any]) -> AlarmRecord:
    return AlarmRecord(
        r[0],
        r[1],
        int(r[2]),
        float(r[3]),
        None if r[4] is None else int(r[4]),
        r[5],
        r[6],
        r[7],
        r[8],
        _f(r[9]),
        _f(r[10]),
    )


def position_row(p: PositionRecord) -> tuple[Any, ...]:
    return (
        p.device_id,
        p.channel_id,
        p.received_at,
        p.capture_time,
        p.longitude,
        p.latitude,
        p.speed,
        p.direction,
        p.altitude,
    )


def position_from_row(r: Sequence[Any]) -> PositionRecord:
    return PositionRecord(
        r[0], r[1], float(r[2]), r[3], _f(r[4]), _f(r[5]), _f(r[6]), _f(r[7]), _f(r[8])
    )
