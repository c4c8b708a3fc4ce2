"""HTTP Digest authentication for SIP REGISTER (RFC 2617, RFC 7616, RFC 3261 §22).

Two sides live here, both pure (no clock, no sockets, no randomness of their own
except where noted):

* the registrar side -- :class:`DigestVerifier` issues challenges and checks the
  ``Authorization`` header a device sends back (GB/T 28181-2016 §9.1: the
  device answers a 401 with a digest over its password);
* the client side -- :func:`build_authorization` answers a challenge when we
  register upward to another platform (cascading, GB/T 28181 §9.1).

Nonces are stateless: ``hex(issue time | 8 random bytes | 8-byte keyed MAC)``, so
any process holding the secret can check them, and a registrar restart does not
invalidate the nonces devices hold.  They are 40 hex characters, close to the
32 that Hikvision and EasyGBS servers send, because some device firmware keeps
the nonce in a small fixed buffer.

Replay protection (RFC 2617 §3.2.2 nonce-count, §4.5 replay attacks):

* with ``qop=auth`` every request carries a nonce count; a (nonce, nc) pair must
  never be accepted twice, so the verifier remembers the highest nc accepted per
  nonce and demands a strictly greater one.  Only *verified* requests update the
  record, so a forged request cannot burn counts of a real device.  The record
  is bounded: entries whose nonce has expired are dropped, and when the cap is
  reached the oldest entry is dropped and every nonce issued up to that one is
  from then on answered ``STALE`` (the device re-authenticates with a fresh
  nonce; nothing is ever silently accepted twice).
* without qop there is no nc, so a captured request could be replayed.  We still
  accept such responses while the nonce is fresh, because many GB28181 devices
  answer without qop (the Dahua capture in tests/fixtures does) and refresh or
  un-REGISTER with the nonce of the last 401.  The nonce lifetime bounds the
  replay window; set ``require_qop=True`` for peers known to support qop.

SIP retransmissions of one REGISTER carry the same nc: they must be absorbed by
the transaction layer (RFC 3261 §17.2.2) and never reach :meth:`verify` twice.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_HEADER_LENGTH",
    "SUPPORTED_ALGORITHMS",
    "AuthResult",
    "DigestChallenge",
    "DigestCredentials",
    "DigestError",
    "DigestVerifier",
    "NonceIssuer",
    "NonceStatus",
    "build_authorization",
    "compute_response",
]

#: Longest WWW-Authenticate / Authorization value we parse.  Real ones are
#: 150-350 characters; anything near this bound is an attack or garbage.
MAX_HEADER_LENGTH = 4096


class DigestError(ValueError):
    """A digest header could not be parsed, or a digest cannot be computed."""


# -- algorithms ---------------------------------------------------------------

_HashFn = Callable[[bytes], Any]

#: canonical name -> (hash constructor, is a "-sess" variant)
_ALGORITHMS: dict[str, tuple[_HashFn, bool]] = {
    "MD5": (hashlib.md5, False),
    "MD5-sess": (hashlib.md5, True),
    "SHA-256": (hashlib.sha256, False),
    "SHA-256-sess": (hashlib.sha256, True),
}
_CANONICAL: dict[str, str] = {name.upper(): name for name in _ALGORITHMS}

#: Algorithm names in their canonical spelling (RFC 7616 §6.1).
SUPPORTED_ALGORITHMS: frozenset[str] = frozenset(_ALGORITHMS)


def _canonical_algorithm(name: str) -> str:
    """Canonical spelling of a known algorithm; unknown names are kept as sent."""
    return _CANONICAL.get(name.upper(), name)


def _hex(fn: _HashFn, text: str) -> str:
    digest: str = fn(text.encode("utf-8")).hexdigest()
    return digest


def _ha1(
    fn: _HashFn, sess: bool, username: str, realm: str, password: str, nonce: str, cnonce: str
) -> str:
    ha1 = _hex(fn, f"{username}:{realm}:{password}")
    if sess:  # RFC 2617 §3.2.2.2: the session key also covers both nonces
        ha1 = _hex(fn, f"{ha1}:{nonce}:{cnonce}")
    return ha1


def compute_response(
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str | None = None,
    cnonce: str | None = None,
    qop: str | None = None,
) -> str:
    """Compute the ``response`` value of a digest (RFC 2617 §3.2.2, RFC 7616 §3.4.1).

    :param algorithm: ``MD5``, ``MD5-sess``, ``SHA-256`` or ``SHA-256-sess``
        (any case).
    :param nc: the nonce count as sent (8 hex digits); needed with ``qop``.
    :param cnonce: the client nonce; needed with ``qop`` and for ``-sess``.
    :param qop: ``None`` (RFC 2069 compatibility, what most GB28181 devices
        send) or ``"auth"``.  ``auth-int`` is not supported.
    :returns: the lower-case hex digest.
    :raises DigestError: unknown algorithm or qop, or a missing nc/cnonce.
    """
    try:
        fn, sess = _ALGORITHMS[_canonical_algorithm(algorithm)]
    except KeyError:
        raise DigestError(f"unsupported digest algorithm {algorithm!r}") from None
    if qop is not None and qop.lower() != "auth":
        raise DigestError(f"unsupported qop {qop!r}")
    if (qop is not None and (nc is None or cnonce is None)) or (sess and cnonce is None):
        raise DigestError("qop and -sess need nc and cnonce")
    ha1 = _ha1(fn, sess, username, realm, password, nonce, cnonce or "")
    ha2 = _hex(fn, f"{method}:{uri}")
    if qop is None:
        return _hex(fn, f"{ha1}:{nonce}:{ha2}")
    return _hex(fn, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# -- header syntax ------------------------------------------------------------
#
# challenge / credentials = "Digest" LWS auth-param *("," auth-param)
# auth-param = token "=" ( token / quoted-string )          (RFC 3261 §25.1)
#
# Devices are sloppier than the grammar: quotes around tokens (qop="auth",
# algorithm="MD5"), none around strings (uri=sip:...), no space after commas,
# spaces around "=", upper-case names.  The scanner below accepts all of that
# but rejects anything ambiguous (duplicate names, text after a closing quote).

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_PARAM_NAMES = "username realm nonce uri response algorithm qop nc cnonce opaque stale domain"
#: Shortcut for the usual spellings (as split from ", name="), skipping the token check.
_KNOWN_NAMES = {
    p: n for n in _PARAM_NAMES.split() for p in (n, " " + n, n.upper(), " " + n.upper())
}
_HEX_CHARS = frozenset("0123456789abcdefABCDEF")
_UNESCAPE = re.compile(r"\\(.)")


def _parse_params(value: str) -> dict[str, str]:
    """Split ``Digest a=b, c="d"`` into a dict with lower-case names."""
    if len(value) > MAX_HEADER_LENGTH:
        raise DigestError("digest header too long")
    if not value.isprintable():
        value = value.replace("\t", " ")
        if not value.isprintable():
            raise DigestError("control character in digest header")
    text = value.strip(" ")
    if text[:6].lower() != "digest" or text[6:7] != " ":
        raise DigestError("not a Digest header")
    body = text[7:]
    params = _split_params(body) if "\\" not in body else _scan_params(body)
    if not params:
        raise DigestError("digest header without parameters")
    return params


def _param_name(raw_name: str) -> str:
    if not raw_name or not _TOKEN_CHARS.issuperset(raw_name):
        raise DigestError(f"bad digest parameter name {raw_name[:40]!r}")
    return raw_name.lower()


def _split_params(body: str) -> dict[str, str]:
    """Fast path for the usual header without backslash escapes.

    Quotes are then plain delimiters, so splitting on commas and re-joining the
    pieces of a quoted value that contained a comma (``qop="auth,auth-int"``)
    is enough, and several times cheaper than scanning character by character.
    """
    params: dict[str, str] = {}
    pending: str | None = None
    count = 0
    for piece in body.split(","):
        if pending is not None:
            piece = pending + "," + piece
            pending = None
        raw_name, eq, param = piece.partition("=")
        if not eq:
            if piece.strip(" "):
                raise DigestError("digest parameter without '='")
            continue  # empty list element, as in "a=b,,c=d" (RFC 3261 #rule)
        param = param.strip(" ")
        if '"' in param:
            if param[0] != '"' or param[-1] != '"' or param.count('"') != 2:
                if param[0] == '"' and param.count('"') == 1:
                    pending = piece  # the value goes on past a comma
                    continue
                raise DigestError("bad quoting in digest parameter")
            param = param[1:-1]
        name = _KNOWN_NAMES.get(raw_name)
        if name is None:
            name = _param_name(raw_name.strip(" "))
        params[name] = param
        count += 1
    if pending is not None:
        raise DigestError("unterminated quoted string")
    if len(params) != count:
        raise DigestError("duplicate digest parameter")
    return params


def _scan_params(body: str) -> dict[str, str]:
    """General path: honours backslash escapes inside quoted strings."""
    params: dict[str, str] = {}
    n = len(body)
    i = 0
    while True:
        while i < n and body[i] in " ,":
            i += 1
        if i >= n:
            return params
        eq = body.find("=", i)
        if eq < 0:
            raise DigestError("digest parameter without '='")
        raw_name = body[i:eq].rstrip(" ")
        j = eq + 1
        while j < n and body[j] == " ":
            j += 1
        if j < n and body[j] == '"':
            k = j + 1
            while True:
                end = body.find('"', k)
                if end < 0:
                    raise DigestError("unterminated quoted string")
                p = end - 1
                while body[p] == "\\":  # stops at the opening quote at worst
                    p -= 1
                if (end - 1 - p) % 2 == 0:  # an even run of backslashes: real end
                    break
                k = end + 1
            raw = body[j + 1 : end]
            param = _UNESCAPE.sub(r"\1", raw)
            i = end + 1
            while i < n and body[i] == " ":
                i += 1
            if i < n and body[i] != ",":
                raise DigestError("bad quoting in digest parameter")
        else:
            end = body.find(",", j)
            if end < 0:
                end = n
            param = body[j:end].rstrip(" ")
            if '"' in param:
                raise DigestError("stray quote in digest parameter")
            i = end
        name = _param_name(raw_name)
        if name in params:
            raise DigestError("duplicate digest parameter")
        params[name] = param


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _token_or_quoted(text: str) -> str:
    """Tokens go bare (RFC 2617 writes algorithm, qop, nc unquoted)."""
    return text if text and _TOKEN_CHARS.issuperset(text) else _quoted(text)


#: ``(realm, algorithm, qop, opaque, stale)`` -> the challenge text before and
#: after the quoted nonce; bounded (challenges can also come from the network).
_CHALLENGE_TEXT: dict[tuple[str, str, tuple[str, ...], str | None, bool], tuple[str, str]] = {}
#: Bound of each small memo in this module.
_MAX_CACHED = 4096


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """A ``WWW-Authenticate`` (or ``Proxy-Authenticate``) Digest challenge.

    ``algorithm`` defaults to MD5 when the header omits it (RFC 2617 §3.2.1),
    as the Dahua and EasyGBS 401s in the captures do.  ``qop`` holds the
    offered options, lower-cased, empty when none were offered.
    """

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False

    @classmethod
    def parse(cls, header_value: str) -> DigestChallenge:
        """Parse a ``WWW-Authenticate`` value.

        :raises DigestError: not a Digest challenge, malformed, or without
            ``realm`` / ``nonce``.
        """
        params = _parse_params(header_value)
        try:
            realm = params["realm"]
            nonce = params["nonce"]
        except KeyError as exc:
            raise DigestError(f"challenge without {exc.args[0]}") from None
        qop = params.get("qop")
        return cls(
            realm=realm,
            nonce=nonce,
            algorithm=_canonical_algorithm(params.get("algorithm", "MD5")),
            qop=tuple(q for q in (o.strip(" ").lower() for o in qop.split(",")) if q)
            if qop
            else (),
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
        )

    def __str__(self) -> str:
        # A registrar sends the same challenge with a new nonce thousands of
        # times a second: the text around the nonce is cached per shape.
        shape = (self.realm, self.algorithm, self.qop, self.opaque, self.stale)
        around = _CHALLENGE_TEXT.get(shape)
        if around is None:
            if len(_CHALLENGE_TEXT) >= _MAX_CACHED:
                _CHALLENGE_TEXT.clear()
            text = self._format("\x00")
            head, _, tail = text.partition('"\x00"')
            around = _CHALLENGE_TEXT[shape] = (head, tail)
        nonce = self.nonce
        if '"' in nonce or "\\" in nonce or "\x00" in nonce:
            return self._format(nonce)
        return f'{around[0]}"{nonce}"{around[1]}'

    def _format(self, nonce: str) -> str:
        parts = [
            f"realm={_quoted(self.realm)}",
            f"nonce={_quoted(nonce)}",
            f"algorithm={_token_or_quoted(self.algorithm)}",
        ]
        if self.qop:
            parts.append(f"qop={_quoted(','.join(self.qop))}")
        if self.opaque is not None:
            parts.append(f"opaque={_quoted(self.opaque)}")
        if self.stale:
            parts.append("stale=true")
        return "Digest " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """An ``Authorization`` (or ``Proxy-Authorization``) Digest response.

    Every field but ``algorithm`` may be ``None``: a header missing a required
    field still parses, and :meth:`DigestVerifier.verify` reports
    ``MISSING_FIELD``, so the registrar can answer 400/401 deliberately
    instead of failing in the parser.  Unknown parameters are dropped.
    """

    username: str | None = None
    realm: str | None = None
    nonce: str | None = None
    uri: str | None = None
    response: str | None = None
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None

    @classmethod
    def parse(cls, header_value: str) -> DigestCredentials:
        """Parse an ``Authorization`` value.

        :raises DigestError: not a Digest header, longer than
            :data:`MAX_HEADER_LENGTH`, or syntactically broken.
        """
        get = _parse_params(header_value).get
        algorithm = get("algorithm", "MD5")
        if algorithm != "MD5":
            algorithm = _canonical_algorithm(algorithm)
        # Positional: the frozen dataclass __init__ is the costly part of a
        # parse, and binding ten keywords on top of it adds a third.
        return cls(
            get("username"),
            get("realm"),
            get("nonce"),
            get("uri"),
            get("response"),
            algorithm,
            get("qop"),
            get("nc"),
            get("cnonce"),
            get("opaque"),
        )

    def __str__(self) -> str:
        parts = [
            f"{name}={_quoted(value)}"
            for name, value in (
                ("username", self.username),
                ("realm", self.realm),
                ("nonce", self.nonce),
                ("uri", self.uri),
                ("response", self.response),
            )
            if value is not None
        ]
        parts.append(f"algorithm={_token_or_quoted(self.algorithm)}")
        if self.cnonce is not None:
            parts.append(f"cnonce={_quoted(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quoted(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={_token_or_quoted(self.qop)}")
        if self.nc is not None:
            parts.append(f"nc={_token_or_quoted(self.nc)}")
        return "Digest " + ", ".join(parts)


def build_authorization(
    challenge: DigestChallenge,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int = 1,
) -> DigestCredentials:
    """Answer a challenge (client side, when we REGISTER to an upper platform).

    Uses ``qop=auth`` when offered (RFC 7616 §3.4), otherwise the RFC 2069
    form.  ``cnonce`` is the caller's random string (this module draws no
    randomness of its own); ``nc`` counts the requests made with this nonce.

    :raises DigestError: the challenge asks for an unsupported algorithm, or
        offers only qop values other than ``auth``.
    """
    if challenge.algorithm not in _ALGORITHMS:
        raise DigestError(f"unsupported digest algorithm {challenge.algorithm!r}")
    if not 0 < nc <= 0xFFFFFFFF:
        raise DigestError("nonce count out of range")
    qop: str | None = None
    if challenge.qop:
        if "auth" not in challenge.qop:
            raise DigestError(f"no supported qop in {challenge.qop!r}")
        qop = "auth"
    sess = _ALGORITHMS[challenge.algorithm][1]
    nc_text = f"{nc:08x}" if qop else None
    use_cnonce = cnonce if qop or sess else None
    return DigestCredentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=compute_response(
            challenge.algorithm,
            username,
            challenge.realm,
            password,
            method,
            uri,
            challenge.nonce,
            nc_text,
            use_cnonce,
            qop,
        ),
        algorithm=challenge.algorithm,
        qop=qop,
        nc=nc_text,
        cnonce=use_cnonce,
        opaque=challenge.opaque,
    )


# -- server side --------------------------------------------------------------


class NonceStatus(enum.Enum):
    """What :meth:`NonceIssuer.check` found out about a nonce."""

    VALID = "valid"
    STALE = "stale"  # authentic but expired (or issued too far in the future)
    INVALID = "invalid"  # forged, garbled, or made with another secret


class AuthResult(enum.Enum):
    """Outcome of :meth:`DigestVerifier.verify`.

    The registrar maps ``OK`` to 200, ``STALE`` to 401 with ``stale=true``
    (RFC 2617 §3.2.1: the password was right, only the nonce is old),
    ``MISSING_FIELD`` to 400 and everything else to 401 or 403.
    """

    OK = "ok"
    STALE = "stale"
    BAD_RESPONSE = "bad_response"
    WRONG_USER = "wrong_user"
    WRONG_REALM = "wrong_realm"
    BAD_NONCE = "bad_nonce"  # not ours, or the opaque value does not match
    REPLAY = "replay"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"  # or an unsupported qop
    MISSING_FIELD = "missing_field"  # or a malformed nc


_AUTH = ("auth",)
_NONCE_BYTES = 20  # 4 time + 8 random + 8 MAC
_MAC_BYTES = 8
_MIN_SECRET = 16


class NonceIssuer:
    """Stateless, authenticated nonces: ``hex(seconds | random | MAC)``.

    :param secret: at least 16 bytes, shared by every process that must accept
        the nonces.
    :param lifetime: seconds a nonce stays ``VALID``.
    :param max_skew: seconds a nonce may appear to come from the future
        (clock differences between processes) before it is ``STALE``.
    :param entropy: source of the random part; :func:`os.urandom` by default,
        replaceable so that tests are deterministic.

    ``now`` must be wall-clock seconds (``time.time()``) when several
    processes share the secret, since the issue time travels inside the nonce.
    """

    def __init__(
        self,
        secret: bytes,
        lifetime: float,
        *,
        max_skew: float = 5.0,
        entropy: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(secret) < _MIN_SECRET:
            raise ValueError(f"nonce secret must be at least {_MIN_SECRET} bytes")
        if lifetime <= 0:
            raise ValueError("nonce lifetime must be positive")
        # Keyed BLAKE2s (RFC 7693) is the MAC: a PRF built for keyed use, about
        # seven times cheaper here than HMAC-SHA256 through OpenSSL.  The keyed
        # state is made once and copied per nonce.  The person strings keep the
        # nonce MAC and the opaque value apart.
        key = secret if len(secret) <= 32 else hashlib.blake2s(secret).digest()
        self._mac = hashlib.blake2s(key=key, digest_size=_MAC_BYTES, person=b"gbnonce")
        self._opaque = hashlib.blake2s(key=key, digest_size=8, person=b"gbopaque").hexdigest()
        self.lifetime = lifetime
        self.max_skew = max_skew
        self._entropy = entropy

    @property
    def opaque(self) -> str:
        """A stable opaque value, the same in every process sharing the secret."""
        return self._opaque

    def issue(self, now: float) -> str:
        """Make a fresh nonce stamped with ``now``.

        :raises ValueError: ``now`` outside 0..2**32 (it is sent as 32 bits).
        """
        seconds = int(now)
        if not 0 <= seconds <= 0xFFFFFFFF:
            raise ValueError("nonce time out of range")
        body = seconds.to_bytes(4, "big") + self._entropy(8)
        mac = self._mac.copy()
        mac.update(body)
        return (body + mac.digest()).hex()

    def inspect(self, nonce: str, now: float) -> tuple[NonceStatus, int]:
        """Like :meth:`check`, also returning the issue time (0 when invalid)."""
        if len(nonce) != 2 * _NONCE_BYTES:
            return NonceStatus.INVALID, 0
        try:
            raw = bytes.fromhex(nonce)
        except ValueError:
            return NonceStatus.INVALID, 0
        # Only the canonical spelling is accepted: no case or whitespace
        # variants of one nonce that replay tracking would see as different.
        if len(raw) != _NONCE_BYTES or raw.hex() != nonce:
            return NonceStatus.INVALID, 0
        mac = self._mac.copy()
        mac.update(raw[:-_MAC_BYTES])
        if not hmac.compare_digest(mac.digest(), raw[-_MAC_BYTES:]):
            return NonceStatus.INVALID, 0
        issued = int.from_bytes(raw[:4], "big")
        age = now - issued
        if age > self.lifetime or age < -self.max_skew:
            return NonceStatus.STALE, issued
        return NonceStatus.VALID, issued

    def check(self, nonce: str, now: float) -> NonceStatus:
        """Classify a nonce a client echoed back: VALID, STALE or INVALID."""
        return self.inspect(nonce, now)[0]


class DigestVerifier:
    """Registrar-side digest check with nonce issuing and replay tracking.

    :param issuer: the :class:`NonceIssuer` whose nonces are accepted.
    :param realm: our realm, the 10-digit SIP domain in GB28181 (notes §1.2).
    :param opaque: ``True`` (default) sends a value derived from the secret and
        requires it back; ``False`` sends none; a string is sent as given.
    :param algorithms: algorithms accepted in responses (default: all of
        :data:`SUPPORTED_ALGORITHMS`).
    :param require_qop: refuse RFC 2069 style responses (no qop, no nc), which
        cannot be protected against replay while the nonce is fresh.
    :param max_tracked_nonces: bound on the nc replay record.
    """

    def __init__(
        self,
        issuer: NonceIssuer,
        realm: str,
        *,
        opaque: bool | str = True,
        algorithms: Iterable[str] = SUPPORTED_ALGORITHMS,
        require_qop: bool = False,
        max_tracked_nonces: int = 65536,
    ) -> None:
        if max_tracked_nonces < 1:
            raise ValueError("max_tracked_nonces must be positive")
        self.issuer = issuer
        self.realm = realm
        if opaque is True:
            self.opaque: str | None = issuer.opaque
        elif opaque is False:
            self.opaque = None
        else:
            self.opaque = opaque
        self.algorithms = frozenset(_canonical_algorithm(a) for a in algorithms)
        unknown = self.algorithms - SUPPORTED_ALGORITHMS
        if unknown:
            raise ValueError(f"unsupported digest algorithms {sorted(unknown)}")
        self.require_qop = require_qop
        self.max_tracked_nonces = max_tracked_nonces
        # nonce -> (highest nc accepted, issue time); insertion order ~ age.
        self._seen: OrderedDict[str, tuple[int, int]] = OrderedDict()
        # Nonces issued at or before this time may have lost their record.
        self._forgotten_before = -1
        # (algorithm, user, realm, password) -> HA1 and (algorithm, method, uri) -> HA2.
        self._memo: dict[tuple[str, ...], str] = {}
        self._max_memo = 2 * max_tracked_nonces + _MAX_CACHED

    @property
    def tracked_nonces(self) -> int:
        """How many nonces the replay record currently holds."""
        return len(self._seen)

    def challenge(
        self, now: float, stale: bool = False, algorithm: str = "MD5", qop: bool = True
    ) -> DigestChallenge:
        """Build the challenge for a 401 (``WWW-Authenticate``).

        :param stale: set after :attr:`AuthResult.STALE`, so the device retries
            with the new nonce without treating it as a wrong password.
        :param qop: offer ``qop="auth"`` (WVP does; devices cope either way).
        :raises ValueError: ``algorithm`` is not accepted by this verifier.
        """
        name = _canonical_algorithm(algorithm)
        if name not in self.algorithms:
            raise ValueError(f"algorithm {algorithm!r} not enabled")
        return DigestChallenge(
            self.realm, self.issuer.issue(now), name, _AUTH if qop else (), self.opaque, stale
        )

    def verify(
        self,
        credentials: DigestCredentials,
        method: str,
        password: str,
        now: float,
        *,
        expected_user: str,
        expected_realm: str | None = None,
    ) -> AuthResult:
        """Check a device's ``Authorization`` against its password.

        The digest is recomputed over the ``uri`` *the client sent*, not the
        Request-URI: devices differ in which form they hash (notes §3.2).  On
        ``OK`` with qop the nonce count is recorded, so the same request is
        refused as ``REPLAY`` afterwards.

        :param method: the request method (``REGISTER``).
        :param password: the device's password, looked up by the caller.
        :param expected_user: the device ID the request claims (From user).
        :param expected_realm: defaults to this verifier's realm.
        """
        c = credentials
        username, realm, nonce, uri, response = c.username, c.realm, c.nonce, c.uri, c.response
        if username is None or realm is None or nonce is None or uri is None or response is None:
            return AuthResult.MISSING_FIELD
        algorithm = c.algorithm
        if algorithm not in self.algorithms:
            return AuthResult.UNSUPPORTED_ALGORITHM
        qop = c.qop
        if qop is not None and qop.lower() != "auth":
            return AuthResult.UNSUPPORTED_ALGORITHM
        if username != expected_user:
            return AuthResult.WRONG_USER
        if realm != (self.realm if expected_realm is None else expected_realm):
            return AuthResult.WRONG_REALM
        if self.opaque is not None and c.opaque != self.opaque:
            return AuthResult.MISSING_FIELD if c.opaque is None else AuthResult.BAD_NONCE
        status, issued = self.issuer.inspect(nonce, now)
        if status is NonceStatus.INVALID:
            return AuthResult.BAD_NONCE
        fn, sess = _ALGORITHMS[algorithm]
        nc_value = 0
        cnonce = c.cnonce
        if qop is None:
            if self.require_qop:
                return AuthResult.MISSING_FIELD
        else:
            nc = c.nc
            if nc is None or cnonce is None or not 0 < len(nc) <= 8:
                return AuthResult.MISSING_FIELD
            if not _HEX_CHARS.issuperset(nc):
                return AuthResult.MISSING_FIELD
            nc_value = int(nc, 16)
        if sess and cnonce is None:
            return AuthResult.MISSING_FIELD
        # HA1 (without -sess) and HA2 are the same for every REGISTER of a
        # device: memoised, so a verify hashes once instead of three times.
        memo = self._memo
        ha1 = None if sess else memo.get((algorithm, username, realm, password))
        if ha1 is None:
            ha1 = _ha1(fn, sess, username, realm, password, nonce, cnonce or "")
            if not sess:
                if len(memo) >= self._max_memo:
                    memo.clear()
                memo[(algorithm, username, realm, password)] = ha1
        ha2 = memo.get((algorithm, method, uri))
        if ha2 is None:
            if len(memo) >= self._max_memo:
                memo.clear()
            ha2 = memo[(algorithm, method, uri)] = _hex(fn, f"{method}:{uri}")
        if qop is None:
            expected = _hex(fn, f"{ha1}:{nonce}:{ha2}")
        else:
            expected = _hex(fn, f"{ha1}:{nonce}:{c.nc}:{cnonce}:{qop}:{ha2}")
        # compare_digest refuses non-ASCII str; such a response is wrong anyway.
        if not response.isascii() or not hmac.compare_digest(expected, response.lower()):
            return AuthResult.BAD_RESPONSE
        if status is NonceStatus.STALE:
            return AuthResult.STALE
        if qop is None:
            return AuthResult.OK
        return self._record_nc(nonce, nc_value, issued, now)

    def _record_nc(self, nonce: str, nc: int, issued: int, now: float) -> AuthResult:
        seen = self._seen
        entry = seen.get(nonce)
        if entry is not None:
            if nc <= entry[0]:
                return AuthResult.REPLAY
            seen[nonce] = (nc, issued)
            return AuthResult.OK
        if issued <= self._forgotten_before:
            # Its record may have been evicted under pressure: make the device
            # fetch a new nonce rather than risk accepting a replay.
            return AuthResult.STALE
        if nc == 0:
            return AuthResult.REPLAY
        horizon = now - self.issuer.lifetime
        while seen:
            oldest_issued = next(iter(seen.values()))[1]
            if oldest_issued >= horizon and len(seen) < self.max_tracked_nonces:
                break
            seen.popitem(last=False)
            if oldest_issued >= horizon:  # evicted while still valid
                self._forgotten_before = max(self._forgotten_before, oldest_issued)
        seen[nonce] = (nc, issued)
        return AuthResult.OK
