"""Playback against real peers: a SIPp device's own storage, and the full loop through us.

1. Device playback (notes §6.9, §4.12): ``POST /api/v1/channels/{id}/playback`` with
   ``source=device`` makes the platform INVITE the SIPp camera with ``s=Playback``, ``u=``,
   ``t=`` and a history SSRC over UDP; the test streams PS as the camera's media side, the API's
   consumer receives it and FFmpeg (PyAV) demuxes the same frames with the same bytes; then the
   camera sends MediaStatus 121 in the dialog, the platform answers it, BYEs the camera and the
   playback session is gone.
2. The full loop (the acceptance test of issue 4): a SIPp camera, a sender streaming PS of an
   H.264 or H.265 clip generated with PyAV (muxed with ``media.ps_mux``) into our relay, three
   UDP consumers and the recorder on that one camera stream; each consumer demuxes (PyAV) to
   the same frames with the same bytes per frame as went in; then the recording is played back
   through ``POST /api/v1/channels/{id}/playback`` (download at 8x) to a fourth socket, which
   demuxes to the same frames and bytes again, and the session ends by itself at the end of the
   file.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gb28181.server import Platform
from media.ps import PsFrame
from media.rtp import RtpPacket, RtpPacketizer
from tests.clips import demux_video, encode_clip, mux

from .conftest import DOMAIN, SERVER_ID, api_client, platform_env, start_platform
from .sipp_device import register_scenario, send_manscdp, sipp_errors, start_sipp_device

pytestmark = pytest.mark.peer

CAMERA = "34020000001320000001"
ANSWER_SSRC = "1200000077"
LIVE_SSRC = "0200000088"


_ANSWER = """
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
      s={kind}
      c=IN IP4 127.0.0.1
      t=0 0
      m=video 15060 RTP/AVP 96
      a=sendonly
      a=rtpmap:96 PS/90000
      y={ssrc}

    ]]>
  </send>
  <recv request="ACK" />
