"""Alarms from devices: recorded, counted, acknowledged (GB/T 28181-2016 §9.4, notes §4.10).

A device reports an alarm in a MESSAGE (or a NOTIFY of an alarm subscription) with root
``Notify`` and CmdType ``Alarm``. The platform answers 200 OK at SIP level at once and then
acknowledges with its own MESSAGE: root ``Response``, the same SN and DeviceID, ``Result`` OK
(A.2.6.4); devices that get no acknowledgement repeat the alarm.

Recent alarms are kept in memory, newest last, bounded by ``keep``, and written to storage
(the ``alarms`` table, migration 0003) in the background when a store is given.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

from . import manscdp
from .queries import QueryError, QueryService
from .store import AlarmRecord

__all__ = ["AlarmMetrics", "AlarmRecord", "AlarmService"]

log = logging.getLogger(__name__)


class AlarmMetrics(Protocol):
    def alarm(self, method: str) -> None: ...


class AlarmStore(Protocol):
    async def add_alarms(self, alarms: list[AlarmRecord]) -> None: ...


class AlarmService:
    """Records alarms and acknowledges them.

    :param queries: sends the acknowledgement (``None``: do not acknowledge, tests).
    :param keep: alarms kept in memory.
    """

    def __init__(
        self,
        queries: QueryService | None,
        metrics: AlarmMetrics,
        *,
        keep: int = 10000,
        store: AlarmStore | None = None,
    ) -> None:
        self.queries = queries
        self.store = store
        self.metrics = metrics
        self.alarms: deque[AlarmRecord] = deque(maxlen=keep)
        self._acks: set[asyncio.Task[None]] = set()

    def on_alarm(self, sender_id: str, message: manscdp.Message, now: float) -> AlarmRecord:
        """Record an ``Alarm`` Notify from ``sender_id`` and schedule its acknowledgement."""
        info = getattr(message, "info", None)
        record = AlarmRecord(
            device_id=sender_id,
            channel_id=message.device_id or sender_id,
            sn=message.sn,
            received_at=now,
            priority=getattr(message, "alarm_priority", None),
            method=getattr(message, "alarm_method", None),
            alarm_type=info.alarm_type if isinstance(info, manscdp.AlarmInfo) else None,
            alarm_time=getattr(message, "alarm_time", None),
            description=getattr(message, "alarm_description", None),
            longitude=getattr(message, "longitude", None),
            latitude=getattr(message, "latitude", None),
        )
        self.alarms.append(record)
        self.metrics.alarm(record.method or "unknown")
        log.info(
            "alarm device=%s channel=%s method=%s type=%s priority=%s",
            sender_id,
            record.channel_id,
            record.method,
            record.alarm_type,
            record.priority,
        )
        if self.queries is not None or self.store is not None:
            task = asyncio.get_running_loop().create_task(self._ack(record))
            self._acks.add(task)
            task.add_done_callback(self._acks.discard)
        return record

    def page(
        self, *, limit: int, offset: int = 0, device_id: str | None = None
    ) -> tuple[int, list[AlarmRecord]]:
        """Alarms newest first, optionally of one device: (total, page)."""
        items = [a for a in reversed(self.alarms) if device_id is None or a.device_id == device_id]
        return len(items), items[offset : offset + limit]

    async def _ack(self, record: AlarmRecord) -> None:
        if self.store is not None:
            try:
                await self.store.add_alarms([record])
            except Exception as exc:
                log.warning("alarm not stored device=%s: %s", record.device_id, exc)
        if self.queries is None:
            return
        response = manscdp.ResultResponse(
            cmd_type="Alarm", sn=record.sn, device_id=record.channel_id, result="OK"
        )
        try:
            await self.queries.send(record.device_id, response)
        except QueryError as exc:
            log.info("alarm acknowledgement failed device=%s: %s", record.device_id, exc)

    async def stop(self) -> None:
        """Cancel acknowledgements in flight."""
        for task in list(self._acks):
            task.cancel()
