"""Shared fixtures for the media codec tests: the PS/RTP captures and FFmpeg (PyAV) as judge.

Capture format (tests/fixtures/ps-rtp/README.md): records of a 4-byte big-endian length
followed by one whole RTP packet.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import pytest

CAPTURE_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "ps-rtp"


@dataclass(frozen=True)
class Capture:
    name: str
    packets: list[bytes]
    ssrc: int
    #: Non-empty video packets PyAV demuxes (the README's count includes the final empty one).
    video_frames: int
    #: Frames PyAV decodes from the video packets without a final flush.
    decoded_frames: int
    audio_frames: int

    @property
    def ps(self) -> bytes:
        return b"".join(packet[12:] for packet in self.packets)

    @property
    def payloads(self) -> list[bytes]:
        return [packet[12:] for packet in self.packets]


# name -> (ssrc, README video packets, README decoded frames, audio packets)
_EXPECTED = {
    "ps_rtp_udp": (200000001, 163, 162, 0),
    "ps_rtp_tcp": (200000002, 173, 172, 0),
    "ps_rtp_tcp_passive": (200000021, 121, 74, 0),
    "ps_rtp_udp_h264_pcma": (200000011, 134, 133, 42),
}


def load_capture(name: str) -> list[bytes]:
    data = (CAPTURE_DIR / f"{name}.bin").read_bytes()
    packets = []
    offset = 0
    while offset < len(data):
        (size,) = struct.unpack_from(">I", data, offset)
        packets.append(data[offset + 4 : offset + 4 + size])
        offset += 4 + size
    assert offset == len(data)
    return packets


@dataclass(frozen=True)
class RefPacket:
    """One packet as FFmpeg's MPEG-PS demuxer returns it."""

    kind: str
    codec: str
    data: bytes
    pts: int | None
    dts: int | None
    keyframe: bool


def pyav_demux(ps: bytes) -> list[RefPacket]:
    """Demux ``ps`` with FFmpeg (format "mpeg"); empty (flush) packets are left out."""
    out = []
    with av.open(io.BytesIO(ps), format="mpeg") as container:
        for packet in container.demux():
            if packet.size == 0:
                continue
            stream = packet.stream
            out.append(
                RefPacket(
                    stream.type,
                    stream.codec_context.name,
                    bytes(packet),
                    packet.pts,
                    packet.dts,
                    packet.is_keyframe,
                )
            )
    return out


def pyav_decode_count(codec: str, frames: list[bytes]) -> int:
    """Decode each access unit as one packet (no final flush); return the pictures decoded.

    Access units the decoder rejects (P-frames before the first SPS/IDR) count as nothing;
    after the first picture any rejection fails the test.
    """
    context = av.CodecContext.create(codec, "r")
    count = 0
    for data in frames:
        try:
            count += len(context.decode(av.Packet(data)))
        except av.InvalidDataError:
            assert count == 0
    return count


_CACHE: dict[str, Capture] = {}


def get_capture(name: str) -> Capture:
    if name not in _CACHE:
        ssrc, video, decoded, audio = _EXPECTED[name]
        _CACHE[name] = Capture(name, load_capture(name), ssrc, video - 1, decoded, audio)
    return _CACHE[name]


@pytest.fixture(params=sorted(_EXPECTED))
def capture(request: pytest.FixtureRequest) -> Capture:
    """Each capture in turn."""
    return get_capture(request.param)


@pytest.fixture
def captures() -> Callable[[str], Capture]:
    """Look a capture up by name."""
    return get_capture


@pytest.fixture
def reference() -> Callable[[bytes], list[RefPacket]]:
    """FFmpeg's view of a PS byte string."""
    return pyav_demux


@pytest.fixture
def decode_count() -> Callable[[str, list[bytes]], int]:
    return pyav_decode_count
