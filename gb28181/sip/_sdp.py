"""SDP for GB/T 28181 INVITEs (RFC 4566 plus the ``y=`` and ``f=`` lines).

The SDP appendix of GB/T 28181 (Appendix G in the 2022 edition) adds two
session lines that standard SDP parsers reject: ``y=`` carries the 10-digit
SSRC and ``f=`` the media parameters.  Peers also bend RFC 4566 in ways seen
in the captures: LF-only line ends, trailing spaces (``y=0100000001 ``), an
empty ``f=``, a malformed ``f=v/0/0/0/0/0a/0/0/0`` (Dahua), ``y=`` missing
from offers, and vendor attributes in any case (``a=doWnloadspeed``).  So
this is a small line-based codec of our own:

* every line is ``<letter>=<value>``; the first one must be ``v=``;
* ``y=`` and ``f=`` belong to the session wherever they appear (they are
  printed after the last media section); the other session-only letters
  (``o s u t r z e p``) likewise; ``i c b k a`` and unknown letters belong to
  the media section they follow;
* lines we do not model are kept, in order, in ``extra_lines``;
* missing pieces (no ``c=``, no ``y=``, no ``m=``) parse to ``None`` or empty
  tuples; the caller decides what an answer without them means.  Malformed
  structural lines (``o= m= c= t= v=``) and duplicated single lines raise
  :class:`SdpError`.

Serialising writes CRLF lines in the order GB28181 peers expect
(notes §6.2, as WVP sends): ``v o s i u c t``, extra lines, session ``a=``,
then each ``m=`` with its ``c=``, extra lines and ``a=`` lines, then ``y= f=``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "MAX_SDP_SIZE",
    "Connection",
    "MediaDescription",
    "Origin",
    "SdpError",
    "SessionDescription",
    "build_offer",
    "make_ssrc",
    "parse_sdp",
    "ssrc_to_int",
]

#: Largest SDP body accepted.  GB28181 bodies are 200-600 bytes.
MAX_SDP_SIZE = 16384

Attribute = tuple[str, str | None]


class SdpError(ValueError):
    """An SDP body is not SDP, is malformed, or is too large."""


def _uint(text: str, what: str) -> int:
    # isdigit() alone accepts "²" and other digits int() refuses.
    if not (text.isascii() and text.isdigit()):
        raise SdpError(f"bad {what}: {text[:40]!r}")
    return int(text)


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>``.

    GB28181 puts a 20-digit ID in ``username`` (which one varies, notes §6.2).
    """

    username: str
    sess_id: str = "0"
    sess_version: str = "0"
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = ""

    @classmethod
    def parse(cls, value: str) -> Origin:
        parts = value.split()
        if len(parts) != 6:
            raise SdpError(f"bad o= line: {value[:80]!r}")
        return cls(*parts)

    def __str__(self) -> str:
        return " ".join(
            (
                self.username,
                self.sess_id,
                self.sess_version,
                self.nettype,
                self.addrtype,
                self.address,
            )
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=<nettype> <addrtype> <address>``: where media goes (or comes from)."""

    nettype: str
    addrtype: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Connection:
        parts = value.split()
        if len(parts) != 3:
            raise SdpError(f"bad c= line: {value[:80]!r}")
        return cls(*parts)

    @classmethod
    def for_address(cls, address: str) -> Connection:
        return cls("IN", "IP6" if ":" in address else "IP4", address)

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


def _find(attributes: tuple[Attribute, ...], name: str) -> Attribute | None:
    """First attribute called ``name`` (ASCII case-insensitive)."""
    wanted = name.lower()
    for attribute in attributes:
        if attribute[0].lower() == wanted:
            return attribute
    return None


_DIRECTIONS = ("sendonly", "recvonly", "sendrecv", "inactive")


def _direction(attributes: tuple[Attribute, ...]) -> str | None:
    for name, value in attributes:
        lowered = name.lower()
        if value is None and lowered in _DIRECTIONS:
            return lowered
    return None


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() else None


class _AttributeAccessors:
    """The GB/T 28181 attributes read through ``get_attribute``.

    Shared by a media section and the whole description (whose
    ``get_attribute`` falls back from session to media level).
    """

    __slots__ = ()

    def get_attribute(self, name: str) -> str | None:
        raise NotImplementedError

    @property
    def setup(self) -> str | None:
        """``a=setup`` lower-cased (``active``/``passive``/``actpass``), RFC 4145."""
        value = self.get_attribute("setup")
        return value.strip().lower() if value else None

    @property
    def connection_mode(self) -> str | None:
        """``a=connection`` (``new`` or ``existing``), RFC 4145."""
        value = self.get_attribute("connection")
        return value.strip().lower() if value else None

    @property
    def download_speed(self) -> int | None:
        """``a=downloadspeed`` (Download only, notes §6.9)."""
        return _int_or_none(self.get_attribute("downloadspeed"))

    @property
    def file_size(self) -> int | None:
        """``a=filesize`` in bytes, sent in Download answers."""
        return _int_or_none(self.get_attribute("filesize"))

    @property
    def stream_number(self) -> int | None:
        """Sub-stream selection from any of the vendor styles (notes §6.6).

        ``a=streamnumber`` (GB/T 28181-2022), ``a=stream`` (Hikvision),
        ``a=streamprofile`` (Dahua), first one present wins.
        """
        for name in ("streamnumber", "stream", "streamprofile"):
            number = _int_or_none(self.get_attribute(name))
            if number is not None:
                return number
        return None

    @property
    def stream_mode(self) -> str | None:
        """``a=streamMode`` (``MAIN``/``SUB``, Mercury/TP-LINK style)."""
        return self.get_attribute("streamMode")


@dataclass(frozen=True, slots=True)
class MediaDescription(_AttributeAccessors):
    """One ``m=`` section with the ``c=`` and ``a=`` lines that follow it.

    ``attributes`` keeps every ``a=`` line in order as ``(name, value)``;
    ``value`` is ``None`` for flags such as ``a=recvonly``.  Accessors look
    names up case-insensitively.
    """

    media: str
    port: int
    proto: str
    formats: tuple[str, ...] = ()
    port_count: int | None = None
    connection: Connection | None = None
    attributes: tuple[Attribute, ...] = ()
    extra_lines: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse_m_line(cls, value: str) -> MediaDescription:
        parts = value.split()
        if len(parts) < 3:
            raise SdpError(f"bad m= line: {value[:80]!r}")
        port_text, _, count_text = parts[1].partition("/")
        port = _uint(port_text, "m= port")
        if port > 0xFFFF:
            raise SdpError(f"m= port out of range: {port}")
        count = _uint(count_text, "m= port count") if count_text else None
        return cls(parts[0], port, parts[2], tuple(parts[3:]), count)

    def m_line(self) -> str:
        port = self.port if self.port_count is None else f"{self.port}/{self.port_count}"
        return " ".join((self.media, str(port), self.proto, *self.formats))

    def get_attribute(self, name: str) -> str | None:
        """Value of the first ``a=name:value`` (``""`` for a flag), else ``None``."""
        found = _find(self.attributes, name)
        if found is None:
            return None
        return "" if found[1] is None else found[1]

    def get_attributes(self, name: str) -> list[str | None]:
        """Values of every ``a=`` line called ``name`` (``None`` for flags)."""
        wanted = name.lower()
        return [value for key, value in self.attributes if key.lower() == wanted]

    @property
    def rtpmap(self) -> dict[int, str]:
        """``{payload type: "encoding/clock[/channels]"}`` from ``a=rtpmap``."""
        result: dict[int, str] = {}
        for value in self.get_attributes("rtpmap"):
            if value is None:
                continue
            pt_text, _, encoding = value.strip().partition(" ")
            pt = _int_or_none(pt_text)
            if pt is not None and pt not in result:
                result[pt] = encoding.strip()
        return result

    @property
    def is_tcp(self) -> bool:
        """RTP over TCP (``TCP/RTP/AVP``, RFC 4571 framing; notes §6.4)."""
        return self.proto.upper().startswith("TCP/")

    @property
    def direction(self) -> str | None:
        """``sendonly``, ``recvonly``, ``sendrecv``, ``inactive`` or ``None``."""
        return _direction(self.attributes)


# Which letters belong where (RFC 4566 §5).  'y' and 'f' are GB28181's own.
_SESSION_ONLY = frozenset("vosutrzepyf")
_SINGLE_SESSION = frozenset("vosiucyf")  # at most once per session section


@dataclass(frozen=True, slots=True)
class SessionDescription(_AttributeAccessors):
    """A parsed or built SDP body (see module docstring for the tolerances).

    ``start``/``stop`` are the ``t=`` line (``0 0`` when absent, which means
    the same: unbounded); ``ssrc`` is the ``y=`` value as sent and
    ``media_format`` the ``f=`` value verbatim.
    """

    version: int = 0
    origin: Origin | None = None
    session_name: str | None = None
    info: str | None = None
    uri: str | None = None
    connection: Connection | None = None
    start: int = 0
    stop: int = 0
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()
    ssrc: str | None = None
    media_format: str | None = None
    extra_lines: tuple[tuple[str, str], ...] = ()

    # -- accessors (first media section, falling back to session level) -------

    @property
    def primary(self) -> MediaDescription | None:
        """The first ``m=`` section (GB28181 sessions carry exactly one)."""
        return self.media[0] if self.media else None

    def media_of(self, kind: str) -> MediaDescription | None:
        """The first ``m=video`` / ``m=audio`` section, if any."""
        for media in self.media:
            if media.media.lower() == kind.lower():
                return media
        return None

    def get_attribute(self, name: str) -> str | None:
        """An attribute of the first media section, else of the session."""
        primary = self.primary
        if primary is not None:
            value = primary.get_attribute(name)
            if value is not None:
                return value
        found = _find(self.attributes, name)
        if found is None:
            return None
        return "" if found[1] is None else found[1]

    @property
    def connection_address(self) -> str | None:
        """Media address: the first section's ``c=``, else the session's."""
        primary = self.primary
        if primary is not None and primary.connection is not None:
            return primary.connection.address
        return self.connection.address if self.connection is not None else None

    @property
    def media_port(self) -> int | None:
        primary = self.primary
        return primary.port if primary is not None else None

    @property
    def direction(self) -> str | None:
        primary = self.primary
        found = primary.direction if primary is not None else None
        return found if found is not None else _direction(self.attributes)

    @property
    def ssrc_int(self) -> int | None:
        """The ``y=`` SSRC as the 32-bit RTP value, or ``None`` if absent or bad."""
        if self.ssrc is None:
            return None
        try:
            return ssrc_to_int(self.ssrc)
        except SdpError:
            return None

    # -- serialisation -------------------------------------------------------

    def _lines(self) -> Iterator[str]:
        yield f"v={self.version}"
        if self.origin is not None:
            yield f"o={self.origin}"
        if self.session_name is not None:
            yield f"s={self.session_name}"
        if self.info is not None:
            yield f"i={self.info}"
        if self.uri is not None:
            yield f"u={self.uri}"
        if self.connection is not None:
            yield f"c={self.connection}"
        yield f"t={self.start} {self.stop}"
        for letter, value in self.extra_lines:
            yield f"{letter}={value}"
        yield from _attribute_lines(self.attributes)
        for media in self.media:
            yield f"m={media.m_line()}"
            if media.connection is not None:
                yield f"c={media.connection}"
            for letter, value in media.extra_lines:
                yield f"{letter}={value}"
            yield from _attribute_lines(media.attributes)
        if self.ssrc is not None:
            yield f"y={self.ssrc}"
        if self.media_format is not None:
            yield f"f={self.media_format}"

    def serialize(self) -> bytes:
        """The body as UTF-8 bytes, CRLF after every line (RFC 4566 §5)."""
        return ("\r\n".join(self._lines()) + "\r\n").encode("utf-8")

    def __bytes__(self) -> bytes:
        return self.serialize()


def _attribute_lines(attributes: tuple[Attribute, ...]) -> Iterator[str]:
    for name, value in attributes:
        yield f"a={name}" if value is None else f"a={name}:{value}"


def _split_lines(text: str) -> list[str]:
    if "\n" in text:
        return text.split("\n")
    return text.split("\r")  # bare CR line ends (rare, but cheap to accept)


class _MediaBuilder:
    """Collects the lines of one ``m=`` section while parsing."""

    __slots__ = ("attributes", "connection", "extra", "head")

    def __init__(self, head: MediaDescription) -> None:
        self.head = head
        self.connection: Connection | None = None
        self.attributes: list[Attribute] = []
        self.extra: list[tuple[str, str]] = []

    def build(self) -> MediaDescription:
        head = self.head
        return MediaDescription(
            head.media,
            head.port,
            head.proto,
            head.formats,
            head.port_count,
            self.connection,
            tuple(self.attributes),
            tuple(self.extra),
        )


def _attribute(value: str) -> Attribute:
    name, colon, rest = value.partition(":")
    return (name, rest) if colon else (name, None)


def parse_sdp(data: bytes | str, *, max_size: int = MAX_SDP_SIZE) -> SessionDescription:
    """Parse an SDP body from an INVITE, a 200 OK or an ACK.

    :param data: the body; bytes are decoded as UTF-8, falling back to
        GB18030 (the charset GB28181 devices use for free text).
    :param max_size: bound on the body length in bytes (characters for str).
    :raises SdpError: too large, not SDP (first line is not ``v=``, a line is
        not ``<letter>=...``, control characters), a malformed ``o= c= m= t=``
        line, or a duplicated single-occurrence line.
    """
    if len(data) > max_size:
        raise SdpError(f"SDP body larger than {max_size}")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("gb18030", errors="replace")
    else:
        text = data
    # Some devices pad the body with NULs up to Content-Length.
    text = text.rstrip("\x00")

    session: dict[str, str] = {}
    times: tuple[int, int] | None = None
    session_attributes: list[Attribute] = []
    session_extra: list[tuple[str, str]] = []
    media: list[_MediaBuilder] = []
    current: _MediaBuilder | None = None

    for raw in _split_lines(text):
        line = raw.strip(" \t\r")
        if not line:
            continue
        if not line.isprintable() and not line.replace("\t", " ").isprintable():
            raise SdpError("control character in SDP")
        letter = line[0]
        if line[1:2] != "=" or not (letter.isascii() and letter.isalpha()):
            raise SdpError(f"not an SDP line: {line[:40]!r}")
        letter = letter.lower()
        value = line[2:]
        if not session and letter != "v":
            raise SdpError("SDP must start with v=")
        if letter in _SESSION_ONLY:
            if letter == "t" and times is None:
                bounds = value.split()
                if len(bounds) != 2:
                    raise SdpError(f"bad t= line: {value[:40]!r}")
                times = (_uint(bounds[0], "t= start"), _uint(bounds[1], "t= stop"))
            elif letter in _SINGLE_SESSION:
                if letter in session:
                    raise SdpError(f"duplicate {letter}= line")
                session[letter] = value
            else:
                session_extra.append((letter, value))
        elif letter == "m":
            current = _MediaBuilder(MediaDescription.parse_m_line(value))
            media.append(current)
        elif current is None:
            if letter == "a":
                session_attributes.append(_attribute(value))
            elif letter in session:  # 'i' or 'c' twice at session level
                raise SdpError(f"duplicate {letter}= line")
            elif letter in "ic":
                session[letter] = value
            else:
                session_extra.append((letter, value))
        elif letter == "a":
            current.attributes.append(_attribute(value))
        elif letter == "c":
            if current.connection is not None:
                raise SdpError("duplicate c= line in media section")
            current.connection = Connection.parse(value)
        else:
            current.extra.append((letter, value))

    if not session:
        raise SdpError("empty SDP")
    origin = session.get("o")
    connection = session.get("c")
    return SessionDescription(
        version=_uint(session["v"].strip(), "v= version"),
        origin=Origin.parse(origin) if origin is not None else None,
        session_name=session.get("s"),
        info=session.get("i"),
        uri=session.get("u"),
        connection=Connection.parse(connection) if connection is not None else None,
        start=times[0] if times else 0,
        stop=times[1] if times else 0,
        attributes=tuple(session_attributes),
        media=tuple(m.build() for m in media),
        ssrc=session.get("y"),
        media_format=session.get("f"),
        extra_lines=tuple(session_extra),
    )


# -- SSRC (notes §6.3) --------------------------------------------------------


def make_ssrc(domain: str, seq: int, history: bool) -> str:
    """Build a GB28181 ``y=`` SSRC: ``<0 live|1 history><domain[3:8]><seq:04>``.

    Example: domain ``3402000000``, live, seq 1 -> ``0200000001``.

    :raises ValueError: ``domain`` has fewer than 8 leading digits, or ``seq``
        is outside 0..9999.
    """
    part = domain[3:8]
    if len(part) != 5 or not (part.isascii() and part.isdigit()):
        raise ValueError(f"SIP domain {domain!r} has no digits 4-8")
    if not 0 <= seq <= 9999:
        raise ValueError(f"SSRC sequence {seq} outside 0..9999")
    return f"{1 if history else 0}{part}{seq:04d}"


def ssrc_to_int(ssrc: str) -> int:
    """The RTP SSRC field for a ``y=`` value (decimal; GB28181 uses 10 digits).

    :raises SdpError: not decimal digits, or larger than 32 bits.
    """
    value = _uint(ssrc.strip(), "y= SSRC")
    if value > 0xFFFFFFFF or len(ssrc.strip()) > 10:
        raise SdpError(f"y= SSRC out of range: {ssrc[:20]!r}")
    return value


# -- offers -------------------------------------------------------------------

_KINDS = ("Play", "Playback", "Download", "Talk")
_TRANSPORTS = {
    "UDP": ("RTP/AVP", None),
    "TCP-PASSIVE": ("TCP/RTP/AVP", "passive"),
    "TCP-ACTIVE": ("TCP/RTP/AVP", "active"),
}
_VIDEO_RTPMAP = (("96", "PS/90000"), ("97", "MPEG4/90000"), ("98", "H264/90000"))
_AUDIO_RTPMAP = (("8", "PCMA/8000"), ("96", "PS/90000"))
_STREAM_ATTRIBUTES = ("streamnumber", "stream", "streamprofile", "streamMode")


def build_offer(
    kind: str,
    origin_id: str,
    address: str,
    port: int,
    transport: str = "UDP",
    ssrc: str | None = None,
    start: int = 0,
    stop: int = 0,
    channel_id: str | None = None,
    download_speed: int | None = None,
    stream_number: int | None = None,
    *,
    stream_attribute: str = "streamnumber",
    media_format: str | None = None,
) -> SessionDescription:
    """Build the SDP offer of an INVITE in which we receive media (notes §6.2).

    :param kind: ``s=`` value: ``Play``, ``Playback``, ``Download`` or ``Talk``.
    :param origin_id: ``o=`` username (our platform or media-server ID).
    :param address: where the device must send media (``c=`` and ``o=``).
    :param port: our receiving (UDP / TCP passive) or connecting (TCP active) port.
    :param transport: ``UDP``, ``TCP-PASSIVE`` (the device connects to us) or
        ``TCP-ACTIVE`` (we connect to the device), notes §6.4.
    :param ssrc: the ``y=`` value, see :func:`make_ssrc`; ``None`` omits it.
    :param start: ``t=`` start (Unix seconds) for Playback/Download.
    :param stop: ``t=`` stop.
    :param channel_id: the channel; becomes ``u=<channel_id>:0`` (required
        for Playback and Download, §6.9); a value with ``:`` is used as is.
    :param download_speed: ``a=downloadspeed`` (Download).
    :param stream_number: sub-stream to ask for (0 main, 1 sub...), written
        with ``stream_attribute`` (``streamnumber``, ``stream``,
        ``streamprofile`` or ``streamMode``, which gets ``MAIN``/``SUB``).
    :param media_format: the ``f=`` value; ``None`` omits the line.
    :raises ValueError: an unknown kind / transport / stream attribute, a
        port out of range, a non-numeric SSRC, or no channel for playback.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown session kind {kind!r}")
    try:
        proto, setup = _TRANSPORTS[transport.upper()]
    except KeyError:
        raise ValueError(f"unknown transport {transport!r}") from None
    if not 0 < port <= 0xFFFF:
        raise ValueError(f"port {port} out of range")
    if ssrc is not None:
        ssrc_to_int(ssrc)
    if stream_attribute not in _STREAM_ATTRIBUTES:
        raise ValueError(f"unknown stream attribute {stream_attribute!r}")
    if kind in ("Playback", "Download") and channel_id is None:
        raise ValueError(f"{kind} needs channel_id for the u= line")

    talk = kind == "Talk"
    attributes: list[Attribute] = [("sendrecv" if talk else "recvonly", None)]
    attributes += [("rtpmap", f"{pt} {name}") for pt, name in _AUDIO_RTPMAP if talk]
    attributes += [("rtpmap", f"{pt} {name}") for pt, name in _VIDEO_RTPMAP if not talk]
    if setup is not None:
        attributes += [("setup", setup), ("connection", "new")]
    if download_speed is not None:
        attributes.append(("downloadspeed", str(download_speed)))
    if stream_number is not None:
        if stream_attribute == "streamMode":
            attributes.append((stream_attribute, "MAIN" if stream_number == 0 else "SUB"))
        else:
            attributes.append((stream_attribute, str(stream_number)))
    connection = Connection.for_address(address)
    formats = tuple(pt for pt, _ in (_AUDIO_RTPMAP if talk else _VIDEO_RTPMAP))
    uri = None
    if channel_id is not None:
        uri = channel_id if ":" in channel_id else f"{channel_id}:0"
    return SessionDescription(
        origin=Origin(origin_id, "0", "0", connection.nettype, connection.addrtype, address),
        session_name=kind,
        uri=uri,
        connection=connection,
        start=start,
        stop=stop,
        media=(
            MediaDescription(
                "audio" if talk else "video", port, proto, formats, attributes=tuple(attributes)
            ),
        ),
        ssrc=ssrc,
        media_format=media_format,
    )
