"""Case-insensitive, order-preserving SIP header storage.

Header names are canonicalised once when a message is parsed: compact forms
(``i``, ``v``, ``l``...) become their full names (RFC 3261 §7.3.3) and known
names get their usual spelling, so serialising a parsed message gives the
conventional form while lookups stay case-insensitive.
"""

from __future__ import annotations

from collections.abc import Iterator

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


def canonical_name(name: str) -> str:
    """The conventional spelling of a header name (full form for compact ones)."""
    return _CANONICAL.get(name.lower(), name)


class Headers:
    """Ordered multi-map of headers with case-insensitive lookups.

    Stored as a list of ``(lower_name, name, value)`` triples: SIP messages
    carry a dozen headers, so a linear scan beats maintaining an index.
    """

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str, str]] = []
        if items:
            for name, value in items:
                self.add(name, value)

    @classmethod
    def _from_canonical(cls, items: list[tuple[str, str, str]]) -> Headers:
        h = cls.__new__(cls)
        h._items = items
        return h

    def add(self, name: str, value: str) -> None:
        """Append a header (kept after existing ones of the same name)."""
        name = canonical_name(name)
        self._items.append((name.lower(), name, value))

    def prepend(self, name: str, value: str) -> None:
        """Insert a header before all others (a new top Via, RFC 3261 §16.6)."""
        name = canonical_name(name)
        self._items.insert(0, (name.lower(), name, value))

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name`` (raw, not split), or ``default``."""
        key = canonical_name(name).lower()
        for lname, _, value in self._items:
            if lname == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``; list headers are split at top-level commas."""
        key = canonical_name(name).lower()
        values = [value for lname, _, value in self._items if lname == key]
        if key in _LIST_HEADERS:
            out: list[str] = []
            for v in values:
                out.extend(split_header_list(v))
            return out
        return values

    def set(self, name: str, value: str) -> None:
        """Replace all values of ``name`` with one value, at the first one's place."""
        name = canonical_name(name)
        key = name.lower()
        for i, (lname, _, _) in enumerate(self._items):
            if lname == key:
                self._items[i] = (key, name, value)
                self._items[i + 1 :] = [t for t in self._items[i + 1 :] if t[0] != key]
                return
        self._items.append((key, name, value))

    def set_all(self, name: str, values: list[str]) -> None:
        """Replace all values of ``name`` with ``values`` (one line each)."""
        name = canonical_name(name)
        key = name.lower()
        pos = next((i for i, t in enumerate(self._items) if t[0] == key), len(self._items))
        rest = [t for t in self._items if t[0] != key]
        pos = min(pos, len(rest))
        rest[pos:pos] = [(key, name, v) for v in values]
        self._items = rest

    def remove(self, name: str) -> None:
        """Remove every value of ``name``."""
        key = canonical_name(name).lower()
        self._items = [t for t in self._items if t[0] != key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_name(name).lower()
        return any(t[0] == key for t in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, name, value in self._items:
            yield name, value

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> Headers:
        """A shallow copy (values are immutable strings)."""
        return Headers._from_canonical(list(self._items))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(a, c) for a, _, c in self._items] == [(a, c) for a, _, c in other._items]

    def __repr__(self) -> str:
        return f"Headers({[(n, v) for _, n, v in self._items]!r})"
