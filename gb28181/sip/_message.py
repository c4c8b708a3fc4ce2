"""SIP message codec: requests and responses, from bytes and back (RFC 3261 §7).

Strategy: find the end of the header block with one ``bytes.find``, decode
it once, unfold continuation lines, canonicalise header names, and keep every
value as text. Structured values (From, Via, CSeq...) are parsed only when an
accessor asks for them and then cached, because on the hot path of a GB/T
28181 platform (keepalives, registrations) most headers are never looked at.

Bodies stay ``bytes``: MANSCDP bodies are GB2312/GB18030, and
``Content-Length`` counts encoded bytes, so serialisation always recomputes it
from ``len(body)`` (gb28181-notes §2).

Tolerated because real devices do it: LF-only line ends, padded
``Content-Length``, compact header names, any header-name case, leading blank
lines before the start line. Rejected with :class:`SipParseError` (which names
the status to answer): messages over ``max_size`` (513), a bad start line,
missing mandatory headers, an unparsable CSeq or Content-Length, a CSeq
method that differs from the request method, and a body shorter than its
Content-Length on a datagram.
"""

from __future__ import annotations

import re

from ._errors import SipParseError
from ._headers import Headers, canonical_name
from ._uri import NameAddr, SipUri, Via

__all__ = [
    "DEFAULT_MAX_SIZE",
    "REASON_PHRASES",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "StreamParser",
    "make_response",
    "parse_message",
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
_NAME_CACHE: dict[str, tuple[str, str]] = {}


class SipMessage:
    """What requests and responses share: headers, body and parsed-header caches."""

    __slots__ = ("_cseq", "_from", "_to", "_vias", "body", "headers")

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self._cseq: tuple[int, str] | None = None
        self._from: NameAddr | None = None
        self._to: NameAddr | None = None
        self._vias: list[Via] | None = None

    # -- accessors (parsed lazily, cached; call invalidate() after editing headers)
    def invalidate(self) -> None:
        """Forget cached parsed headers after :attr:`headers` was edited."""
        self._cseq = self._from = self._to = self._vias = None

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        """The Call-ID value."""
        return self._required("Call-ID").strip()

    @property
    def cseq(self) -> tuple[int, str]:
        """``(sequence number, method)`` from CSeq."""
        if self._cseq is None:
            self._cseq = _parse_cseq(self._required("CSeq"))
        return self._cseq

    @property
    def from_(self) -> NameAddr:
        """The parsed From header."""
        if self._from is None:
            self._from = NameAddr.parse(self._required("From"))
        return self._from

    @property
    def to(self) -> NameAddr:
        """The parsed To header."""
        if self._to is None:
            self._to = NameAddr.parse(self._required("To"))
        return self._to

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first."""
        if self._vias is None:
            values = self.headers.get_all("Via")
            if not values:
                raise SipParseError("missing Via header")
            self._vias = [Via.parse(v) for v in values]
        return self._vias

    @property
    def top_via(self) -> Via:
        """The topmost Via (where responses go, RFC 3261 §18.2.2)."""
        return self.vias[0]

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

    @property
    def expires(self) -> int | None:
        """The Expires header as an integer, ``None`` when absent.

        Raises :class:`SipParseError` when present but not a number.
        """
        value = self.headers.get("Expires")
        if value is None:
            return None
        value = value.strip()
        if not value.isdigit() or len(value) > 10:
            raise SipParseError(f"bad Expires value {value!r}")
        return int(value)

    def _head_lines(self) -> list[str]:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        lines = self._head_lines()
        for lname, name, value in self.headers._items:
            if lname != "content-length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body


class SipRequest(SipMessage):
    """A SIP request. ``uri`` is kept as text; :attr:`request_uri` parses it."""

    __slots__ = ("method", "uri")

    def __init__(
        self, method: str, uri: str, headers: Headers | None = None, body: bytes = b""
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri

    @property
    def request_uri(self) -> SipUri:
        """The parsed Request-URI."""
        return SipUri.parse(self.uri)

    def _head_lines(self) -> list[str]:
        return [f"{self.method} {self.uri} SIP/2.0"]

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri}>"


class SipResponse(SipMessage):
    """A SIP response."""

    __slots__ = ("reason", "status")

    def __init__(
        self, status: int, reason: str = "", headers: Headers | None = None, body: bytes = b""
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason or REASON_PHRASES.get(status, "Unknown")

    def _head_lines(self) -> list[str]:
        return [f"SIP/2.0 {self.status} {self.reason}"]

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


def _parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10:
        raise SipParseError(f"bad CSeq {value!r}")
    num = int(parts[0])
    if num >= 2**31:
        raise SipParseError(f"CSeq number out of range: {value!r}")
    method = parts[1]
    if _TOKEN_RE.fullmatch(method) is None:
        raise SipParseError(f"bad CSeq method {value!r}")
    return num, method


def _find_header_end(data: bytes) -> tuple[int, int]:
    """Return (end of header block, start of body), or (-1, -1) if not found."""
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if lf >= 0 and (crlf < 0 or lf < crlf):
        # A bare-LF blank line, possibly "\n\r\n" (mixed line ends).
        mixed = data.find(b"\n\r\n")
        if 0 <= mixed < lf:
            return mixed + 1, mixed + 3
        return lf + 1, lf + 2
    if crlf >= 0:
        mixed = data.find(b"\n\r\n")
        if 0 <= mixed < crlf:
            return mixed + 1, mixed + 3
        return crlf + 2, crlf + 4
    return -1, -1


def _parse_head(text: str) -> SipMessage:
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
    start = lines[first]
    msg: SipMessage
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if len(parts) < 2:
            raise SipParseError(f"bad status line {start[:80]!r}")
        version = parts[0]
        if version.upper() != "SIP/2.0":
            raise SipParseError(f"unsupported SIP version {version[:20]!r}", 505)
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
            raise SipParseError(f"bad status code {code[:20]!r}")
        msg = SipResponse(int(code), parts[2] if len(parts) > 2 else "")
    else:
        parts = start.split(" ")
        if len(parts) != 3 or not all(parts):
            raise SipParseError(f"bad request line {start[:80]!r}")
        method, uri, version = parts
        if _TOKEN_RE.fullmatch(method) is None:
            raise SipParseError(f"bad method {method[:40]!r}")
        if version.upper() != "SIP/2.0":
            raise SipParseError(f"unsupported SIP version {version[:20]!r}", 505)
        if ":" not in uri:
            raise SipParseError(f"bad Request-URI {uri[:80]!r}")
        msg = SipRequest(method, uri)
    items: list[tuple[str, str, str]] = []
    cache = _NAME_CACHE
    for line in lines[first + 1 :]:
        if line[:1] in (" ", "\t"):
            if not items:
                raise SipParseError("continuation line before any header")
            lname, name, value = items[-1]
            items[-1] = (lname, name, f"{value} {line.strip()}" if value else line.strip())
            continue
        colon = line.find(":")
        if colon <= 0:
            raise SipParseError(f"bad header line {line[:80]!r}")
        raw_name = line[:colon]
        entry = cache.get(raw_name)
        if entry is None:
            stripped = raw_name.rstrip(" \t")
            if _TOKEN_RE.fullmatch(stripped) is None:
                raise SipParseError(f"bad header name {raw_name[:40]!r}")
            name = canonical_name(stripped)
            entry = (name.lower(), name)
            if len(cache) < 4096:
                cache[raw_name] = entry
        items.append((entry[0], entry[1], line[colon + 1 :].strip()))
    msg.headers = Headers._from_canonical(items)
    return msg


def _validate(msg: SipMessage) -> None:
    present = {t[0] for t in msg.headers._items}
    if not present.issuperset(_MANDATORY):
        missing = [canonical_name(n) for n in _MANDATORY if n not in present]
        raise SipParseError(f"missing mandatory header {', '.join(missing)}")
    _, cseq_method = msg.cseq
    if isinstance(msg, SipRequest) and cseq_method != msg.method:
        raise SipParseError(f"CSeq method {cseq_method!r} does not match {msg.method!r}")
    mf = msg.headers.get("Max-Forwards")
    if mf is not None:
        mf = mf.strip()
        if not mf.isdigit() or int(mf) > 255:
            raise SipParseError(f"bad Max-Forwards {mf[:20]!r}")


def _content_length(msg: SipMessage) -> int | None:
    values = [v for lname, _, v in msg.headers._items if lname == "content-length"]
    if not values:
        return None
    if len(set(v.strip() for v in values)) > 1:
        raise SipParseError("conflicting Content-Length headers")
    value = values[0].strip()
    if not value.isdigit() or len(value) > 9:
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
    head_end, body_start = _find_header_end(data)
    if head_end < 0:
        if data.endswith(b"\n"):
            head_end = body_start = len(data)
        else:
            raise SipParseError("no blank line after the headers")
    msg = _parse_head(data[:head_end].decode("utf-8", "surrogateescape"))
    _validate(msg)
    body = data[body_start:]
    length = _content_length(msg)
    if length is not None:
        # A body a byte or two short of Content-Length is what a sender that
        # counted CRLF but sent LF produces (seen from a Hikvision NVR); keep
        # it rather than lose the catalog or record list inside. Anything
        # shorter is a truncated datagram (RFC 4475 §3.1.2.1 "clerr").
        if len(body) < length - CONTENT_LENGTH_SLACK:
            raise SipParseError(f"body is {len(body)} bytes, Content-Length says {length}")
        body = body[:length]
    msg.body = body
    return msg


class StreamParser:
    """Frames SIP messages on a stream (TCP/TLS) by Content-Length (RFC 3261 §18.3).

    Sans-IO: :meth:`feed` takes whatever bytes arrived and returns the whole
    messages now available. A message that is framed correctly but invalid
    comes back as a :class:`SipParseError` in the list so the caller can
    answer 400 and go on; a framing error (headers that never end, a missing
    or absurd Content-Length) is raised, because the stream cannot be
    resynchronised and the connection must be closed.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        #: CRLF keepalive pings seen (RFC 5626 §3.5.1); the glue answers with CRLF.
        self.pings = 0

    def feed(self, data: bytes) -> list[SipMessage | SipParseError]:
        """Add received bytes; return complete messages (or per-message errors)."""
        self._buf += data
        out: list[SipMessage | SipParseError] = []
        buf = self._buf
        while buf:
            # Skip CRLF keep-alives between messages.
            skip = 0
            n = len(buf)
            while skip < n and buf[skip] in (13, 10):
                skip += 1
            if skip:
                if buf[:skip].count(b"\r\n\r\n"):
                    self.pings += buf[:skip].count(b"\r\n\r\n")
                del buf[:skip]
                continue
            head_end, body_start = _find_header_end(bytes(buf[: self.max_size + 4]))
            if head_end < 0:
                if len(buf) > self.max_size:
                    raise SipParseError("header block exceeds the size limit", 513)
                break
            head = bytes(buf[:head_end])
            try:
                msg = _parse_head(head.decode("utf-8", "surrogateescape"))
                length = _content_length(msg)
            except SipParseError as exc:
                # Without a trustworthy Content-Length the stream is lost.
                raise SipParseError(f"unframeable message on stream: {exc}") from exc
            if length is None:
                length = 0  # mandatory on streams; treat absence as no body
            if body_start + length > self.max_size:
                raise SipParseError(
                    f"message of {body_start + length} bytes exceeds the {self.max_size}-byte "
                    "limit",
                    513,
                )
            if len(buf) < body_start + length:
                break
            msg.body = bytes(buf[body_start : body_start + length])
            del buf[: body_start + length]
            try:
                _validate(msg)
            except SipParseError as exc:
                out.append(exc)
                continue
            out.append(msg)
        return out

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole message."""
        return len(self._buf)


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
    for t in request.headers._items:
        lname = t[0]
        if lname in ("via", "from", "call-id", "cseq"):
            items.append(t)
        elif lname == "to":
            value = t[2]
            if to_tag and status > 100 and ";tag=" not in value.replace(" ", "").lower():
                value = f"{value};tag={to_tag}"
            items.append((lname, t[1], value))
        elif lname == "timestamp" and status == 100:
            items.append(t)
    resp = SipResponse(status, reason, Headers._from_canonical(items), body)
    if headers:
        for name, value in headers:
            resp.headers.add(name, value)
    return resp