"""

_BYE = """
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
"""

# MediaStatus 121 in the INVITE's dialog (same Call-ID, notes §4.12): From is the channel, as
# Hikvision and Huawei send it; the platform routes it by Call-ID.
_MEDIA_STATUS = """
  <pause milliseconds="{pause}" />
  <send retrans="500">
    <![CDATA[

      MESSAGE sip:{server}@{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{cam}@{domain}>;tag=[pid]I[call_number]
      To: <sip:{server}@{domain}>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      <?xml version="1.0" encoding="GB2312"?>
      <Notify>
      <CmdType>MediaStatus</CmdType>
      <SN>8</SN>
      <DeviceID>{cam}</DeviceID>
      <NotifyType>121</NotifyType>
      </Notify>
    ]]>
  </send>
  <recv response="200" />
"""


def _record_item(start: str, end: str) -> str:
    return (
        f"<Item>\n<DeviceID>{CAMERA}</DeviceID>\n<Name>北门</Name>\n<FilePath>/r/1</FilePath>\n"
        f"<Address>北门</Address>\n<StartTime>{start}</StartTime>\n<EndTime>{end}</EndTime>\n"
        "<Secrecy>0</Secrecy>\n<Type>time</Type>\n</Item>\n"
    )


# RecordInfo (notes §4.6): the answer lists the later file first; the API sorts by StartTime.
_RECORD_INFO = (
    """
  <recv request="MESSAGE">
    <action>
      <ereg regexp="&lt;SN&gt;([0-9]+)&lt;/SN&gt;" search_in="body" check_it="true"
            assign_to="all,sn" />
      <log message="query [$all]" />
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]O[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
"""
    + send_manscdp(
        CAMERA,
        '<?xml version="1.0" encoding="GB2312"?>\n<Response>\n<CmdType>RecordInfo</CmdType>\n'
        f"<SN>[$sn]</SN>\n<DeviceID>{CAMERA}</DeviceID>\n<Name>北门</Name>\n<SumNum>2</SumNum>\n"
        '<RecordList Num="2">\n'
        + _record_item("2023-11-15T10:00:00", "2023-11-15T11:00:00")
        + _record_item("2023-11-15T09:00:00", "2023-11-15T10:00:00")
        + "</RecordList>\n</Response>",
        tag="D1",
    )
    + """
  <recv response="200" />
"""
)


def _scenario(body: str) -> str:
    return f'<?xml version="1.0" encoding="GB2312" ?>\n<scenario name="camera">{body}</scenario>\n'


_REGISTER = register_scenario(CAMERA, SERVER_ID, DOMAIN, hold_ms=60000, encoding="GB2312")


def _fmt(text: str, **extra: Any) -> str:
    return text.format(server=SERVER_ID, domain=DOMAIN, cam=CAMERA, **extra)


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    env = platform_env(
        tmp_path,
        GB28181_DEVICES_CATALOG_ON_REGISTER="false",
        GB28181_MEDIA_LISTEN="127.0.0.1",
        GB28181_MEDIA_IDLE_DELAY="0.2",
        GB28181_MEDIA_STREAM_MODE="UDP",
        GB28181_RECORDING_ROOT=str(tmp_path / "recordings"),
    )
    p = await start_platform(env)
    try:
        yield p
    finally:
        await p.stop()


async def _registered(platform: Platform, proc: asyncio.subprocess.Process, tmp: Path) -> None:
    assert platform.registrar is not None
    for _ in range(500):
        st = platform.registrar.get(CAMERA)
        if st is not None and st.registered:
            return
        assert proc.returncode is None, f"SIPp ended before registering: {sipp_errors(tmp)}"
        await asyncio.sleep(0.02)
    raise AssertionError("the camera did not register")


def _udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def _output(sock: socket.socket) -> dict[str, Any]:
    return {"addr": "127.0.0.1", "port": sock.getsockname()[1], "transport": "udp"}


async def _send_clip(port: int, frames: list[PsFrame], ssrc: int, fps: float = 100.0) -> None:
    """The camera's media side: the clip as PS over RTP (UDP), paced at ``fps``."""
    packetizer = RtpPacketizer(ssrc)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for frame, ps in zip(frames, mux(frames), strict=True):
            for packet in packetizer.packetize(ps, (frame.pts or 0) & 0xFFFFFFFF):
                tx.sendto(packet, ("127.0.0.1", port))
            await asyncio.sleep(1 / fps)


async def _collect(sock: socket.socket, frames: int, timeout: float = 20.0) -> list[bytes]:
    """Receive until ``frames`` marker packets came (then a short tail), or time out."""
    packets: list[bytes] = []
    markers = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while markers < frames and loop.time() < deadline:
        try:
            packet = sock.recv(65536)
        except BlockingIOError:
            await asyncio.sleep(0.005)
            continue
        packets.append(packet)
        markers += RtpPacket.parse(packet).marker
    return packets


def _judge(packets: list[bytes]) -> list[bytes]:
    """What FFmpeg demuxes from the PS the packets carry (in sequence order)."""
    ordered = sorted(packets, key=lambda p: RtpPacket.parse(p).sequence_number)
    return [data for _, data in demux_video(b"".join(RtpPacket.parse(p).payload for p in ordered))]


async def _wait(predicate: Any, timeout: float = 15.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_device_record_search(platform: Platform, tmp_path: Path) -> None:
    proc = await start_sipp_device(platform, tmp_path, CAMERA, _REGISTER, _scenario(_RECORD_INFO))
    try:
        await _registered(platform, proc, tmp_path)
        async with api_client(platform) as http:
            r = await http.get(
                f"/api/v1/channels/{CAMERA}/records",
                params={
                    "start": "2023-11-15T00:00:00",
                    "end": "2023-11-15T23:59:59",
                    "source": "device",
                },
            )
        assert r.status_code == 200, (r.text, sipp_errors(tmp_path))
        body = r.json()
        assert body["source"] == "device" and body["partial"] is False
        assert body["sum_num"] == 2 and body["total"] == 2
        starts = [item["start_time"] for item in body["items"]]
        assert starts == ["2023-11-15T09:00:00", "2023-11-15T10:00:00"]
        assert body["items"][0]["name"] == "北门"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_device_playback_ends_with_media_status_121(
    platform: Platform, tmp_path: Path
) -> None:
    ooc = _scenario(
        _fmt(_ANSWER, kind="Playback", ssrc=ANSWER_SSRC) + _fmt(_MEDIA_STATUS, pause=2500) + _BYE
    )
    proc = await start_sipp_device(platform, tmp_path, CAMERA, _REGISTER, ooc)
    consumer = _udp_socket()
    frames = encode_clip("h264", 30)
    try:
        await _registered(platform, proc, tmp_path)
        async with api_client(platform) as http:
            r = await http.post(
                f"/api/v1/channels/{CAMERA}/playback",
                json={
                    "start": 1_700_000_000,
                    "end": 1_700_000_600,
                    "source": "device",
                    "output": _output(consumer),
                },
            )
            assert r.status_code == 201, r.text
            body = r.json()
            assert body["source"] == "device"
            r = await http.get(f"/api/v1/sessions/{body['device_session']}")
            assert r.status_code == 200, r.text
            leg = r.json()
            assert leg["kind"] == "Playback" and leg["ssrc"].startswith("1")
            await _send_clip(leg["receive"]["port"], frames, int(ANSWER_SSRC))
            packets = await _collect(consumer, len(frames))
            assert {RtpPacket.parse(p).ssrc for p in packets} == {int(body["ssrc"])}
            assert _judge(packets) == [f.data for f in frames]

            async def gone() -> bool:
                r = await http.get("/api/v1/playback")
                return r.json()["total"] == 0

            assert await _wait(gone), "MediaStatus 121 did not end the playback"
            # The BYE that followed was answered: the device leg is gone too.
            r = await http.get("/api/v1/sessions")
            assert r.json()["total"] == 0
        errors = sipp_errors(tmp_path)
        assert "unexpected" not in errors.lower() and "aborting" not in errors.lower(), errors
    finally:
        consumer.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("codec", ["h264", "h265"])
async def test_full_loop_ingest_relay_consumers_recording_playback(
    platform: Platform, tmp_path: Path, codec: str
) -> None:
    ooc = _scenario(_fmt(_ANSWER, kind="Play", ssrc=LIVE_SSRC) + _BYE)
    proc = await start_sipp_device(platform, tmp_path, CAMERA, _REGISTER, ooc, timeout=60)
    consumers = [_udp_socket() for _ in range(3)]
    replay = _udp_socket()
    frames = encode_clip(codec, 50, gop=10)
    expected = [f.data for f in frames]
    try:
        await _registered(platform, proc, tmp_path)
        async with api_client(platform) as http:
            sessions = []
            for sock in consumers:
                r = await http.post(
                    f"/api/v1/channels/{CAMERA}/play", json={"output": _output(sock)}
                )
                assert r.status_code == 201, r.text
                sessions.append(r.json())
            assert len({s["id"] for s in sessions}) == 1  # one camera stream, three viewers
            assert platform.recordings is not None
            r = await http.post(f"/api/v1/channels/{CAMERA}/record", json={})
            assert r.status_code in (200, 201, 202), r.text
            started = time.time()
            await _send_clip(sessions[0]["receive"]["port"], frames, int(LIVE_SSRC), fps=50)
            received = [await _collect(sock, len(frames)) for sock in consumers]
            for packets in received:
                assert _judge(packets) == expected
            r = await http.delete(f"/api/v1/channels/{CAMERA}/record")
            assert r.status_code in (200, 202, 204), r.text

            async def closed() -> bool:
                r = await http.get(
                    "/api/v1/recordings",
                    params={"channel": CAMERA, "start": started - 60, "end": time.time() + 60},
                )
                items = r.json().get("items", [])
                return bool(items) and all(i.get("state") != "open" for i in items)

            assert await _wait(closed), "the recording was not closed"
            r = await http.get(
                f"/api/v1/channels/{CAMERA}/records",
                params={"start": started - 60, "end": time.time() + 60},
            )
            assert r.status_code == 200 and r.json()["total"] >= 1, r.text
            r = await http.post(
                f"/api/v1/channels/{CAMERA}/playback",
                json={
                    "start": started - 60,
                    "end": time.time() + 60,
                    "source": "platform",
                    "download": True,
                    "speed": 8,
                    "output": _output(replay),
                },
            )
            assert r.status_code == 201, r.text
            playback = r.json()
            packets = await _collect(replay, len(frames))
            assert _judge(packets) == expected

            async def ended() -> bool:
                r = await http.get(f"/api/v1/playback/{playback['id']}")
                return r.status_code == 404

            assert await _wait(ended), "the playback did not end at the end of the file"
    finally:
        for sock in [*consumers, replay]:
            sock.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
