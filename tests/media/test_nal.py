from __future__ import annotations

import pytest

from media.nal import inspect_video, is_keyframe
from media.ps import Codec

SC = b"\x00\x00\x00\x01"
H264_AUD = SC + b"\x09\xf0"
H264_SPS = SC + b"\x67\x64\x00\x1f\xac"
H264_PPS = SC + b"\x68\xee\x3c\x80"
H264_IDR = SC + b"\x65\x88\x84\x00"
H264_P = SC + b"\x41\x9a\x02"
H265_AUD = SC + b"\x46\x01\x10"
H265_VPS = SC + b"\x40\x01\x0c\x01"
H265_SPS = SC + b"\x42\x01\x01\x01"
H265_PPS = SC + b"\x44\x01\xc1\x72"
H265_IDR = SC + b"\x26\x01\xaf\x00"
H265_CRA = SC + b"\x2a\x01\xaf\x00"
H265_TRAIL = SC + b"\x02\x01\xd0\x00"


@pytest.mark.parametrize(
    ("data", "hint", "expected"),
    [
        (H264_AUD + H264_SPS + H264_PPS + H264_IDR, Codec.UNKNOWN, (Codec.H264, True, True)),
        (H264_SPS + H264_PPS + H264_IDR, Codec.H265, (Codec.H264, True, True)),
        (H264_AUD + H264_P, Codec.H264, (Codec.H264, False, True)),
        (H264_P, Codec.H264, (Codec.H264, False, False)),
        (H264_P, Codec.UNKNOWN, (Codec.H264, False, False)),
        (
            H265_AUD + H265_VPS + H265_SPS + H265_PPS + H265_IDR,
            Codec.H264,
            (Codec.H265, True, True),
        ),
        (H265_VPS + H265_SPS + H265_PPS + H265_CRA, Codec.UNKNOWN, (Codec.H265, True, True)),
        (H265_TRAIL, Codec.H265, (Codec.H265, False, False)),
        (H265_TRAIL, Codec.UNKNOWN, (Codec.H265, False, False)),  # weak: plausible H.265
        (b"", Codec.UNKNOWN, (Codec.H264, False, False)),
        (SC, Codec.H264, (Codec.H264, False, False)),
    ],
)
def test_inspect_video(data: bytes, hint: Codec, expected: tuple[Codec, bool, bool]) -> None:
    assert inspect_video(data, hint) == expected


def test_is_keyframe() -> None:
    assert is_keyframe(H264_AUD + H264_SPS + H264_IDR, Codec.H264)
    assert not is_keyframe(H264_AUD + H264_P, Codec.H264)
    assert is_keyframe(H265_VPS + H265_IDR, Codec.H265)
    assert not is_keyframe(H265_TRAIL, Codec.H265)
    # MPEG-4 Part 2: vop_coding_type in the top two bits after the VOP start code.
    assert is_keyframe(b"\x00\x00\x01\xb0\x01\x00\x00\x01\xb6\x10\x00", Codec.MPEG4)
    assert not is_keyframe(b"\x00\x00\x01\xb6\x50\x00", Codec.MPEG4)
    assert not is_keyframe(b"\x00\x00\x01\xb6", Codec.MPEG4)
    assert not is_keyframe(H264_IDR, Codec.SVAC)
