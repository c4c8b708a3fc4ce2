"""Test video for the recording tests: PyAV-encoded H.264/H.265 muxed into PS frame by frame."""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

from media.ps import Codec, PsFrame, StreamKind
from media.ps_mux import PsMuxer
from media.rtp import RtpPacketizer

__all__ = ["demux_video", "encode_ps", "rtp_packets"]


@functools.cache
def encode_ps(
    codec: str = "h264", frames: int = 100, fps: int = 25, gop: int = 25, start_pts: int = 90_000
) -> tuple[tuple[bytes, int, bool], ...]:
    """``(ps_bytes, pts, keyframe)`` per video frame: a moving gradient, IDR every ``gop``."""
    encoder = "libx264" if codec == "h264" else "libx265"
    ctx = av.CodecContext.create(encoder, "w")
    ctx.width, ctx.height, ctx.pix_fmt = 160, 96, "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = Fraction(fps, 1)
    ctx.gop_size = gop
    if codec == "h264":
        ctx.options = {
            "preset": "ultrafast",
            "bf": "0",
            "keyint_min": str(gop),
            "sc_threshold": "0",
        }
    else:
        ctx.options = {
            "preset": "ultrafast",
            "x265-params": f"keyint={gop}:min-keyint={gop}:bframes=0:scenecut=0:log-level=none",
        }
    muxer = PsMuxer(codec)
    out: list[tuple[bytes, int, bool]] = []
    step = 90_000 // fps
    base = np.tile(np.arange(160, dtype=np.int32), (96, 1))

    def take(packets: list[av.Packet]) -> None:
        for packet in packets:
            pts = start_pts + len(out) * step
            key = bool(packet.is_keyframe)
            frame = PsFrame(StreamKind.VIDEO, Codec(codec), bytes(packet), pts, pts, key)
            out.append((muxer.mux(frame), pts, key))

    for i in range(frames):
        img = np.stack([(base + i * 3) % 256] * 3, axis=-1).astype(np.uint8)
        picture = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        picture.pts = i
        take(ctx.encode(picture))
    take(ctx.encode(None))
    return tuple(out)


def rtp_packets(frames: tuple[tuple[bytes, int, bool], ...], ssrc: int = 1234) -> Iterator[bytes]:
    """The frames as RTP packets (PT 96, 90 kHz timestamps from the PTS)."""
    packetizer = RtpPacketizer(ssrc)
    for ps, pts, _ in frames:
        yield from packetizer.packetize(ps, pts)


def demux_video(ps: bytes) -> list[tuple[bytes, int | None, bool]]:
    """FFmpeg's view of a PS byte string: ``(data, pts, keyframe)`` per video packet."""
    out = []
    with av.open(io.BytesIO(ps), format="mpeg") as container:
        for packet in container.demux(video=0):
            if packet.size:
                out.append((bytes(packet), packet.pts, bool(packet.is_keyframe)))
    return out
