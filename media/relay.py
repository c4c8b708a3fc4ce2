"""One camera stream, many consumers: the sans-IO relay session (architecture "Data path").

A :class:`RelaySession` receives the RTP packets of one stream (one SSRC from one source) and
returns, per packet, the datagrams to send to each output. It does no I/O and never reads the
clock: the worker passes ``now`` in and sends what comes out.

Admission (no stream hijacking, notes §6.3, §8.1). A packet is forwarded only if its SSRC is
the session's and it comes from the session's source. The SSRC is the one we offered in ``y=``
(or, when None, the first one seen); the source is given (TCP peer, SDP address) or locked to the
first address a valid packet came from (ZLMediaKit binds the SSRC to the first ip:port). Other
packets are dropped and counted by reason. Devices that answer with their own ``y=`` are handled
by :meth:`RelaySession.rekey` when the 200 OK is read. A sender that restarts with a new SSRC is
accepted only if enabled (``ssrc_change_after``) and the old SSRC has been silent that long
(ZLMediaKit waits 3 s), and only from the locked source.

Rewrite. Each output has its own SSRC, sequence numbers starting where it asks, and a timestamp
offset; the 12-byte header is rewritten in a copy made with ``bytearray`` and
``struct.pack_into`` (one copy, no parsing of the payload). Gaps in the input sequence are kept
in the output so that consumers see the same loss; a sender restart (a jump beyond
``MAX_DROPOUT``) is smoothed so outputs stay contiguous.

Batches (:meth:`RelaySession.receive_batch`). With UDP GRO the kernel hands the worker up to
64 datagrams of one flow glued together, all ``segment`` bytes long but the last. The per-packet
work is then done a column at a time with extended slices (``data[8:n:segment]`` is the first
SSRC byte of every packet): admission (version, SSRC, source), sequence continuity (compared
with a precomputed table), the output rewrite (SSRC bytes and the sequence columns assigned
in one slice each) and the counters, so the Python cost is per batch, not per packet; the
rewritten batch goes out with one GSO send. Measured against NumPy on the same columns: for
batches of up to 64 packets, slices win (no array set-up), see BENCHMARKS.md. Anything the
column checks do not prove (first packet, foreign SSRC or source, loss, reordering, a
duplicate, header extensions) makes the batch go through the per-packet path, which has the
exact per-packet semantics, so the two paths count and forward identically.

GOP cache (fast join). Every PS frame starts with a pack header; on such a packet the first
video PES is sniffed (NAL headers, :func:`media.nal.inspect_video`, or parameter sets). From
a keyframe on, whole RTP packets are kept (bounded in bytes); an output added later first
receives them, rewritten for it, through :meth:`RelaySession.datagrams_to_send`, so its
decoder starts on a keyframe.

Frames. Every PS frame starts with a pack header; a pack whose first PES is video is one video
frame (audio packs are not counted), which gives ``frames`` and ``fps`` in the stats. An output
gets :class:`KeyframeSent` the first time a keyframe packet is sent to it (from the GOP cache
or live): the end of the start latency (INVITE or API call to the first keyframe out).

Liveness: no packet for ``timeout`` seconds (15 s, ZLMediaKit ``rtp_proxy.timeoutSec``, notes
§8.1) ends the session with :class:`StreamTimedOut`; RTP silence, not RTCP, is the signal.
The clock stops while the sender is paused on purpose (:meth:`RelaySession.pause_timer`).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field

from media.nal import inspect_video
from media.rtp import RTP_HEADER_LENGTH

__all__ = [
    "DEFAULT_TIMEOUT",
    "Addr",
    "Chunk",
    "Datagram",
    "DropReason",
    "KeyframeSent",
    "OutputClosed",
    "OutputSpec",
    "RelayEvent",
    "RelaySession",
    "SsrcChanged",
    "StreamStarted",
    "StreamTimedOut",
]

Addr = tuple[str, int]
#: A datagram to send: the rewritten copy of a received packet.
Datagram = bytes | bytearray
#: What to send to one output: ``(output_id, data, segment)``; ``data`` holds packets of
#: ``segment`` bytes back to back (the last may be shorter): one GSO send, or one packet.
Chunk = tuple[int, Datagram, int]

DEFAULT_TIMEOUT = 15.0
DEFAULT_GOP_CACHE_BYTES = 8 * 1024 * 1024
#: Sequence jumps further than this are a sender restart (RFC 3550 Appendix A.1).
MAX_DROPOUT = 3000
MAX_MISORDER = 100
#: Window over which ``fps`` is measured (seconds of arrival time).
FPS_WINDOW = 2.0
#: Largest batch the column path takes; larger ones go packet by packet.
MAX_BATCH = 1024

_PEEK = struct.Struct("!BBHII")
_REWRITE = struct.Struct("!HII")  # seq, timestamp, ssrc at offset 2
_SEQ = struct.Struct("!H")
_TS = struct.Struct("!I")
_PACK_START = b"\x00\x00\x01\xba"
_VIDEO_PES = b"\x00\x00\x01\xe0"
# H.264 SPS (any nal_ref_idc) and H.265 VPS/SPS NAL headers after a start code.
_PARAMETER_SETS = (
    b"\x00\x00\x01\x67",
    b"\x00\x00\x01\x27",
    b"\x00\x00\x01\x47",
    b"\x00\x00\x01\x40\x01",
    b"\x00\x00\x01\x42\x01",
)
# How far into a frame's first packet we look for the video PES.
_SNIFF_LIMIT = 1024
# Sequence-number columns: _SEQ_HI[s:s + k] are the high bytes of s, s + 1, ... (mod 2**16).
_SEQ_HI = bytes((i >> 8) & 0xFF for i in range(0x10000 + MAX_BATCH))
_SEQ_LO = bytes(i & 0xFF for i in range(0x10000 + MAX_BATCH))
_V2_PLAIN = 0x80  # version 2, no padding, no extension, no CSRC


class DropReason:
    """Names of the drop counters (keys of :attr:`RelaySession.drops`)."""

    MALFORMED = "malformed"
    SSRC = "ssrc"
    SOURCE = "source"
    CLOSED = "closed"


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayEvent:
    """Base of the relay session's events."""


