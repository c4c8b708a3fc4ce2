"""Live start latency on loopback: API call to the first keyframe out at the consumer.

Run on demand:  python bench/bench_live_start.py [runs]

A whole platform runs in this process (SQLite in a temporary directory, the media worker in its
thread). SIPp plays a camera: it registers, and answers each INVITE at once with 200 OK; on
the INVITE it also tells this script the receive port and SSRC of our offer (a UDP datagram
sent with ``socat`` by SIPp's ``<exec>``), and a sender thread here starts streaming a
capture (``tests/fixtures/ps-rtp/ps_rtp_udp.bin``, which starts with a keyframe) to that port
at 25 frames a second, the way a camera starts sending as soon as it has answered. A UDP
consumer is the output of ``POST /api/v1/channels/{id}/play``.

Measured per run: from just before the POST to the arrival at the consumer of the first
packet, which is checked to be the capture's keyframe packet (the relay starts every consumer
at a keyframe); also when the POST returned. The session is deleted (BYE) between runs.
Median and p95 over the runs are printed, with the load average. Goal: under 300 ms.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.conftest import (  # noqa: E402
    DOMAIN,
    PASSWORD,
    SERVER_ID,
    api_client,
    free_port,
    platform_env,
    start_platform,
)
from tests.integration.sipp_device import register_scenario  # noqa: E402

CAMERA = "34020000001320000001"
CAPTURE = ROOT / "tests" / "fixtures" / "ps-rtp" / "ps_rtp_udp.bin"
FRAME_INTERVAL = 0.04
STREAM_SECONDS = 2.0


# On the INVITE: tell the sender our receive port ($2) and SSRC ($4), answer with that SSRC
# (SIPp refuses variables assigned and never used: the whole matches go along too).
_OOC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="camera answers INVITE and starts sending">
  <recv request="INVITE">
    <action>
      <ereg regexp="m=video ([0-9]+)" search_in="body" check_it="true" assign_to="1,2" />
      <ereg regexp="y=([0-9]+)" search_in="body" check_it="true" assign_to="3,4" />
      <exec command="echo [$2] [$4] [$1] [$3] | socat - UDP-SENDTO:127.0.0.1:{notify}" />
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]I[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:{cam}@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o={cam} 0 0 IN IP4 127.0.0.1
      s=Play
      c=IN IP4 127.0.0.1
      t=0 0
      m=video 15060 RTP/AVP 96
      a=sendonly
      a=rtpmap:96 PS/90000
      y=[$4]
      f=

    ]]>
  </send>
  <recv request="ACK" />
  <recv request="BYE" />
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


def load_frames() -> list[list[bytes]]:
    """The capture's packets grouped by RTP timestamp (one frame each)."""
    data = CAPTURE.read_bytes()
    frames: list[list[bytes]] = []
    pos, last_ts = 0, None
    while pos < len(data):
        (size,) = struct.unpack_from(">I", data, pos)
        packet = data[pos + 4 : pos + 4 + size]
        pos += 4 + size
        ts = packet[4:8]
        if ts != last_ts:
            frames.append([])
            last_ts = ts
        frames[-1].append(packet)
    return frames


class Camera(threading.Thread):
    """The camera's media side: streams the capture when SIPp reports an INVITE."""

    def __init__(self, frames: list[list[bytes]]) -> None:
        super().__init__(daemon=True)
        self.frames = frames
        self.notify = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.notify.bind(("127.0.0.1", 0))
        self.notify.settimeout(0.2)
        self.port = self.notify.getsockname()[1]
        self.stopping = False
        self.invites = 0

    def run(self) -> None:
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        while not self.stopping:
            try:
                line = self.notify.recv(100).split()
            except TimeoutError:
                continue
            self.invites += 1
            port, ssrc = int(line[0]), int(line[1])
            dest = ("127.0.0.1", port)
            start = time.monotonic()
            for n, frame in enumerate(self.frames):
                for packet in frame:
                    try:
                        out.sendto(packet[:8] + ssrc.to_bytes(4, "big") + packet[12:], dest)
                    except OSError:
                        pass
                delay = start + (n + 1) * FRAME_INTERVAL - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if time.monotonic() - start > STREAM_SECONDS:
                    break
        out.close()


