"""Issuing through the store, the in-memory set, and the REGISTER guard."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gb28181.id_registry import IdRegistry, IdsExhausted
from gb28181.ids import IdAllocator, IdError, parse_ranges
from gb28181.store import Store, open_store
from tests.test_signalling import DEVICE, deliver, make_signalling, request


def _ranges() -> IdAllocator:
    return IdAllocator(
        parse_ranges(
            [
                {"department": "交警", "prefix": "3402000000", "types": ["132"],
                 "serial_start": 1, "serial_end": 3},
                {"department": "交警", "prefix": "3401000000", "types": ["132"],
                 "serial_start": 1, "serial_end": 9},
            ]
        )
    )  # fmt: skip


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = await open_store("sqlite://:memory:")
    try:
        yield s
    finally:
        await s.close()


async def test_issue_moves_to_the_next_range_when_one_is_full(store: Store) -> None:
    reg = IdRegistry(_ranges(), store)
    first = await reg.issue("交警", "132", 2, "gate", 5.0)
    assert [i.id for i in first] == ["34020000001320000001", "34020000001320000002"]
    assert first[0].note == "gate"
    second = await reg.issue("交警", "132", 2, None, 6.0)
    assert [i.id for i in second] == ["34010000001320000001", "34010000001320000002"]
    assert reg.is_issued("34010000001320000002") and not reg.is_issued("34020000001320000003")
    with pytest.raises(IdsExhausted):
        await reg.issue("交警", "132", 8, None, 7.0)
    with pytest.raises(IdError):
        await reg.issue("交警", "131", 1, None, 7.0)
    with pytest.raises(IdError):
        await reg.issue("交警", "132", 1, 5, 7.0)


async def test_reload_learns_ids_issued_elsewhere(store: Store) -> None:
    await store.issue_ids(
        "34020000001320000001", "34020000001320000003", 1, department="x", type_code="132",
        at=1.0,
    )  # fmt: skip
    reg = IdRegistry(_ranges(), store)
    assert await reg.reload() == 1
    assert reg.is_issued("34020000001320000001")


def test_guard_refuses_unissued_ids_only_when_asked() -> None:
    sig, capture = make_signalling(registered=False)
    reg = IdRegistry(_ranges(), None, refuse_unissued=True)  # type: ignore[arg-type]
    sig.register_guards.append(reg.register_guard)
    refused = deliver(sig, capture, request("REGISTER"))
    assert (refused.status, refused.reason) == (403, "ID Not Issued")
    assert reg.refused == 1
    reg.issued.add(DEVICE)
    assert deliver(sig, capture, request("REGISTER")).status != 403  # on to the registrar
    reg.issued.clear()
    reg.refuse_unissued = False
    assert reg.register_guard(request("REGISTER"), DEVICE) is None
