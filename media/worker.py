"""The media worker: sockets, clock and the selector loop around the sans-IO relay sessions.

This is the only media code that touches sockets or reads the clock (architecture "Data path
in a media worker"). It runs a blocking ``selectors`` loop in its own thread (or process), never
on the signalling event loop: the per-packet cost there is several times higher.

Receive. UDP sockets ask for UDP GRO (``UDP_GRO``, socket option 104 at level ``SOL_UDP``):
the kernel then hands over up to 64 datagrams of one flow in one ``recvmsg``, glued together,
with the segment size in a ``UDP_GRO`` control message. The relay session takes such a batch a
column at a time (:meth:`media.relay.RelaySession.receive_batch`), so the Python cost is per
batch. When several sockets are ready, each gives one batch per wake-up (the level-triggered
poll reports the rest), which spares the failing read that ends a drain; a lone ready socket
is drained. Timers (no-media timeout, TCP connect retries) sit in a heap, so a wake-up costs
the same with one session or a thousand (BENCHMARKS.md). Without GRO (old kernel, other OS,
``gro = false``) each readiness event drains the socket with non-blocking ``recvfrom_into``
calls into one preallocated buffer until ``EAGAIN`` (or ``batch`` packets), and packets go
through the relay one by one. TCP (RFC 4571, GB/T
28181-2016 Appendix L) goes through :class:`media.rfc4571.Rfc4571Splitter`: passive (we listen,
the device connects) or active (we connect to the address of the device's SDP answer, retrying
for a few seconds, notes §6.4).

Send. A rewritten batch goes to its output in one ``sendmsg`` with ``UDP_SEGMENT`` (Linux UDP
GSO, option 103), which the kernel splits into datagrams; single packets are grouped per
destination into runs of equal size (a shorter one may end a run) for the same. Both options
are probed once; without GSO each datagram is sent on its own. TCP outputs get RFC 4571 framing
and a bounded write buffer: "tcp-active" (we connect to the consumer) or "tcp-passive" (we
listen on a port from the pool and send once the consumer connects: a caller whose SDP says
``a=setup:active``).

Control. Commands run on the loop thread: :meth:`RelayWorker.call` posts a function and waits
for its result, so the platform's thread (or the control server, :mod:`media.control`) never
touches worker state directly.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import logging
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
from media.relay import (
    Addr,
    Chunk,
    Datagram,
    OutputClosed,
    OutputSpec,
    RelayEvent,
    RelaySession,
    StreamTimedOut,
)
from media.rfc4571 import Rfc4571Splitter
from media.rfc4571 import frame as rfc4571_frame

__all__ = [
    "OUTPUT_TRANSPORTS",
    "Mode",
    "RelayWorker",
    "WorkerConfig",
    "WorkerError",
    "gro_supported",
    "gso_supported",
]

T = TypeVar("T")
_log = logging.getLogger(__name__)

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
UDP_GRO = getattr(socket, "UDP_GRO", 104)
SOL_UDP = getattr(socket, "SOL_UDP", 17)
_GRO_CMSG_SPACE = socket.CMSG_SPACE(4)
_INT = struct.Struct("=i")
#: With more sockets ready than this, GRO sockets are read once per wake-up, not drained.
_DRAIN_BELOW = 1
# Linux limits: 64 segments per GSO send, and the whole send must fit one UDP datagram.
_GSO_MAX_SEGMENTS = 64
_GSO_MAX_BYTES = 65000
_RECV_SIZE = 65536
_TCP_OUT_LIMIT = 4 * 1024 * 1024
#: Output transports (as seen from us) and their spellings.
OUTPUT_TRANSPORTS = {
    "udp": "udp",
    "tcp": "tcp-active",
    "tcp-active": "tcp-active",
    "tcp_active": "tcp-active",
    "tcp-passive": "tcp-passive",
    "tcp_passive": "tcp-passive",
}


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
    #: Ask for UDP GRO on receive sockets (batches of one flow per ``recvmsg``).
    gro: bool = True
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


def gro_supported() -> bool:
    """Return True if this kernel accepts ``UDP_GRO`` on a UDP socket."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.setsockopt(SOL_UDP, UDP_GRO, 1)
        return True
    except OSError:
        return False
    finally:
        probe.close()


# -- endpoints -----------------------------------------------------------------------------------


