"""Snapshots: the first keyframe of PS (or of a relay's GOP cache) as a JPEG, judged by PyAV."""

from __future__ import annotations

from collections.abc import Callable

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.relay import RelaySession
from media.snapshot import SnapshotError, find_keyframe, keyframe_jpeg
from tests.media.conftest import Capture

SRC = ("192.0.2.10", 15060)


def decode_jpeg(jpeg: bytes) -> av.VideoFrame:
    ctx = av.CodecContext.create("mjpeg", "r")
    assert isinstance(ctx, av.VideoCodecContext)
    frames = [*ctx.decode(av.Packet(jpeg)), *ctx.decode(None)]
    assert len(frames) == 1
    return frames[0]


def test_first_idr_of_the_capture_is_a_640x480_jpeg(
    captures: Callable[[str], Capture],
) -> None:
    capture = captures("ps_rtp_udp")
    jpeg = keyframe_jpeg(capture.payloads)
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
    picture = decode_jpeg(jpeg)
    assert (picture.width, picture.height) == (640, 480)
    # Joined PS bytes give the same picture as the payloads one by one.
    assert keyframe_jpeg(capture.ps) == jpeg


def test_quality_trades_size(captures: Callable[[str], Capture]) -> None:
    payloads = captures("ps_rtp_udp").payloads[:35]  # one GOP
    small, big = keyframe_jpeg(payloads, quality=1), keyframe_jpeg(payloads, quality=100)
    assert len(small) < len(big)
    with pytest.raises(ValueError):
        keyframe_jpeg(payloads, quality=0)


def test_mid_gop_input_skips_to_the_next_keyframe(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_tcp_passive")  # starts mid-GOP
    keyframe = find_keyframe(capture.payloads)
    assert keyframe.keyframe and keyframe.codec == "h264"
    assert decode_jpeg(keyframe_jpeg(capture.payloads)).width == 640


def test_no_keyframe_is_a_snapshot_error(captures: Callable[[str], Capture]) -> None:
    payloads = captures("ps_rtp_udp").payloads
    with pytest.raises(SnapshotError, match="no keyframe"):
        keyframe_jpeg(payloads[1:35])  # P-frames only: the next IDR is at packet 35
    with pytest.raises(SnapshotError):
        keyframe_jpeg([])
    with pytest.raises(SnapshotError):
        keyframe_jpeg(b"\x00\x00\x01\xba" + b"\xff" * 100)


def test_relay_gop_payloads_feed_the_snapshot(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    session = RelaySession(capture.ssrc)
    assert session.gop_payloads() == []
    for packet in capture.packets:
        session.receive_rtp(packet, SRC, 1.0)
    payloads = session.gop_payloads()
    assert payloads == capture.payloads[165:]  # the last keyframe is at packet 165
    assert decode_jpeg(keyframe_jpeg(payloads)).height == 480


def test_relay_gop_payloads_strip_csrcs_and_padding(captures: Callable[[str], Capture]) -> None:
    packet = captures("ps_rtp_udp").packets[0]
    # One CSRC (RFC 3550 §5.1) and three bytes of padding (the last byte counts them).
    odd = bytes([packet[0] | 0x21]) + packet[1:12] + b"\x00\x00\x00\x07" + packet[12:] + b"\0\0\3"
    session = RelaySession(None)
    session.receive_rtp(odd, SRC, 1.0)
    assert session.gop_payloads() == [packet[12:]]


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_input_raises_only_snapshot_error(data: bytes) -> None:
    # A pack header and a video PES around arbitrary bytes: the demuxer may take it for video.
    ps = b"\x00\x00\x01\xba" + bytes(10) + b"\x00\x00\x01\xe0\x00\x00\x80\x00\x00" + data
    for candidate in (data, ps):
        try:
            jpeg = keyframe_jpeg(candidate)
        except SnapshotError:
            continue
        assert jpeg[:2] == b"\xff\xd8"
