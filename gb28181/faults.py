"""Fault records (regulation art. 10): device and channel state changes, current state, events.

Sources feed :class:`FaultService`: the registrar's status events (offline/online), catalog
changes (channel OFF/VLOST/DEFECT and back ON), keepalive ``Status ERROR`` and failed queries.
:class:`FaultTracker` is the sans-IO core: it keeps the open faults per (device, channel, kind)
so a repeated report raises nothing and a recovery clears exactly what was open. Every fault
raised becomes an event: a log line, ``gb28181_faults_total{kind}``, a row in storage (written
in the background) and, when configured, a webhook POST (:mod:`gb28181.webhook`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import Protocol

from .catalog import CatalogChange, ChannelStatus
from .flusher import PeriodicFlusher
from .store import FaultRecord, StatusEvent

__all__ = ["STATUS_KINDS", "FaultMetrics", "FaultService", "FaultSink", "FaultTracker"]

log = logging.getLogger(__name__)

#: Channel status -> fault kind (ON and UNKNOWN are no fault).
STATUS_KINDS: dict[ChannelStatus, str] = {
    ChannelStatus.OFF: "channel_off",
    ChannelStatus.VLOST: "vlost",
    ChannelStatus.DEFECT: "defect",
}

_Key = tuple[str, str]


class FaultTracker:
    """Open faults per (device, channel) and kind; recent faults per device. No I/O."""

    def __init__(self, *, recent: int = 20) -> None:
        self.open: dict[_Key, dict[str, FaultRecord]] = {}
        self.recent: dict[str, deque[FaultRecord]] = {}
        self._recent = recent

    def raise_fault(
        self, device_id: str, channel_id: str, kind: str, cause: str, now: float
    ) -> FaultRecord | None:
        """Open a fault; ``None`` when one of that kind is already open."""
        kinds = self.open.setdefault((device_id, channel_id), {})
        if kind in kinds:
            return None
        fault = kinds[kind] = FaultRecord(device_id, channel_id, kind, cause, now)
        self.recent.setdefault(device_id, deque(maxlen=self._recent)).append(fault)
        return fault

    def clear(self, device_id: str, channel_id: str, kinds: Iterable[str]) -> list[str]:
        """Close open faults of these kinds; the kinds that were open."""
        key = (device_id, channel_id)
        current = self.open.get(key)
        if not current:
            return []
        cleared = [k for k in kinds if current.pop(k, None) is not None]
        if not current:
            del self.open[key]
        return cleared

    def of_device(self, device_id: str) -> list[FaultRecord]:
        """Open faults of a device and its channels."""
        return [f for (d, _), kinds in self.open.items() if d == device_id for f in kinds.values()]


class FaultMetrics(Protocol):
    def fault(self, kind: str) -> None: ...


class FaultSink(Protocol):
    """Where fault events go besides storage (the webhook)."""

    def publish(self, event: dict[str, object]) -> None: ...


class FaultStore(Protocol):
    async def add_faults(self, faults: list[FaultRecord]) -> None: ...

    async def clear_faults(self, device_id: str, channel_id: str, kind: str, at: float) -> int: ...


class FaultService:
    """Turns state changes into faults and fault events.

    :param store: where fault rows go (background, every ``interval`` seconds).
    :param sink: optional event sink (webhook).
    """

    def __init__(
        self,
        store: FaultStore,
        metrics: FaultMetrics,
        *,
        sink: FaultSink | None = None,
        interval: float = 1.0,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.sink = sink
        self.interval = interval
        self.tracker = FaultTracker()
        self._opened: list[FaultRecord] = []
        self._cleared: list[tuple[str, str, str, float]] = []
        self._flusher = PeriodicFlusher(self._flush_logged, interval, name="gb28181-faults")

    # -- sources ----------------------------------------------------------------------------

    def status_event(self, event: StatusEvent) -> None:
        """A registrar status event: offline raises, online clears."""
        if event.online:
            self.clear(event.device_id, "", ("offline", "keepalive_error"), event.at)
        else:
            self.raise_fault(event.device_id, "", "offline", event.reason, event.at)

    def keepalive(self, device_id: str, ok: bool, now: float) -> None:
        """A keepalive with ``Status`` OK or ERROR."""
        if ok:
            self.clear(device_id, "", ("keepalive_error",), now)
        else:
            self.raise_fault(device_id, "", "keepalive_error", "keepalive Status ERROR", now)

    def catalog_changes(self, device_id: str, changes: list[CatalogChange], now: float) -> None:
        """Catalog listener: channel status changes raise or clear channel faults."""
        for change in changes:
            if change.kind.value == "removed":
                self.clear(device_id, change.channel_id, STATUS_KINDS.values(), now)
                continue
            status = change.new_status
            if status is None and change.node is not None:
                status = change.node.status
            if status is None or change.kind.value in ("ignored", "attributes"):
                continue
            kind = STATUS_KINDS.get(status)
            others = [k for k in STATUS_KINDS.values() if k != kind]
            self.clear(device_id, change.channel_id, others, now)
            if kind is not None:
                cause = f"catalog {change.event or 'status'} {status.value}"
                self.raise_fault(device_id, change.channel_id, kind, cause, now)

    def query_result(self, device_id: str, cmd_type: str, error: str | None, now: float) -> None:
        """A query answered (``error`` None) or failed (timeout, refused)."""
        if error is None:
            self.clear(device_id, "", ("query_failed",), now)
        else:
            self.raise_fault(device_id, "", "query_failed", f"{cmd_type}: {error}", now)

    # -- core -------------------------------------------------------------------------------

    def raise_fault(
        self, device_id: str, channel_id: str, kind: str, cause: str, now: float
    ) -> FaultRecord | None:
        fault = self.tracker.raise_fault(device_id, channel_id, kind, cause, now)
        if fault is None:
            return None
        self._opened.append(fault)
        self.metrics.fault(kind)
        log.warning(
            "fault kind=%s device=%s channel=%s cause=%s", kind, device_id, channel_id, cause
        )
        if self.sink is not None:
            self.sink.publish(
                {
                    "event": "fault",
                    "kind": kind,
                    "device_id": device_id,
                    "channel_id": channel_id or None,
                    "cause": cause,
                    "at": now,
                }
            )
        return fault

    def clear(self, device_id: str, channel_id: str, kinds: Iterable[str], now: float) -> None:
        for kind in self.tracker.clear(device_id, channel_id, kinds):
            self._cleared.append((device_id, channel_id, kind, now))
            log.info("fault cleared kind=%s device=%s channel=%s", kind, device_id, channel_id)

    # -- persistence ------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write the faults raised and cleared since the last flush (in order)."""
        opened, self._opened = self._opened, []
        cleared, self._cleared = self._cleared, []
        try:
            if opened:
                await self.store.add_faults(opened)
            for device_id, channel_id, kind, at in cleared:
                await self.store.clear_faults(device_id, channel_id, kind, at)
        except Exception:
            self._opened[:0] = opened
            self._cleared[:0] = cleared
            raise

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception as exc:
            log.warning("fault write failed (retrying): %s", exc)
            raise

    def start(self) -> None:
        self._flusher.start()

    async def stop(self) -> None:
        try:
            await self._flusher.stop()
        except Exception as exc:
            log.warning("faults not written at shutdown: %s", exc)
