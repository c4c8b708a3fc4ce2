"""Issued IDs (migration 0004) on both dialects: atomic allocation, paging, loading."""

from __future__ import annotations

import asyncio

import pytest

from gb28181.store import IssuedId, Store, StoreDataError, open_store
from gb28181.store._issued import check_block, issued_from_row, next_ids

LO = "34020000001320000001"
HI = "34020000001320000100"


def test_next_ids_follow_the_highest_and_stop_at_the_end() -> None:
    assert next_ids(None, LO, HI, 2) == [LO, "34020000001320000002"]
    assert next_ids("34020000001320000009", LO, HI, 1) == ["34020000001320000010"]
    assert next_ids("34020000001320000099", LO, HI, 1) == [HI]
    assert next_ids("34020000001320000099", LO, HI, 2) == []
    assert next_ids(None, LO, LO, 1) == [LO]


def test_check_block_refuses_malformed_bounds() -> None:
    with pytest.raises(StoreDataError):
        check_block("3402", HI, 1, operation="t", dialect="sqlite")
    with pytest.raises(StoreDataError):
        check_block(LO, HI, 0, operation="t", dialect="sqlite")
    check_block(LO, HI, 1, operation="t", dialect="sqlite")


def test_row_conversion_fills_an_empty_note() -> None:
    assert issued_from_row((LO, "d", "132", 1, None)) == IssuedId(LO, "d", "132", 1.0, "")


async def test_migration_four_is_applied(store: Store) -> None:
    assert 4 in await store.applied_versions()


async def test_issue_continues_after_the_highest_and_is_all_or_nothing(store: Store) -> None:
    first = await store.issue_ids(LO, HI, 3, department="交警", type_code="132", note="a", at=10.5)
    assert [i.id for i in first] == [LO, "34020000001320000002", "34020000001320000003"]
    assert first[0] == IssuedId(LO, "交警", "132", 10.5, "a")
    more = await store.issue_ids(LO, HI, 96, department="交警", type_code="132", at=11.0)
    assert more[-1].id == "34020000001320000099"
    assert await store.issue_ids(LO, HI, 2, department="交警", type_code="132", at=12.0) == []
    last = await store.issue_ids(LO, HI, 1, department="交警", type_code="132", at=12.0)
    assert [i.id for i in last] == [HI]
    # Another block is independent.
    other = await store.issue_ids(
        "34020000001310000001", "34020000001310000009", 1, department="城管", type_code="131",
        at=13.0,
    )  # fmt: skip
    assert other[0].id == "34020000001310000001"
    assert len(await store.load_issued_ids()) == 101


async def test_list_issued_ids_pages_newest_first(store: Store) -> None:
    await store.issue_ids(LO, HI, 2, department="a", type_code="132", at=1.0)
    await store.issue_ids(LO, HI, 1, department="b", type_code="132", note="n", at=2.0)
    total, page = await store.list_issued_ids(limit=2)
    assert total == 3
    assert [(i.id, i.department) for i in page] == [
        ("34020000001320000003", "b"),
        ("34020000001320000002", "a"),
    ]
    assert page[0].note == "n" and page[0].issued_at == 2.0
    total, page = await store.list_issued_ids(department="a", limit=10, offset=1)
    assert total == 2 and [i.id for i in page] == [LO]
    with pytest.raises(StoreDataError):
        await store.list_issued_ids(limit=-1)


async def test_issue_refuses_bad_blocks(store: Store) -> None:
    with pytest.raises(StoreDataError):
        await store.issue_ids("1", HI, 1, department="a", type_code="132", at=1.0)


async def test_concurrent_allocations_never_issue_an_id_twice(store_url: str) -> None:
    """Four connections (as four nodes would) allocate at once from one block."""
    stores = [await open_store(store_url) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(
                s.issue_ids(LO, HI, 5, department=f"d{n}", type_code="132", at=float(n))
                for n, s in enumerate(stores)
                for _ in range(4)
            )
        )
        ids = [i.id for r in results for i in r]
        assert len(ids) == 80 and len(set(ids)) == 80
        assert sorted(ids) == sorted(await stores[0].load_issued_ids())
        for batch in results:  # each allocation is one contiguous run
            assert int(batch[-1].id) - int(batch[0].id) == 4
    finally:
        for s in stores:
            await s.close()
