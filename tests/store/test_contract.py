"""The behaviour every :class:`Store` must share, run against SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest

from gb28181.store import (
    DeviceRecord,
    StatusEvent,
    Store,
    StoreClosedError,
    StoreDataError,
    load_migrations,
    open_store,
)

DEVICE_ID = "34020000001320000001"
PLATFORM_ID = "34020000002000000001"


def full_record(device_id: str = DEVICE_ID) -> DeviceRecord:
    """A record with every field away from its default."""
    return DeviceRecord(
        device_id=device_id,
        kind="platform",
        name="南门 入口 #3",
        password="s3cr€t",
        transport="TCP",
        contact="<sip:34020000002000000001@10.0.0.7:5060;transport=tcp>",
        host="203.0.113.9",
        port=40123,
        expires=3600,
        registered_at=1_700_000_000.5,  # exact at microsecond resolution on both dialects
        last_keepalive=1_700_000_060.25,
        online=True,
        user_agent="IP Camera 2.1",
        gb_version="3.0",
        charset="UTF-8",
        extra={
            "channels": 16,
            "ratio": 0.75,
            "tags": ["gate", "东区"],
            "nested": {"ok": True, "none": None},
        },
    )


def history_ids(events: list[StatusEvent]) -> list[tuple[float, str]]:
    return [(e.at, e.reason) for e in events]


async def test_dialect_names_backend(store: Store, store_url: str) -> None:
    assert store.dialect == store_url.split(":", 1)[0]


async def test_round_trip_every_field(store: Store) -> None:
    record = full_record()
    await store.upsert_devices([record])

    assert await store.get_device(DEVICE_ID) == record
    assert await store.load_devices() == [record]


async def test_defaults_round_trip(store: Store) -> None:
    record = DeviceRecord(device_id=DEVICE_ID, kind="device")
    await store.upsert_devices([record])

    loaded = await store.get_device(DEVICE_ID)
    assert loaded == record
    assert loaded is not None
    assert loaded.password is None
    assert loaded.registered_at is None
    assert loaded.extra == {}


async def test_wall_clock_times_keep_microseconds(store: Store) -> None:
    now = time.time()
    await store.upsert_devices([DeviceRecord(DEVICE_ID, "device", last_keepalive=now)])

    loaded = await store.get_device(DEVICE_ID)
    assert loaded is not None
    assert loaded.last_keepalive == pytest.approx(now, abs=1e-6)


async def test_get_unknown_device_is_none(store: Store) -> None:
    assert await store.get_device("00000000000000000000") is None


async def test_upsert_replaces_whole_record(store: Store) -> None:
    await store.upsert_devices([full_record()])
    replacement = DeviceRecord(DEVICE_ID, "device", name="renamed", extra={"v": 2})

    await store.upsert_devices([replacement])

    assert await store.load_devices() == [replacement]


async def test_upsert_last_duplicate_in_batch_wins(store: Store) -> None:
    first = DeviceRecord(DEVICE_ID, "device", name="first")
    last = DeviceRecord(DEVICE_ID, "device", name="last", online=True)

    await store.upsert_devices([first, last])

    assert await store.load_devices() == [last]


async def test_upsert_empty_batch_is_noop(store: Store) -> None:
    await store.upsert_devices([])
    await store.append_status_events([])
    await store.write_batch([], [])

    assert await store.load_devices() == []


async def test_upsert_ten_thousand_in_one_call(store: Store) -> None:
    records = [
        DeviceRecord(
            f"3402000000132{i:07d}",
            "device",
            name=f"cam {i}",
            port=5060 + i % 1000,
            online=i % 3 == 0,
            registered_at=1_700_000_000.0 + i,
            extra={"n": i},
        )
        for i in range(10_000)
    ]

    await store.upsert_devices(records)

    loaded = await store.load_devices()
    assert len(loaded) == 10_000
    assert loaded == sorted(records, key=lambda r: r.device_id)


async def test_load_devices_sorted_by_id(store: Store) -> None:
    ids = ["34020000001320000009", PLATFORM_ID, "34020000001310000001"]
    await store.upsert_devices([DeviceRecord(i, "device") for i in ids])

    assert [r.device_id for r in await store.load_devices()] == sorted(ids)


async def test_delete_device(store: Store) -> None:
    await store.upsert_devices([full_record(), full_record(PLATFORM_ID)])
    await store.append_status_events([StatusEvent(DEVICE_ID, 1.0, True, "registered")])

    assert await store.delete_device(DEVICE_ID) is True
    assert await store.delete_device(DEVICE_ID) is False
    assert await store.get_device(DEVICE_ID) is None
    assert [r.device_id for r in await store.load_devices()] == [PLATFORM_ID]
    # History is an audit trail: it outlives the device.
    assert len(await store.status_history(DEVICE_ID)) == 1


async def test_bad_extra_rejected_and_batch_not_written(store: Store) -> None:
    good = DeviceRecord(PLATFORM_ID, "platform")
    bad = DeviceRecord(DEVICE_ID, "device", extra={"when": {1, 2}})
    event = StatusEvent(PLATFORM_ID, 1.0, True, "registered")

    with pytest.raises(StoreDataError, match=DEVICE_ID) as info:
        await store.write_batch([good, bad], [event])

    assert info.value.operation == "write_batch"
    assert info.value.dialect == store.dialect
    assert await store.load_devices() == []
    assert await store.status_history(PLATFORM_ID) == []


async def test_write_batch_writes_devices_and_events(store: Store) -> None:
    record = full_record()
    event = StatusEvent(DEVICE_ID, 1_700_000_000.5, True, "registered")

    await store.write_batch([record], [event])

    assert await store.load_devices() == [record]
    assert await store.status_history(DEVICE_ID) == [event]


async def test_status_history_newest_first(store: Store) -> None:
    events = [
        StatusEvent(DEVICE_ID, 100.0, True, "registered"),
        StatusEvent(DEVICE_ID, 300.0, True, "registered"),
        StatusEvent(DEVICE_ID, 200.0, False, "keepalive timeout"),
        StatusEvent(PLATFORM_ID, 250.0, True, "registered"),
    ]
    await store.append_status_events(events)

    history = await store.status_history(DEVICE_ID)

    assert history == [events[1], events[2], events[0]]


async def test_status_history_equal_times_keep_insertion_order(store: Store) -> None:
    events = [StatusEvent(DEVICE_ID, 50.0, i % 2 == 0, f"r{i}") for i in range(5)]
    await store.append_status_events(events)

    assert await store.status_history(DEVICE_ID) == events[::-1]


async def test_status_history_limit_and_before_paging(store: Store) -> None:
    events = [StatusEvent(DEVICE_ID, 1000.0 + i, i % 2 == 0, f"e{i}") for i in range(25)]
    # Two batches, so ordering does not depend on one statement.
    await store.append_status_events(events[:10])
    await store.append_status_events(events[10:])

    pages: list[list[StatusEvent]] = []
    before: float | None = None
    while True:
        page = await store.status_history(DEVICE_ID, limit=10, before=before)
        if not page:
            break
        pages.append(page)
        before = page[-1].at

    assert [len(p) for p in pages] == [10, 10, 5]
    assert [e for p in pages for e in p] == events[::-1]
    assert await store.status_history(DEVICE_ID, limit=3, before=1010.0) == [
        events[9],
        events[8],
        events[7],
    ]


async def test_status_history_limit_zero_and_negative(store: Store) -> None:
    await store.append_status_events([StatusEvent(DEVICE_ID, 1.0, True, "registered")])

    assert await store.status_history(DEVICE_ID, limit=0) == []
    with pytest.raises(StoreDataError, match="limit"):
        await store.status_history(DEVICE_ID, limit=-1)


async def test_migrate_twice_is_noop(store: Store) -> None:
    await store.upsert_devices([full_record()])

    assert await store.migrate() == []
    assert await store.migrate() == []

    assert await store.load_devices() == [full_record()]
    applied = await store.applied_versions()
    assert applied == [m.version for m in load_migrations(store.dialect)]


async def test_persists_across_restart(store_url: str) -> None:
    first = await open_store(store_url)
    await first.write_batch(
        [full_record(), full_record(PLATFORM_ID)],
        [StatusEvent(DEVICE_ID, 10.0, True, "registered")],
    )
    await first.close()

    async with await open_store(store_url) as second:
        assert await second.load_devices() == [full_record(), full_record(PLATFORM_ID)]
        assert await second.status_history(DEVICE_ID) == [
            StatusEvent(DEVICE_ID, 10.0, True, "registered")
        ]
        assert await second.migrate() == []


async def test_closed_store_raises_typed_error(store_url: str) -> None:
    store = await open_store(store_url)
    await store.close()
    await store.close()  # idempotent

    with pytest.raises(StoreClosedError) as info:
        await store.load_devices()
    assert info.value.operation == "load_devices"
    with pytest.raises(StoreClosedError):
        await store.upsert_devices([full_record()])


async def test_context_manager_closes(store_url: str) -> None:
    async with await open_store(store_url) as store:
        await store.upsert_devices([full_record()])

    with pytest.raises(StoreClosedError):
        await store.get_device(DEVICE_ID)
