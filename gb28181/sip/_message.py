"""SIP message codec: requests and responses, from bytes and back (RFC 3261 §7).

Strategy: find the end of the header block with one ``bytes.find``, decode
it once, unfold continuation lines, canonicalise header names, and keep every
value as text. Structured values (From, Via, CSeq...) are parsed only when an
accessor asks for them and then cached, because on the hot path of a GB/T
28181 platform (keepalives, registrations) most headers are never looked at.

The hot path is tuned for the shape nearly every datagram has (CRLF line
ends only, names seen before): one split at CRLF, then per line one
``split(":")`` and one dict probe for the name; odd lines (folded, new names,
no colon) drop to a slower loop that checks them. Bounded caches keep the
canonical form of each header-name spelling, whole lines that devices send
alike ("Max-Forwards: 70") and parsed CSeq values; :class:`Headers` indexes
first values so lookups are one dict probe, and the accessors take fast,
regex-based paths in :mod:`._uri` for the plain forms of From, To and Via.

Bodies stay ``bytes``: MANSCDP bodies are GB2312/GB18030, and
``Content-Length`` counts encoded bytes, so serialisation always recomputes it
from ``len(body)`` (gb28181-notes §2).

Tolerated because real devices do it: LF-only line ends, padded
``Content-Length``, compact header names, any header-name case, leading blank
lines before the start line. Rejected with :class:`SipParseError` (which names
the status to answer): messages over ``max_size`` (513), a bad start line,
missing mandatory headers, a repeated From/To/Call-ID/CSeq/Max-Forwards, an
unparsable CSeq, Max-Forwards or Content-Length, a CSeq method that differs
from the request method, and a body shorter than its Content-Length on a
datagram. Everything else is checked when an accessor parses it, or all at
once by :meth:`SipMessage.check`; ``tests/fixtures/rfc4475`` (RFC 4475) shows
which check refuses each torture message.
"""

from __future__ import annotations

import re

from ._errors import SipParseError
from ._headers import Headers, canonical_name
from ._uri import _VIA_BRANCH_RE, NameAddr, SipUri, Via, _fast_via

__all__ = [
    "DEFAULT_MAX_SIZE",
    "REASON_PHRASES",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "StreamParser",
    "make_response",
    "parse_message",
    "stable_tag",
]

DEFAULT_MAX_SIZE = 64 * 1024
#: Bytes a datagram's body may fall short of its Content-Length (see parse_message).
CONTENT_LENGTH_SLACK = 2

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_MANDATORY = ("via", "from", "to", "call-id", "cseq")
_MANDATORY_SET = frozenset(_MANDATORY)
#: Headers that may appear once only (RFC 3261 §7.3.1, RFC 4475 multi01).
_SINGLE = ("from", "to", "call-id", "cseq", "max-forwards")
#: Methods known to be tokens, so the common ones skip the token regex.
_METHODS = frozenset(
    {"REGISTER", "MESSAGE", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "NOTIFY"}
    | {"SUBSCRIBE", "UPDATE", "PRACK", "REFER", "PUBLISH"}
)
#: Headers make_response copies unchanged (RFC 3261 §8.2.6.2).
_RESPONSE_COPIED = frozenset({"via", "from", "call-id", "cseq"})


def _count_key(items: list[tuple[str, str, str]], key: str) -> int:
    """How many header lines have this lookup key."""
    return sum(1 for t in items if t[0] == key)


