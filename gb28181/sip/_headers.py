"""Case-insensitive, order-preserving SIP header storage.

Header names are canonicalised once when a message is parsed: compact forms
(``i``, ``v``, ``l``...) become their full names (RFC 3261 §7.3.3) and known
names get their usual spelling, so serialising a parsed message gives the
conventional form while lookups stay case-insensitive.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import overload

from ._uri import split_header_list

__all__ = ["COMPACT_FORMS", "Headers", "canonical_name"]

COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN = [
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Organization",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "Reason",
    "Record-Route",
    "Reply-To",
    "Require",
    "Retry-After",
    "Route",
    "Server",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
    "X-GB-Ver",
]
_CANONICAL: dict[str, str] = {name.lower(): name for name in _KNOWN}
_CANONICAL.update({k: v for k, v in COMPACT_FORMS.items()})

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1). The
# authentication headers and Date contain commas but are single values.
_LIST_HEADERS = frozenset(
    {
        "via",
        "contact",
        "route",
        "record-route",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "allow-events",
        "content-encoding",
        "content-language",
        "in-reply-to",
        "warning",
        "call-info",
        "alert-info",
        "error-info",
    }
)


# Any spelling of a header name seen so far -> (lookup key, canonical name),
# so that the ten or so lookups a handler makes per message cost one dict
# probe each instead of a canonicalisation and a lower-casing. Bounded:
# names come from the network (Headers.add of a parsed message's names).
_KEYS: dict[str, tuple[str, str]] = {}
_KEYS_MAX = 4096
_KEY_NAME_MAX = 64


def _key(name: str) -> tuple[str, str]:
    """``(lower-case key, canonical name)`` of a header name, cached."""
    entry = _KEYS.get(name)
    if entry is None:
        canon = _CANONICAL.get(name.lower(), name)
        entry = (canon.lower(), canon)
        if len(_KEYS) < _KEYS_MAX and len(name) <= _KEY_NAME_MAX:
            _KEYS[name] = entry
    return entry


def canonical_name(name: str) -> str:
    """The conventional spelling of a header name (full form for compact ones)."""
    entry = _KEYS.get(name)
    return entry[1] if entry is not None else _key(name)[1]


class Headers:
    """Ordered multi-map of headers with case-insensitive lookups.

    Stored as a list of ``(lower_name, name, value)`` triples, which keeps the
    order and the repeats serialisation needs, plus an index of the first
    value of each name, built on the first lookup and kept up to date by the
    mutating methods, so :meth:`get` is one dict probe.
    """

    __slots__ = ("_index", "_items")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str, str]] = []
        self._index: dict[str, str] | None = None
        if items:
            for name, value in items:
                self.add(name, value)

    @classmethod
    def _from_canonical(
        cls, items: list[tuple[str, str, str]], index: dict[str, str] | None = None
    ) -> Headers:
        """Wrap prepared triples (and, optionally, their first-value index)."""
        h = cls.__new__(cls)
        h._items = items
        h._index = index
        return h

    def _first_values(self) -> dict[str, str]:
        index = self._index
        if index is None:
            index = self._index = {t[0]: t[2] for t in reversed(self._items)}
        return index

    def add(self, name: str, value: str) -> None:
        """Append a header (kept after existing ones of the same name)."""
        key, name = _KEYS.get(name) or _key(name)
        self._items.append((key, name, value))
        index = self._index
        if index is not None and key not in index:
            index[key] = value

    def prepend(self, name: str, value: str) -> None:
        """Insert a header before all others (a new top Via, RFC 3261 §16.6)."""
        key, name = _KEYS.get(name) or _key(name)
        self._items.insert(0, (key, name, value))
        if self._index is not None:
            self._index[key] = value

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    @overload
    def get(self, name: str, default: str | None) -> str | None: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name`` (raw, not split), or ``default``."""
        index = self._index
        if index is None:
            index = self._first_values()
        entry = _KEYS.get(name) or _key(name)
        return index.get(entry[0], default)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``; list headers are split at top-level commas."""
        key = (_KEYS.get(name) or _key(name))[0]
        items = self._items
        index = self._index
        if index is None:
            index = self._first_values()
        if len(index) == len(items):
            # No name repeats: the index holds every value.
            value = index.get(key)
            values = [] if value is None else [value]
        else:
            values = [t[2] for t in items if t[0] == key]
        if key in _LIST_HEADERS:
            out: list[str] = []
            for v in values:
                out.extend(split_header_list(v))
            return out
        return values

    def set(self, name: str, value: str) -> None:
        """Replace all values of ``name`` with one value, at the first one's place."""
        self.set_all(name, [value])

    def set_all(self, name: str, values: list[str]) -> None:
        """Replace all values of ``name`` with ``values`` (one line each)."""
        key, name = _KEYS.get(name) or _key(name)
        items = self._items
        new = [(key, name, v) for v in values]
        index = self._index
        if index is None:
            index = self._first_values()
        if key not in index:
            items.extend(new)
        elif len(index) == len(items):
            # The name is there once (no name repeats): replace that line.
            pos = 0
            while items[pos][0] != key:
                pos += 1
            items[pos : pos + 1] = new
        else:
            pos = next(i for i, t in enumerate(items) if t[0] == key)
            rest = [t for t in items if t[0] != key]
            rest[pos:pos] = new
            self._items = rest
        if values:
            index[key] = values[0]
        else:
            index.pop(key, None)

    def remove(self, name: str) -> None:
        """Remove every value of ``name``."""
        key = (_KEYS.get(name) or _key(name))[0]
        self._items = [t for t in self._items if t[0] != key]
        if self._index is not None:
            self._index.pop(key, None)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return (_KEYS.get(name) or _key(name))[0] in self._first_values()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, name, value in self._items:
            yield name, value

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> Headers:
        """A shallow copy (values are immutable strings)."""
        index = self._index
        return Headers._from_canonical(list(self._items), None if index is None else dict(index))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(a, c) for a, _, c in self._items] == [(a, c) for a, _, c in other._items]

    def __repr__(self) -> str:
        return f"Headers({[(n, v) for _, n, v in self._items]!r})"
