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

GOP cache (fast join). Every PS frame starts with a pack header; on such a packet the first
video PES is sniffed (NAL headers, :func:`media.nal.inspect_video`, or parameter sets). From
a keyframe on, whole RTP packets are kept (bounded in bytes); an output added later first
receives them, rewritten for it, through :meth:`RelaySession.datagrams_to_send`, so its
decoder starts on a keyframe.

Liveness: no packet for ``timeout`` seconds (15 s, ZLMediaKit ``rtp_proxy.timeoutSec``, notes
§8.1) ends the session with :class:`StreamTimedOut`; RTP silence, not RTCP, is the signal.
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
    "Datagram",
    "DropReason",
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

DEFAULT_TIMEOUT = 15.0
DEFAULT_GOP_CACHE_BYTES = 8 * 1024 * 1024
#: Sequence jumps further than this are a sender restart (RFC 3550 Appendix A.1).
MAX_DROPOUT = 3000
MAX_MISORDER = 100

_PEEK = struct.Struct("!BBHII")
_REWRITE = struct.Struct("!HII")  # seq, timestamp, ssrc at offset 2
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


# -- outputs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """Where and how to forward the stream.

    ``transport`` ("udp" or "tcp") is for the worker, which frames TCP outputs (RFC 4571);
    the session only rewrites headers. ``seq_start`` is the first sequence number the consumer
    sees; ``ts_offset`` is added to every timestamp (mod 2**32).
    """

    addr: Addr
    ssrc: int
    transport: str = "udp"
    seq_start: int = 0
    ts_offset: int = 0


@dataclass(slots=True)
class _Output:
    spec: OutputSpec
    ssrc: int
    ts_offset: int
    # Output seq = input seq + seq_offset; None until the first packet fixes it.
    seq_offset: int | None = None
    packets: int = 0
    bytes: int = 0


@dataclass(slots=True)
class _GopCache:
    packets: list[bytes] = field(default_factory=list)
    size: int = 0
    keyframes: int = 0


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
    ``restarts``, ``keyframes``, and ``drops`` by :class:`DropReason`.
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
        self._outputs: dict[int, _Output] = {}
        self._next_output_id = 1
        self._events: deque[RelayEvent] = deque()
        self._backlog: deque[tuple[Datagram, Addr]] = deque()
        self._gop: _GopCache | None = None
        # Sequence tracking: highest seq seen (16 bit) and the extended count base.
        self._max_seq: int | None = None
        self._cycles = 0
        self._base_seq = 0
        self._received = 0
        # Highest input seq before the last restart, to keep outputs contiguous across it.
        self._prev_max = 0
        self.packets = 0
        self.bytes = 0
        self.forwarded = 0
        self.reordered = 0
        self.duplicates = 0
        self.restarts = 0
        self.keyframes = 0
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
        if self.closed:
            self.drops[DropReason.CLOSED] += 1
            return []
        if len(data) < RTP_HEADER_LENGTH:
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
        self.bytes += len(data)
        restart = self._track_seq(seq)
        if self.gop_cache_bytes:
            self._cache(data, first)
        out: list[tuple[Datagram, Addr]] = []
        pack_into = _REWRITE.pack_into
        for output in self._outputs.values():
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
            output.bytes += len(buf)
            out.append((buf, output.spec.addr))
        self.forwarded += len(out)
        return out

    def rekey(self, ssrc: int, now: float) -> None:
        """Expect ``ssrc`` from now on (the device answered with its own ``y=``, notes §6.3)."""
        ssrc &= 0xFFFFFFFF
        if ssrc != self.ssrc:
            self._events.append(SsrcChanged(self.ssrc, ssrc, "rekey", now))
            self.ssrc = ssrc

    def add_output(self, spec: OutputSpec) -> int:
        """Start forwarding to ``spec``; return its output id.

        If the GOP cache holds a keyframe, its packets (rewritten for this output) are queued
        in :meth:`datagrams_to_send` so the consumer starts decoding at once.
        """
        output_id = self._next_output_id
        self._next_output_id += 1
        output = _Output(spec, spec.ssrc & 0xFFFFFFFF, spec.ts_offset & 0xFFFFFFFF)
        self._outputs[output_id] = output
        gop = self._gop
        if gop is not None and gop.keyframes:
            for packet in gop.packets:
                self._backlog.append(self._rewrite_one(output, packet))
        return output_id

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
        """Return the inactivity deadline, or None once the session is closed."""
        if self.closed:
            return None
        last = self.created_at if self.last_packet_at is None else self.last_packet_at
        return last + self.timeout

    def next_event(self) -> RelayEvent | None:
        """Pop the oldest event, or None."""
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self) -> list[tuple[Datagram, Addr]]:
        """Return (and forget) datagrams not tied to a received packet: fast-join backlogs."""
        out = list(self._backlog)
        self._backlog.clear()
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
        return (0, 0) if gop is None else (len(gop.packets), gop.size)

    def gop_payloads(self) -> list[bytes]:
        """The RTP payloads of the GOP cache, in order: PS from the last keyframe on.

        Empty while no keyframe is cached. The snapshot decoder (:mod:`media.snapshot`) takes
        these; header sizes follow RFC 3550 §5.1/§5.3.1 (CSRCs, extension, padding).
        """
        gop = self._gop
        if gop is None or not gop.keyframes:
            return []
        out = []
        for packet in gop.packets:
            first = packet[0]
            start = RTP_HEADER_LENGTH + 4 * (first & 0x0F)
            if first & 0x10 and len(packet) >= start + 4:
                start += 4 + 4 * ((packet[start + 2] << 8) | packet[start + 3])
            end = len(packet) - (packet[-1] if first & 0x20 else 0)
            if start < end:
                out.append(packet[start:end])
        return out

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
            "keyframes": self.keyframes,
            "drops": dict(self.drops),
            "outputs": len(self._outputs),
            "gop_cache_packets": self.gop_cache_size[0],
            "last_packet_at": self.last_packet_at,
            "closed": self.closed,
        }

    # -- internals -----------------------------------------------------------------------------

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

    def _rewrite_one(self, output: _Output, packet: bytes) -> tuple[Datagram, Addr]:
        _, _, seq, ts, _ = _PEEK.unpack_from(packet)
        if output.seq_offset is None:
            output.seq_offset = (output.spec.seq_start - seq) & 0xFFFF
        buf = bytearray(packet)
        _REWRITE.pack_into(
            buf,
            2,
            (seq + output.seq_offset) & 0xFFFF,
            (ts + output.ts_offset) & 0xFFFFFFFF,
            output.ssrc,
        )
        output.packets += 1
        output.bytes += len(buf)
        self.forwarded += 1
        return buf, output.spec.addr

    def _cache(self, data: bytes | bytearray | memoryview, first: int) -> None:
        header = RTP_HEADER_LENGTH + 4 * (first & 0x0F)
        if first & 0x10 and len(data) >= header + 4:
            header += 4 + 4 * ((data[header + 2] << 8) | data[header + 3])
        packet = bytes(data)
        gop = self._gop
        if packet.startswith(_PACK_START, header) and _is_keyframe(packet, header):
            self.keyframes += 1
            self._gop = _GopCache([packet], len(packet), 1)
            return
        if gop is None:
            return
        gop.packets.append(packet)
        gop.size += len(packet)
        if gop.size > self.gop_cache_bytes:
            # A GOP this long would replay seconds of video: give up until the next keyframe.
            self._gop = None


def _is_keyframe(packet: bytes, start: int) -> bool:
    """Sniff the PS frame starting at ``start``: does its video start a decodable sequence?

    The first picture must be an H.264 IDR or H.265 IRAP; when the packet ends before the
    picture, parameter sets (which precede every IDR, notes §8.3) are taken as the sign.
    A system header is no sign: some senders repeat it on every few frames.
    """
    end = min(len(packet), start + _SNIFF_LIMIT)
    pes = packet.find(_VIDEO_PES, start, end)
    if pes < 0 or pes + 9 > len(packet):
        return False
    es = packet[pes + 9 + packet[pes + 8] :]
    _, key, _ = inspect_video(es)
    return key or any(marker in es for marker in _PARAMETER_SETS)
