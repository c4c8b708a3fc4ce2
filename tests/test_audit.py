"""AuditLog: seals in order, writes behind, resumes the chain, loses nothing on failure."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from authz.audit import AuditError, AuditRecord, verify
from gb28181.audit import AuditConfigError, AuditLog, load_key
from gb28181.store import StoreError, open_store

KEY = b"k" * 32


class FakeStore:
    """In-memory audit store that can fail its next writes, before or after committing."""

    dialect = "fake"

    def __init__(self) -> None:
        self.rows: list[AuditRecord] = []
        self.fail_before = 0
        self.fail_after = 0

    async def append_audit(self, records: Sequence[AuditRecord]) -> None:
        if self.fail_before:
            self.fail_before -= 1
            raise StoreError("down", operation="append_audit", dialect="fake")
        if self.rows and records and records[0].seq != self.rows[-1].seq + 1:
            raise StoreError("duplicate seq", operation="append_audit", dialect="fake")
        self.rows.extend(records)
        if self.fail_after:
            self.fail_after -= 1
            raise StoreError("ack lost", operation="append_audit", dialect="fake")

    async def audit_tail(self) -> AuditRecord | None:
        return self.rows[-1] if self.rows else None


def _clock() -> float:
    return 1_700_000_000.5


async def test_record_requires_resume() -> None:
    with pytest.raises(RuntimeError):
        AuditLog(FakeStore()).record("view", "x", "allow")


async def test_records_are_sealed_in_order_and_flushed() -> None:
    store = FakeStore()
    audit = AuditLog(store, key=KEY, clock=_clock)
    await audit.resume()
    first = audit.record_startup("1.0", {"sip.port": 5060})
    audit.record("view", "34020000001320000001", "deny", principal_id="bob", level=4, rule="r")
    audit.record_settings({"faults.x": 1}, principal_id="admin")
    audit.record_fault("store", "connection refused")
    assert audit.pending == 4 and store.rows == []
    assert audit.head[0] == 4
    await audit.flush()
    assert audit.head == (4, store.rows[-1].hash)
    assert audit.pending == 0 and audit.written == 4
    assert store.rows[0] == first and first.principal_id == "system" and first.time == _clock()
    assert verify(store.rows, key=KEY).ok
    assert not verify(store.rows).ok  # the key matters


async def test_bad_extra_is_refused_and_the_chain_is_unchanged() -> None:
    audit = AuditLog(FakeStore())
    await audit.resume()
    with pytest.raises(AuditError):
        audit.record("x", "y", "ok", extra={"nan": float("nan")})
    assert audit.head[0] == 0 and audit.pending == 0


async def test_a_failed_write_keeps_the_records_in_order() -> None:
    store = FakeStore()
    audit = AuditLog(store)
    await audit.resume()
    audit.record("a", "t", "ok")
    store.fail_before = 1
    with pytest.raises(StoreError):
        await audit.flush()
    assert audit.failures == 1 and audit.last_error and audit.pending == 1
    audit.record("b", "t", "ok")
    await audit.flush()
    assert [r.action for r in store.rows] == ["a", "b"] and audit.last_error is None
    assert verify(store.rows).ok


async def test_a_write_that_committed_but_failed_is_not_repeated() -> None:
    store = FakeStore()
    audit = AuditLog(store)
    await audit.resume()
    audit.record("a", "t", "ok")
    audit.record("b", "t", "ok")
    store.fail_after = 1
    with pytest.raises(StoreError):
        await audit.flush()
    audit.record("c", "t", "ok")
    await audit.flush()
    assert [r.seq for r in store.rows] == [1, 2, 3] and audit.written == 3
    assert verify(store.rows).ok


async def test_the_chain_resumes_from_the_store_and_stop_flushes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gb.db'}"
    async with await open_store(url) as store:
        audit = AuditLog(store, key=KEY)
        await audit.start()
        assert audit.running
        audit.record("system.start", "platform", "ok")
        await audit.stop()
        assert not audit.running
    async with await open_store(url) as store:
        again = AuditLog(store, key=KEY)
        await again.start()
        assert again.head[0] == 1
        again.record("view", "c", "allow")
        await again.stop()
        rows = await store.load_audit()
    assert [r.seq for r in rows] == [1, 2]
    assert verify(rows, key=KEY).ok


async def test_a_second_writer_does_not_fork_the_chain(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gb.db'}"
    async with await open_store(url) as store:
        server = AuditLog(store, key=KEY)
        await server.resume()
        server.record("system.start", "platform", "ok")
        await server.flush()
        server.record("view", "c1", "allow")  # sealed as seq 2, not yet written
        # An operator's command appends seq 2 through its own chain meanwhile.
        cli = AuditLog(store, key=KEY)
        await cli.resume()
        cli.record("cert.issue", "alice", "ok", principal_id="cli")
        await cli.flush()
        with pytest.raises(StoreError):
            await server.flush()
        server.record("view", "c2", "deny")
        await server.flush()
        rows = await store.load_audit()
    assert [(r.seq, r.action) for r in rows] == [
        (1, "system.start"),
        (2, "cert.issue"),
        (3, "view"),
        (4, "view"),
    ]
    assert verify(rows, key=KEY).ok and server.head == (4, rows[-1].hash)


async def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        AuditLog(FakeStore(), interval=0)
    with pytest.raises(ValueError):
        AuditLog(FakeStore(), max_batch=0)


def test_load_key(tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    with pytest.raises(AuditConfigError, match="No such file"):
        load_key(key)
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    assert len(load_key(key)) == 32
    key.chmod(0o644)
    with pytest.raises(AuditConfigError, match="chmod 600"):
        load_key(key)
    key.write_bytes(b"short")
    key.chmod(0o600)
    with pytest.raises(AuditConfigError, match="fewer than"):
        load_key(key)
