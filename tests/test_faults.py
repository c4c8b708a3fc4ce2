"""FaultTracker (sans-IO) and FaultService with a fake store and sink."""

from __future__ import annotations

from gb28181.catalog import CatalogChange, ChangeKind, ChannelStatus
from gb28181.faults import FaultService, FaultTracker
from gb28181.metrics import Metrics
from gb28181.store import FaultRecord, StatusEvent

DEV = "34020000001180000001"
CAM = "34020000001320000001"


class FakeStore:
    def __init__(self) -> None:
        self.added: list[FaultRecord] = []
        self.cleared: list[tuple[str, str, str, float]] = []
        self.fail = False

    async def add_faults(self, faults: list[FaultRecord]) -> None:
        if self.fail:
            raise OSError("down")
        self.added.extend(faults)

    async def clear_faults(self, device_id: str, channel_id: str, kind: str, at: float) -> int:
        self.cleared.append((device_id, channel_id, kind, at))
        return 1


class Sink:
    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []

    def publish(self, event: dict[str, object]) -> None:
        self.events.append(event)


def _service() -> tuple[FaultService, FakeStore, Sink, Metrics]:
    store, sink, metrics = FakeStore(), Sink(), Metrics()
    return FaultService(store, metrics, sink=sink), store, sink, metrics


def test_tracker_raises_once_and_clears() -> None:
    tracker = FaultTracker()
    assert tracker.raise_fault(DEV, "", "offline", "timeout", 1.0) is not None
    assert tracker.raise_fault(DEV, "", "offline", "again", 2.0) is None
    assert [f.cause for f in tracker.of_device(DEV)] == ["timeout"]
    assert tracker.clear(DEV, "", ["offline", "vlost"]) == ["offline"]
    assert tracker.clear(DEV, "", ["offline"]) == [] and tracker.of_device(DEV) == []
    assert len(tracker.recent[DEV]) == 1


async def test_status_keepalive_and_query_faults_emit_events() -> None:
    service, store, sink, metrics = _service()
    service.status_event(StatusEvent(DEV, 10.0, False, "keepalive timeout"))
    service.status_event(StatusEvent(DEV, 11.0, False, "keepalive timeout"))
    service.keepalive(DEV, False, 12.0)
    service.query_result(DEV, "DeviceInfo", "no answer", 13.0)
    service.query_result(DEV, "DeviceInfo", None, 14.0)
    service.status_event(StatusEvent(DEV, 15.0, True, "registered"))
    assert [e["kind"] for e in sink.events] == ["offline", "keepalive_error", "query_failed"]
    assert sink.events[0]["cause"] == "keepalive timeout"
    sample = metrics.registry.get_sample_value("gb28181_faults_total", {"kind": "offline"})
    assert sample == 1.0
    await service.flush()
    assert [f.kind for f in store.added] == ["offline", "keepalive_error", "query_failed"]
    assert {c[2] for c in store.cleared} == {"offline", "keepalive_error", "query_failed"}
    assert service.tracker.of_device(DEV) == []


async def test_catalog_status_changes_raise_and_clear_channel_faults() -> None:
    service, _store, sink, _ = _service()

    def change(status: ChannelStatus, kind: ChangeKind = ChangeKind.STATUS) -> CatalogChange:
        return CatalogChange(kind, CAM, None, event=status.value, new_status=status)

    service.catalog_changes(DEV, [change(ChannelStatus.VLOST)], 1.0)
    service.catalog_changes(DEV, [change(ChannelStatus.OFF)], 2.0)
    assert [f.kind for f in service.tracker.of_device(DEV)] == ["channel_off"]
    service.catalog_changes(DEV, [change(ChannelStatus.ON)], 3.0)
    service.catalog_changes(DEV, [change(ChannelStatus.DEFECT, ChangeKind.IGNORED)], 4.0)
    assert service.tracker.of_device(DEV) == []
    service.catalog_changes(DEV, [change(ChannelStatus.DEFECT)], 5.0)
    service.catalog_changes(DEV, [CatalogChange(ChangeKind.REMOVED, CAM, None)], 6.0)
    assert service.tracker.of_device(DEV) == []
    assert [e["kind"] for e in sink.events] == ["vlost", "channel_off", "defect"]
    assert sink.events[0]["channel_id"] == CAM


async def test_failed_flush_keeps_rows_for_the_next_one() -> None:
    service, store, _, _ = _service()
    service.raise_fault(DEV, "", "offline", "x", 1.0)
    store.fail = True
    try:
        await service.flush()
    except OSError:
        pass
    store.fail = False
    await service.flush()
    assert [f.kind for f in store.added] == ["offline"]
    service.start()
    await service.stop()