@dataclass(eq=False)
class _TcpOutput:
    sock: socket.socket
    connected: bool = False
    pending: bytearray = field(default_factory=bytearray)
    dropped: int = 0
    failed: bool = False


@dataclass(eq=False)
class _Output:
    """Where one relay output goes: a UDP address, or a TCP stream (RFC 4571)."""

    output_id: int
    transport: str
    addr: Addr
    tcp: _TcpOutput | None = None
    #: TCP passive: the socket listening for the consumer, and its pooled port.
    listener: socket.socket | None = None
    port: int | None = None
    #: TCP passive: connections refused (not from the consumer's host, or a second one).
    refused: int = 0


@dataclass(eq=False)
class _Session:
    session_id: int
    mode: Mode
    port: int
    relay: RelaySession
    peer: Addr | None
    sockets: list[socket.socket] = field(default_factory=list)
    outputs: dict[int, _Output] = field(default_factory=dict)
    splitters: list[Rfc4571Splitter] = field(default_factory=list)
    connect_deadline: float = 0.0
    retry_at: float | None = None
    connect_attempts: int = 0
    pooled: bool = True
    #: Receives that returned several datagrams glued by UDP GRO.
    gro_batches: int = 0
    #: Receives longer than the buffer (dropped).
    truncated: int = 0
    #: Which of the session's entries in the worker's timer heap is live.
    timer_token: int = 0


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
        #: ``(deadline, session id, token)``: see :meth:`_schedule`.
        self._timers: list[tuple[float, int, int]] = []
        self._next_id = 1
        self._buf = bytearray(_RECV_SIZE)
        self._view = memoryview(self._buf)
        self._send_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._send_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, config.socket_buffer)
        self._send_sock.setblocking(False)
        self.gso = config.gso and gso_supported()
        self.gro = config.gro and gro_supported()
        self._shared: socket.socket | None = None
        self._ssrc_table: SsrcTable[_Session] = SsrcTable(config.quarantine)
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self._stopping = False
        self._gro_reads = config.batch
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
        batch = self.config.batch
        while not self._stopping:
            timeout = self._poll_timeout(self.clock())
            ready = select(timeout)
            # Several sockets ready: read one GRO batch from each and come back (level-triggered
            # epoll reports the rest), which spares the failing read that ends a drain; one
            # socket ready: drain it (fewer wake-ups for one hot stream). Measured both ways.
            self._gro_reads = 1 if len(ready) > _DRAIN_BELOW else batch
            for key, mask in ready:
                key.data(key.fileobj, mask)
            self._check_timers(self.clock())

    def _poll_timeout(self, now: float) -> float:
        timers = self._timers
        deadline = now + 1.0
        if timers and timers[0][0] < deadline:
            deadline = timers[0][0]
        return max(0.0, deadline - now)

    def _schedule(self, session: _Session) -> None:
        """Queue the session's next deadline (no-media timeout or TCP connect retry).

        Deadlines sit in a heap and are checked lazily: packets only ever push the no-media
        deadline later, so they touch no timer; an expired entry is re-read from the session
        and re-queued if it moved. The loop's cost per wake-up does not grow with sessions.
        """
        deadline = session.relay.get_timer()
        if session.retry_at is not None and (deadline is None or session.retry_at < deadline):
            deadline = session.retry_at
        # One live entry per session: an older one is recognised by its token and skipped.
        session.timer_token += 1
        if deadline is not None:
            heapq.heappush(self._timers, (deadline, session.session_id, session.timer_token))

    def _check_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, session_id, token = heapq.heappop(timers)
            session = self._sessions.get(session_id)
            if session is None or token != session.timer_token:
                continue
            if session.retry_at is not None and now >= session.retry_at:
                session.retry_at = None
                self._connect(session, now)
            timer = session.relay.get_timer()
            if timer is not None and now >= timer:
                session.relay.handle_timer(now)
                self._drain_events(session)
            self._schedule(session)

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
        self._schedule(session)
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

    def expect_media(self, session_id: int) -> None:
        """Restart the no-media clock of a session that has had no packet yet (its INVITE is
        still being answered); the timer heap re-reads the later deadline when the old one
        comes due."""
        self._session(session_id).relay.restart_timer(self.clock())

    def pause_timeout(self, session_id: int) -> None:
        """Stop the no-media clock of a session whose sender was told to pause (a paused
        playback sends nothing); its timer entry lapses when it comes due."""
        self._session(session_id).relay.pause_timer()

    def resume_timeout(self, session_id: int) -> None:
        """Run a paused no-media clock again, from now (the sender was told to play on)."""
        session = self._session(session_id)
        session.relay.resume_timer(self.clock())
        self._schedule(session)

    def add_output(self, session_id: int, addr: Addr, transport: str = "udp", ssrc: int = 0) -> int:
        """Forward a session to ``addr`` with SSRC ``ssrc``; return the output id.

        ``transport`` (as seen from us): "udp"; "tcp-active" (or "tcp": we connect to
        ``addr``); "tcp-passive": we listen on a port from the pool (:meth:`output_info`
        gives it, as does the control command) and send once the consumer connects from
        ``addr``'s host (any host if it is "" or "0.0.0.0"; ``addr``'s port is not checked,
        callers announce 9 or anything with ``a=setup:active``). Until then nothing is sent;
        the consumer starts at the cached keyframe.
        """
        session = self._session(session_id)
        addr = (addr[0], int(addr[1]))
        kind = OUTPUT_TRANSPORTS.get(transport)
        if kind is None:
            raise WorkerError(f"unknown output transport {transport!r}")
        now = self.clock()
        output = _Output(0, kind, addr)
        if kind == "tcp-active":
            output.tcp = self._tcp_output(session, output, addr)
        elif kind == "tcp-passive":
            listener, output.port = self._bind(Mode.TCP_PASSIVE, None, now)
            listener.listen(1)
            output.listener = listener
        spec = OutputSpec(addr, ssrc, kind)
        output_id = session.relay.add_output(spec, active=kind != "tcp-passive", now=now)
        output.output_id = output_id
        session.outputs[output_id] = output
        if output.listener is not None:
            self._selector.register(
                output.listener, selectors.EVENT_READ, self._output_acceptor(session, output)
            )
        self._send(session, session.relay.chunks_to_send())
        self._drain_events(session)
        return output_id

    def output_info(self, session_id: int, output_id: int) -> dict[str, Any]:
        """One output: transport, address, local ``port`` (TCP passive), counters."""
        session = self._session(session_id)
        output = session.outputs.get(output_id)
        if output is None:
            raise WorkerError(f"session {session_id} has no output {output_id}")
        return self._output_stats(session, output)

    def remove_output(self, session_id: int, output_id: int) -> None:
        session = self._session(session_id)
        try:
            session.relay.remove_output(output_id)
        except KeyError:
            raise WorkerError(f"session {session_id} has no output {output_id}") from None
        self._close_output(session.outputs.pop(output_id), self.clock())

    def close(self, session_id: int) -> dict[str, Any]:
        """Close a session and its sockets; return its final stats. The port is quarantined."""
        session = self._session(session_id)
        stats = self._stats(session)
        now = self.clock()
        session.relay.close()
        for sock in session.sockets:
            self._close_socket(sock)
        for output in session.outputs.values():
            self._close_output(output, now)
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
            "gro": self.gro,
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
        out["tcp_output_drops"] = sum(
            o.tcp.dropped for o in session.outputs.values() if o.tcp is not None
        )
        out["output_stats"] = {
            str(oid): self._output_stats(session, o) for oid, o in session.outputs.items()
        }
        out["connect_attempts"] = session.connect_attempts
        out["gro_batches"] = session.gro_batches
        out["truncated"] = session.truncated
        return out

    def _output_stats(self, session: _Session, output: _Output) -> dict[str, Any]:
        out: dict[str, Any] = dict(session.relay.output_stats(output.output_id))
        tcp = output.tcp
        out.update(
            output=output.output_id,
            addr=list(output.addr),
            port=output.port,
            connected=output.transport == "udp" or (tcp is not None and tcp.connected),
            failed=tcp is not None and tcp.failed,
            tcp_drops=0 if tcp is None else tcp.dropped,
            refused=output.refused,
        )
        return out

    def _udp_socket(self, port: int, gro: bool = False) -> socket.socket:
        """A non-blocking UDP socket on ``port``; ``gro``: one stream's port (the shared
        port may mix streams from one source, which the column path would only reject)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.config.socket_buffer)
            if gro:
                sock.setsockopt(SOL_UDP, UDP_GRO, 1)
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
                    return self._udp_socket(port, self.gro), port
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
        send = self._send

        if self.gro:

            def on_batches(sock: socket.socket, mask: int) -> None:
                now = self.clock()
                recvmsg = sock.recvmsg_into
                buffers = [view]
                for _ in range(self._gro_reads):
                    try:
                        n, ancdata, flags, addr = recvmsg(buffers, _GRO_CMSG_SPACE)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as exc:
                        _log.warning(
                            "media session %d: recvmsg failed: %s", session.session_id, exc
                        )
                        break
                    if flags & socket.MSG_TRUNC:  # not below 64 KiB; never relay a part
                        session.truncated += 1
                        continue
                    segment = n
                    for level, kind, data in ancdata:
                        if level == SOL_UDP and kind == UDP_GRO and len(data) >= 4:
                            segment = _INT.unpack_from(data)[0]
                            session.gro_batches += 1
                    chunks = relay.receive_batch(view[:n], segment, addr, now)
                    if chunks:
                        send(session, chunks)
                self._drain_events(session)

            return on_batches

        def on_readable(sock: socket.socket, mask: int) -> None:
            now = self.clock()
            out: list[Chunk] = []
            receive = relay.receive_batch
            recv = sock.recvfrom_into
            for _ in range(recv_limit):
                try:
                    n, addr = recv(view)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    _log.warning("media session %d: recv failed: %s", session.session_id, exc)
                    break
                out += receive(view[:n], n, addr, now)
            if out:
                send(session, out)
            self._drain_events(session)

        return on_readable

    def _on_shared(self, sock: Any, mask: int) -> None:
        now = self.clock()
        view = self._view
        touched: dict[int, tuple[_Session, list[Chunk]]] = {}
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
            entry[1].extend(session.relay.receive_batch(view[:n], n, addr, now))
        for session, out in touched.values():
            self._send(session, out)
            self._drain_events(session)

    def _acceptor(self, session: _Session) -> Callable[[Any, int], None]:
        def on_accept(sock: socket.socket, mask: int) -> None:
            try:
                conn, addr = sock.accept()
            except OSError as exc:
                _log.warning("media session %d: accept failed: %s", session.session_id, exc)
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
            out: list[Chunk] = []
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
                    out += relay.receive_batch(packet, len(packet), peer, now)
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
            self._schedule(session)

    # -- internals: outputs ----------------------------------------------------------------------

    def _tcp_output(self, session: _Session, output: _Output, addr: Addr) -> _TcpOutput:
        """TCP active output: connect to the consumer; packets queue until connected."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        stream = _TcpOutput(sock)
        code = sock.connect_ex(addr)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise WorkerError(f"cannot connect to {addr[0]}:{addr[1]}: {errno.errorcode[code]}")

        def on_connected(s: socket.socket, mask: int) -> None:
            self._selector.unregister(s)
            error = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                self._fail_output(session, output, f"connect: {errno.errorcode.get(error, error)}")
                return
            stream.connected = True
            self._tcp_write(session, output)

        self._selector.register(sock, selectors.EVENT_WRITE, on_connected)
        return stream

    def _output_acceptor(self, session: _Session, output: _Output) -> Callable[[Any, int], None]:
        """TCP passive output: accept the consumer, then start sending to it."""
        host = output.addr[0]
        any_host = host in ("", "0.0.0.0", "::")

        def on_accept(sock: socket.socket, mask: int) -> None:
            try:
                conn, addr = sock.accept()
            except OSError as exc:
                _log.warning("media output %d: accept failed: %s", output.output_id, exc)
                return
            if output.tcp is not None or not (any_host or addr[0] == host):
                output.refused += 1
                _log.warning(
                    "media output %d: refused a connection from %s:%d (expected %s)",
                    output.output_id,
                    addr[0],
                    addr[1],
                    host,
                )
                conn.close()
                return
            conn.setblocking(False)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.socket_buffer)
            # One consumer per output: stop listening (the port stays ours until removal).
            self._close_socket(sock)
            output.listener = None
            output.tcp = _TcpOutput(conn, connected=True)
            now = self.clock()
            try:
                session.relay.activate(output.output_id, now)
            except KeyError:  # removed meanwhile
                conn.close()
                return
            self._send(session, session.relay.chunks_to_send())
            self._drain_events(session)

        return on_accept

    def _close_output(self, output: _Output, now: float) -> None:
        if output.tcp is not None:
            self._close_socket(output.tcp.sock)
        if output.listener is not None:
            self._close_socket(output.listener)
            output.listener = None
        if output.port is not None:
            self.ports.release(output.port, now)
            output.port = None

    def _fail_output(self, session: _Session, output: _Output, reason: str) -> None:
        """A TCP consumer went away: stop writing to it and tell the platform."""
        stream = output.tcp
        if stream is None or stream.failed:
            return
        stream.failed = True
        stream.pending.clear()
        self._close_socket(stream.sock)
        _log.info("media output %d closed: %s", output.output_id, reason)
        self.events.put((session.session_id, OutputClosed(output.output_id, reason, self.clock())))

    # -- internals: send -------------------------------------------------------------------------

    def _send(self, session: _Session, chunks: list[Chunk]) -> None:
        """Send each chunk to its output: UDP (GSO when the chunk is a batch) or TCP."""
        outputs = session.outputs
        singles: dict[Addr, list[Datagram]] = {}
        tcp_touched: list[_Output] = []
        for output_id, data, segment in chunks:
            output = outputs.get(output_id)
            if output is None:
                continue
            if output.tcp is not None:
                self._tcp_queue(output.tcp, data, segment)
                tcp_touched.append(output)
            elif output.transport != "udp":
                continue  # TCP passive before the consumer connected (not activated anyway)
            elif len(data) > segment:
                self._send_chunk(output.addr, data, segment)
            else:
                singles.setdefault(output.addr, []).append(data)
        for output in tcp_touched:
            self._tcp_write(session, output)
        for addr, items in singles.items():
            if self.gso and len(items) > 1:
                self._send_runs(addr, items)
            else:
                self._send_plain(addr, items)

    def _tcp_queue(self, stream: _TcpOutput, data: Datagram, segment: int) -> None:
        if stream.failed:
            return
        pending = stream.pending
        for offset in range(0, len(data), segment):
            if len(pending) > _TCP_OUT_LIMIT:
                stream.dropped += 1
                continue
            pending += rfc4571_frame(bytes(data[offset : offset + segment]))

    def _tcp_write(self, session: _Session, output: _Output) -> None:
        stream = output.tcp
        if stream is None or not stream.pending or not stream.connected or stream.failed:
            return
        try:
            sent = stream.sock.send(stream.pending)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._fail_output(session, output, f"send: {exc}")
            return
        del stream.pending[:sent]
        if stream.pending:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.get_key(stream.sock)
                return
            self._selector.register(
                stream.sock, selectors.EVENT_WRITE, self._tcp_writer(session, output)
            )

    def _tcp_writer(self, session: _Session, output: _Output) -> Callable[[Any, int], None]:
        def on_writable(s: socket.socket, mask: int) -> None:
            self._tcp_write(session, output)
            stream = output.tcp
            if stream is not None and not stream.pending and not stream.failed:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(s)

        return on_writable

    def _send_plain(self, addr: Addr, items: list[Datagram]) -> None:
        sendto = self._send_sock.sendto
        for data in items:
            try:
                sendto(data, addr)
            except OSError:
                self.send_errors += 1

    def _send_chunk(self, addr: Addr, data: Datagram, segment: int) -> None:
        """Send packets of ``segment`` bytes glued in ``data``: GSO sends, or one by one."""
        sock = self._send_sock
        n = len(data)
        if not self.gso:
            sendto = sock.sendto
            view = memoryview(data)
            for offset in range(0, n, segment):
                try:
                    sendto(view[offset : offset + segment], addr)
                except OSError:
                    self.send_errors += 1
            return
        step = segment * min(_GSO_MAX_SEGMENTS, max(1, _GSO_MAX_BYTES // segment))
        cmsg = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", segment))]
        if n <= step:
            try:
                sock.sendmsg([data], cmsg, 0, addr)
            except OSError:
                self.send_errors += (n + segment - 1) // segment
            return
        view = memoryview(data)
        for offset in range(0, n, step):
            part = view[offset : offset + step]
            try:
                sock.sendmsg([part], cmsg, 0, addr)
            except OSError:
                self.send_errors += (len(part) + segment - 1) // segment

    def _send_runs(self, addr: Addr, items: list[Datagram]) -> None:
        """Send runs of equal-sized datagrams to one destination with one GSO send each."""
        sock = self._send_sock
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
