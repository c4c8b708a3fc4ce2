"""The registrar: REGISTER with digest auth, keepalive liveness, lockout.

Sans-IO like the SIP core below it: requests and the current time come in,
responses and state changes go out. Hot state (who is registered, from
where, when they last sent a keepalive) lives in memory; every change is
handed to a ``sink`` (the store's write-behind batcher in production), so a
keepalive storm costs one dictionary update per message, not a database
write.

GB/T 28181-2016 §9.1 / -2022 §9.1: a device REGISTERs, is challenged (401),
REGISTERs again with digest credentials and is answered 200 OK with
``Expires`` and a ``Date`` header in the GB form (local time, ``T``
separator, milliseconds) that devices use to set their clocks. ``Expires: 0``
unregisters. A device (or lower platform, type code 200) is online while its
registration is unexpired and its keepalives (§9.6) keep arriving: it goes
offline after ``keepalive_misses`` missed intervals or when the registration
expires, whichever comes first.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from .sip import (
    AuthResult,
    DigestCredentials,
    DigestError,
    DigestVerifier,
    SipParseError,
    SipRequest,
    SipResponse,
    make_response,
    new_tag,
    stable_tag,
)
from .store import DeviceRecord, StatusEvent

__all__ = [
    "DeviceState",
    "Registrar",
    "RegistrarConfig",
    "RegistrarMetrics",
    "RegistrationSink",
    "Source",
    "device_kind",
    "format_gb_date",
]

log = logging.getLogger(__name__)

#: Recent keepalive gaps kept per device for the diagnosis view (memory: ~8 floats).
KEEPALIVE_GAPS_KEPT = 8

#: Seconds between database writes of an unchanged device's keepalive time.
KEEPALIVE_PERSIST_INTERVAL = 600.0

#: Type code (digits 11-13) of a central signalling server, i.e. a platform.
PLATFORM_TYPE_CODE = "200"


def device_kind(device_id: str) -> str:
    """``"platform"`` for a type-200 ID (a lower platform), else ``"device"``."""
    return (
        "platform" if len(device_id) == 20 and device_id[10:13] == PLATFORM_TYPE_CODE else "device"
    )


#: (whole second, its formatted local time up to the seconds) of the last Date made:
#: a registration storm asks for the same second thousands of times.
_date_second: tuple[int, str] = (-1, "")


def format_gb_date(now: float) -> str:
    """The GB/T 28181 ``Date`` value: local time, ``T`` separator, milliseconds."""
    global _date_second
    second = int(now)
    cached, text = _date_second
    if cached != second:
        t = time.localtime(now)
        text = (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        )
        _date_second = (second, text)
    return f"{text}.{int((now - second) * 1000):03d}"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a request came from: the observed address, not what the peer claims."""

    transport: str
    host: str
    port: int
    conn_id: object | None = None


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    """The registrar's settings (a subset of ``[sip]``)."""

    server_id: str
    domain: str
    default_password: str = ""
    keepalive_interval: float = 60.0
    keepalive_misses: int = 3
    strict_ids: bool = True
    min_expires: int = 60
    max_expires: int = 86400
    lockout_failures: int = 5
    lockout_seconds: float = 300.0
    date_header: bool = True
    user_agent: str = "gb28181-platform"


class RegistrationSink(Protocol):
    """Receives every state change for persistence (``WriteBehind`` fits)."""

    def mark_dirty(self, record: DeviceRecord) -> None: ...

    def add_event(self, event: StatusEvent) -> None: ...


class RegistrarMetrics(Protocol):
    """What the registrar reports; :class:`gb28181.metrics.Metrics` implements it."""

    def auth_failure(self, reason: str) -> None: ...

    def status_change(self, online: bool, reason: str) -> None: ...


