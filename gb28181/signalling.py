"""The SIP application: one handler per method, one per MANSCDP CmdType.

Sits between the transaction layer (below) and the platform services
(registrar now; catalog, calls and cascade later). It turns each
``RequestReceived`` into a :class:`~gb28181.registrar.Source` and a call to
the handler registered for the method, and each MANSCDP MESSAGE into a call
to the handler registered for its (root, CmdType). Requests the platform
sends go out through :meth:`Signalling.send_request`, whose future resolves
with the final response.

Answers follow gb28181-notes §4.1: every MESSAGE is answered at SIP level at
once; a MESSAGE from a sender we do not know gets 404 (so a device that lost
its registration re-registers), unparsable XML gets 400, an unknown root 415,
and an unknown CmdType under a known root 200.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from . import manscdp
from .metrics import Metrics
from .registrar import Registrar, Source
from .sip import (
    AckReceived,
    CancelReceived,
    Headers,
    RequestReceived,
    ResponseReceived,
    SipLocalError,
    SipParseError,
    SipRequest,
    SipResponse,
    StrayResponseReceived,
    TransactionConfig,
    TransactionKey,
    TransactionLayer,
    TransactionTimedOut,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    stable_tag,
)
from .transport import Connection, SipTransport

__all__ = [
    "DeviceUnreachable",
    "ManscdpCallback",
    "NotifyCallback",
    "RegisterGuard",
    "RegisteredCallback",
    "RequestHandler",
    "Signalling",
    "SipRequestTimeout",
]

log = logging.getLogger(__name__)

RequestHandler = Callable[[SipRequest, Source, float], SipResponse | None]
ManscdpHandler = Callable[[SipRequest, "manscdp.Message", Source, float], SipResponse | None]

ManscdpCallback = Callable[[str, "manscdp.Message", float], object]
"""A service's view of a MANSCDP message: (sender device ID, message, now)."""
RegisteredCallback = Callable[[str, float], None]
"""Called with (device ID, now) when a device registers and was not online before."""
NotifyCallback = Callable[[SipRequest, float], None]
"""Called with (NOTIFY, now) before the NOTIFY's body is routed (subscription state)."""
RegisterGuard = Callable[[SipRequest, str], SipResponse | None]
"""Called with (REGISTER, device ID); a response answers the REGISTER instead of the registrar."""

MANSCDP_CONTENT_TYPE = "application/manscdp+xml"
#: Seconds timer J of our non-INVITE server transactions may fire late (one loop wake-up
#: a second ends them all, instead of one per REGISTER or keepalive: see TransactionConfig).
SERVER_TIMER_SLACK = 1.0
#: Methods looked up in :attr:`Signalling.in_dialog` by Call-ID before ``methods`` (the hot
#: REGISTER and keepalive MESSAGE never are).
_DIALOG_METHODS = frozenset({"BYE", "INFO", "INVITE", "UPDATE"})
#: A MESSAGE whose body holds this is a keepalive candidate for the stateless answer.
_KEEPALIVE_MARK = b"<CmdType>Keepalive</CmdType>"
_KEEPALIVE_KEY = ("Notify", "Keepalive")


class SipRequestTimeout(Exception):
    """A request we sent got no final response (RFC 3261 timer B/F fired)."""


class DeviceUnreachable(Exception):
    """The device is not registered, or the connection it registered on is gone."""


