"""``open_store(url)``: pick the backend from the URL scheme, connect, migrate."""

from __future__ import annotations

from typing import Any

from ._base import Store
from ._errors import StoreConfigError
from ._postgres import PostgresStore
from ._sqlite import SqliteStore
from ._url import parse_store_url

__all__ = ["open_store"]


async def open_store(url: str, *, migrate: bool = True, **options: Any) -> Store:
    """Open the store ``url`` names and bring its schema up to date.

    :param url: ``sqlite:///relative.db``, ``sqlite:////absolute.db``,
        ``sqlite://:memory:``, ``postgresql://user@host:port/database`` (see
        :func:`parse_store_url`).
    :param migrate: apply pending migrations (default); pass ``False`` to inspect a database
        without changing it.
    :param options: passed to the backend constructor (``busy_timeout`` for SQLite;
        ``min_size``, ``max_size``, ``connect_timeout`` for PostgreSQL).
    :returns: an open :class:`Store`; close it with ``await store.close()`` or ``async with``.
    :raises StoreConfigError: the URL is invalid or an option is unknown.
    :raises StoreConnectionError: the database cannot be reached.
    :raises StoreMigrationError: a migration failed.
    """
    parsed = parse_store_url(url)
    store: Store
    try:
        if parsed.dialect == "sqlite":
            store = SqliteStore(parsed.target, **options)
        else:
            store = PostgresStore(parsed.target, **options)
    except TypeError as exc:
        raise StoreConfigError(f"invalid option for the {parsed.dialect} store: {exc}") from exc
    await store.open()
    if migrate:
        try:
            await store.migrate()
        except BaseException:
            await store.close()
            raise
    return store