@dataclass(slots=True)
class DeviceState:
    """A device's record plus what only matters while this process runs."""

    record: DeviceRecord
    #: Stream connection the device registered over (TCP/TLS), for requests to it.
    conn_id: object | None = None
    #: Absolute time the registration expires (0 = not registered).
    registered_until: float = 0.0
    failures: int = 0
    locked_until: float = 0.0
    #: Gaps between keepalives seen recently (diagnosis view).
    keepalive_gaps: list[float] = field(default_factory=list)
    #: When this device's record was last handed to the sink.
    persisted_at: float = 0.0

    @property
    def registered(self) -> bool:
        return self.registered_until > 0.0

    def offline_deadline(self, interval: float, misses: int) -> float:
        """When the device goes offline unless something arrives first."""
        rec = self.record
        heard = rec.last_keepalive or rec.registered_at or 0.0
        if rec.registered_at is not None and rec.registered_at > heard:
            heard = rec.registered_at
        return min(self.registered_until, heard + interval * misses)


class _NullSink:
    def mark_dirty(self, record: DeviceRecord) -> None:
        pass

    def add_event(self, event: StatusEvent) -> None:
        pass


class _NullMetrics:
    def auth_failure(self, reason: str) -> None:
        pass

    def status_change(self, online: bool, reason: str) -> None:
        pass


_FAILURE_REASONS = {
    AuthResult.BAD_RESPONSE: "bad_response",
    AuthResult.WRONG_USER: "wrong_user",
    AuthResult.WRONG_REALM: "wrong_realm",
    AuthResult.BAD_NONCE: "bad_nonce",
    AuthResult.REPLAY: "replay",
    AuthResult.UNSUPPORTED_ALGORITHM: "unsupported_algorithm",
    AuthResult.MISSING_FIELD: "missing_field",
    AuthResult.STALE: "stale",
}


