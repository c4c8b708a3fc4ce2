from __future__ import annotations

import random
import struct
from collections.abc import Callable
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import numpy as np
import pytest

from media.frame_assembler import FrameAssembler
from media.ps import Codec, PsError, PsFrame, StreamKind
from media.ps_demux import PsDemuxer
from media.ps_mux import MAX_PES_LENGTH, PsMuxer, crc32_mpeg2
from media.rtp import RtpPacket, RtpPacketizer

if TYPE_CHECKING:
    from tests.media.conftest import Capture, RefPacket

Reference = Callable[[bytes], "list[RefPacket]"]


def _demux(ps: bytes) -> list[PsFrame]:
    demuxer = PsDemuxer()
    return demuxer.feed(ps) + demuxer.flush()


def _key(frame: PsFrame | RefPacket) -> tuple[str, int | None]:
    return (str(frame.kind), frame.pts)


def _encode(codec: str, count: int, width: int, height: int, noise: bool = False) -> list[PsFrame]:
    """Encode a short clip with PyAV; return its packets as access units (Annex-B)."""
    context = av.CodecContext.create(codec, "w")
    context.width, context.height = width, height
    context.pix_fmt = "yuv420p"
    context.time_base = Fraction(1, 90000)
    context.framerate = Fraction(25)
    context.gop_size = 5
    context.max_b_frames = 0
    if codec == "libx265":
        context.options = {"x265-params": "log-level=none:bframes=0:keyint=5:min-keyint=5"}
    else:
        context.options = {"preset": "ultrafast", "bf": "0"}
        if noise:
            context.options["qp"] = "0"
    rng = np.random.default_rng(0)
    out: list[PsFrame] = []
    target = Codec.H265 if codec == "libx265" else Codec.H264
    packets = []
    for i in range(count):
        if noise:
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        else:
            image = np.full((height, width, 3), (i * 9) % 256, dtype=np.uint8)
            image[:, (i * 4) % width :] = 40
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i * 3600
        packets += context.encode(frame)
    packets += context.encode(None)
    for packet in packets:
        assert packet.pts is not None and packet.dts is not None
        out.append(
            PsFrame(
                StreamKind.VIDEO,
                target,
                bytes(packet),
                packet.pts + 90000,
                packet.dts + 90000,
                packet.is_keyframe,
            )
        )
    return out


def test_remux_capture(capture: Capture, reference: Reference) -> None:
    frames = _demux(capture.ps)
    audio = "pcma" if capture.audio_frames else None
    muxer = PsMuxer("h264", audio)
    ps = b"".join(muxer.mux(f) for f in frames)
    ref = reference(ps)
    assert len(ref) == len(frames)
    for frame, packet in zip(sorted(frames, key=_key), sorted(ref, key=_key), strict=True):
        assert (str(frame.kind), frame.data, frame.pts, frame.dts) == (
            packet.kind,
            packet.data,
            packet.pts,
            packet.dts,
        )
        assert packet.codec == ("h264" if frame.kind is StreamKind.VIDEO else "pcm_alaw")
    assert sorted(_demux(ps), key=_key) == sorted(frames, key=_key)


def test_psm_on_first_frame_and_keyframes(captures: Callable[[str], Capture]) -> None:
    frames = _demux(captures("ps_rtp_udp").ps)
    muxer = PsMuxer()
    outputs = [muxer.mux(f) for f in frames]
    with_psm = [i for i, out in enumerate(outputs) if b"\x00\x00\x01\xbc" in out]
    assert with_psm == [i for i, f in enumerate(frames) if f.keyframe]
    assert with_psm[0] == 0
    first = outputs[0]
    assert first.startswith(b"\x00\x00\x01\xba")
    assert first[14:18] == b"\x00\x00\x01\xbb"
    # A P-frame: pack header + one PES with the PTS only.
    p = outputs[1]
    assert p[14:18] == b"\x00\x00\x01\xe0"
    assert p[20:23] == b"\x84\x80\x05"


def test_crc_matches_the_captured_psm(captures: Callable[[str], Capture]) -> None:
    ps = captures("ps_rtp_udp").ps
    start = ps.index(b"\x00\x00\x01\xbc")
    end = start + 6 + struct.unpack_from(">H", ps, start + 4)[0]
    assert crc32_mpeg2(ps[start : end - 4]) == struct.unpack_from(">I", ps, end - 4)[0]
    assert crc32_mpeg2(ps[start:end]) == 0


