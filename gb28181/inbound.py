"""Calls and requests *to* the platform: we are the UAS and a back-to-back relay (issues 5, 6).

A lower platform, a department's client or an upper platform sends us an ``INVITE`` for a
channel it does not carry (notes §6, §9). The flow, per INVITE:

1. ``100 Trying`` at once, then the rest off the signalling path (the handler returns None and
   answers later through :meth:`Signalling.respond`): the source leg of a lower platform may
   take tens of seconds (notes §6.1), and the caller's transaction stays alive meanwhile.
2. **Who calls.** Over SIP-TLS the connection's client certificate is the principal (its ID
   must be the From user). Otherwise the caller must be registered, from the address it
   registered from, with a certificate bound to its account (``gb28181 certs bind``); anyone
   else gets ``403 unknown caller``.
3. **May it.** ``s=Play`` asks VIEW, ``s=Playback`` PLAYBACK, ``s=Download`` DOWNLOAD of the
   channel (Request-URI user, else ``u=``, else To). A refusal is ``403 Forbidden`` with
   ``Warning: 399 <host> "<rule>: <reason>"`` (RFC 3261 §20.43); the authorizer audits both
   outcomes.
4. **Relay.** Play joins (or starts) the channel's live session in the media worker with an
   output to the caller's SDP address, re-SSRC'd to the caller's ``y=``; Playback/Download open
   a playback session. The ``200 OK`` carries our SDP answer (``a=sendonly``, ``y=``, and for
   TCP ``a=setup``/``a=connection``).
5. **Teardown together.** BYE from the caller leaves its consumer (the source leg ends after
   the idle delay when nobody else watches); the source leg ending BYEs the caller; the end of
   a recording sends MediaStatus 121 in the dialog (notes §4.12) and BYE after a grace period
   if the caller does not hang up. CANCEL before the answer gets 487 and undoes what was set
   up; a 2xx never ACKed (RFC 6026 timer L) is hung up.

DeviceControl and RecordInfo from callers take the same identity and authorization path in
:mod:`gb28181.forwarding`, through the caller-facing helpers here (:meth:`InboundService.identify`,
:meth:`~InboundService.refusal`, :meth:`~InboundService.message_to`,
:meth:`~InboundService.send_to_caller`).

Callers that connect over TLS also register over TLS; :meth:`InboundService.register_guard`
refuses a REGISTER whose ID is not the certificate's (``403 certificate is for X``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from authz import Action, ArbitrationResult, Decision, Principal

from .authorizer import AuditSink, AuthorizationDenied, warning_header
from .calls import CallError, Consumer, PlaySession
from .identity import IdentityError
from .playback import media_status_message
from .queries import MANSCDP_CONTENT_TYPE
from .registrar import Registrar, Source
from .signalling import DeviceUnreachable, Signalling, SipRequestTimeout
from .sip import Connection as SdpConnection
from .sip import (
    Dialog,
    Headers,
    MediaDescription,
    Origin,
    SdpError,
    SessionDescription,
    SipError,
    SipRequest,
    SipResponse,
    make_response,
    make_ssrc,
    new_branch,
    new_call_id,
    new_tag,
    parse_sdp,
    ssrc_to_int,
)
from .transport import Connection

__all__ = [
    "CallerRefused",
    "InboundCall",
    "InboundService",
    "LiveCalls",
    "PlaybackSessions",
]

log = logging.getLogger(__name__)

#: ``s=`` of an offer -> what the caller asks to do with the channel.
ACTIONS = {"Play": Action.VIEW, "Playback": Action.PLAYBACK, "Download": Action.DOWNLOAD}
#: HTTP-ish statuses of CallError -> the SIP status answering the INVITE.
SIP_STATUS = {400: 488, 403: 403, 404: 404, 409: 486, 502: 502, 503: 503, 504: 504}
#: Seconds an in-dialog request we send (BYE, MESSAGE) may wait for its answer.
REQUEST_TIMEOUT = 5.0


class CallerRefused(AuthorizationDenied):
    """The caller is not identified (unknown, or its certificate refused): 403."""


class LiveCalls(Protocol):
    """What the service needs from :class:`gb28181.calls.CallService`."""

    on_end: list[Callable[[PlaySession, str], None]]

    async def play(
        self, channel_id: str, output: tuple[str, int, str] | None = None, *, ssrc: int = 0
    ) -> tuple[PlaySession, Consumer]: ...

    def leave(self, session_id: str, consumer_id: int) -> None: ...


class PlaybackSessions(Protocol):
    """What the service needs from the playback service (``gb28181.playback``)."""

    on_end: list[Callable[[str, str], None]]

    async def open(
        self,
        channel_id: str,
        start: float,
        end: float,
        *,
        download: bool = False,
        speed: float = 1.0,
        output: tuple[str, int, str],
        ssrc: int,
        source: str = "auto",
    ) -> Any: ...

    async def control(self, session_id: str, mansrtsp: bytes) -> None: ...

    async def close(self, session_id: str, reason: str) -> None: ...


class Authorization(Protocol):
    """What the service needs from :class:`gb28181.authorizer.Authorizer`."""

    def decide(
        self,
        principal: Principal,
        action: Action,
        channel_id: str,
        *,
        source: str = "",
        now: float | None = None,
    ) -> Decision: ...

    def control(
        self,
        principal: Principal,
        channel_id: str,
        *,
        emergency: bool = False,
        source: str = "",
        now: float | None = None,
    ) -> ArbitrationResult: ...


class CallerIdentity(Protocol):
    """What the service needs from :class:`gb28181.identity.Identity`."""

    def from_certificate(self, der: bytes, *, now: float | None = None) -> Principal: ...

    async def for_sip_account(
        self, account_id: str, tls_cert: bytes | None, *, now: float | None = None
    ) -> Principal | None: ...


@dataclass(eq=False)
class InboundCall:
    """One INVITE dialog with a caller, from its INVITE to its BYE."""

    invite: SipRequest
    source: Source
    caller_id: str
    channel_id: str
    kind: str
    state: str = "pending"  # pending -> answered (200 sent) -> confirmed (ACKed) -> ended
    principal: Principal | None = None
    dialog: Dialog | None = None
    answer: bytes = b""
    live: PlaySession | None = None
    consumer_id: int | None = None
    playback_id: str | None = None
    task: asyncio.Task[None] | None = None
    grace: asyncio.TimerHandle | None = None

    @property
    def call_id(self) -> str:
        return self.invite.call_id


class InboundService:
    """The UAS side of INVITE, and who a caller is (for :mod:`gb28181.forwarding` too).

    :param calls: live play (None when media is disabled: Play is answered 503).
    :param playback: playback/download sessions (None: answered 503).
    :param media_host: the address in our SDP answers (where media comes from).
    :param media_status_grace: seconds after MediaStatus 121 before we BYE a caller that did
        not hang up itself.
    :param audit: where refusals of callers that are not identified go (the authorizer
        records its own decisions).
    """

    def __init__(
        self,
        signalling: Signalling,
        registrar: Registrar,
        authorizer: Authorization,
        identity: CallerIdentity,
        *,
        calls: LiveCalls | None,
        playback: PlaybackSessions | None,
        server_id: str,
        domain: str,
        media_host: str,
        media_status_grace: float = 10.0,
        request_timeout: float = REQUEST_TIMEOUT,
        audit: AuditSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signalling = signalling
        self.registrar = registrar
        self.authorizer = authorizer
        self.identity = identity
        self.calls = calls
        self.playback = playback
        self.server_id = server_id
        self.domain = domain
        self.media_host = media_host
        self.media_status_grace = media_status_grace
        self.request_timeout = request_timeout
        self.audit = audit
        self.clock = clock
        self.active: dict[str, InboundCall] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._seq = itertools.count(1)
        self._sn = itertools.count(1)
        if calls is not None:
            calls.on_end.append(self._live_ended)
        if playback is not None:
            playback.on_end.append(self._playback_ended)

    def install(self) -> None:
        """Take INVITE, the REGISTER guard and INVITE timeouts."""
        sig = self.signalling
        sig.methods["INVITE"] = self.on_invite
        sig.register_guards.append(self.register_guard)
        sig.on_server_timeout.append(self._server_timeout)
        sig.on_connection_lost.append(self._connection_lost)

    async def close(self) -> None:
        """Hang up every caller (platform shutdown), all at once; pending INVITEs get 503."""
        for task in list(self._tasks):
            task.cancel()
        for call in list(self.active.values()):
            if call.state == "pending":
                self._fail(call, make_response(call.invite, 503, "Shutting down", to_tag=new_tag()))
        ending = [self._end(call, "shutdown", bye=True) for call in list(self.active.values())]
        await asyncio.gather(*ending, return_exceptions=True)

    # -- identity -------------------------------------------------------------------------

    def register_guard(self, request: SipRequest, device_id: str) -> SipResponse | None:
        """A REGISTER over TLS with a client certificate: its ID must be the certificate's."""
        cert = self._peer_cert(request)
        if cert is None:
            return None
        try:
            principal = self.identity.from_certificate(cert)
        except IdentityError as exc:
            refused = CallerRefused(exc.reason, "certificate")
        else:
            if principal.id == device_id:
                return None
            refused = CallerRefused(f"certificate is for {principal.id}", "certificate-id")
        self.audit_refused(request, None, "sip.register", device_id, refused)
        return self.refusal(request, refused)

    def audit_refused(
        self,
        request: SipRequest,
        source: Source | None,
        action: str,
        target: str,
        refused: CallerRefused,
    ) -> None:
        """An audit record for a caller refused before any authorization decision (art. 21:
        refused attempts are recorded too)."""
        if self.audit is None:
            return
        caller = ""
        with contextlib.suppress(SipError):
            caller = request.from_.uri.user or ""
        try:
            self.audit.record(
                action,
                target,
                "deny",
                principal_id=caller or "?",
                rule=refused.rule,
                reason=refused.reason,
                source=self.source_label(source) if source is not None else "",
            )
        except Exception:
            log.exception("audit record failed action=%s target=%s", action, target)

    def _peer_cert(self, request: SipRequest, source: Source | None = None) -> bytes | None:
        conn_id = source.conn_id if source is not None else None
        if source is None:
            conn_id = self._conn_of(request)
        conn = self.signalling.transport.connection(conn_id)
        if conn is None or conn.transport != "TLS":
            return None
        return conn.peer_cert

    def _conn_of(self, request: SipRequest) -> object | None:
        """The TLS connection a REGISTER came on (the guard gets no Source): the peer address
        the transport stamped on the top Via (``received``, ``rport``: RFC 3581), or its
        sent-by; an ambiguous match is none."""
        tls = [c for c in self.signalling.transport.connections.values() if c.transport == "TLS"]
        if not tls:
            return None  # nothing to match: no Via to parse (every REGISTER, both rounds)
        try:
            via = request.vias[0]
        except (SipError, IndexError):
            return None
        host = via.params.get("received") or via.host
        ports = {p for p in (via.params.get("rport"), str(via.port or "")) if p}
        found = [conn for conn in tls if conn.peer[0] == host]
        exact = [conn for conn in found if str(conn.peer[1]) in ports]
        if len(exact) == 1:
            return exact[0].conn_id
        return found[0].conn_id if len(found) == 1 else None

    async def identify(self, request: SipRequest, source: Source) -> Principal:
        """The caller's principal (module docstring, step 2).

        :raises CallerRefused: unknown caller, refused certificate, or a certificate for
            another ID.
        """
        caller_id = request.from_.uri.user or ""
        cert = self._peer_cert(request, source)
        try:
            if cert is not None:
                principal = await self.identity.for_sip_account(caller_id, cert)
            else:
                st = self.registrar.get(caller_id)
                if st is None or not st.registered or st.record.host != source.host:
                    raise CallerRefused(f"unknown caller {caller_id}", "unknown-caller")
                principal = await self.identity.for_sip_account(caller_id, None)
        except IdentityError as exc:
            raise CallerRefused(exc.reason, "certificate") from None
        if principal is None:
            raise CallerRefused(
                f"unknown caller {caller_id}: no certificate bound to the account",
                "unknown-caller",
            )
        return principal

    def refusal(self, request: SipRequest, refused: AuthorizationDenied | Decision) -> SipResponse:
        """403 Forbidden naming the rule in the reason phrase and a Warning header."""
        reason = f"Forbidden ({refused.rule}: {refused.reason})"[:160]
        return make_response(
            request,
            403,
            reason,
            to_tag=new_tag(),
            headers=[("Warning", warning_header(refused, self._host()))],
        )

    # -- INVITE ---------------------------------------------------------------------------

    def on_invite(self, request: SipRequest, source: Source, now: float) -> SipResponse | None:
        """A new INVITE (the Signalling's ``INVITE`` handler): checks that need no I/O, then
        ``100 Trying`` and the rest in a task (answered through ``Signalling.respond``)."""
        try:
            offer = parse_sdp(request.body) if request.body else None
        except SdpError as exc:
            return make_response(request, 400, f"Bad SDP: {exc}"[:80], to_tag=new_tag())
        if offer is None:
            # Third-party call control (notes §6.7): no capture shows a peer doing it.
            return make_response(request, 488, "SDP offer required", to_tag=new_tag())
        kind = (offer.session_name or "Play").strip()
        if kind not in ACTIONS:
            return make_response(request, 488, f"s={kind} not supported", to_tag=new_tag())
        channel_id = self._channel_of(request, offer)
        if not channel_id:
            return make_response(request, 404, "No channel in the request", to_tag=new_tag())
        call = InboundCall(
            request, source, request.from_.uri.user or "", channel_id, kind, state="pending"
        )
        if call.call_id in self.active:
            return make_response(request, 482, "Loop Detected", to_tag=new_tag())
        self.active[call.call_id] = call
        self.signalling.in_dialog[call.call_id] = self._in_dialog
        self.signalling.respond(request, make_response(request, 100))
        call.task = self._spawn(self._setup(call, offer))
        return None

    @staticmethod
    def _channel_of(request: SipRequest, offer: SessionDescription) -> str:
        user = ""
        with contextlib.suppress(SipError):
            user = request.request_uri.user or ""
        if user.isdigit() and len(user) == 20:
            return user
        if offer.uri:
            head = offer.uri.partition(":")[0].strip()
            if head.isdigit() and len(head) == 20:
                return head
        with contextlib.suppress(SipError):
            user = request.to.uri.user or ""
        return user if user.isdigit() else ""

    async def _setup(self, call: InboundCall, offer: SessionDescription) -> None:
        request = call.invite
        try:
            call.principal = await self.identify(request, call.source)
            if call.state != "pending":
                return  # cancelled meanwhile: nothing to decide, nothing set up
            decision = self.authorizer.decide(
                call.principal, ACTIONS[call.kind], call.channel_id, source=self._source(call)
            )
            if not decision.allow:
                self._fail(call, self.refusal(request, decision))
                return
            response = await self._relay(call, offer)
        except CallerRefused as exc:
            action = f"sip.{ACTIONS[call.kind].label}"
            self.audit_refused(request, call.source, action, call.channel_id, exc)
            self._fail(call, self.refusal(request, exc))
            return
        except CallError as exc:
            status = SIP_STATUS.get(exc.status, 500)
            self._fail(call, make_response(request, status, exc.reason[:80], to_tag=new_tag()))
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("inbound INVITE failed call-id=%s", call.call_id)
            self._fail(call, make_response(request, 500, to_tag=new_tag()))
            return
        if call.state != "pending":  # cancelled while the source leg was set up
            await self._release(call, "cancelled")
            return
        try:
            call.dialog = Dialog.as_uas(request, response, via=self._via(call.source))
        except SipError as exc:
            await self._release(call, "unusable INVITE")
            self._fail(call, make_response(request, 400, str(exc)[:80], to_tag=new_tag()))
            return
        call.state = "answered"
        if not self.signalling.respond(request, response):
            await self._end(call, "caller gone", bye=False)
            return
        log.info(
            "inbound %s channel=%s caller=%s call-id=%s",
            call.kind,
            call.channel_id,
            call.caller_id,
            call.call_id,
        )

    async def _relay(self, call: InboundCall, offer: SessionDescription) -> SipResponse:
        """Start the source leg and the output to the caller; the 200 OK with our answer."""
        media = offer.media_of("video") or offer.primary
        address = offer.connection_address
        if media is None or not address or not media.port:
            raise CallError(400, "bad_sdp", "no media address in the offer")
        ssrc = offer.ssrc.strip() if offer.ssrc and offer.ssrc.strip().isdigit() else None
        if ssrc is None:
            ssrc = make_ssrc(self.domain, next(self._seq) % 10000, history=call.kind != "Play")
        try:
            value = ssrc_to_int(ssrc)
        except SdpError as exc:
            raise CallError(400, "bad_sdp", f"y={ssrc}: {exc}") from None
        port = 0
        if call.kind == "Play":
            if self.calls is None:
                raise CallError(503, "no_media", "live media is disabled")
            output = (address, media.port, self._output_mode(media))
            session, consumer = await self.calls.play(call.channel_id, output, ssrc=value)
            call.live, call.consumer_id = session, consumer.consumer_id
            # TCP passive: the port the caller connects to; otherwise where the stream enters.
            port = consumer.local_port or session.port
        else:
            if self.playback is None:
                raise CallError(503, "no_playback", "playback is not available")
            mode = self._output_mode(media)
            speed = float(offer.download_speed or 1) if call.kind == "Download" else 1.0
            session = await self.playback.open(
                call.channel_id,
                float(offer.start),
                float(offer.stop),
                download=call.kind == "Download",
                speed=speed,
                output=(address, media.port, mode),
                ssrc=value,
            )
            call.playback_id = str(session.session_id)
            port = int(getattr(session, "local_port", 0) or 0)
        call.answer = self._answer(call, media, port, ssrc, offer)
        return make_response(
            call.invite,
            200,
            to_tag=new_tag(),
            body=call.answer,
            headers=[("Contact", self._contact(call.source)), ("Content-Type", "application/sdp")],
        )

    @staticmethod
    def _output_mode(media: MediaDescription) -> str:
        """How we send to the caller, as seen from us (notes §6.4): the caller's
        ``a=setup:active`` means it connects to us (``tcp-passive``); else we connect."""
        if not media.is_tcp:
            return "udp"
        return "tcp-passive" if media.setup == "active" else "tcp-active"

    def _answer(
        self,
        call: InboundCall,
        offer_media: MediaDescription,
        port: int,
        ssrc: str,
        offer: SessionDescription,
    ) -> bytes:
        """Our SDP answer (notes §6.2: the device's answer): we send, from ``port``."""
        attributes: list[tuple[str, str | None]] = [("sendonly", None), ("rtpmap", "96 PS/90000")]
        if offer_media.is_tcp:
            # We connect when the caller listens (a=setup:passive), and the other way round.
            ours = "passive" if offer_media.setup == "active" else "active"
            attributes += [("setup", ours), ("connection", "new")]
        sdp = SessionDescription(
            origin=Origin(self.server_id, address=self.media_host),
            session_name=call.kind,
            connection=SdpConnection.for_address(self.media_host),
            start=offer.start,
            stop=offer.stop,
            media=(
                MediaDescription(
                    "video",
                    port or 9,
                    offer_media.proto,
                    ("96",),
                    attributes=tuple(attributes),
                ),
            ),
            ssrc=ssrc,
        )
        return sdp.serialize()

    def _fail(self, call: InboundCall, response: SipResponse) -> None:
        """A final non-2xx to a pending INVITE; the call is forgotten."""
        if call.state != "pending":
            return
        call.state = "ended"
        self._forget(call)
        self.signalling.respond(call.invite, response)

    # -- in-dialog requests, ACK, CANCEL ----------------------------------------------------

    def _in_dialog(self, request: SipRequest, source: Source, now: float) -> SipResponse | None:
        call = self.active.get(request.call_id)
        method = request.method
        if call is None:
            return None if method in ("ACK", "CANCEL") else make_response(request, 481)
        if method == "ACK":
            if call.state == "answered":
                call.state = "confirmed"
            return None
        if method == "CANCEL":
            if call.state == "pending":
                call.state = "ended"
                # A running _setup sees the state and releases what it set up meanwhile.
                self.signalling.respond(
                    call.invite, make_response(call.invite, 487, to_tag=new_tag())
                )
                self._forget(call)
            return None
        if method == "INVITE":  # a session refresh: nothing changes
            if not request.to.tag or call.state not in ("answered", "confirmed"):
                return make_response(request, 491, "Request Pending", to_tag=new_tag())
            return make_response(
                request,
                200,
                body=call.answer,
                headers=[
                    ("Contact", self._contact(call.source)),
                    ("Content-Type", "application/sdp"),
                ],
            )
        if method == "BYE":
            if call.dialog is not None:
                with contextlib.suppress(SipError):
                    call.dialog.receive_request(request)
            self._spawn(self._end(call, "BYE from caller", bye=False))
            return make_response(request, 200)
        if method == "INFO":
            if call.playback_id is None or self.playback is None:
                return make_response(request, 488, "INFO controls playback only")
            self._spawn(self._control(call, request))
            return None
        return make_response(request, 405, headers=[("Allow", "ACK, BYE, CANCEL, INFO, INVITE")])

    async def _control(self, call: InboundCall, request: SipRequest) -> None:
        """MANSRTSP in INFO (notes §7) -> the playback session."""
        assert self.playback is not None and call.playback_id is not None
        try:
            await self.playback.control(call.playback_id, request.body)
        except ValueError as exc:
            self.signalling.respond(request, make_response(request, 400, str(exc)[:80]))
            return
        except CallError as exc:
            status = SIP_STATUS.get(exc.status, 500)
            self.signalling.respond(request, make_response(request, status, exc.reason[:80]))
            return
        except Exception:
            log.exception("playback control failed call-id=%s", call.call_id)
            self.signalling.respond(request, make_response(request, 500))
            return
        self.signalling.respond(request, make_response(request, 200))

    def _server_timeout(self, request: SipRequest, now: float) -> None:
        call = self.active.get(request.call_id)
        if call is not None and request.method == "INVITE" and call.state == "answered":
            log.info("no ACK to our 200 call-id=%s: hanging up", call.call_id)
            self._spawn(self._end(call, "no ACK", bye=True))

    def _connection_lost(self, conn: Connection) -> None:
        """The caller's TCP/TLS connection closed: its calls end (nobody to BYE)."""
        for call in list(self.active.values()):
            if call.source.conn_id == conn.conn_id:
                if call.state == "pending":
                    call.state = "ended"
                    self._forget(call)
                else:
                    self._spawn(self._end(call, "connection closed", bye=False))

    # -- the source leg ending ----------------------------------------------------------------

    def _live_ended(self, session: PlaySession, reason: str) -> None:
        for call in list(self.active.values()):
            if call.live is session and call.state in ("answered", "confirmed"):
                call.live = None  # nothing to leave: the session is gone
                self._spawn(self._end(call, f"source ended: {reason}", bye=True))

    def _playback_ended(self, session_id: str, reason: str) -> None:
        for call in list(self.active.values()):
            if call.playback_id == session_id and call.state in ("answered", "confirmed"):
                call.playback_id = None
                self._spawn(self._media_status(call, reason))

    async def _media_status(self, call: InboundCall, reason: str) -> None:
        """MediaStatus 121 in the dialog (notes §4.12); the caller BYEs, or we do later."""
        if call.state != "ended":
            loop = asyncio.get_running_loop()
            call.grace = loop.call_later(
                self.media_status_grace,
                lambda: self._spawn(self._end(call, f"media ended: {reason}", bye=True)),
            )
        dialog = call.dialog
        if dialog is not None:
            message = dialog.create_request(
                "MESSAGE",
                headers=[("Content-Type", MANSCDP_CONTENT_TYPE)],
                body=media_status_message(call.channel_id, next(self._sn)),
            )
            await self.send_to_caller(call.source, message, "MediaStatus")

    # -- teardown -------------------------------------------------------------------------

    async def _end(self, call: InboundCall, reason: str, *, bye: bool) -> None:
        """End a call: release its source side, and BYE the caller if ``bye``. Idempotent."""
        if call.state == "ended":
            return
        answered = call.state in ("answered", "confirmed")
        call.state = "ended"
        self._forget(call)
        if call.grace is not None:
            call.grace.cancel()
            call.grace = None
        log.info("inbound call ended call-id=%s reason=%s", call.call_id, reason)
        await self._release(call, reason)
        dialog = call.dialog
        if bye and answered and dialog is not None:
            with contextlib.suppress(SipError):
                await self.send_to_caller(call.source, dialog.create_request("BYE"), "BYE")
            dialog.terminate()

    async def _release(self, call: InboundCall, reason: str) -> None:
        """Leave the live session / close the playback session the call set up."""
        if call.live is not None and call.consumer_id is not None and self.calls is not None:
            session, consumer_id = call.live, call.consumer_id
            call.live = call.consumer_id = None
            try:
                self.calls.leave(session.session_id, consumer_id)
            except CallError as exc:
                log.info("consumer already gone call-id=%s: %s", call.call_id, exc)
        if call.playback_id is not None and self.playback is not None:
            session_id, call.playback_id = call.playback_id, None
            try:
                await self.playback.close(session_id, reason)
            except Exception:
                log.exception("playback close failed session=%s", session_id)

    def _forget(self, call: InboundCall) -> None:
        if self.active.get(call.call_id) is call:
            del self.active[call.call_id]
        if self.signalling.in_dialog.get(call.call_id) == self._in_dialog:
            del self.signalling.in_dialog[call.call_id]

    # -- sending to callers -----------------------------------------------------------------

    def message_to(self, caller_id: str, source: Source, body: bytes) -> SipRequest:
        """An out-of-dialog MESSAGE to a caller: through its registration when it has one,
        else back where its request came from (a client on a TLS connection)."""
        sig = self.signalling
        st = self.registrar.get(caller_id)
        if st is not None and st.registered:
            with contextlib.suppress(DeviceUnreachable):
                return sig.new_request(
                    "MESSAGE", caller_id, caller_id, content_type=MANSCDP_CONTENT_TYPE, body=body
                )
        host = self._host()
        lines = [
            ("Via", f"{self._via(source)};branch={new_branch()}"),
            ("From", f"<sip:{self.server_id}@{self.domain}>;tag={new_tag()}"),
            ("To", f"<sip:{caller_id}@{self.domain}>"),
            ("Call-ID", new_call_id(host)),
            ("CSeq", f"{next(self._seq)} MESSAGE"),
            ("Max-Forwards", "70"),
            ("Content-Type", MANSCDP_CONTENT_TYPE),
        ]
        uri = f"sip:{caller_id}@{source.host}:{source.port}"
        return SipRequest("MESSAGE", uri, Headers(lines), body)

    async def send_to_caller(self, source: Source, request: SipRequest, what: str) -> None:
        """Send a request to a caller where it is (its connection, or its UDP address)."""
        stream = source.transport in ("TCP", "TLS")
        if stream and self.signalling.transport.connection(source.conn_id) is None:
            log.info("%s not sent: the caller's connection is closed", what)
            return
        try:
            response = await asyncio.wait_for(
                self.signalling.send_request(
                    request,
                    (source.host, source.port),
                    conn_id=source.conn_id if stream and isinstance(source.conn_id, int) else None,
                ),
                self.request_timeout,
            )
        except (SipRequestTimeout, TimeoutError, SipError) as exc:
            log.info("%s to %s:%d not answered: %s", what, source.host, source.port, exc)
            return
        if response.status >= 300:
            log.info("%s answered %d %s", what, response.status, response.reason)

    # -- helpers ----------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("inbound task failed", exc_info=task.exception())

    def _host(self) -> str:
        sig = self.signalling
        local = sig.transport.local_addr or ("127.0.0.1", 0)
        return sig.advertised_host or local[0]

    def _port(self, transport: str) -> int:
        t = self.signalling.transport
        addr = t.tls_addr if transport == "TLS" else t.local_addr
        return addr[1] if addr is not None else 5060

    def _via(self, source: Source) -> str:
        transport = source.transport or "UDP"
        return f"SIP/2.0/{transport} {self._host()}:{self._port(transport)};rport"

    def _contact(self, source: Source) -> str:
        transport = source.transport or "UDP"
        param = f";transport={transport.lower()}" if transport != "UDP" else ""
        return f"<sip:{self.server_id}@{self._host()}:{self._port(transport)}{param}>"

    @staticmethod
    def source_label(source: Source) -> str:
        """Where a request came from, as the audit trail names it."""
        return f"sip:{source.transport.lower()}:{source.host}:{source.port}"

    def _source(self, call: InboundCall) -> str:
        return self.source_label(call.source)
