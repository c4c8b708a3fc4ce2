"""The playback worker: one thread pacing many :class:`media.playback.PlaybackStream` out.

This is the I/O shell around the sans-IO pacer (notes §6.9, §8): it reads the clock, sleeps in
a ``selectors`` loop until the earliest stream timer, pulls the packets that are due and sends
them. Outputs (transport as seen from us, notes §6.4):

* ``udp``: datagrams from a socket of the stream's own (a stable source port per stream);
* ``tcp-active``: we connect to the consumer;
* ``tcp-passive``: we listen on a port of our own and accept the first connection (the
  consumer's SDP said ``a=setup:active``); the port is returned by :meth:`open_stream`.

TCP carries RFC 4571 framing (:func:`media.rfc4571.frame`). Until the TCP connection is up the
stream is held paused, so nothing is lost or buffered without bound; a consumer that is slower
than the pacing applies back-pressure: no pull while more than :data:`TCP_HIGH_WATER` bytes
wait to be written (a download then runs at the consumer's speed).

Commands run on the loop thread through :meth:`PlaybackWorker.call`, as in
:class:`media.worker.RelayWorker`. Endings go on :attr:`PlaybackWorker.events` as
``(stream_id, reason)``: ``"finished"`` at the end of the range (all bytes written), or
``"failed: ..."`` when the consumer cannot be reached or closes its connection.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from media.playback import PlaybackStream
from media.rfc4571 import frame as rfc4571_frame

__all__ = ["TRANSPORTS", "PlaybackWorker", "PlaybackWorkerError"]

T = TypeVar("T")
log = logging.getLogger(__name__)
Addr = tuple[str, int]

TRANSPORTS = ("udp", "tcp-active", "tcp-passive")
#: Bytes waiting on a TCP output above which the stream is not pulled.
TCP_HIGH_WATER = 256 * 1024
#: Seconds a TCP consumer has to connect (passive) or to accept our connection (active).
CONNECT_TIMEOUT = 15.0


class PlaybackWorkerError(RuntimeError):
    """A command cannot be done: unknown stream, bad transport, no socket."""


@dataclass(eq=False)
class _Entry:
    stream_id: int
    stream: PlaybackStream
    transport: str
    peer: Addr
    local_port: int = 0
    sock: socket.socket | None = None  # UDP socket, or the TCP connection once up
    listener: socket.socket | None = None
    pending: bytearray = field(default_factory=bytearray)
    held: bool = False  # waiting for the TCP connection
    resume_on_connect: bool = True
    connect_deadline: float | None = None
    done: str | None = None  # the reason, once ended
    send_errors: int = 0


class PlaybackWorker:
    """Owns the playback streams and their sockets; runs in its own thread.

    :param host: local address to bind output sockets and passive listeners to.
    :param clock: monotonic seconds; streams are created and driven with this clock.
    """

    def __init__(
        self,
        host: str = "0.0.0.0",
        *,
        clock: Callable[[], float] = time.monotonic,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.host = host
        self.clock = clock
        self.connect_timeout = connect_timeout
        self.events: queue.Queue[tuple[int, str]] = queue.Queue()
        self._selector = selectors.DefaultSelector()
        self._entries: dict[int, _Entry] = {}
        self._next_id = 1
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- thread / loop ---------------------------------------------------------------------

    def start(self) -> None:
        """Run the loop in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="playback-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop, wait for its thread, close every stream."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        for stream_id in list(self._entries):
            self.close(stream_id)
        self._wake_r.close()
        self._wake_w.close()
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
        """The loop: sleep until the earliest timer or readiness, then send what is due."""
        while not self._stopping:
            now = self.clock()
            for key, mask in self._selector.select(self._timeout(now)):
                key.data(key.fileobj, mask)
            self._tick(self.clock())

    def _timeout(self, now: float) -> float:
        deadline = now + 1.0
        for entry in self._entries.values():
            if entry.done is not None:
                continue
            timer = entry.stream.get_timer()
            if entry.held or len(entry.pending) > TCP_HIGH_WATER:
                timer = None
            if timer is not None and timer < deadline:
                deadline = timer
            if entry.connect_deadline is not None and entry.connect_deadline < deadline:
                deadline = entry.connect_deadline
        return max(0.0, deadline - now)

    def _tick(self, now: float) -> None:
        for entry in list(self._entries.values()):
            if entry.done is not None:
                continue
            if entry.connect_deadline is not None and now >= entry.connect_deadline:
                self._end(entry, "failed: consumer did not connect")
                continue
            if entry.held or len(entry.pending) > TCP_HIGH_WATER:
                continue
            timer = entry.stream.get_timer()
            if timer is not None and now >= timer:
                try:
                    packets = entry.stream.pull(now)
                except Exception as exc:  # a segment that cannot be read ends this stream only
                    log.exception("playback stream %d failed", entry.stream_id)
                    self._end(entry, f"failed: {exc}")
                    continue
                self._send(entry, packets)
            if entry.stream.finished and not entry.pending:
                self._end(entry, "finished")

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

    # -- commands (loop thread) ------------------------------------------------------------

    def open_stream(
        self, make: Callable[[float], PlaybackStream], output: tuple[str, int, str]
    ) -> dict[str, Any]:
        """Create a stream with ``make(now)`` and send it to ``output`` ``(host, port,
        transport)``; return ``{"stream", "local_port"}`` (the listening port for
        ``tcp-passive``, the source port otherwise).

        :raises PlaybackWorkerError: unknown transport or a socket that cannot be opened.
        """
        host, port, transport = output
        transport = transport.lower()
        if transport not in TRANSPORTS:
            raise PlaybackWorkerError(f"unknown transport {transport!r}")
        now = self.clock()
        stream = make(now)
        entry = _Entry(self._next_id, stream, transport, (host, port))
        try:
            if transport == "udp":
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setblocking(False)
                sock.bind((self.host, 0))
                entry.sock = sock
                entry.local_port = sock.getsockname()[1]
            else:
                stream.pause(now)
                entry.held = True
                entry.connect_deadline = now + self.connect_timeout
                if transport == "tcp-active":
                    self._connect(entry)
                else:
                    self._listen(entry)
        except OSError as exc:
            self._close_sockets(entry)
            raise PlaybackWorkerError(f"cannot open {transport} output: {exc}") from None
        self._next_id += 1
        self._entries[entry.stream_id] = entry
        return {"stream": entry.stream_id, "local_port": entry.local_port}

    def control(self, stream_id: int, action: Callable[[PlaybackStream, float], None]) -> None:
        """Apply ``action(stream, now)`` (pause, resume, scale, seek) on the loop thread.

        While a TCP output is still connecting, the stream stays held; what the action left
        (paused or playing) is applied when the connection is up.
        """
        entry = self._entry(stream_id)
        now = self.clock()
        if entry.held:
            entry.stream.resume(now)
            action(entry.stream, now)
            entry.resume_on_connect = not entry.stream.paused
            entry.stream.pause(now)
            return
        action(entry.stream, now)
        if entry.stream.finished is False and entry.done == "finished":
            entry.done = None  # a seek back after the end plays again

    def close(self, stream_id: int) -> dict[str, Any]:
        """End a stream and close its sockets; return its final stats."""
        entry = self._entries.pop(stream_id, None)
        if entry is None:
            raise PlaybackWorkerError(f"no playback stream {stream_id}")
        self._close_sockets(entry)
        return self._stats(entry)

    def stats(self, stream_id: int) -> dict[str, Any]:
        """Counters and state of one stream."""
        return self._stats(self._entry(stream_id))

    # -- internals -------------------------------------------------------------------------

    def _entry(self, stream_id: int) -> _Entry:
        entry = self._entries.get(stream_id)
        if entry is None:
            raise PlaybackWorkerError(f"no playback stream {stream_id}")
        return entry

    def _stats(self, entry: _Entry) -> dict[str, Any]:
        s = entry.stream
        return {
            "frames": s.frames_sent,
            "packets": s.packets_sent,
            "bytes": s.bytes_sent,
            "paused": s.paused,
            "finished": s.finished,
            "scale": s.rate,
            "connected": not entry.held,
            "ended": entry.done,
            "send_errors": entry.send_errors,
        }

    def _end(self, entry: _Entry, reason: str) -> None:
        if entry.done is not None:
            return
        entry.done = reason
        entry.connect_deadline = None
        if reason != "finished":
            self._close_sockets(entry)
        self.events.put((entry.stream_id, reason))

    def _close_sockets(self, entry: _Entry) -> None:
        for sock in (entry.sock, entry.listener):
            if sock is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(sock)
                sock.close()
        entry.sock = entry.listener = None

    def _listen(self, entry: _Entry) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(1)
        listener.setblocking(False)
        entry.listener = listener
        entry.local_port = listener.getsockname()[1]

        def on_accept(sock: Any, mask: int) -> None:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                self._end(entry, f"failed: accept: {exc}")
                return
            self._selector.unregister(sock)
            sock.close()
            entry.listener = None
            self._connected(entry, conn)

        self._selector.register(listener, selectors.EVENT_READ, on_accept)

    def _connect(self, entry: _Entry) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex(entry.peer)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(code, errno.errorcode.get(code, str(code)))
        entry.local_port = sock.getsockname()[1]

        def on_connected(s: Any, mask: int) -> None:
            self._selector.unregister(s)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                s.close()
                self._end(entry, f"failed: connect: {errno.errorcode.get(err, err)}")
                return
            self._connected(entry, s)

        self._selector.register(sock, selectors.EVENT_WRITE, on_connected)

    def _connected(self, entry: _Entry, conn: socket.socket) -> None:
        conn.setblocking(False)
        entry.sock = conn
        entry.held = False
        entry.connect_deadline = None
        if entry.resume_on_connect:
            entry.stream.resume(self.clock())
        self._selector.register(conn, selectors.EVENT_READ, self._on_tcp(entry))

    def _on_tcp(self, entry: _Entry) -> Callable[[Any, int], None]:
        def on_event(sock: Any, mask: int) -> None:
            if mask & selectors.EVENT_READ:
                try:
                    data = sock.recv(4096)  # RTCP or nothing: read and drop
                except BlockingIOError:
                    data = b"x"
                except OSError:
                    data = b""
                if not data:
                    self._end(entry, "failed: consumer closed the connection")
                    return
            if mask & selectors.EVENT_WRITE:
                self._flush(entry)

        return on_event

    def _send(self, entry: _Entry, packets: list[bytes]) -> None:
        if not packets or entry.sock is None:
            return
        if entry.transport == "udp":
            for packet in packets:
                try:
                    entry.sock.sendto(packet, entry.peer)
                except OSError:
                    entry.send_errors += 1
            return
        entry.pending += b"".join(rfc4571_frame(p) for p in packets)
        self._flush(entry)

    def _flush(self, entry: _Entry) -> None:
        sock = entry.sock
        if sock is None:
            return
        if entry.pending:
            try:
                sent = sock.send(entry.pending)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._end(entry, f"failed: send: {exc}")
                return
            del entry.pending[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if entry.pending else 0)
        with contextlib.suppress(KeyError, ValueError):
            if self._selector.get_key(sock).events != events:
                self._selector.modify(sock, events, self._on_tcp(entry))
