"""open_store: backend selection, options, migrate-on-open."""

from __future__ import annotations

from pathlib import Path

import pytest

from gb28181.store import (
    SqliteStore,
    Store,
    StoreConfigError,
    StoreMigrationError,
    load_migrations,
    open_store,
)
from gb28181.store._migrations import Migration


async def test_sqlite_url_gives_migrated_sqlite_store(sqlite_url: str) -> None:
    async with await open_store(sqlite_url) as store:
        assert isinstance(store, SqliteStore)
        assert isinstance(store, Store)
        assert await store.applied_versions() == [m.version for m in load_migrations("sqlite")]


async def test_unknown_scheme() -> None:
    with pytest.raises(StoreConfigError, match="unsupported store URL scheme 'redis'"):
        await open_store("redis://localhost/0")


async def test_unknown_option_is_config_error(sqlite_url: str) -> None:
    with pytest.raises(StoreConfigError, match="invalid option for the sqlite store"):
        await open_store(sqlite_url, pool_size=3)


async def test_backend_options_pass_through(tmp_path: Path) -> None:
    async with await open_store(f"sqlite:///{tmp_path / 'a.db'}", busy_timeout=0.5) as store:
        assert isinstance(store, SqliteStore)
        assert store._conn is not None
        rows = list(await store._conn.execute_fetchall("PRAGMA busy_timeout"))
        assert rows[0][0] == 500


async def test_failed_migration_closes_store(tmp_path: Path) -> None:
    broken = [Migration(1, "broken", "CREATE TABLE;")]

    with pytest.raises(StoreMigrationError, match="0001_broken"):
        await open_store(f"sqlite:///{tmp_path / 'b.db'}", migrations=broken)
