"""Recording: a sans-IO segment writer and the thread that feeds it from loopback UDP.

The recorder is one more consumer of the live relay (architecture "Recording"): the platform
adds an output to ``127.0.0.1:<recorder port>`` for the channel, so recording shares the
camera's one stream, works when the media worker runs in another process, and never slows the
relay (a slow disk only fills this thread's socket buffer).

:class:`SegmentWriter` (sans-IO) turns whole RTP frames (the payloads of one
:class:`media.frame_assembler.AssembledFrame`) into segment files: it cuts the PS bytes into
frame groups (:class:`media.segments.FrameGrouper`), waits for a keyframe, writes each group's
bytes exactly as received, and starts a new segment at the first keyframe after
``segment_seconds``. It returns what to do as events: open a file, append bytes (at least every
``flush_interval`` seconds, so ``kill -9`` loses nothing handed to the OS), close (with the
metadata the index needs: size, key frame offsets, SHA-256). A PTS jump (camera restart) also
ends the segment, so one segment never spans a time discontinuity.

:class:`Recorder` is the thin threaded shell: sockets, clock, files. Its events reach the
platform through a callback run on the recorder thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from media.frame_assembler import FrameAssembler
from media.rtp import RtpError, RtpPacket
from media.segments import (
    PTS_CLOCK,
    FrameGrouper,
    SegmentFrame,
    SegmentInfo,
    Timeline,
    segment_name,
)

__all__ = [
    "Recorder",
    "RecorderError",
    "SegmentClosed",
    "SegmentData",
    "SegmentOpened",
    "SegmentWriter",
    "WriterEvent",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_RECV_SIZE = 65536
_SOCKET_BUFFER = 4 * 1024 * 1024
#: A PTS step larger than this (seconds, either way) is a discontinuity: the segment ends.
MAX_PTS_JUMP = 10.0
_TS_MASK = (1 << 33) - 1
#: A keyframe this close (seconds) to the segment length counts as after it: cameras whose GOP
#: equals the segment length put the IDR a tick early (1.999 s), which must not double it.
ROTATE_SLACK = 0.1


@dataclass(frozen=True, slots=True)
class SegmentOpened:
    """Create ``path`` (relative to the root); its first frame arrived at ``start``."""

    path: str
    start: float


@dataclass(frozen=True, slots=True)
class SegmentData:
    """Append ``data`` to ``path``."""

    path: str
    data: bytes


@dataclass(frozen=True, slots=True)
class SegmentClosed:
    """``info.path`` is complete: fsync and close it. ``info.path`` is relative to the root."""

    info: SegmentInfo


WriterEvent = SegmentOpened | SegmentData | SegmentClosed


@dataclass(slots=True)
class _Open:
    path: str
    start: float
    timeline: Timeline = field(default_factory=Timeline)
    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    keyframes: list[tuple[float, int]] = field(default_factory=list)
    pending: list[bytes] = field(default_factory=list)
    pending_size: int = 0
    first_pts: int | None = None
    last_pts: int | None = None


class SegmentWriter:
    """Sans-IO: frames in, file operations out (see the module docstring).

    :param channel_id: names the files (``<channel>/<YYYYMMDD>/<channel>_<start_ms>.ps``).
    :param segment_seconds: a segment ends at the first keyframe after this long.
    :param flush_interval: buffered bytes are handed out at least this often (seconds).
    :param max_buffer: ... or as soon as this many bytes are buffered.

    Counters: ``frames`` written, ``bytes`` written, ``segments`` opened, ``skipped`` (frames
    before the first keyframe or after a discontinuity), ``discontinuities``.
    """

    def __init__(
        self,
        channel_id: str,
        *,
        segment_seconds: float = 60.0,
        flush_interval: float = 1.0,
        max_buffer: int = 1024 * 1024,
    ) -> None:
        if segment_seconds <= 0 or flush_interval <= 0:
            raise ValueError("segment_seconds and flush_interval must be positive")
        self.channel_id = channel_id
        self.segment_seconds = segment_seconds
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self._grouper = FrameGrouper()
        # (stream offset, arrival time) of the RTP frames fed, oldest first.
        self._arrivals: deque[tuple[int, float]] = deque()
        self._fed = 0
        self._open: _Open | None = None
        self._flushed_at = 0.0
        self.frames = 0
        self.bytes = 0
        self.segments = 0
        self.skipped = 0
        self.discontinuities = 0

    @property
    def current(self) -> str | None:
        """Relative path of the open segment, if any."""
        return self._open.path if self._open is not None else None

    def receive_frame(self, payload: bytes, now: float) -> list[WriterEvent]:
        """Take the PS bytes of one whole RTP frame received at ``now`` (epoch seconds)."""
        out: list[WriterEvent] = []
        self._arrivals.append((self._fed, now))
        self._fed += len(payload)
        for group in self._grouper.feed(payload):
            self._group(group, self._arrival(group.offset), out)
        self._maybe_flush(now, out)
        return out

    def _arrival(self, offset: int) -> float:
        """When the RTP frame holding byte ``offset`` arrived: a group is only known complete
        when the next one starts, but its time is that of its own first bytes."""
        arrivals = self._arrivals
        while len(arrivals) > 1 and arrivals[1][0] <= offset:
            arrivals.popleft()
        return arrivals[0][1]

    def get_timer(self) -> float | None:
        """When buffered bytes must be handed out (None: nothing buffered)."""
        seg = self._open
        if seg is None or not seg.pending:
            return None
        return self._flushed_at + self.flush_interval

    def handle_timer(self, now: float) -> list[WriterEvent]:
        """Hand out buffered bytes if the flush interval has passed."""
        out: list[WriterEvent] = []
        self._maybe_flush(now, out)
        return out

    def close(self, now: float) -> list[WriterEvent]:
        """End of recording: the last complete frame is written and the segment closed."""
        out: list[WriterEvent] = []
        for group in self._grouper.end():
            self._group(group, self._arrival(group.offset) if self._arrivals else now, out)
        self._close_segment(out)
        self._grouper = FrameGrouper()
        self._arrivals.clear()
        self._fed = 0
        return out

    # -- internals ---------------------------------------------------------------------------

    def _group(self, group: SegmentFrame, now: float, out: list[WriterEvent]) -> None:
        seg = self._open
        if seg is not None and group.pts is not None and seg.last_pts is not None:
            step = ((group.pts - seg.last_pts + (1 << 32)) & _TS_MASK) - (1 << 32)
            if abs(step) > MAX_PTS_JUMP * PTS_CLOCK:
                self.discontinuities += 1
                self._close_segment(out)
                seg = None
        if (
            group.keyframe
            and seg is not None
            and self._elapsed(seg, group, now) >= self.segment_seconds - ROTATE_SLACK
        ):
            self._close_segment(out)
            seg = None
        if seg is None:
            if not group.keyframe:
                self.skipped += 1
                return
            seg = self._open = _Open(segment_name(self.channel_id, now), now)
            self._flushed_at = now
            self.segments += 1
            out.append(SegmentOpened(seg.path, now))
        t = seg.timeline.add(group.pts)
        if group.keyframe:
            seg.keyframes.append((t, seg.size))
        if group.pts is not None:
            seg.last_pts = group.pts
        data = group.data
        seg.digest.update(data)
        seg.pending.append(data)
        seg.pending_size += len(data)
        seg.size += len(data)
        self.frames += 1
        self.bytes += len(data)

    @staticmethod
    def _elapsed(seg: _Open, group: SegmentFrame, now: float) -> float:
        if group.pts is not None and seg.last_pts is not None:
            return seg.timeline.duration
        return now - seg.start

    def _maybe_flush(self, now: float, out: list[WriterEvent]) -> None:
        seg = self._open
        if seg is None or not seg.pending:
            return
        elapsed = now - self._flushed_at
        # A negative interval is the wall clock stepping back: flush rather than wait it out.
        if seg.pending_size >= self.max_buffer or not 0 <= elapsed < self.flush_interval:
            self._flush(seg, out)
            self._flushed_at = now

    @staticmethod
    def _flush(seg: _Open, out: list[WriterEvent]) -> None:
        if seg.pending:
            data = seg.pending[0] if len(seg.pending) == 1 else b"".join(seg.pending)
            out.append(SegmentData(seg.path, data))
            seg.pending = []
            seg.pending_size = 0

    def _close_segment(self, out: list[WriterEvent]) -> None:
        seg = self._open
        if seg is None:
            return
        self._flush(seg, out)
        self._open = None
        codec = self._grouper.codec
        out.append(
            SegmentClosed(
                SegmentInfo(
                    path=seg.path,
                    start=seg.start,
                    end=seg.start + seg.timeline.duration,
                    bytes=seg.size,
                    codec=str(codec),
                    keyframes=tuple(seg.keyframes),
                    sha256=seg.digest.hexdigest(),
                )
            )
        )


class RecorderError(RuntimeError):
    """A recorder command cannot be done (unknown stream, socket error)."""


@dataclass(slots=True)
class _Stream:
    stream_id: int
    channel_id: str
    sock: socket.socket
    writer: SegmentWriter
    assembler: FrameAssembler
    files: dict[str, Any] = field(default_factory=dict)
    bad_packets: int = 0
    write_errors: int = 0


RecorderCallback = Callable[[int, str, SegmentOpened | SegmentClosed], None]


class Recorder:
    """The recording thread: one loopback UDP socket per recorded channel.

    :param root: directory the segment paths are relative to.
    :param on_event: called on the recorder thread with ``(stream_id, channel_id, event)``
        after the file operation of a :class:`SegmentOpened` or :class:`SegmentClosed` is done
        (so a ``SegmentClosed`` means the file is fsynced).
    :param clock: wall clock (epoch seconds): segment start times and flush deadlines.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        segment_seconds: float = 60.0,
        flush_interval: float = 1.0,
        on_event: RecorderCallback | None = None,
        clock: Callable[[], float] = time.time,
        reorder_window: int = 16,
    ) -> None:
        self.root = os.fspath(root)
        self.host = host
        self.segment_seconds = segment_seconds
        self.flush_interval = flush_interval
        self.on_event = on_event
        self.clock = clock
        self.reorder_window = reorder_window
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1
        self._selector = selectors.DefaultSelector()
        self._buf = bytearray(_RECV_SIZE)
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- thread ----------------------------------------------------------------------------

    def start(self) -> None:
        """Run the loop in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close every stream (last frames written, files fsynced), then stop the thread."""
        for stream_id in list(self._streams):
            with contextlib.suppress(RecorderError):
                self.call(lambda sid=stream_id: self._close(sid))  # type: ignore[misc]
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        for sock in (self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the recorder thread and return its result."""
        if self._thread is None or threading.current_thread() is self._thread:
            return fn()
        future: Future[T] = Future()
        self._calls.put((fn, future))
        self._wake_w.send(b"x")
        return future.result(timeout)

    def run(self) -> None:
        """The loop: receive, feed the writers, hand out due bytes."""
        while not self._stopping:
            now = self.clock()
            deadline = now + 0.5
            for stream in self._streams.values():
                timer = stream.writer.get_timer()
                if timer is not None and timer < deadline:
                    deadline = timer
            for key, _ in self._selector.select(max(0.0, deadline - now)):
                if key.data is None:
                    self._on_wake()
                else:
                    self._on_readable(key.data)
            now = self.clock()
            for stream in list(self._streams.values()):
                timer = stream.writer.get_timer()
                if timer is not None and now >= timer:
                    self._apply(stream, stream.writer.handle_timer(now))

    # -- commands (use through :meth:`call`) -------------------------------------------------

    def open(self, channel_id: str) -> dict[str, Any]:
        """Bind a UDP socket for ``channel_id``; return ``{"stream", "host", "port"}``."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
            sock.bind((self.host, 0))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise RecorderError(f"cannot bind a recorder socket on {self.host}: {exc}") from None
        stream = _Stream(
            self._next_id,
            channel_id,
            sock,
            SegmentWriter(
                channel_id,
                segment_seconds=self.segment_seconds,
                flush_interval=self.flush_interval,
            ),
            FrameAssembler(self.reorder_window),
        )
        self._next_id += 1
        self._streams[stream.stream_id] = stream
        self._selector.register(sock, selectors.EVENT_READ, stream)
        return {"stream": stream.stream_id, "host": self.host, "port": sock.getsockname()[1]}

    def close(self, stream_id: int) -> dict[str, Any]:
        """Stop recording a stream: last frames written, segment closed; return its counters."""
        return self._close(stream_id)

    def stats(self, stream_id: int) -> dict[str, Any]:
        """Counters of one stream."""
        stream = self._get(stream_id)
        return self._stats(stream)

    # -- internals ---------------------------------------------------------------------------

    def _get(self, stream_id: int) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise RecorderError(f"no recorder stream {stream_id}")
        return stream

    def _close(self, stream_id: int) -> dict[str, Any]:
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            raise RecorderError(f"no recorder stream {stream_id}")
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(stream.sock)
        stream.sock.close()
        now = self.clock()
        events: list[WriterEvent] = []
        for frame in stream.assembler.flush():
            events.extend(stream.writer.receive_frame(frame.payload, now))
        events.extend(stream.writer.close(now))
        self._apply(stream, events)
        for f in stream.files.values():
            self._finish_file(stream, f)
        stream.files.clear()
        return self._stats(stream)

    @staticmethod
    def _stats(stream: _Stream) -> dict[str, Any]:
        w, a = stream.writer, stream.assembler
        return {
            "channel": stream.channel_id,
            "segment": w.current,
            "frames": w.frames,
            "bytes": w.bytes,
            "segments": w.segments,
            "skipped": w.skipped,
            "packets": a.packets,
            "lost": a.lost,
            "bad_packets": stream.bad_packets,
            "write_errors": stream.write_errors,
        }

    def _on_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
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

    def _on_readable(self, stream: _Stream) -> None:
        buf = self._buf
        for _ in range(256):
            try:
                size = stream.sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("recorder socket error channel=%s: %s", stream.channel_id, exc)
                return
            try:
                packet = RtpPacket.parse(bytes(buf[:size]))
            except RtpError:
                stream.bad_packets += 1
                continue
            now = self.clock()
            for frame in stream.assembler.add(packet):
                self._apply(stream, stream.writer.receive_frame(frame.payload, now))

    def _apply(self, stream: _Stream, events: list[WriterEvent]) -> None:
        for event in events:
            if isinstance(event, SegmentData):
                f = stream.files.get(event.path)
                if f is None:
                    continue  # its open failed (counted)
                try:
                    f.write(event.data)
                except OSError as exc:
                    stream.write_errors += 1
                    log.error("recording write failed path=%s: %s", event.path, exc)
                continue
            if isinstance(event, SegmentOpened):
                full = os.path.join(self.root, event.path)
                try:
                    os.makedirs(os.path.dirname(full), exist_ok=True)
                    # Unbuffered: each SegmentData is one write() to the OS.
                    stream.files[event.path] = open(full, "wb", buffering=0)  # noqa: SIM115
                except OSError as exc:
                    stream.write_errors += 1
                    log.error("cannot create recording segment %s: %s", full, exc)
                    continue
            else:
                f = stream.files.pop(event.info.path, None)
                if f is None:
                    continue  # never created: nothing to index
                self._finish_file(stream, f)
            if self.on_event is not None:
                try:
                    self.on_event(stream.stream_id, stream.channel_id, event)
                except Exception:
                    log.exception("recorder event handler failed for %s", event)

    @staticmethod
    def _finish_file(stream: _Stream, f: Any) -> None:
        try:
            os.fsync(f.fileno())
        except OSError as exc:
            stream.write_errors += 1
            log.error("fsync of a recording segment failed: %s", exc)
        finally:
            f.close()