class Registrar:
    """Accepts registrations and keepalives; tracks who is online.

    :param config: registrar settings.
    :param verifier: digest checker (nonce issuing, replay tracking).
    :param sink: receives changed records and status events for persistence.
    :param metrics: receives auth failures and status changes.
    """

    def __init__(
        self,
        config: RegistrarConfig,
        verifier: DigestVerifier,
        *,
        sink: RegistrationSink | None = None,
        metrics: RegistrarMetrics | None = None,
    ) -> None:
        self.config = config
        self.verifier = verifier
        self.sink: RegistrationSink = sink or _NullSink()
        self.metrics: RegistrarMetrics = metrics or _NullMetrics()
        self.devices: dict[str, DeviceState] = {}
        # Online devices with their current offline deadline; the sweep only
        # walks these.
        self._online: dict[str, float] = {}
        # Registered devices with the time their registration lapses.
        self._registrations: dict[str, float] = {}
        # Lower bounds of the smallest value in each of the two dicts above, so a sweep
        # finds "nothing due" without walking 50,000 entries every two seconds (keepalives
        # only ever push deadlines later; every write lowers the bound if it must).
        self._online_floor = math.inf
        self._registrations_floor = math.inf

    # -- queries ----------------------------------------------------------
    @property
    def registered_count(self) -> int:
        """Devices with an unexpired registration."""
        return len(self._registrations)

    @property
    def online_count(self) -> int:
        """Devices currently online."""
        return len(self._online)

    def get(self, device_id: str) -> DeviceState | None:
        """The state of one device, if known."""
        return self.devices.get(device_id)

    # -- restart ----------------------------------------------------------
    def restore(self, records: Iterable[DeviceRecord], now: float) -> int:
        """Reload persisted devices after a restart; return how many are online.

        Registrations that are still valid resume with their liveness clock
        restarted at ``now`` for keepalives (the devices did not stop sending
        them; we merely did not hear them while down), so nothing registered
        is lost and nothing is declared offline for our own downtime.
        """
        online = 0
        for rec in records:
            st = DeviceState(rec)
            if rec.registered_at is not None and rec.expires > 0:
                until = rec.registered_at + rec.expires
                if until > now:
                    st.registered_until = until
                    self._registrations[rec.device_id] = until
                    self._registrations_floor = min(self._registrations_floor, until)
            self.devices[rec.device_id] = st
            if st.registered and rec.online:
                if rec.last_keepalive is None or rec.last_keepalive < now:
                    rec.last_keepalive = now
                deadline = st.offline_deadline(
                    self.config.keepalive_interval, self.config.keepalive_misses
                )
                self._online[rec.device_id] = deadline
                self._online_floor = min(self._online_floor, deadline)
                online += 1
            elif rec.online:
                self._set_offline(st, now, "registration expired while down")
        return online

    # -- REGISTER ---------------------------------------------------------
    def handle_register(self, request: SipRequest, source: Source, now: float) -> SipResponse:
        """Answer one REGISTER (after transaction matching) and update state."""
        try:
            return self._register(request, source, now)
        except SipParseError as exc:
            return make_response(request, exc.status_hint, str(exc)[:100], to_tag=self._tag())

    def _tag(self) -> str:
        return new_tag()

    def _reply(
        self,
        request: SipRequest,
        status: int,
        reason: str = "",
        headers: list[tuple[str, str]] | None = None,
    ) -> SipResponse:
        server = ("Server", self.config.user_agent)
        if headers is None:
            headers = [server]
        else:
            headers.append(server)
        # A stable tag: the challenge is answered without a transaction (RFC 3261 §8.2.7).
        return make_response(request, status, reason, to_tag=stable_tag(request), headers=headers)

    def _register(self, request: SipRequest, source: Source, now: float) -> SipResponse:
        cfg = self.config
        device_id = request.from_.uri.user
        if not device_id:
            return self._reply(request, 400, "Missing Device ID In From")
        if cfg.strict_ids and (len(device_id) != 20 or not device_id.isdigit()):
            self.metrics.auth_failure("invalid_id")
            return self._reply(request, 403, "Invalid Device ID")
        target = request.request_uri.user
        if cfg.strict_ids and target and target not in (cfg.server_id, cfg.domain):
            return self._reply(request, 404, "Not This Server")
        st = self.devices.get(device_id)
        if st is not None and st.locked_until > now:
            self.metrics.auth_failure("locked_out")
            return self._reply(request, 403, "Locked Out")
        expires = self._requested_expires(request)
        if expires is None:
            return self._reply(request, 400, "Missing Expires")
        auth = request.headers.get("Authorization")
        if auth is None:
            return self._challenge(request, now)
        try:
            creds = DigestCredentials.parse(auth)
        except DigestError as exc:
            self.metrics.auth_failure("malformed")
            return self._reply(request, 400, f"Bad Authorization: {exc}"[:100])
        password = (st.record.password if st is not None else None) or cfg.default_password
        if not password:
            self.metrics.auth_failure("no_password")
            return self._reply(request, 403, "No Password Configured")
        result = self.verifier.verify(creds, request.method, password, now, expected_user=device_id)
        if result is not AuthResult.OK:
            return self._auth_failed(request, device_id, st, result, now)
        if expires == 0:
            return self._unregister(request, device_id, st, now)
        if expires < cfg.min_expires:
            return self._reply(
                request, 423, "Interval Too Brief", [("Min-Expires", str(cfg.min_expires))]
            )
        expires = min(expires, cfg.max_expires)
        st = self._accept(request, device_id, st, source, expires, now)
        headers = request.headers
        contact = headers.get("Contact") or f"<sip:{device_id}@{source.host}:{source.port}>"
        extra = [("Contact", contact), ("Expires", str(expires))]
        if cfg.date_header:
            extra.append(("Date", format_gb_date(now)))
        gb_ver = headers.get("X-GB-Ver")
        if gb_ver:
            extra.append(("X-GB-Ver", gb_ver))
        return self._reply(request, 200, "OK", extra)

    def _requested_expires(self, request: SipRequest) -> int | None:
        expires = request.expires
        if expires is not None:
            return expires
        contacts = request.contacts
        if contacts and not contacts[0].wildcard:
            value = contacts[0].params.get("expires")
            if value is not None and value.isdigit():
                return int(value)
        return None

    def _challenge(self, request: SipRequest, now: float, stale: bool = False) -> SipResponse:
        challenge = self.verifier.challenge(now, stale=stale)
        return self._reply(request, 401, "Unauthorized", [("WWW-Authenticate", str(challenge))])

    def _auth_failed(
        self,
        request: SipRequest,
        device_id: str,
        st: DeviceState | None,
        result: AuthResult,
        now: float,
    ) -> SipResponse:
        reason = _FAILURE_REASONS.get(result, result.value)
        self.metrics.auth_failure(reason)
        if result is AuthResult.STALE:
            return self._challenge(request, now, stale=True)
        if result in (AuthResult.BAD_NONCE, AuthResult.REPLAY, AuthResult.UNSUPPORTED_ALGORITHM):
            return self._challenge(request, now)
        if result is AuthResult.MISSING_FIELD:
            return self._reply(request, 400, "Incomplete Authorization")
        # A wrong password, user or realm: count towards the lockout.
        if st is None:
            st = DeviceState(DeviceRecord(device_id=device_id, kind=device_kind(device_id)))
            # Remember failures for unknown IDs too, so guessing is locked out;
            # they are not persisted until they register.
            self.devices[device_id] = st
        st.failures += 1
        log.warning(
            "authentication failed device=%s reason=%s failures=%d",
            device_id,
            reason,
            st.failures,
        )
        if st.failures >= self.config.lockout_failures:
            st.locked_until = now + self.config.lockout_seconds
            st.failures = 0
            log.warning(
                "device locked out device=%s seconds=%.0f", device_id, self.config.lockout_seconds
            )
        return self._reply(
            request, 403, "Wrong Password" if reason == "bad_response" else "Forbidden"
        )

    def _accept(
        self,
        request: SipRequest,
        device_id: str,
        st: DeviceState | None,
        source: Source,
        expires: int,
        now: float,
    ) -> DeviceState:
        if st is None:
            st = DeviceState(DeviceRecord(device_id=device_id, kind=device_kind(device_id)))
            self.devices[device_id] = st
        rec = st.record
        st.failures = 0
        st.locked_until = 0.0
        st.conn_id = source.conn_id
        was_registered = st.registered
        rec.transport = source.transport
        rec.contact = request.headers.get("Contact", "") or ""
        rec.host = source.host
        rec.port = source.port
        rec.expires = expires
        rec.registered_at = now
        rec.user_agent = request.headers.get("User-Agent", "") or ""
        rec.gb_version = request.headers.get("X-GB-Ver", "") or rec.gb_version
        st.registered_until = now + expires
        self._registrations[device_id] = st.registered_until
        if st.registered_until < self._registrations_floor:
            self._registrations_floor = st.registered_until
        if device_id not in self._online:
            rec.online = True
            reason = "registered" if not was_registered else "re-registered"
            self.sink.add_event(StatusEvent(device_id, now, True, reason))
            self.metrics.status_change(True, reason)
            log.info(
                "device online device=%s transport=%s addr=%s:%d expires=%d",
                device_id,
                source.transport,
                source.host,
                source.port,
                expires,
            )
        deadline = st.offline_deadline(self.config.keepalive_interval, self.config.keepalive_misses)
        self._online[device_id] = deadline
        if deadline < self._online_floor:
            self._online_floor = deadline
        st.persisted_at = now
        self.sink.mark_dirty(rec)
        return st

    def _unregister(
        self, request: SipRequest, device_id: str, st: DeviceState | None, now: float
    ) -> SipResponse:
        if st is not None and st.registered:
            st.registered_until = 0.0
            self._registrations.pop(device_id, None)
            st.record.expires = 0
            if device_id in self._online:
                self._set_offline(st, now, "unregistered")
            else:
                self.sink.mark_dirty(st.record)
            log.info("device unregistered device=%s", device_id)
        return self._reply(request, 200, "OK", [("Expires", "0")])

    # -- keepalive --------------------------------------------------------
    def handle_keepalive(self, device_id: str, source: Source, now: float, ok: bool = True) -> bool:
        """Record a Keepalive (GB/T 28181 §9.6) from ``device_id``.

        Refreshes liveness and the observed address (a device behind NAT may
        keep alive from a new port without re-registering; requests to it
        must follow, notes §2). Returns ``False`` for a device that is not
        registered, which the caller answers with 404 so it re-registers.
        """
        st = self.devices.get(device_id)
        if st is None or not st.registered:
            return False
        rec = st.record
        if rec.last_keepalive is not None:
            gaps = st.keepalive_gaps
            gaps.append(now - rec.last_keepalive)
            if len(gaps) > KEEPALIVE_GAPS_KEPT:
                del gaps[0]
        rec.last_keepalive = now
        changed = False
        if rec.host != source.host or rec.port != source.port or rec.transport != source.transport:
            log.info(
                "device address changed device=%s old=%s:%d new=%s:%d",
                device_id,
                rec.host,
                rec.port,
                source.host,
                source.port,
            )
            rec.host, rec.port, rec.transport = source.host, source.port, source.transport
            st.conn_id = source.conn_id
            changed = True
        elif source.conn_id is not None:
            st.conn_id = source.conn_id
        if device_id not in self._online:
            rec.online = True
            changed = True
            self.sink.add_event(StatusEvent(device_id, now, True, "keepalive resumed"))
            self.metrics.status_change(True, "keepalive resumed")
            log.info("device online again device=%s reason=keepalive", device_id)
        deadline = st.offline_deadline(self.config.keepalive_interval, self.config.keepalive_misses)
        self._online[device_id] = deadline
        if deadline < self._online_floor:
            self._online_floor = deadline
        status = "OK" if ok else "ERROR"
        if rec.extra.get("last_status", "OK") != status:
            rec.extra["last_status"] = status
            changed = True
        # A plain keepalive changes nothing worth a database row: liveness is
        # in memory and restarts from the restart itself (restore()). Persist
        # real changes at once and the keepalive time only now and then.
        if changed or now - st.persisted_at >= KEEPALIVE_PERSIST_INTERVAL:
            st.persisted_at = now
            self.sink.mark_dirty(rec)
        return True

    # -- liveness ---------------------------------------------------------
    def sweep(self, now: float) -> list[str]:
        """Declare offline every device whose deadline has passed; return their IDs.

        Called periodically by the glue (every few seconds is plenty: the
        deadlines themselves are exact, only their detection is delayed).
        """
        due: list[str] = []
        if now >= self._online_floor:
            due = [dev for dev, deadline in self._online.items() if deadline <= now]
            for device_id in due:
                st = self.devices[device_id]
                reason = (
                    "registration expired" if st.registered_until <= now else "keepalive timeout"
                )
                self._set_offline(st, now, reason)
            self._online_floor = min(self._online.values(), default=math.inf)
        # Registrations lapse whether the device is online or already offline.
        if now >= self._registrations_floor:
            for device_id in [d for d, until in self._registrations.items() if until <= now]:
                st = self.devices[device_id]
                del self._registrations[device_id]
                st.registered_until = 0.0
                st.record.expires = 0
                self.sink.mark_dirty(st.record)
            self._registrations_floor = min(self._registrations.values(), default=math.inf)
        return due

    def next_deadline(self) -> float | None:
        """The earliest offline deadline, or ``None`` if nobody is online."""
        return min(self._online.values(), default=None)

    def _set_offline(self, st: DeviceState, now: float, reason: str) -> None:
        rec = st.record
        rec.online = False
        self._online.pop(rec.device_id, None)
        self.sink.add_event(StatusEvent(rec.device_id, now, False, reason))
        self.sink.mark_dirty(rec)
        self.metrics.status_change(False, reason)
        log.info("device offline device=%s reason=%s", rec.device_id, reason)

    def connection_lost(self, conn_id: object, now: float) -> None:
        """A stream connection closed: devices registered over it become unreachable.

        GB/T 28181-2022 §9.1.1: a device behind NAT registers over TCP and
        keeps that connection; when it drops, the device is offline until it
        registers again.
        """
        for st in self.devices.values():
            if st.conn_id is conn_id:
                st.conn_id = None
                if st.record.device_id in self._online:
                    self._set_offline(st, now, "connection closed")
