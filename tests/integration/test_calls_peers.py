"""Live play over real sockets against SIPp playing a camera.

The SIPp camera registers (digest) and waits. Our INVITE arrives on a new Call-ID, so the
out-of-call scenario (``-oocsf``) takes it: it answers 200 OK with an SDP whose ``y=`` is not
the one we offered (the device habit the receiver must re-key for), takes the ACK, and later
answers our BYE. The test plays the camera's part on the media side too, in each stream mode
(UDP, TCP passive: the camera connects, TCP active: the platform connects to the answer's
port): it streams the ``ps_rtp_udp.bin`` capture with the answered SSRC, a UDP consumer added
through the API receives the relayed packets, and FFmpeg (PyAV) decodes every frame; a
snapshot of the latest keyframe comes back as a JPEG. Packets with a foreign SSRC sent to the
same port are dropped and counted. Over UDP, a camera that loses and reorders packets: the loss
and reordering are counted exactly, and every frame that arrived whole is relayed intact.
"""

from __future__ import annotations

import asyncio
import io
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import av
import pytest

from gb28181.server import Platform
from media.frame_assembler import FrameAssembler
from media.rtp import RtpPacket
from tests.helpers import sipp_path

from .conftest import (
    DOMAIN,
    PASSWORD,
    SERVER_ID,
    api_client,
    free_port,
    platform_env,
    start_platform,
)
from .sipp_device import register_scenario

pytestmark = pytest.mark.peer

CAMERA = "34020000001320000001"
ANSWER_SSRC = "0200000099"
CAPTURE = Path(__file__).resolve().parent.parent / "fixtures" / "ps-rtp" / "ps_rtp_udp.bin"
FRAMES = 162


_OOC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="camera answers INVITE">
  <recv request="INVITE" />
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
      m=video {media_port} {proto} 96
      a=sendonly{setup}
      a=rtpmap:96 PS/90000
      y={ssrc}
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


def load_capture() -> list[bytes]:
    data = CAPTURE.read_bytes()
    packets, pos = [], 0
    while pos < len(data):
        (size,) = struct.unpack_from(">I", data, pos)
        packets.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return packets


def with_ssrc(packet: bytes, ssrc: int) -> bytes:
    return packet[:8] + struct.pack(">I", ssrc) + packet[12:]


def decoded_frames(packets: list[bytes]) -> int:
    """Frames FFmpeg decodes from the PS carried by ``packets`` (ordered by sequence)."""
    ordered = sorted(packets, key=lambda p: struct.unpack_from(">H", p, 2)[0])
    ps = b"".join(p[12:] for p in ordered)
    frames = 0
    with av.open(io.BytesIO(ps), mode="r", format="mpeg") as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size:
                frames += len(packet.decode())
    return frames


@pytest.fixture(params=["UDP", "TCP-PASSIVE", "TCP-ACTIVE"])
async def media_platform(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Platform]:
    env = platform_env(
        tmp_path,
        GB28181_DEVICES_CATALOG_ON_REGISTER="false",
        GB28181_MEDIA_LISTEN="127.0.0.1",
        GB28181_MEDIA_IDLE_DELAY="0.2",
        GB28181_MEDIA_STREAM_MODE=request.param,
    )
    p = await start_platform(env)
    try:
        yield p
    finally:
        await p.stop()


