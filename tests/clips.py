"""Test video for the playback tests: encoded with PyAV, muxed to PS, judged by PyAV.

``encode_clip`` makes a short H.264 or H.265 clip (no B-frames, a keyframe every ``gop``
frames) as :class:`media.ps.PsFrame` access units; ``write_segment`` writes them as a recording
segment file (one PS pack group per frame, as the recorder stores them) and returns the index
data; ``demux_video`` is the judge: what FFmpeg reads back, frame by frame.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from media.ps import Codec, PsFrame, StreamKind
from media.ps_mux import PsMuxer

PTS_BASE = 90000
FRAME_TICKS = 3600  # 25 fps at 90 kHz


def encode_clip(
    codec: str, count: int, *, width: int = 160, height: int = 96, gop: int = 10
) -> list[PsFrame]:
    """Encode ``count`` frames with ``codec`` (``h264`` or ``h265``); return the access units."""
    name = "libx265" if codec == "h265" else "libx264"
    context = av.CodecContext.create(name, "w")
    context.width, context.height = width, height
    context.pix_fmt = "yuv420p"
    context.time_base = Fraction(1, 90000)
    context.framerate = Fraction(25)
    context.gop_size = gop
    context.max_b_frames = 0
    if name == "libx265":
        context.options = {
            "x265-params": f"log-level=none:bframes=0:keyint={gop}:min-keyint={gop}:scenecut=0"
        }
    else:
        context.options = {"preset": "ultrafast", "bf": "0", "sc_threshold": "0"}
    packets = []
    for i in range(count):
        image = np.full((height, width, 3), (i * 9) % 256, dtype=np.uint8)
        image[:, (i * 4) % width :] = 40
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i * FRAME_TICKS
        packets += context.encode(frame)
    packets += context.encode(None)
    target = Codec.H265 if codec == "h265" else Codec.H264
    out = []
    for packet in packets:
        assert packet.pts is not None
        out.append(
            PsFrame(
                StreamKind.VIDEO,
                target,
                bytes(packet),
                packet.pts + PTS_BASE,
                (packet.dts if packet.dts is not None else packet.pts) + PTS_BASE,
                packet.is_keyframe,
            )
        )
    return out


def mux(frames: list[PsFrame]) -> list[bytes]:
    """The PS bytes of each frame (one pack group each)."""
    muxer = PsMuxer(str(frames[0].codec))
    return [muxer.mux(f) for f in frames]


def write_segment(
    path: Path, frames: list[PsFrame]
) -> tuple[int, tuple[tuple[float, int], ...], float]:
    """Write ``frames`` as a segment file; return (bytes, keyframes index, duration seconds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = mux(frames)
    keyframes = []
    offset = 0
    first = frames[0].pts or 0
    for frame, chunk in zip(frames, chunks, strict=True):
        if frame.keyframe:
            keyframes.append((((frame.pts or 0) - first) / 90000, offset))
        offset += len(chunk)
    path.write_bytes(b"".join(chunks))
    return offset, tuple(keyframes), len(frames) * FRAME_TICKS / 90000


def demux_video(ps: bytes) -> list[tuple[int | None, bytes]]:
    """FFmpeg's view of a PS stream: ``(pts, bytes)`` of each video packet, in order."""
    out = []
    with av.open(io.BytesIO(ps), format="mpeg") as container:
        for packet in container.demux(video=0):
            if packet.size:
                out.append((packet.pts, bytes(packet)))
    return out
