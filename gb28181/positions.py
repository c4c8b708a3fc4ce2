"""MobilePosition reports from devices: stored as a history per channel (GB/T 28181-2016 §9.8).

A mobile device reports its position in a ``Notify`` with CmdType ``MobilePosition``, in a
MESSAGE or in a NOTIFY of a MobilePosition subscription. Two body forms exist: the 2016 flat
form (one position: ``DeviceID``, ``Time``, ``Longitude``... at the top level) and the 2022 list
form (``DeviceList`` of items, each with its own ``DeviceID`` and ``CaptureTime``). Both become
:class:`~gb28181.store.PositionRecord` rows, written in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

from . import manscdp
from .store import PositionRecord

__all__ = ["PositionService", "PositionStore", "positions_from_notify"]

log = logging.getLogger(__name__)

#: Items taken from one report (a bounded body cannot list more anyway).
MAX_ITEMS = 1000


class PositionStore(Protocol):
    async def add_positions(self, positions: list[PositionRecord]) -> None: ...


def positions_from_notify(
    sender_id: str, message: manscdp.Message, now: float
) -> list[PositionRecord]:
    """The positions a MobilePosition Notify carries (flat form, list form, or both).

    Items without coordinates are skipped: a position without longitude and latitude says
    nothing.
    """
    out: list[PositionRecord] = []
    if not isinstance(message, manscdp.MobilePositionNotify):
        return out
    if message.longitude is not None or message.latitude is not None:
        out.append(
            PositionRecord(
                device_id=sender_id,
                channel_id=message.device_id or sender_id,
                received_at=now,
                capture_time=message.time,
                longitude=message.longitude,
                latitude=message.latitude,
                speed=message.speed,
                direction=message.direction,
                altitude=message.altitude,
            )
        )
    for item in message.items[:MAX_ITEMS]:
        if item.longitude is None and item.latitude is None:
            continue
        out.append(
            PositionRecord(
                device_id=sender_id,
                channel_id=item.device_id or message.device_id or sender_id,
                received_at=now,
                capture_time=item.capture_time,
                longitude=item.longitude,
                latitude=item.latitude,
                speed=item.speed,
                direction=item.direction,
                altitude=item.altitude if item.altitude is not None else item.height,
            )
        )
    return out


class PositionService:
    """Keeps the latest reports in memory and writes every report to the store."""

    def __init__(self, store: PositionStore | None, *, keep: int = 10000) -> None:
        self.store = store
        self.recent: deque[PositionRecord] = deque(maxlen=keep)
        self.received = 0
        self._writes: set[asyncio.Task[None]] = set()

    def on_position(
        self, sender_id: str, message: manscdp.Message, now: float
    ) -> list[PositionRecord]:
        """A MANSCDP callback for ``Notify``/``MobilePosition``."""
        records = positions_from_notify(sender_id, message, now)
        if not records:
            log.info("MobilePosition without coordinates from %s", sender_id)
            return records
        self.received += len(records)
        self.recent.extend(records)
        if self.store is not None:
            task = asyncio.get_running_loop().create_task(self._write(records))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
        return records

    async def _write(self, records: list[PositionRecord]) -> None:
        assert self.store is not None
        try:
            await self.store.add_positions(records)
        except Exception as exc:
            log.warning("positions not stored device=%s: %s", records[0].device_id, exc)

    async def flush(self) -> None:
        """Wait for the writes in flight (tests, shutdown)."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def stop(self) -> None:
        await self.flush()
