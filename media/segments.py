"""Recording segment files: raw MPEG-PS, cut into frames without trusting any index.

A segment file is the PS byte stream of one camera exactly as received (the RTP payloads of
whole frames, concatenated), starting at the pack header of a keyframe. Nothing else is stored
in the file: the storage index is a cache that :func:`scan_segment` can always rebuild from the
file alone, which is what start-up reconciliation after a crash relies on.

Frames. A *frame group* is the run of PS units that carries one video access unit and the
audio packs that follow it: it begins at the pack header before a video PES whose PTS differs
from the current group's, so an audio pack sent after a video frame (same or later PTS) stays
with that frame. Continuation PES (no PTS, or the same PTS: devices that put each NAL unit in
its own PES) stay in their group. A group is known complete only when the next one starts, or
at the end of the file.

The walk is structural, like :class:`media.ps_demux.PsDemuxer`: a unit's length comes from its
header and searches use ``bytes.find``; a video PES of length 0 (Hikvision) runs to the next PS
start code. Bytes that are not a unit where one should begin drop the group being built and
parsing resumes at the next pack header. At the end of the data, a group whose last unit is
incomplete (a file cut by a power loss mid-write) is dropped: readers never see a partial frame.

Bounds: a group larger than ``max_frame_size`` is dropped, files are read in 1 MiB chunks, so
memory stays below two frames plus a chunk whatever the file size.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

from media.nal import inspect_video
from media.ps import (
    AUDIO_FIRST,
    AUDIO_LAST,
    PACK_HEADER,
    PACK_START,
    PROGRAM_END,
    PROGRAM_STREAM_MAP,
    START_CODE,
    STREAM_TYPE_CODECS,
    TIMESTAMP_MASK,
    VIDEO_FIRST,
    VIDEO_LAST,
    Codec,
    PsError,
    decode_timestamp,
)
from media.ps_demux import parse_psm

__all__ = [
    "MAX_FRAME_SIZE",
    "FrameGrouper",
    "SegmentFrame",
    "SegmentInfo",
    "Timeline",
    "read_frames",
    "scan_segment",
    "segment_name",
]

#: Largest frame group kept (bytes); larger ones are dropped and counted.
MAX_FRAME_SIZE = 8 * 1024 * 1024
PTS_CLOCK = 90_000
_CHUNK = 1024 * 1024
_PACK_MPEG2_SIZE = 14
_PACK_MPEG1_SIZE = 12
_PES_HEADER_SIZE = 9


@dataclass(frozen=True, slots=True)
class SegmentFrame:
    """One frame group: the bytes of one video frame's packs (and the audio packs after it).

    ``offset`` is the byte offset of the group in the file; ``pts`` the 90 kHz PTS of its video
    PES (None for a group without a timed video PES); ``keyframe`` is True when that video
    access unit is an H.264 IDR or H.265 IRAP picture.
    """

    offset: int
    pts: int | None
    keyframe: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """What the index stores about one segment file.

    ``start``/``end`` are wall-clock seconds (epoch); ``bytes`` is the length of the valid part
    of the file (whole frame groups from offset 0); ``keyframes`` holds ``(seconds from start,
    byte offset of the keyframe's group)``; ``sha256`` is the hex digest of those ``bytes``.
    """

    path: str
    start: float
    end: float
    bytes: int
    codec: str
    keyframes: tuple[tuple[float, int], ...]
    sha256: str


def segment_name(channel_id: str, start: float) -> str:
    """Return ``<channel>/<YYYYMMDD>/<channel>_<start_ms>.ps`` (UTC date), relative to the root.

    One directory per channel and day keeps directories small and makes retention by day a
    cheap listing.
    """
    day = time.strftime("%Y%m%d", time.gmtime(start))
    return f"{channel_id}/{day}/{channel_id}_{round(start * 1000)}.ps"


class Timeline:
    """Seconds from the first video PTS of a segment, tolerant of 33-bit wrap and B-frames.

    ``duration`` adds one frame interval (the last positive PTS step) to the span of PTS seen,
    so back-to-back segments tile time without a gap. The writer and :func:`scan_segment` use
    this one class so a recovered segment gets the same times its writer would have given it.
    """

    __slots__ = ("_first", "_last", "_max", "_step")

    def __init__(self) -> None:
        self._first: int | None = None
        self._last = 0
        self._max = 0
        self._step = 0

    def add(self, pts: int | None) -> float:
        """Record a frame's PTS; return its time in seconds from the first (0.0 if untimed)."""
        if pts is None:
            return self._last / PTS_CLOCK
        if self._first is None:
            self._first = pts
        rel = (pts - self._first) & TIMESTAMP_MASK
        if rel > TIMESTAMP_MASK // 2:  # earlier than the first (B-frame reordering)
            rel = 0
        if rel > self._last:
            self._step = rel - self._last
        self._last = rel
        self._max = max(self._max, rel)
        return rel / PTS_CLOCK

    @property
    def duration(self) -> float:
        """Seconds covered by the frames added so far."""
        if self._first is None:
            return 0.0
        return (self._max + self._step) / PTS_CLOCK


class FrameGrouper:
    """Sans-IO splitter of a PS byte stream into :class:`SegmentFrame` groups.

    :meth:`feed` takes bytes (file chunks or RTP frame payloads) and returns the groups that
    are complete; :meth:`end` returns the last group if the data ended on a unit boundary.
    Offsets count from ``base`` (the file offset of the first byte fed).

    Counters: ``bytes_skipped`` (garbage between units), ``errors`` (resyncs and malformed
    units), ``dropped`` (groups lost to garbage, size or a truncated end). ``codec`` is the
    video codec believed so far (PSM, corrected by parameter sets).
    """

    def __init__(self, base: int = 0, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self.codec = Codec.UNKNOWN
        self._psm_video: Codec | None = None
        self._buf = b""
        self._base = base  # file offset of _buf[0]
        self._pos = 0  # parse position in _buf
        self._syncing = False
        self._scan = 0  # unbounded PES: where to resume the end search (relative to _buf)
        # Group under construction (offsets absolute).
        self._g_start: int | None = None
        self._g_pts: int | None = None
        self._g_key = False
        self._g_video_at = -1
        self._pack_at = -1
        self.bytes_skipped = 0
        self.errors = 0
        self.dropped = 0

    # -- public API --------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[SegmentFrame]:
        """Add bytes; return the frame groups they completed (oldest first)."""
        out: list[SegmentFrame] = []
        if data:
            self._compact()
            self._buf = self._buf + bytes(data) if self._buf else bytes(data)
            self._parse(out, final=False)
        return out

    def end(self) -> list[SegmentFrame]:
        """End of data: return the last group if its last unit is complete, else drop it."""
        out: list[SegmentFrame] = []
        self._parse(out, final=True)
        if self._g_start is not None:
            if self._pos >= len(self._buf) and not self._syncing:
                self._emit(self._base + self._pos, out)
            elif not self._syncing and self._pack_at > self._g_video_at >= 0:
                # Cut inside a pack after the group's video: GB/T 28181 senders start every
                # frame with a pack header, so the group before it is whole.
                self._emit(self._pack_at, out)
                self.dropped += 1
            else:
                self.dropped += 1
        self._g_start = None
        return out

    @property
    def position(self) -> int:
        """Absolute offset just past the last group emitted or dropped (the valid prefix)."""
        return self._g_start if self._g_start is not None else self._base + self._pos

    # -- parsing -----------------------------------------------------------------------------

    def _compact(self) -> None:
        keep = self._pos if self._g_start is None else self._g_start - self._base
        if keep > 0:
            self._buf = self._buf[keep:]
            self._base += keep
            self._pos -= keep
            self._scan = max(self._scan - keep, 0)

    def _parse(self, out: list[SegmentFrame], final: bool) -> None:
        buf = self._buf
        n = len(buf)
        pos = self._pos
        while True:
            if self._syncing:
                found = buf.find(PACK_START, pos)
                if found < 0:
                    keep = max(pos, n - 3)
                    self.bytes_skipped += keep - pos
                    self._pos = keep
                    return
                self.bytes_skipped += found - pos
                pos = found
                self._syncing = False
            if n - pos < 4:
                break
            sid = buf[pos + 3]
            if not buf.startswith(START_CODE, pos) or sid < PROGRAM_END:
                self._resync(pos)
                continue
            try:
                end = self._unit(buf, pos, sid, out, final)
            except PsError:
                self._resync(pos)
                pos += 4
                continue
            if end < 0:
                break
            if self._g_start is not None and self._base + end - self._g_start > self.max_frame_size:
                self._resync(pos)
                pos = end
                continue
            pos = end
        self._pos = pos

    def _resync(self, pos: int) -> None:
        self.errors += 1
        self._syncing = True
        self._scan = 0
        if self._g_start is not None:
            self.dropped += 1
            self._g_start = None
        self._pos = pos

    def _unit(self, buf: bytes, pos: int, sid: int, out: list[SegmentFrame], final: bool) -> int:
        """Consume the unit at ``pos``; return its end, or -1 if more bytes are needed."""
        if self._g_start is None:
            self._start_group(self._base + pos)
        if sid == PACK_HEADER:
            self._pack_at = self._base + pos
            return self._pack_end(buf, pos)
        if sid == PROGRAM_END:
            return pos + 4
        n = len(buf)
        if n - pos < 6:
            return -1
        length = (buf[pos + 4] << 8) | buf[pos + 5]
        is_video = VIDEO_FIRST <= sid <= VIDEO_LAST
        if not (is_video or AUDIO_FIRST <= sid <= AUDIO_LAST):
            end = pos + 6 + length
            if end > n:
                return -1
            if sid == PROGRAM_STREAM_MAP:
                self._psm(buf[pos + 6 : end])
            return end
        if length:
            end = pos + 6 + length
            if end > n:
                if final and is_video:
                    self._cut_before(buf, pos, out)
                return -1
        elif is_video:
            end = self._unbounded_end(buf, pos, final)
            if end < 0:
                return -1
        else:
            raise PsError("audio PES has zero length")
        if end - pos < _PES_HEADER_SIZE or buf[pos + 6] & 0xC0 != 0x80:
            raise PsError("PES header is not MPEG-2")
        header_end = pos + _PES_HEADER_SIZE + buf[pos + 8]
        if header_end > end:
            raise PsError("PES header is longer than the packet")
        if is_video and buf[pos + 7] & 0x80:
            if buf[pos + 8] < 5:
                raise PsError("PES header too short for its PTS")
            self._video(decode_timestamp(buf, pos + 9), buf, pos, header_end, end, out)
        return end

    def _pack_end(self, buf: bytes, pos: int) -> int:
        n = len(buf)
        if n - pos < _PACK_MPEG1_SIZE:
            return -1
        marker = buf[pos + 4]
        if marker >> 6 == 1:
            if n - pos < _PACK_MPEG2_SIZE:
                return -1
            end = pos + _PACK_MPEG2_SIZE
            stuffing = buf[pos + 13] & 0x07
            if stuffing and buf.startswith(START_CODE, end):
                return end
            return end + stuffing if n - end >= stuffing else -1
        if marker >> 4 == 2:
            return pos + _PACK_MPEG1_SIZE
        if buf.startswith(START_CODE, pos + 4):
            return pos + 4
        raise PsError(f"pack header has invalid marker bits 0x{marker:02x}")

    def _unbounded_end(self, buf: bytes, pos: int, final: bool) -> int:
        n = len(buf)
        i = buf.find(START_CODE, max(pos + 6, self._scan))
        while i >= 0 and i + 3 < n:
            if buf[i + 3] >= PROGRAM_END:
                self._scan = 0
                return i
            i = buf.find(START_CODE, i + 3)
        if final:
            self._scan = 0
            return n
        if n - pos > self.max_frame_size:
            self._scan = 0
            raise PsError(f"unbounded PES exceeds {self.max_frame_size} bytes")
        self._scan = i if i >= 0 else max(pos + 6, n - 3)
        return -1

    def _psm(self, body: bytes) -> None:
        try:
            streams = parse_psm(body)
        except PsError:
            self.errors += 1
            return
        for stream_id, stream_type in streams.items():
            if VIDEO_FIRST <= stream_id <= VIDEO_LAST and stream_type in STREAM_TYPE_CODECS:
                self._psm_video = STREAM_TYPE_CODECS[stream_type]
                if self.codec is Codec.UNKNOWN:
                    self.codec = self._psm_video
                return

    # -- groups ------------------------------------------------------------------------------

    def _start_group(self, at: int) -> None:
        self._g_start = at
        self._g_pts = None
        self._g_key = False
        self._g_video_at = -1

    def _video(
        self, pts: int, buf: bytes, pos: int, start: int, end: int, out: list[SegmentFrame]
    ) -> None:
        at = self._base + pos
        if self._g_video_at >= 0:
            if pts == self._g_pts:
                return
            boundary = self._pack_at if self._pack_at > self._g_video_at else at
            self._emit(boundary, out)
            self._start_group(boundary)
        hint = self.codec if self.codec is not Codec.UNKNOWN else (self._psm_video or Codec.UNKNOWN)
        codec, keyframe, strong = inspect_video(buf[start:end], hint)
        if strong or self.codec is Codec.UNKNOWN:
            self.codec = codec
        self._g_pts = pts
        self._g_key = keyframe
        self._g_video_at = at

    def _cut_before(self, buf: bytes, pos: int, out: list[SegmentFrame]) -> None:
        """The data ends inside the video PES at ``pos``: if its header shows a new frame, the
        group before it is complete (only the new frame is lost to the truncation)."""
        if len(buf) - pos < 14 or not buf[pos + 7] & 0x80 or buf[pos + 8] < 5:
            return
        pts = decode_timestamp(buf, pos + 9)
        if self._g_video_at >= 0 and pts != self._g_pts:
            at = self._base + pos
            boundary = self._pack_at if self._pack_at > self._g_video_at else at
            self._emit(boundary, out)
            self._start_group(boundary)

    def _emit(self, end: int, out: list[SegmentFrame]) -> None:
        start = self._g_start
        assert start is not None
        if end > start:
            data = self._buf[start - self._base : end - self._base]
            out.append(SegmentFrame(start, self._g_pts, self._g_key, data))
        self._g_start = None


def read_frames(path: str | os.PathLike[str], offset: int = 0) -> Iterator[SegmentFrame]:
    """Yield the frame groups of a segment file from ``offset`` (a group's offset, e.g. a keyframe).

    Reads 1 MiB at a time; a truncated or garbled tail ends the iteration without an error.

    :raises OSError: the file cannot be opened.
    """
    grouper = FrameGrouper(base=offset)
    with open(path, "rb") as f:
        if offset:
            f.seek(offset)
        while chunk := f.read(_CHUNK):
            yield from grouper.feed(chunk)
    yield from grouper.end()


def scan_segment(path: str | os.PathLike[str], start: float) -> SegmentInfo:
    """Rebuild a segment's metadata from the file alone (start-up reconciliation).

    ``start`` is the segment's wall-clock start (from its file name). ``bytes`` is the length
    of the whole frame groups from offset 0; the caller may truncate the file to it. The hash
    covers exactly those bytes.

    :raises OSError: the file cannot be read.
    """
    timeline = Timeline()
    keyframes: list[tuple[float, int]] = []
    grouper = FrameGrouper()
    valid = 0

    def take(frames: list[SegmentFrame]) -> None:
        nonlocal valid
        for frame in frames:
            if frame.offset != valid:
                return  # garbage inside: keep only the clean prefix
            t = timeline.add(frame.pts)
            if frame.keyframe:
                keyframes.append((t, frame.offset))
            valid = frame.offset + len(frame.data)

    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            take(grouper.feed(chunk))
    take(grouper.end())
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = valid
        while remaining > 0 and (chunk := f.read(min(_CHUNK, remaining))):
            digest.update(chunk)
            remaining -= len(chunk)
    return SegmentInfo(
        path=os.fspath(path),
        start=start,
        end=start + timeline.duration,
        bytes=valid,
        codec=str(grouper.codec),
        keyframes=tuple(keyframes),
        sha256=digest.hexdigest(),
    )
