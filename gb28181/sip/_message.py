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
#: Headers that may appear once only (RFC 3261 §7.3.1, RFC 4475 multi01).
_SINGLE = ("from", "to", "call-id", "cseq", "max-forwards")


def _is_digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` alone accepts "²" and "٣", which ``int`` rejects."""
    return text.isdigit() and text.isascii()


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

    def _head_lines(self) -> list[str]:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        # Content-Length is always recomputed from the body's bytes; it stays
        # where the headers had it (appended last when absent).
        lines = self._head_lines()
        length = f"Content-Length: {len(self.body)}"
        for lname, name, value in self.headers._items:
            if lname != "content-length":
                lines.append(f"{name}: {value}")
            elif length:
                lines.append(length)
                length = ""
        if length:
            lines.append(length)
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
        reason = self.reason
        if not reason.isprintable():
            # Reasons may quote a peer's bad input: never let it break the
            # status line or smuggle headers in (RFC 3261 §25.1 Reason-Phrase).
            reason = "".join(c if c.isprintable() else " " for c in reason)
        return [f"SIP/2.0 {self.status} {reason}"]

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


def _parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not _is_digits(parts[0]) or len(parts[0]) > 10:
        raise SipParseError(f"bad CSeq {value[:80]!r}")
    num = int(parts[0])
    if num >= 2**31:
        raise SipParseError(f"CSeq number out of range: {value[:80]!r}")
    method = parts[1]
    if _TOKEN_RE.fullmatch(method) is None:
        raise SipParseError(f"bad CSeq method {value[:80]!r}")
    return num, method


def _find_header_end(data: bytes) -> tuple[int, int]:
    """Return (end of header block, start of body), or (-1, -1) if not found.

    The blank line is the first LF CR LF (which covers CRLF CRLF, and LF-only
    headers closed by a CRLF blank line) or LF LF (LF only), whichever comes
    first. The header block keeps its last line end.
    """
    lf = data.find(b"\n\n")
    mixed = data.find(b"\n\r\n")
    if mixed >= 0 and (lf < 0 or mixed < lf):
        return mixed + 1, mixed + 3
    if lf >= 0:
        return lf + 1, lf + 2
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
        if len(code) != 3 or not _is_digits(code) or not 100 <= int(code) <= 699:
            raise SipParseError(f"bad status code {code[:20]!r}")
        resp = SipResponse(int(code))
        # Keep the phrase as sent, even when empty (RFC 4475 noreason).
        resp.reason = parts[2] if len(parts) > 2 else ""
        msg = resp
    else:
        parts = start.split(" ")
        if len(parts) != 3 or not all(parts):
            raise SipParseError(f"bad request line {start[:80]!r}")
        method, uri, version = parts
        if _TOKEN_RE.fullmatch(method) is None:
            raise SipParseError(f"bad method {method[:40]!r}")
        if version.upper() != "SIP/2.0":
            raise SipParseError(f"unsupported SIP version {version[:20]!r}", 505)
        if ":" not in uri or "<" in uri or ">" in uri:
            # "<sip:...>" as Request-URI is RFC 4475 ltgtruri.
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
    names = [t[0] for t in msg.headers._items]
    present = set(names)
    if not present.issuperset(_MANDATORY):
        missing = [canonical_name(n) for n in _MANDATORY if n not in present]
        raise SipParseError(f"missing mandatory header {', '.join(missing)}")
    if len(present) != len(names):
        for name in _SINGLE:
            if names.count(name) > 1:
                raise SipParseError(f"more than one {canonical_name(name)} header")
    _, cseq_method = msg.cseq
    if isinstance(msg, SipRequest) and cseq_method != msg.method:
        raise SipParseError(f"CSeq method {cseq_method!r} does not match {msg.method!r}")
    mf = msg.headers.get("Max-Forwards")
    if mf is not None:
        mf = mf.strip()
        if not _is_digits(mf) or len(mf) > 10 or int(mf) > 255:
            raise SipParseError(f"bad Max-Forwards {mf[:20]!r}")


def _content_length(msg: SipMessage) -> int | None:
    values = [v for lname, _, v in msg.headers._items if lname == "content-length"]
    if not values:
        return None
    if len(set(v.strip() for v in values)) > 1:
        raise SipParseError("conflicting Content-Length headers")
    value = values[0].strip()
    if not _is_digits(value) or len(value) > 9:
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
