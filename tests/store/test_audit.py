"""Audit trail rows (migration 0005) on both dialects: exact round trip, paging, tail."""

from __future__ import annotations

import pytest

from authz.audit import AuditChain, AuditRecord, verify
from gb28181.store import Store, StoreDataError
from gb28181.store._audit import UNDECODABLE, audit_from_row, audit_row


def _records(count: int, chain: AuditChain | None = None) -> list[AuditRecord]:
    chain = chain or AuditChain()
    return [
        chain.append(
            time=1_700_000_000.123456789 + i,
            principal_id="alice",
            department="公安",
            level=1 if i % 2 else None,
            action="view",
            target=f"3402000000132000000{i % 10}",
            outcome="allow",
            rule="level-1",
            source="10.0.0.1:5060",
            extra={"n": i, "f": 0.1, "nested": {"b": [1, "二"], "a": None}},
        )
        for i in range(count)
    ]


async def test_migration_five_is_applied(store: Store) -> None:
    assert 5 in await store.applied_versions()


async def test_records_round_trip_exactly_and_verify(store: Store) -> None:
    assert await store.audit_tail() is None
    assert await store.load_audit() == []
    records = _records(5)
    await store.append_audit(records[:2])
    await store.append_audit(records[2:])
    await store.append_audit([])
    loaded = await store.load_audit()
    assert loaded == records
    assert verify(loaded).ok
    assert await store.audit_tail() == records[-1]


async def test_load_audit_pages_by_seq(store: Store) -> None:
    records = _records(7)
    await store.append_audit(records)
    first = await store.load_audit(limit=3)
    second = await store.load_audit(after_seq=first[-1].seq, limit=3)
    third = await store.load_audit(after_seq=second[-1].seq, limit=3)
    assert [r.seq for r in first + second + third] == list(range(1, 8))
    with pytest.raises(StoreDataError):
        await store.load_audit(limit=-1)


async def test_a_duplicate_seq_is_refused_and_nothing_is_written(store: Store) -> None:
    records = _records(3)
    await store.append_audit(records[:2])
    with pytest.raises(StoreDataError):
        await store.append_audit([records[2], records[1]])
    assert [r.seq for r in await store.load_audit()] == [1, 2]


def test_undecodable_extra_still_loads() -> None:
    row = list(audit_row(_records(1)[0], operation="t", dialect="sqlite"))
    row[11] = "{broken"
    record = audit_from_row(row)
    assert record.extra == {UNDECODABLE: "{broken"}
    assert not verify([record]).ok
