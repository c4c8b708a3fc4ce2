from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media.ps import Codec, PsError, PsFrame, StreamKind, encode_timestamp
from media.ps_demux import PsDemuxer, parse_psm

if TYPE_CHECKING:
    from tests.media.conftest import Capture, RefPacket

Reference = Callable[[bytes], "list[RefPacket]"]


def _demux(chunks: list[bytes], demuxer: PsDemuxer | None = None) -> list[PsFrame]:
    demuxer = demuxer or PsDemuxer()
    out: list[PsFrame] = []
    for chunk in chunks:
        out += demuxer.feed(chunk)
    return out + demuxer.flush()


def _units(ps: bytes) -> list[tuple[int, int]]:
    """(offset, end) of each top-level unit of a clean PS stream."""
    out = []
    pos = 0
    while pos < len(ps):
        sid = ps[pos + 3]
        if sid == 0xBA:
            end = pos + 14 + (ps[pos + 13] & 7)
        else:
            end = pos + 6 + struct.unpack_from(">H", ps, pos + 4)[0]
        out.append((pos, end))
        pos = end
    return out


def _assert_same(frames: list[PsFrame], ref: list[RefPacket]) -> None:
    assert len(frames) == len(ref)
    for frame, packet in zip(frames, ref, strict=True):
        assert frame.data == packet.data
        assert (frame.pts, frame.dts) == (packet.pts, packet.dts)
        assert frame.kind == packet.kind


def test_matches_ffmpeg(capture: Capture, reference: Reference) -> None:
    demuxer = PsDemuxer()
    frames = _demux(capture.payloads, demuxer)
    ref = reference(capture.ps)
    video = [f for f in frames if f.kind is StreamKind.VIDEO]
    audio = [f for f in frames if f.kind is StreamKind.AUDIO]
    ref_video = [p for p in ref if p.kind == "video"]
    ref_audio = [p for p in ref if p.kind == "audio"]
    # The README counts FFmpeg's final empty packet too: one more than the access units.
    assert len(video) == capture.video_frames
    assert len(audio) == capture.audio_frames
    _assert_same(video, ref_video)
    _assert_same(audio, ref_audio)
    assert [f.keyframe for f in video] == [p.keyframe for p in ref_video]
    assert {f.codec for f in video} == {Codec.H264}
    assert {f.stream_id for f in video} == {0xE0}
    assert demuxer.video_frames == len(video)
    assert (demuxer.errors, demuxer.bytes_skipped, demuxer.frames_dropped) == (0, 0, 0)
    assert demuxer.last_error is None


def test_decodes_like_ffmpeg(capture: Capture, decode_count: Callable[..., int]) -> None:
    frames = _demux(capture.payloads)
    video = [f.data for f in frames if f.kind is StreamKind.VIDEO]
    assert decode_count("h264", video) == capture.decoded_frames


def test_pcma_audio(captures: Callable[[str], Capture]) -> None:
    frames = _demux(captures("ps_rtp_udp_h264_pcma").payloads)
    audio = [f for f in frames if f.kind is StreamKind.AUDIO]
    assert len(audio) == 42
    assert {(f.codec, f.stream_id, f.keyframe, len(f.data)) for f in audio} == {
        (Codec.PCMA, 0xC0, True, 1024)
    }


def test_mid_gop_start(
    captures: Callable[[str], Capture], decode_count: Callable[..., int]
) -> None:
    """tcp_passive joins mid-GOP: a receiver waits for the first keyframe."""
    video = [f for f in _demux(captures("ps_rtp_tcp_passive").payloads)]
    first_key = next(i for i, f in enumerate(video) if f.keyframe)
    assert first_key > 0
    assert not any(f.keyframe for f in video[:first_key])
    # From the keyframe on, every access unit decodes.
    from_key = [f.data for f in video[first_key:]]
    assert decode_count("h264", from_key) == len(from_key) == 74


