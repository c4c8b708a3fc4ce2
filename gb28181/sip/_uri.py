"""SIP URIs, name-addr values and Via headers (RFC 3261 §19, §20.10, §20.42).

These are parsed lazily by :class:`gb28181.sip.SipRequest` accessors: most
messages a GB/T 28181 platform handles (keepalives) only need Call-ID, CSeq,
From and the top Via, so nothing else is parsed on the hot path.

Parsing is deliberately tolerant where real devices differ from the RFC
(Via branches without the ``z9hG4bK`` cookie, ``0.0.0.0`` sent-by, spaces
around ``/`` in the sent-protocol) and strict where a mistake would make us
send to the wrong place (ports, hosts, brackets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._errors import SipParseError

__all__ = [
    "NameAddr",
    "SipUri",
    "Via",
    "format_params",
    "parse_params",
    "split_header_list",
]

_HOST_RE = re.compile(r"[A-Za-z0-9._-]+")
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]{2,}\]")
_PORT_RE = re.compile(r"[0-9]{1,5}")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_DISPLAY_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~ \t]+")
_URI_BAD_RE = re.compile(r"[ \t\r\n<>]")
_LWS = (" ", "\t")

# Fast paths. Nearly every value a GB/T 28181 peer sends has one shape:
# ``<sip:user@host[:port]>;tag=x``, ``SIP/2.0/UDP host:port;rport;branch=x``,
# ``sip:user@host``. These patterns accept only text that the general parsers
# below would accept too, and the results are the same objects (a differential
# test in tests/sip/test_uri.py holds them to it); anything else (quotes in
# parameters, IPv6, escapes, LWS, passwords, unusual case) falls through to
# the general parsers, which also produce the error messages.
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_FAST_PARAMS = rf"((?:;{_TOKEN}(?:={_TOKEN})?)*)"
_FAST_USER = r"[A-Za-z0-9\-_.!~*'()&=+$%/]+"
_FAST_HOSTPORT = r"([A-Za-z0-9._-]+)(?::([0-9]{1,5}))?"
_FAST_URI = rf"(sips?):(?:({_FAST_USER})@)?{_FAST_HOSTPORT}"
_URI_FAST_RE = re.compile(_FAST_URI + _FAST_PARAMS)
_NAME_ADDR_FAST_RE = re.compile(rf'(?:"([^"\\]*)"[ \t]*)?<{_FAST_URI}{_FAST_PARAMS}>{_FAST_PARAMS}')
_VIA_FAST_RE = re.compile(rf"SIP/2\.0/([A-Za-z]+) {_FAST_HOSTPORT}{_FAST_PARAMS}")
# The commonest shapes of all, with fewer groups to fill: a From/To of a
# device, and a device's Via (RFC 3581 rport before the branch).
_NAME_ADDR_TAG_RE = re.compile(rf"<(sips?):({_FAST_USER})@{_FAST_HOSTPORT}>(?:;tag=({_TOKEN}))?")
_VIA_BRANCH_RE = re.compile(rf"SIP/2\.0/(UDP|TCP|TLS) {_FAST_HOSTPORT}(;rport)?;branch=({_TOKEN})")


def _fast_params(text: str | None) -> dict[str, str | None]:
    """Parameters of text that matched ``_FAST_PARAMS`` (same result as parse_params)."""
    if not text:
        return {}
    if text.startswith(";tag=") and text.find(";", 1) < 0:
        return {"tag": text[5:]}  # From/To: the one parameter there usually is
    params: dict[str, str | None] = {}
    for item in text[1:].split(";"):
        name, sep, value = item.partition("=")
        params[name.lower()] = value if sep else None
    return params


def _fast_uri(text: str) -> SipUri | None:
    """``sip:user@host:port;params`` in its plain form, or None (see above)."""
    m = _URI_FAST_RE.fullmatch(text)
    if m is None:
        return None
    scheme, user, host, port, ptext = m.groups()
    if port is None:
        return SipUri(scheme, host, user, None, None, _fast_params(ptext), None)
    number = int(port)
    if number > 65535:
        return None
    return SipUri(scheme, host, user, None, number, _fast_params(ptext), None)


def _fast_name_addr(text: str) -> NameAddr | None:
    """``["name"] <sip:user@host:port;p>;params`` or ``sip:user@host;params``, or None."""
    m = _NAME_ADDR_TAG_RE.fullmatch(text)
    if m is not None:
        scheme, user, host, port, tag = m.groups()
        number = None
        if port is not None:
            number = int(port)
            if number > 65535:
                return None
        uri = SipUri(scheme, host, user, None, number, {}, None)
        return NameAddr(uri, None, {"tag": tag} if tag is not None else {})
    m = _NAME_ADDR_FAST_RE.fullmatch(text)
    if m is not None:
        display, scheme, user, host, port, uparams, params = m.groups()
    else:
        m = _URI_FAST_RE.fullmatch(text)
        if m is None:
            return None
        # In an addr-spec the parameters belong to the header (§20.10).
        display = uparams = None
        scheme, user, host, port, params = m.groups()
    number = None
    if port is not None:
        number = int(port)
        if number > 65535:
            return None
    uri = SipUri(scheme, host, user, None, number, _fast_params(uparams), None)
    return NameAddr(uri, display, _fast_params(params))


def _fast_via(text: str) -> Via | None:
    """``SIP/2.0/UDP host:port;params``, or None (see above)."""
    m = _VIA_BRANCH_RE.fullmatch(text)
    if m is not None:
        transport, host, port, rport, branch = m.groups()
        params: dict[str, str | None] = (
            {"rport": None, "branch": branch} if rport is not None else {"branch": branch}
        )
    else:
        m = _VIA_FAST_RE.fullmatch(text)
        if m is None:
            return None
        transport, host, port, ptext = m.groups()
        transport = transport.upper()
        params = _fast_params(ptext)
    if port is None:
        return Via(transport, host, None, params, "SIP/2.0")
    number = int(port)
    if number > 65535:
        return None
    return Via(transport, host, number, params, "SIP/2.0")


def split_header_list(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quotes and ``<>``.

    RFC 3261 §7.3.1 allows several values of a list header (Via, Contact,
    Route...) on one line; commas inside a quoted display name or inside a
    bracketed URI do not separate values.
    """
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    parts: list[str] = []
    start = 0
    in_quote = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            part = value[start:i].strip()
            if part:
                parts.append(part)
            start = i + 1
        i += 1
    if in_quote:
        raise SipParseError("unbalanced quote in header value")
    part = value[start:].strip()
    if part:
        parts.append(part)
    return parts


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``;a=b;c`` (leading ``;`` optional) into an ordered dict.

    Names are lower-cased (parameter names are case-insensitive, RFC 3261
    §7.3.1); values keep their case, and surrounding quotes are kept so that
    serialising gives the same text back.
    """
    params: dict[str, str | None] = {}
    if not text:
        return params
    for raw in _split_semicolons(text):
        item = raw.strip()
        if not item:
            continue
        name, sep, val = item.partition("=")
        name = name.strip().lower()
        if not name:
            raise SipParseError(f"empty parameter name in {text!r}")
        params[name] = val.strip() if sep else None
    return params


def _split_semicolons(text: str) -> list[str]:
    if '"' not in text:
        return text.split(";")
    out: list[str] = []
    start = 0
    in_quote = False
    for i, ch in enumerate(text):
        if ch == '"':
            in_quote = not in_quote
        elif ch == ";" and not in_quote:
            out.append(text[start:i])
            start = i + 1
    if in_quote:
        raise SipParseError("unbalanced quote in parameters")
    out.append(text[start:])
    return out


def format_params(params: dict[str, str | None]) -> str:
    """Serialise parameters as ``;a=b;c``."""
    out = ""
    for k, v in params.items():
        out += f";{k}" if v is None else f";{k}={v}"
    return out


def _parse_hostport(text: str, what: str) -> tuple[str, int | None]:
    if not text:
        raise SipParseError(f"empty host in {what}")
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"unterminated IPv6 reference in {what}: {text!r}")
        host = text[: end + 1]
        rest = text[end + 1 :]
        if _IPV6_RE.fullmatch(host) is None:
            raise SipParseError(f"bad IPv6 reference in {what}: {text!r}")
        if not rest:
            return host, None
        if rest[0] != ":":
            raise SipParseError(f"junk after IPv6 reference in {what}: {text!r}")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.partition(":")
        if _HOST_RE.fullmatch(host) is None:
            raise SipParseError(f"bad host in {what}: {text!r}")
        if not sep:
            return host, None
    if _PORT_RE.fullmatch(port_text) is None or int(port_text) > 65535:
        raise SipParseError(f"bad port in {what}: {text!r}")
    return host, int(port_text)


def _format_hostport(host: str, port: int | None) -> str:
    return host if port is None else f"{host}:{port}"


@dataclass(slots=True)
class SipUri:
    """A ``sip:``/``sips:`` URI, or any other absolute URI kept opaque.

    For other schemes (``tel:``, ``urn:``...) only ``scheme`` and ``opaque``
    are set; GB/T 28181 peers use ``sip:`` exclusively but RFC 4475 shows
    that a server must at least not choke on the others.
    """

    scheme: str
    host: str = ""
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None
    opaque: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a URI; raise :class:`SipParseError` when it is malformed."""
        uri = _fast_uri(text)
        return uri if uri is not None else cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> SipUri:
        """The general parser (any text the fast path does not take)."""
        text = text.strip()
        scheme, sep, rest = text.partition(":")
        if not sep or _SCHEME_RE.fullmatch(scheme) is None:
            raise SipParseError(f"not a URI: {text!r}")
        scheme = scheme.lower()
        if _URI_BAD_RE.search(rest) is not None:
            raise SipParseError(f"whitespace or brackets in URI: {text!r}")
        if scheme not in ("sip", "sips"):
            if not rest:
                raise SipParseError(f"empty URI: {text!r}")
            return cls(scheme=scheme, opaque=rest)
        user: str | None = None
        password: str | None = None
        # The user part may hold "?", ";", "/" and ":" unescaped (RFC 3261
        # §25.1 user-unreserved, RFC 4475 intmeth and semiuri) but never "@",
        # and neither may parameters or headers: the last "@" ends userinfo.
        at = rest.rfind("@")
        if at >= 0:
            userinfo = rest[:at]
            rest = rest[at + 1 :]
            user, psep, pw = userinfo.partition(":")
            password = pw if psep else None
            if not user:
                raise SipParseError(f"empty user part in URI: {text!r}")
        headers: str | None = None
        qpos = rest.find("?")
        if qpos >= 0:
            headers = rest[qpos + 1 :]
            rest = rest[:qpos]
        hostport, _, ptext = rest.partition(";")
        host, port = _parse_hostport(hostport, "URI")
        params = parse_params(ptext) if ptext else {}
        return cls(scheme, host, user, password, port, params, headers)

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(_format_hostport(self.host, self.port))
        if self.params:
            out.append(format_params(self.params))
        if self.headers is not None:
            out.append("?" + self.headers)
        return "".join(out)

    @property
    def host_port(self) -> str:
        """``host[:port]`` as written in the URI."""
        return _format_hostport(self.host, self.port)


