"""The media worker: sockets, clock and the selector loop around the sans-IO relay sessions.

This is the only media code that touches sockets or reads the clock (architecture "Data path
in a media worker"). It runs a blocking ``selectors`` loop in its own thread (or process), never
on the signalling event loop: the per-packet cost there is several times higher.

Receive. Python has no ``recvmmsg``, so each readiness event drains the socket with
non-blocking ``recvfrom_into`` calls into one preallocated buffer until ``EAGAIN`` (or
``batch`` packets), which amortises the selector cost over a burst. TCP (RFC 4571, GB/T
28181-2016 Appendix L) goes through :class:`media.rfc4571.Rfc4571Splitter`: passive (we listen,
the device connects) or active (we connect to the address of the device's SDP answer, retrying
for a few seconds, notes §6.4).

Send. The datagrams of one batch are grouped per destination; runs of equal-sized packets
(a shorter one may end a run) go out in one ``sendmsg`` with ``UDP_SEGMENT`` (Linux UDP GSO,
socket option 103 at level ``SOL_UDP``), which the kernel splits into datagrams. The option is
probed once; without it (old kernel, other OS) each datagram is sent on its own. TCP outputs
(we connect to the consumer) get RFC 4571 framing and a bounded write buffer.

Control. Commands run on the loop thread: :meth:`RelayWorker.call` posts a function and waits
for its result, so the platform's thread (or the control server, :mod:`media.control`) never
touches worker state directly.
"""

from __future__ import annotations

import contextlib
import errno
import queue
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from media.ports import PortPool, SsrcTable
from media.relay import Addr, Datagram, OutputSpec, RelayEvent, RelaySession, StreamTimedOut
from media.rfc4571 import Rfc4571Splitter
from media.rfc4571 import frame as rfc4571_frame

__all__ = ["Mode", "RelayWorker", "WorkerConfig", "WorkerError", "gso_supported"]

T = TypeVar("T")

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
SOL_UDP = getattr(socket, "SOL_UDP", 17)
# Linux limits: 64 segments per GSO send, and the whole send must fit one UDP datagram.
_GSO_MAX_SEGMENTS = 64
_GSO_MAX_BYTES = 65000
_RECV_SIZE = 65536
_TCP_OUT_LIMIT = 4 * 1024 * 1024


class Mode(StrEnum):
    """How the device sends media (notes §6.4)."""

    UDP = "udp"
    TCP_PASSIVE = "tcp_passive"
    TCP_ACTIVE = "tcp_active"


class WorkerError(RuntimeError):
    """A control command cannot be done (unknown session, no port, bad argument)."""


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Worker settings; ports ``port_first..port_last`` are this worker's share."""

    host: str = "0.0.0.0"
    port_first: int = 30000
    port_last: int = 30999
    quarantine: float = 15.0
    timeout: float = 15.0
    #: Shared UDP port for single-port mode (sessions keyed by SSRC); None disables it.
    single_port: int | None = None
    connect_retry: float = 0.5
    connect_timeout: float = 5.0
    batch: int = 64
    gso: bool = True
    socket_buffer: int = 4 * 1024 * 1024
    gop_cache_bytes: int = 8 * 1024 * 1024


