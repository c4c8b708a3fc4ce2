"""Registering to upper platforms (cascade, gb28181-notes §9): we are the lower platform.

Per configured ``[[upstream]]`` one :class:`Uplink`, a sans-IO client-registration state
machine: it is fed ``now``, the final responses to what it sent and "no answer", and it returns
the requests to send. The asyncio side (:class:`~gb28181.uplink_service.UplinkService`) only
moves those requests through :meth:`Signalling.send_request` and feeds the answers back, so
every timing rule is tested with injected time (``tests/test_uplink.py``).

The rules (notes §3, §9):

* ``REGISTER sip:<upper id>@<host:port>``, From/To ``<sip:<our id>@<upper domain>>``, Contact
  ``<sip:<our id>@<our host:port>>``, ``Expires``. A 401/407 is answered once per challenge
  with an MD5 digest (username = our ID; ``qop=auth`` when offered; random cnonce); a second
  challenge to an already-answered nonce (not ``stale``) means the password is wrong.
* Registered: the registration is refreshed at 80 % of the granted lifetime (at least 5 s
  before it runs out), and a ``Keepalive`` MESSAGE goes every ``keepalive_interval``. A
  keepalive still unanswered when the next one is due counts as missed (the transaction
  layer's own timeout, 32 s, would be too slow a judge); ``keepalive_misses`` misses in a row,
  or a 404/401/403 to a keepalive (the upper platform forgot us), end the registration.
* Any failure (an error status, no answer within ``answer_timeout``, a lost registration)
  leads to a new registration (new Call-ID) after an exponential back-off
  ``retry_min * 2**(n-1)`` capped at ``retry_max``, with ±20 % jitter so that the lower
  platforms of a whole city do not all come back in the same second. ``423`` is retried at
  once with the ``Min-Expires`` asked for.
* Stopping sends ``Expires: 0`` (unregister) when registered.

:class:`~gb28181.uplink_service.UplinkService` runs the machines (asyncio) and recognises the
upper platforms; :class:`~gb28181.upper_requests.UpperRequests` answers what they ask.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from . import manscdp
from .config import UpstreamConfig
from .sip import (
    DigestChallenge,
    DigestError,
    Headers,
    SipParseError,
    SipRequest,
    SipResponse,
    build_authorization,
    new_branch,
    new_call_id,
    new_tag,
)

__all__ = [
    "KEEPALIVE",
    "MESSAGE",
    "REGISTER",
    "UNREGISTER",
    "Uplink",
    "UplinkState",
    "UplinkStats",
]

log = logging.getLogger(__name__)

#: Kinds of requests an uplink sends (what :meth:`Uplink.kind_of` answers).
REGISTER = "register"
UNREGISTER = "unregister"
KEEPALIVE = "keepalive"
MESSAGE = "message"

#: Share of the granted lifetime after which the registration is refreshed.
REFRESH_AT = 0.8
#: A refresh goes at least this many seconds before the registration runs out.
REFRESH_MARGIN = 5.0
#: Jitter of the back-off delays (± this share).
JITTER = 0.2
#: Seconds without a final answer to a REGISTER before it counts as failed.
ANSWER_TIMEOUT = 10.0
#: Keepalive answers that mean "we do not know you (any more)": register again at once.
_FORGOTTEN = frozenset({401, 403, 404, 407})
#: Bound on the MANSCDP SN counter (GB/T 28181 SN is a 32-bit-ish decimal).
_SN_MODULO = 2**31 - 1


class UplinkState(enum.Enum):
    """Where the registration to one upper platform stands."""

    IDLE = "idle"  # not started
    REGISTERING = "registering"  # a REGISTER (first, or answering a challenge) in flight
    REGISTERED = "registered"
    BACKOFF = "backoff"  # waiting to register again after a failure
    STOPPED = "stopped"


@dataclass(slots=True)
class _Sent:
    kind: str
    at: float


@dataclass(slots=True)
class UplinkStats:
    """Counters of one uplink (for logs, the API and tests)."""

    registrations: int = 0
    failures: int = 0
    keepalives_sent: int = 0
    keepalives_missed: int = 0
    last_error: str = ""
    history: list[tuple[float, str]] = field(default_factory=list)


class Uplink:
    """The registration to one upper platform, sans-IO.

    :param cfg: the ``[[upstream]]`` entry.
    :param local_id: our ID toward it (``cfg.local_id`` or our ``sip.id``).
    :param local_host: our address as the upper platform reaches it (Via, Contact).
    :param local_port: our SIP port.
    :param rng: randomness for cnonces, tags and jitter (seeded in tests).
    """

    def __init__(
        self,
        cfg: UpstreamConfig,
        *,
        local_id: str,
        local_host: str,
        local_port: int,
        user_agent: str = "gb28181-platform",
        answer_timeout: float = ANSWER_TIMEOUT,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.local_id = local_id
        self.local_host = local_host
        self.local_port = local_port
        self.user_agent = user_agent
        self.answer_timeout = answer_timeout
        self.rng = rng or random.Random()
        self.domain = cfg.domain or cfg.id[:10]
        self._uri = f"sip:{cfg.id}@{cfg.host}:{cfg.port}"
        self._auth_header = "Authorization"
        self.state = UplinkState.IDLE
        self.stats = UplinkStats()
        #: When the current registration runs out (0 when not registered).
        self.registered_until = 0.0
        self._expires = cfg.expires
        self._next_register = 0.0  # when to send the next REGISTER (new or refresh)
        self._next_keepalive = 0.0
        self._failures = 0
        self._misses = 0
        self._call_id = ""
        self._from_tag = ""
        self._cseq = 0
        self._challenge: DigestChallenge | None = None
        self._challenge_answered = False
        self._nc = 0
        self._register_sent: tuple[str, int] | None = None  # (call-id, cseq) in flight
        self._register_at = 0.0
        self._keepalive_pending: str | None = None  # call-id of the keepalive in flight
        self._inflight: dict[tuple[str, int], _Sent] = {}
        self._msg_cseq = itertools.count(1)
        self._sn = itertools.count(self.rng.randrange(1, 100000))
        #: Told (uplink, registered?) when the registration is won or lost.
        self.on_change: list[Callable[[Uplink, bool], None]] = []

    # -- what the driver calls ------------------------------------------------------------

    @property
    def upper_id(self) -> str:
        return self.cfg.id

    @property
    def registered(self) -> bool:
        return self.state is UplinkState.REGISTERED

    @property
    def transport(self) -> str:
        return "TCP" if self.cfg.transport.lower() == "tcp" else "UDP"

    @property
    def contact(self) -> str:
        """Our Contact toward the upper platform (``transport=tcp`` over TCP)."""
        param = ";transport=tcp" if self.transport == "TCP" else ""
        return f"<sip:{self.local_id}@{self.local_host}:{self.local_port}{param}>"

    def poll(self, now: float) -> list[SipRequest]:
        """The requests due at ``now`` (register, refresh, keepalive, retry)."""
        out: list[SipRequest] = []
        st = self.state
        if st is UplinkState.STOPPED:
            return out
        if st is UplinkState.IDLE:
            out.append(self._new_registration(now))
            return out
        if st is UplinkState.REGISTERING:
            if now - self._register_at >= self.answer_timeout and self._register_sent:
                self._inflight.pop(self._register_sent, None)
                self._register_sent = None
                self._fail(now, "no answer to REGISTER")
            return out
        if st is UplinkState.BACKOFF:
            if now >= self._next_register:
                out.append(self._new_registration(now))
            return out
        # REGISTERED
        if now >= self.registered_until:
            self._lose(now, "registration ran out")
            return out
        if self._register_sent is None and now >= self._next_register:
            out.append(self._refresh(now))
        if now >= self._next_keepalive:
            if self._keepalive_pending is not None:
                self._missed_keepalive(now, "unanswered")
                if self.state is not UplinkState.REGISTERED:
                    return out
            out.append(self._keepalive(now))
        if (
            self._register_sent is not None
            and now - self._register_at >= self.answer_timeout
            and self.state is UplinkState.REGISTERED
        ):
            # A refresh nobody answers: keep serving until the registration runs out, but
            # try again (a new transaction) rather than wait for it.
            self._inflight.pop(self._register_sent, None)
            self._register_sent = None
            self._next_register = now + min(self._backoff(), self.cfg.retry_min)
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has something to do (None: nothing until an answer)."""
        st = self.state
        if st is UplinkState.STOPPED:
            return None
        if st is UplinkState.IDLE:
            return 0.0
        if st is UplinkState.REGISTERING:
            return self._register_at + self.answer_timeout
        if st is UplinkState.BACKOFF:
            return self._next_register
        times = [self.registered_until, self._next_keepalive]
        if self._register_sent is None:
            times.append(self._next_register)
        else:
            times.append(self._register_at + self.answer_timeout)
        return min(times)

    def kind_of(self, request: SipRequest) -> str | None:
        """What ``request`` was (REGISTER, KEEPALIVE...), if it is still awaited."""
        sent = self._inflight.get((request.call_id, request.cseq[0]))
        return sent.kind if sent is not None else None

    def on_response(
        self, request: SipRequest, response: SipResponse, now: float
    ) -> list[SipRequest]:
        """A final response to ``request``; returns what to send next (a digest answer)."""
        sent = self._inflight.pop((request.call_id, request.cseq[0]), None)
        if sent is None:
            return []  # superseded (a timed-out REGISTER, an old keepalive)
        status = response.status
        if sent.kind == KEEPALIVE:
            self._keepalive_answered(request, status, now)
            return []
        if sent.kind == MESSAGE:
            if status >= 300:
                log.info("upper platform %s answered %d to our MESSAGE", self.upper_id, status)
            return []
        if sent.kind == UNREGISTER:
            if status in (401, 407) and self._take_challenge(response, request):
                return [self._register_request(now, 0, UNREGISTER)]
            self.state = UplinkState.STOPPED
            return []
        # REGISTER (first, refresh, or digest answer)
        if (request.call_id, request.cseq[0]) == self._register_sent:
            self._register_sent = None
        if status in (401, 407):
            if self._take_challenge(response, request):
                self.state = (
                    self.state if self.state is UplinkState.REGISTERED else UplinkState.REGISTERING
                )
                return [self._register_request(now, self._expires, REGISTER)]
            self._failed(now, f"{status} to our credentials: wrong password?")
            return []
        if status == 423:
            min_expires = _int_header(response, "Min-Expires")
            if min_expires and min_expires > self._expires and self._failures < 3:
                self._expires = min_expires
                self._failures += 1
                return [self._register_request(now, self._expires, REGISTER)]
        if 200 <= status < 300:
            self._registered(request, response, now)
            return []
        self._failed(now, f"REGISTER answered {status} {response.reason}")
        return []

    def on_no_answer(self, request: SipRequest, now: float) -> list[SipRequest]:
        """``request`` got no final response (transaction timeout, connection failure)."""
        sent = self._inflight.pop((request.call_id, request.cseq[0]), None)
        if sent is None:
            return []
        if sent.kind == KEEPALIVE:
            if self._keepalive_pending == request.call_id:
                self._keepalive_pending = None
                self._missed_keepalive(now, "timed out")
        elif sent.kind == UNREGISTER:
            self.state = UplinkState.STOPPED
        elif sent.kind == REGISTER:
            if (request.call_id, request.cseq[0]) == self._register_sent:
                self._register_sent = None
            if self.state is UplinkState.REGISTERING:
                self._fail(now, "no answer to REGISTER")
            elif self.state is UplinkState.REGISTERED:
                self._next_register = now + self.cfg.retry_min
        return []

    def transport_failed(self, now: float, reason: str) -> None:
        """The connection to the upper platform is gone: register again (after back-off)."""
        self._inflight.clear()
        self._register_sent = None
        self._keepalive_pending = None
        if self.state in (UplinkState.REGISTERED, UplinkState.REGISTERING):
            self._failed(now, reason)

    def stop(self, now: float) -> list[SipRequest]:
        """Unregister (``Expires: 0``) when registered; nothing more is sent afterwards."""
        was = self.state
        self._inflight.clear()
        self._register_sent = None
        self._keepalive_pending = None
        if was is not UplinkState.REGISTERED:
            self.state = UplinkState.STOPPED
            return []
        self.state = UplinkState.STOPPED
        self.registered_until = 0.0
        self._notify(False)
        return [self._register_request(now, 0, UNREGISTER)]

    def message(self, body: bytes, *, content_type: str = "Application/MANSCDP+xml") -> SipRequest:
        """An out-of-dialog MESSAGE to the upper platform (responses to its queries)."""
        return self.request("MESSAGE", body, content_type=content_type)

    def request(
        self,
        method: str,
        body: bytes = b"",
        *,
        content_type: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> SipRequest:
        """An out-of-dialog request to the upper platform, from our ID toward it."""
        extra = list(headers or [])
        if content_type is not None:
            extra.append(("Content-Type", content_type))
        request = self._base_request(
            method, new_call_id(self.local_host), new_tag(), next(self._msg_cseq), extra, body
        )
        self._inflight[(request.call_id, request.cseq[0])] = _Sent(MESSAGE, 0.0)
        return request

    def next_sn(self) -> int:
        """A fresh MANSCDP SN for what we send up."""
        return next(self._sn) % _SN_MODULO or 1

    # -- internals -------------------------------------------------------------------------

    def _notify(self, registered: bool) -> None:
        for listener in self.on_change:
            try:
                listener(self, registered)
            except Exception:
                log.exception("uplink listener failed upper=%s", self.upper_id)

    def _record(self, now: float, what: str) -> None:
        hist = self.stats.history
        hist.append((now, what))
        if len(hist) > 50:
            del hist[:-50]

    def _backoff(self) -> float:
        n = max(self._failures, 1)
        delay = min(self.cfg.retry_max, self.cfg.retry_min * 2 ** min(n - 1, 30))
        return float(delay * (1.0 + self.rng.uniform(-JITTER, JITTER)))

    def _fail(self, now: float, reason: str) -> None:
        self._failures += 1
        self.stats.failures += 1
        self.stats.last_error = reason
        self.state = UplinkState.BACKOFF
        self._register_sent = None
        self._keepalive_pending = None
        delay = self._backoff()
        self._next_register = now + delay
        self._record(now, f"failed: {reason}; retry in {delay:.1f} s")
        log.warning(
            "registration to upper platform %s failed: %s; retry in %.1f s",
            self.upper_id,
            reason,
            delay,
        )

    def _failed(self, now: float, reason: str) -> None:
        if self.registered:
            self._lose(now, reason)
        else:
            self._fail(now, reason)

    def _lose(self, now: float, reason: str) -> None:
        """A registration we had is gone: back off (first step small) and register again."""
        self.registered_until = 0.0
        self._fail(now, reason)
        self._notify(False)

    def _new_registration(self, now: float) -> SipRequest:
        self._call_id = new_call_id(self.local_host)
        self._from_tag = new_tag()
        self._cseq = 0
        self._challenge = None
        self._challenge_answered = False
        self._expires = self.cfg.expires
        if self.state is not UplinkState.REGISTERED:
            self.state = UplinkState.REGISTERING
        return self._register_request(now, self._expires, REGISTER)

    def _refresh(self, now: float) -> SipRequest:
        # Same Call-ID, next CSeq; credentials for the last nonce (nc+1) go along, so most
        # upper platforms accept it without a new challenge.
        self._challenge_answered = False
        return self._register_request(now, self._expires, REGISTER)

    def _register_request(self, now: float, expires: int, kind: str) -> SipRequest:
        self._cseq += 1
        extra: list[tuple[str, str]] = [
            ("Contact", self.contact),
            ("Expires", str(expires)),
        ]
        if self._challenge is not None:
            self._nc += 1
            creds = build_authorization(
                self._challenge,
                "REGISTER",
                self._uri,
                self.local_id,
                self.cfg.password,
                f"{self.rng.getrandbits(64):016x}",
                self._nc,
            )
            extra.append((self._auth_header, str(creds)))
        request = self._base_request("REGISTER", self._call_id, self._from_tag, self._cseq, extra)
        key = (request.call_id, request.cseq[0])
        self._inflight[key] = _Sent(kind, now)
        if kind == REGISTER:
            self._register_sent = key
            self._register_at = now
        return request

    def _base_request(
        self,
        method: str,
        call_id: str,
        from_tag: str,
        cseq: int,
        extra: list[tuple[str, str]],
        body: bytes = b"",
    ) -> SipRequest:
        cfg = self.cfg
        lines = [
            (
                "Via",
                f"SIP/2.0/{self.transport} {self.local_host}:{self.local_port};rport;"
                f"branch={new_branch()}",
            ),
            ("From", f"<sip:{self.local_id}@{self.domain}>;tag={from_tag}"),
            (
                "To",
                f"<sip:{self.local_id if method == 'REGISTER' else cfg.id}@{self.domain}>",
            ),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Max-Forwards", "70"),
            ("User-Agent", self.user_agent),
            *extra,
        ]
        return SipRequest(method, self._uri, Headers(lines), body)

    def _take_challenge(self, response: SipResponse, request: SipRequest) -> bool:
        """Adopt the challenge of a 401/407; False when it cannot (or must not) be answered."""
        name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        value = response.headers.get(name)
        if value is None:
            return False
        try:
            challenge = DigestChallenge.parse(value)
        except DigestError as exc:
            log.warning("upper platform %s sent a bad challenge: %s", self.upper_id, exc)
            return False
        answered_this = request.headers.get("Authorization") is not None or (
            request.headers.get("Proxy-Authorization") is not None
        )
        same_nonce = self._challenge is not None and self._challenge.nonce == challenge.nonce
        if answered_this and same_nonce and not challenge.stale:
            return False  # our answer to this very nonce was refused: wrong password
        if answered_this and self._challenge_answered and not challenge.stale and not same_nonce:
            # A fresh nonce right after our answer to a fresh nonce: the credentials are
            # wrong (the upper platform rotates nonces on failure).
            return False
        self._challenge = challenge
        self._auth_header = "Authorization" if response.status == 401 else "Proxy-Authorization"
        self._challenge_answered = True
        self._nc = 0
        return True

    def _registered(self, request: SipRequest, response: SipResponse, now: float) -> None:
        granted = _granted_expires(response, request) or self._expires
        if granted <= 0:
            self._fail(now, "REGISTER answered with a lifetime of 0")
            return
        was = self.state is UplinkState.REGISTERED
        self.state = UplinkState.REGISTERED
        self.registered_until = now + granted
        self._next_register = now + max(
            min(granted * REFRESH_AT, granted - REFRESH_MARGIN), granted / 2
        )
        self._failures = 0
        self._challenge_answered = False
        if not was:
            self._misses = 0
            self._keepalive_pending = None
            self._next_keepalive = now + self.cfg.keepalive_interval
            self.stats.registrations += 1
            self._record(now, f"registered for {granted} s")
            log.info(
                "registered to upper platform %s (%s:%d) as %s for %d s",
                self.upper_id,
                self.cfg.host,
                self.cfg.port,
                self.local_id,
                granted,
            )
            self._notify(True)

    def _keepalive(self, now: float) -> SipRequest:
        body = manscdp.encode(
            manscdp.Keepalive(device_id=self.local_id, sn=self.next_sn(), status="OK")
        )
        request = self._base_request(
            "MESSAGE",
            new_call_id(self.local_host),
            new_tag(),
            next(self._msg_cseq),
            [("Content-Type", "Application/MANSCDP+xml")],
            body,
        )
        self._inflight[(request.call_id, request.cseq[0])] = _Sent(KEEPALIVE, now)
        self._keepalive_pending = request.call_id
        self._next_keepalive = now + self.cfg.keepalive_interval
        self.stats.keepalives_sent += 1
        return request

    def _keepalive_answered(self, request: SipRequest, status: int, now: float) -> None:
        if self._keepalive_pending == request.call_id:
            self._keepalive_pending = None
        if self.state is not UplinkState.REGISTERED:
            return
        if 200 <= status < 300:
            self._misses = 0
        elif status in _FORGOTTEN:
            self._lose(now, f"keepalive answered {status}: the upper platform forgot us")
            self._next_register = now  # at once: it is up, it only lost our registration
        else:
            self._missed_keepalive(now, f"answered {status}")

    def _missed_keepalive(self, now: float, why: str) -> None:
        self._misses += 1
        self.stats.keepalives_missed += 1
        self._keepalive_pending = None
        log.info(
            "keepalive to upper platform %s %s (%d/%d)",
            self.upper_id,
            why,
            self._misses,
            self.cfg.keepalive_misses,
        )
        if self._misses >= self.cfg.keepalive_misses:
            self._lose(now, f"{self._misses} keepalives unanswered")


def _int_header(message: SipResponse, name: str) -> int | None:
    value = message.headers.get(name)
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() and len(value) <= 10 else None


def _granted_expires(response: SipResponse, request: SipRequest) -> int | None:
    """The lifetime the registrar granted: our Contact's ``expires`` parameter, else the
    response's Expires (RFC 3261 §10.2.4)."""
    ours = f"sip:{request.from_.uri.user}@"
    with contextlib.suppress(SipParseError):
        for contact in response.contacts:
            if str(contact.uri).startswith(ours):
                value = contact.params.get("expires")
                if value is not None and value.isdigit():
                    return int(value)
    return _int_header(response, "Expires")
