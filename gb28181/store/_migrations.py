"""Numbered SQL migrations, shipped as package data.

Layout: ``gb28181/store/migrations/<dialect>/NNNN_short_name.sql``. To add a table, drop the
next-numbered file into both dialect folders; nothing else changes. Each file is applied once,
inside its own transaction, in version order, and recorded in ``schema_migrations``. The
backends own the locking that makes this safe across processes (PostgreSQL advisory lock,
SQLite ``BEGIN IMMEDIATE``).

Applied migrations must never be edited: the runner records versions, not contents.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

from ._errors import StoreMigrationError

__all__ = [
    "Migration",
    "load_migrations",
    "parse_migrations",
    "pending_migrations",
    "split_sqlite_script",
]

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9][a-z0-9_]*)\.sql$")

DIALECTS = ("sqlite", "postgresql")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: ``version`` orders it, ``name`` is for humans, ``sql`` is the script."""

    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def parse_migrations(files: Iterable[tuple[str, str]], *, dialect: str = "") -> list[Migration]:
    """Turn ``(file name, text)`` pairs into migrations sorted by version.

    Files not ending in ``.sql`` are ignored (a README may sit next to them); a ``.sql`` file
    whose name does not match ``NNNN_name.sql`` or that reuses a version is an error, because
    silently skipping it would leave the schema behind.

    :raises StoreMigrationError: bad file name, duplicate version or empty script.
    """
    by_version: dict[int, Migration] = {}
    for filename, text in files:
        if not filename.endswith(".sql"):
            continue
        match = _FILE_RE.match(filename)
        if match is None:
            raise StoreMigrationError(
                f"migration file {filename!r} is not named NNNN_lower_snake_name.sql",
                operation="migrate",
                dialect=dialect,
            )
        version = int(match.group(1))
        if version == 0:
            raise StoreMigrationError(
                f"migration file {filename!r}: version 0000 is reserved",
                operation="migrate",
                dialect=dialect,
            )
        if version in by_version:
            raise StoreMigrationError(
                f"migration version {version:04d} defined twice "
                f"({by_version[version].label}.sql and {filename})",
                operation="migrate",
                dialect=dialect,
            )
        if not text.strip():
            raise StoreMigrationError(
                f"migration file {filename!r} is empty", operation="migrate", dialect=dialect
            )
        by_version[version] = Migration(version, match.group(2), text)
    return [by_version[v] for v in sorted(by_version)]


@functools.cache
def _load(dialect: str) -> tuple[Migration, ...]:
    folder = resources.files(__package__).joinpath("migrations", dialect)
    files = [(entry.name, entry.read_text(encoding="utf-8")) for entry in folder.iterdir()]
    return tuple(parse_migrations(files, dialect=dialect))


def load_migrations(dialect: str) -> list[Migration]:
    """The migrations shipped for ``dialect`` (``"sqlite"`` or ``"postgresql"``), in order."""
    if dialect not in DIALECTS:
        raise StoreMigrationError(f"no migrations for unknown dialect {dialect!r}")
    return list(_load(dialect))


def pending_migrations(migrations: Sequence[Migration], applied: Iterable[int]) -> list[Migration]:
    """Migrations whose version is not in ``applied``, in version order."""
    done = set(applied)
    return [m for m in sorted(migrations, key=lambda m: m.version) if m.version not in done]


def split_sqlite_script(sql: str) -> list[str]:
    """Split a script into complete statements.

    ``sqlite3`` can only run a multi-statement script through ``executescript``, which commits
    any open transaction first; running statements one by one keeps the migration and its
    ``schema_migrations`` row in one transaction. ``sqlite3.complete_statement`` knows about
    string literals, comments and ``CREATE TRIGGER ... END;`` bodies, so semicolons inside them
    do not split.
    """
    statements: list[str] = []
    buffer = ""
    *pieces, tail = sql.split(";")
    for piece in pieces:
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if _has_code(buffer):
                statements.append(buffer.strip())
            buffer = ""
    buffer += tail
    if _has_code(buffer):
        raise StoreMigrationError(
            f"incomplete SQL statement at end of script: {buffer.strip()[:80]!r}",
            operation="migrate",
            dialect="sqlite",
        )
    return statements


def _has_code(chunk: str) -> bool:
    """Whether ``chunk`` holds anything besides whitespace and ``--`` comments."""
    return any(line.strip() and not line.strip().startswith("--") for line in chunk.splitlines())
