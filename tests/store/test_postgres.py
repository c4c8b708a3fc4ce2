"""PostgreSQL specifics: column types, advisory-locked migrations, typed errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg  # type: ignore[import-untyped]
import pytest

from gb28181.store import (
    DeviceRecord,
    Migration,
    PostgresStore,
    StoreConnectionError,
    StoreDataError,
    load_migrations,
    open_store,
)

from .helpers import postgres_server_url, with_database

DEVICE_ID = "34020000001320000001"


@pytest.fixture
async def pg_store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    store = await open_store(postgres_url)
    assert isinstance(store, PostgresStore)
    yield store
    await store.close()


async def column_types(url: str, table: str) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1",
            table,
        )
    finally:
        await conn.close()
    return {r["column_name"]: r["data_type"] for r in rows}


@pytest.mark.postgres
async def test_schema_column_types(pg_store: PostgresStore, postgres_url: str) -> None:
    devices = await column_types(postgres_url, "devices")
    history = await column_types(postgres_url, "device_status_history")

    assert devices["registered_at"] == "timestamp with time zone"
    assert devices["last_keepalive"] == "timestamp with time zone"
    assert devices["extra"] == "jsonb"
    assert devices["online"] == "boolean"
    assert history["at"] == "timestamp with time zone"


@pytest.mark.postgres
async def test_extra_is_queryable_jsonb(pg_store: PostgresStore, postgres_url: str) -> None:
    await pg_store.upsert_devices([DeviceRecord(DEVICE_ID, "device", extra={"channels": 4})])

    conn = await asyncpg.connect(postgres_url)
    try:
        value = await conn.fetchval("SELECT (extra->>'channels')::int FROM devices")
    finally:
        await conn.close()
    assert value == 4


@pytest.mark.postgres
async def test_postgres_scheme_alias(postgres_url: str) -> None:
    alias = "postgres://" + postgres_url.split("://", 1)[1]

    async with await open_store(alias) as store:
        assert store.dialect == "postgresql"
        assert await store.migrate() == []


@pytest.mark.postgres
async def test_concurrent_start_up_applies_each_migration_once(postgres_url: str) -> None:
    # A slow migration widens the race window: without the advisory lock a second node would
    # run CREATE TABLE while the first is still inside its transaction.
    shipped = [m.version for m in load_migrations("postgresql")]
    slow = Migration(
        shipped[-1] + 1,
        "slow",
        "SELECT pg_sleep(0.05);\nCREATE TABLE slow_things (id integer PRIMARY KEY);",
    )
    migrations = [*load_migrations("postgresql"), slow]
    stores = [
        await open_store(postgres_url, migrate=False, migrations=migrations) for _ in range(4)
    ]
    try:
        results = await asyncio.gather(*(s.migrate() for s in stores))
        assert sorted(results) == [[], [], [], [*shipped, shipped[-1] + 1]]
        assert await stores[0].applied_versions() == [*shipped, shipped[-1] + 1]
    finally:
        for store in stores:
            await store.close()


@pytest.mark.postgres
async def test_int32_overflow_is_data_error(pg_store: PostgresStore) -> None:
    with pytest.raises(StoreDataError) as info:
        await pg_store.upsert_devices([DeviceRecord(DEVICE_ID, "device", port=2**40)])

    assert info.value.operation == "upsert_devices"
    assert info.value.dialect == "postgresql"
    assert await pg_store.load_devices() == []


@pytest.mark.postgres
async def test_nul_character_is_data_error(pg_store: PostgresStore) -> None:
    # PostgreSQL text cannot hold U+0000 (SQLite can): the caller gets a typed error.
    with pytest.raises(StoreDataError):
        await pg_store.upsert_devices([DeviceRecord(DEVICE_ID, "device", name="a\x00b")])


@pytest.mark.postgres
async def test_missing_database_is_connection_error() -> None:
    url = with_database(postgres_server_url(), "gb28181_no_such_database")

    with pytest.raises(StoreConnectionError) as info:
        await open_store(url)

    assert info.value.operation == "open"
    assert "gb28181_no_such_database" in str(info.value)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_unreachable_server_is_connection_error_without_password(scheme: str) -> None:
    # Needs no server: port 1 on loopback refuses the connection.
    url = f"{scheme}://gb:hunter2@127.0.0.1:1/gb28181"

    with pytest.raises(StoreConnectionError) as info:
        await open_store(url, connect_timeout=5.0)

    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


async def test_repr_hides_password() -> None:
    store = PostgresStore("postgresql://gb:hunter2@db.example:5432/gb28181")

    assert repr(store) == "<PostgresStore postgresql://gb:***@db.example:5432/gb28181 closed>"
