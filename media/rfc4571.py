"""RTP over TCP framing (RFC 4571): a 2-byte big-endian length before each RTP packet.

GB/T 28181-2016 Appendix L / 2022 Appendix D carry PS/RTP over TCP this way. A byte stream
from a camera is not always clean (notes §8.2, §12 item 14): sender buffer overruns splice
packets together, and a stream may start in the middle of a packet. So the splitter checks
every frame cheaply (length in range, RTP version 2, same SSRC as the frame before) and, when
a check fails, enters a resync search like ZLMediaKit's ``RtpSession``:

1. when an SSRC is known (given, or learned from the last good packet), find its next
   occurrence with ``bytes.find``; the frame would start 10 bytes before it (2 length + 8
   header bytes) and must itself pass the checks;
2. otherwise, or when the SSRC never shows up, accept an offset only if two consecutive frames
   start there, both with version 2, lengths in range and the same SSRC (which becomes the
   SSRC expected from then on: a device may ignore the SSRC it was given, notes §12 item 1).

A new splitter starts in the search, since a connection may begin mid-packet (ZLM #2966).

Bytes passed over are counted in :attr:`Rfc4571Splitter.bytes_skipped`. Buffering is bounded:
at most one incomplete frame (or, while resyncing, one candidate frame plus the next header)
is kept between calls.
"""

from __future__ import annotations

import heapq
import re
from collections import deque

from media.rtp import RTP_HEADER_LENGTH, RTP_MAX_PACKET_SIZE

__all__ = ["Rfc4571Error", "Rfc4571Splitter", "frame"]

_LENGTH_SIZE = 2
# Offset of the SSRC from the start of a frame: length field (2) + 8 header bytes.
_SSRC_OFFSET = _LENGTH_SIZE + 8
# Bytes of a frame needed to check its header: length + first RTP byte; + SSRC to compare.
_CHECK_SIZE = _LENGTH_SIZE + 1
_CONFIRM_SIZE = _SSRC_OFFSET + 4
# A first RTP byte with version 2 (any P/X/CC bits).
_VERSION2 = re.compile(rb"[\x80-\xbf]")


class Rfc4571Error(ValueError):
    """Raised when a packet cannot be framed (longer than the 16-bit length allows)."""


def frame(packet: bytes) -> bytes:
    """Return ``packet`` prefixed with its RFC 4571 length, ready to write to a TCP stream.

    :raises Rfc4571Error: if the packet is longer than 65535 bytes.
    """
    size = len(packet)
    if size > RTP_MAX_PACKET_SIZE:
        raise Rfc4571Error(f"RTP packet of {size} bytes does not fit an RFC 4571 frame")
    return size.to_bytes(2, "big") + packet