class Signalling:
    """Wires the transport, the transaction layer and the request handlers."""

    def __init__(
        self,
        registrar: Registrar,
        metrics: Metrics,
        *,
        server_id: str,
        max_size: int,
        user_agent: str,
        advertised_host: str = "",
        clock: Callable[[], float] = time.time,
        transaction_config: TransactionConfig | None = None,
    ) -> None:
        self.registrar = registrar
        self.metrics = metrics
        self.server_id = server_id
        self.user_agent = user_agent
        self.advertised_host = advertised_host
        self.clock = clock
        self._cseq = itertools.count(1)
        self.layer = TransactionLayer(
            transaction_config
            or TransactionConfig(server_timer_slack=SERVER_TIMER_SLACK, report_terminated=False)
        )
        self.transport = SipTransport(
            self.layer,
            self._drain,
            max_size=max_size,
            clock=clock,
            on_parse_error=self._parse_error,
            on_connection_lost=self._connection_lost,
        )
        # New non-INVITE requests (REGISTER, keepalives) skip the event queue.
        self.transport.on_request = self._request
        # ...and a UDP REGISTER without credentials or a keepalive is answered without a
        # transaction (_stateless).
        self.transport.on_stateless = self._stateless
        self.methods: dict[str, RequestHandler] = {
            "REGISTER": self._on_register,
            "MESSAGE": self._on_message,
            "OPTIONS": self._on_options,
            "NOTIFY": self._on_notify,
        }
        self.manscdp_handlers: dict[tuple[str, str], ManscdpHandler] = {
            _KEEPALIVE_KEY: self._on_keepalive,
        }
        self._pending: dict[Any, asyncio.Future[SipResponse]] = {}
        #: Told when a device registers and was not online before (catalog query...).
        self.on_registered: list[RegisteredCallback] = []
        #: Told (device ID, Status OK?, now) of every keepalive from a known device (faults).
        self.on_keepalive: list[Callable[[str, bool, float], None]] = []
        #: Told of every NOTIFY before its body is routed (subscription dialogs).
        self.on_notify: list[NotifyCallback] = []
        #: Consulted before the registrar sees a REGISTER; a response refuses it (ID policy).
        self.register_guards: list[RegisterGuard] = []
        #: Told of responses that match no transaction (retransmitted 2xx to an INVITE).
        self.on_stray_response: list[Callable[[SipResponse], None]] = []
        #: Dialogs whose owner takes their in-dialog requests (BYE, INFO, re-INVITE), the ACK
        #: to its 2xx and a CANCEL of its pending INVITE, by Call-ID (inbound calls). Requests
        #: of other dialogs go to ``methods`` as before; a handler returning None answers
        #: later with :meth:`respond`.
        self.in_dialog: dict[str, RequestHandler] = {}
        #: Told (request, now) when one of our server transactions ends without its answer
        #: being acknowledged or given (an INVITE whose 2xx got no ACK: RFC 6026 timer L).
        self.on_server_timeout: list[Callable[[SipRequest, float], None]] = []
        #: Told of every TCP/TLS connection that closed (dialogs that lived on it end).
        self.on_connection_lost: list[Callable[[Connection], None]] = []

    # -- event loop of the transaction layer -------------------------------
    def _drain(self) -> None:
        layer = self.layer
        while (event := layer.next_event()) is not None:
            if isinstance(event, RequestReceived):
                self._on_request(event)
            elif isinstance(event, ResponseReceived):
                self._on_response(event)
            elif isinstance(event, TransactionTimedOut):
                fut = self._pending.pop(event.key, None)
                if fut is not None and not fut.done():
                    fut.set_exception(SipRequestTimeout(f"no response to {event.request!r}"))
                elif event.key.server:
                    self._server_timeout(event.request)
            elif isinstance(event, StrayResponseReceived):
                # A 2xx retransmitted after its INVITE transaction ended (our
                # ACK was lost, RFC 3261 §13.2.2.4): the dialog's owner re-ACKs.
                for listener in self.on_stray_response:
                    listener(event.response)
            elif isinstance(event, (AckReceived, CancelReceived)):
                # The ACK to a 2xx we sent, or a CANCEL of a pending INVITE (the layer has
                # answered the CANCEL itself; the INVITE's owner answers it 487).
                self._to_dialog(event)

    def _on_request(self, event: RequestReceived) -> None:
        self._request(event.request, event.key, event.addr, event.conn_id, self.clock())

    def _request(
        self, request: SipRequest, key: TransactionKey, addr: object, conn_id: object, now: float
    ) -> None:
        """Answer one new request: a ``RequestReceived``, or straight from the transport.

        The transport calls this directly for every new non-INVITE request (its
        direct road: no event object, no queue), the transaction layer having
        opened the server transaction under ``key``.
        """
        conn = self.transport.connection(conn_id) if conn_id is not None else None
        transport = conn.transport if conn is not None else "UDP"
        host, port = cast(tuple[str, int], addr)
        response = self._answer(request, Source(transport, host, port, conn_id), now)
        if response is not None:
            self.layer.send_response(key, response, now)

    def _stateless(
        self, request: SipRequest, addr: tuple[str, int], now: float
    ) -> SipResponse | None:
        """Answer a UDP request without a server transaction (RFC 3261 §8.2.7), or None.

        Two requests are answered statelessly, both idempotent and answered at once by our
        own handlers:

        - a REGISTER without credentials: its answer (the digest challenge, or a refusal by
          a guard, the lockout or the ID checks) changes no state of ours, and our nonces are
          stateless, so a transaction would only keep the 401 for timer J's 32 s to resend it
          to a retransmission: one that comes now gets a fresh, equally valid challenge;
        - a Keepalive MESSAGE (``<CmdType>Keepalive</CmdType>`` in its body, outside any
          dialog): a retransmission refreshes the same liveness again and gets the same
          answer. At 50,000 devices every 60 s this is 833 transactions a second fewer, and
          the ~27,000 that timer J would keep alive.

        Anything else, or a handler replaced by one that may answer later (None), keeps its
        transaction. A retransmission answered here counts as a request again in the metrics.
        """
        method = request.method
        if method == "REGISTER":
            if (
                request.headers.get("Authorization") is not None
                or self.methods.get("REGISTER") != self._on_register
            ):
                return None
        elif method == "MESSAGE":
            if (
                _KEEPALIVE_MARK not in request.body
                or self.methods.get("MESSAGE") != self._on_message
                or self.manscdp_handlers.get(_KEEPALIVE_KEY) != self._on_keepalive
                or request.call_id in self.in_dialog
            ):
                return None
        else:
            return None
        # Refuse what the transaction layer would refuse (no Via, a bad one), the same way.
        self.layer.request_key(request)
        # Both handlers tag their answers with stable_tag(): a retransmission answered here
        # gets the same To tag (RFC 3261 §8.2.7).
        return self._answer(request, Source("UDP", addr[0], addr[1], None), now)

    def _answer(self, request: SipRequest, source: Source, now: float) -> SipResponse | None:
        """Count ``request``, run its handler and count the response it gives (if any)."""
        # Counted here rather than per datagram: retransmissions absorbed by
        # the transaction layer are not new requests.
        self.metrics.message(request.method, "in")
        handler = self.methods.get(request.method)
        try:
            if self.in_dialog and request.method in _DIALOG_METHODS:
                handler = self.in_dialog.get(request.call_id, handler)
            if handler is None:
                response: SipResponse | None = make_response(
                    request,
                    405 if request.method in ("PUBLISH", "UPDATE", "PRACK", "REFER") else 501,
                    to_tag=self._tag(),
                    headers=[("Allow", ", ".join(sorted(self.methods)))],
                )
            else:
                response = handler(request, source, now)
        except SipParseError as exc:
            response = make_response(request, exc.status_hint, str(exc)[:80], to_tag=self._tag())
        except Exception:
            log.exception("handler failed method=%s call-id=%s", request.method, request.call_id)
            response = make_response(request, 500, to_tag=self._tag())
        if response is not None:
            self.metrics.response(response.status, request.method, "out")
        return response

    def _on_response(self, event: ResponseReceived) -> None:
        self.metrics.response(event.response.status, event.key.method, "in")
        if event.response.status < 200:
            return
        fut = self._pending.pop(event.key, None)
        if fut is not None and not fut.done():
            fut.set_result(event.response)
        elif event.key.method == "INVITE" and event.response.status < 300:
            # Nobody waits any more (the caller gave up): the dialog's owner
            # must still ACK (and end) what the device started.
            for listener in self.on_stray_response:
                listener(event.response)

    def _to_dialog(self, event: AckReceived | CancelReceived) -> None:
        """Hand an ACK or CANCEL to the owner of its Call-ID (an answer, if any, is dropped)."""
        request = event.request
        self.metrics.message(request.method, "in")
        handler = self.in_dialog.get(request.call_id)
        if handler is None:
            log.debug("%s for no dialog of ours call-id=%s", request.method, request.call_id)
            return
        if isinstance(event, AckReceived):
            conn = self.transport.connection(event.conn_id)
            host, port = cast(tuple[str, int], event.addr)
            source = Source(
                conn.transport if conn is not None else "UDP", host, port, event.conn_id
            )
        else:
            # The layer answered the CANCEL; its owner answers the INVITE where it came from.
            source = Source("", "", 0)
        try:
            handler(request, source, self.clock())
        except Exception:
            log.exception(
                "dialog handler failed method=%s call-id=%s", request.method, request.call_id
            )

    def _server_timeout(self, request: SipRequest) -> None:
        now = self.clock()
        for listener in self.on_server_timeout:
            try:
                listener(request, now)
            except Exception:
                log.exception("server timeout listener failed call-id=%s", request.call_id)

    def respond(self, request: SipRequest, response: SipResponse) -> bool:
        """Answer ``request`` now, for a handler that returned None and answers later.

        Provisional responses may come first (``100 Trying``, ``180``), then one final
        response. The server transaction is found from the request itself.

        :returns: False when the transaction is gone (it timed out, or was answered already);
            the reason is logged.
        """
        try:
            self.layer.send_response(request, response, self.clock())
        except SipLocalError as exc:
            log.info(
                "answer %d to %s not sent call-id=%s: %s",
                response.status,
                request.method,
                request.call_id,
                exc,
            )
            return False
        self.metrics.response(response.status, request.method, "out")
        self.transport.flush()
        return True

    def _parse_error(self, transport: str) -> None:
        self.metrics.sip_parse_errors.labels(transport).inc()

    def _connection_lost(self, conn: Connection) -> None:
        self.registrar.connection_lost(conn.conn_id, self.clock())
        for listener in self.on_connection_lost:
            try:
                listener(conn)
            except Exception:
                log.exception("connection-lost listener failed conn=%s", conn.conn_id)

    def _tag(self) -> str:
        return new_tag()

    # -- handlers -----------------------------------------------------------
    def _on_register(self, request: SipRequest, source: Source, now: float) -> SipResponse:
        started = time.perf_counter()
        try:
            device_id = request.from_.uri.user or ""
        except SipParseError:
            device_id = ""  # the registrar answers it
        for guard in self.register_guards:
            refusal = guard(request, device_id)
            if refusal is not None:
                return refusal
        before = self.registrar.get(device_id) if device_id else None
        was_online = before is not None and before.registered and before.record.online
        response = self.registrar.handle_register(request, source, now)
        self.metrics.register_seconds.observe(time.perf_counter() - started)
        if response.status == 200 and not was_online and self.on_registered:
            st = self.registrar.get(device_id)
            if st is not None and st.registered:
                for callback in self.on_registered:
                    try:
                        callback(device_id, now)
                    except Exception:
                        log.exception("registration listener failed device=%s", device_id)
        return response

    def _on_options(self, request: SipRequest, source: Source, now: float) -> SipResponse:
        return make_response(
            request,
            200,
            to_tag=self._tag(),
            headers=[("Allow", ", ".join(sorted(self.methods))), ("Server", self.user_agent)],
        )

    def _on_message(self, request: SipRequest, source: Source, now: float) -> SipResponse | None:
        ctype = request.content_type
        if ctype != MANSCDP_CONTENT_TYPE:
            return make_response(request, 415, to_tag=self._tag())
        sender = request.from_.uri.user or ""
        try:
            msg = manscdp.decode(request.body)
        except manscdp.ManscdpUnknownRootError as exc:
            log.info("MESSAGE with unknown root from %s: %s", sender, exc)
            return make_response(request, 415, to_tag=self._tag())
        except manscdp.ManscdpError as exc:
            log.info("bad MANSCDP body from %s call-id=%s: %s", sender, request.call_id, exc)
            return make_response(request, 400, str(exc)[:80], to_tag=self._tag())
        # Root is a StrEnum: it hashes and compares as its text, no str() needed.
        handler = self.manscdp_handlers.get((msg.root, msg.cmd_type))
        if handler is None:
            state = self.registrar.get(sender)
            status = 200 if state is not None and state.registered else 404
            return make_response(request, status, to_tag=self._tag())
        return handler(request, msg, source, now)

    def _on_notify(self, request: SipRequest, source: Source, now: float) -> SipResponse | None:
        """NOTIFY of a subscription (Catalog, Alarm, MobilePosition: GB/T 28181-2016 §9.11).

        Its MANSCDP body goes through the same (root, CmdType) table as a MESSAGE's. A NOTIFY
        without a body (subscription state only) is simply acknowledged.
        """
        for callback in self.on_notify:
            try:
                callback(request, now)
            except Exception:
                log.exception("NOTIFY listener failed call-id=%s", request.call_id)
        if not request.body:
            return make_response(request, 200, to_tag=self._tag())
        return self._on_message(request, source, now)

    def on_manscdp(self, root: str, cmd_type: str, callback: ManscdpCallback) -> None:
        """Route MANSCDP ``(root, CmdType)`` from registered senders to ``callback``.

        The MESSAGE (or NOTIFY) is answered 200 OK here, whatever the callback does (notes
        §4.1: the SIP answer never waits for the application); a sender that is not registered
        gets 404 so that it registers again.
        """

        def handler(
            request: SipRequest, msg: manscdp.Message, source: Source, now: float
        ) -> SipResponse:
            sender = request.from_.uri.user or msg.device_id
            st = self.registrar.get(sender)
            if st is None or not st.registered:
                return make_response(request, 404, to_tag=self._tag())
            try:
                callback(sender, msg, now)
            except Exception:
                log.exception("MANSCDP %s/%s handler failed sender=%s", root, cmd_type, sender)
            return make_response(request, 200, to_tag=self._tag())

        self.manscdp_handlers[(root, cmd_type)] = handler

    def _on_keepalive(
        self, request: SipRequest, msg: manscdp.Message, source: Source, now: float
    ) -> SipResponse:
        # The device is identified by the From user; the body's DeviceID is
        # the same for devices and platforms alike (§9.6).
        device_id = request.from_.uri.user or msg.device_id
        ok = str(getattr(msg, "status", "OK")).upper() != "ERROR"
        known = self.registrar.handle_keepalive(device_id, source, now, ok)
        if known:
            for callback in self.on_keepalive:
                try:
                    callback(device_id, ok, now)
                except Exception:
                    log.exception("keepalive listener failed device=%s", device_id)
        # A stable tag: a retransmission answered statelessly (_stateless) gets the same bytes.
        return make_response(request, 200 if known else 404, to_tag=stable_tag(request))

    # -- requests we send ---------------------------------------------------
    def contact(self) -> str:
        """Our Contact (for dialog-creating requests: SUBSCRIBE)."""
        local = self.transport.local_addr or ("127.0.0.1", 0)
        host = self.advertised_host or local[0]
        return f"<sip:{self.server_id}@{host}:{local[1]}>"

    def new_request(
        self,
        method: str,
        target_id: str,
        device_id: str,
        *,
        content_type: str | None = None,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> SipRequest:
        """An out-of-dialog request from the platform to ``target_id``.

        ``target_id`` is the device or one of its channels; ``device_id`` is
        the registered device whose address and transport carry it. The
        Request-URI uses the address the device was last heard from (its
        observed address, not its Contact, which is often a private IP
        behind NAT — gb28181-notes §2).
        """
        st = self.registrar.get(device_id)
        if st is None or not st.registered:
            raise DeviceUnreachable(f"device {device_id} is not registered")
        rec = st.record
        local = self.transport.local_addr or ("127.0.0.1", 0)
        host = self.advertised_host or local[0]
        transport = rec.transport if rec.transport in ("TCP", "TLS") else "UDP"
        domain = self.registrar.config.domain
        lines = [
            ("Via", f"SIP/2.0/{transport} {host}:{local[1]};rport;branch={new_branch()}"),
            ("From", f"<sip:{self.server_id}@{domain}>;tag={new_tag()}"),
            ("To", f"<sip:{target_id}@{domain}>"),
            ("Call-ID", new_call_id(host)),
            ("CSeq", f"{next(self._cseq)} {method}"),
            ("Max-Forwards", "70"),
            ("User-Agent", self.user_agent),
        ]
        if content_type is not None:
            lines.append(("Content-Type", content_type))
        lines.extend(headers or [])
        return SipRequest(method, f"sip:{target_id}@{rec.host}:{rec.port}", Headers(lines), body)

    async def send_to_device(self, request: SipRequest, device_id: str) -> SipResponse:
        """Send ``request`` where ``device_id`` can hear it; return the final response.

        Over the stream connection the device registered on when it has one
        (a device behind NAT can only be reached that way, GB/T 28181-2022
        §9.1.1), else by UDP to its observed address.

        :raises DeviceUnreachable: not registered, or its connection is gone.
        :raises SipRequestTimeout: no final response in time.
        """
        st = self.registrar.get(device_id)
        if st is None or not st.registered:
            raise DeviceUnreachable(f"device {device_id} is not registered")
        rec = st.record
        conn_id: int | None = None
        if rec.transport in ("TCP", "TLS"):
            conn = self.transport.connection(st.conn_id)
            if conn is None:
                raise DeviceUnreachable(
                    f"device {device_id}: its {rec.transport} connection is closed"
                )
            conn_id = conn.conn_id
        return await self.send_request(request, (rec.host, rec.port), conn_id=conn_id)

    async def send_request(
        self, request: SipRequest, addr: tuple[str, int], *, conn_id: int | None = None
    ) -> SipResponse:
        """Send ``request`` in a client transaction; return its final response.

        :raises SipRequestTimeout: no final response before timer B/F.
        """
        loop = asyncio.get_running_loop()
        key = self.layer.send_request(
            request, addr, self.clock(), reliable=conn_id is not None, conn_id=conn_id
        )
        self.metrics.message(request.method, "out")
        fut: asyncio.Future[SipResponse] = loop.create_future()
        self._pending[key] = fut
        self.transport.flush()
        return await fut
