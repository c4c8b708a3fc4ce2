"""MPEG-2 program stream demuxer for GB/T 28181 PS (ISO/IEC 13818-1 §2.5.3, notes §8.3-§8.4).

Input is the PS byte stream (the RTP payloads in order); output is one :class:`PsFrame` per
access unit. The parser walks start codes (``00 00 01 xx``) and never loops per byte: a unit's
length comes from its header, and searches use ``bytes.find``.

Access units. A PES packet with a PTS starts a new access unit of its stream, unless the PTS
equals the one being built (devices that put each NAL unit in its own PES, ZLMediaKit's
``merge_frame``); a PES without a PTS continues it (a frame larger than a PES can hold is
split, notes §8.3). So a frame is known to be complete only when the next one starts; call
:meth:`PsDemuxer.flush` at the end of each RTP frame (all packets of one frame share one RTP
timestamp, GB/T 28181-2022 §4.3.6) to get it without waiting.

Tolerated quirks (notes §8.4, §12 item 13):

* missing PSM, or PES before the first PSM: the video codec is sniffed from NAL headers;
* mislabelled codecs: H.265 labelled H.264 is corrected by parameter-set headers, AAC
  labelled G.711 by the ADTS sync word;
* a malformed PSM is counted and skipped; the previous map stays in force;
* video PES with PES_packet_length 0 (Hikvision) runs to the next PS start code (a byte
  >= 0xB9 after ``00 00 01`` cannot start an H.264/H.265 NAL unit: forbidden_zero_bit);
* pack header stuffing that is announced but absent (next start code right after the
  fixed part);
* private streams 0xBD/0xBF, padding, system headers: skipped by length;
* garbage, truncation, RTP loss: when the bytes after a unit are not a start code, the
  access unit that unit belonged to is dropped (its declared length ran into foreign
  bytes) and parsing resumes at the next pack header (``00 00 01 BA``), the recoverable-
  context strategy of SRS.

Errors never escape :meth:`PsDemuxer.feed`: each :class:`PsError` is counted in plain int
counters (``errors``, ``psm_errors``, ``pes_errors`` ...) and kept as ``last_error``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from media.nal import inspect_video, is_keyframe
from media.ps import (
    AUDIO_FIRST,
    AUDIO_LAST,
    PACK_HEADER,
    PACK_START,
    PRIVATE_STREAM_1,
    PRIVATE_STREAM_2,
    PROGRAM_END,
    PROGRAM_STREAM_MAP,
    START_CODE,
    STREAM_TYPE_CODECS,
    VIDEO_FIRST,
    VIDEO_LAST,
    Codec,
    PsError,
    PsFrame,
    StreamKind,
    decode_timestamp,
)

__all__ = ["PsDemuxer", "parse_psm"]

_DEFAULT_MAX_FRAME_SIZE = 4 * 1024 * 1024
# Largest fixed part of any unit we must see before deciding anything: pack header (14).
_PACK_MPEG2_SIZE = 14
_PACK_MPEG1_SIZE = 12
_PES_HEADER_SIZE = 9


def parse_psm(body: bytes) -> dict[int, int]:
    """Parse a program stream map body (the bytes after its 6-byte start code and length).

    Returns ``{elementary_stream_id: stream_type}``. Like ireader, the
    ``elementary_stream_map_length`` field is not trusted when it disagrees with the PSM
    length (notes §8.4); the CRC is not checked (devices get it wrong). An entry whose
    descriptors overrun the map still counts; parsing stops there.

    :raises PsError: too short, program info overrunning the map, or no entry at all.
    """
    size = len(body)
    if size < 6:
        raise PsError(f"PSM of {size} bytes is too short")
    offset = 4 + ((body[2] << 8) | body[3])
    if offset + 2 > size:
        raise PsError("PSM program_stream_info_length overruns the map")
    declared = offset + 2 + ((body[offset] << 8) | body[offset + 1])
    offset += 2
    # The map normally ends 4 bytes (CRC) before the PSM does; a declared length reaching
    # into those 4 bytes means the CRC is missing. Any other declared length is ignored.
    end = declared if size - 4 <= declared <= size else size - 4
    streams: dict[int, int] = {}
    while offset + 4 <= end:
        stream_type, stream_id = body[offset], body[offset + 1]
        streams[stream_id] = stream_type
        offset += 4 + ((body[offset + 2] << 8) | body[offset + 3])
    if not streams:
        raise PsError("PSM maps no elementary stream")
    return streams


def _is_adts(data: bytes) -> bool:
    return len(data) > 7 and data[0] == 0xFF and data[1] & 0xF6 == 0xF0


@dataclass(slots=True)
class _Unit:
    """An access unit under construction."""

    stream_id: int
    pts: int | None
    dts: int | None
    parts: list[bytes] = field(default_factory=list)
    size: int = 0


class PsDemuxer:
    """Sans-IO PS demuxer: :meth:`feed` bytes in, :class:`PsFrame` values out.

    :param max_frame_size: an access unit (or an unbounded video PES) larger than this is
        dropped and counted, which bounds the memory one stream can hold.
    """

    def __init__(self, max_frame_size: int = _DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self.stream_types: dict[int, int] = {}
        # Codec proven by parameter sets, per stream id; beats the PSM.
        self._sniffed: dict[int, Codec] = {}
        self._pending: dict[int, _Unit] = {}
        # Stream id of the last PES parsed, until a following start code confirms its length.
        self._unverified: int | None = None
        self._syncing = False
        # Byte buffer: parts not yet joined, their total size, and the size needed to progress.
        self._parts: list[bytes] = []
        self._have = 0
        self._need = 4
        # Unbounded video PES: where to resume the end search; last 3 bytes fed.
        self._scan = -1
        self._tail = b""
        # Counters.
        self.video_frames = 0
        self.audio_frames = 0
        self.bytes_skipped = 0
        self.resyncs = 0
        self.errors = 0
        self.psm_errors = 0
        self.pes_errors = 0
        self.frames_dropped = 0
        self.orphan_pes = 0
        self.private_packets = 0
        self.codec_mismatches = 0
        self.last_error: str | None = None

    # -- public API --------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[PsFrame]:
        """Add PS bytes (e.g. one RTP payload); return the access units completed by them.

        Never raises for bad input; see the counters.
        """
        if data:
            self._parts.append(bytes(data))
            self._have += len(data)
        if self._have < self._need:
            return []
        if self._scan >= 0 and self._have <= self.max_frame_size:
            # Waiting for the end of an unbounded PES: nothing to do until a start code shows.
            window = self._tail + data
            self._tail = window[-3:]
            if START_CODE not in window:
                return []
        out: list[PsFrame] = []
        self._run(out, final=False)
        return out

    def flush(self) -> list[PsFrame]:
        """Emit the access units held back, as at the end of an RTP frame or of the stream.

        An unbounded video PES ends at the end of the buffered bytes. A PES still waiting
        for bytes its length announces stays buffered, and so does its stream's access unit.
        """
        out: list[PsFrame] = []
        waiting = self._run(out, final=True)
        for stream_id in list(self._pending):
            if stream_id != waiting:
                self._emit(self._pending.pop(stream_id), out)
        return out

    def reset(self) -> None:
        """Forget buffered bytes and partial frames (the PSM and sniffed codecs are kept)."""
        self.frames_dropped += len(self._pending)
        self._pending.clear()
        self._parts.clear()
        self._have = 0
        self._need = 4
        self._scan = -1
        self._tail = b""
        self._unverified = None
        self._syncing = False

    # -- parsing -----------------------------------------------------------------------------

    def _run(self, out: list[PsFrame], final: bool) -> int | None:
        """Parse the buffer; return the stream id of a PES left incomplete, if any."""
        parts = self._parts
        if not parts:
            return None
        buf = parts[0] if len(parts) == 1 else b"".join(parts)
        pos, waiting = self._parse(buf, out, final)
        rest = buf[pos:]
        self._parts = [rest] if rest else []
        self._have = len(rest)
        if self._scan >= 0:
            self._tail = rest[-3:]
        return waiting

    def _parse(self, buf: bytes, out: list[PsFrame], final: bool) -> tuple[int, int | None]:
        n = len(buf)
        pos = 0
        while True:
            if self._syncing:
                found = buf.find(PACK_START, pos)
                if found < 0:
                    keep = max(pos, n - 3)
                    self.bytes_skipped += keep - pos
                    self._need = n - keep + 1
                    return keep, None
                self.bytes_skipped += found - pos
                pos = found
                self._syncing = False
            if n - pos < 4:
                self._need = 4
                return pos, None
            if not buf.startswith(START_CODE, pos) or buf[pos + 3] < PROGRAM_END:
                self._fail("no start code where a unit should begin", resync=True)
                continue
            self._unverified = None
            sid = buf[pos + 3]
            try:
                if sid == PACK_HEADER:
                    end = self._pack_header(buf, pos)
                elif sid == PROGRAM_END:
                    end = pos + 4
                elif VIDEO_FIRST <= sid <= VIDEO_LAST or AUDIO_FIRST <= sid <= AUDIO_LAST:
                    end = self._pes(buf, pos, sid, out, final)
                else:
                    end = self._other(buf, pos, sid)
            except PsError as exc:
                if VIDEO_FIRST <= sid <= VIDEO_LAST or AUDIO_FIRST <= sid <= AUDIO_LAST:
                    self._unverified = sid  # its access unit lost a piece
                self._fail(str(exc), resync=True)
                pos += 4
                continue
            if end < 0:
                self._need = -end
                is_pes = VIDEO_FIRST <= sid <= VIDEO_LAST or AUDIO_FIRST <= sid <= AUDIO_LAST
                return pos, sid if is_pes else None
            pos = end

    def _fail(self, message: str, resync: bool) -> None:
        self.errors += 1
        self.last_error = message
        if resync:
            self.resyncs += 1
            self._syncing = True
            self._scan = -1
            if self._unverified is not None:
                unit = self._pending.pop(self._unverified, None)
                if unit is not None:
                    self.frames_dropped += 1
                self._unverified = None

    def _pack_header(self, buf: bytes, pos: int) -> int:
        """Return the end of the pack header at ``pos``, or ``-need`` if it is incomplete."""
        n = len(buf)
        if n - pos < _PACK_MPEG1_SIZE:
            return -_PACK_MPEG2_SIZE
        marker = buf[pos + 4]
        if marker >> 6 == 1:  # MPEG-2: '01' + SCR ...; stuffing length in the last byte
            if n - pos < _PACK_MPEG2_SIZE:
                return -_PACK_MPEG2_SIZE
            end = pos + _PACK_MPEG2_SIZE
            stuffing = buf[pos + 13] & 0x07
            if stuffing and buf.startswith(START_CODE, end):
                return end  # stuffing announced but absent
            if n - end < stuffing:
                return -(_PACK_MPEG2_SIZE + stuffing)
            return end + stuffing
        if marker >> 4 == 2:  # MPEG-1: '0010' + SCR + mux rate
            return pos + _PACK_MPEG1_SIZE
        if buf.startswith(START_CODE, pos + 4):
            return pos + 4  # bare pack start code followed by the next unit
        raise PsError(f"pack header has invalid marker bits 0x{marker:02x}")

    def _other(self, buf: bytes, pos: int, sid: int) -> int:
        """Skip (or read, for a PSM) a unit with a 16-bit length: 0xBB..0xBF, 0xF0..0xFF."""
        if len(buf) - pos < 6:
            return -6
        end = pos + 6 + ((buf[pos + 4] << 8) | buf[pos + 5])
        if end > len(buf):
            return -(end - pos)
        if sid == PROGRAM_STREAM_MAP:
            try:
                self.stream_types = parse_psm(buf[pos + 6 : end])
            except PsError as exc:
                self.psm_errors += 1
                self._fail(str(exc), resync=False)
        elif sid in (PRIVATE_STREAM_1, PRIVATE_STREAM_2):
            self.private_packets += 1
        return end

    def _pes(self, buf: bytes, pos: int, sid: int, out: list[PsFrame], final: bool) -> int:
        """Read one audio/video PES; return its end, or ``-need`` if it is incomplete."""
        n = len(buf)
        if n - pos < 6:
            return -6
        length = (buf[pos + 4] << 8) | buf[pos + 5]
        if length:
            end = pos + 6 + length
            if end > n:
                return -(end - pos)
        elif sid >= VIDEO_FIRST:
            end = self._unbounded_end(buf, pos, final)
            if end < 0:
                return end
        else:
            self.pes_errors += 1
            raise PsError("audio PES has zero length")
        if end - pos < _PES_HEADER_SIZE or buf[pos + 6] & 0xC0 != 0x80:
            self.pes_errors += 1
            raise PsError("PES header is not MPEG-2")
        flags = buf[pos + 7]
        start = pos + _PES_HEADER_SIZE + buf[pos + 8]
        if start > end:
            self.pes_errors += 1
            raise PsError("PES header is longer than the packet")
        pts = dts = None
        if flags & 0x80:
            if buf[pos + 8] < (10 if flags & 0x40 else 5):
                self.pes_errors += 1
                raise PsError("PES header too short for its PTS/DTS")
            pts = decode_timestamp(buf, pos + 9)
            dts = decode_timestamp(buf, pos + 14) if flags & 0x40 else pts
        self._add(sid, pts, dts, buf[start:end], out)
        return end

    def _unbounded_end(self, buf: bytes, pos: int, final: bool) -> int:
        """End of a video PES with length 0: the next PS start code (or the data, if final)."""
        n = len(buf)
        i = buf.find(START_CODE, pos + 6 + max(self._scan, 0))
        while i >= 0 and i + 3 < n:
            if buf[i + 3] >= PROGRAM_END:
                self._scan = -1
                return i
            i = buf.find(START_CODE, i + 3)
        if final:
            self._scan = -1
            return n
        if n - pos > self.max_frame_size + 6:
            self._scan = -1
            self.pes_errors += 1
            raise PsError(f"unbounded PES exceeds {self.max_frame_size} bytes")
        # Resume where a start code may still begin (relative to the payload start).
        self._scan = (i if i >= 0 else max(pos + 6, n - 3)) - pos - 6
        self._tail = buf[-3:]
        return -(n - pos + 1)

    # -- access units ------------------------------------------------------------------------

    def _add(
        self, sid: int, pts: int | None, dts: int | None, payload: bytes, out: list[PsFrame]
    ) -> None:
        unit = self._pending.get(sid)
        if unit is not None and (pts is None or pts == unit.pts):
            unit.parts.append(payload)
            unit.size += len(payload)
        else:
            if unit is not None:
                self._emit(unit, out)
            if pts is None:
                # A continuation whose start we never saw (joined mid-frame, or lost).
                self.orphan_pes += 1
                self._pending.pop(sid, None)
                return
            unit = self._pending[sid] = _Unit(sid, pts, dts, [payload], len(payload))
        if unit.size > self.max_frame_size:
            del self._pending[sid]
            self.frames_dropped += 1
            self._fail(f"access unit exceeds {self.max_frame_size} bytes", resync=False)
            return
        self._unverified = sid

    def _emit(self, unit: _Unit, out: list[PsFrame]) -> None:
        data = unit.parts[0] if len(unit.parts) == 1 else b"".join(unit.parts)
        sid = unit.stream_id
        stream_type = self.stream_types.get(sid)
        labelled = STREAM_TYPE_CODECS.get(stream_type) if stream_type is not None else None
        if sid >= VIDEO_FIRST:
            kind = StreamKind.VIDEO
            codec = labelled or Codec.UNKNOWN
            if codec in (Codec.H264, Codec.H265, Codec.UNKNOWN):
                hint = self._sniffed.get(sid, codec)
                codec, keyframe, strong = inspect_video(data, hint)
                if strong and self._sniffed.get(sid) is not codec:
                    self._sniffed[sid] = codec
                    if labelled is not None and codec is not labelled:
                        self.codec_mismatches += 1  # counted when the belief changes
            else:
                keyframe = is_keyframe(data, codec)
            self.video_frames += 1
        else:
            kind = StreamKind.AUDIO
            codec = labelled or Codec.UNKNOWN
            if codec in (Codec.PCMA, Codec.PCMU, Codec.UNKNOWN) and _is_adts(data):
                if labelled is not None:
                    self.codec_mismatches += 1
                codec = Codec.AAC
            keyframe = True
            self.audio_frames += 1
        out.append(PsFrame(kind, codec, data, unit.pts, unit.dts, keyframe, sid))
