from __future__ import annotations

from collections.abc import Callable
from itertools import groupby
from typing import TYPE_CHECKING

import pytest

from media.frame_assembler import AssembledFrame, FrameAssembler
from media.rtp import RtpHeader, RtpPacket

if TYPE_CHECKING:
    from tests.media.conftest import Capture


def _packet(seq: int, ts: int, payload: bytes = b"x", marker: bool = False) -> RtpPacket:
    return RtpPacket(RtpHeader(96, seq & 0xFFFF, ts, 42, marker), payload)


def _run(assembler: FrameAssembler, packets: list[RtpPacket]) -> list[AssembledFrame]:
    out: list[AssembledFrame] = []
    for packet in packets:
        out += assembler.add(packet)
    return out + assembler.flush()


def _expected(packets: list[RtpPacket]) -> list[bytes]:
    """Frames by marker (the captures end every frame with one)."""
    frames, current = [], b""
    for packet in packets:
        current += packet.payload
        if packet.marker:
            frames.append(current)
            current = b""
    return frames


def test_capture_in_order(capture: Capture) -> None:
    packets = [RtpPacket.parse(p) for p in capture.packets]
    assembler = FrameAssembler()
    frames = _run(assembler, packets)
    assert [f.payload for f in frames] == _expected(packets)
    assert b"".join(f.payload for f in frames) == capture.ps
    assert all(f.marker for f in frames)
    assert sum(f.packets for f in frames) == len(packets)
    assert frames[0].first_seq == 0 and frames[-1].last_seq == len(packets) - 1
    assert {f.ssrc for f in frames} == {capture.ssrc}
    assert (assembler.lost, assembler.dropped_loss, assembler.late) == (0, 0, 0)
    assert assembler.frames == len(frames)


def test_timestamp_change_ends_frame_without_marker() -> None:
    packets = [_packet(0, 100, b"a"), _packet(1, 100, b"b"), _packet(2, 200, b"c")]
    assembler = FrameAssembler()
    assert [f.payload for f in assembler.add(packets[0]) + assembler.add(packets[1])] == []
    [frame] = assembler.add(packets[2])
    assert (frame.payload, frame.timestamp, frame.marker, frame.packets) == (b"ab", 100, False, 2)
    [last] = assembler.flush()
    assert last.payload == b"c"


def test_reordered_within_window(captures: Callable[[str], Capture]) -> None:
    packets = [RtpPacket.parse(p) for p in captures("ps_rtp_udp").packets]
    shuffled = list(packets)
    for i in range(5, len(shuffled) - 3, 5):
        shuffled[i], shuffled[i + 3] = shuffled[i + 3], shuffled[i]
    assembler = FrameAssembler(reorder_window=3)
    assert [f.payload for f in _run(assembler, shuffled)] == _expected(packets)
    assert assembler.lost == 0


def test_reordered_beyond_window_counts_loss() -> None:
    packets = [_packet(s, 100 * (s // 2), bytes([s]), marker=s % 2 == 1) for s in range(12)]
    order = [0, 1, 3, 4, 5, 6, 2, 7, 8, 9, 10, 11]
    assembler = FrameAssembler(reorder_window=2)
    frames = _run(assembler, [packets[i] for i in order])
    # Packet 2 was the head of frame 100; frame 200 follows frame 100 without a gap.
    assert [f.timestamp for f in frames] == [0, 200, 300, 400, 500]
    assert assembler.lost == 1
    assert assembler.late == 1  # packet 2 came after it was given up
    assert assembler.dropped_loss == 1


def test_loss_inside_frame_drops_it() -> None:
    packets = [_packet(s, 1000 * (s // 3), marker=s % 3 == 2) for s in range(9)]
    assembler = FrameAssembler()
    frames = _run(assembler, packets[:4] + packets[5:])
    assert [f.timestamp for f in frames] == [0, 2000]
    assert (assembler.lost, assembler.dropped_loss) == (1, 1)


def test_loss_of_a_whole_frame_after_a_marker() -> None:
    packets = [_packet(s, 1000 * (s // 2), marker=s % 2 == 1) for s in range(8)]
    assembler = FrameAssembler()
    frames = _run(assembler, packets[:2] + packets[4:])
    # The frame after the gap cannot be known whole; the next one is.
    assert [f.timestamp for f in frames] == [0, 3000]
    assert (assembler.lost, assembler.dropped_loss) == (2, 1)


def test_duplicates() -> None:
    packets = [_packet(s, 10 * (s // 2), bytes([s]), marker=s % 2 == 1) for s in range(6)]
    assembler = FrameAssembler(reorder_window=2)
    order = [packets[0], packets[2], packets[2], packets[1], packets[1], packets[3]]
    order += [packets[0], packets[4], packets[5]]
    frames = _run(assembler, order)
    assert [f.payload for f in frames] == [b"\x00\x01", b"\x02\x03", b"\x04\x05"]
    assert assembler.duplicates == 1
    assert assembler.late == 2
    assert assembler.lost == 0


@pytest.mark.parametrize("window", [0, 4])
def test_sequence_wraparound(captures: Callable[[str], Capture], window: int) -> None:
    packets = []
    for data in captures("ps_rtp_tcp").packets:
        packet = RtpPacket.parse(data)
        header = packet.header
        renumbered = RtpHeader(
            header.payload_type,
            (header.sequence_number + 65500) & 0xFFFF,
            header.timestamp,
            header.ssrc,
            header.marker,
        )
        packets.append(RtpPacket(renumbered, packet.payload))
    assert any(p.sequence_number == 65535 for p in packets)
    assembler = FrameAssembler(reorder_window=window)
    frames = _run(assembler, packets)
    assert [f.payload for f in frames] == _expected(packets)
    assert assembler.lost == 0


def test_sender_restart() -> None:
    first = [_packet(s, 100, marker=s == 1) for s in range(2)]
    second = [_packet(s, 900, marker=s == 30001) for s in range(30000, 30002)]
    assembler = FrameAssembler()
    frames = _run(assembler, first + second)
    assert [f.timestamp for f in frames] == [100, 900]
    assert (assembler.resets, assembler.lost) == (1, 0)
    back = [_packet(s, 5000, marker=s == 30101) for s in range(30100 - 3000, 30102 - 3000)]
    assert [f.timestamp for f in _run(assembler, back)] == [5000]
    assert assembler.resets == 2


def test_oversize_frame_dropped() -> None:
    assembler = FrameAssembler(max_frame_size=10)
    packets = [_packet(0, 1, b"x" * 8), _packet(1, 1, b"x" * 8, True), _packet(2, 2, b"y", True)]
    assert [f.payload for f in _run(assembler, packets)] == [b"y"]
    assert assembler.dropped_oversize == 1


@pytest.mark.parametrize("window", [-1, 101])
def test_window_range(window: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        FrameAssembler(reorder_window=window)


def test_audio_and_video_sharing_a_timestamp(captures: Callable[[str], Capture]) -> None:
    """The pcma capture has audio frames with the timestamp of a video frame: marker splits."""
    packets = [RtpPacket.parse(p) for p in captures("ps_rtp_udp_h264_pcma").packets]
    frames = _run(FrameAssembler(), packets)
    runs = len([k for k, _ in groupby(p.timestamp for p in packets)])
    assert len(frames) == 175 > runs
