"""Cascade start latency on loopback: the top platform's play to the first keyframe out at the
top, with the camera two levels down.

Run on demand:  python bench/bench_cascade.py [runs]

Three platforms run in this process (``tests/integration/cascade_helpers.py``: province <-
city <- district, each registered to the next through ``[[upstream]]``, SQLite each, one media
worker thread each, all UDP). SIPp plays an NVR registered at the district and answers its
INVITE at once (with its own ``y=``). Per run: ``POST /api/v1/channels/{id}/play`` at the
province with a UDP consumer as output; the province INVITEs the city, whose inbound side
INVITEs the district, whose inbound side INVITEs the NVR. As soon as the district's session
toward the NVR plays (polled every millisecond, which adds at most that), a sender thread
streams the capture (``tests/fixtures/ps-rtp/ps_rtp_udp.bin``, starting with a keyframe) to
the district's receive port at 25 frames a second, the way a camera starts sending once it has
answered. Measured from just before the POST: the first packet at the consumer (checked to be
the keyframe's first packet) and the keyframe complete (its marker packet). The session is
deleted between runs (BYE down the chain). Median and p95 are printed with the load average.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.cascade_helpers import (  # noqa: E402
    ANSWER_SSRC,
    CAMERA,
    DISTRICT,
    NVR,
    channel_name,
    registered,
    start_chain,
    start_nvr,
)
from tests.integration.conftest import api_client  # noqa: E402
from tests.integration.test_calls_peers import load_capture  # noqa: E402

FRAME_INTERVAL = 0.04
STREAM_SECONDS = 1.5


def frames_of(packets: list[bytes]) -> list[list[bytes]]:
    """Packets grouped by RTP timestamp (one frame each)."""
    frames: list[list[bytes]] = []
    last = None
    for packet in packets:
        if packet[4:8] != last:
            frames.append([])
            last = packet[4:8]
        frames[-1].append(packet)
    return frames


class Camera(threading.Thread):
    """Streams the capture to ``port`` each time it is started with :meth:`play`."""

    def __init__(self, frames: list[list[bytes]]) -> None:
        super().__init__(daemon=True)
        self.frames = frames
        self.go = threading.Event()
        self.port = 0
        self.stopping = False

    def play(self, port: int) -> None:
        self.port = port
        self.go.set()

    def run(self) -> None:
        import socket

        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ssrc = int(ANSWER_SSRC).to_bytes(4, "big")
        while not self.stopping:
            if not self.go.wait(0.1):
                continue
            self.go.clear()
            dest = ("127.0.0.1", self.port)
            start = time.monotonic()
            for n, frame in enumerate(self.frames):
                for packet in frame:
                    try:
                        out.sendto(packet[:8] + ssrc + packet[12:], dest)
                    except OSError:
                        pass
                delay = start + (n + 1) * FRAME_INTERVAL - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if time.monotonic() - start > STREAM_SECONDS or self.go.is_set():
                    break
        out.close()


class Consumer(threading.Thread):
    """Records the arrival of the first packet and of the first frame's marker packet."""

    def __init__(self) -> None:
        import socket

        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.first: tuple[float, bytes] | None = None
        self.complete: float | None = None
        self.done = threading.Event()
        self.armed = False
        self.stopping = False

    def arm(self) -> None:
        self.first, self.complete = None, None
        self.done.clear()
        self.armed = True

    def run(self) -> None:
        while not self.stopping:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not self.armed:
                continue
            now = time.monotonic()
            if self.first is None:
                self.first = (now, data)
            if self.complete is None and data[4:8] == self.first[1][4:8] and data[1] & 0x80:
                self.complete = now
                self.armed = False
                self.done.set()


async def bench(runs: int) -> list[tuple[float, float, float]]:
    frames = frames_of(load_capture())
    keyframe_payload = frames[0][0][12:]
    camera, consumer = Camera(frames), Consumer()
    camera.start()
    consumer.start()
    results: list[tuple[float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        chain = await start_chain(root)
        province, district = chain.province, chain.district
        nvr = await start_nvr(district, root)
        try:
            for _ in range(1500):
                if registered(district, NVR) and channel_name(province, "44010000002000000001"):
                    break
                await asyncio.sleep(0.02)
            else:
                sys.exit("the chain did not come up (NVR registered, camera known at the top)")
            assert district.calls is not None
            async with api_client(province, timeout=30) as http:
                output = {"addr": "127.0.0.1", "port": consumer.sock.getsockname()[1]}
                for run in range(runs):
                    consumer.arm()
                    t0 = time.monotonic()
                    post = asyncio.create_task(
                        http.post(
                            f"/api/v1/channels/{CAMERA}/play",
                            json={"output": {**output, "transport": "udp"}},
                        )
                    )
                    while True:  # the camera sends once its INVITE is answered
                        bottom = next(iter(district.calls.sessions.values()), None)
                        if bottom is not None and bottom.state == "playing":
                            camera.play(bottom.port)
                            break
                        if post.done():
                            break
                        await asyncio.sleep(0.001)
                    r = await post
                    t_post = time.monotonic() - t0
                    if r.status_code != 201:
                        sys.exit(f"run {run}: play answered {r.status_code} {r.text}")
                    if not await asyncio.to_thread(consumer.done.wait, 10.0):
                        sys.exit(f"run {run}: no keyframe at the consumer")
                    assert consumer.first is not None and consumer.complete is not None
                    first_at, data = consumer.first
                    if data[12:] != keyframe_payload:
                        sys.exit(f"run {run}: the first packet out is not the keyframe's")
                    results.append((first_at - t0, consumer.complete - t0, t_post))
                    r = await http.delete(f"/api/v1/sessions/{r.json()['id']}")
                    for _ in range(500):  # BYE down the chain, idle delays included
                        if not district.calls.sessions:
                            break
                        await asyncio.sleep(0.01)
                    await asyncio.sleep(0.2)
        finally:
            camera.stopping = consumer.stopping = True
            if nvr.returncode is None:
                nvr.kill()
                await nvr.wait()
            await chain.stop()
    return results


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    results = asyncio.run(bench(runs))

    def p95(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    first = [r[0] * 1000 for r in results]
    whole = [r[1] * 1000 for r in results]
    post = [r[2] * 1000 for r in results]
    print(f"cascade start, camera two levels down ({DISTRICT} <- NVR), {len(results)} runs")
    print(
        f"  first keyframe packet at the top: median {statistics.median(first):.1f} ms, "
        f"p95 {p95(first):.1f} ms"
    )
    print(
        f"  first keyframe complete at the top: median {statistics.median(whole):.1f} ms, "
        f"p95 {p95(whole):.1f} ms"
    )
    print(f"  POST /play answered: median {statistics.median(post):.1f} ms, p95 {p95(post):.1f} ms")
    print(f"  load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
