"""Faults, alarms and mobile positions (migration 0003) on both dialects."""

from __future__ import annotations

import pytest

from gb28181.store import AlarmRecord, FaultRecord, PositionRecord, Store, StoreError
from gb28181.store._history import fault_from_row, fault_row

DEV = "34020000001180000001"
CAM = "34020000001320000001"


def _alarm(at: float, device: str = DEV, method: str | None = "5") -> AlarmRecord:
    return AlarmRecord(
        device, CAM, 3, at, 1, method, "2", "2024-01-01T10:00:00", "门磁", 117.2, 31.8
    )


async def test_migration_three_is_applied(store: Store) -> None:
    assert 3 in await store.applied_versions()


async def test_faults_open_clear_and_page(store: Store) -> None:
    await store.add_faults(
        [
            FaultRecord(DEV, "", "offline", "keepalive timeout", 100.0),
            FaultRecord(DEV, CAM, "vlost", "catalog event VLOST", 101.5),
            FaultRecord("34020000001180000002", "", "offline", "expired", 102.0, 103.0),
        ]
    )
    total, page = await store.list_faults(limit=10)
    assert total == 3 and [f.at for f in page] == [102.0, 101.5, 100.0]
    assert page[0].cleared_at == 103.0
    assert await store.clear_faults(DEV, "", "offline", 110.25) == 1
    assert await store.clear_faults(DEV, "", "offline", 111.0) == 0
    total, page = await store.list_faults(limit=10, device_id=DEV, open_only=True)
    assert total == 1 and page == [FaultRecord(DEV, CAM, "vlost", "catalog event VLOST", 101.5)]
    total, page = await store.list_faults(limit=1, offset=1, device_id=DEV)
    assert total == 2 and page[0].kind == "offline" and page[0].cleared_at == 110.25
    await store.add_faults([])


async def test_alarms_round_trip_and_page(store: Store) -> None:
    await store.add_alarms([_alarm(10.0), _alarm(12.0, method=None), _alarm(11.0, "x")])
    total, page = await store.list_alarms(limit=2)
    assert total == 3 and [a.received_at for a in page] == [12.0, 11.0]
    assert page[0].method is None
    total, page = await store.list_alarms(limit=10, device_id=DEV)
    assert total == 2 and page[-1] == _alarm(10.0)


async def test_positions_newest_first(store: Store) -> None:
    await store.add_positions(
        [
            PositionRecord(DEV, CAM, 1.0, "2024-01-01T10:00:00", 117.0, 31.0, 12.5, 90.0, 20.0),
            PositionRecord(DEV, CAM, 2.0, None, 117.1, 31.1),
            PositionRecord(DEV, "other", 3.0),
        ]
    )
    history = await store.position_history(CAM, limit=10)
    assert [p.received_at for p in history] == [2.0, 1.0]
    assert history[1].speed == 12.5 and history[0].speed is None


async def test_negative_limit_is_a_store_error(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.list_faults(limit=-1)


def test_fault_row_round_trip() -> None:
    fault = FaultRecord(DEV, CAM, "defect", "x", 1.5, None)
    assert fault_from_row(fault_row(fault)) == fault
