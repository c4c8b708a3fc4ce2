"""MPEG-2 program stream muxer for GB/T 28181 (cascade output, notes §8.3 and §8.5).

Per frame: a pack header; on the first frame and on every video keyframe a system header and a
program stream map (so a receiver joining at an IDR learns the codecs there); then the PES
packets. Choices follow ireader's muxer, which GB/T 28181 peers are known to accept:

* SCR = DTS - 3600 (40 ms of decoder buffer at 90 kHz), clamped at zero;
* the first PES of a frame carries the PTS (and the DTS when it differs) and sets
  data_alignment_indicator; a frame too large for one PES continues in PES packets without
  timestamps, each at most ``MAX_PES_LENGTH`` long (0xFF80: room left below 65535 for
  receivers that add bytes, notes §8.3);
* PSM entries: video 0xE0, audio 0xC0, ``stream_type`` from :data:`CODEC_STREAM_TYPES`.

The system header and PSM bytes never change for a muxer, so they are built once.
Timestamps are written modulo 2**33; callers rebase them per session (notes §8.4).
"""

from __future__ import annotations

import struct

from media.ps import (
    CODEC_STREAM_TYPES,
    TIMESTAMP_MASK,
    Codec,
    PsError,
    PsFrame,
    StreamKind,
    encode_timestamp,
)

__all__ = ["MAX_PES_LENGTH", "PsMuxer", "crc32_mpeg2"]

MAX_PES_LENGTH = 0xFF80
VIDEO_STREAM_ID = 0xE0
AUDIO_STREAM_ID = 0xC0
# program_mux_rate / rate_bound in units of 50 bytes/s (here 2.5 MB/s, ample for GB video).
_MUX_RATE = 50_000
# SCR runs this far (90 kHz ticks) ahead of the DTS.
_SCR_LEAD = 3600
_VIDEO_CODECS = frozenset((Codec.H264, Codec.H265))
_AUDIO_CODECS = frozenset((Codec.PCMA, Codec.PCMU, Codec.AAC))


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 (polynomial 0x04C11DB7, not reflected, init 0xFFFFFFFF) used by the PSM."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    return crc


def _pack_header(scr: int) -> bytes:
    """ISO/IEC 13818-1 Table 2-38: '01', SCR base with markers, SCR extension 0, mux rate."""
    scr &= TIMESTAMP_MASK
    return b"\x00\x00\x01\xba" + bytes(
        (
            0x44 | ((scr >> 27) & 0x38) | ((scr >> 28) & 0x03),
            (scr >> 20) & 0xFF,
            ((scr >> 12) & 0xF8) | 0x04 | ((scr >> 13) & 0x03),
            (scr >> 5) & 0xFF,
            ((scr << 3) & 0xF8) | 0x04,
            0x01,
            (_MUX_RATE >> 14) & 0xFF,
            (_MUX_RATE >> 6) & 0xFF,
            ((_MUX_RATE << 2) & 0xFC) | 0x03,
            0xF8,  # reserved bits, no stuffing
        )
    )


def _system_header(audio: bool) -> bytes:
    """Table 2-40 with one entry per stream (P-STD bounds as ireader writes them)."""
    body = bytes(
        (
            0x80 | ((_MUX_RATE >> 15) & 0x7F),
            (_MUX_RATE >> 7) & 0xFF,
            ((_MUX_RATE << 1) & 0xFE) | 0x01,
            (1 if audio else 0) << 2,  # audio_bound, fixed_flag 0, CSPS_flag 0
            0x21,  # locks 0, marker, video_bound 1
            0x7F,  # packet_rate_restriction_flag 0, reserved
        )
    )
    body += bytes((VIDEO_STREAM_ID, 0xE0 | (400 >> 8), 400 & 0xFF))  # scale 1024, 400 KiB
    if audio:
        body += bytes((AUDIO_STREAM_ID, 0xC0, 32))  # scale 128, 4 KiB
    return b"\x00\x00\x01\xbb" + struct.pack("!H", len(body)) + body


