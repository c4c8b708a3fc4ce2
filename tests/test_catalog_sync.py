"""CatalogService: full syncs, notifications, persistence hand-off, periodic refresh."""

from __future__ import annotations

import asyncio

from gb28181 import manscdp
from gb28181.catalog import ChangeKind, ChannelStatus
from gb28181.catalog_sync import CatalogService
from gb28181.channel_writer import ChannelWriter
from gb28181.correlator import QueryDone
from gb28181.queries import QueryTimeout
from gb28181.store import ChannelRecord
from tests.test_channel_writer import FakeStore

NVR = "34020000001180000001"
SERVER = "34020000002000000001"
T0 = 1_700_000_000.0


def cam(n: int) -> str:
    return f"3402000000132{n:07d}"


class Counts:
    def __init__(self) -> None:
        self.kinds: dict[str, int] = {}

    def catalog_change(self, kind: str, count: int = 1) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + count


class FakeQueries:
    """Answers every Catalog query with the scripted items (or raises)."""

    def __init__(self, items: list[manscdp.CatalogItem], partial: bool = False) -> None:
        self.items = items
        self.partial = partial
        self.error: Exception | None = None
        self.asked: list[str] = []
        self.timeouts: list[float | None] = []

    async def query(
        self, device_id: str, message: manscdp.Message, *, timeout: float | None = None
    ) -> QueryDone:
        self.asked.append(device_id)
        self.timeouts.append(timeout)
        if self.error is not None:
            raise self.error
        return done(self.items, self.partial)


def done(items: list[manscdp.CatalogItem], partial: bool = False) -> QueryDone:
    return QueryDone(NVR, "Catalog", 1, (), tuple(items), len(items), partial,
                     "timeout: 1 of 2 items" if partial else "", None, T0, T0)  # fmt: skip


def item(n: int, status: str = "ON", event: str | None = None) -> manscdp.CatalogItem:
    return manscdp.CatalogItem(device_id=cam(n), name=f"摄像机{n}", parent_id=NVR, status=status,
                               event=event)  # fmt: skip


def service(queries: FakeQueries) -> tuple[CatalogService, FakeStore, ChannelWriter, Counts]:
    store, counts = FakeStore(), Counts()
    writer = ChannelWriter(store)
    svc = CatalogService(queries, writer, counts, server_id=SERVER, clock=lambda: T0)  # type: ignore[arg-type]
    return svc, store, writer, counts


async def test_sync_builds_the_tree_and_queues_rows() -> None:
    svc, store, writer, counts = service(FakeQueries([item(1), item(2)]))
    result = await svc.request_sync(NVR)
    assert result is not None and len(result.changes) == 2
    tree = svc.trees[NVR]
    assert [n.name for n in tree.roots()] == ["摄像机1", "摄像机2"]
    assert svc.last_result[NVR] == "complete" and svc.last_sync[NVR] == T0
    assert counts.kinds == {"added": 2}
    await writer.flush()
    assert store.upserts == [(NVR, [cam(1), cam(2)])]


async def test_complete_sync_removes_missing_nodes_partial_does_not() -> None:
    svc, store, writer, _counts = service(FakeQueries([]))
    svc.apply_answer(NVR, done([item(1), item(2)]), T0)
    svc.apply_answer(NVR, done([item(1)], partial=True), T0 + 1)
    assert len(svc.trees[NVR]) == 2
    assert svc.last_result[NVR].startswith("partial: timeout")
    svc.apply_answer(NVR, done([item(1)]), T0 + 2)
    assert len(svc.trees[NVR]) == 1
    await writer.flush()
    assert store.deletes == [(NVR, [cam(2)])]


async def test_failed_query_is_recorded_and_tree_kept() -> None:
    queries = FakeQueries([])
    queries.error = QueryTimeout("no answer")
    svc, _store, _writer, _counts = service(queries)
    svc.load(NVR, [ChannelRecord(device_id=NVR, channel_id=cam(1), status="ON")])
    assert await svc.sync(NVR) is None
    assert svc.last_result[NVR] == "failed: no answer" and len(svc.trees[NVR]) == 1
    assert svc.last_sync[NVR] == T0  # retried by the periodic refresh


async def test_concurrent_requests_share_one_sync() -> None:
    queries = FakeQueries([item(1)])
    svc, _store, _writer, _counts = service(queries)
    first = svc.request_sync(NVR)
    svc.device_online(NVR, T0)
    assert svc.request_sync(NVR) is first
    await first
    await asyncio.sleep(0)
    assert queries.asked == [NVR]


async def test_notify_events_change_status_and_unknown_channels_trigger_a_sync() -> None:
    queries = FakeQueries([item(1), item(2)])
    svc, store, writer, counts = service(queries)
    svc.apply_answer(NVR, done([item(1)]), T0)
    heard: list[list[ChangeKind]] = []
    svc.listeners.append(lambda dev, changes, now: heard.append([c.kind for c in changes]))
    notify = manscdp.CatalogResponse(
        root=manscdp.Root.NOTIFY, device_id=NVR, sum_num=1, items=(item(1, "", "VLOST"),)
    )
    changes = svc.apply_notify(NVR, notify, T0 + 1)
    assert [c.kind for c in changes] == [ChangeKind.STATUS]
    node = svc.trees[NVR].get(cam(1))
    assert node is not None and node.status is ChannelStatus.VLOST
    assert heard == [[ChangeKind.STATUS]] and counts.kinds["status"] == 1
    assert queries.asked == []
    unknown = manscdp.CatalogResponse(
        root=manscdp.Root.NOTIFY, device_id=NVR, sum_num=1, items=(item(2, "", "ON"),)
    )
    svc.apply_notify(NVR, unknown, T0 + 2)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert queries.asked == [NVR]
    await svc.stop()
    await writer.flush()
    # The VLOST row and the nodes the follow-up sync added, in one batch.
    assert store.upserts == [(NVR, [cam(1), cam(2)])]


def test_due_lists_online_devices_past_the_refresh_interval() -> None:
    svc, _store, _writer, _counts = service(FakeQueries([]))
    assert svc.due(lambda d: True, T0) == []
    svc.refresh_interval = 60.0
    svc.last_sync = {NVR: T0, cam(9): T0 - 100}
    assert svc.due(lambda d: True, T0 + 30) == [cam(9)]
    assert svc.due(lambda d: d == NVR, T0 + 60) == [NVR]


async def test_lower_platforms_get_the_longer_catalog_timeout() -> None:
    queries = FakeQueries([item(1)])
    svc, _, _, _ = service(queries)
    svc.timeout, svc.platform_timeout = 60.0, 300.0
    lower = "34020000002000000009"  # type 200: a lower platform
    await svc.sync(lower)
    await svc.sync(NVR)
    assert queries.asked == [lower, NVR] and queries.timeouts == [300.0, 60.0]
    svc.platform_timeout = None
    assert svc.timeout_of(lower) == 60.0