class Rfc4571Splitter:
    """Turn an RFC 4571 byte stream into whole RTP packets (sans-IO).

    :param max_packet_size: longest packet accepted; a longer length field is treated as
        corruption. The default accepts anything the 16-bit field can say; ZLMediaKit uses
        10240 (``rtp.rtpMaxSize``), which makes corruption visible sooner.
    :param ssrc: the SSRC expected on this connection (from the SDP ``y=`` line). It speeds
        up the search; frames with another SSRC are still accepted once two consecutive ones
        agree. When None, the first two frames set it.

    Counters (plain ints): ``packets``, ``bytes_skipped``, ``resyncs``.
    """

    def __init__(self, max_packet_size: int = RTP_MAX_PACKET_SIZE, ssrc: int | None = None):
        if not RTP_HEADER_LENGTH <= max_packet_size <= RTP_MAX_PACKET_SIZE:
            raise Rfc4571Error(f"max_packet_size {max_packet_size} is out of range")
        self.max_packet_size = max_packet_size
        self._ssrc = b"" if ssrc is None else (ssrc & 0xFFFFFFFF).to_bytes(4, "big")
        self._parts: list[bytes] = []
        self._have = 0
        self._need = _CHECK_SIZE
        # Start by searching: a connection may begin in the middle of a packet (ZLM #2966).
        self._syncing = True
        # Resync search state, in stream offsets (``_base`` is the offset of the buffer).
        self._base = 0
        self._scan_from = 0
        self._ssrc_from = 0
        self._waiting: list[tuple[int, int]] = []
        self._order: deque[int] = deque()
        self._dead: set[int] = set()
        self.packets = 0
        self.bytes_skipped = 0
        self.resyncs = 0

    @property
    def ssrc(self) -> int | None:
        """The SSRC used for resynchronisation (given or learned), if any."""
        return int.from_bytes(self._ssrc, "big") if self._ssrc else None

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return self._have

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes received from the stream; return the RTP packets now complete.

        Never raises on bad input: corruption is skipped and counted.
        """
        if data:
            self._parts.append(bytes(data))
            self._have += len(data)
        if self._have < self._need:
            return []
        buf = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        out: list[bytes] = []
        pos = self._split(buf, out)
        self._base += pos
        rest = buf[pos:]
        self._parts = [rest] if rest else []
        self._have = len(rest)
        return out

    def _split(self, buf: bytes, out: list[bytes]) -> int:
        n = len(buf)
        pos = 0
        limit = self.max_packet_size
        while True:
            if self._syncing:
                found, need = self._find_frame(buf, pos)
                self.bytes_skipped += found - pos
                pos = found
                if need:
                    self._need = need
                    return pos
                self._syncing = False
            if n - pos < _CHECK_SIZE:
                self._need = _CHECK_SIZE
                return pos
            size = (buf[pos] << 8) | buf[pos + 1]
            if size < RTP_HEADER_LENGTH or size > limit or buf[pos + 2] & 0xC0 != 0x80:
                self._syncing = True
                self.resyncs += 1
                self.bytes_skipped += 1
                pos += 1
                continue
            end = pos + _LENGTH_SIZE + size
            if end > n:
                self._need = end - pos
                return pos
            if buf[pos + _SSRC_OFFSET : pos + _CONFIRM_SIZE] != self._ssrc:
                # Another SSRC mid-stream is more likely a bad length than a new sender; the
                # search below accepts a new SSRC only when two frames agree on it.
                self._syncing = True
                self.resyncs += 1
                continue
            out.append(buf[pos + _LENGTH_SIZE : end])
            self.packets += 1
            pos = end

    def _header_ok(self, buf: bytes, pos: int) -> bool:
        size = (buf[pos] << 8) | buf[pos + 1]
        return RTP_HEADER_LENGTH <= size <= self.max_packet_size and buf[pos + 2] & 0xC0 == 0x80

    def _confirm(self, buf: bytes, pos: int) -> int:
        """Check a frame start by the frame after it: 1 yes, 0 no, or the offset still needed."""
        if not self._header_ok(buf, pos):
            return 0
        nxt = pos + _LENGTH_SIZE + ((buf[pos] << 8) | buf[pos + 1])
        if nxt + _CONFIRM_SIZE > len(buf):
            return -(nxt + _CONFIRM_SIZE)
        return int(
            self._header_ok(buf, nxt)
            and buf[pos + _SSRC_OFFSET : pos + _CONFIRM_SIZE]
            == buf[nxt + _SSRC_OFFSET : nxt + _CONFIRM_SIZE]
        )

    def _find_frame(self, buf: bytes, start: int) -> tuple[int, int]:
        """Return ``(offset, need)`` for the next plausible frame at or after ``start``.

        ``need`` is 0 when a frame was found at ``offset``. Otherwise the search resumes at
        ``offset`` (the bytes before it are garbage) once ``need`` bytes from there are held.

        Work is not repeated across calls: the SSRC and candidate scans resume where they
        stopped, and a candidate whose next frame is not here yet waits in a heap keyed by
        the stream offset at which it can be judged. The first candidate confirmed wins,
        even over an earlier one still waiting: two consecutive frames with one SSRC inside
        the payload of a real packet are not a practical risk.
        """
        n = len(buf)
        base = self._base
        ssrc = self._ssrc
        if ssrc:
            i = buf.find(ssrc, max(start + _SSRC_OFFSET, self._ssrc_from - base))
            while i >= 0:
                if self._header_ok(buf, i - _SSRC_OFFSET):
                    return self._found(buf, i - _SSRC_OFFSET)
                i = buf.find(ssrc, i + 1)
            self._ssrc_from = base + n - 3
        waiting = self._waiting
        best = -1
        while waiting and waiting[0][0] <= base + n:
            pos = heapq.heappop(waiting)[1] - base
            self._dead.add(pos + base)
            if pos >= start and self._confirm(buf, pos) == 1 and (best < 0 or pos < best):
                best = pos
        for match in _VERSION2.finditer(buf, max(start + _LENGTH_SIZE, self._scan_from - base)):
            pos = match.start() - _LENGTH_SIZE
            if 0 <= best < pos:
                break
            verdict = self._confirm(buf, pos)
            if verdict == 1:
                best = pos
                break
            if verdict < 0:
                heapq.heappush(waiting, (base - verdict, base + pos))
                self._order.append(base + pos)
        self._scan_from = base + n
        if best >= 0:
            return self._found(buf, best)
        order, dead = self._order, self._dead
        while order and (order[0] in dead or order[0] < base + start):
            dead.discard(order.popleft())
        pos = order[0] - base if order else max(start, n - _LENGTH_SIZE)
        return pos, n - pos + 1

    def _found(self, buf: bytes, pos: int) -> tuple[int, int]:
        self._ssrc = buf[pos + _SSRC_OFFSET : pos + _CONFIRM_SIZE]
        self._waiting.clear()
        self._order.clear()
        self._dead.clear()
        self._scan_from = self._ssrc_from = 0
        return pos, 0
