"""Recording write throughput: MB/s, frames/s and CPU-µs per frame, to segment files on disk.

Run on demand:  python bench/bench_record.py [seconds_of_video] [segment_seconds]

Two streams, each ``seconds_of_video`` long (default 600 s = ten 60-s segments):

* ``fixture``: the ``ps_rtp_udp.bin`` capture (H.264 640x480 25 fps, ~22 kbit/s test pattern,
  an IDR every 2 s), demuxed and re-muxed with continuing PTS so it can be looped;
* ``4mbps``: synthetic H.264-shaped frames at 4 Mbit/s, 25 fps (an 80 KB IDR every 2 s, P
  frames ~18 KB), the bitrate of a typical 1080p camera.

Three measurements per stream:

1. ``writer``: :class:`media.recorder.SegmentWriter` alone, fed whole frames, its file
   operations applied to a temporary directory (the sans-IO core plus file writes);
2. ``pipeline``: RTP parse + :class:`media.frame_assembler.FrameAssembler` + the writer, per
   packet, as the recorder thread does it without the socket;
3. ``thread``: the real :class:`media.recorder.Recorder` thread receiving the RTP packets on
   loopback UDP (sent as fast as the sender can, in bursts); CPU is the recorder thread's own
   (``time.thread_time`` read on that thread), loss is what the assembler counted.

CPU figures are process (or thread) CPU time, so disk waits do not count; MB/s is PS bytes
written per CPU second. fsync happens once per segment (at close), as in production.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from media.frame_assembler import FrameAssembler  # noqa: E402
from media.ps import Codec, PsFrame, StreamKind  # noqa: E402
from media.ps_demux import PsDemuxer  # noqa: E402
from media.ps_mux import PsMuxer  # noqa: E402
from media.recorder import Recorder, SegmentData, SegmentOpened, SegmentWriter  # noqa: E402
from media.rtp import RtpPacket, RtpPacketizer  # noqa: E402

FPS = 25
STEP = 90_000 // FPS
CAPTURE = ROOT / "tests" / "fixtures" / "ps-rtp" / "ps_rtp_udp.bin"


def fixture_frames() -> list[tuple[bytes, bool]]:
    """The capture's video access units: (Annex-B data, keyframe)."""
    data = CAPTURE.read_bytes()
    demuxer = PsDemuxer()
    assembler = FrameAssembler()
    out: list[tuple[bytes, bool]] = []
    pos = 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        for frame in assembler.add(RtpPacket.parse(data[pos + 4 : pos + 4 + size])):
            for ps in demuxer.feed(frame.payload) + demuxer.flush():
                out.append((ps.data, ps.keyframe))
        pos += 4 + size
    first_key = next(i for i, (_, key) in enumerate(out) if key)
    return out[first_key:]


def synthetic_frames() -> list[tuple[bytes, bool]]:
    """One 2-s GOP at 4 Mbit/s: an 80 KB IDR and 49 P frames (random slice bytes)."""
    rnd = os.urandom
    idr = b"\x00\x00\x00\x01\x67\x64\x00\x28" + b"\x00\x00\x00\x01\x68\xee" + b"\x00\x00\x01\x65"
    frames = [(idr + rnd(80_000), True)]
    frames += [(b"\x00\x00\x00\x01\x41" + rnd(18_700), False) for _ in range(49)]
    return frames


def stream(gop: list[tuple[bytes, bool]], seconds: float) -> Iterator[tuple[bytes, int]]:
    """PS frames with continuing PTS for ``seconds`` of video, looping ``gop``."""
    muxer = PsMuxer("h264")
    for n in range(int(seconds * FPS)):
        data, key = gop[n % len(gop)]
        pts = 90_000 + n * STEP
        yield muxer.mux(PsFrame(StreamKind.VIDEO, Codec.H264, data, pts, pts, key)), pts


def run_writer(frames: list[tuple[bytes, int]], root: str, segment: float) -> tuple[float, int]:
    writer = SegmentWriter("34020000001320000001", segment_seconds=segment)
    files: dict[str, object] = {}
    start = time.process_time()
    now = 1_700_000_000.0
    for ps, _ in frames:
        for event in writer.receive_frame(ps, now):
            _apply(event, files, root)
        now += 1 / FPS
    for event in writer.close(now):
        _apply(event, files, root)
    return time.process_time() - start, writer.bytes


