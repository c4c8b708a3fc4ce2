"""Write-behind for catalog nodes: tree changes in memory now, rows in the store later.

A Catalog answer of a lower platform may list 100,000 nodes and a busy one sends status events
all day (notes §5). The device trees (:mod:`gb28181.catalog`) change in memory on the message
path; the rows they produce are handed to :class:`ChannelWriter` without awaiting. Pending
writes coalesce per ``(device, channel)`` (the last row or delete wins) and one background task
writes them every ``interval`` seconds, per device in chunks of ``chunk`` rows, so neither a
large sync nor an event storm blocks SIP handling on the database.

Failure policy as in :class:`~gb28181.store.WriteBehind`: a failed write puts its rows back
(newer ones queued meanwhile win), is logged, and is retried one interval later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from .flusher import PeriodicFlusher
from .store import ChannelRecord

__all__ = ["ChannelStore", "ChannelWriter"]

log = logging.getLogger(__name__)

_Pending = dict[str, ChannelRecord | None]
"""channel_id -> row to upsert, or ``None`` to delete."""


class ChannelStore(Protocol):
    """The store methods the writer uses."""

    async def upsert_channels(self, device_id: str, records: Sequence[ChannelRecord]) -> None: ...

    async def delete_channels(
        self, device_id: str, channel_ids: Sequence[str] | None = None
    ) -> int: ...


class ChannelWriter:
    """Coalesces catalog row writes and deletes into periodic batches.

    :param store: where rows go.
    :param interval: seconds between background flushes (and retries after a failure).
    :param chunk: rows per ``upsert_channels`` call (one transaction each).
    """

    def __init__(self, store: ChannelStore, *, interval: float = 1.0, chunk: int = 2000) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self._store = store
        self._interval = interval
        self._chunk = chunk
        self._pending: dict[str, _Pending] = {}
        self._lock = asyncio.Lock()
        self._flusher = PeriodicFlusher(self._flush_logged, interval, name="gb28181-channel-writer")
        self.rows_written = 0
        self.rows_deleted = 0
        self.failures = 0

    @property
    def pending(self) -> int:
        """Rows and deletes waiting to be written."""
        return sum(len(p) for p in self._pending.values())

    def upsert(self, device_id: str, records: Iterable[ChannelRecord]) -> None:
        """Queue rows of ``device_id`` (no I/O; returns at once)."""
        bucket = self._pending.setdefault(device_id, {})
        for record in records:
            bucket[record.channel_id] = record
        if not bucket:
            del self._pending[device_id]

    def delete(self, device_id: str, channel_ids: Iterable[str]) -> None:
        """Queue deletes of nodes of ``device_id``."""
        bucket = self._pending.setdefault(device_id, {})
        for channel_id in channel_ids:
            bucket[channel_id] = None
        if not bucket:
            del self._pending[device_id]

    async def flush(self) -> None:
        """Write everything queued before the call.

        :raises Exception: whatever the store raised; the unwritten rows are queued again.
        """
        async with self._lock:
            pending, self._pending = self._pending, {}
            for device_id in list(pending):
                bucket = pending[device_id]
                try:
                    await self._write(device_id, bucket)
                except BaseException:
                    self._requeue(pending)
                    raise
                del pending[device_id]

    async def _write(self, device_id: str, bucket: _Pending) -> None:
        rows = [r for r in bucket.values() if r is not None]
        deletes = [cid for cid, r in bucket.items() if r is None]
        for start in range(0, len(rows), self._chunk):
            await self._store.upsert_channels(device_id, rows[start : start + self._chunk])
            self.rows_written += len(rows[start : start + self._chunk])
        if deletes:
            self.rows_deleted += await self._store.delete_channels(device_id, deletes)

    def _requeue(self, pending: dict[str, _Pending]) -> None:
        for device_id, bucket in pending.items():
            newer = self._pending.get(device_id)
            if newer is None:
                self._pending[device_id] = bucket
            else:
                for channel_id, row in bucket.items():
                    newer.setdefault(channel_id, row)

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception as exc:
            self.failures += 1
            log.warning("channel write failed (%d pending, retrying): %s", self.pending, exc)
            raise

    def start(self) -> None:
        """Start the background flush task. Idempotent."""
        self._flusher.start()

    async def stop(self) -> None:
        """Stop the background task and write what is left."""
        await self._flusher.stop()
