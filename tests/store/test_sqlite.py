"""SQLite specifics: file handling, pragmas, typed errors, two processes on one file."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gb28181.store import (
    DeviceRecord,
    SqliteStore,
    StatusEvent,
    StoreConnectionError,
    StoreDataError,
    open_store,
)

DEVICE_ID = "34020000001320000001"


async def test_relative_path_resolved_against_cwd_and_parent_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    async with await open_store("sqlite:///./var/gb28181.db") as store:
        await store.upsert_devices([DeviceRecord(DEVICE_ID, "device")])

    assert (tmp_path / "var" / "gb28181.db").is_file()


async def test_wal_mode_and_pragmas(sqlite_url: str, tmp_path: Path) -> None:
    store = await open_store(sqlite_url)
    assert isinstance(store, SqliteStore)
    try:
        conn = store._conn
        assert conn is not None
        rows = list(await conn.execute_fetchall("PRAGMA journal_mode"))
        assert rows[0][0] == "wal"
        rows = list(await conn.execute_fetchall("PRAGMA synchronous"))
        assert rows[0][0] == 1  # NORMAL
        rows = list(await conn.execute_fetchall("PRAGMA busy_timeout"))
        assert rows[0][0] == 5000
    finally:
        await store.close()


async def test_schema_uses_real_epoch_seconds(sqlite_url: str) -> None:
    async with await open_store(sqlite_url) as store:
        await store.write_batch(
            [DeviceRecord(DEVICE_ID, "device", registered_at=1_700_000_000.5, extra={"a": 1})],
            [StatusEvent(DEVICE_ID, 1_700_000_001.25, True, "registered")],
        )
        assert isinstance(store, SqliteStore)
        path = store.path

    with contextlib.closing(sqlite3.connect(path)) as raw:
        row = raw.execute(
            "SELECT typeof(registered_at), registered_at, extra FROM devices"
        ).fetchone()
    assert row == ("real", 1_700_000_000.5, '{"a":1}')


async def test_memory_store(tmp_path: Path) -> None:
    async with await open_store("sqlite://:memory:") as store:
        await store.upsert_devices([DeviceRecord(DEVICE_ID, "device")])
        assert len(await store.load_devices()) == 1
    assert list(tmp_path.iterdir()) == []


async def test_unopenable_path_is_connection_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a directory should be")

    with pytest.raises(StoreConnectionError) as info:
        await open_store(f"sqlite:///{tmp_path / 'blocker' / 'gb.db'}")

    assert info.value.operation == "open"
    assert info.value.dialect == "sqlite"
    assert info.value.__cause__ is not None


async def test_integer_overflow_is_data_error(store_sqlite: SqliteStore) -> None:
    with pytest.raises(StoreDataError, match="upsert_devices"):
        await store_sqlite.upsert_devices([DeviceRecord(DEVICE_ID, "device", port=2**70)])
    assert await store_sqlite.load_devices() == []


async def test_two_connections_on_one_file(sqlite_url: str) -> None:
    """Two processes sharing the file: writes wait on the lock instead of failing."""
    a = await open_store(sqlite_url)
    b = await open_store(sqlite_url)
    try:
        await asyncio.gather(
            *(
                s.upsert_devices([DeviceRecord(f"3402000000132{n:07d}", "device")])
                for n in range(20)
                for s in (a, b)
            )
        )
        assert len(await a.load_devices()) == 20
        assert len(await b.load_devices()) == 20
    finally:
        await a.close()
        await b.close()


async def test_repr_shows_path_and_state(sqlite_url: str) -> None:
    store = SqliteStore(":memory:")
    assert repr(store) == "<SqliteStore ':memory:' closed>"
    await store.open()
    await store.open()  # idempotent
    assert repr(store) == "<SqliteStore ':memory:' open>"
    await store.close()


@pytest.fixture
async def store_sqlite(sqlite_url: str) -> AsyncIterator[SqliteStore]:
    store = await open_store(sqlite_url)
    assert isinstance(store, SqliteStore)
    yield store
    await store.close()
