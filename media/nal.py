"""Cheap inspection of video access units: which codec, and is it a keyframe.

Only NAL unit *headers* are read (the byte or two after each Annex-B start code), found with
``bytes.find``; scanning stops at the first picture (VCL) NAL unit, so a P-frame costs one or
two ``find`` calls whatever its size.

Codec sniffing exists because PS program stream maps lie or are missing (notes §8.4, §12
item 13): Keda labels H.265 as H.264, some devices send no PSM at all. Strong evidence is a
parameter set or access unit delimiter whose header is valid in one codec and invalid in the
other (ITU-T H.264 §7.3.1, H.265 §7.3.1.2):

* H.265 VPS/SPS/PPS/AUD: first byte 0x40/0x42/0x44/0x46, second byte 0x01 (layer 0, tid 1).
  Read as H.264, 0x40 is type 0 (unspecified) and 0x46 an SEI with nal_ref_idc != 0.
* H.264 SPS: type 7 followed by a known profile_idc; read as H.265 that is type 51 or a
  VCL type whose second byte is not a plausible layer/tid byte. H.264 AUD: 0x09, which read
  as H.265 sets the top bit of nuh_layer_id (layers >= 32 are not used).

Without strong evidence, an access unit whose every header is a valid H.265 header is taken
as H.265, anything else as H.264 (weak evidence, used only when nothing better is known).
"""

from __future__ import annotations

from media.ps import Codec

__all__ = ["VideoInfo", "inspect_video", "is_keyframe"]

_START = b"\x00\x00\x01"
# NAL units looked at before giving up on finding a picture.
_MAX_NALS = 16
_H264_PROFILES = frozenset(
    (44, 66, 77, 83, 86, 88, 100, 110, 118, 122, 128, 134, 135, 138, 139, 144, 244)
)
_H265_PARAMETER_SETS = frozenset((0x40, 0x42, 0x44, 0x46))
_H265_VALID_TYPES = frozenset((*range(10), *range(16, 22), *range(32, 41)))
_MPEG4_VOP = b"\x00\x00\x01\xb6"

VideoInfo = tuple[Codec, bool, bool]
"""``(codec, keyframe, strong)``: ``strong`` says the codec came from unambiguous headers."""


def _is_picture(first: int, codec: Codec) -> bool:
    if codec is Codec.H265:
        return (first >> 1) & 0x3F < 32
    return 1 <= first & 0x1F <= 5


def _plausible(first: int, second: int, codec: Codec) -> bool:
    if codec is Codec.H265:
        return _h265_plausible(first, second)
    return first & 0x80 == 0


def _headers(data: bytes, codec: Codec) -> list[tuple[int, int]]:
    """Return ``(first, second)`` header bytes of the leading NAL units (second is -1 at end).

    Stops after the first plausible picture NAL unit of ``codec`` (unless ``codec`` is
    UNKNOWN), so the slice data after it is never scanned.
    """
    out: list[tuple[int, int]] = []
    size = len(data)
    known = codec is not Codec.UNKNOWN
    i = data.find(_START)
    while i >= 0 and len(out) < _MAX_NALS:
        j = i + 3
        if j >= size:
            break
        first = data[j]
        out.append((first, data[j + 1] if j + 1 < size else -1))
        if known and _is_picture(first, codec) and _plausible(first, out[-1][1], codec):
            break
        i = data.find(_START, j)
    return out


def _strong_codec(first: int, second: int) -> Codec | None:
    if first in _H265_PARAMETER_SETS and second == 0x01:
        return Codec.H265
    if first & 0x9F == 0x07 and first & 0x60 and second in _H264_PROFILES:
        return Codec.H264
    if first == 0x09:  # H.264 AUD; as H.265 it would need nuh_layer_id >= 32
        return Codec.H264
    return None


def _h265_plausible(first: int, second: int) -> bool:
    return first & 0x81 == 0 and 1 <= second <= 7 and (first >> 1) in _H265_VALID_TYPES


def _first_picture_is_key(headers: list[tuple[int, int]], codec: Codec) -> bool:
    if codec is Codec.H265:
        for first, _ in headers:
            nal_type = (first >> 1) & 0x3F
            if nal_type < 32:
                return 16 <= nal_type <= 23
        return False
    for first, _ in headers:
        nal_type = first & 0x1F
        if 1 <= nal_type <= 5:
            return nal_type == 5
    return False


def inspect_video(data: bytes, hint: Codec = Codec.UNKNOWN) -> VideoInfo:
    """Return ``(codec, keyframe, strong)`` for one H.264/H.265 access unit (Annex-B).

    ``hint`` is the codec believed so far (from the PSM or earlier access units); strong
    evidence in ``data`` overrides it, weak evidence is used only when the hint is UNKNOWN.
    Keyframe means the first picture is an H.264 IDR (type 5) or an H.265 IRAP (16..23).
    """
    headers = _headers(data, hint)
    strong: Codec | None = None
    for first, second in headers:
        strong = _strong_codec(first, second)
        if strong is not None:
            break
    if strong is not None:
        codec = strong
    elif hint is not Codec.UNKNOWN:
        codec = hint
    elif headers and all(_h265_plausible(f, s) for f, s in headers):
        codec = Codec.H265
    else:
        codec = Codec.H264
    if codec is not hint:
        headers = _headers(data, codec)
    return codec, _first_picture_is_key(headers, codec), strong is not None


def is_keyframe(data: bytes, codec: Codec) -> bool:
    """Return True if the access unit ``data`` of ``codec`` starts a decodable sequence.

    H.264 IDR, H.265 IRAP, MPEG-4 Part 2 I-VOP (``vop_coding_type`` 0); False for codecs we
    cannot inspect (SVAC, MPEG-2 video).
    """
    if codec is Codec.H264 or codec is Codec.H265:
        return _first_picture_is_key(_headers(data, codec), codec)
    if codec is Codec.MPEG4:
        i = data.find(_MPEG4_VOP)
        return 0 <= i < len(data) - 4 and data[i + 4] >> 6 == 0
    return False
