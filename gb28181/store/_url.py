"""Store URL parsing.

Accepted URLs (``[storage] url`` in the configuration):

- ``sqlite:///./var/gb28181.db`` or ``sqlite:///var/gb28181.db``: a path relative to the
  current directory (three slashes, then the relative path);
- ``sqlite:////srv/gb28181/gb28181.db``: an absolute path (four slashes);
- ``sqlite://:memory:`` or ``sqlite:///:memory:``: a private in-memory database (tests);
- ``postgresql://user[:password]@host[:port]/database[?search_path=...]`` (``postgres://`` too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._errors import StoreConfigError

__all__ = ["MEMORY", "StoreUrl", "parse_store_url", "redact_url"]

MEMORY = ":memory:"
"""Path of a private in-memory SQLite database."""

_POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})
_PASSWORD_RE = re.compile(r"^(?P<head>[^:/?#]+://[^:/@?#]*:)(?P<password>[^@/?#]*)(?P<tail>@.*)$")


@dataclass(frozen=True, slots=True)
class StoreUrl:
    """A parsed store URL: the dialect and what its driver needs (a path or a DSN)."""

    dialect: str
    target: str


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe for logs and error messages."""
    return _PASSWORD_RE.sub(r"\g<head>***\g<tail>", url)


def parse_store_url(url: str) -> StoreUrl:
    """Split a store URL into dialect and target.

    :raises StoreConfigError: unknown scheme, or a SQLite URL without a usable path.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or not scheme:
        raise StoreConfigError(
            f"store URL {redact_url(url)!r} has no scheme; expected sqlite:///path/to/file.db "
            "or postgresql://user@host:port/database"
        )
    if scheme == "sqlite":
        return StoreUrl("sqlite", _sqlite_path(url, rest))
    if scheme in _POSTGRES_SCHEMES:
        if not rest:
            raise StoreConfigError("postgresql store URL has no host or database")
        return StoreUrl("postgresql", f"postgresql://{rest}")
    raise StoreConfigError(
        f"unsupported store URL scheme {scheme!r} in {redact_url(url)!r}; "
        "use sqlite:// or postgresql://"
    )


def _sqlite_path(url: str, rest: str) -> str:
    if "?" in rest or "#" in rest:
        raise StoreConfigError(f"sqlite store URL {url!r} takes no query or fragment")
    if rest in (MEMORY, "/" + MEMORY):
        return MEMORY
    if not rest.startswith("/"):
        # sqlite://host/... : SQLite has no host; the user most likely dropped a slash.
        raise StoreConfigError(
            f"sqlite store URL {url!r} must be sqlite:///relative/path.db, "
            "sqlite:////absolute/path.db or sqlite://:memory:"
        )
    path = rest[1:]
    if not path or path.endswith("/"):
        raise StoreConfigError(f"sqlite store URL {url!r} does not name a database file")
    return path
