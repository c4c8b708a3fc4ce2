"""PortPool and SsrcTable: allocation, quarantine before reuse, single-port routing."""

from __future__ import annotations

import pytest

from media.ports import PortPool, PortPoolError, SsrcTable


def test_allocate_until_exhausted_then_quarantine() -> None:
    pool = PortPool(30000, 30002, quarantine=15.0)
    assert [pool.allocate(0.0) for _ in range(3)] == [30000, 30001, 30002]
    with pytest.raises(PortPoolError, match="no free port"):
        pool.allocate(0.0)
    pool.release(30001, now=10.0)
    assert pool.in_use == {30000, 30002}
    assert pool.available(24.9) == 0
    with pytest.raises(PortPoolError):
        pool.allocate(24.9)
    assert pool.allocate(25.0) == 30001


def test_released_ports_are_reused_oldest_first() -> None:
    pool = PortPool(40000, 40003, quarantine=0.0)
    a, b = pool.allocate(0.0), pool.allocate(0.0)
    pool.release(b, 1.0)
    pool.release(a, 2.0)
    # Never-used ports come first, then the ones released earliest.
    assert [pool.allocate(3.0) for _ in range(4)] == [40002, 40003, b, a]


def test_allocate_a_given_port() -> None:
    pool = PortPool(5000, 5010)
    assert pool.allocate(0.0, port=5005) == 5005
    with pytest.raises(PortPoolError, match="not free"):
        pool.allocate(0.0, port=5005)
    with pytest.raises(PortPoolError):
        pool.allocate(0.0, port=6000)
    with pytest.raises(PortPoolError, match="not allocated"):
        pool.release(5006, 0.0)


@pytest.mark.parametrize(("first", "last"), [(0, 10), (10, 9), (65535, 65536)])
def test_invalid_range(first: int, last: int) -> None:
    with pytest.raises(PortPoolError):
        PortPool(first, last)


def test_ssrc_table_routes_and_quarantines() -> None:
    table: SsrcTable[str] = SsrcTable(quarantine=15.0)
    table.bind(200000001, "a", 0.0)
    table.bind(200000002, "b", 0.0)
    assert table.lookup(200000001) == "a" and table.lookup(7) is None
    with pytest.raises(PortPoolError, match="already bound"):
        table.bind(200000001, "c", 0.0)
    assert table.unbind(200000001, 5.0) == "a"
    assert table.lookup(200000001) is None
    with pytest.raises(PortPoolError, match="released"):
        table.bind(200000001, "c", 19.9)
    table.bind(200000001, "c", 20.0)
    assert table.lookup(200000001) == "c"
    assert table.unbind(99, 20.0) is None
    assert len(table) == 2


def test_ssrc_table_rebind() -> None:
    table: SsrcTable[str] = SsrcTable()
    table.bind(1, "a", 0.0)
    table.rebind(1, 1, 0.0)
    table.rebind(1, 2, 0.0)
    assert table.lookup(2) == "a" and table.lookup(1) is None