def gso_supported() -> bool:
    """Return True if this kernel accepts ``UDP_SEGMENT`` on a loopback send."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sink.bind(("127.0.0.1", 0))
        cmsg = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", 8))]
        probe.sendmsg([b"\0" * 16], cmsg, 0, sink.getsockname())
        return True
    except OSError:
        return False
    finally:
        probe.close()
        sink.close()


# -- endpoints -----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Session:
    session_id: int
    mode: Mode
    port: int
    relay: RelaySession
    peer: Addr | None
    sockets: list[socket.socket] = field(default_factory=list)
    tcp_outputs: dict[Addr, _TcpOutput] = field(default_factory=dict)
    output_ids: dict[int, Addr] = field(default_factory=dict)
    splitters: list[Rfc4571Splitter] = field(default_factory=list)
    connect_deadline: float = 0.0
    retry_at: float | None = None
    connect_attempts: int = 0
    pooled: bool = True


@dataclass(eq=False)
class _TcpOutput:
    sock: socket.socket
    connected: bool = False
    pending: bytearray = field(default_factory=bytearray)
    dropped: int = 0
    failed: bool = False


class RelayWorker:
    """Owns the RTP sockets of a share of the port range and relays their sessions.

    Command methods (``open_receiver``, ``add_output``...) must run on the loop thread: call
    them through :meth:`call` while :meth:`run` is running elsewhere, or directly before.
    Events from the sessions are put on :attr:`events` as ``(session_id, event)``.

    :param clock: monotonic seconds; tests may inject one.
    """

    def __init__(
        self, config: WorkerConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config = config or WorkerConfig()
        self.clock = clock
        self.ports = PortPool(config.port_first, config.port_last, config.quarantine)
        self.events: queue.Queue[tuple[int, RelayEvent]] = queue.Queue()
        self._selector = selectors.DefaultSelector()
        self._sessions: dict[int, _Session] = {}
        self._next_id = 1
        self._buf = bytearray(_RECV_SIZE)
        self._view = memoryview(self._buf)
        self._send_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._send_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, config.socket_buffer)
        self._send_sock.setblocking(False)
        self.gso = config.gso and gso_supported()
        self._shared: socket.socket | None = None
        self._ssrc_table: SsrcTable[_Session] = SsrcTable(config.quarantine)
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.send_errors = 0
        self.unrouted = 0
        if config.single_port is not None:
            self._shared = self._udp_socket(config.single_port)
            self._selector.register(self._shared, selectors.EVENT_READ, self._on_shared)

    # -- thread / loop ---------------------------------------------------------------------------

    def start(self) -> None:
        """Run the loop in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="media-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop, wait for its thread and close every socket."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        for session_id in list(self._sessions):
            self.close(session_id)
        for sock in (self._send_sock, self._wake_r, self._wake_w, self._shared):
            if sock is not None:
                sock.close()
        self._selector.close()

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the loop thread and return its result (or raise its exception)."""
        if self._thread is None or threading.current_thread() is self._thread:
            return fn()
        future: Future[T] = Future()
        self._calls.put((fn, future))
        self._wake_w.send(b"x")
        return future.result(timeout)

    def run(self) -> None:
        """The loop: wait for readiness or the next deadline, dispatch, check timers."""
        select = self._selector.select
        while not self._stopping:
            timeout = self._poll_timeout(self.clock())
            for key, mask in select(timeout):
                key.data(key.fileobj, mask)
            self._check_timers(self.clock())

    def _poll_timeout(self, now: float) -> float:
        deadline = now + 1.0
        for session in self._sessions.values():
            timer = session.relay.get_timer()
            if timer is not None and timer < deadline:
                deadline = timer
            if session.retry_at is not None and session.retry_at < deadline:
                deadline = session.retry_at
        return max(0.0, deadline - now)

    def _check_timers(self, now: float) -> None:
        for session in list(self._sessions.values()):
            if session.retry_at is not None and now >= session.retry_at:
                session.retry_at = None
                self._connect(session, now)
            timer = session.relay.get_timer()
            if timer is not None and now >= timer:
                session.relay.handle_timer(now)
                self._drain_events(session)

    def _on_wake(self, sock: Any, mask: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while sock.recv(4096):
                pass
        while True:
            try:
                fn, future = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(fn())
            except Exception as exc:  # handed to the caller's thread
                future.set_exception(exc)

    # -- commands --------------------------------------------------------------------------------

    def open_receiver(
        self,
        mode: Mode | str,
        port: int | None = None,
        ssrc: int | None = None,
        peer: Addr | None = None,
    ) -> dict[str, Any]:
        """Open a receiving session; return ``{"session", "port", "mode"}``.

        ``port`` None takes one from the pool; with ``single_port`` configured and mode UDP,
        ``port`` equal to it shares that port (SSRC routing, ``ssrc`` required). ``peer`` is
        the device's address: the locked source for UDP, whom to connect to for TCP active.
        """
        mode = Mode(mode)
        now = self.clock()
        relay = RelaySession(
            ssrc,
            peer if mode is Mode.UDP else None,
            now=now,
            timeout=self.config.timeout,
            gop_cache_bytes=self.config.gop_cache_bytes,
        )
        session_id = self._next_id
        shared = self.config.single_port
        if mode is Mode.UDP and shared is not None and port == shared:
            if ssrc is None:
                raise WorkerError("single-port mode needs an SSRC")
            session = _Session(session_id, mode, shared, relay, peer, pooled=False)
            self._ssrc_table.bind(ssrc, session, now)
        else:
            sock, port = self._bind(mode, port, now)
            session = _Session(session_id, mode, port, relay, peer, [sock])
            if mode is Mode.UDP:
                self._selector.register(sock, selectors.EVENT_READ, self._udp_reader(session))
            elif mode is Mode.TCP_PASSIVE:
                sock.listen(4)
                self._selector.register(sock, selectors.EVENT_READ, self._acceptor(session))
            else:
                sock.close()
                session.sockets.clear()
                session.connect_deadline = now + self.config.connect_timeout
                if peer is not None:
                    self._connect(session, now)
        self._next_id += 1
        self._sessions[session_id] = session
        return {"session": session_id, "port": session.port, "mode": str(mode)}

    def connect(self, session_id: int, peer: Addr) -> None:
        """TCP active: connect to ``peer`` (the device's SDP answer) now, retrying a while."""
        session = self._session(session_id)
        if session.mode is not Mode.TCP_ACTIVE:
            raise WorkerError(f"session {session_id} is not TCP active")
        now = self.clock()
        session.peer = peer
        session.connect_deadline = now + self.config.connect_timeout
        self._connect(session, now)

    def rekey(self, session_id: int, ssrc: int) -> None:
        """Expect ``ssrc`` (the ``y=`` of the device's answer) in this session."""
        session = self._session(session_id)
        old = session.relay.ssrc
        now = self.clock()
        if session.pooled is False and old is not None:
            self._ssrc_table.rebind(old, ssrc, now)
        session.relay.rekey(ssrc, now)
        self._drain_events(session)

    def add_output(self, session_id: int, addr: Addr, transport: str = "udp", ssrc: int = 0) -> int:
        """Forward a session to ``addr`` (``transport`` "udp" or "tcp"); return the output id."""
        session = self._session(session_id)
        addr = (addr[0], int(addr[1]))
        if transport not in ("udp", "tcp"):
            raise WorkerError(f"unknown output transport {transport!r}")
        if transport == "tcp":
            session.tcp_outputs[addr] = self._tcp_output(addr)
        output_id = session.relay.add_output(OutputSpec(addr, ssrc, transport))
        session.output_ids[output_id] = addr
        self._send(session, session.relay.datagrams_to_send())
        return output_id

    def remove_output(self, session_id: int, output_id: int) -> None:
        session = self._session(session_id)
        try:
            session.relay.remove_output(output_id)
        except KeyError:
            raise WorkerError(f"session {session_id} has no output {output_id}") from None
        addr = session.output_ids.pop(output_id)
        tcp = session.tcp_outputs.pop(addr, None)
        if tcp is not None:
            self._close_socket(tcp.sock)

    def close(self, session_id: int) -> dict[str, Any]:
        """Close a session and its sockets; return its final stats. The port is quarantined."""
        session = self._session(session_id)
        stats = self._stats(session)
        now = self.clock()
        session.relay.close()
        for sock in session.sockets:
            self._close_socket(sock)
        for tcp in session.tcp_outputs.values():
            self._close_socket(tcp.sock)
        if session.pooled:
            self.ports.release(session.port, now)
        elif session.relay.ssrc is not None:
            self._ssrc_table.unbind(session.relay.ssrc, now)
        del self._sessions[session_id]
        return stats

    def stats(self, session_id: int | None = None) -> dict[str, Any]:
        """Counters of one session, or of all sessions and the worker."""
        if session_id is not None:
            return self._stats(self._session(session_id))
        return {
            "sessions": {str(sid): self._stats(s) for sid, s in self._sessions.items()},
            "send_errors": self.send_errors,
            "unrouted": self.unrouted,
            "gso": self.gso,
        }

    def gop_payloads(self, session_id: int) -> list[bytes]:
        """The RTP payloads of a session's GOP cache (see :meth:`RelaySession.gop_payloads`)."""
        return self._session(session_id).relay.gop_payloads()

    # -- internals: sockets ----------------------------------------------------------------------

    def _session(self, session_id: int) -> _Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise WorkerError(f"no session {session_id}") from None

    def _stats(self, session: _Session) -> dict[str, Any]:
        out = session.relay.stats()
        out.update(mode=str(session.mode), port=session.port)
        if session.splitters:
            out["tcp_bytes_skipped"] = sum(s.bytes_skipped for s in session.splitters)
            out["tcp_resyncs"] = sum(s.resyncs for s in session.splitters)
        out["tcp_output_drops"] = sum(t.dropped for t in session.tcp_outputs.values())
        out["connect_attempts"] = session.connect_attempts
        return out

    def _udp_socket(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.config.socket_buffer)
            sock.bind((self.config.host, port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    def _bind(self, mode: Mode, port: int | None, now: float) -> tuple[socket.socket, int]:
        """Take a port from the pool and bind it; a port in use elsewhere is skipped."""
        for _ in range(16):
            try:
                port = self.ports.allocate(now, port)
            except Exception as exc:
                raise WorkerError(str(exc)) from None
            try:
                if mode is Mode.UDP:
                    return self._udp_socket(port), port
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((self.config.host, port))
                except OSError:
                    sock.close()
                    raise
                sock.setblocking(False)
                return sock, port
            except OSError:
                self.ports.release(port, now)
                port = None
        raise WorkerError("no bindable port in the pool")

    def _close_socket(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        sock.close()

    def _drain_events(self, session: _Session) -> None:
        relay = session.relay
        while (event := relay.next_event()) is not None:
            self.events.put((session.session_id, event))
            if isinstance(event, StreamTimedOut):
                for sock in session.sockets:
                    self._close_socket(sock)
                session.sockets.clear()

    # -- internals: receive ----------------------------------------------------------------------

    def _udp_reader(self, session: _Session) -> Callable[[Any, int], None]:
        relay = session.relay
        view = self._view
        recv_limit = self.config.batch

        def on_readable(sock: socket.socket, mask: int) -> None:
            now = self.clock()
            out: list[tuple[Datagram, Addr]] = []
            receive = relay.receive_rtp
            recv = sock.recvfrom_into
            for _ in range(recv_limit):
                try:
                    n, addr = recv(view)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                out += receive(view[:n], addr, now)
            if out:
                self._send(session, out)
            self._drain_events(session)

        return on_readable

    def _on_shared(self, sock: Any, mask: int) -> None:
        now = self.clock()
        view = self._view
        touched: dict[int, tuple[_Session, list[tuple[Datagram, Addr]]]] = {}
        for _ in range(self.config.batch):
            try:
                n, addr = sock.recvfrom_into(view)
            except OSError:
                break
            if n < 12:
                self.unrouted += 1
                continue
            session = self._ssrc_table.lookup(int.from_bytes(view[8:12], "big"))
            if session is None:
                self.unrouted += 1
                continue
            entry = touched.setdefault(session.session_id, (session, []))
            entry[1].extend(session.relay.receive_rtp(view[:n], addr, now))
        for session, out in touched.values():
            self._send(session, out)
            self._drain_events(session)

    def _acceptor(self, session: _Session) -> Callable[[Any, int], None]:
        def on_accept(sock: socket.socket, mask: int) -> None:
            try:
                conn, addr = sock.accept()
            except OSError:
                return
            self._attach_tcp(session, conn, addr)

        return on_accept

    def _attach_tcp(self, session: _Session, conn: socket.socket, addr: Addr) -> None:
        conn.setblocking(False)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.config.socket_buffer)
        splitter = Rfc4571Splitter(ssrc=session.relay.ssrc)
        session.splitters.append(splitter)
        session.sockets.append(conn)
        peer = (addr[0], addr[1])
        relay = session.relay
        buf = self._buf
        view = self._view

        def on_readable(sock: socket.socket, mask: int) -> None:
            now = self.clock()
            out: list[tuple[Datagram, Addr]] = []
            for _ in range(self.config.batch):
                try:
                    n = sock.recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    n = 0
                if n == 0:
                    self._close_socket(sock)
                    if sock in session.sockets:
                        session.sockets.remove(sock)
                    break
                for packet in splitter.feed(bytes(view[:n])):
                    out += relay.receive_rtp(packet, peer, now)
            if out:
                self._send(session, out)
            self._drain_events(session)

        self._selector.register(conn, selectors.EVENT_READ, on_readable)

    def _connect(self, session: _Session, now: float) -> None:
        """TCP active: one non-blocking connect attempt from our port to the device."""
        if session.peer is None or session.relay.closed:
            return
        session.connect_attempts += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        try:
            sock.bind((self.config.host, session.port))
        except OSError:
            sock.close()
            self._retry(session, now)
            return
        code = sock.connect_ex(session.peer)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._retry(session, now)
            return
        session.sockets.append(sock)

        def on_connected(s: socket.socket, mask: int) -> None:
            self._selector.unregister(s)
            session.sockets.remove(s)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                s.close()
                self._retry(session, self.clock())
                return
            assert session.peer is not None
            self._attach_tcp(session, s, session.peer)

        self._selector.register(sock, selectors.EVENT_WRITE, on_connected)

    def _retry(self, session: _Session, now: float) -> None:
        if now + self.config.connect_retry <= session.connect_deadline:
            session.retry_at = now + self.config.connect_retry

    # -- internals: send -------------------------------------------------------------------------

    def _tcp_output(self, addr: Addr) -> _TcpOutput:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        out = _TcpOutput(sock)
        code = sock.connect_ex(addr)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise WorkerError(f"cannot connect to {addr[0]}:{addr[1]}: {errno.errorcode[code]}")

        def on_connected(s: socket.socket, mask: int) -> None:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                out.failed = True
                self._close_socket(s)
                return
            out.connected = True
            self._selector.unregister(s)
            self._tcp_write(out)

        self._selector.register(sock, selectors.EVENT_WRITE, on_connected)
        return out

    def _send(self, session: _Session, out: list[tuple[Datagram, Addr]]) -> None:
        if not out:
            return
        tcp = session.tcp_outputs
        if tcp:
            udp = []
            for data, addr in out:
                stream = tcp.get(addr)
                if stream is None:
                    udp.append((data, addr))
                elif not stream.failed:
                    if len(stream.pending) > _TCP_OUT_LIMIT:
                        stream.dropped += 1
                        continue
                    stream.pending += rfc4571_frame(bytes(data))
            for stream in tcp.values():
                self._tcp_write(stream)
            out = udp
        if self.gso:
            self._send_gso(out)
        else:
            self._send_plain(out)

    def _tcp_write(self, out: _TcpOutput) -> None:
        if not out.pending or not out.connected or out.failed:
            return
        try:
            sent = out.sock.send(out.pending)
        except BlockingIOError:
            sent = 0
        except OSError:
            out.failed = True
            self._close_socket(out.sock)
            return
        del out.pending[:sent]
        if out.pending:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.get_key(out.sock)
                return
            self._selector.register(out.sock, selectors.EVENT_WRITE, self._tcp_writer(out))

    def _tcp_writer(self, out: _TcpOutput) -> Callable[[Any, int], None]:
        def on_writable(s: socket.socket, mask: int) -> None:
            self._tcp_write(out)
            if not out.pending and not out.failed:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(s)

        return on_writable

    def _send_plain(self, out: list[tuple[Datagram, Addr]]) -> None:
        sendto = self._send_sock.sendto
        for data, addr in out:
            try:
                sendto(data, addr)
            except OSError:
                self.send_errors += 1

    def _send_gso(self, out: list[tuple[Datagram, Addr]]) -> None:
        """Send runs of equal-sized datagrams per destination with one GSO ``sendmsg`` each."""
        by_addr: dict[Addr, list[Datagram]] = {}
        for data, addr in out:
            by_addr.setdefault(addr, []).append(data)
        sock = self._send_sock
        for addr, items in by_addr.items():
            i, count = 0, len(items)
            while i < count:
                size = len(items[i])
                j = i + 1
                total = size
                # A run: same size; the last one may be shorter (the kernel allows that).
                while j < count and j - i < _GSO_MAX_SEGMENTS and total + size <= _GSO_MAX_BYTES:
                    length = len(items[j])
                    if length > size:
                        break
                    total += length
                    j += 1
                    if length < size:
                        break
                try:
                    if j - i == 1:
                        sock.sendto(items[i], addr)
                    else:
                        cmsg = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))]
                        sock.sendmsg([b"".join(items[i:j])], cmsg, 0, addr)
                except OSError:
                    self.send_errors += j - i
                i = j
