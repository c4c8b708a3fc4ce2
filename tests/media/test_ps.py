from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from media.ps import (
    CODEC_STREAM_TYPES,
    STREAM_TYPE_CODECS,
    Codec,
    PsFrame,
    StreamKind,
    decode_timestamp,
    encode_timestamp,
)


def test_timestamp_vectors() -> None:
    # PTS 1800000 as the captured ps_rtp_udp stream writes it (prefix 0010).
    assert encode_timestamp(2, 1800000) == bytes.fromhex("21006dee81")
    assert decode_timestamp(bytes.fromhex("ff21006dee81"), 1) == 1800000
    assert encode_timestamp(3, (1 << 33) - 1) == bytes.fromhex("3fffffffff")
    assert encode_timestamp(1, 1 << 33) == bytes.fromhex("1100010001")


@given(st.integers(0, (1 << 33) - 1), st.sampled_from([1, 2, 3]))
def test_timestamp_round_trip(value: int, prefix: int) -> None:
    data = encode_timestamp(prefix, value)
    assert data[0] >> 4 == prefix
    assert data[0] & 1 and data[2] & 1 and data[4] & 1  # marker bits
    assert decode_timestamp(data, 0) == value


def test_stream_type_tables_agree() -> None:
    for codec, stream_type in CODEC_STREAM_TYPES.items():
        assert STREAM_TYPE_CODECS[stream_type] is codec
    assert STREAM_TYPE_CODECS[0x1B] == "h264" and STREAM_TYPE_CODECS[0x90] == "pcma"


def test_frame_repr() -> None:
    frame = PsFrame(StreamKind.VIDEO, Codec.H265, b"abc", 1, 1, True, 0xE0)
    assert repr(frame) == "PsFrame(video, h265, pts=1, dts=1, keyframe=True, 3 bytes)"
