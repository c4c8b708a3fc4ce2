"""RTP packets (RFC 3550 §5.1): parse, serialize, sequence arithmetic, packetizing.

GB/T 28181 media is RTP version 2 with payload type 96 (PS), no CSRC and a 90 kHz clock
(notes §8.1), but the parser accepts the whole RFC 3550 header (CSRC list, header extension,
padding) so that a packet always re-serializes to the same bytes.

Two entry points for two costs:

* :func:`peek_ssrc_seq_ts` reads the three fields the relay needs with one
  ``struct.unpack_from`` and builds no object; it runs once per received packet.
* :meth:`RtpPacket.parse` builds the full value; frame assembly and tests use it.

Sequence numbers (16 bit) and timestamps (32 bit) wrap, so they are compared with serial
number arithmetic (RFC 1982) through the helpers below, never with ``<``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "RTP_HEADER_LENGTH",
    "RTP_MAX_PACKET_SIZE",
    "RTP_VERSION",
    "RtpError",
    "RtpExtension",
    "RtpHeader",
    "RtpPacket",
    "RtpPacketizer",
    "peek_ssrc_seq_ts",
    "seq_add",
    "seq_diff",
    "seq_gt",
    "ts_add",
    "ts_diff",
    "ts_gt",
]

RTP_VERSION = 2
RTP_HEADER_LENGTH = 12
#: Largest RTP packet: the UDP payload limit, also the RFC 4571 length field limit.
RTP_MAX_PACKET_SIZE = 65535

_FIXED = struct.Struct("!BBHII")
_EXT = struct.Struct("!HH")


class RtpError(ValueError):
    """Raised for a malformed RTP packet or an unusable argument; the message says which."""


# -- sequence / timestamp arithmetic -----------------------------------------------------------


def seq_add(seq: int, delta: int) -> int:
    """Return ``seq + delta`` modulo 2**16."""
    return (seq + delta) & 0xFFFF


def seq_diff(a: int, b: int) -> int:
    """Return the signed distance ``a - b`` in [-32768, 32767], wrapping at 2**16."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_gt(a: int, b: int) -> bool:
    """Return True if sequence number ``a`` comes after ``b`` (RFC 1982, 16 bit)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


def ts_add(ts: int, delta: int) -> int:
    """Return ``ts + delta`` modulo 2**32."""
    return (ts + delta) & 0xFFFFFFFF


def ts_diff(a: int, b: int) -> int:
    """Return the signed distance ``a - b`` between two 32-bit RTP timestamps."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def ts_gt(a: int, b: int) -> bool:
    """Return True if timestamp ``a`` comes after ``b`` (RFC 1982, 32 bit)."""
    return a != b and ((a - b) & 0xFFFFFFFF) < 0x80000000


# -- header-only peek (hot path) ---------------------------------------------------------------