class CameraMedia:
    """The camera's media side: UDP datagrams, or RFC 4571 frames over TCP (notes §6.4).

    TCP passive: the camera connects to our receive port. TCP active: the camera listens on the
    port of its SDP answer and the platform connects.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.listener: socket.socket | None = None
        self.sock: socket.socket | None = None
        self.port = 15060
        if mode == "TCP-ACTIVE":
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.bind(("127.0.0.1", 0))
            self.listener.listen(1)
            self.listener.setblocking(False)
            self.port = self.listener.getsockname()[1]

    def answer(self) -> dict[str, object]:
        if self.mode == "UDP":
            return {"media_port": self.port, "proto": "RTP/AVP", "setup": ""}
        setup = "active" if self.mode == "TCP-PASSIVE" else "passive"
        return {
            "media_port": self.port,
            "proto": "TCP/RTP/AVP",
            "setup": f"\n      a=setup:{setup}\n      a=connection:new",
        }

    async def open(self, rtp_port: int) -> None:
        if self.mode == "UDP":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.connect(("127.0.0.1", rtp_port))
        elif self.mode == "TCP-PASSIVE":
            self.sock = socket.create_connection(("127.0.0.1", rtp_port), timeout=5)
        else:
            assert self.listener is not None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while True:
                try:
                    self.sock, _ = self.listener.accept()
                    break
                except BlockingIOError:
                    assert loop.time() < deadline, "the platform did not connect"
                    await asyncio.sleep(0.01)
            self.sock.setblocking(True)

    def send(self, packet: bytes) -> None:
        assert self.sock is not None
        if self.mode == "UDP":
            self.sock.send(packet)
        else:
            self.sock.sendall(struct.pack(">H", len(packet)) + packet)

    def close(self) -> None:
        for sock in (self.sock, self.listener):
            if sock is not None:
                sock.close()


async def wait_registered(platform: Platform, proc: asyncio.subprocess.Process) -> None:
    assert platform.registrar is not None
    for _ in range(500):
        st = platform.registrar.get(CAMERA)
        if st is not None and st.registered:
            return
        assert proc.returncode is None, "SIPp ended before registering"
        await asyncio.sleep(0.02)
    raise AssertionError("the camera did not register")


async def test_sipp_camera_play_relays_the_capture_to_a_consumer(
    media_platform: Platform, tmp_path: Path
) -> None:
    platform = media_platform
    mode = platform.config.media.stream_mode
    camera = CameraMedia(mode)
    proc = await start_sipp_camera(platform, tmp_path, camera)
    consumer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    consumer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    consumer.bind(("127.0.0.1", 0))
    consumer.setblocking(False)
    try:
        await wait_registered(platform, proc)
        async with api_client(platform) as http:
            output = {"addr": "127.0.0.1", "port": consumer.getsockname()[1], "transport": "udp"}
            r = await http.post(f"/api/v1/channels/{CAMERA}/play", json={"output": output})
            assert r.status_code == 201, r.text
            session = r.json()
            assert session["channel"] == CAMERA
            assert session["ssrc"] == f"0{DOMAIN[3:8]}0001"
            assert session["answer_ssrc"] == ANSWER_SSRC
            assert session["outputs"][0]["port"] == output["port"]
            assert session["stream_mode"] == mode
            await camera.open(session["receive"]["port"])

            # A second viewer joins the running stream: no second INVITE.
            r2 = await http.post(f"/api/v1/channels/{CAMERA}/play", json={})
            assert r2.status_code == 201, r2.text
            assert r2.json()["id"] == session["id"]
            assert r2.json()["consumers"] == 2

            packets = load_capture()
            answered = int(ANSWER_SSRC)
            for n, packet in enumerate(packets):
                camera.send(with_ssrc(packet, answered))
                if n % 8 == 7:
                    await asyncio.sleep(0.002)
            # A foreign SSRC on the same port, from the same source: dropped, counted.
            for packet in packets[:5]:
                camera.send(with_ssrc(packet, 0x0BADF00D))

            received: list[bytes] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while len(received) < len(packets) and loop.time() < deadline:
                try:
                    received.append(consumer.recv(65536))
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            assert len(received) == len(packets)
            assert decoded_frames(received) == FRAMES

            # A snapshot of the latest keyframe (the GOP cache) decodes back to the picture size.
            r = await http.get(f"/api/v1/sessions/{session['id']}/snapshot")
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
            jpeg_decoder = av.CodecContext.create("mjpeg", "r")
            assert isinstance(jpeg_decoder, av.VideoCodecContext)
            pictures = jpeg_decoder.decode(av.Packet(r.content))
            assert [(p.width, p.height) for p in pictures] == [(640, 480)]

            stats: dict[str, object] = {}
            for _ in range(200):
                r = await http.get("/api/v1/sessions")
                assert r.status_code == 200
                stats = r.json()["items"][0]["stats"]
                drops = stats["drops"]
                assert isinstance(drops, dict)
                if drops.get("ssrc", 0) >= 5:
                    break
                await asyncio.sleep(0.02)
            assert stats["forwarded"] == len(packets)
            assert isinstance(stats["drops"], dict) and stats["drops"]["ssrc"] == 5

            r = await http.delete(f"/api/v1/sessions/{session['id']}")
            assert r.status_code == 204
            r = await http.get("/api/v1/sessions")
            assert r.json()["total"] == 0
        # DELETE returned after the BYE was answered; SIPp logged both, and nothing unexpected.
        messages = (tmp_path / "sipp_messages.log").read_text(errors="replace")
        assert "BYE sip:" in messages
        assert "ACK sip:" in messages
        errors = tmp_path / "sipp_errors.log"
        log = errors.read_text(errors="replace") if errors.exists() else ""
        assert "unexpected" not in log.lower(), log[-2000:]
    finally:
        consumer.close()
        camera.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# Loss and reordering injected by the camera (indexes into the capture, never the first or the
# last packet, apart from each other). 57 is inside a 6-packet keyframe; the rest are frames of
# one packet. Each swap sends packet i+1 before packet i: 1 late packet, well inside the
# relay's misorder window (100); one of them is inside a keyframe.
DROPPED = (20, 57, 90, 140)
SWAPPED = (2, 30, 100, 150)


@pytest.fixture
async def udp_platform(tmp_path: Path) -> AsyncIterator[Platform]:
    env = platform_env(
        tmp_path,
        GB28181_DEVICES_CATALOG_ON_REGISTER="false",
        GB28181_MEDIA_LISTEN="127.0.0.1",
        GB28181_MEDIA_IDLE_DELAY="0.2",
        GB28181_MEDIA_STREAM_MODE="UDP",
    )
    p = await start_platform(env)
    try:
        yield p
    finally:
        await p.stop()


async def start_sipp_camera(
    platform: Platform, tmp_path: Path, camera: CameraMedia
) -> asyncio.subprocess.Process:
    """SIPp as the camera: registers, answers our INVITE with ``camera``'s media port."""
    fmt: dict[str, object] = {
        "server": SERVER_ID,
        "domain": DOMAIN,
        "cam": CAMERA,
        "ssrc": ANSWER_SSRC,
    }
    fmt.update(camera.answer())
    main = tmp_path / "camera.xml"
    main.write_text(register_scenario(CAMERA, SERVER_ID, DOMAIN))
    ooc = tmp_path / "camera_ooc.xml"
    ooc.write_text(_OOC.format(**fmt))
    host, port = platform.sip_addr
    return await asyncio.create_subprocess_exec(
        sipp_path(),
        "-sf", str(main),
        "-oocsf", str(ooc),
        "-t", "u1",
        "-i", "127.0.0.1",
        "-p", str(free_port()),
        "-au", CAMERA,
        "-ap", PASSWORD,
        "-m", "1",
        "-timeout", "40",
        "-nostdin",
        "-trace_err",
        "-trace_msg",
        "-error_file", str(tmp_path / "sipp_errors.log"),
        "-message_file", str(tmp_path / "sipp_messages.log"),
        f"{host}:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=tmp_path,
    )  # fmt: skip


