"""The sans-IO playback pacer, driven with injected time (no clock, no sockets)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from media.playback import (
    MAX_FRAMES_PER_PULL,
    PlaybackError,
    PlaybackSegment,
    PlaybackStream,
)
from media.rtp import RtpPacket

FPS = 25
TICK = 1 / FPS


@dataclass(frozen=True)
class Frame:
    offset: int
    pts: int | None
    keyframe: bool
    data: bytes


def _segment(
    start: float, seconds: int, *, gop: int = FPS, size: int = 3000, pts0: int = 900_000
) -> PlaybackSegment:
    """A segment of ``seconds`` at 25 fps, a keyframe every ``gop`` frames; frame i's data
    starts with its index so tests can tell frames apart."""
    frames: list[Frame] = []
    offset = 0
    for i in range(seconds * FPS):
        data = i.to_bytes(4, "big") + bytes(size - 4)
        frames.append(Frame(offset, pts0 + i * 3600, i % gop == 0, data))
        offset += size
    keyframes = tuple((f.pts and (f.pts - pts0) / 90000, f.offset) for f in frames if f.keyframe)

    def read(at: int) -> Iterator[Frame]:
        return (f for f in frames if f.offset >= at)

    return PlaybackSegment(start, start + seconds, keyframes, read)  # type: ignore[arg-type]


def _frames(packets: list[bytes]) -> list[int]:
    """Frame indexes of the marker-ended frames in ``packets``."""
    out: list[int] = []
    current: bytes | None = None
    for raw in packets:
        pkt = RtpPacket.parse(raw)
        if current is None:
            current = pkt.payload
        if pkt.marker:
            out.append(int.from_bytes(current[:4], "big"))
            current = None
    return out


def _run(stream: PlaybackStream, until: float, step: float = 0.01, now: float = 0.0) -> list[bytes]:
    out: list[bytes] = []
    while now <= until + 1e-9:
        out += stream.pull(now)
        now += step
    return out


def test_real_time_pacing_and_rtp_fields() -> None:
    stream = PlaybackStream([_segment(1000.0, 4)], 1000.0, 1004.0, 0x1234, 0.0, seq_start=10)
    first = stream.pull(0.0)
    assert _frames(first) == [0]
    pkt = RtpPacket.parse(first[0])
    assert (pkt.payload_type, pkt.ssrc, pkt.sequence_number) == (96, 0x1234, 10)
    assert pkt.timestamp == 900_000
    assert all(len(p) <= 1400 for p in first)
    assert [RtpPacket.parse(p).marker for p in first] == [False, False, True]
    assert stream.get_timer() == pytest.approx(TICK)
    assert stream.pull(0.039) == []
    assert _frames(stream.pull(0.04)) == [1]
    # One second of wall time plays one second of media.
    assert _frames(_run(stream, 1.0, now=0.05))[-1] == 25


def test_ends_at_range_end_and_finishes() -> None:
    stream = PlaybackStream([_segment(1000.0, 4)], 1000.0, 1002.0, 1, 0.0)
    frames = _frames(_run(stream, 3.0))
    assert frames == list(range(51))  # 0 .. 2.00 s inclusive
    assert stream.finished
    assert stream.get_timer() is None


def test_scale_changes_pace_from_the_current_position() -> None:
    stream = PlaybackStream([_segment(1000.0, 10)], 1000.0, 1010.0, 1, 0.0)
    assert _frames(_run(stream, 1.0))[-1] == 25
    stream.set_scale(4.0, 1.0)
    frames = _frames(_run(stream, 2.0, now=1.01))
    # 1 s at 1x then 1 s at 4x: 5 s of media.
    assert frames[-1] == 125
    stream.set_scale(0.25, 2.0)
    assert _frames(_run(stream, 3.0, now=2.01))[-1] == 131  # +0.25 s
    with pytest.raises(PlaybackError, match=r"outside 0\.25\.\.8"):
        stream.set_scale(16, 3.0)
    with pytest.raises(PlaybackError):
        stream.set_scale(0.1, 3.0)


def test_pause_and_resume() -> None:
    stream = PlaybackStream([_segment(1000.0, 10)], 1000.0, 1010.0, 1, 0.0)
    assert _frames(_run(stream, 1.0))[-1] == 25
    stream.pause(1.0)
    assert stream.get_timer() is None
    assert stream.pull(5.0) == []
    stream.resume(5.0)
    assert stream.get_timer() == pytest.approx(5.04)
    assert _frames(stream.pull(5.04)) == [26]


def test_seek_goes_to_keyframe_at_or_before() -> None:
    stream = PlaybackStream([_segment(1000.0, 10)], 1000.0, 1010.0, 1, 0.0)
    stream.pull(0.0)
    stream.seek(6.5, 1.0)
    assert _frames(stream.pull(1.0)) == [150]  # keyframe at 6.0 s
    assert _frames(stream.pull(1.04)) == [151]
    stream.pause(1.05)
    stream.seek(2.2, 2.0)
    assert stream.pull(2.0) == []  # still paused
    stream.resume(3.0)
    assert _frames(stream.pull(3.0)) == [50]
    with pytest.raises(PlaybackError):
        stream.seek(11, 3.0)


def test_start_inside_range_begins_at_previous_keyframe() -> None:
    stream = PlaybackStream([_segment(1000.0, 10, gop=50)], 1003.5, 1005.0, 1, 0.0)
    assert _frames(stream.pull(0.0)) == [50]  # keyframes every 2 s: the one at 2 s


def test_several_segments_and_a_gap_is_skipped() -> None:
    segs = [_segment(1000.0, 2), _segment(1010.0, 2, pts0=5_000_000)]
    stream = PlaybackStream(segs, 1000.0, 1012.0, 1, 0.0)
    packets = _run(stream, 4.5)
    assert _frames(packets) == list(range(50)) + list(range(50))
    assert stream.finished
    # The second segment's frames carry their own PTS as RTP timestamp.
    stamps = sorted({RtpPacket.parse(p).timestamp for p in packets})
    assert 5_000_000 in stamps


def test_download_paces_at_the_speed_multiple_and_bursts_are_bounded() -> None:
    stream = PlaybackStream([_segment(1000.0, 10)], 1000.0, 1010.0, 1, 0.0, rate=4, download=True)
    assert _frames(_run(stream, 1.0))[-1] == 100
    stream.set_scale(32, 1.0)
    # A late pull gets at most one burst; the timer then says "now".
    burst = _frames(stream.pull(5.0))
    assert len(burst) == MAX_FRAMES_PER_PULL
    timer = stream.get_timer()
    assert timer is not None and timer <= 5.0


def test_bad_arguments() -> None:
    with pytest.raises(PlaybackError, match="no recording"):
        PlaybackStream([_segment(1000.0, 2)], 2000.0, 2010.0, 1, 0.0)
    with pytest.raises(PlaybackError, match="empty range"):
        PlaybackStream([_segment(1000.0, 2)], 1001.0, 1001.0, 1, 0.0)
    with pytest.raises(PlaybackError):
        PlaybackStream([_segment(1000.0, 2)], 1000.0, 1002.0, 1, 0.0, rate=9)


def test_pts_discontinuity_does_not_stall() -> None:
    frames = [
        Frame(i, (i * 3600 if i < 10 else 10**9 + i * 3600), i == 0, bytes(8)) for i in range(20)
    ]
    seg = PlaybackSegment(0.0, 1.0, ((0.0, 0),), lambda at: iter(frames))  # type: ignore[arg-type,misc]
    stream = PlaybackStream([seg], 0.0, 1.0, 1, 0.0)
    packets = _run(stream, 1.0)
    assert len(packets) == 20


def test_untimed_frames_follow_the_previous_one_and_idempotent_controls() -> None:
    frames = [Frame(i, None if i % 2 else i * 3600, i == 0, i.to_bytes(4, "big")) for i in range(6)]
    seg = PlaybackSegment(0.0, 1.0, ((0.0, 0),), lambda at: iter(frames))  # type: ignore[arg-type,misc]
    stream = PlaybackStream([seg], 0.0, 1.0, 1, 0.0, seq_start=0)
    # Frame 1 has no PTS: it goes out with frame 0, stamped from its media time.
    packets = stream.pull(0.0)
    assert _frames(packets) == [0, 1]
    assert RtpPacket.parse(packets[1]).timestamp == 0
    stream.resume(0.0)  # not paused: nothing changes
    stream.pause(0.01)
    stream.pause(0.02)  # already paused
    assert stream.position(5.0) == pytest.approx(0.01)
    with pytest.raises(PlaybackError):
        stream.seek(-1, 1.0)
    stream.resume(1.0)
    assert _frames(_run(stream, 2.0, now=1.0)) == [2, 3, 4, 5]
    assert stream.finished
    stream.pause(3.0)  # finished: ignored
    assert not stream.paused
    # A seek after the end plays again from the keyframe.
    stream.seek(0.0, 4.0)
    assert not stream.finished and _frames(stream.pull(4.0)) == [0, 1]
