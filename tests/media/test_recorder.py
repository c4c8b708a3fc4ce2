"""The segment writer (sans-IO) and the recorder thread (loopback UDP), judged by FFmpeg."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from pathlib import Path

import pytest

from media.frame_assembler import FrameAssembler
from media.recorder import (
    Recorder,
    SegmentClosed,
    SegmentData,
    SegmentOpened,
    SegmentWriter,
    WriterEvent,
)
from media.rtp import RtpPacket
from media.segments import SegmentInfo, scan_segment

from .conftest import Capture
from .recording_helpers import demux_video, encode_ps, rtp_packets

T0 = 1_700_000_000.0
FPS = 25


def _run(
    writer: SegmentWriter, frames: tuple[tuple[bytes, int, bool], ...], root: Path, t0: float = T0
) -> tuple[list[WriterEvent], list[SegmentInfo]]:
    """Feed one frame per 1/25 s and apply the file operations under ``root``."""
    events: list[WriterEvent] = []
    now = t0
    for ps, _, _ in frames:
        events += writer.receive_frame(ps, now)
        now += 1 / FPS
    events += writer.close(now)
    closed = []
    for event in events:
        if isinstance(event, SegmentOpened):
            path = root / event.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        elif isinstance(event, SegmentData):
            with open(root / event.path, "ab") as f:
                f.write(event.data)
        else:
            closed.append(event.info)
    return events, closed


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_rotates_at_keyframes_and_every_segment_demuxes(codec: str, tmp_path: Path) -> None:
    frames = encode_ps(codec, 100, FPS, 25)
    writer = SegmentWriter("34020000001320000001", segment_seconds=2.0)
    events, closed = _run(writer, frames, tmp_path)
    assert len(closed) == 2 and writer.segments == 2 and writer.frames == 100
    starts = [e.start for e in events if isinstance(e, SegmentOpened)]
    assert starts == [T0, pytest.approx(T0 + 2.0)]
    assert (
        closed[0].path == f"34020000001320000001/20231114/34020000001320000001_{int(T0 * 1000)}.ps"
    )
    joined = b""
    for info in closed:
        data = (tmp_path / info.path).read_bytes()
        joined += data
        assert info.bytes == len(data) and info.codec == codec
        assert info.end - info.start == pytest.approx(2.0)
        assert info.keyframes == ((0.0, 0), (1.0, info.keyframes[1][1]))
        packets = demux_video(data)
        assert len(packets) == 50 and packets[0][2]  # starts at a keyframe, every frame there
        # The index the writer made is what recovery would rebuild from the file alone.
        assert scan_segment(tmp_path / info.path, info.start) == dataclasses.replace(
            info, path=str(tmp_path / info.path)
        )
    assert joined == b"".join(ps for ps, _, _ in frames)  # exactly as received


def test_waits_for_a_keyframe_and_flushes_every_second(tmp_path: Path) -> None:
    frames = encode_ps("h264", 100, FPS, 25)[10:]
    writer = SegmentWriter("c", segment_seconds=60.0, flush_interval=1.0)
    events, closed = _run(writer, frames, tmp_path)
    assert writer.skipped == 15 and writer.frames == 75 and len(closed) == 1
    opened = next(e for e in events if isinstance(e, SegmentOpened))
    assert opened.start == pytest.approx(T0 + 15 / FPS)
    # Data is handed out at least once a second of arrival time (3 s of video: >= 3 writes).
    assert len([e for e in events if isinstance(e, SegmentData)]) >= 3
    assert demux_video((tmp_path / closed[0].path).read_bytes())[0][2]


def test_timer_hands_out_buffered_bytes() -> None:
    frames = encode_ps("h264", 100, FPS, 25)
    writer = SegmentWriter("c", flush_interval=1.0)
    assert writer.get_timer() is None
    events = writer.receive_frame(frames[0][0], 10.0) + writer.receive_frame(frames[1][0], 10.04)
    assert [type(e) for e in events] == [SegmentOpened]
    assert writer.get_timer() == 11.0
    assert writer.handle_timer(10.5) == []
    out = writer.handle_timer(11.0)
    assert [type(e) for e in out] == [SegmentData] and out[0].data == frames[0][0]
    assert writer.get_timer() is None
    # The wall clock steps back an hour: the next frame's bytes go out at once.
    assert writer.receive_frame(frames[2][0], 7000.0) == [
        SegmentData(writer.current or "", frames[1][0])
    ]


def test_pts_jump_ends_the_segment(tmp_path: Path) -> None:
    first = encode_ps("h264", 50, FPS, 25)
    second = encode_ps("h264", 50, FPS, 25, start_pts=90_000 * 1000)
    writer = SegmentWriter("c", segment_seconds=60.0)
    _, closed = _run(writer, first + second, tmp_path)
    assert writer.discontinuities == 1 and len(closed) == 2
    assert [info.end - info.start for info in closed] == [pytest.approx(2.0)] * 2


def test_fixture_capture_starting_mid_gop(captures: object, tmp_path: Path) -> None:
    capture: Capture = captures("ps_rtp_tcp_passive")  # type: ignore[operator]
    assembler = FrameAssembler()
    writer = SegmentWriter("c", segment_seconds=60.0)
    events: list[WriterEvent] = []
    for i, raw in enumerate(capture.packets):
        for frame in assembler.add(RtpPacket.parse(raw)):
            events += writer.receive_frame(frame.payload, T0 + i / FPS)
    events += writer.close(T0 + 10)
    data = b"".join(e.data for e in events if isinstance(e, SegmentData))
    packets = demux_video(data)
    assert packets[0][2] and len(packets) == writer.frames
    info = next(e.info for e in events if isinstance(e, SegmentClosed))
    assert info.bytes == len(data) and len(info.keyframes) == 2


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        SegmentWriter("c", segment_seconds=0)


def test_recorder_thread_records_loopback_rtp(tmp_path: Path) -> None:
    frames = encode_ps("h264", 100, FPS, 25)
    seen: list[tuple[int, str, object]] = []
    done = threading.Event()

    def on_event(stream_id: int, channel_id: str, event: object) -> None:
        seen.append((stream_id, channel_id, event))
        if isinstance(event, SegmentClosed):
            done.set()

    recorder = Recorder(tmp_path, segment_seconds=2.0, on_event=on_event)
    recorder.start()
    try:
        opened = recorder.call(lambda: recorder.open("34020000001320000001"))
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i, packet in enumerate(rtp_packets(frames)):
            sender.sendto(packet, (opened["host"], opened["port"]))
            if i % 20 == 0:
                time.sleep(0.002)  # let the recorder drain its socket
        sender.close()
        assert done.wait(10)  # the first segment closed at the keyframe after 2 s of video
        deadline = time.monotonic() + 10
        while recorder.call(lambda: recorder.stats(opened["stream"]))["frames"] < 99:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stats = recorder.call(lambda: recorder.close(opened["stream"]))
    finally:
        recorder.stop()
    assert stats["frames"] == 100 and stats["lost"] == 0 and stats["write_errors"] == 0
    closed = [e.info for _, _, e in seen if isinstance(e, SegmentClosed)]
    assert len(closed) == 2
    assert [type(e) for _, _, e in seen] == [SegmentOpened, SegmentClosed] * 2
    total = b""
    for info in closed:
        data = (tmp_path / info.path).read_bytes()
        assert info.bytes == len(data) and len(demux_video(data)) == 50
        total += data
    assert total == b"".join(ps for ps, _, _ in frames)


def test_recorder_counts_a_root_it_cannot_write(tmp_path: Path) -> None:
    root = tmp_path / "not-a-directory"
    root.write_bytes(b"")
    seen: list[object] = []
    recorder = Recorder(root, on_event=lambda *args: seen.append(args))
    recorder.start()
    try:
        opened = recorder.call(lambda: recorder.open("c"))
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for packet in rtp_packets(encode_ps("h264", 30, FPS, 25)):
            sender.sendto(packet, (opened["host"], opened["port"]))
        sender.close()
        deadline = time.monotonic() + 10
        while recorder.call(lambda: recorder.stats(opened["stream"]))["frames"] < 29:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        stats = recorder.call(lambda: recorder.close(opened["stream"]))
    finally:
        recorder.stop()
    assert stats["write_errors"] >= 1 and seen == []