class Consumer(threading.Thread):
    """A UDP consumer recording when its first packet of each run arrives."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.first: tuple[float, bytes] | None = None
        self.armed = threading.Event()
        self.got = threading.Event()
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if self.armed.is_set() and self.first is None:
                self.first = (time.monotonic(), data)
                self.got.set()

    def arm(self) -> None:
        self.first = None
        self.got.clear()
        self.armed.set()


async def bench(runs: int) -> list[tuple[float, float]]:
    frames = load_frames()
    keyframe_payload = frames[0][0][12:]
    camera, consumer = Camera(frames), Consumer()
    camera.start()
    consumer.start()
    results: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        env = platform_env(
            tmp_path,
            GB28181_DEVICES_CATALOG_ON_REGISTER="false",
            GB28181_MEDIA_LISTEN="127.0.0.1",
            GB28181_MEDIA_IDLE_DELAY="0.1",
            GB28181_MEDIA_STREAM_MODE="UDP",
        )
        platform = await start_platform(env)
        fmt = {
            "server": SERVER_ID,
            "domain": DOMAIN,
            "cam": CAMERA,
            "notify": camera.port,
            "hold_ms": (runs * 4 + 30) * 1000,
        }
        (tmp_path / "camera.xml").write_text(
            register_scenario(CAMERA, SERVER_ID, DOMAIN, hold_ms=int(fmt["hold_ms"]))
        )
        (tmp_path / "camera_ooc.xml").write_text(_OOC.format(**fmt))
        host, port = platform.sip_addr
        sipp = shutil.which("sipp")
        if sipp is None or shutil.which("socat") is None:
            sys.exit("sipp and socat are needed (Debian packages sip-tester, socat)")
        proc = await asyncio.create_subprocess_exec(
            sipp,
            "-sf", str(tmp_path / "camera.xml"),
            "-oocsf", str(tmp_path / "camera_ooc.xml"),
            "-t", "u1", "-i", "127.0.0.1", "-p", str(free_port()),
            "-au", CAMERA, "-ap", PASSWORD, "-m", "1", "-nostdin",
            f"{host}:{port}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=tmp_path,
        )  # fmt: skip
        try:
            assert platform.registrar is not None
            for _ in range(500):
                state = platform.registrar.get(CAMERA)
                if state is not None and state.registered:
                    break
                await asyncio.sleep(0.02)
            else:
                raise BenchError("the SIPp camera did not register")
            async with api_client(platform) as http:
                output = {"addr": "127.0.0.1", "port": consumer.sock.getsockname()[1]}
                for run in range(runs):
                    consumer.arm()
                    t0 = time.monotonic()
                    r = await http.post(
                        f"/api/v1/channels/{CAMERA}/play",
                        json={"output": {**output, "transport": "udp"}},
                    )
                    answered = time.monotonic()
                    if r.status_code != 201:
                        raise BenchError(f"run {run}: play answered {r.status_code} {r.text}")
                    got = await asyncio.to_thread(consumer.got.wait, 5.0)
                    if not got or consumer.first is None:
                        sessions = (await http.get("/api/v1/sessions")).json()
                        raise BenchError(
                            f"run {run}: no media at the consumer in 5 s "
                            f"(INVITEs seen by the camera: {camera.invites}; {sessions})"
                        )
                    at, packet = consumer.first
                    if packet[12:] != keyframe_payload:
                        raise BenchError(f"run {run}: the first packet out is not the keyframe's")
                    results.append((at - t0, answered - t0))
                    consumer.armed.clear()
                    r = await http.delete(f"/api/v1/sessions/{r.json()['id']}")
                    await asyncio.sleep(STREAM_SECONDS + 0.2)  # the camera's stream ends
        finally:
            camera.stopping = consumer.stopping = True
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            try:
                await platform.stop()
            except Exception as exc:  # reported, the figures are still good
                print(f"platform stop: {type(exc).__name__}: {exc}", file=sys.stderr)
    return results


class BenchError(Exception):
    """A run went wrong: the message says how."""


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    load = os.getloadavg()[0]
    results = asyncio.run(bench(runs))
    firsts = sorted(r[0] * 1000 for r in results)
    answers = sorted(r[1] * 1000 for r in results)

    def p95(values: list[float]) -> float:
        return values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]

    print(f"{runs} runs on loopback (load {load:.2f} before, {os.getloadavg()[0]:.2f} after)")
    print(f"{'':34} {'median':>8} {'p95':>8} {'max':>8}")
    print(
        f"{'API call -> first keyframe out ms':34} {statistics.median(firsts):8.1f} "
        f"{p95(firsts):8.1f} {firsts[-1]:8.1f}"
    )
    print(
        f"{'API call -> 201 answered ms':34} {statistics.median(answers):8.1f} "
        f"{p95(answers):8.1f} {answers[-1]:8.1f}"
    )
    print("goal: first keyframe out under 300 ms")


if __name__ == "__main__":
    main()