def _is_digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` alone accepts "²" and "٣", which ``int`` rejects."""
    return text.isdigit() and text.isascii()


#: Header name as written on the wire (already checked to be a token) ->
#: (lookup key, canonical name). Bounded: the names come from the network.
_NAME_CACHE: dict[str, tuple[str, str]] = {}
_NAME_CACHE_MAX = 4096
_NAME_CACHE_NAME_MAX = 64
#: Whole header lines that thousands of devices send alike ("Max-Forwards: 70",
#: "CSeq: 1 REGISTER", "User-Agent: IP Camera") -> their parsed (immutable)
#: triple. Only the headers below are kept; Via, From, Call-ID... differ per
#: message and would only churn it. Cleared when full: the names and values
#: come from the network.
_LINE_CACHE: dict[str, tuple[str, str, str]] = {}
_LINE_CACHE_MAX = 4096
_LINE_CACHE_LINE_MAX = 100
_REPEATED_LINES = frozenset(
    {
        "max-forwards",
        "user-agent",
        "expires",
        "content-length",
        "content-type",
        "cseq",
        "allow",
        "supported",
        "x-gb-ver",
        "server",
        "event",
        "subscription-state",
    }
)


class SipMessage:
    """What requests and responses share: headers, body and parsed-header caches."""

    __slots__ = ("_cseq", "_from", "_to", "_top", "_vias", "body", "headers")

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self._cseq: tuple[int, str] | None = None
        self._from: NameAddr | None = None
        self._to: NameAddr | None = None
        self._top: Via | None = None
        self._vias: list[Via] | None = None

    # -- accessors (parsed lazily, cached; call invalidate() after editing headers)
    def invalidate(self) -> None:
        """Forget cached parsed headers after :attr:`headers` was edited."""
        self._cseq = self._from = self._to = self._top = self._vias = None

    def _first(self, key: str, name: str) -> str:
        """The first value of a header by its lower-case key (skips name lookup)."""
        headers = self.headers
        index = headers._index
        if index is None:
            index = headers._first_values()
        value = index.get(key)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        """The Call-ID value."""
        return self._first("call-id", "Call-ID").strip()

    @property
    def cseq(self) -> tuple[int, str]:
        """``(sequence number, method)`` from CSeq."""
        cseq = self._cseq
        if cseq is None:
            cseq = self._cseq = _parse_cseq(self._first("cseq", "CSeq"))
        return cseq

    @property
    def from_(self) -> NameAddr:
        """The parsed From header."""
        value = self._from
        if value is None:
            value = self._from = NameAddr.parse(self._first("from", "From"))
        return value

    @property
    def to(self) -> NameAddr:
        """The parsed To header."""
        value = self._to
        if value is None:
            value = self._to = NameAddr.parse(self._first("to", "To"))
        return value

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first (``vias[0]`` is :attr:`top_via`)."""
        vias = self._vias
        if vias is None:
            headers = self.headers
            index = headers._index
            if index is None:
                index = headers._first_values()
            top = self._top
            if top is None:
                value = index.get("via")
                top = _fast_via(value) if value is not None else None
            if top is not None and len(index) == len(headers._items):
                # One Via line, and the fast parse of it saw no comma: top is all.
                self._top = top
                vias = self._vias = [top]
                return vias
            values = headers.get_all("Via")
            if not values:
                raise SipParseError("missing Via header")
            top = self._top
            if top is None:
                top = self._top = Via.parse(values[0])
            vias = self._vias = [top]
            vias.extend(Via.parse(v) for v in values[1:])
        return vias

    @property
    def top_via(self) -> Via:
        """The topmost Via (where responses go, RFC 3261 §18.2.2).

        Parses the first Via value only: handlers rarely need the others, and
        a proxied request may carry several. :attr:`vias` parses (and checks)
        them all.
        """
        top = self._top
        if top is None:
            headers = self.headers
            index = headers._index
            value = (index if index is not None else headers._first_values()).get("via")
            # The plain one-value shape has no comma and no LWS to split on;
            # anything else goes the way of vias.
            top = _fast_via(value) if value is not None else None
            if top is None:
                return self.vias[0]
            self._top = top
        return top

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact value (``*`` gives one wildcard entry)."""
        return [NameAddr.parse(v) for v in self.headers.get_all("Contact")]

    @property
    def content_type(self) -> str | None:
        """Content-Type without parameters, lower-cased (``application/manscdp+xml``)."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip().lower()

    def check(self) -> None:
        """Parse every structured header the codec knows, raising on the first bad one.

        :func:`parse_message` checks framing, the start line and the mandatory
        headers only; From, To, Via, Contact, Expires and the Request-URI are
        parsed lazily by their accessors. A server that wants to refuse a
        malformed request at the edge (RFC 4475 §3.1.2) calls this once.

        :raises SipParseError: with ``status_hint`` 400 (416 for a
            Request-URI scheme other than sip/sips).
        """
        _ = self.vias, self.from_, self.to, self.cseq, self.contacts, self.expires

    @property
    def expires(self) -> int | None:
        """The Expires header as an integer, ``None`` when absent.

        Raises :class:`SipParseError` when present but not a number.
        """
        value = self.headers.get("Expires")
        if value is None:
            return None
        value = value.strip()
        if not _is_digits(value) or len(value) > 10:
            raise SipParseError(f"bad Expires value {value[:20]!r}")
        return int(value)

    def _start_line(self) -> str:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        # Content-Length is always recomputed from the body's bytes; it stays
        # where the headers had it (appended last when absent).
        length = f"Content-Length: {len(self.body)}"
        lines = [self._start_line()]
        append = lines.append
        for key, name, value in self.headers._items:
            if key != "content-length":
                append(f"{name}: {value}")
            elif length:
                append(length)
                length = ""
        if length:
            append(length)
        append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body


class SipRequest(SipMessage):
    """A SIP request. ``uri`` is kept as text; :attr:`request_uri` parses it."""

    __slots__ = ("method", "uri")

    def __init__(
        self, method: str, uri: str, headers: Headers | None = None, body: bytes = b""
    ) -> None:
        # Sets every slot itself (see SipResponse.__init__).
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self._cseq = self._from = self._to = self._top = self._vias = None
        self.method = method
        self.uri = uri

    @property
    def request_uri(self) -> SipUri:
        """The parsed Request-URI.

        :raises SipParseError: the URI is malformed, or carries ``?headers``,
            which a Request-URI must not (RFC 3261 §19.1.5, RFC 4475 escruri).
        """
        uri = SipUri.parse(self.uri)
        if uri.headers is not None:
            raise SipParseError(f"headers in Request-URI {self.uri[:80]!r}")
        return uri

    def check(self) -> None:
        """Like :meth:`SipMessage.check`, and the Request-URI too.

        A Request-URI with a scheme other than ``sip``/``sips`` parses (as an
        opaque URI) but raises here with ``status_hint`` 416 (RFC 3261
        §8.2.2.1, RFC 4475 unkscm and novelsc).
        """
        super().check()
        uri = self.request_uri
        if uri.opaque is not None:
            raise SipParseError(f"unsupported Request-URI scheme {uri.scheme[:20]!r}", 416)

    def stamp_received(self, host: str, port: int) -> None:
        """Record where the request came from in its top Via (RFC 3261 §18.2.1, RFC 3581 §4).

        ``received`` is added when the sent-by host differs from ``host``; when the
        client asked with a bare ``rport``, ``rport`` gets ``port`` and ``received``
        is added in any case. Other Via values are left alone.

        The plain one-Via shape nearly every device sends
        (``SIP/2.0/UDP host:port;rport;branch=x``) is rewritten as text, with the
        result :meth:`Via.__str__` would give; anything else is parsed and
        re-serialised.

        :raises SipParseError: the top Via is missing or malformed.
        """
        headers = self.headers
        items = headers._items
        index = headers._index
        if index is None:
            index = headers._first_values()
        raw = index.get("via")
        m = _VIA_BRANCH_RE.fullmatch(raw) if raw is not None else None
        if m is not None and (len(index) == len(items) or _count_key(items, "via") == 1):
            transport, sent_host, sent_port, rport, branch = m.groups()
            number = int(sent_port) if sent_port is not None else None
            if number is not None and number > 65535:
                raise SipParseError(f"bad port in Via: {m.string[:80]!r}")
            if rport is None and sent_host == host:
                return
            sent_by = sent_host if number is None else f"{sent_host}:{number}"
            value = (
                f"SIP/2.0/{transport} {sent_by};rport={port};branch={branch};received={host}"
                if rport is not None
                else f"SIP/2.0/{transport} {sent_by};branch={branch};received={host}"
            )
            pos = 0
            while items[pos][0] != "via":
                pos += 1
            items[pos] = ("via", items[pos][1], value)
            index["via"] = value
            self._top = self._vias = None
            return
        vias = self.vias
        top = vias[0]
        changed = False
        if top.host != host:
            top.params["received"] = host
            changed = True
        if "rport" in top.params:
            top.params["rport"] = str(port)
            if "received" not in top.params:
                top.params["received"] = host
            changed = True
        if changed:
            headers.set_all("Via", [str(v) for v in vias])

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri}>"


class SipResponse(SipMessage):
    """A SIP response."""

    __slots__ = ("reason", "status")

    def __init__(
        self, status: int, reason: str = "", headers: Headers | None = None, body: bytes = b""
    ) -> None:
        # Sets every slot itself rather than calling SipMessage.__init__:
        # one response is built per request, so the call is worth saving.
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self._cseq = self._from = self._to = self._top = self._vias = None
        self.status = status
        self.reason = reason or REASON_PHRASES.get(status, "Unknown")

    def _start_line(self) -> str:
        reason = self.reason
        if not reason.isprintable():
            # Reasons may quote a peer's bad input: never let it break the
            # status line or smuggle headers in (RFC 3261 §25.1 Reason-Phrase).
            reason = "".join(c if c.isprintable() else " " for c in reason)
        return f"SIP/2.0 {self.status} {reason}"

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


#: CSeq text -> parsed value. The same few values ("1 REGISTER", "20 MESSAGE")
#: arrive from thousands of devices; the tuples are immutable, so sharing is safe.
_CSEQ_CACHE: dict[str, tuple[int, str]] = {}
_CSEQ_CACHE_MAX = 4096
_CSEQ_TEXT_MAX = 40


def _parse_cseq(value: str) -> tuple[int, str]:
    cseq = _CSEQ_CACHE.get(value)
    if cseq is None:
        cseq = _parse_cseq_text(value)
        if len(value) <= _CSEQ_TEXT_MAX:
            if len(_CSEQ_CACHE) >= _CSEQ_CACHE_MAX:
                _CSEQ_CACHE.clear()
            _CSEQ_CACHE[value] = cseq
    return cseq


def _parse_cseq_text(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2:
        raise SipParseError(f"bad CSeq {value[:80]!r}")
    number, method = parts
    if not (number.isdigit() and number.isascii()) or len(number) > 10:
        raise SipParseError(f"bad CSeq {value[:80]!r}")
    num = int(number)
    if num >= 2**31:
        raise SipParseError(f"CSeq number out of range: {value[:80]!r}")
    if method not in _METHODS and _TOKEN_RE.fullmatch(method) is None:
        raise SipParseError(f"bad CSeq method {value[:80]!r}")
    return num, method


def _find_header_end(data: bytes) -> tuple[int, int]:
    """Return (end of header block, start of body), or (-1, -1) if not found.

    The blank line is the first LF CR LF (which covers CRLF CRLF, and LF-only
    headers closed by a CRLF blank line) or LF LF (LF only), whichever comes
    first. The header block keeps its last line end.
    """
    mixed = data.find(b"\n\r\n")
    if mixed >= 0:
        # An LF LF can only come first if it ends before this LF CR LF.
        lf = data.find(b"\n\n", 0, mixed + 1)
        if lf < 0:
            return mixed + 1, mixed + 3
    else:
        lf = data.find(b"\n\n")
    if lf >= 0:
        return lf + 1, lf + 2
    return -1, -1


def _split_crlf(text: str) -> list[str] | None:
    """The lines of a header block that ends in CRLF and uses nothing else, or None.

    Every CR and every LF must belong to a CRLF: then the block needs no
    copy and cannot hide a bare CR (which could smuggle a header when the
    value is sent on) or a bare LF. Blank lines are no header block either.
    """
    lines = text.split("\r\n")
    crlf = len(lines) - 1
    if text.count("\n") != crlf or text.count("\r") != crlf:
        return None
    if lines[-1]:
        return None
    lines.pop()
    if not lines or not lines[0] or not lines[-1]:
        return None
    return lines


def _split_lines(text: str) -> list[str]:
    """The header block's lines, without line ends and surrounding blank lines."""
    lines = _split_crlf(text)
    return lines if lines is not None else _split_any(text)


def _split_any(text: str) -> list[str]:
    """Like _split_lines, for LF-only or mixed line ends, or blank lines around."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            raise SipParseError("bare CR in header block")
    lines = text.split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    first = 0
    while first < len(lines) and lines[first] == "":
        first += 1
    if first >= len(lines):
        raise SipParseError("empty message")
    return lines[first:] if first else lines


def _parse_start_line(start: str, headers: Headers) -> SipMessage:
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if len(parts) < 2:
            raise SipParseError(f"bad status line {start[:80]!r}")
        version = parts[0]
        if version != "SIP/2.0" and version.upper() != "SIP/2.0":
            raise SipParseError(f"unsupported SIP version {version[:20]!r}", 505)
        code = parts[1]
        if len(code) != 3 or not _is_digits(code) or not 100 <= int(code) <= 699:
            raise SipParseError(f"bad status code {code[:20]!r}")
        resp = SipResponse(int(code), "", headers)
        # Keep the phrase as sent, even when empty (RFC 4475 noreason).
        resp.reason = parts[2] if len(parts) > 2 else ""
        return resp
    parts = start.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError(f"bad request line {start[:80]!r}")
    method, uri, version = parts
    if method not in _METHODS and _TOKEN_RE.fullmatch(method) is None:
        raise SipParseError(f"bad method {method[:40]!r}")
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        raise SipParseError(f"unsupported SIP version {version[:20]!r}", 505)
    if ":" not in uri or "<" in uri or ">" in uri:
        # "<sip:...>" as Request-URI is RFC 4475 ltgtruri.
        raise SipParseError(f"bad Request-URI {uri[:80]!r}")
    return SipRequest(method, uri, headers)


def _header_name(raw_name: str) -> tuple[str, str]:
    """Check and canonicalise a header name not yet in the cache."""
    stripped = raw_name.rstrip(" \t")
    if _TOKEN_RE.fullmatch(stripped) is None:
        raise SipParseError(f"bad header name {raw_name[:40]!r}")
    name = canonical_name(stripped)
    entry = (name.lower(), name)
    if len(_NAME_CACHE) < _NAME_CACHE_MAX and len(raw_name) <= _NAME_CACHE_NAME_MAX:
        _NAME_CACHE[raw_name] = entry
    return entry


def _parse_head(text: str) -> SipMessage:
    return _parse_lines(_split_lines(text))


def _parse_lines(lines: list[str]) -> SipMessage:
    """Parse a header block split into lines (start line first, none blank)."""
    items: list[tuple[str, str, str]] = []
    headers = Headers._from_canonical(items)
    msg = _parse_start_line(lines[0], headers)
    append = items.append
    cache = _NAME_CACHE
    line_cache = _LINE_CACHE
    rest = iter(lines)
    next(rest)
    line = ""
    while True:
        try:
            for line in rest:
                item = line_cache.get(line)
                if item is None:
                    # The common line: a name seen before, a colon, a value.
                    name, value = line.split(":", 1)
                    entry = cache[name]
                    item = (entry[0], entry[1], value.strip())
                    if entry[0] in _REPEATED_LINES and len(line) <= _LINE_CACHE_LINE_MAX:
                        if len(line_cache) >= _LINE_CACHE_MAX:
                            line_cache.clear()
                        line_cache[line] = item
                append(item)
            break
        except (KeyError, ValueError):
            # A new name, a folded line or no colon: handle this line and
            # go on with the next one.
            _parse_odd_line(line, items)
    # First value of each name (built after the loop: folding edits items).
    headers._index = {t[0]: t[2] for t in reversed(items)}
    return msg


def _parse_odd_line(line: str, items: list[tuple[str, str, str]]) -> None:
    if line[:1] in (" ", "\t"):
        if not items:
            raise SipParseError("continuation line before any header")
        key, name, value = items[-1]
        items[-1] = (key, name, f"{value} {line.strip()}" if value else line.strip())
        return
    name, colon, value = line.partition(":")
    if not colon or not name:
        raise SipParseError(f"bad header line {line[:80]!r}")
    entry = _header_name(name)
    items.append((entry[0], entry[1], value.strip()))


def _validate(msg: SipMessage) -> None:
    headers = msg.headers
    index = headers._index
    if index is None:
        index = headers._first_values()
    if not _MANDATORY_SET.issubset(index):
        missing = [canonical_name(n) for n in _MANDATORY if n not in index]
        raise SipParseError(f"missing mandatory header {', '.join(missing)}")
    if len(index) != len(headers._items):
        names = [t[0] for t in headers._items]
        for name in _SINGLE:
            if names.count(name) > 1:
                raise SipParseError(f"more than one {canonical_name(name)} header")
    cseq = msg._cseq
    if cseq is None:
        cseq = msg._cseq = _parse_cseq(index["cseq"])
    if isinstance(msg, SipRequest) and cseq[1] != msg.method:
        raise SipParseError(f"CSeq method {cseq[1]!r} does not match {msg.method!r}")
    mf = index.get("max-forwards")
    if mf is not None:
        mf = mf.strip()
        if not (mf.isdigit() and mf.isascii()) or len(mf) > 10 or int(mf) > 255:
            raise SipParseError(f"bad Max-Forwards {mf[:20]!r}")


def _content_length(msg: SipMessage) -> int | None:
    headers = msg.headers
    index = headers._index
    if index is None:
        index = headers._first_values()
    value = index.get("content-length")
    if value is None:
        return None
    value = value.strip()
    if len(index) != len(headers._items):
        values = {v.strip() for key, _, v in headers._items if key == "content-length"}
        if len(values) > 1:
            raise SipParseError("conflicting Content-Length headers")
    if not (value.isdigit() and value.isascii()) or len(value) > 9:
        raise SipParseError(f"bad Content-Length {value[:20]!r}")
    return int(value)


def parse_message(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> SipMessage:
    """Parse one whole SIP message received in a datagram.

    :param data: the datagram payload.
    :param max_size: messages larger than this are refused with status 513.
    :returns: a :class:`SipRequest` or :class:`SipResponse`.
    :raises SipParseError: the message is malformed; ``status_hint`` says how
        to answer if it was a request.
    """
    if len(data) > max_size:
        raise SipParseError(f"message of {len(data)} bytes exceeds the {max_size}-byte limit", 513)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")  # blank lines before the start line
    # The usual message ends its header block with CRLF CRLF and has no other
    # line end (checked as in _split_crlf); then no LF LF or LF CR LF (see
    # _find_header_end) can come before that CRLF CRLF.
    end = data.find(b"\r\n\r\n")
    lines = None
    if end >= 0:
        head_end = end + 2
        body_start = end + 4
        # _split_crlf, inlined: this is the path nearly every datagram takes.
        text = data[:head_end].decode("utf-8", "surrogateescape")
        lines = text.split("\r\n")
        crlf = len(lines) - 1
        if text.count("\n") == crlf and text.count("\r") == crlf and lines[0]:
            lines.pop()  # the "" after the last CRLF
        else:
            lines = None
    if lines is None:
        head_end, body_start = _find_header_end(data)
        if head_end < 0:
            if data.endswith(b"\n"):
                head_end = body_start = len(data)
            else:
                raise SipParseError("no blank line after the headers")
        lines = _split_lines(data[:head_end].decode("utf-8", "surrogateescape"))
    msg = _parse_lines(lines)
    _validate(msg)
    length = _content_length(msg)
    if length is None:
        msg.body = data[body_start:]
    elif length == 0:
        msg.body = b""
    else:
        # A body a byte or two short of Content-Length is what a sender that
        # counted CRLF but sent LF produces (seen from a Hikvision NVR); keep
        # it rather than lose the catalog or record list inside. Anything
        # shorter is a truncated datagram (RFC 4475 §3.1.2.1 "clerr").
        if len(data) - body_start < length - CONTENT_LENGTH_SLACK:
            raise SipParseError(
                f"body is {len(data) - body_start} bytes, Content-Length says {length}"
            )
        msg.body = data[body_start : body_start + length]
    return msg


class StreamParser:
    """Frames SIP messages on a stream (TCP/TLS) by Content-Length (RFC 3261 §18.3).

    Sans-IO: :meth:`feed` takes whatever bytes arrived and returns the whole
    messages now available. A message that is framed correctly but invalid
    comes back as a :class:`SipParseError` in the list so the caller can
    answer 400 and go on; a framing error (headers that never end, a missing
    or absurd Content-Length) is raised, because the stream cannot be
    resynchronised and the connection must be closed.

    The work per call is proportional to the new bytes, not to the buffer: the
    search for the end of the headers resumes where the last one stopped, and
    a parsed header block waiting for its body is kept, so a peer trickling a
    message one byte at a time costs linear, not quadratic, time.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        #: CRLF keepalive pings seen (RFC 5626 §3.5.1); the glue answers with CRLF.
        self.pings = 0
        # Bytes of _buf already searched for the end of the header block.
        self._scanned = 0
        # A header block parsed but still waiting for its body:
        # (message, start of body, Content-Length).
        self._pending: tuple[SipMessage, int, int] | None = None
        # A framing error met after some messages were returned; raised next.
        self._error: SipParseError | None = None

    def feed(self, data: bytes) -> list[SipMessage | SipParseError]:
        """Add received bytes; return complete messages (or per-message errors).

        :param data: bytes read from the connection, any amount.
        :returns: messages completed by these bytes, in order; a message that
            is framed but invalid appears as its :class:`SipParseError`.
        :raises SipParseError: the stream cannot be framed any further (close
            the connection); ``status_hint`` is 513 when a size limit was hit.
            Messages completed before the fault are returned first and the
            error is raised by the next call.
        """
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[SipMessage | SipParseError] = []
        try:
            self._drain(out)
        except SipParseError as exc:
            if not out:
                raise
            self._error = exc
        return out

    def _drain(self, out: list[SipMessage | SipParseError]) -> None:
        buf = self._buf
        while buf:
            pending = self._pending
            if pending is None:
                # Skip CRLF keep-alives between messages.
                skip = 0
                n = len(buf)
                while skip < n and buf[skip] in (13, 10):
                    skip += 1
                if skip:
                    self.pings += buf[:skip].count(b"\r\n\r\n")
                    del buf[:skip]
                    self._scanned = 0
                    continue
                pending = self._frame_head()
                if pending is None:
                    break
                self._pending = pending
            msg, body_start, length = pending
            if len(buf) < body_start + length:
                break
            self._pending = None
            self._scanned = 0
            msg.body = bytes(buf[body_start : body_start + length])
            del buf[: body_start + length]
            try:
                _validate(msg)
            except SipParseError as exc:
                out.append(exc)
                continue
            out.append(msg)

    def _frame_head(self) -> tuple[SipMessage, int, int] | None:
        """Find and parse the next header block; None when more bytes are needed."""
        buf = self._buf
        # Resume 3 bytes early: a terminator may straddle two feeds.
        start = max(0, self._scanned - 3)
        window = bytes(buf[start : self.max_size + 4])
        head_end, body_start = _find_header_end(window)
        if head_end < 0:
            if len(buf) > self.max_size:
                raise SipParseError("header block exceeds the size limit", 513)
            self._scanned = len(buf)
            return None
        head_end += start
        body_start += start
        try:
            msg = _parse_head(bytes(buf[:head_end]).decode("utf-8", "surrogateescape"))
            length = _content_length(msg)
        except SipParseError as exc:
            # Without a trustworthy Content-Length the stream is lost.
            raise SipParseError(f"unframeable message on stream: {exc}") from exc
        if length is None:
            length = 0  # mandatory on streams; treat absence as no body
        if body_start + length > self.max_size:
            raise SipParseError(
                f"message of {body_start + length} bytes exceeds the {self.max_size}-byte limit",
                513,
            )
        return msg, body_start, length

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole message."""
        return len(self._buf)


def stable_tag(request: SipRequest) -> str:
    """A To tag that is the same for the same request (RFC 3261 §8.2.7).

    A request answered without a transaction may come again (a retransmission) and must get
    the same tag, so that the client (in its Completed state, or a strict one such as SIPp)
    sees a retransmitted response rather than a second one. The tag hashes what identifies
    the request (Via with its branch, From with its tag, Call-ID, CSeq) with the process's
    string-hash key: not predictable, and new after a restart. For answers that start no
    dialog; a dialog's tag comes from :func:`new_tag`.
    """
    h = request.headers
    key = hash((h.get("Via"), h.get("From"), h.get("Call-ID"), h.get("CSeq")))
    return f"{key & 0xFFFFFFFFFFFFFFFF:016x}"


def make_response(
    request: SipRequest,
    status: int,
    reason: str = "",
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
) -> SipResponse:
    """Build a response to ``request`` per RFC 3261 §8.2.6.

    Copies Via (all, in order), From, Call-ID and CSeq; copies To and adds
    ``to_tag`` when the To header has none (not for 100 Trying, §8.2.6.2);
    copies Timestamp into 100 Trying. Extra ``headers`` are appended.
    """
    items: list[tuple[str, str, str]] = []
    append = items.append
    copied = _RESPONSE_COPIED
    for t in request.headers._items:
        key = t[0]
        if key in copied:
            append(t)
        elif key == "to":
            value = t[2]
            if (
                to_tag
                and status > 100
                and ";tag=" not in value
                and ";tag=" not in value.replace(" ", "").lower()
            ):
                value = f"{value};tag={to_tag}"
            append((key, t[1], value))
        elif key == "timestamp" and status == 100:
            append(t)
    resp = SipResponse(status, reason, Headers._from_canonical(items), body)
    # CSeq is copied verbatim, so its parsed form (an immutable tuple) is too.
    resp._cseq = request._cseq
    if headers:
        add = resp.headers.add
        for name, value in headers:
            add(name, value)
    return resp
