"""A JPEG of the first keyframe in a piece of GB/T 28181 PS (issue 4: session snapshots).

The relay's GOP cache starts at the last keyframe (notes §8.3: parameter sets precede every
IDR), so demuxing its RTP payloads and decoding the first H.264 IDR / H.265 IRAP access unit
gives the newest picture a viewer could start from. Only that one access unit is decoded:
the decoder is flushed right after it, so B-frame reordering delay does not matter and no
later frame is needed. The JPEG comes from FFmpeg's own MJPEG encoder (via PyAV), so no
imaging library is needed.

Decoding takes milliseconds of CPU: callers on an event loop run it in a thread
(``asyncio.to_thread``).
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

import av

from media.ps import Codec, PsFrame, StreamKind
from media.ps_demux import PsDemuxer

__all__ = ["DEFAULT_QUALITY", "SnapshotError", "find_keyframe", "keyframe_jpeg"]

#: JPEG quality on the familiar 1 (smallest) .. 100 (best) scale.
DEFAULT_QUALITY = 85

#: FFmpeg decoder names for the video codecs a snapshot can be taken of.
_DECODERS = {Codec.H264: "h264", Codec.H265: "hevc"}

#: Bound on the PS bytes examined: the relay's GOP cache is bounded by 8 MiB.
MAX_INPUT_BYTES = 16 * 1024 * 1024


class SnapshotError(Exception):
    """No decodable keyframe in the input, or FFmpeg failed to decode or encode it."""


def find_keyframe(ps: bytes | Iterable[bytes]) -> PsFrame:
    """The first H.264/H.265 keyframe access unit in ``ps``.

    :param ps: program stream bytes, or RTP payloads in order.
    :raises SnapshotError: no such access unit (within :data:`MAX_INPUT_BYTES`).
    """
    demuxer = PsDemuxer()
    chunks: Iterable[bytes] = (ps,) if isinstance(ps, bytes) else ps
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > MAX_INPUT_BYTES:
            break
        frame = _first_keyframe(demuxer.feed(chunk))
        if frame is not None:
            return frame
    frame = _first_keyframe(demuxer.flush())
    if frame is None:
        raise SnapshotError("no keyframe yet")
    return frame


def keyframe_jpeg(ps: bytes | Iterable[bytes], *, quality: int = DEFAULT_QUALITY) -> bytes:
    """Decode the first keyframe of ``ps`` (see :func:`find_keyframe`) and encode it as JPEG.

    :param quality: 1..100; mapped onto MJPEG's quantiser scale 31..2.
    :raises SnapshotError: no keyframe, or FFmpeg rejected it.
    :raises ValueError: ``quality`` out of range.
    """
    if not 1 <= quality <= 100:
        raise ValueError("quality must be 1..100")
    keyframe = find_keyframe(ps)
    try:
        picture = _decode(_DECODERS[keyframe.codec], keyframe.data)
        return _encode_jpeg(picture, quality)
    except av.FFmpegError as exc:
        raise SnapshotError(f"{keyframe.codec} keyframe: {exc}") from exc


def _first_keyframe(frames: list[PsFrame]) -> PsFrame | None:
    for frame in frames:
        if frame.kind is StreamKind.VIDEO and frame.keyframe and frame.codec in _DECODERS:
            return frame
    return None


def _decode(decoder: str, data: bytes) -> av.VideoFrame:
    ctx = av.CodecContext.create(decoder, "r")
    assert isinstance(ctx, av.VideoCodecContext)
    # Flushing right after the one access unit returns its picture despite reorder delay.
    for frame in [*ctx.decode(av.Packet(data)), *ctx.decode(None)]:
        if isinstance(frame, av.VideoFrame):
            return frame
    raise SnapshotError(f"{decoder} decoder returned no picture for the keyframe")


def _encode_jpeg(picture: av.VideoFrame, quality: int) -> bytes:
    qscale = str(round(2 + (100 - quality) * 29 / 99))
    enc = av.CodecContext.create("mjpeg", "w")
    assert isinstance(enc, av.VideoCodecContext)
    enc.width = picture.width
    enc.height = picture.height
    enc.pix_fmt = "yuvj420p"  # full-range 4:2:0, what JPEG viewers expect
    enc.time_base = Fraction(1, 25)
    enc.options = {"qmin": qscale, "qmax": qscale}
    frame = picture.reformat(format="yuvj420p")
    frame.pts = 0
    out = b"".join(bytes(p) for p in [*enc.encode(frame), *enc.encode(None)])
    if not out.startswith(b"\xff\xd8"):
        raise SnapshotError("mjpeg encoder produced no image")
    return out
