"""Write-behind batching between the registrar's in-memory state and the store.

The registrar changes state on every REGISTER and keepalive (GB/T 28181-2022 §9.6: by default a
keepalive every 60 s, so 50,000 devices are ~830 changes a second). Writing each change would
turn a keepalive storm into a write storm. Instead the registrar calls :meth:`mark_dirty` /
:meth:`add_event` without awaiting; pending device states coalesce per ``device_id`` (the last
state wins) and one background task writes everything pending in a single transaction every
``interval`` seconds, or as soon as ``max_batch`` items are pending.

Failure policy: a flush takes the pending items out, and puts them back if the write fails
(device states marked again meanwhile stay newer and win; events keep their order), logs, and
retries one full ``interval`` later, so a database outage costs memory, not data, and does not
become a tight retry loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from ..flusher import PeriodicFlusher
from ._base import BatchWriter, DeviceRecord, StatusEvent
from ._errors import StoreError

__all__ = ["WriteBehind"]

log = logging.getLogger("gb28181.store")


class WriteBehind:
    """Coalesce device writes and batch status events into periodic transactions.

    :param store: where to write; anything with ``dialect`` and ``write_batch``.
    :param interval: seconds between background flushes (and between retries after a failure).
    :param max_batch: flush early once this many items (devices + events) are pending.

    Counters, readable as plain attributes for metrics: ``marks`` (calls to
    :meth:`mark_dirty`), ``events_added``, ``flushes`` (successful transactions),
    ``rows_written`` (devices + events), ``devices_written``, ``events_written``, ``failures``
    (failed flushes); ``last_error`` holds the text of the latest failure, or ``None`` once a
    flush succeeds again.
    """

    def __init__(self, store: BatchWriter, *, interval: float = 1.0, max_batch: int = 5000) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._store = store
        self._interval = interval
        self._max_batch = max_batch
        self._devices: dict[str, DeviceRecord] = {}
        self._events: list[StatusEvent] = []
        self._flush_lock = asyncio.Lock()
        self._flusher = PeriodicFlusher(
            self.flush,
            interval,
            name="gb28181-store-write-behind",
            more=lambda: self.pending >= self._max_batch,
        )

        self.marks = 0
        self.events_added = 0
        self.flushes = 0
        self.rows_written = 0
        self.devices_written = 0
        self.events_written = 0
        self.failures = 0
        self.last_error: str | None = None

    @property
    def pending(self) -> int:
        """Items waiting to be written (distinct devices + events)."""
        return len(self._devices) + len(self._events)

    @property
    def running(self) -> bool:
        """Whether the background flush task is running."""
        return self._flusher.running

    # -- producer side (synchronous, never awaits) -----------------------------------------

    def mark_dirty(self, record: DeviceRecord) -> None:
        """Queue a device for writing; replaces any state queued before for it.

        Only the reference is kept (this runs on every keepalive, so it must be a dict
        store); the record is copied when a flush starts, so what is written is the
        device's latest state and the caller may keep mutating its own object.
        """
        self._devices[record.device_id] = record
        self.marks += 1
        self._maybe_wake()

    def add_event(self, event: StatusEvent) -> None:
        """Queue a status event; events are written in the order they were added."""
        self._events.append(event)
        self.events_added += 1
        self._maybe_wake()

    def _maybe_wake(self) -> None:
        # While backing off after a failure, a full batch does not cut the pause short.
        if self.pending >= self._max_batch:
            self._flusher.wake()

    # -- flushing --------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write everything pending now, in one transaction.

        Waits for a flush already in progress first, so when this returns every item queued
        before the call has been written.

        :raises StoreError: the write failed (any other exception from the store propagates the
            same way); the items are back in the queue and the failure is counted and logged.
        """
        async with self._flush_lock:
            if not self._devices and not self._events:
                return
            devices, self._devices = self._devices, {}
            events, self._events = self._events, []
            snapshot = [dataclasses.replace(r, extra=dict(r.extra)) for r in devices.values()]
            try:
                await self._store.write_batch(snapshot, events)
            except Exception as exc:
                self._requeue(devices, events)
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "store flush failed, keeping %d devices and %d events for retry "
                    "(dialect=%s, failures=%d): %s",
                    len(devices),
                    len(events),
                    self._store.dialect,
                    self.failures,
                    self.last_error,
                    exc_info=not isinstance(exc, StoreError),
                )
                raise
            except BaseException:  # cancelled mid-write: nothing is lost either
                self._requeue(devices, events)
                raise
            self.flushes += 1
            self.devices_written += len(devices)
            self.events_written += len(events)
            self.rows_written += len(devices) + len(events)
            self.last_error = None

    def _requeue(self, devices: dict[str, DeviceRecord], events: list[StatusEvent]) -> None:
        # States marked while the write was in flight are newer: keep them.
        for device_id, record in devices.items():
            self._devices.setdefault(device_id, record)
        self._events[:0] = events

    # -- background task -------------------------------------------------------------------

    def start(self) -> None:
        """Start the background flush task on the running event loop. Idempotent."""
        self._flusher.start()

    async def stop(self) -> None:
        """Stop the background task, letting a flush in progress finish, then flush the rest.

        :raises StoreError: the final flush failed; the items stay pending (call :meth:`flush`
            again to retry).
        """
        await self._flusher.stop()
