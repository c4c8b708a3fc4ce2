"""Segment files: frame groups, recovery scan, truncated tails, garbage, fuzzing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.segments import FrameGrouper, Timeline, read_frames, scan_segment, segment_name

from .conftest import Capture
from .recording_helpers import demux_video, encode_ps


def _groups(data: bytes, step: int) -> list[tuple[int, int | None, bool, bytes]]:
    grouper = FrameGrouper()
    out = []
    for i in range(0, len(data), step):
        out += grouper.feed(data[i : i + step])
    out += grouper.end()
    return [(f.offset, f.pts, f.keyframe, f.data) for f in out]


def test_groups_match_ffmpeg_packets(capture: Capture) -> None:
    ps = capture.ps
    groups = _groups(ps, 1 << 20)
    assert b"".join(g[3] for g in groups) == ps
    video = [p for p in demux_video(ps)]
    assert [g[1] for g in groups] == [p[1] for p in video]
    assert [g[2] for g in groups] == [p[2] for p in video]
    # Any chunking gives the same groups, byte by byte included for one capture.
    assert _groups(ps, 7) == groups
    if capture.name == "ps_rtp_udp":
        assert _groups(ps, 1) == groups


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_scan_and_read_from_a_keyframe(codec: str, tmp_path: Path) -> None:
    frames = encode_ps(codec, 100, 25, 25)
    ps = b"".join(p for p, _, _ in frames)
    path = tmp_path / "seg.ps"
    path.write_bytes(ps)
    info = scan_segment(path, 100.0)
    assert info.codec == codec and info.bytes == len(ps) and info.start == 100.0
    assert info.end == pytest.approx(104.0)
    assert info.sha256 == hashlib.sha256(ps).hexdigest()
    assert [t for t, _ in info.keyframes] == [0.0, 1.0, 2.0, 3.0]
    _, offset = info.keyframes[2]
    tail = list(read_frames(path, offset))
    assert len(tail) == 50 and tail[0].keyframe and tail[0].offset == offset
    assert len(demux_video(ps[offset:])) == 50


@pytest.mark.parametrize("cut", [1, 13, 200, 1500])
def test_truncated_tail_is_dropped(cut: int, tmp_path: Path) -> None:
    frames = encode_ps("h264", 100, 25, 25)
    ps = b"".join(p for p, _, _ in frames)
    path = tmp_path / "seg.ps"
    path.write_bytes(ps[:-cut])
    got = list(read_frames(path))
    info = scan_segment(path, 0.0)
    assert info.bytes == sum(len(f.data) for f in got) < len(ps) - cut + 1
    assert b"".join(f.data for f in got) == ps[: info.bytes]
    # Only the frame(s) the cut reached are lost.
    sizes = [len(p) for p, _, _ in frames]
    whole = 0
    total = 0
    for size in sizes:
        if total + size > len(ps) - cut:
            break
        total += size
        whole += 1
    assert len(got) == whole
    assert info.sha256 == hashlib.sha256(ps[: info.bytes]).hexdigest()


def test_garbage_inside_keeps_only_the_clean_prefix(tmp_path: Path) -> None:
    frames = encode_ps("h264", 50, 25, 25)
    ps = b"".join(p for p, _, _ in frames)
    mid = sum(len(p) for p, _, _ in frames[:20])
    path = tmp_path / "seg.ps"
    path.write_bytes(ps[:mid] + b"\x01\x02garbage" + ps[mid:])
    grouper = FrameGrouper()
    got = grouper.feed(path.read_bytes()) + grouper.end()
    assert grouper.errors == 1 and grouper.bytes_skipped > 0
    assert len(got) == 49  # the frame the garbage followed was dropped
    assert scan_segment(path, 0.0).bytes == sum(len(p) for p, _, _ in frames[:19])


def test_oversized_group_is_dropped() -> None:
    frames = encode_ps("h264", 50, 25, 25)
    grouper = FrameGrouper(max_frame_size=500)
    got = grouper.feed(b"".join(p for p, _, _ in frames)) + grouper.end()
    assert grouper.dropped >= 1 and all(len(f.data) <= 500 for f in got)


def test_timeline_wrap_and_reordering() -> None:
    t = Timeline()
    assert t.duration == 0.0 and t.add(None) == 0.0
    top = (1 << 33) - 1800
    assert t.add(top) == 0.0
    assert t.add(top + 3600 - (1 << 33)) == pytest.approx(0.04)  # wrapped
    assert t.add(top - 900) == 0.0  # earlier than the first: clamped
    assert t.duration == pytest.approx(0.08)


def test_segment_name() -> None:
    assert segment_name("ch", 1_700_000_000.123) == "ch/20231114/ch_1700000000123.ps"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=64))
def test_fuzz_never_raises_and_stays_bounded(data: bytes, step: int) -> None:
    grouper = FrameGrouper(max_frame_size=4096)
    got = []
    for i in range(0, len(data), step):
        got += grouper.feed(data[i : i + step])
    got += grouper.end()
    for frame in got:
        assert len(frame.data) <= 4096
        assert data[frame.offset : frame.offset + len(frame.data)] == frame.data


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=9000), st.binary(max_size=40))
def test_fuzz_mutated_stream(position: int, noise: bytes) -> None:
    frames = encode_ps("h264", 30, 25, 10)
    ps = b"".join(p for p, _, _ in frames)
    data = ps[:position] + noise + ps[position + len(noise) :]
    grouper = FrameGrouper()
    got = grouper.feed(data) + grouper.end()
    for frame in got:
        assert data[frame.offset : frame.offset + len(frame.data)] == frame.data