def peek_ssrc_seq_ts(data: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """Return ``(ssrc, sequence_number, timestamp)`` without building a packet object.

    Only the fixed header is checked (length and version), which is what a relay needs
    before rewriting and forwarding the packet.

    :raises RtpError: if ``data`` is shorter than 12 bytes or the version is not 2.
    """
    if len(data) < RTP_HEADER_LENGTH:
        raise RtpError("RTP packet length is less than 12 bytes")
    first, _, seq, ts, ssrc = _FIXED.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise RtpError(f"RTP packet has invalid version {first >> 6}")
    return ssrc, seq, ts


# -- full packet -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """An RFC 3550 §5.3.1 header extension: 16-bit profile word and its data (whole words)."""

    profile: int
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """The RTP header fields (version is always 2; the padding bit lives on the packet)."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RtpExtension | None = None

    @property
    def size(self) -> int:
        """Serialized header length in bytes."""
        size = RTP_HEADER_LENGTH + 4 * len(self.csrc)
        if self.extension is not None:
            size += 4 + len(self.extension.data)
        return size

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> tuple[RtpHeader, int, bool]:
        """Parse the header at the start of ``data``.

        :returns: ``(header, header_length, padding_flag)``.
        :raises RtpError: truncated header, CSRC list or extension, or a version other than 2.
        """
        length = len(data)
        if length < RTP_HEADER_LENGTH:
            raise RtpError("RTP packet length is less than 12 bytes")
        first, second, seq, ts, ssrc = _FIXED.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTP packet has invalid version {first >> 6}")
        offset = RTP_HEADER_LENGTH
        csrc: tuple[int, ...] = ()
        cc = first & 0x0F
        if cc:
            end = offset + 4 * cc
            if length < end:
                raise RtpError("RTP packet has truncated CSRC")
            csrc = struct.unpack_from(f"!{cc}I", data, offset)
            offset = end
        extension = None
        if first & 0x10:
            if length < offset + 4:
                raise RtpError("RTP packet has truncated extension header")
            profile, words = _EXT.unpack_from(data, offset)
            offset += 4
            end = offset + 4 * words
            if length < end:
                raise RtpError("RTP packet has truncated extension data")
            extension = RtpExtension(profile, bytes(data[offset:end]))
            offset = end
        header = cls(
            payload_type=second & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            marker=bool(second & 0x80),
            csrc=csrc,
            extension=extension,
        )
        return header, offset, bool(first & 0x20)

    def serialize(self, padding: bool = False) -> bytes:
        """Return the header bytes; ``padding`` sets the P bit."""
        if not 0 <= self.payload_type <= 0x7F:
            raise RtpError(f"RTP payload type {self.payload_type} is out of range")
        if len(self.csrc) > 15:
            raise RtpError("RTP packet cannot carry more than 15 CSRC")
        first = 0x80 | len(self.csrc)
        if padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = self.payload_type | (0x80 if self.marker else 0)
        out = _FIXED.pack(
            first,
            second,
            self.sequence_number & 0xFFFF,
            self.timestamp & 0xFFFFFFFF,
            self.ssrc & 0xFFFFFFFF,
        )
        if self.csrc:
            out += struct.pack(f"!{len(self.csrc)}I", *self.csrc)
        if self.extension is not None:
            ext = self.extension
            if len(ext.data) % 4:
                raise RtpError("RTP extension data length is not a multiple of 4")
            out += _EXT.pack(ext.profile, len(ext.data) // 4) + ext.data
        return out

    def __bytes__(self) -> bytes:
        return self.serialize()


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet: header, payload and the raw padding trailer (empty when unpadded).

    ``padding`` holds the trailing bytes exactly as received (the last one is their count),
    so ``bytes(RtpPacket.parse(data)) == data`` for every valid packet.
    """

    header: RtpHeader
    payload: bytes = b""
    padding: bytes = field(default=b"")

    @property
    def sequence_number(self) -> int:
        return self.header.sequence_number

    @property
    def timestamp(self) -> int:
        return self.header.timestamp

    @property
    def ssrc(self) -> int:
        return self.header.ssrc

    @property
    def marker(self) -> bool:
        return self.header.marker

    @property
    def payload_type(self) -> int:
        return self.header.payload_type

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Parse one whole RTP packet.

        :raises RtpError: see :meth:`RtpHeader.parse`; also a padding count of zero or one
            that reaches into the header.
        """
        header, offset, padded = RtpHeader.parse(data)
        end = len(data)
        padding = b""
        if padded:
            count = data[end - 1] if end > offset else 0
            if count == 0 or end - count < offset:
                raise RtpError("RTP packet padding length is invalid")
            end -= count
            padding = bytes(data[end:])
        return cls(header, bytes(data[offset:end]), padding)

    def serialize(self) -> bytes:
        """Return the wire bytes of the packet."""
        if self.padding and self.padding[-1] != len(self.padding):
            raise RtpError("RTP packet padding length is invalid")
        return self.header.serialize(bool(self.padding)) + self.payload + self.padding

    def __bytes__(self) -> bytes:
        return self.serialize()

    def __repr__(self) -> str:
        h = self.header
        return (
            f"RtpPacket(seq={h.sequence_number}, ts={h.timestamp}, ssrc={h.ssrc}, "
            f"pt={h.payload_type}, marker={int(h.marker)}, payload={len(self.payload)} bytes)"
        )


class RtpPacketizer:
    """Cut one frame's payload (e.g. the PS bytes of one frame) into RTP packets.

    GB/T 28181-2022 §4.3.6: every packet of a frame carries the frame's timestamp, and we set
    the marker on the last one. ``mtu`` is the largest whole RTP packet (header included);
    1400 matches common senders and stays far below the 10 KB limit of receivers that treat
    larger RTP-over-TCP packets as corruption (notes §8.2).
    """

    def __init__(
        self, ssrc: int, payload_type: int = 96, seq_start: int = 0, mtu: int = 1400
    ) -> None:
        if mtu <= RTP_HEADER_LENGTH or mtu > RTP_MAX_PACKET_SIZE:
            raise RtpError(f"RTP mtu {mtu} is out of range")
        if not 0 <= payload_type <= 0x7F:
            raise RtpError(f"RTP payload type {payload_type} is out of range")
        self.ssrc = ssrc & 0xFFFFFFFF
        self.payload_type = payload_type
        self.next_seq = seq_start & 0xFFFF
        self.max_payload = mtu - RTP_HEADER_LENGTH

    def packetize(self, payload: bytes, timestamp: int) -> list[bytes]:
        """Return the RTP packets (wire bytes) carrying ``payload``, marker on the last.

        An empty payload yields no packet.
        """
        step = self.max_payload
        count = (len(payload) + step - 1) // step
        out: list[bytes] = []
        pack = _FIXED.pack
        ts = timestamp & 0xFFFFFFFF
        seq = self.next_seq
        for i in range(count):
            second = self.payload_type | (0x80 if i == count - 1 else 0)
            out.append(pack(0x80, second, seq, ts, self.ssrc) + payload[i * step : (i + 1) * step])
            seq = (seq + 1) & 0xFFFF
        self.next_seq = seq
        return out
