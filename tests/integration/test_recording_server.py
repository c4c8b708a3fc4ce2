"""Recording survives ``kill -9`` (issue 4 acceptance).

A real ``gb28181 serve`` subprocess; a SIPp camera registers and answers the INVITE that an
on-demand recording (``POST /api/v1/channels/{id}/record``) sends; the test streams the
``ps_rtp_udp.bin`` capture (6.5 s of H.264, an IDR every 2 s) to the session's receive port
with 2-second segments, waits past the flush interval, and kills the server with SIGKILL.
After a restart (start-up reconciliation), the index matches the files: every row's size and
SHA-256 are its file's, the segments are a byte-exact prefix of the PS that was sent (at most
the frame still held when the server died is lost), each starts at a keyframe, and FFmpeg
(PyAV) demuxes each segment alone, every frame up to its end. Then the restarted server plays
the recording back (``POST /api/v1/channels/{id}/playback``, a download at 8x) to a UDP
consumer: the PS carried by the RTP it receives is the segment files back to back, every frame
through the recovered segment's end.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import av
import httpx
import pytest

from gb28181.config import Config, load_config
from media.frame_assembler import FrameAssembler
from media.rtp import RtpPacket
from media.segments import read_frames

from .conftest import api_client, free_port, platform_env
from .sipp_device import register_scenario, sipp_errors, start_sipp_device
from .test_calls_peers import _OOC, ANSWER_SSRC, CAMERA, load_capture, with_ssrc

pytestmark = pytest.mark.peer

ROOT = Path(__file__).resolve().parents[2]


class ServeProcess:
    """A ``gb28181 serve`` subprocess, shaped like a Platform for :func:`api_client`."""

    def __init__(self, env: Mapping[str, str], cwd: Path) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.config: Config = load_config(None, env=env)
        self.http_port = self.config.http.port
        self.cwd = cwd
        self.proc: asyncio.subprocess.Process | None = None
        self.runs = 0

    async def start(self) -> None:
        self.runs += 1
        log = open(self.cwd / f"serve-{self.runs}.log", "wb")  # noqa: SIM115
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gb28181", "serve",
            cwd=self.cwd, env=self.env, stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        async with api_client(self, timeout=2) as http:  # type: ignore[arg-type]
            for _ in range(300):
                assert self.proc.returncode is None, self.log_tail()
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except OSError:
                    pass
                except Exception as exc:  # httpx connection errors before the bind
                    if "connect" not in type(exc).__name__.lower():
                        raise
                await asyncio.sleep(0.1)
        raise AssertionError(f"server did not become ready: {self.log_tail()}")

    def log_tail(self) -> str:
        path = self.cwd / f"serve-{self.runs}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no shutdown code runs
        await self.proc.wait()

    async def terminate(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def capture_frames() -> list[bytes]:
    """The PS bytes of each RTP frame of the capture, in order."""
    assembler = FrameAssembler()
    frames = []
    for raw in load_capture():
        frames += [f.payload for f in assembler.add(RtpPacket.parse(raw))]
    frames += [f.payload for f in assembler.flush()]
    return frames


def pyav_packets(data: bytes) -> list[tuple[int, bool]]:
    out = []
    with av.open(io.BytesIO(data), format="mpeg") as container:
        for packet in container.demux(video=0):
            if packet.size:
                assert packet.pts is not None
                out.append((packet.pts, bool(packet.is_keyframe)))
    return out


async def test_recording_survives_kill_9(tmp_path: Path) -> None:
    rec_root = tmp_path / "recordings"
    env = platform_env(
        tmp_path,
        GB28181_SIP_PORT=str(free_port()),
        GB28181_HTTP_PORT=str(free_port()),
        GB28181_DEVICES_CATALOG_ON_REGISTER="false",
        GB28181_MEDIA_LISTEN="127.0.0.1",
        GB28181_RECORDING_ROOT=str(rec_root),
        GB28181_RECORDING_SEGMENT_SECONDS="2",
        GB28181_RECORDING_FLUSH_INTERVAL="0.5",
        GB28181_LOG_LEVEL="INFO",
    )
    server = ServeProcess(env, tmp_path)
    await server.start()
    fmt = {
        "server": env.get("GB28181_SIP_ID", "34020000002000000001"),
        "domain": "3402000000",
        "cam": CAMERA,
        "ssrc": ANSWER_SSRC,
        "media_port": 15060,
        "proto": "RTP/AVP",
        "setup": "",
    }

    class _Addr:
        sip_addr = ("127.0.0.1", int(env["GB28181_SIP_PORT"]))

    camera = await start_sipp_device(
        _Addr(),  # type: ignore[arg-type]
        tmp_path,
        CAMERA,
        register_scenario(CAMERA, str(fmt["server"]), str(fmt["domain"]), hold_ms=90000),
        _OOC.format(**fmt),
        timeout=120,
    )
    sender = None
    try:
        async with api_client(server) as http:  # type: ignore[arg-type]
            for _ in range(300):
                r = await http.get(f"/api/v1/devices/{CAMERA}")
                if r.status_code == 200 and r.json().get("registered"):
                    break
                assert camera.returncode is None, sipp_errors(tmp_path)
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the camera did not register")

            r = await http.post(f"/api/v1/channels/{CAMERA}/record", json={"duration": 600})
            assert r.status_code == 201, r.text
            assert r.json()["state"] == "recording"
            r = await http.get("/api/v1/sessions")
            [session] = r.json()["items"]
            port = session["receive"]["port"]

            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sender.connect(("127.0.0.1", port))
            for n, packet in enumerate(load_capture()):
                sender.send(with_ssrc(packet, int(ANSWER_SSRC)))
                if n % 2:
                    await asyncio.sleep(0.01)
            # Past the flush interval: everything but the frame the recorder still holds
            # (it ends when the next one starts) has been written to the OS.
            for _ in range(100):
                r = await http.get("/api/v1/recordings", params={"channel": CAMERA})
                if len(r.json()["items"]) == 4:
                    break
                await asyncio.sleep(0.05)
            before = r.json()["items"]
            assert [i["state"] for i in before] == ["closed", "closed", "closed", "open"]
            await asyncio.sleep(1.5)

        await server.kill()
        await server.start()

        async with api_client(server) as http:  # type: ignore[arg-type]
            r = await http.get("/api/v1/recordings", params={"channel": CAMERA})
            assert r.status_code == 200, r.text
            rows = r.json()["items"]
            assert [row["id"] for row in rows] == [i["id"] for i in before]
            assert [row["state"] for row in rows] == ["closed", "closed", "closed", "recovered"]
            r = await http.get(f"/api/v1/recordings/{rows[0]['id']}/file")
            assert r.status_code == 200
            assert r.content == (rec_root / rows[0]["path"]).read_bytes()

        frames = capture_frames()
        sent = b"".join(frames)
        recorded = b""
        on_disk = sorted(str(p.relative_to(rec_root)) for p in rec_root.rglob("*.ps"))
        assert on_disk == sorted(row["path"] for row in rows)
        total_frames = 0
        for row in rows:
            data = (rec_root / row["path"]).read_bytes()
            assert row["bytes"] == len(data) > 0
            assert row["sha256"] == hashlib.sha256(data).hexdigest()
            packets = pyav_packets(data)
            groups = list(read_frames(rec_root / row["path"]))
            assert len(packets) == len(groups) and packets[0][1], row["path"]
            assert row["keyframes"][0][1] == 0
            # Every frame demuxes, up to the end the index gives.
            span = (packets[-1][0] - packets[0][0]) / 90000
            assert span < row_duration(row) <= span + 0.05
            total_frames += len(packets)
            recorded += data
        assert sent.startswith(recorded)
        assert len(frames) - 1 <= total_frames <= len(frames)

        # Playback works up to the last flushed second: the restarted server plays the recovered
        # recording (downloaded at 8x) to a UDP consumer, PS over RTP, and the PS that arrives is
        # the segment files back to back, every frame of them, through the recovered one's end.
        consumer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        consumer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        consumer.bind(("127.0.0.1", 0))
        consumer.setblocking(False)
        try:
            async with api_client(server) as http:  # type: ignore[arg-type]
                r = await http.get(
                    f"/api/v1/channels/{CAMERA}/records",
                    params={"start": 0, "end": time.time() + 3600, "source": "platform"},
                )
                assert r.status_code == 200, r.text
                records = r.json()["items"]
                assert [i["id"] for i in records] == [row["id"] for row in rows]
                # A row starts when its first frame arrived and lasts its media duration; the
                # capture went in faster than real time, so the rows overlap and the recovered
                # one is not the one that ends last: the range ends at the latest end.
                end = max(i["end"] for i in records)
                assert records[-1]["end"] <= end
                output = {
                    "addr": "127.0.0.1",
                    "port": consumer.getsockname()[1],
                    "transport": "udp",
                }
                r = await http.post(
                    f"/api/v1/channels/{CAMERA}/playback",
                    json={
                        "start": records[0]["start"],
                        "end": end,
                        "source": "platform",
                        "download": True,
                        "speed": 8,
                        "output": output,
                    },
                )
                assert r.status_code == 201, r.text
                playback = r.json()
                received = await receive_until_ended(http, consumer, playback["id"])
        finally:
            consumer.close()
        replayed = [RtpPacket.parse(p) for p in received]
        assert {p.payload_type for p in replayed} == {96}
        assert len({p.ssrc for p in replayed}) == 1
        seqs = [p.sequence_number for p in replayed]
        assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs)), seqs
        ps = b"".join(p.payload for p in replayed)
        assert ps == recorded
        assert sum(p.marker for p in replayed) == total_frames
        assert pyav_packets(ps) == pyav_packets(recorded)
        assert len(pyav_packets(ps)) == total_frames
    finally:
        if sender is not None:
            sender.close()
        await server.terminate()
        if camera.returncode is None:
            camera.kill()
            await camera.wait()


async def receive_until_ended(
    http: httpx.AsyncClient, sock: socket.socket, session_id: str, timeout: float = 30.0
) -> list[bytes]:
    """Every datagram ``sock`` receives until the playback session ends by itself (404)."""
    packets: list[bytes] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    ended = False
    while True:
        try:
            packets.append(sock.recv(65536))
            continue
        except BlockingIOError:
            pass
        if ended:  # drained after the end
            return packets
        assert loop.time() < deadline, "the playback did not end at the end of the recording"
        r = await http.get(f"/api/v1/playback/{session_id}")
        ended = r.status_code == 404
        if not ended:
            await asyncio.sleep(0.05)


def row_duration(row: dict[str, object]) -> float:
    duration = row["duration"]
    assert isinstance(duration, int | float)
    return float(duration)
