"""SIP transports on asyncio: UDP and TCP on one port, optional TLS.

The glue between sockets and the sans-IO core (style guide §6): it reads
the clock, parses bytes into messages, feeds the transaction layer, arms one
timer, and writes what the layer wants sent. It makes no protocol decisions
beyond those RFC 3261 §18 and RFC 3581 assign to the transport:

* the top Via of every request received gets ``received`` (the source IP)
  and, when the client asked with ``rport``, the source port;
* responses go back over the connection the request came on (TCP/TLS), or
  over UDP to the source IP and the ``rport`` (or sent-by) port;
* requests to a device go over the connection it registered on when it has
  one (devices behind NAT, GB/T 28181-2022 §9.1.1), else by UDP to the
  address it was last heard from.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from .deadline_timer import DeadlineTimer
from .sip import (
    DEFAULT_MAX_SIZE,
    SipMessage,
    SipParseError,
    SipRequest,
    SipResponse,
    StreamParser,
    TransactionKey,
    TransactionLayer,
    make_response,
    parse_message,
)

__all__ = ["Connection", "SipTransport"]

log = logging.getLogger(__name__)

Addr = tuple[str, int]
#: Socket buffer asked for on the SIP UDP socket (the kernel may cap it at rmem_max).
UDP_BUFFER_BYTES = 4 * 1024 * 1024
#: Called with the transport name ("UDP", "TCP", "TLS") for each unparsable message.
ParseErrorHook = Callable[[str], None]
#: Called with (request, transaction key, source address, connection id, now) for each new
#: non-INVITE request; it answers through ``layer.send_response`` (see SipTransport.on_request).
RequestHook = Callable[[SipRequest, TransactionKey, Addr, "int | None", float], None]
#: Called with (request, source address, now) for each new non-INVITE UDP request on the
#: direct road; a response is sent statelessly (see SipTransport.on_stateless).
StatelessHook = Callable[[SipRequest, Addr, float], SipResponse | None]


@dataclass(eq=False, slots=True)
class Connection:
    """One accepted or opened stream connection."""

    conn_id: int
    transport: str  # "TCP" or "TLS"
    writer: asyncio.Transport
    peer: Addr
    parser: StreamParser
    #: The client certificate's DER, when TLS with client certificates.
    peer_cert: bytes | None = None


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.owner._datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class _Stream(asyncio.Protocol):
    def __init__(self, owner: SipTransport, kind: str) -> None:
        self.owner = owner
        self.kind = kind
        self.conn: Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn = self.owner._connection_made(cast(asyncio.Transport, transport), self.kind)

    def data_received(self, data: bytes) -> None:
        if self.conn is not None:
            self.owner._stream_data(self.conn, data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.owner._connection_lost(self.conn)
            self.conn = None


class SipTransport:
    """Listeners plus the single timer of a :class:`TransactionLayer`.

    :param layer: the transaction layer all messages go through.
    :param on_events: called after each input with nothing; the owner then
        drains ``layer.next_event()`` itself (keeps this module free of
        application logic).
    :param clock: wall-clock seconds; injectable for tests.
    """

    def __init__(
        self,
        layer: TransactionLayer,
        on_events: Callable[[], None],
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        clock: Callable[[], float] = time.time,
        on_parse_error: ParseErrorHook | None = None,
        on_connection_lost: Callable[[Connection], None] | None = None,
    ) -> None:
        self.layer = layer
        self.on_events = on_events
        self.max_size = max_size
        self.clock = clock
        self.on_parse_error = on_parse_error
        self.on_connection_lost = on_connection_lost
        self.connections: dict[int, Connection] = {}
        self._ids = itertools.count(1)
        self._udp: _Udp | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._timer = DeadlineTimer(self._on_timer, clock)
        self.local_addr: Addr | None = None
        self.tls_addr: Addr | None = None
        self.parse_errors = 0
        #: The direct road for new non-INVITE requests (REGISTER, keepalive MESSAGE: nearly
        #: all the traffic): handed over at once instead of as a ``RequestReceived`` event
        #: for ``on_events`` to drain. ``None``: every request goes through the events.
        self.on_request: RequestHook | None = None
        #: Consulted first on that road, for UDP only: a response it returns is sent at once to
        #: the source address, without a server transaction (a stateless UAS, RFC 3261 §8.2.7:
        #: the registrar's digest challenge); ``None`` lets the request take the road above.
        self.on_stateless: StatelessHook | None = None

    # -- lifecycle ----------------------------------------------------------
    async def start(
        self, host: str, port: int, *, tls_port: int = 0, tls: ssl.SSLContext | None = None
    ) -> None:
        """Bind UDP and TCP on ``host:port`` (and TLS on ``tls_port``)."""
        loop = asyncio.get_running_loop()
        # Port 0 asks for any free port; UDP picks it and TCP must get the
        # same number, which another process may hold: try a few times.
        for attempt in range(20 if port == 0 else 1):
            udp_transport, protocol = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(host, port)
            )
            sockname = udp_transport.get_extra_info("sockname")
            try:
                server = await loop.create_server(
                    lambda: _Stream(self, "TCP"), host, sockname[1], reuse_address=True
                )
            except OSError:
                udp_transport.close()
                if port != 0 or attempt == 19:
                    raise
                continue
            break
        self._udp = protocol
        self.local_addr = (sockname[0], sockname[1])
        sock = udp_transport.get_extra_info("socket")
        if sock is not None:
            # Absorb bursts (a catalog storm, thousands of devices re-registering
            # after an outage) instead of dropping datagrams at the default ~200 KB.
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, opt, UDP_BUFFER_BYTES)
        self._servers.append(server)
        if tls is not None:
            tls_server = await loop.create_server(
                lambda: _Stream(self, "TLS"), host, tls_port, ssl=tls, reuse_address=True
            )
            self._servers.append(tls_server)
            tname = tls_server.sockets[0].getsockname()
            self.tls_addr = (tname[0], tname[1])

    async def stop(self) -> None:
        """Close listeners and connections."""
        self._timer.cancel()
        for server in self._servers:
            server.close()
        for conn in list(self.connections.values()):
            conn.writer.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
        self._udp = None

    # -- input --------------------------------------------------------------
    def _datagram(self, data: bytes, addr: Addr) -> None:
        if len(data) <= 4 and not data.strip():
            return  # CRLF keep-alive ping on UDP
        try:
            msg = parse_message(data, max_size=self.max_size)
        except SipParseError as exc:
            self._bad_message(exc, data, addr, None, "UDP")
            return
        direct = self.on_request
        if direct is None or type(msg) is not SipRequest:
            self._receive(msg, addr, None, "UDP")
            return
        # The direct road, spelled out for UDP: what _receive does, minus its
        # branches for streams and responses (REGISTER and keepalives land here).
        now = self.clock()
        try:
            msg.stamp_received(addr[0], addr[1])
            stateless = self.on_stateless
            if stateless is not None:
                response = stateless(msg, addr, now)
                if response is not None:
                    self._write(bytes(response), addr, None)
                    return
            key = self.layer.receive_request(msg, addr, now, reliable=False)
            if key is not None:
                direct(msg, key, addr, None, now)
        except SipParseError as exc:
            self._reply_directly(msg, exc, addr, None)
            return
        self.on_events()
        self.flush()

    def _connection_made(self, writer: asyncio.Transport, kind: str) -> Connection:
        peer = writer.get_extra_info("peername")
        cert: bytes | None = None
        if kind == "TLS":
            sslobj = writer.get_extra_info("ssl_object")
            if sslobj is not None:
                cert = sslobj.getpeercert(binary_form=True)
        conn = Connection(
            next(self._ids), kind, writer, (peer[0], peer[1]), StreamParser(self.max_size), cert
        )
        self.connections[conn.conn_id] = conn
        return conn

    def _stream_data(self, conn: Connection, data: bytes) -> None:
        try:
            items = conn.parser.feed(data)
        except SipParseError as exc:
            log.warning("closing %s connection from %s:%d: %s", conn.transport, *conn.peer, exc)
            self.parse_errors += 1
            conn.writer.close()
            return
        if conn.parser.pings:
            conn.parser.pings = 0
            conn.writer.write(b"\r\n")  # RFC 5626 §4.4.1 pong
        for item in items:
            if isinstance(item, SipParseError):
                self._bad_message(item, b"", conn.peer, conn, conn.transport)
            else:
                self._receive(item, conn.peer, conn, conn.transport)

    def _connection_lost(self, conn: Connection) -> None:
        self.connections.pop(conn.conn_id, None)
        if self.on_connection_lost is not None:
            self.on_connection_lost(conn)

    def _bad_message(
        self, exc: SipParseError, data: bytes, addr: Addr, conn: Connection | None, kind: str
    ) -> None:
        self.parse_errors += 1
        log.info("unparsable SIP message from %s %s:%d: %s", kind, addr[0], addr[1], exc)
        if self.on_parse_error is not None:
            self.on_parse_error(kind)

    def _receive(self, msg: SipMessage, addr: Addr, conn: Connection | None, kind: str) -> None:
        now = self.clock()
        if isinstance(msg, SipRequest):
            try:
                self._stamp_via(msg, addr)
            except SipParseError as exc:
                self._reply_directly(msg, exc, addr, conn)
                return
        conn_id = conn.conn_id if conn is not None else None
        direct = self.on_request
        try:
            if direct is not None and isinstance(msg, SipRequest):
                key = self.layer.receive_request(
                    msg, addr, now, reliable=conn is not None, conn_id=conn_id
                )
                if key is not None:
                    direct(msg, key, addr, conn_id, now)
            else:
                self.layer.receive_message(
                    msg, addr, now, reliable=conn is not None, conn_id=conn_id
                )
        except SipParseError as exc:
            if isinstance(msg, SipRequest):
                self._reply_directly(msg, exc, addr, conn)
            return
        self.on_events()
        self.flush()

    def _stamp_via(self, request: SipRequest, addr: Addr) -> None:
        request.stamp_received(addr[0], addr[1])

    def _reply_directly(
        self, request: SipRequest, exc: SipParseError, addr: Addr, conn: Connection | None
    ) -> None:
        """Answer a request the layers above cannot take (bad Via, bad CSeq...)."""
        if request.method == "ACK":
            return
        try:
            response = make_response(request, exc.status_hint, str(exc)[:80])
            data = bytes(response)
        except Exception:  # the request is too broken to answer at all
            log.debug("cannot answer broken request from %s:%d", *addr, exc_info=True)
            return
        self._write(data, addr, conn.conn_id if conn else None)

    # -- output -------------------------------------------------------------
    def flush(self) -> None:
        """Send everything the transaction layer has queued; re-arm its timer."""
        for out in self.layer.messages_to_send():
            self._write(bytes(out.message), cast(Addr, out.addr), out.conn_id)
        self._timer.update(self.layer.get_timer())

    def connection(self, conn_id: object | None) -> Connection | None:
        """The live connection with this id, if any."""
        if not isinstance(conn_id, int):
            return None
        return self.connections.get(conn_id)

    def _write(self, data: bytes, addr: Addr, conn_id: object | None) -> None:
        if conn_id is not None:
            conn = self.connection(conn_id)
            if conn is None:
                log.info(
                    "connection %s gone; dropping %d bytes for %s:%d", conn_id, len(data), *addr
                )
                return
            conn.writer.write(data)
            return
        udp = self._udp
        if udp is None or udp.transport is None:
            return
        udp.transport.sendto(data, addr)

    def _arm(self) -> None:
        self._timer.update(self.layer.get_timer())

    def _on_timer(self, now: float) -> None:
        self.layer.handle_timer(now)
        self.on_events()
        self.flush()

    # -- connections towards peers -----------------------------------------
    async def connect(self, addr: Addr, *, tls: ssl.SSLContext | None = None) -> Connection:
        """Open a stream connection to ``addr`` (an upper platform, a TCP-only peer)."""
        loop = asyncio.get_running_loop()
        kind = "TLS" if tls is not None else "TCP"
        _, protocol = await loop.create_connection(
            lambda: _Stream(self, kind), addr[0], addr[1], ssl=tls
        )
        assert protocol.conn is not None
        return protocol.conn
