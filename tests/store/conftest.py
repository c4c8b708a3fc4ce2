"""Fixtures shared by the store tests.

``store_url`` / ``store`` are parametrized over both dialects, so every contract test runs
against SQLite and PostgreSQL. PostgreSQL runs only when ``GB28181_TEST_POSTGRES_URL`` names a
server (e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``); the session then creates a
uniquely named database, gives each test a fresh schema in it, and drops the database at the end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gb28181.store import Store, open_store

from .helpers import admin, postgres_server_url, with_database, with_query

DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a database created for this test session and dropped afterwards."""
    server = postgres_server_url()
    name = f"gb28181_test_{os.getpid()}_{secrets.token_hex(4)}"
    asyncio.run(admin(server, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(server, name)
    finally:
        asyncio.run(admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """URL of a fresh, empty schema (via ``search_path``) in the session database."""
    schema = f"t_{secrets.token_hex(6)}"
    asyncio.run(admin(postgres_database, f'CREATE SCHEMA "{schema}"'))
    return with_query(postgres_database, search_path=schema)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a SQLite file in this test's temporary directory (absolute: four slashes)."""
    return f"sqlite:///{tmp_path / 'var' / 'gb28181.db'}"


@pytest.fixture(params=DIALECTS)
def store_url(request: pytest.FixtureRequest) -> str:
    """A URL for an empty database of each dialect in turn."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An open, migrated store of each dialect in turn."""
    opened = await open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()
