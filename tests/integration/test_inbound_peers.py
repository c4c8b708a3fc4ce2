"""Inbound INVITE and forwarded PTZ over SIP-TLS with client certificates, against real peers.

Certificates come from the real CLI (``gb28181 certs init-ca``, ``issue``): a level-1 client
(city), a level-4 client (district), a level-2 client (a department) and the platform's own TLS
certificate. A SIPp NVR registers over UDP, answers the platform's Catalog query with one
channel, answers the platform's INVITE for it (the source leg, with its own ``y=``) and takes
forwarded DeviceControl MESSAGEs. The channel is then made a shared specific area (security
class 3) as an operator would.

* pjsua2 on TLS presenting the level-4 certificate under the city's ID: its REGISTER is
  refused ``403 certificate is for ...``.
* pjsua2 on TLS as the level-4 client: registered; its INVITE for the channel is refused
  ``403`` with a ``Warning`` naming the rule, and the refusal is in the audit trail.
* A client on TLS as the level-1 client (our codec over ``ssl``: it must read the media at the
  address of its offer): its RecordInfo query is forwarded to the NVR and the NVR's answer
  relayed back with the client's SN; its INVITE is answered ``200`` with our SDP; the fixture
  capture sent by "the camera" arrives re-SSRC'd to its ``y=`` and decodes, over UDP at its
  offer's port or over TCP on the connection it opens to our answer's port (its
  ``a=setup:active``); the client's BYE ends the source leg (BYE to the SIPp NVR).
* The level-1 client plays back a recording of the channel (``s=Playback``): paced out to its
  SDP address with its ``y=``, the same frames FFmpeg reads back, MediaStatus 121 in its dialog
  at the end, and its BYE closes the session.
* Two pjsua2 TLS clients at once, PTZ on a shared channel that is not a specific area: the
  level-1 client pre-empts the level-2 one, then holds a control period, and the level-2 one's
  next command is refused 403 with the remaining time; the NVR received only what was allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gb28181 import manscdp
from gb28181.server import Platform
from gb28181.sip import SipRequest, SipResponse, parse_sdp
from gb28181.store import RecordingRow
from tests.clips import demux_video, encode_clip, write_segment
from tests.helpers import need

from .conftest import DOMAIN, PASSWORD, SERVER_ID, free_port
from .sipp_device import sipp_errors, wait_until
from .test_calls_peers import FRAMES, decoded_frames, load_capture, with_ssrc
from .tls_peers import (
    ANSWER_SSRC,
    CALLER_SSRC,
    CHANNEL,
    NVR,
    TlsCaller,
    Viewer,
    cert_files,
    offer,
    start_nvr,
    start_tls_platform,
)

pytestmark = pytest.mark.peer

HERE = Path(__file__).resolve().parent
CALLER_PEER = HERE / "peers" / "pjsua_tls_caller.py"
CITY = "34020000002000000009"  # level 1
DISTRICT = "34020000002000000008"  # level 4
TRANSPORT = "34020000002000000007"  # level 2


@pytest.fixture
async def tls_platform(tmp_path: Path) -> AsyncIterator[Platform]:
    p = await start_tls_platform(
        tmp_path,
        [
            (CITY, 1, "city-emergency", "department-client"),
            (DISTRICT, 4, "district", "department-client"),
            (TRANSPORT, 2, "transport", "department-client"),
        ],
    )
    try:
        yield p
    finally:
        await p.stop()


async def nvr_with_channel(
    platform: Platform, tmp_path: Path, attributes: dict[str, Any]
) -> asyncio.subprocess.Process:
    """Start the SIPp NVR, wait for its channel in the catalog, set the channel's attributes."""
    proc = await start_nvr(platform, tmp_path)
    assert platform.catalogs is not None
    # What ``PATCH /api/v1/channels/{id}`` does for the operator, in process: the
    # administrator's token is made by a second writer of the audit trail (the CLI code
    # path), which this test's own audit checks must not race with.
    platform.catalogs.trees[NVR].set_attributes(CHANNEL, platform.clock(), **attributes)
    return proc


