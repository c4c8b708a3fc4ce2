"""Vocabulary shared by the PS demuxer and muxer (ISO/IEC 13818-1 §2.5, GB/T 28181 §C / notes §8.3).

Start codes, stream-id ranges, the ``stream_type`` table used in GB/T 28181 program stream maps,
the 33-bit PTS/DTS field codec, and the :class:`PsFrame` value both directions exchange.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "CODEC_STREAM_TYPES",
    "STREAM_TYPE_CODECS",
    "Codec",
    "PsError",
    "PsFrame",
    "StreamKind",
    "decode_timestamp",
    "encode_timestamp",
]

START_CODE = b"\x00\x00\x01"
PACK_START = b"\x00\x00\x01\xba"
PROGRAM_END = 0xB9
PACK_HEADER = 0xBA
SYSTEM_HEADER = 0xBB
PROGRAM_STREAM_MAP = 0xBC
PRIVATE_STREAM_1 = 0xBD
PADDING_STREAM = 0xBE
PRIVATE_STREAM_2 = 0xBF
AUDIO_FIRST, AUDIO_LAST = 0xC0, 0xDF
VIDEO_FIRST, VIDEO_LAST = 0xE0, 0xEF
#: PTS and DTS are 33-bit counts of a 90 kHz clock.
TIMESTAMP_MASK = (1 << 33) - 1


class PsError(ValueError):
    """A malformed program stream structure; the message names the structure and the fault."""


class StreamKind(StrEnum):
    VIDEO = "video"
    AUDIO = "audio"


class Codec(StrEnum):
    """Elementary stream codecs seen in GB/T 28181 program streams."""

    H264 = "h264"
    H265 = "h265"
    MPEG4 = "mpeg4"
    MPEG2_VIDEO = "mpeg2video"
    SVAC = "svac"
    PCMA = "pcma"
    PCMU = "pcmu"
    AAC = "aac"
    G722_1 = "g722.1"
    G723_1 = "g723.1"
    G729 = "g729"
    SVAC_AUDIO = "svac_audio"
    MPEG_AUDIO = "mpeg_audio"
    UNKNOWN = "unknown"


#: PSM ``stream_type`` → codec (notes §8.3: ireader ``mpeg-proto.h``, ZLMediaKit ``CODEC_MAP``).
STREAM_TYPE_CODECS: dict[int, Codec] = {
    0x02: Codec.MPEG2_VIDEO,
    0x03: Codec.MPEG_AUDIO,
    0x04: Codec.MPEG_AUDIO,
    0x0F: Codec.AAC,
    0x10: Codec.MPEG4,
    0x1B: Codec.H264,
    0x24: Codec.H265,
    0x80: Codec.SVAC,
    0x90: Codec.PCMA,
    0x91: Codec.PCMU,
    0x92: Codec.G722_1,
    0x93: Codec.G723_1,
    0x99: Codec.G729,
    0x9B: Codec.SVAC_AUDIO,
}

#: Codec → the ``stream_type`` we write in a PSM.
CODEC_STREAM_TYPES: dict[Codec, int] = {
    Codec.MPEG2_VIDEO: 0x02,
    Codec.MPEG_AUDIO: 0x03,
    Codec.AAC: 0x0F,
    Codec.MPEG4: 0x10,
    Codec.H264: 0x1B,
    Codec.H265: 0x24,
    Codec.SVAC: 0x80,
    Codec.PCMA: 0x90,
    Codec.PCMU: 0x91,
    Codec.G722_1: 0x92,
    Codec.G723_1: 0x93,
    Codec.G729: 0x99,
    Codec.SVAC_AUDIO: 0x9B,
}


@dataclass(frozen=True, slots=True)
class PsFrame:
    """One access unit of one elementary stream.

    ``data`` is the elementary stream bytes (Annex-B for H.264/H.265). ``pts``/``dts`` are
    33-bit 90 kHz values; the demuxer sets ``dts = pts`` when the PES carries only a PTS, as
    FFmpeg does. ``keyframe`` is True for an H.264 IDR, an H.265 IRAP picture, an MPEG-4
    I-VOP and every audio frame. ``stream_id`` is the PES stream id (0xE0..., 0xC0...).
    """

    kind: StreamKind
    codec: Codec
    data: bytes
    pts: int | None = None
    dts: int | None = None
    keyframe: bool = False
    stream_id: int = 0

    def __repr__(self) -> str:
        return (
            f"PsFrame({self.kind}, {self.codec}, pts={self.pts}, dts={self.dts}, "
            f"keyframe={self.keyframe}, {len(self.data)} bytes)"
        )


def decode_timestamp(data: bytes, offset: int) -> int:
    """Decode the 5-byte PTS/DTS field at ``offset`` (marker bits are not checked)."""
    return (
        ((data[offset] & 0x0E) << 29)
        | (data[offset + 1] << 22)
        | ((data[offset + 2] & 0xFE) << 14)
        | (data[offset + 3] << 7)
        | (data[offset + 4] >> 1)
    )


def encode_timestamp(prefix: int, value: int) -> bytes:
    """Encode a 33-bit PTS/DTS with its 4-bit ``prefix`` (2: PTS only, 3: PTS of a pair, 1: DTS)."""
    value &= TIMESTAMP_MASK
    return bytes(
        (
            (prefix << 4) | ((value >> 29) & 0x0E) | 1,
            (value >> 22) & 0xFF,
            ((value >> 14) & 0xFE) | 1,
            (value >> 7) & 0xFF,
            ((value << 1) & 0xFE) | 1,
        )
    )