def lossy_order(count: int) -> list[int]:
    """The capture's packet indexes in the order the lossy camera sends them."""
    order = [i for i in range(count) if i not in DROPPED]
    for i in SWAPPED:
        at = order.index(i)
        assert order[at + 1] == i + 1
        order[at], order[at + 1] = i + 1, i
    return order


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_sipp_camera_udp_loss_and_reordering_are_counted_and_whole_frames_relayed(
    udp_platform: Platform, tmp_path: Path
) -> None:
    platform = udp_platform
    camera = CameraMedia("UDP")
    proc = await start_sipp_camera(platform, tmp_path, camera)
    consumer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    consumer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    consumer.bind(("127.0.0.1", 0))
    consumer.setblocking(False)
    packets = load_capture()
    order = lossy_order(len(packets))
    try:
        await wait_registered(platform, proc)
        async with api_client(platform) as http:
            output = {"addr": "127.0.0.1", "port": consumer.getsockname()[1], "transport": "udp"}
            r = await http.post(f"/api/v1/channels/{CAMERA}/play", json={"output": output})
            assert r.status_code == 201, r.text
            session = r.json()
            await camera.open(session["receive"]["port"])
            answered = int(ANSWER_SSRC)
            for n, index in enumerate(order):
                camera.send(with_ssrc(packets[index], answered))
                if n % 8 == 7:
                    await asyncio.sleep(0.002)

            received: list[bytes] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while len(received) < len(order) and loop.time() < deadline:
                try:
                    received.append(consumer.recv(65536))
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            assert len(received) == len(order)

            # (a) The session's counters: exactly what was injected. Read live from the worker;
            # poll until every sent packet is accounted for.
            stats: dict[str, object] = {}
            deadline = loop.time() + 10
            while loop.time() < deadline:
                r = await http.get(f"/api/v1/sessions/{session['id']}")
                assert r.status_code == 200, r.text
                stats = r.json()["stats"] or {}
                if stats.get("packets") == len(order):
                    break
                await asyncio.sleep(0.05)
            assert stats.get("packets") == len(order), stats
            assert stats["forwarded"] == len(order)
            assert stats["lost"] == len(DROPPED)
            assert stats["reordered"] == len(SWAPPED)
            assert stats["duplicates"] == 0
            assert stats["restarts"] == 0
            # The same totals reach /metrics (counters, ``_total``) at the next sample of the
            # worker's counters (every 5 s).
            deadline = loop.time() + 15
            while True:
                r = await http.get("/metrics")
                assert r.status_code == 200
                if metric(r.text, "gb28181_media_packets_total") >= len(order):
                    break
                assert loop.time() < deadline, "the media counters were not sampled"
                await asyncio.sleep(0.2)
            assert metric(r.text, "gb28181_media_packets_lost_total") == len(DROPPED)
            assert metric(r.text, "gb28181_media_packets_reordered_total") == len(SWAPPED)

            r = await http.delete(f"/api/v1/sessions/{session['id']}")
            assert r.status_code == 204
        errors = tmp_path / "sipp_errors.log"
        log = errors.read_text(errors="replace") if errors.exists() else ""
        assert "unexpected" not in log.lower(), log[-2000:]
    finally:
        consumer.close()
        camera.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    # (b) The consumer's stream, in arrival order (the relay forwards late packets as they come).
    # The output has its own SSRC, sequence start and timestamp offset: the first packet sent
    # (capture packet 0, neither dropped nor swapped) gives the offsets back to the capture.
    source = [RtpPacket.parse(p) for p in packets]
    relayed = [RtpPacket.parse(p) for p in received]
    assert relayed and order[0] == 0
    seq_offset = relayed[0].sequence_number - source[0].sequence_number
    ts_offset = relayed[0].timestamp - source[0].timestamp
    by_seq = {p.sequence_number: i for i, p in enumerate(source)}
    arrived: dict[int, RtpPacket] = {}
    for p in relayed:
        index = by_seq[(p.sequence_number - seq_offset) & 0xFFFF]
        assert p.timestamp == (source[index].timestamp + ts_offset) & 0xFFFFFFFF
        assert p.marker == source[index].marker
        arrived[index] = p
    assert [by_seq[(p.sequence_number - seq_offset) & 0xFFFF] for p in relayed] == order
    assert sorted(arrived) == sorted(set(range(len(packets))) - set(DROPPED))

    # Frames of the capture: the packets of one RTP timestamp.
    frames: dict[int, list[int]] = {}
    for i, p in enumerate(source):
        frames.setdefault(p.timestamp, []).append(i)
    assert len(frames) == FRAMES
    whole = {ts for ts, idx in frames.items() if all(i in arrived for i in idx)}
    damaged = {ts for ts, idx in frames.items() if any(i in DROPPED for i in idx)}
    assert whole == frames.keys() - damaged and len(damaged) == len(DROPPED)
    for ts in whole:
        relayed_frame = b"".join(arrived[i].payload for i in frames[ts])
        assert relayed_frame == b"".join(source[i].payload for i in frames[ts]), ts
    # The damaged ones are missing (one-packet frames) or short of exactly the lost packet.
    for ts in damaged:
        got = [i for i in frames[ts] if i in arrived]
        assert got == [i for i in frames[ts] if i not in DROPPED]

    # A receiver's frame assembler (reorder window 8) over the relayed stream: every frame it
    # delivers is a whole frame of the capture, byte for byte, and it sees the same loss.
    assembler = FrameAssembler(reorder_window=8)
    assembled = [f for p in relayed for f in assembler.add(p)] + assembler.flush()
    assert assembler.lost == len(DROPPED)
    assert assembled
    for frame in assembled:
        ts = (frame.timestamp - ts_offset) & 0xFFFFFFFF
        assert ts in whole, ts
        assert frame.payload == b"".join(source[i].payload for i in frames[ts])
    # It also drops the frame that resumes after each gap (it cannot know where a frame
    # starts); nothing else is missing.
    firsts = sorted(frames, key=lambda t: frames[t][0])
    after_gap = {firsts[firsts.index(ts) + 1] for ts in damaged}
    delivered = {(f.timestamp - ts_offset) & 0xFFFFFFFF for f in assembled}
    assert whole - after_gap <= delivered
