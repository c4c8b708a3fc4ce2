from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.rtp import (
    RtpError,
    RtpExtension,
    RtpHeader,
    RtpPacket,
    RtpPacketizer,
    peek_ssrc_seq_ts,
    seq_add,
    seq_diff,
    seq_gt,
    ts_add,
    ts_diff,
    ts_gt,
)

if TYPE_CHECKING:
    from tests.media.conftest import Capture


def test_parse_every_captured_packet(capture: Capture) -> None:
    timestamps = []
    markers = []
    for index, data in enumerate(capture.packets):
        packet = RtpPacket.parse(data)
        header = packet.header
        assert header.payload_type == 96
        assert header.ssrc == capture.ssrc
        assert header.sequence_number == index
        assert header.csrc == ()
        assert header.extension is None
        assert packet.padding == b""
        assert packet.payload == data[12:]
        assert header.size == 12
        assert bytes(packet) == data
        assert peek_ssrc_seq_ts(data) == (capture.ssrc, index, header.timestamp)
        timestamps.append(header.timestamp)
        markers.append(header.marker)
    # The last packet before every timestamp change has the marker (audio and video frames
    # may share a timestamp, so markers can also appear without a change).
    changes = [a != b for a, b in itertools.pairwise(timestamps)] + [True]
    assert all(m for m, c in zip(markers, changes, strict=True) if c)


def test_first_packet_fields(captures: Callable[[str], Capture]) -> None:
    packet = RtpPacket.parse(captures("ps_rtp_udp").packets[0])
    assert (packet.sequence_number, packet.ssrc, packet.payload_type) == (0, 200000001, 96)
    assert packet.marker is False
    assert packet.payload.startswith(b"\x00\x00\x01\xba")
    assert repr(packet).startswith("RtpPacket(seq=0, ts=")


def test_full_header_round_trip() -> None:
    header = RtpHeader(
        payload_type=8,
        sequence_number=65535,
        timestamp=0xFFFFFFFF,
        ssrc=0x12345678,
        marker=True,
        csrc=(1, 2, 3),
        extension=RtpExtension(0xBEDE, b"\x10\xff\x00\x00"),
    )
    packet = RtpPacket(header, b"payload", b"\x00\x00\x03")
    data = bytes(packet)
    assert data[0] == 0x80 | 0x20 | 0x10 | 3
    assert data[1] == 0x88
    assert len(data) == 12 + 12 + 8 + 7 + 3 == header.size + 7 + 3
    assert RtpPacket.parse(data) == packet
    assert RtpHeader.parse(data) == (header, header.size, True)
    assert RtpPacket.parse(bytearray(data)) == packet
    assert RtpPacket.parse(memoryview(data)) == packet


def _fixed(first: int = 0x80, second: int = 96) -> bytes:
    return struct.pack("!BBHII", first, second, 1, 2, 3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "RTP packet length is less than 12 bytes"),
        (_fixed()[:11], "RTP packet length is less than 12 bytes"),
        (_fixed(0x40), "RTP packet has invalid version 1"),
        (_fixed(0xC0), "RTP packet has invalid version 3"),
        (_fixed(0x82) + b"\x00" * 7, "RTP packet has truncated CSRC"),
        (_fixed(0x90) + b"\x00\x01", "RTP packet has truncated extension header"),
        (
            _fixed(0x90) + b"\x00\x01\x00\x02" + b"\x00" * 7,
            "RTP packet has truncated extension data",
        ),
        (_fixed(0xA0), "RTP packet padding length is invalid"),
        (_fixed(0xA0) + b"abc\x00", "RTP packet padding length is invalid"),
        (_fixed(0xA0) + b"abc\x05", "RTP packet padding length is invalid"),
    ],
)
def test_invalid_vectors(data: bytes, message: str) -> None:
    with pytest.raises(RtpError) as info:
        RtpPacket.parse(data)
    assert str(info.value) == message


def test_peek_errors() -> None:
    with pytest.raises(RtpError, match="less than 12 bytes"):
        peek_ssrc_seq_ts(b"\x80" * 11)
    with pytest.raises(RtpError, match="invalid version 0"):
        peek_ssrc_seq_ts(bytes(12))


def test_padding_filling_the_payload() -> None:
    packet = RtpPacket.parse(_fixed(0xA0) + b"\x00\x00\x03")
    assert packet.payload == b""
    assert packet.padding == b"\x00\x00\x03"


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (RtpPacket(RtpHeader(128, 0, 0, 0)), "RTP payload type 128 is out of range"),
        (RtpPacket(RtpHeader(96, 0, 0, 0, csrc=tuple(range(16)))), "more than 15 CSRC"),
        (
            RtpPacket(RtpHeader(96, 0, 0, 0, extension=RtpExtension(1, b"abc"))),
            "not a multiple of 4",
        ),
        (RtpPacket(RtpHeader(96, 0, 0, 0), b"", b"\x00\x05"), "padding length is invalid"),
    ],
)
def test_serialize_errors(packet: RtpPacket, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        bytes(packet)


def test_sequence_arithmetic() -> None:
    assert seq_add(65535, 1) == 0
    assert seq_add(0, -1) == 65535
    assert seq_gt(0, 65535)
    assert not seq_gt(65535, 0)
    assert not seq_gt(5, 5)
    assert seq_gt(0x7FFF, 0)
    assert not seq_gt(0x8000, 0)
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(100, 50) == 50
    assert seq_diff(0x8000, 0) == -0x8000
    assert ts_add(0xFFFFFFFF, 3600) == 3599
    assert ts_gt(10, 0xFFFFFF00)
    assert not ts_gt(0xFFFFFF00, 10)
    assert ts_diff(10, 0xFFFFFFF6) == 20
    assert ts_diff(0xFFFFFFF6, 10) == -20


def test_packetizer_cuts_and_marks() -> None:
    packetizer = RtpPacketizer(ssrc=1234, payload_type=96, seq_start=65534, mtu=1400)
    payload = bytes(range(256)) * 12  # 3072 bytes -> 1388 + 1388 + 296
    packets = [RtpPacket.parse(p) for p in packetizer.packetize(payload, 0x1_0000_0005)]
    assert [len(p.payload) for p in packets] == [1388, 1388, 296]
    assert [p.sequence_number for p in packets] == [65534, 65535, 0]
    assert [p.marker for p in packets] == [False, False, True]
    assert {p.timestamp for p in packets} == {5}
    assert {p.ssrc for p in packets} == {1234}
    assert b"".join(p.payload for p in packets) == payload
    assert packetizer.next_seq == 1
    assert packetizer.packetize(b"", 0) == []
    [single] = packetizer.packetize(b"x", 9)
    assert RtpPacket.parse(single).marker and RtpPacket.parse(single).sequence_number == 1


@pytest.mark.parametrize(("mtu", "pt"), [(12, 96), (65536, 96), (1400, 200)])
def test_packetizer_arguments(mtu: int, pt: int) -> None:
    with pytest.raises(RtpError, match="out of range"):
        RtpPacketizer(ssrc=1, payload_type=pt, mtu=mtu)


@given(st.binary(max_size=200))
def test_fuzz_parse(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    assert bytes(packet) == data


@given(
    st.integers(0, 127),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.booleans(),
    st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    st.binary(max_size=64),
)
def test_fuzz_round_trip(
    pt: int, seq: int, ts: int, ssrc: int, marker: bool, csrc: list[int], payload: bytes
) -> None:
    packet = RtpPacket(RtpHeader(pt, seq, ts, ssrc, marker, tuple(csrc)), payload)
    assert RtpPacket.parse(bytes(packet)) == packet