@dataclass(frozen=True, slots=True)
class StreamStarted(RelayEvent):
    """The first admitted packet arrived."""

    ssrc: int
    source: Addr
    at: float


@dataclass(frozen=True, slots=True)
class SsrcChanged(RelayEvent):
    """The expected SSRC changed: ``reason`` is ``"rekey"`` (caller) or ``"restart"`` (sender)."""

    old: int | None
    new: int
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class StreamTimedOut(RelayEvent):
    """No packet for ``timeout`` seconds; ``started`` is False if media never arrived."""

    started: bool
    last_packet_at: float | None
    at: float


@dataclass(frozen=True, slots=True)
class KeyframeSent(RelayEvent):
    """The first keyframe packet went to ``output`` (the consumer can start decoding)."""

    output: int
    at: float


@dataclass(frozen=True, slots=True)
class OutputClosed(RelayEvent):
    """An output stopped on its own (the worker's TCP consumer went away); ``reason`` says why."""

    output: int
    reason: str
    at: float


# -- outputs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """Where and how to forward the stream.

    ``transport`` ("udp", "tcp-active" or "tcp-passive") is for the worker, which frames TCP
    outputs (RFC 4571); the session only rewrites headers. ``seq_start`` is the first sequence
    number the consumer sees; ``ts_offset`` is added to every timestamp (mod 2**32).
    """

    addr: Addr
    ssrc: int
    transport: str = "udp"
    seq_start: int = 0
    ts_offset: int = 0


# ``bytes`` is also a counter of :class:`_Output`.
_Byte = bytes


@dataclass(slots=True)
class _Output:
    spec: OutputSpec
    ssrc: int
    ts_offset: int
    # Output seq = input seq + seq_offset; None until the first packet fixes it.
    seq_offset: int | None = None
    packets: int = 0
    bytes: int = 0
    #: False while the worker waits for the consumer (TCP passive): nothing is sent.
    active: bool = True
    keyframe_at: float | None = None
    # The SSRC as four one-byte strings, for the column rewrite.
    ssrc_bytes: tuple[_Byte, _Byte, _Byte, _Byte] = (b"", b"", b"", b"")

    def __post_init__(self) -> None:
        raw = self.ssrc.to_bytes(4, "big")
        self.ssrc_bytes = (raw[0:1], raw[1:2], raw[2:3], raw[3:4])


@dataclass(slots=True)
class _GopCache:
    #: ``(data, segment)`` as received (packets of ``segment`` bytes back to back).
    chunks: list[tuple[bytes, int]] = field(default_factory=list)
    size: int = 0
    packets: int = 0


# -- session -----------------------------------------------------------------------------------


class RelaySession:
    """Sans-IO relay of one RTP stream to many outputs.

    :param ssrc: the SSRC we expect (the ``y=`` we offered); None locks the first one seen.
    :param source: the sender's address if known (TCP peer); None locks the first one seen.
    :param now: creation time, from which the no-media timeout runs.
    :param timeout: seconds of silence before :class:`StreamTimedOut`.
    :param gop_cache_bytes: bound of the keyframe cache; 0 disables fast join.
    :param ssrc_change_after: accept a new SSRC from the locked source after the old one has
        been silent this long (None: never; only :meth:`rekey` changes it).

    Counters (plain ints): ``packets``, ``bytes`` (admitted), ``forwarded`` (datagrams out),
    ``lost`` and ``reordered`` (from sequence numbers, RFC 3550 A.3 style), ``duplicates``,
    ``restarts``, ``frames`` (video frames), ``keyframes``, ``batches`` (receive calls that
    took the column path), and ``drops`` by :class:`DropReason`.
    """

    def __init__(
        self,
        ssrc: int | None,
        source: Addr | None = None,
        *,
        now: float = 0.0,
        timeout: float = DEFAULT_TIMEOUT,
        gop_cache_bytes: int = DEFAULT_GOP_CACHE_BYTES,
        ssrc_change_after: float | None = None,
    ) -> None:
        self.ssrc = None if ssrc is None else ssrc & 0xFFFFFFFF
        self.source = source
        self.timeout = timeout
        self.gop_cache_bytes = gop_cache_bytes
        self.ssrc_change_after = ssrc_change_after
        self.created_at = now
        self.last_packet_at: float | None = None
        self.closed = False
        # The no-media clock: stopped while the sender is paused on purpose, and counted from
        # ``_resumed_at`` at the earliest once it runs again.
        self._timer_paused = False
        self._resumed_at = now
        self._outputs: dict[int, _Output] = {}
        self._next_output_id = 1
        self._events: deque[RelayEvent] = deque()
        self._backlog: deque[Chunk] = deque()
        self._gop: _GopCache | None = None
        # Sequence tracking: highest seq seen (16 bit) and the extended count base.
        self._max_seq: int | None = None
        self._cycles = 0
        self._base_seq = 0
        self._received = 0
        # Highest input seq before the last restart, to keep outputs contiguous across it.
        self._prev_max = 0
        # Arrival times of the recent video frames, for fps.
        self._frame_times: deque[float] = deque(maxlen=512)
        self.packets = 0
        self.bytes = 0
        self.forwarded = 0
        self.reordered = 0
        self.duplicates = 0
        self.restarts = 0
        self.frames = 0
        self.keyframes = 0
        self.batches = 0
        self.drops: dict[str, int] = {
            DropReason.MALFORMED: 0,
            DropReason.SSRC: 0,
            DropReason.SOURCE: 0,
            DropReason.CLOSED: 0,
        }

    # -- inputs --------------------------------------------------------------------------------

    def receive_rtp(
        self, data: bytes | bytearray | memoryview, addr: Addr, now: float
    ) -> list[tuple[Datagram, Addr]]:
        """Admit one received RTP packet; return the datagrams to send, one per output.

        Never raises for bad input: a packet that is not RTP, or whose SSRC or source is not
        the session's, is dropped and counted in :attr:`drops`.
        """
        outputs = self._outputs
        return [(buf, outputs[oid].spec.addr) for oid, buf, _ in self._receive_one(data, addr, now)]

    def receive_batch(
        self, data: bytes | bytearray | memoryview, segment: int, addr: Addr, now: float
    ) -> list[Chunk]:
        """Admit packets of ``segment`` bytes received back to back (UDP GRO); return chunks.

        Same semantics as calling :meth:`receive_rtp` on each packet in turn; every output
        gets at most one chunk per call when the batch is clean (see the module docstring),
        else one chunk per packet.
        """
        n = len(data)
        if segment <= 0 or segment >= n:
            return self._receive_one(data, addr, now)
        view = data if isinstance(data, memoryview) else memoryview(data)
        count = (n + segment - 1) // segment
        out = self._receive_columns(view, n, segment, count, addr, now)
        if out is not None:
            return out
        out = []
        for offset in range(0, n, segment):
            out += self._receive_one(view[offset : offset + segment], addr, now)
        return out

    def rekey(self, ssrc: int, now: float) -> None:
        """Expect ``ssrc`` from now on (the device answered with its own ``y=``, notes §6.3)."""
        ssrc &= 0xFFFFFFFF
        if ssrc != self.ssrc:
            self._events.append(SsrcChanged(self.ssrc, ssrc, "rekey", now))
            self.ssrc = ssrc

    def restart_timer(self, now: float) -> None:
        """Count the no-media timeout from ``now`` while no packet has come yet: the INVITE is
        still being answered (a lower platform bridges its own device first and may take tens
        of seconds, notes §9), and silence before the answer is not a dead stream."""
        if self.last_packet_at is None and not self.closed:
            self.created_at = max(self.created_at, now)

    def pause_timer(self) -> None:
        """Stop the no-media clock: the sender was told to pause (a playback of a device's
        storage that the viewer paused, MANSRTSP ``PAUSE``, notes §7) and sends nothing, which
        is not a dead stream. :meth:`resume_timer` runs it again."""
        self._timer_paused = True

    def resume_timer(self, now: float) -> None:
        """Run the no-media clock again, counting from ``now`` (the sender was told to play on:
        its silence from here on is a dead stream again)."""
        if self._timer_paused:
            self._timer_paused = False
            self._resumed_at = max(self._resumed_at, now)

    def add_output(self, spec: OutputSpec, *, active: bool = True, now: float = 0.0) -> int:
        """Start forwarding to ``spec``; return its output id.

        If the GOP cache holds a keyframe, its packets (rewritten for this output) are queued
        in :meth:`datagrams_to_send` so the consumer starts decoding at once. An output added
        with ``active=False`` gets nothing until :meth:`activate` (a TCP consumer that has
        not connected yet).
        """
        output_id = self._next_output_id
        self._next_output_id += 1
        output = _Output(spec, spec.ssrc & 0xFFFFFFFF, spec.ts_offset & 0xFFFFFFFF, active=active)
        self._outputs[output_id] = output
        if active:
            self._replay_gop(output_id, output, now)
        return output_id

    def activate(self, output_id: int, now: float) -> None:
        """Start sending to an output added inactive, from the cached keyframe on.

        :raises KeyError: unknown output id (a caller mistake).
        """
        output = self._outputs[output_id]
        if not output.active:
            output.active = True
            self._replay_gop(output_id, output, now)

    def remove_output(self, output_id: int) -> OutputSpec:
        """Stop forwarding to an output; return its spec.

        :raises KeyError: unknown output id (a caller mistake, not network input).
        """
        return self._outputs.pop(output_id).spec

    def handle_timer(self, now: float) -> None:
        """Check the inactivity deadline; queue :class:`StreamTimedOut` once when it passed."""
        deadline = self.get_timer()
        if deadline is not None and now >= deadline:
            self.closed = True
            self._events.append(
                StreamTimedOut(self.last_packet_at is not None, self.last_packet_at, now)
            )

    def close(self) -> None:
        """Stop admitting packets (no event is queued)."""
        self.closed = True
        self._gop = None

    # -- outputs -------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """Return the inactivity deadline, or None once the session is closed or its clock is
        paused (:meth:`pause_timer`)."""
        if self.closed or self._timer_paused:
            return None
        last = self.created_at if self.last_packet_at is None else self.last_packet_at
        return max(last, self._resumed_at) + self.timeout

    def next_event(self) -> RelayEvent | None:
        """Pop the oldest event, or None."""
        return self._events.popleft() if self._events else None

    def chunks_to_send(self) -> list[Chunk]:
        """Return (and forget) chunks not tied to a received packet: fast-join backlogs."""
        out = list(self._backlog)
        self._backlog.clear()
        return out

    def datagrams_to_send(self) -> list[tuple[Datagram, Addr]]:
        """:meth:`chunks_to_send` one datagram per packet, with each output's address."""
        out: list[tuple[Datagram, Addr]] = []
        for output_id, data, segment in self.chunks_to_send():
            addr = self._outputs[output_id].spec.addr
            out += [(data[i : i + segment], addr) for i in range(0, len(data), segment)]
        return out

    @property
    def outputs(self) -> dict[int, OutputSpec]:
        return {output_id: o.spec for output_id, o in self._outputs.items()}

    @property
    def lost(self) -> int:
        """Packets expected from the sequence numbers but never received (RFC 3550 A.3)."""
        if self._max_seq is None:
            return 0
        expected = self._cycles + self._max_seq - self._base_seq + 1
        return max(0, expected - self._received)

    @property
    def gop_cache_size(self) -> tuple[int, int]:
        """``(packets, bytes)`` held in the GOP cache."""
        gop = self._gop
        return (0, 0) if gop is None else (gop.packets, gop.size)

    def fps(self) -> float:
        """Video frames per second over the last :data:`FPS_WINDOW` seconds of arrivals."""
        times = self._frame_times
        if len(times) < 2 or self.last_packet_at is None:
            return 0.0
        since = self.last_packet_at - FPS_WINDOW
        recent = [t for t in times if t > since]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def gop_payloads(self) -> list[bytes]:
        """The RTP payloads of the GOP cache, in order: PS from the last keyframe on.

        Empty while no keyframe is cached. The snapshot decoder (:mod:`media.snapshot`) takes
        these; header sizes follow RFC 3550 §5.1/§5.3.1 (CSRCs, extension, padding).
        """
        gop = self._gop
        if gop is None:
            return []
        out = []
        for data, segment in gop.chunks:
            for offset in range(0, len(data), segment):
                packet = data[offset : offset + segment]
                first = packet[0]
                start = RTP_HEADER_LENGTH + 4 * (first & 0x0F)
                if first & 0x10 and len(packet) >= start + 4:
                    start += 4 + 4 * ((packet[start + 2] << 8) | packet[start + 3])
                end = len(packet) - (packet[-1] if first & 0x20 else 0)
                if start < end:
                    out.append(packet[start:end])
        return out

    def output_stats(self, output_id: int) -> dict[str, object]:
        """Counters of one output (``keyframe_at`` is when its first keyframe went out).

        :raises KeyError: unknown output id.
        """
        output = self._outputs[output_id]
        return {
            "transport": output.spec.transport,
            "ssrc": output.ssrc,
            "packets": output.packets,
            "bytes": output.bytes,
            "active": output.active,
            "keyframe_at": output.keyframe_at,
        }

    def stats(self) -> dict[str, object]:
        """The counters as a plain dict (for the control channel and metrics)."""
        return {
            "ssrc": self.ssrc,
            "source": list(self.source) if self.source is not None else None,
            "packets": self.packets,
            "bytes": self.bytes,
            "forwarded": self.forwarded,
            "lost": self.lost,
            "reordered": self.reordered,
            "duplicates": self.duplicates,
            "restarts": self.restarts,
            "frames": self.frames,
            "fps": round(self.fps(), 2),
            "keyframes": self.keyframes,
            "batches": self.batches,
            "drops": dict(self.drops),
            "outputs": len(self._outputs),
            "output_stats": {str(oid): self.output_stats(oid) for oid in self._outputs},
            "gop_cache_packets": self.gop_cache_size[0],
            "last_packet_at": self.last_packet_at,
            "closed": self.closed,
        }

    # -- internals: the per-packet path -------------------------------------------------------

    def _receive_one(
        self, data: bytes | bytearray | memoryview, addr: Addr, now: float
    ) -> list[Chunk]:
        if self.closed:
            self.drops[DropReason.CLOSED] += 1
            return []
        size = len(data)
        if size < RTP_HEADER_LENGTH:
            self.drops[DropReason.MALFORMED] += 1
            return []
        first, _, seq, ts, ssrc = _PEEK.unpack_from(data)
        if first & 0xC0 != 0x80:
            self.drops[DropReason.MALFORMED] += 1
            return []
        source = self.source
        if source is not None and addr != source:
            self.drops[DropReason.SOURCE] += 1
            return []
        if ssrc != self.ssrc and not self._accept_new_ssrc(ssrc, now):
            self.drops[DropReason.SSRC] += 1
            return []
        if self.last_packet_at is None:
            self.source = addr
            self._events.append(StreamStarted(ssrc, addr, now))
        self.last_packet_at = now
        self.packets += 1
        self.bytes += size
        restart = self._track_seq(seq)
        header = RTP_HEADER_LENGTH + 4 * (first & 0x0F)
        if first & 0x10 and size >= header + 4:
            header += 4 + 4 * ((data[header + 2] << 8) | data[header + 3])
        key = False
        if data[header : header + 4] == _PACK_START:
            packet = bytes(data)
            video, key = _sniff(packet, header)
            if video:
                self._count_frame(key, now)
            self._cache(packet, key)
        elif self._gop is not None:
            self._cache(bytes(data), False)
        out: list[Chunk] = []
        pack_into = _REWRITE.pack_into
        for output_id, output in self._outputs.items():
            if not output.active:
                continue
            offset = output.seq_offset
            if offset is None or restart:
                offset = output.seq_offset = self._join_offset(output, seq)
            buf = bytearray(data)
            pack_into(
                buf,
                2,
                (seq + offset) & 0xFFFF,
                (ts + output.ts_offset) & 0xFFFFFFFF,
                output.ssrc,
            )
            output.packets += 1
            output.bytes += size
            if key and output.keyframe_at is None:
                output.keyframe_at = now
                self._events.append(KeyframeSent(output_id, now))
            out.append((output_id, buf, size))
        self.forwarded += len(out)
        return out

    # -- internals: the column path ------------------------------------------------------------

    def _receive_columns(
        self, view: memoryview, n: int, segment: int, count: int, addr: Addr, now: float
    ) -> list[Chunk] | None:
        """Admit a clean batch a column at a time; None if the per-packet path must decide."""
        max_seq = self._max_seq
        ssrc = self.ssrc
        if (
            self.closed
            or max_seq is None
            or ssrc is None
            or addr != self.source
            or count > MAX_BATCH
            or segment < RTP_HEADER_LENGTH + 4
            or n - (count - 1) * segment < RTP_HEADER_LENGTH
        ):
            return None
        if view[0:n:segment] != bytes((_V2_PLAIN,)) * count:
            return None
        raw = ssrc.to_bytes(4, "big")
        for i in range(4):
            if view[8 + i : n : segment] != raw[i : i + 1] * count:
                return None
        s0 = (max_seq + 1) & 0xFFFF
        if view[2:n:segment] != _SEQ_HI[s0 : s0 + count] or (
            view[3:n:segment] != _SEQ_LO[s0 : s0 + count]
        ):
            return None
        # Admitted: every packet is the next one of this stream.
        self.batches += 1
        self.last_packet_at = now
        self.packets += count
        self.bytes += n
        self._received += count
        end = max_seq + count
        if end > 0xFFFF:
            self._cycles += 0x10000
        self._max_seq = end & 0xFFFF
        key_at = self._frames_in(view, n, segment, now)
        out: list[Chunk] = []
        for output_id, output in self._outputs.items():
            if not output.active:
                continue
            if output.seq_offset is None:
                output.seq_offset = self._join_offset(output, s0)
            out.append((output_id, self._rewrite(output, view[:n], segment, s0), segment))
            output.packets += count
            output.bytes += n
            if key_at >= 0 and output.keyframe_at is None:
                output.keyframe_at = now
                self._events.append(KeyframeSent(output_id, now))
        self.forwarded += count * len(out)
        return out

    def _frames_in(self, view: memoryview, n: int, segment: int, now: float) -> int:
        """Count the frames starting in a clean batch, feed the GOP cache; return the offset
        of the last keyframe packet in the batch, or -1."""
        starts = bytes(view[15:n:segment])  # the byte after 00 00 01 of a pack header
        key_at = -1
        index = starts.find(0xBA)
        while index >= 0:
            offset = index * segment
            if view[offset + 12 : offset + 16] == _PACK_START:
                video, key = _sniff(bytes(view[offset : offset + segment]), RTP_HEADER_LENGTH)
                if video:
                    self._count_frame(key, now)
                if key:
                    key_at = offset
            index = starts.find(0xBA, index + 1)
        if self.gop_cache_bytes:
            if key_at >= 0:
                self._gop = _GopCache()
                self._cache_chunk(bytes(view[key_at:n]), segment)
            elif self._gop is not None:
                self._cache_chunk(bytes(view[:n]), segment)
        return key_at

    def _rewrite(
        self, output: _Output, data: bytes | bytearray | memoryview, segment: int, seq: int
    ) -> bytearray:
        """Copy packets numbered ``seq``, ``seq + 1``... rewritten for ``output``."""
        buf = bytearray(data)
        n = len(buf)
        count = (n + segment - 1) // segment
        b0, b1, b2, b3 = output.ssrc_bytes
        buf[8:n:segment] = b0 * count
        buf[9:n:segment] = b1 * count
        buf[10:n:segment] = b2 * count
        buf[11:n:segment] = b3 * count
        assert output.seq_offset is not None
        first = (seq + output.seq_offset) & 0xFFFF
        if count <= MAX_BATCH:
            buf[2:n:segment] = _SEQ_HI[first : first + count]
            buf[3:n:segment] = _SEQ_LO[first : first + count]
        else:
            for i, offset in enumerate(range(0, n, segment)):
                _SEQ.pack_into(buf, offset + 2, (first + i) & 0xFFFF)
        ts_offset = output.ts_offset
        if ts_offset:
            unpack, pack = _TS.unpack_from, _TS.pack_into
            for offset in range(0, n, segment):
                pack(buf, offset + 4, (unpack(buf, offset + 4)[0] + ts_offset) & 0xFFFFFFFF)
        return buf

    # -- internals -----------------------------------------------------------------------------

    def _count_frame(self, key: bool, now: float) -> None:
        self.frames += 1
        if key:
            self.keyframes += 1
        self._frame_times.append(now)

    def _replay_gop(self, output_id: int, output: _Output, now: float) -> None:
        gop = self._gop
        if gop is None or not gop.chunks:
            return
        for data, segment in gop.chunks:
            seq = (data[2] << 8) | data[3]
            if output.seq_offset is None:
                output.seq_offset = (output.spec.seq_start - seq) & 0xFFFF
            self._backlog.append((output_id, self._rewrite(output, data, segment, seq), segment))
            count = (len(data) + segment - 1) // segment
            output.packets += count
            output.bytes += len(data)
            self.forwarded += count
        if output.keyframe_at is None:
            output.keyframe_at = now
            self._events.append(KeyframeSent(output_id, now))

    def _accept_new_ssrc(self, ssrc: int, now: float) -> bool:
        if self.ssrc is None:
            self.ssrc = ssrc
            return True
        after = self.ssrc_change_after
        if after is None or self.last_packet_at is None or now - self.last_packet_at < after:
            return False
        self._events.append(SsrcChanged(self.ssrc, ssrc, "restart", now))
        self.ssrc = ssrc
        if self._max_seq is not None:
            self._prev_max = self._max_seq
        self._max_seq = None
        self._gop = None
        return True

    def _track_seq(self, seq: int) -> bool:
        """Update loss/reorder counters; return True on a sender restart (or first packet)."""
        max_seq = self._max_seq
        self._received += 1
        if max_seq is None:
            self._max_seq = self._base_seq = seq
            self._cycles = 0
            self._received = 1
            return True
        delta = (seq - max_seq) & 0xFFFF
        if 0 < delta <= MAX_DROPOUT:
            if seq < max_seq:
                self._cycles += 0x10000
            self._max_seq = seq
            return False
        if delta == 0:
            self.duplicates += 1
            self._received -= 1
            return False
        if 0x10000 - delta <= MAX_MISORDER:
            self.reordered += 1
            return False
        # A jump: the sender restarted. Restart the counts (and the GOP cache) from here.
        self.restarts += 1
        self._prev_max = max_seq
        self._gop = None
        self._max_seq = self._base_seq = seq
        self._cycles = 0
        self._received = 1
        return True

    def _join_offset(self, output: _Output, seq: int) -> int:
        if output.seq_offset is None:
            return (output.spec.seq_start - seq) & 0xFFFF
        # After a sender restart: continue right after the last sequence number sent.
        last = (self._prev_max + output.seq_offset) & 0xFFFF
        return (last + 1 - seq) & 0xFFFF

    def _cache(self, packet: bytes, key: bool) -> None:
        if not self.gop_cache_bytes:
            return
        if key:
            self._gop = _GopCache()
        if self._gop is not None:
            self._cache_chunk(packet, len(packet))

    def _cache_chunk(self, data: bytes, segment: int) -> None:
        gop = self._gop
        assert gop is not None
        gop.chunks.append((data, segment))
        gop.size += len(data)
        gop.packets += (len(data) + segment - 1) // segment
        if gop.size > self.gop_cache_bytes:
            # A GOP this long would replay seconds of video: give up until the next keyframe.
            self._gop = None


def _sniff(packet: bytes, start: int) -> tuple[bool, bool]:
    """Sniff the PS pack starting at ``start``: ``(video, keyframe)``.

    Video: a video PES follows within :data:`_SNIFF_LIMIT` bytes (audio-only packs are not
    frames). Keyframe: the first picture is an H.264 IDR or H.265 IRAP; when the packet ends
    before the picture, parameter sets (which precede every IDR, notes §8.3) are taken as the
    sign. A system header is no sign: some senders repeat it on every few frames.
    """
    end = min(len(packet), start + _SNIFF_LIMIT)
    pes = packet.find(_VIDEO_PES, start, end)
    if pes < 0:
        return False, False
    if pes + 9 > len(packet):
        return True, False
    es = packet[pes + 9 + packet[pes + 8] :]
    _, key, _ = inspect_video(es)
    return True, key or any(marker in es for marker in _PARAMETER_SETS)