def test_h265_round_trip(reference: Reference, decode_count: Callable[..., int]) -> None:
    if "libx265" not in av.codecs_available:
        pytest.skip("PyAV build without libx265")
    frames = _encode("libx265", 12, 128, 96)
    assert frames[0].keyframe
    ps = b"".join(PsMuxer("h265").mux(f) for f in frames)
    ref = reference(ps)
    assert [(p.codec, p.data, p.pts, p.dts, p.keyframe) for p in ref] == [
        ("hevc", f.data, f.pts, f.dts, f.keyframe) for f in frames
    ]
    assert decode_count("hevc", [f.data for f in frames]) >= len(frames) - 1
    demuxed = _demux(ps)
    assert demuxed == [
        PsFrame(StreamKind.VIDEO, Codec.H265, f.data, f.pts, f.dts, f.keyframe, 0xE0)
        for f in frames
    ]
    assert sum(f.keyframe for f in demuxed) == 3  # keyint 5 over 12 frames

    # Without PSM the codec is sniffed; labelled H.264 (Keda) it is corrected.
    no_psm = ps.replace(PsMuxer("h265")._headers, b"")
    assert [f.codec for f in _demux(no_psm)] == [Codec.H265] * len(frames)
    keda = ps.replace(PsMuxer("h265")._headers, PsMuxer("h264")._headers)
    assert _demux(keda) == demuxed


def test_large_frame_split_into_pes(reference: Reference) -> None:
    frames = _encode("libx264", 2, 320, 240, noise=True)
    assert len(frames[0].data) > 2 * MAX_PES_LENGTH
    ps = b"".join(PsMuxer("h264").mux(f) for f in frames)
    # Walk the PES packets of the first frame: bounded, only the first has a PTS.
    pos = ps.index(b"\x00\x00\x01\xe0")
    lengths, flags = [], []
    while ps.startswith(b"\x00\x00\x01\xe0", pos):
        length = struct.unpack_from(">H", ps, pos + 4)[0]
        lengths.append(length)
        flags.append(ps[pos + 7])
        pos += 6 + length
    assert len(lengths) >= 3
    assert max(lengths) <= MAX_PES_LENGTH
    assert flags == [0x80] + [0x00] * (len(flags) - 1)
    ref = reference(ps)
    assert [(p.data, p.pts) for p in ref] == [(f.data, f.pts) for f in frames]
    assert [f.data for f in _demux(ps)] == [f.data for f in frames]


def test_rtp_round_trip_with_reordering(captures: Callable[[str], Capture]) -> None:
    frames = _demux(captures("ps_rtp_udp_h264_pcma").ps)
    muxer = PsMuxer("h264", "pcma")
    packetizer = RtpPacketizer(ssrc=0x1234, seq_start=65000)
    wire: list[bytes] = []
    for index, frame in enumerate(frames):
        wire += packetizer.packetize(muxer.mux(frame), timestamp=index * 3600)
    # UDP-like reordering: swap neighbours here and there.
    rng = random.Random(3550)
    for i in range(0, len(wire) - 1, 7):
        if rng.random() < 0.5:
            wire[i], wire[i + 1] = wire[i + 1], wire[i]
    assembler = FrameAssembler(reorder_window=4)
    demuxer = PsDemuxer()
    out: list[PsFrame] = []
    for data in wire:
        for assembled in assembler.add(RtpPacket.parse(data)):
            out += demuxer.feed(assembled.payload)
            out += demuxer.flush()
    for assembled in assembler.flush():
        out += demuxer.feed(assembled.payload)
    out += demuxer.flush()
    assert assembler.lost == 0
    assert assembler.frames == len(frames)
    assert out == frames


@pytest.mark.parametrize(
    ("video", "audio", "message"),
    [
        ("vp8", None, "unsupported codec"),
        ("pcma", None, "unsupported video codec 'pcma'"),
        ("h264", "h265", "unsupported audio codec 'h265'"),
    ],
)
def test_bad_codecs(video: str, audio: str | None, message: str) -> None:
    with pytest.raises(PsError, match=message):
        PsMuxer(video, audio)


def test_mux_errors() -> None:
    muxer = PsMuxer("h264")
    with pytest.raises(PsError, match="frame has no PTS"):
        muxer.mux(PsFrame(StreamKind.VIDEO, Codec.H264, b""))
    with pytest.raises(PsError, match="muxer has no audio stream"):
        muxer.mux(PsFrame(StreamKind.AUDIO, Codec.PCMA, b"", pts=0))
    with pytest.raises(PsError, match="does not match"):
        muxer.mux(PsFrame(StreamKind.VIDEO, Codec.H265, b"", pts=0))


def test_timestamps_and_scr() -> None:
    muxer = PsMuxer("h264", "aac")
    out = muxer.mux(PsFrame(StreamKind.VIDEO, Codec.UNKNOWN, b"\x00\x00\x01\x65", 7200, 3600))
    demuxed = _demux(out)
    assert [(f.pts, f.dts, f.codec) for f in demuxed] == [(7200, 3600, Codec.H264)]
    # SCR = DTS - 3600 = 0 here.
    assert out[4:10] == bytes((0x44, 0, 0x04, 0, 0x04, 0x01))
    audio = muxer.mux(PsFrame(StreamKind.AUDIO, Codec.AAC, b"\xff\xf1" + bytes(10), 9000))
    assert b"\x00\x00\x01\xbc" not in audio
    assert audio[14:18] == b"\x00\x00\x01\xc0"
