"""Recording index (migration 0007) and on-demand recording requests (migration 0009): the row
types and the conversions both backends share.

One row per segment file. The row is written when the segment opens (``state='open'``), so a
crash always leaves a row for start-up reconciliation to find, and rewritten when it closes
(``'closed'``) or is rebuilt from the file after a crash (``'recovered'``). Key frames are
stored as a JSON array of ``[seconds_from_start, byte_offset]`` pairs: they are read whole with
the row (to seek), never queried.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import StoreDataError

__all__ = [
    "RECORDING_COLUMNS",
    "RECORDING_STATES",
    "REQUEST_COLUMNS",
    "RecordingRequest",
    "RecordingRow",
    "recording_from_row",
    "recording_row",
    "request_from_row",
    "request_row",
]

RECORDING_STATES = frozenset({"open", "closed", "recovered"})


@dataclass(frozen=True, slots=True)
class RecordingRow:
    """One segment file of one channel's recording."""

    id: str
    channel_id: str
    start: float
    """Unix epoch seconds of the segment's first frame (a keyframe)."""
    end: float
    """Unix epoch seconds just after its last frame (``start`` while the segment is open)."""
    path: str
    """Relative to the recordings root: ``<channel>/<YYYYMMDD>/<channel>_<start_ms>.ps``."""
    bytes: int
    codec: str
    keyframes: tuple[tuple[float, int], ...]
    """``(seconds from start, byte offset of the keyframe's pack)``, ascending."""
    sha256: str | None
    """Hex SHA-256 of the file (None while open)."""
    state: str
    """``open``, ``closed`` or ``recovered``."""
    security_class: int = 0


RECORDING_COLUMNS = (
    "id, channel_id, start_at, end_at, path, bytes, codec, keyframes, sha256, state, security_class"
)
"""Columns of ``recordings`` in :class:`RecordingRow` field order."""


def recording_row(row: RecordingRow, *, operation: str, dialect: str) -> tuple[Any, ...]:
    """The column values of ``row``.

    :raises StoreDataError: an unknown state.
    """
    if row.state not in RECORDING_STATES:
        raise StoreDataError(
            f"recording state must be one of {sorted(RECORDING_STATES)}, got {row.state!r}",
            operation=operation,
            dialect=dialect,
        )
    keyframes = json.dumps([[t, o] for t, o in row.keyframes], separators=(",", ":"))
    return (
        row.id,
        row.channel_id,
        float(row.start),
        float(row.end),
        row.path,
        int(row.bytes),
        row.codec,
        keyframes,
        row.sha256,
        row.state,
        int(row.security_class),
    )


def recording_from_row(r: Sequence[Any]) -> RecordingRow:
    keyframes = tuple((float(t), int(o)) for t, o in json.loads(r[7] or "[]"))
    return RecordingRow(
        id=r[0],
        channel_id=r[1],
        start=float(r[2]),
        end=float(r[3]),
        path=r[4],
        bytes=int(r[5]),
        codec=r[6],
        keyframes=keyframes,
        sha256=r[8],
        state=r[9],
        security_class=int(r[10]),
    )


@dataclass(frozen=True, slots=True)
class RecordingRequest:
    """An operator's on-demand recording of one channel (the API's ``POST .../record``), kept
    so that it resumes after a restart."""

    channel_id: str
    until: float | None
    """Unix epoch seconds when it ends (a duration was asked), or None: until ``DELETE``."""
    requested_by: str
    """The principal who asked ('' without authentication)."""
    requested_at: float


REQUEST_COLUMNS = "channel_id, until_at, requested_by, requested_at"
"""Columns of ``recording_requests`` in :class:`RecordingRequest` field order."""


def request_row(request: RecordingRequest) -> tuple[Any, ...]:
    """The column values of ``request``."""
    return (
        request.channel_id,
        None if request.until is None else float(request.until),
        request.requested_by,
        float(request.requested_at),
    )


def request_from_row(r: Sequence[Any]) -> RecordingRequest:
    return RecordingRequest(
        channel_id=r[0],
        until=None if r[1] is None else float(r[1]),
        requested_by=r[2],
        requested_at=float(r[3]),
    )