def _program_stream_map(video: Codec, audio: Codec | None) -> bytes:
    """Table 2-41: no program descriptors, one entry per stream without descriptors, CRC."""
    entries = bytes((CODEC_STREAM_TYPES[video], VIDEO_STREAM_ID, 0, 0))
    if audio is not None:
        entries += bytes((CODEC_STREAM_TYPES[audio], AUDIO_STREAM_ID, 0, 0))
    # current_next_indicator 1, reserved, version 0; reserved + marker; no program info.
    body = b"\xe0\xff\x00\x00" + struct.pack("!H", len(entries)) + entries
    head = b"\x00\x00\x01\xbc" + struct.pack("!H", len(body) + 4)
    return head + body + struct.pack("!I", crc32_mpeg2(head + body))


class PsMuxer:
    """Sans-IO PS muxer: one :class:`PsFrame` in, the PS bytes of that frame out.

    :param video_codec: ``"h264"`` or ``"h265"``.
    :param audio_codec: None, ``"pcma"``, ``"pcmu"`` or ``"aac"``.
    :raises PsError: for an unsupported codec.
    """

    def __init__(self, video_codec: str = "h264", audio_codec: str | None = None) -> None:
        try:
            video = Codec(video_codec)
            audio = None if audio_codec is None else Codec(audio_codec)
        except ValueError as exc:
            raise PsError(f"unsupported codec: {exc}") from None
        if video not in _VIDEO_CODECS:
            raise PsError(f"unsupported video codec {video_codec!r}")
        if audio is not None and audio not in _AUDIO_CODECS:
            raise PsError(f"unsupported audio codec {audio_codec!r}")
        self.video_codec = video
        self.audio_codec = audio
        self._headers = _system_header(audio is not None) + _program_stream_map(video, audio)
        self._started = False

    def mux(self, frame: PsFrame) -> bytes:
        """Return the PS bytes carrying ``frame`` (one pack).

        :raises PsError: the frame has no PTS, its kind has no stream in this muxer, or its
            codec differs from the configured one.
        """
        if frame.pts is None:
            raise PsError("frame has no PTS")
        if frame.kind == StreamKind.VIDEO:
            codec: Codec | None = self.video_codec
            stream_id = VIDEO_STREAM_ID
        else:
            codec = self.audio_codec
            stream_id = AUDIO_STREAM_ID
            if codec is None:
                raise PsError("muxer has no audio stream")
        if frame.codec != codec and frame.codec != Codec.UNKNOWN:
            raise PsError(f"frame codec {frame.codec} does not match the muxer's {codec}")
        pts = frame.pts
        dts = pts if frame.dts is None else frame.dts
        parts = [_pack_header(max(dts - _SCR_LEAD, 0))]
        if not self._started or (frame.keyframe and stream_id == VIDEO_STREAM_ID):
            parts.append(self._headers)
            self._started = True
        self._pes(parts, stream_id, frame.data, pts, dts)
        return b"".join(parts)

    @staticmethod
    def _pes(parts: list[bytes], stream_id: int, data: bytes, pts: int, dts: int) -> None:
        if (pts - dts) & TIMESTAMP_MASK:
            header = b"\x84\xc0\x0a" + encode_timestamp(3, pts) + encode_timestamp(1, dts)
        else:
            header = b"\x84\x80\x05" + encode_timestamp(2, pts)
        prefix = b"\x00\x00\x01" + bytes((stream_id,))
        offset = 0
        size = len(data)
        while True:
            room = MAX_PES_LENGTH - len(header)
            chunk = data[offset : offset + room]
            parts.append(prefix + struct.pack("!H", len(header) + len(chunk)) + header)
            parts.append(chunk)
            offset += room
            if offset >= size:
                return
            header = b"\x80\x00\x00"