class PjsuaCaller:
    """A pjsua2 TLS client process driven one command per line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(
        cls, platform: Platform, tmp_path: Path, holder: str, *, cert_of: str | None = None
    ) -> PjsuaCaller:
        """Start a client with ``holder``'s ID and the certificate of ``cert_of`` (its own)."""
        try:
            import pjsua2  # noqa: F401
        except ImportError:
            need(False, "pjsua2 not installed (pip pjsua2-python): pjsua2 tests skipped")
        assert platform.signalling is not None
        tls = platform.signalling.transport.tls_addr
        assert tls is not None
        cert, key = cert_files(tmp_path, cert_of or holder)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(CALLER_PEER),
            "--server", f"127.0.0.1:{tls[1]}", "--server-id", SERVER_ID, "--domain", DOMAIN,
            "--id", holder, "--password", PASSWORD, "--cert", cert, "--key", key,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        return cls(proc)

    async def result(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:  # PJSIP prints its start-up banner on stdout before the log level applies
            line = await asyncio.wait_for(self.proc.stdout.readline(), 40)
            assert line, "the pjsua2 client died"
            if line.startswith(b"{"):
                return dict(json.loads(line))

    async def command(self, text: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.result()

    async def ptz(self, cmd: str, sn: int) -> dict[str, Any]:
        body = manscdp.encode(manscdp.DeviceControl(device_id=CHANNEL, sn=sn, ptz_cmd=cmd))
        return await self.command(
            f"message Application/MANSCDP+xml {json.dumps(body.decode('gb2312'))}"
        )

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.command("quit")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 5)
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.mark.parametrize("media", ["udp", "tcp-passive"])
async def test_level4_refused_level1_answered_and_bye_ends_the_source_leg(
    tls_platform: Platform, tmp_path: Path, media: str
) -> None:
    platform = tls_platform
    proc = await nvr_with_channel(
        platform,
        tmp_path,
        {"security_class": 3, "shared": True, "owner_department": "police"},
    )
    district: PjsuaCaller | None = None
    viewer = Viewer(tcp=media == "tcp-passive")
    camera = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # A certificate for another ID cannot register as the city's client.
        impostor = await PjsuaCaller.start(platform, tmp_path, CITY, cert_of=DISTRICT)
        try:
            assert (await impostor.result())["register"] == 403
        finally:
            await impostor.close()
        # Level 4 over TLS (pjsua2): registered (the certificate names its ID), INVITE refused.
        district = await PjsuaCaller.start(platform, tmp_path, DISTRICT)
        assert (await district.result())["register"] == 200
        refused = await district.command(f"invite {CHANNEL} {free_port()} {CALLER_SSRC}")
        assert refused["code"] == 403, refused
        assert "specific" in refused["warning"].lower(), refused
        assert refused["warning"].startswith("399 "), refused
        assert "specific" in refused["reason"].lower(), refused
        assert platform.audit is not None
        await platform.audit.flush()
        assert platform.store is not None
        records = [
            r
            for r in await platform.store.load_audit(limit=10000)
            if r.target == CHANNEL and r.principal_id == DISTRICT
        ]
        assert [r.outcome for r in records] == ["deny"]

        # Level 1 over TLS: answered, media to the offer's address with the offer's y=.
        assert platform.signalling is not None and platform.signalling.transport.tls_addr
        city = TlsCaller(CITY, *cert_files(tmp_path, CITY))
        await city.connect(platform.signalling.transport.tls_addr)
        body = offer(CITY, viewer.port, viewer.tcp)
        city.send(
            f"INVITE sip:{CHANNEL}@{DOMAIN} SIP/2.0\n"
            + city.headers("INVITE", 1, "inv1")
            + "Content-Type: APPLICATION/SDP\n"
            + f"Content-Length: {len(body)}\n\n",
            body,
        )
        first = await city.next()
        assert isinstance(first, SipResponse) and first.status == 100
        ok = await city.next(30)
        assert isinstance(ok, SipResponse) and ok.status == 200, ok
        answer = parse_sdp(ok.body)
        assert answer.ssrc == CALLER_SSRC and answer.direction == "sendonly"
        assert answer.setup == ("passive" if viewer.tcp else None)
        assert answer.media_port is not None
        await viewer.connect(answer.media_port)
        city.send(
            f"ACK sip:{SERVER_ID}@127.0.0.1 SIP/2.0\n"
            + city.headers("ACK", 1, "ack1", ok.to.tag or "")
            + "Content-Length: 0\n\n"
        )
        # A recording search for the channel: forwarded to the NVR, answered with our SN.
        query = manscdp.encode(
            manscdp.RecordInfoQuery(
                device_id=CHANNEL,
                sn=4242,
                start_time="2024-05-01T00:00:00",
                end_time="2024-05-01T23:59:59",
                type="all",
            )
        )
        city.send(
            f"MESSAGE sip:{SERVER_ID}@{DOMAIN} SIP/2.0\n"
            + city.headers("MESSAGE", 1, "ri1").replace("tls-call-1", "tls-ri-1")
            + "Content-Type: Application/MANSCDP+xml\n"
            + f"Content-Length: {len(query)}\n\n",
            query,
        )
        got = [await city.next(), await city.next()]
        answer_200 = [m for m in got if isinstance(m, SipResponse)]
        relayed = [m for m in got if isinstance(m, SipRequest)]
        assert [m.status for m in answer_200] == [200] and len(relayed) == 1, got
        city.answer(relayed[0])
        records = manscdp.decode(relayed[0].body)
        assert isinstance(records, manscdp.RecordInfoResponse)
        assert records.sn == 4242 and records.sum_num == 1
        assert records.items[0].start_time == "2024-05-01T08:00:00"
        assert platform.calls is not None
        [session] = platform.calls.sessions.values()
        assert session.answer_ssrc == ANSWER_SSRC
        camera.connect(("127.0.0.1", session.port))
        packets = load_capture()
        for n, packet in enumerate(packets):
            camera.send(with_ssrc(packet, int(ANSWER_SSRC)))
            if n % 8 == 7:
                await asyncio.sleep(0.002)
        received = await viewer.receive(len(packets))
        assert len(received) == len(packets)
        assert {struct.unpack_from(">I", p, 8)[0] for p in received} == {int(CALLER_SSRC)}
        assert decoded_frames(received) == FRAMES

        # The caller hangs up: its consumer leaves, the source leg ends after the idle delay.
        city.send(
            f"BYE sip:{SERVER_ID}@127.0.0.1 SIP/2.0\n"
            + city.headers("BYE", 2, "bye1", ok.to.tag or "")
            + "Content-Length: 0\n\n"
        )
        bye_ok = await city.next()
        assert isinstance(bye_ok, SipResponse) and bye_ok.status == 200

        async def source_ended() -> bool:
            return not platform.calls.sessions if platform.calls else False

        assert await wait_until(source_ended, steps=500)
        assert platform.inbound is not None and platform.inbound.active == {}
        city.writer.close()
    finally:
        viewer.close()
        camera.close()
        if district is not None:
            await district.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "unexpected" not in sipp_errors(tmp_path).lower(), sipp_errors(tmp_path)


async def test_two_tls_clients_ptz_preemption_and_control_period(
    tls_platform: Platform, tmp_path: Path
) -> None:
    platform = tls_platform
    proc = await nvr_with_channel(
        platform,
        tmp_path,
        {"security_class": 0, "shared": True, "owner_department": "police"},
    )
    clients: list[PjsuaCaller] = []
    try:
        transport = await PjsuaCaller.start(platform, tmp_path, TRANSPORT)
        clients.append(transport)
        city = await PjsuaCaller.start(platform, tmp_path, CITY)
        clients.append(city)
        assert (await transport.result())["register"] == 200
        assert (await city.result())["register"] == 200

        right, up, stop = "A50F010180000036", "A50F01080080003D", "A50F0100000000B5"
        assert (await transport.ptz(right, 1))["code"] == 200
        # The level-1 client takes control from the level-2 one.
        assert (await city.ptz(up, 2))["code"] == 200
        preempted = await transport.ptz(stop, 3)
        assert preempted["code"] == 403, preempted
        assert "control taken by" in preempted["reason"], preempted
        # The level-1 holder reserves the camera for 60 s (its control period, 第十六条).
        assert platform.authorizer is not None and platform.identity is not None
        holder = platform.identity.from_certificate(
            Path(cert_files(tmp_path, CITY)[0]).read_bytes()
        )
        platform.authorizer.set_control_period(holder, CHANNEL, 60.0)
        refused = await transport.ptz(right, 4)
        assert refused["code"] == 403, refused
        assert " s remaining" in refused["reason"], refused
        assert (await city.ptz(stop, 5))["code"] == 200
        assert platform.audit is not None and platform.store is not None
        await platform.audit.flush()
        trail = await platform.store.load_audit(limit=10000)
        outcomes = {r.action for r in trail if r.target == CHANNEL}
        assert {"control.granted", "control.preempted", "control.refused"} <= outcomes
        # The NVR answered exactly the three allowed commands (right, up, stop).
        answered = platform.metrics.registry.get_sample_value(
            "gb28181_manscdp_queries_total", {"cmd_type": "DeviceControl", "outcome": "answered"}
        )
        assert answered == 3.0
    finally:
        for client in clients:
            await client.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "unexpected" not in sipp_errors(tmp_path).lower(), sipp_errors(tmp_path)


async def test_level1_playback_of_a_recording_ends_with_media_status(
    tls_platform: Platform, tmp_path: Path
) -> None:
    """``s=Playback`` from a TLS client: our recording, paced out to its SDP address; at the
    end MediaStatus 121 arrives in its dialog and its BYE closes the session."""
    platform = tls_platform
    proc = await nvr_with_channel(
        platform, tmp_path, {"security_class": 0, "shared": True, "owner_department": "police"}
    )
    start = 1714521600.0  # 2024-05-01T00:00:00Z
    frames = encode_clip("h264", 30)
    rel = f"{CHANNEL}/20240501/{CHANNEL}_{int(start * 1000)}.ps"
    size, keyframes, duration = write_segment(Path(platform.config.recording.root) / rel, frames)
    assert platform.store is not None
    await platform.store.add_recording(
        RecordingRow(
            "r1", CHANNEL, start, start + duration, rel, size, "h264", keyframes, None, "closed"
        )
    )
    viewer = Viewer(tcp=False)
    try:
        assert platform.signalling is not None and platform.signalling.transport.tls_addr
        city = TlsCaller(CITY, *cert_files(tmp_path, CITY))
        await city.connect(platform.signalling.transport.tls_addr)
        body = (
            f"v=0\r\no={CITY} 0 0 IN IP4 127.0.0.1\r\ns=Playback\r\nu={CHANNEL}:0\r\n"
            f"c=IN IP4 127.0.0.1\r\nt={int(start)} {int(start + duration) + 1}\r\n"
            f"m=video {viewer.port} RTP/AVP 96\r\na=recvonly\r\na=rtpmap:96 PS/90000\r\n"
            "y=1200000321\r\n"
        ).encode()
        city.send(
            f"INVITE sip:{CHANNEL}@{DOMAIN} SIP/2.0\n"
            + city.headers("INVITE", 1, "pb1")
            + "Content-Type: APPLICATION/SDP\n"
            + f"Content-Length: {len(body)}\n\n",
            body,
        )
        assert (await city.next()).status == 100  # type: ignore[union-attr]
        ok = await city.next(30)
        assert isinstance(ok, SipResponse) and ok.status == 200, ok
        assert parse_sdp(ok.body).session_name == "Playback"
        city.send(
            f"ACK sip:{SERVER_ID}@127.0.0.1 SIP/2.0\n"
            + city.headers("ACK", 1, "pback1", ok.to.tag or "")
            + "Content-Length: 0\n\n"
        )
        # MediaStatus 121 in the dialog once the whole recording went out (it waits in the
        # viewer's socket buffer meanwhile).
        status = await city.next(20)
        packets = await viewer.receive(10_000, timeout=0.5)
        assert isinstance(status, SipRequest) and status.method == "MESSAGE", status
        assert status.call_id == ok.call_id and b"<NotifyType>121</NotifyType>" in status.body
        city.answer(status)
        ordered = sorted(packets, key=lambda p: struct.unpack_from(">H", p, 2)[0])
        assert {struct.unpack_from(">I", p, 8)[0] for p in packets} == {1200000321}
        got = demux_video(b"".join(p[12:] for p in ordered))
        assert [data for _, data in got] == [f.data for f in frames]
        city.send(
            f"BYE sip:{SERVER_ID}@127.0.0.1 SIP/2.0\n"
            + city.headers("BYE", 2, "pbye1", ok.to.tag or "")
            + "Content-Length: 0\n\n"
        )
        bye_ok = await city.next()
        assert isinstance(bye_ok, SipResponse) and bye_ok.status == 200
        assert platform.inbound is not None and platform.inbound.active == {}
        city.writer.close()
    finally:
        viewer.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
