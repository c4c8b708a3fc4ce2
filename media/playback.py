"""Sans-IO playback pacer: recorded PS segments out as RTP packets, on time (notes §6.9, §7, §8.1).

A :class:`PlaybackStream` walks the segments that cover a requested range ``[start, end]``
(absolute seconds, the INVITE's ``t=`` line) and hands out the RTP packets of each frame when
its time has come. Time is a float on the caller's clock, passed as ``now``; the stream never
reads a clock, owns no socket and never sleeps. The worker (:mod:`media.playback_worker`)
calls :meth:`PlaybackStream.pull` when :meth:`PlaybackStream.get_timer` says so.

Timing model. Each frame has a *media time*: the segment's start plus the PTS distance from the
first frame read in that segment (``(pts - first_pts) / 90000``, 33-bit wrap handled). The
playback position is ``anchor_media + (now - anchor_wall) * rate`` where ``rate`` is the scale
(MANSRTSP ``Scale``, 0.25 to 8) or, for a download, the download speed multiple. Every change
(pause, resume, scale, seek) re-anchors at the current position, so no frame is sent twice or
skipped. A gap between two segments (no recording there) is skipped, not waited out.

RTP (notes §8.1): PS over RTP, payload type 96, the given SSRC; a frame's PS bytes are cut by
:class:`media.rtp.RtpPacketizer` into packets of at most 1400 bytes with the marker on the last
one, all with the frame's 90 kHz timestamp: its PS PTS (low 32 bits), so a receiver that reads
RTP timestamps and one that reads the PS agree. Timestamps are not scaled with the speed (as
devices do, notes §7); the pacing is.

Segment files are read through the ``frames`` callable of each :class:`PlaybackSegment`
(:func:`media.segments.read_frames` in the platform), which keeps this module free of I/O of
its own and lets tests feed frames from memory.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from media.ps import TIMESTAMP_MASK
from media.rtp import RtpPacketizer

__all__ = [
    "MAX_SCALE",
    "MIN_SCALE",
    "FrameLike",
    "PlaybackError",
    "PlaybackSegment",
    "PlaybackStream",
]

MIN_SCALE = 0.25
MAX_SCALE = 8.0
#: Largest whole RTP packet we send (header included), as common senders do (notes §8.1).
RTP_MTU = 1400
#: Frames handed out by one :meth:`PlaybackStream.pull` at most: a download at a high speed
#: (or a late worker) catches up in several calls and the worker stays responsive.
MAX_FRAMES_PER_PULL = 64
#: A jump of the media time larger than this between two frames of one segment is taken as a
#: PTS discontinuity (a camera reboot inside a recording), not as a pause of the camera.
MAX_FRAME_GAP = 5.0
_HALF = 1 << 32


class PlaybackError(ValueError):
    """A caller asked for something the stream cannot do (scale out of range, bad seek)."""


class FrameLike(Protocol):
    """What the pacer needs of a recorded frame (:class:`media.segments.SegmentFrame`)."""

    @property
    def pts(self) -> int | None: ...

    @property
    def keyframe(self) -> bool: ...

    @property
    def data(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class PlaybackSegment:
    """One recorded segment: absolute ``start``/``end`` seconds and a way to read its frames.

    ``keyframes`` are ``(seconds from the segment start, byte offset)``, as in the recordings
    index; ``frames(offset)`` yields the frames from a byte offset (a keyframe's) to the end.
    """

    start: float
    end: float
    keyframes: tuple[tuple[float, int], ...]
    frames: Callable[[int], Iterable[FrameLike]]


class PlaybackStream:
    """Paces the frames of ``segments`` within ``[start, end]`` out as RTP packets.

    :param segments: the segments overlapping the range, in any order.
    :param start: absolute start of the range (seconds); playback begins at the keyframe at or
        before it.
    :param end: absolute end of the range; the first frame past it finishes the stream.
    :param ssrc: RTP SSRC of every packet.
    :param now: the caller's clock at creation; the first frame is due at once.
    :param rate: the initial speed: the scale for a playback, the download speed for a
        download (``download=True`` lifts the 8x ceiling to 64x).
    :raises PlaybackError: no segment overlaps the range, or the rate is out of range.
    """

    def __init__(
        self,
        segments: Iterable[PlaybackSegment],
        start: float,
        end: float,
        ssrc: int,
        now: float,
        *,
        rate: float = 1.0,
        download: bool = False,
        seq_start: int | None = None,
        mtu: int = RTP_MTU,
    ) -> None:
        if end <= start:
            raise PlaybackError(f"empty range {start}-{end}")
        self.segments = sorted(
            (s for s in segments if s.end >= start and s.start <= end), key=lambda s: s.start
        )
        if not self.segments:
            raise PlaybackError("no recording covers the range")
        self.start = start
        self.end = end
        self.download = download
        self.ssrc = ssrc & 0xFFFFFFFF
        if seq_start is None:
            seq_start = random.randrange(0x10000)
        self.packetizer = RtpPacketizer(self.ssrc, 96, seq_start, mtu)
        self.rate = self._check_rate(rate)
        self.paused = False
        self.finished = False
        #: Counters for the session's stats.
        self.frames_sent = 0
        self.packets_sent = 0
        self.bytes_sent = 0
        self._starts = [s.start for s in self.segments]
        self._seg_index = 0
        self._reader: Iterator[FrameLike] | None = None
        self._seg_base: tuple[int, float] | None = None  # (first pts read, its media time)
        self._seg_time0 = start
        self._last_time = start
        self._next: tuple[float, FrameLike] | None = None
        self._anchor_media = start
        self._anchor_wall = now
        self._open_at(start)
        self._anchor_media = self._next[0] if self._next is not None else start

    # -- inputs -----------------------------------------------------------------------------

    def pull(self, now: float) -> list[bytes]:
        """Return the RTP packets of every frame due at ``now`` (at most a bounded burst)."""
        out: list[bytes] = []
        if self.paused or self.finished:
            return out
        position = self.position(now)
        for _ in range(MAX_FRAMES_PER_PULL):
            nxt = self._next
            if nxt is None:
                self.finished = True
                break
            media_time, frame = nxt
            if media_time > position:
                break
            packets = self.packetizer.packetize(frame.data, self._timestamp(frame, media_time))
            out.extend(packets)
            self.frames_sent += 1
            self.packets_sent += len(packets)
            self.bytes_sent += sum(len(p) for p in packets)
            self._advance()
        return out

    def get_timer(self) -> float | None:
        """The wall time the next frame is due, or None (paused or finished)."""
        if self.paused or self.finished:
            return None
        if self._next is None:
            return self._anchor_wall  # due now: the next pull notices the end
        return self._anchor_wall + max(self._next[0] - self._anchor_media, 0.0) / self.rate

    def pause(self, now: float) -> None:
        """Stop sending; the position is kept for :meth:`resume`."""
        if self.paused or self.finished:
            return
        self._reanchor(now)
        self.paused = True

    def resume(self, now: float) -> None:
        """Continue from where :meth:`pause` stopped."""
        if not self.paused:
            return
        self.paused = False
        self._anchor_wall = now

    def set_scale(self, scale: float, now: float) -> None:
        """Change the speed (MANSRTSP ``Scale``), from the current position on.

        :raises PlaybackError: outside 0.25..8 (0.25..64 for a download).
        """
        rate = self._check_rate(scale)
        self._reanchor(now)
        self.rate = rate

    def seek(self, seconds: float, now: float) -> None:
        """Jump to ``seconds`` from the range start (MANSRTSP ``Range: npt=<s>-``), to the
        keyframe at or before it; a paused stream stays paused there.

        :raises PlaybackError: a negative time or one past the range end.
        """
        if seconds < 0 or self.start + seconds > self.end:
            raise PlaybackError(f"seek to {seconds:g} s is outside the range")
        target = self.start + seconds
        self.finished = False
        self._open_at(target)
        self._anchor_media = self._next[0] if self._next is not None else target
        self._anchor_wall = now

    def position(self, now: float) -> float:
        """The media time (absolute seconds) being played at ``now``."""
        if self.paused:
            return self._anchor_media
        return self._anchor_media + (now - self._anchor_wall) * self.rate

    # -- internals ----------------------------------------------------------------------------

    def _check_rate(self, rate: float) -> float:
        ceiling = 64.0 if self.download else MAX_SCALE
        if not MIN_SCALE <= rate <= ceiling:
            raise PlaybackError(f"speed {rate:g} is outside {MIN_SCALE:g}..{ceiling:g}")
        return float(rate)

    def _reanchor(self, now: float) -> None:
        position = self.position(now)
        if self._next is not None:
            # Never let the position run ahead of a frame not yet sent (a late pull).
            position = min(position, self._next[0])
        self._anchor_media = position
        self._anchor_wall = now

    def _open_at(self, target: float) -> None:
        """Point the reader at the keyframe at or before ``target`` and pre-read one frame."""
        index = max(bisect.bisect_right(self._starts, target) - 1, 0)
        segment = self.segments[index]
        offsets = segment.keyframes
        secs, offset = 0.0, 0
        if offsets:
            keys = [k[0] for k in offsets]
            at = bisect.bisect_right(keys, target - segment.start) - 1
            if at >= 0:
                secs, offset = offsets[at]
        self._seg_index = index
        self._start_segment(offset, segment.start + secs)
        self._last_time = segment.start + secs
        self._next = None
        self._advance()

    def _start_segment(self, offset: int, media_time: float) -> None:
        segment = self.segments[self._seg_index]
        self._reader = iter(segment.frames(offset))
        self._seg_time0 = media_time
        self._seg_base = None

    def _advance(self) -> None:
        """Read the next frame (moving to the next segment at the end of one)."""
        while True:
            frame = next(self._reader, None) if self._reader is not None else None
            if frame is None:
                if self._seg_index + 1 >= len(self.segments):
                    self._next = None
                    self._reader = None
                    return
                self._seg_index += 1
                segment = self.segments[self._seg_index]
                gap = segment.start - self._last_time
                if gap > 1.0:
                    # Skip a hole in the recording: play the next segment's first frame at once.
                    self._shift(self._last_time - segment.start)
                self._start_segment(0, segment.start)
                continue
            media_time = self._frame_time(frame)
            if media_time > self.end:
                self._next = None
                self._reader = None
                return
            self._last_time = media_time
            self._next = (media_time, frame)
            return

    def _shift(self, delta: float) -> None:
        """Move the anchor so that media times from now on play ``delta`` earlier."""
        self._anchor_media -= delta

    def _frame_time(self, frame: FrameLike) -> float:
        pts = frame.pts
        if pts is None:
            return self._last_time
        if self._seg_base is None:
            self._seg_base = (pts, self._seg_time0)
            return self._seg_time0
        base_pts, base_time = self._seg_base
        delta = (pts - base_pts) & TIMESTAMP_MASK
        if delta >= _HALF:
            delta -= TIMESTAMP_MASK + 1
        media_time = base_time + delta / 90000.0
        if not self._last_time <= media_time <= self._last_time + MAX_FRAME_GAP:
            # A PTS discontinuity: re-base on this frame, right after the previous one.
            self._seg_base = (pts, self._last_time)
            return self._last_time
        return media_time

    def _timestamp(self, frame: FrameLike, media_time: float) -> int:
        if frame.pts is not None:
            return frame.pts & 0xFFFFFFFF
        return round((media_time - self.start) * 90000) & 0xFFFFFFFF
