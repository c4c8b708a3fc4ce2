"""Migration files, their loader and the runner on both dialects."""

from __future__ import annotations

import asyncio

import pytest

from gb28181.store import (
    DeviceRecord,
    Migration,
    StoreMigrationError,
    load_migrations,
    open_store,
)
from gb28181.store._migrations import (
    parse_migrations,
    pending_migrations,
    split_sqlite_script,
)

# Test-only migrations numbered past anything shipped, so adding a real migration moves nothing.
SHIPPED = [m.version for m in load_migrations("sqlite")]
NEXT = SHIPPED[-1] + 1
WIDGETS = Migration(NEXT, "widgets", "CREATE TABLE widgets (id integer PRIMARY KEY, label text);")
GADGETS_BROKEN = Migration(
    NEXT + 1,
    "gadgets",
    "CREATE TABLE gadgets (id integer PRIMARY KEY);\n"
    "INSERT INTO gadgets (id) VALUES (1);\n"
    "INSERT INTO gadgets (id) VALUES (1);\n",
)
GADGETS_FIXED = Migration(NEXT + 1, "gadgets", "CREATE TABLE gadgets (id integer PRIMARY KEY);")


def shipped_plus(dialect: str, *extra: Migration) -> list[Migration]:
    return [*load_migrations(dialect), *extra]


# -- shipped files ------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_shipped_migrations_start_with_init(dialect: str) -> None:
    migrations = load_migrations(dialect)

    assert migrations[0].label == "0001_init"
    assert "CREATE TABLE devices" in migrations[0].sql
    assert "CREATE TABLE device_status_history" in migrations[0].sql


def test_dialects_have_the_same_versions() -> None:
    sqlite = [m.label for m in load_migrations("sqlite")]
    postgresql = [m.label for m in load_migrations("postgresql")]

    assert sqlite == postgresql


def test_shipped_sqlite_scripts_split_cleanly() -> None:
    for migration in load_migrations("sqlite"):
        statements = split_sqlite_script(migration.sql)
        assert statements
        assert all(s.endswith(";") for s in statements)


def test_unknown_dialect() -> None:
    with pytest.raises(StoreMigrationError, match="oracle"):
        load_migrations("oracle")


# -- parsing ------------------------------------------------------------------------------


def test_parse_sorts_by_version_and_ignores_other_files() -> None:
    migrations = parse_migrations(
        [
            ("0010_later.sql", "SELECT 10;"),
            ("README.md", "not sql"),
            ("0002_second.sql", "SELECT 2;"),
        ]
    )

    assert [(m.version, m.name) for m in migrations] == [(2, "second"), (10, "later")]
    assert migrations[1].label == "0010_later"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([("1_init.sql", "SELECT 1;")], "not named"),
        ([("0001-init.sql", "SELECT 1;")], "not named"),
        ([("0001_Init.sql", "SELECT 1;")], "not named"),
        ([("0000_zero.sql", "SELECT 1;")], "reserved"),
        ([("0001_a.sql", "SELECT 1;"), ("0001_b.sql", "SELECT 1;")], "defined twice"),
        ([("0001_blank.sql", "  \n")], "empty"),
    ],
)
def test_parse_rejects(files: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(StoreMigrationError, match=message):
        parse_migrations(files, dialect="sqlite")


def test_pending_keeps_version_order() -> None:
    m1, m2, m3 = (Migration(v, f"m{v}", "SELECT 1;") for v in (1, 2, 3))

    assert pending_migrations([m3, m1, m2], {1}) == [m2, m3]
    assert pending_migrations([m1, m2], [1, 2]) == []


# -- SQLite statement splitting -----------------------------------------------------------


def test_split_statements() -> None:
    sql = (
        "-- header; with a semicolon\n"
        "CREATE TABLE a (x text DEFAULT 'a;b');  CREATE TABLE b (y int);\n"
        "CREATE TRIGGER t AFTER INSERT ON a BEGIN\n"
        "  INSERT INTO b (y) VALUES (1);\n"
        "END;\n"
        "-- trailing comment\n"
    )

    statements = split_sqlite_script(sql)

    assert len(statements) == 3
    assert statements[0].endswith("DEFAULT 'a;b');")
    assert statements[1] == "CREATE TABLE b (y int);"
    assert statements[2].startswith("CREATE TRIGGER") and statements[2].endswith("END;")


def test_split_comment_only_script() -> None:
    assert split_sqlite_script("-- nothing yet\n\n") == []


def test_split_rejects_unterminated_statement() -> None:
    with pytest.raises(StoreMigrationError, match="incomplete"):
        split_sqlite_script("CREATE TABLE a (x int);\nCREATE TABLE b (y int)")


# -- the runner, on both dialects ---------------------------------------------------------


async def test_new_migration_applied_once_in_order(store_url: str) -> None:
    base = await open_store(store_url)
    await base.upsert_devices([DeviceRecord("34020000001320000001", "device")])
    assert await base.migrate() == []
    await base.close()

    dialect = base.dialect
    async with await open_store(
        store_url, migrate=False, migrations=shipped_plus(dialect, WIDGETS)
    ) as store:
        assert await store.migrate() == [NEXT]
        assert await store.migrate() == []
        assert await store.applied_versions() == [*SHIPPED, NEXT]
        assert len(await store.load_devices()) == 1


async def test_open_without_migrate_leaves_schema_alone(store_url: str) -> None:
    async with await open_store(store_url, migrate=False) as store:
        assert await store.migrate() == SHIPPED


async def test_failed_migration_rolls_back(store_url: str) -> None:
    async with await open_store(store_url) as first:
        dialect = first.dialect

    broken = shipped_plus(dialect, WIDGETS, GADGETS_BROKEN)
    with pytest.raises(StoreMigrationError, match=f"{NEXT + 1:04d}_gadgets") as info:
        await open_store(store_url, migrations=broken)
    assert info.value.operation == "migrate"
    assert info.value.__cause__ is not None

    # WIDGETS stayed applied; the broken one left nothing behind, so the fixed script (which
    # creates the same table) now applies cleanly.
    fixed = shipped_plus(dialect, WIDGETS, GADGETS_FIXED)
    async with await open_store(store_url, migrate=False, migrations=fixed) as store:
        assert await store.applied_versions() == [*SHIPPED, NEXT]
        assert await store.migrate() == [NEXT + 1]
        assert await store.applied_versions() == [*SHIPPED, NEXT, NEXT + 1]


async def test_concurrent_migrate_applies_each_version_once(store_url: str) -> None:
    stores = [await open_store(store_url, migrate=False) for _ in range(3)]
    try:
        results = await asyncio.gather(*(s.migrate() for s in stores))
        # Each version is applied by exactly one of them (on SQLite several
        # stores may share the versions out, one transaction per migration).
        assert sorted(v for applied in results for v in applied) == SHIPPED
        assert await stores[0].applied_versions() == SHIPPED
    finally:
        for store in stores:
            await store.close()