def test_whole_and_byte_at_a_time(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp_h264_pcma")
    expected = _demux(capture.payloads)
    assert _demux([capture.ps]) == expected
    ps = capture.ps
    assert _demux([ps[i : i + 1] for i in range(len(ps))]) == expected


def test_random_chunks(capture: Capture) -> None:
    expected = _demux(capture.payloads)
    rng = random.Random(13818)
    ps = capture.ps
    chunks = []
    pos = 0
    while pos < len(ps):
        size = rng.randint(1, 3000)
        chunks.append(ps[pos : pos + size])
        pos += size
    assert _demux(chunks) == expected


def test_flush_per_rtp_frame_gives_each_frame_at_once(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    demuxer = PsDemuxer()
    per_frame: list[int] = []
    chunk = b""
    for packet in capture.packets:
        chunk += packet[12:]
        if packet[1] & 0x80:  # marker: end of the RTP frame
            demuxer.feed(chunk)
            per_frame.append(len(demuxer.flush()))
            chunk = b""
    assert per_frame == [1] * capture.video_frames


def test_garbage_before_and_between_frames(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    expected = _demux(capture.payloads)
    ps = capture.ps
    units = _units(ps)
    # Cut just before the 11th pack header.
    cut = [start for start, _ in units if ps[start + 3] == 0xBA][10]
    garbage = b"\x00\x00\x01\x09garbage\xff" * 5
    demuxer = PsDemuxer()
    frames = _demux([garbage, ps[:cut], garbage, ps[cut:]], demuxer)
    # The frame right before the garbage cannot be told from one that overran: dropped.
    assert frames == expected[:9] + expected[10:]
    assert demuxer.bytes_skipped == 2 * len(garbage)
    assert demuxer.resyncs == 2
    assert demuxer.frames_dropped == 1
    assert demuxer.last_error == "no start code where a unit should begin"


def test_lost_rtp_packet(captures: Callable[[str], Capture], reference: Reference) -> None:
    """A lost packet in the middle of the stream costs the frames it touched, no more."""
    capture = captures("ps_rtp_udp")
    expected = _demux(capture.payloads)
    payloads = capture.payloads
    lost = 60
    demuxer = PsDemuxer()
    frames = _demux(payloads[:lost] + payloads[lost + 1 :], demuxer)
    assert demuxer.resyncs >= 1
    assert 1 <= len(expected) - len(frames) <= 3
    good = {(f.pts, f.data) for f in expected}
    # Everything emitted is an intact frame, and the tail is all there.
    assert all((f.pts, f.data) in good for f in frames)
    assert frames[-100:] == expected[-100:]


def test_truncated_stream(capture: Capture) -> None:
    ps = capture.ps
    for cut in (1, 5, 13, 20, 100, len(ps) // 2, len(ps) - 1):
        frames = _demux([ps[:cut]])
        assert all(isinstance(f, PsFrame) for f in frames)


def _without_psm(ps: bytes) -> bytes:
    return b"".join(ps[a:b] for a, b in _units(ps) if ps[a + 3] not in (0xBB, 0xBC))


def test_missing_psm_sniffs_h264(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    expected = _demux(capture.payloads)
    frames = _demux([_without_psm(capture.ps)])
    assert frames == expected


def test_missing_psm_audio_is_unknown(captures: Callable[[str], Capture]) -> None:
    frames = _demux([_without_psm(captures("ps_rtp_udp_h264_pcma").ps)])
    assert {f.codec for f in frames if f.kind is StreamKind.AUDIO} == {Codec.UNKNOWN}
    assert {f.codec for f in frames if f.kind is StreamKind.VIDEO} == {Codec.H264}


def _replace_psm(ps: bytes, psm: bytes) -> bytes:
    return b"".join(psm if ps[a + 3] == 0xBC else ps[a:b] for a, b in _units(ps))


def _psm(entries: bytes, info: bytes = b"", declared: int | None = None) -> bytes:
    es_len = len(entries) if declared is None else declared
    body = b"\xe0\xff" + struct.pack(">H", len(info)) + info + struct.pack(">H", es_len)
    body += entries + b"\x00\x00\x00\x00"
    return b"\x00\x00\x01\xbc" + struct.pack(">H", len(body)) + body


def test_mislabelled_h265_psm_is_corrected(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    expected = _demux(capture.payloads)
    demuxer = PsDemuxer()
    frames = _demux([_replace_psm(capture.ps, _psm(b"\x24\xe0\x00\x00"))], demuxer)
    assert [f.data for f in frames] == [f.data for f in expected]
    assert {f.codec for f in frames} == {Codec.H264}
    assert [f.keyframe for f in frames] == [f.keyframe for f in expected]
    assert demuxer.codec_mismatches == 1
    assert demuxer.stream_types == {0xE0: 0x24}


def test_malformed_psm_keeps_previous(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    ps = capture.ps
    bad = _psm(b"", info=b"\x05\x10")  # descriptor claims more than the map holds
    first_psm = next(a for a, _ in _units(ps) if ps[a + 3] == 0xBC)
    units = _units(ps)
    mangled = b"".join(bad if ps[a + 3] == 0xBC and a != first_psm else ps[a:b] for a, b in units)
    demuxer = PsDemuxer()
    frames = _demux([mangled], demuxer)
    assert frames == _demux(capture.payloads)
    assert demuxer.psm_errors == 6
    assert demuxer.stream_types == {0xE0: 0x1B}
    assert demuxer.last_error == "PSM maps no elementary stream"


def test_zero_length_video_pes(capture: Capture) -> None:
    """Hikvision: video PES_packet_length 0, the PES runs to the next start code."""
    ps = capture.ps
    parts = []
    for a, b in _units(ps):
        if 0xE0 <= ps[a + 3] <= 0xEF:
            parts.append(ps[a : a + 4] + b"\x00\x00" + ps[a + 6 : b])
        else:
            parts.append(ps[a:b])
    unbounded = b"".join(parts)
    expected = _demux(capture.payloads)
    assert _demux([unbounded]) == expected
    # RTP-sized chunks and byte-sized chunks (first 20 KB) give the same frames.
    chunks = [unbounded[i : i + 1400] for i in range(0, len(unbounded), 1400)]
    assert _demux(chunks) == expected
    head = unbounded[:20000]
    assert _demux([head[i : i + 1] for i in range(len(head))]) == _demux([head])


def test_private_streams_and_padding_skipped(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    ps = capture.ps
    private = b"\x00\x00\x01\xbd\x00\x04HIK\x00" + b"\x00\x00\x01\xbe\x00\x02\xff\xff"
    extra = b"\x00\x00\x01\xbf\x00\x01\x00"
    parts = []
    for a, b in _units(ps):
        parts.append(ps[a:b])
        if 0xE0 <= ps[a + 3] <= 0xEF:
            parts.append(private)
        if ps[a + 3] == 0xBA:
            parts.append(extra)
    demuxer = PsDemuxer()
    assert _demux([b"".join(parts)], demuxer) == _demux(capture.payloads)
    assert demuxer.private_packets == 2 * capture.video_frames
    assert demuxer.errors == 0


def test_pack_header_stuffing_and_quirks(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    ps = capture.ps
    expected = _demux(capture.payloads)
    stuffed, absent, mpeg1 = [], [], []
    for a, b in _units(ps):
        unit = ps[a:b]
        if unit[3] == 0xBA:
            stuffed.append(unit[:13] + b"\xfe\xff\xff\xff" + b"\xff\xff\xff")
            absent.append(unit[:13] + b"\xfe")  # announces 6 bytes of stuffing, has none
            mpeg1.append(b"\x00\x00\x01\xba\x21\x00\x01\x00\x01\x80\x00\x01")
        else:
            stuffed.append(unit)
            absent.append(unit)
            mpeg1.append(unit)
    for variant in (stuffed, absent, mpeg1):
        demuxer = PsDemuxer()
        assert _demux([b"".join(variant)], demuxer) == expected
        assert demuxer.errors == 0


def test_bare_pack_start_code() -> None:
    pes = b"\x00\x00\x01\xe0\x00\x0c\x80\x80\x05\x21\x00\x01\x00\x01" + b"\x00\x00\x01\x65"
    frames = _demux([b"\x00\x00\x01\xba" + pes])
    assert [(f.pts, f.data, f.keyframe) for f in frames] == [(0, b"\x00\x00\x01\x65", True)]


def test_bad_pack_header_resyncs() -> None:
    pes = b"\x00\x00\x01\xe0\x00\x0c\x80\x80\x05\x21\x00\x01\x00\x01" + b"\x00\x00\x01\x65"
    demuxer = PsDemuxer()
    frames = _demux([b"\x00\x00\x01\xba\xff" + bytes(9) + pes], demuxer)
    assert frames == []
    assert demuxer.last_error == "pack header has invalid marker bits 0xff"


@pytest.mark.parametrize(
    ("pes", "message"),
    [
        (b"\x00\x00\x01\xc0\x00\x00", "audio PES has zero length"),
        (b"\x00\x00\x01\xe0\x00\x03\x0f\x80\x05", "PES header is not MPEG-2"),
        (b"\x00\x00\x01\xe0\x00\x02\x80\x80", "PES header is not MPEG-2"),
        (b"\x00\x00\x01\xe0\x00\x04\x80\x80\x05\x21", "PES header is longer than the packet"),
        (b"\x00\x00\x01\xe0\x00\x05\x80\x80\x02\x21\x00", "PES header too short for its PTS/DTS"),
    ],
)
def test_bad_pes(pes: bytes, message: str) -> None:
    demuxer = PsDemuxer()
    assert _demux([pes + b"\x00\x00\x01\xba"], demuxer) == []
    assert demuxer.last_error == message
    assert demuxer.pes_errors == 1


def test_orphan_continuation_dropped() -> None:
    pes = b"\x00\x00\x01\xe0\x00\x07\x80\x00\x00" + b"\x00\x00\x01\x41"
    demuxer = PsDemuxer()
    assert _demux([pes], demuxer) == []
    assert demuxer.orphan_pes == 1


def test_same_pts_pes_are_merged_and_dts_kept() -> None:
    def pes(data: bytes, pts: int | None = None, dts: int | None = None) -> bytes:
        if pts is None:
            header = b"\x80\x00\x00"
        elif dts is None:
            header = b"\x80\x80\x05" + encode_timestamp(2, pts)
        else:
            header = b"\x80\xc0\x0a" + encode_timestamp(3, pts) + encode_timestamp(1, dts)
        return b"\x00\x00\x01\xe0" + struct.pack(">H", len(header) + len(data)) + header + data

    sps = b"\x00\x00\x00\x01\x67\x42\x00\x1e"
    idr = b"\x00\x00\x00\x01\x65\x88"
    p = b"\x00\x00\x00\x01\x41\x9a"
    stream = pes(sps, 3600, 0) + pes(idr, 3600) + pes(b"more") + pes(p, 7200, 3600)
    frames = _demux([stream])
    assert [(f.pts, f.dts, f.data, f.keyframe) for f in frames] == [
        (3600, 0, sps + idr + b"more", True),
        (7200, 3600, p, False),
    ]


def test_oversize_access_unit_dropped(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    demuxer = PsDemuxer(max_frame_size=5000)
    frames = _demux(capture.payloads, demuxer)
    assert len(frames) == capture.video_frames - 4  # the four IDR frames are ~7 KB
    assert demuxer.frames_dropped == 4
    assert demuxer.last_error == "access unit exceeds 5000 bytes"


def test_unbounded_pes_limit() -> None:
    demuxer = PsDemuxer(max_frame_size=1000)
    head = b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05\x21\x00\x01\x00\x01\x00\x00\x01\x65"
    assert demuxer.feed(head) == []
    for _ in range(5):
        assert demuxer.feed(b"\x00\x00\x01\x01" + bytes(300)) == []
    assert demuxer.last_error == "unbounded PES exceeds 1000 bytes"
    assert demuxer.pes_errors == 1


def test_reset(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    demuxer = PsDemuxer()
    demuxer.feed(capture.ps[:20000])
    demuxer.reset()
    assert demuxer.frames_dropped == 1
    assert _demux([capture.ps], demuxer) == _demux(capture.payloads)


def test_parse_psm() -> None:
    assert parse_psm(_psm(b"\x1b\xe0\x00\x00\x90\xc0\x00\x00")[6:]) == {0xE0: 0x1B, 0xC0: 0x90}
    # Descriptors on an entry are skipped; a wrong elementary_stream_map_length is ignored.
    entries = b"\x24\xe0\x00\x03abc" + b"\x91\xc0\x00\x00"
    assert parse_psm(_psm(entries, declared=0)[6:]) == {0xE0: 0x24, 0xC0: 0x91}
    assert parse_psm(_psm(entries, declared=200)[6:]) == {0xE0: 0x24, 0xC0: 0x91}
    # No CRC but a declared length that says so.
    no_crc = _psm(b"\x1b\xe0\x00\x00")[6:-4]
    assert parse_psm(no_crc) == {0xE0: 0x1B}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xe0\xff\x00", "PSM of 3 bytes is too short"),
        (b"\xe0\xff\x00\x09\x00\x00\x00\x00\x00\x00", "program_stream_info_length overruns"),
        (_psm(b"")[6:], "PSM maps no elementary stream"),
    ],
)
def test_parse_psm_errors(body: bytes, message: str) -> None:
    with pytest.raises(PsError, match=message):
        parse_psm(body)


def test_dahua_aac_labelled_g711() -> None:
    adts = b"\xff\xf1\x50\x80\x02\x1f\xfc" + bytes(10)
    header = b"\x80\x80\x05" + encode_timestamp(2, 90000)
    pes = b"\x00\x00\x01\xc0" + struct.pack(">H", len(header) + len(adts)) + header + adts
    demuxer = PsDemuxer()
    frames = _demux([_psm(b"\x90\xc0\x00\x00") + pes], demuxer)
    assert [(f.codec, f.kind) for f in frames] == [(Codec.AAC, StreamKind.AUDIO)]
    assert demuxer.codec_mismatches == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=12))
def test_fuzz_feed_never_raises(chunks: list[bytes]) -> None:
    demuxer = PsDemuxer(max_frame_size=4096)
    for chunk in chunks:
        for frame in demuxer.feed(b"\x00\x00\x01" + chunk):
            assert isinstance(frame, PsFrame)
    demuxer.flush()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(st.tuples(st.integers(0, 19999), st.integers(0, 255)), max_size=20),
    cut=st.integers(0, 20000),
)
def test_fuzz_mutated_capture(
    captures: Callable[[str], Capture], edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(captures("ps_rtp_udp_h264_pcma").ps[:20000])
    for offset, value in edits:
        data[offset] = value
    demuxer = PsDemuxer()
    demuxer.feed(bytes(data[:cut]))
    demuxer.feed(bytes(data[cut:]))
    for frame in demuxer.flush():
        assert frame.kind in (StreamKind.VIDEO, StreamKind.AUDIO)
