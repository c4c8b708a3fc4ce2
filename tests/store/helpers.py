"""PostgreSQL test helpers: the server URL from the environment and URL rewriting."""

from __future__ import annotations

import os
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import pytest

PG_ENV = "GB28181_TEST_POSTGRES_URL"
PG_SKIP_REASON = f"{PG_ENV} not set: PostgreSQL tests skipped"


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


async def admin(url: str, sql: str) -> None:
    """Run one statement on its own connection (CREATE/DROP DATABASE cannot run in a pool)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres_server_url() -> str:
    """The server URL from the environment, or skip the calling test."""
    url = os.environ.get(PG_ENV, "").strip()
    if not url:
        pytest.skip(PG_SKIP_REASON)
    return url