@dataclass(slots=True)
class NameAddr:
    """A From/To/Contact/Route value: ``"name" <uri>;params`` or ``uri;params``.

    In the addr-spec form (no ``<>``) parameters after the URI belong to the
    header, not to the URI (RFC 3261 §20.10), which is why ``tag`` always
    ends up in :attr:`params`.
    """

    uri: SipUri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    wildcard: bool = False

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse a name-addr or addr-spec with header parameters."""
        value = _fast_name_addr(text)
        return value if value is not None else cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> NameAddr:
        """The general parser (any text the fast path does not take)."""
        text = text.strip()
        if text == "*":
            return cls(uri=SipUri("sip"), wildcard=True)
        display: str | None = None
        if text.startswith('"'):
            end = _closing_quote(text)
            display = text[1:end]
            rest = text[end + 1 :].lstrip()
            if not rest.startswith("<"):
                raise SipParseError(f"quoted display name without <uri>: {text!r}")
        else:
            lt = text.find("<")
            if lt > 0:
                display = text[:lt].strip() or None
                if display is not None and _DISPLAY_RE.fullmatch(display) is None:
                    raise SipParseError(f"bad unquoted display name: {text!r}")
            rest = text[lt:] if lt >= 0 else text
        if rest.startswith("<"):
            gt = rest.find(">")
            if gt < 0:
                raise SipParseError(f"unterminated <uri>: {text!r}")
            inner = rest[1:gt]
            if inner[:1] in _LWS or inner[-1:] in _LWS:
                # "< sip:a@b >" (RFC 4475 badaspec): no LWS inside the brackets.
                raise SipParseError(f"whitespace inside <uri>: {text!r}")
            uri = SipUri.parse(inner)
            ptext = rest[gt + 1 :].strip()
            if ptext and not ptext.startswith(";"):
                raise SipParseError(f"junk after <uri>: {text!r}")
        else:
            uri_text, _, ptext = rest.partition(";")
            if any(c in uri_text for c in ",?"):
                raise SipParseError(f"addr-spec with reserved characters needs <>: {text!r}")
            uri = SipUri.parse(uri_text)
        return cls(uri, display, parse_params(ptext))

    @property
    def tag(self) -> str | None:
        """The dialog tag parameter, if any."""
        return self.params.get("tag")

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        head = f'"{self.display_name}" ' if self.display_name is not None else ""
        return f"{head}<{self.uri}>{format_params(self.params)}"


def _closing_quote(text: str) -> int:
    i = 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i
        i += 1
    raise SipParseError(f"unterminated quoted string: {text!r}")


@dataclass(slots=True)
class Via:
    """One Via value (RFC 3261 §20.42), with RFC 3581 ``rport``.

    ``params`` keeps ``rport`` as ``None`` when the client asked for it
    without a value; the server fills in the value it saw (RFC 3581 §4).
    """

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one Via value, tolerant of LWS around ``/`` (RFC 4475 wsinv)."""
        via = _fast_via(text)
        return via if via is not None else cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> Via:
        """The general parser (any text the fast path does not take)."""
        head, _, ptext = text.partition(";")
        parts = head.replace("/", " / ").split()
        # parts: name / version / transport sent-by
        if len(parts) != 6 or parts[1] != "/" or parts[3] != "/":
            raise SipParseError(f"bad Via: {text!r}")
        protocol = f"{parts[0]}/{parts[2]}"
        if protocol.upper() != "SIP/2.0":
            raise SipParseError(f"bad Via protocol: {text!r}")
        host, port = _parse_hostport(parts[5], "Via")
        params = parse_params(ptext) if ptext else {}
        return cls(parts[4].upper(), host, port, params, "SIP/2.0")

    @property
    def branch(self) -> str | None:
        """The transaction branch parameter (may lack ``z9hG4bK`` on old peers)."""
        return self.params.get("branch")

    @property
    def sent_by(self) -> str:
        """``host[:port]`` the sender says it sent from."""
        return _format_hostport(self.host, self.port)

    def __str__(self) -> str:
        port = self.port
        sent_by = self.host if port is None else f"{self.host}:{port}"
        return f"{self.protocol}/{self.transport} {sent_by}{format_params(self.params)}"