def _apply(event: object, files: dict[str, object], root: str) -> None:
    if isinstance(event, SegmentOpened):
        full = os.path.join(root, event.path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        files[event.path] = open(full, "wb", buffering=0)  # noqa: SIM115
    elif isinstance(event, SegmentData):
        files[event.path].write(event.data)  # type: ignore[attr-defined]
    else:
        f = files.pop(event.info.path)  # type: ignore[attr-defined]
        os.fsync(f.fileno())  # type: ignore[attr-defined]
        f.close()  # type: ignore[attr-defined]


def packets_of(frames: list[tuple[bytes, int]]) -> list[bytes]:
    packetizer = RtpPacketizer(200000001)
    out: list[bytes] = []
    for ps, pts in frames:
        out += packetizer.packetize(ps, pts)
    return out


def run_pipeline(packets: list[bytes], root: str, segment: float) -> float:
    writer = SegmentWriter("34020000001320000002", segment_seconds=segment)
    assembler = FrameAssembler(16)
    files: dict[str, object] = {}
    start = time.process_time()
    now = 1_700_000_000.0
    for raw in packets:
        for frame in assembler.add(RtpPacket.parse(raw)):
            now += 1 / FPS
            for event in writer.receive_frame(frame.payload, now):
                _apply(event, files, root)
    for event in writer.close(now):
        _apply(event, files, root)
    return time.process_time() - start


def run_thread(packets: list[bytes], root: str, segment: float) -> tuple[float, float, dict]:
    recorder = Recorder(root, segment_seconds=segment)
    recorder.start()
    try:
        opened = recorder.call(lambda: recorder.open("34020000001320000003"))
        cpu0 = recorder.call(time.thread_time)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((opened["host"], opened["port"]))
        t0 = time.perf_counter()
        for i, raw in enumerate(packets):
            sock.send(raw)
            if i % 64 == 63:
                time.sleep(0.0005)  # let the recorder drain its 4 MB socket buffer
        while recorder.call(lambda: recorder.stats(opened["stream"]))["packets"] < len(packets):
            if time.perf_counter() - t0 > 120:
                break
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        cpu = recorder.call(time.thread_time) - cpu0
        stats = recorder.call(lambda: recorder.close(opened["stream"]))
        sock.close()
    finally:
        recorder.stop()
    return cpu, wall, stats


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 600.0
    segment = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    print(f"{seconds:.0f} s of video per stream, {segment:.0f}-s segments, load {os.getloadavg()}")
    for name, gop in (("fixture", fixture_frames()), ("4mbps", synthetic_frames())):
        frames = list(stream(gop, seconds))
        size = sum(len(ps) for ps, _ in frames)
        n = len(frames)
        packets = packets_of(frames)
        with tempfile.TemporaryDirectory() as root:
            cpu, written = run_writer(frames, root, segment)
            assert written == size, (written, size)
        print(
            f"{name:8} writer   {n} frames {size / 1e6:8.1f} MB: {cpu * 1e6 / n:7.1f} CPU-µs/frame"
            f"  {n / cpu:9.0f} frames/s  {size / cpu / 1e6:7.1f} MB/s"
        )
        with tempfile.TemporaryDirectory() as root:
            cpu = run_pipeline(packets, root, segment)
        print(
            f"{name:8} pipeline {len(packets)} packets: {cpu * 1e6 / n:7.1f} CPU-µs/frame"
            f"  {cpu * 1e6 / len(packets):5.1f} CPU-µs/packet  {n / cpu:9.0f} frames/s"
            f"  {size / cpu / 1e6:7.1f} MB/s"
        )
        with tempfile.TemporaryDirectory() as root:
            cpu, wall, stats = run_thread(packets, root, segment)
        done = stats["frames"]
        print(
            f"{name:8} thread   {done}/{n} frames (lost packets {stats['lost']}):"
            f" {cpu * 1e6 / max(done, 1):7.1f} CPU-µs/frame  {stats['bytes'] / cpu / 1e6:7.1f} MB/s"
            f" per CPU-s, {stats['bytes'] / wall / 1e6:6.1f} MB/s wall"
        )


if __name__ == "__main__":
    main()
