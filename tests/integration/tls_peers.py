"""SIP-over-TLS callers and a SIPp NVR, for the tests of calls *to* the platform (issue 6).

Shared by ``test_inbound_peers`` and ``test_cross_department_peers``:

* :func:`cli` / :func:`issue`: certificates from the real CLI (``gb28181 certs init-ca``,
  ``issue``), as an operator makes them; :func:`start_tls_platform` starts a platform with
  SIP over TLS whose client CA is that CA.
* :func:`start_nvr`: a SIPp NVR (UDP) that registers, answers the Catalog query with its
  channels, answers RecordInfo for the first one, answers the platform's INVITE (the source
  leg, with its own ``y=``) and takes our BYE.
* :class:`TlsCaller`: a client over TLS with a client certificate speaking through our codec;
  :func:`offer` its SDP; :class:`Viewer` its media side (UDP at its offer's port, or RFC 4571
  over the TCP connection it opens).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from gb28181.server import Platform
from gb28181.sip import SipMessage, SipRequest, StreamParser, make_response

from .conftest import DOMAIN, SERVER_ID, free_port, platform_env, start_platform
from .sipp_device import register_scenario, sipp_errors, start_sipp_device, wait_until

__all__ = [
    "ANSWER_SSRC",
    "CALLER_SSRC",
    "CHANNEL",
    "NVR",
    "TlsCaller",
    "Viewer",
    "cert_files",
    "cli",
    "issue",
    "offer",
    "start_nvr",
    "start_tls_platform",
]

NVR = "34020000001180000001"
CHANNEL = "34020000001320000001"
ANSWER_SSRC = "0200000099"
CALLER_SSRC = "0200000555"


#: Out of call: a MESSAGE (the Catalog query gets its Response; forwarded controls only 200),
#: or the source leg's INVITE (200 with the NVR's own y=, ACK, later our BYE).
NVR_OOC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="NVR answers">
  <recv request="INVITE" optional="true" next="invite" />
  <recv request="MESSAGE">
    <action>
      <ereg regexp="&lt;SN&gt;([0-9]+)&lt;/SN&gt;" search_in="body" check_it="true"
            assign_to="all,sn" />
      <ereg regexp="&lt;CmdType&gt;Catalog" search_in="body" check_it="false"
            assign_to="catalog" />
      <ereg regexp="&lt;CmdType&gt;RecordInfo" search_in="body" check_it="false"
            assign_to="records" />
      <log message="MESSAGE [$all]" />
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]M[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <nop test="catalog" next="catalog" />
  <nop test="records" next="records" />
  <nop next="done" />
  <label id="records" />
  <send retrans="500">
    <![CDATA[

      MESSAGE sip:{server}@{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{nvr}@{domain}>;tag=[pid]F[call_number]
      To: <sip:{server}@{domain}>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      <?xml version="1.0" encoding="GB2312"?>
      <Response>
      <CmdType>RecordInfo</CmdType>
      <SN>[$sn]</SN>
      <DeviceID>{channel}</DeviceID>
      <Name>cam</Name>
      <SumNum>1</SumNum>
      <RecordList Num="1">
      <Item><DeviceID>{channel}</DeviceID><Name>cam</Name><StartTime>2024-05-01T08:00:00</StartTime><EndTime>2024-05-01T09:00:00</EndTime><Secrecy>0</Secrecy><Type>time</Type></Item>
      </RecordList>
      </Response>
    ]]>
  </send>
  <recv response="200" />
  <nop next="done" />
  <label id="catalog" />
  <send retrans="500">
    <![CDATA[

      MESSAGE sip:{server}@{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{nvr}@{domain}>;tag=[pid]C[call_number]
      To: <sip:{server}@{domain}>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      <?xml version="1.0" encoding="GB2312"?>
      <Response>
      <CmdType>Catalog</CmdType>
      <SN>[$sn]</SN>
      <DeviceID>{nvr}</DeviceID>
      <SumNum>{count}</SumNum>
      <DeviceList Num="{count}">
{items}
      </DeviceList>
      </Response>
    ]]>
  </send>
  <recv response="200" />
  <nop next="done" />
  <label id="invite" />
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]I[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:{nvr}@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o={nvr} 0 0 IN IP4 127.0.0.1
      s=Play
      c=IN IP4 127.0.0.1
      t=0 0
      m=video 15060 RTP/AVP 96
      a=sendonly
      a=rtpmap:96 PS/90000
      y={ssrc}

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
  <label id="done" />
  <pause milliseconds="10" />
</scenario>
"""


def cli(*args: str) -> None:
    """The real CLI, as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "gb28181", "certs", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def issue(ca: Path, out: Path, holder: str, level: int, department: str, kind: str) -> None:
    cli(
        "issue", "--ca-dir", str(ca), "--kind", kind, "--id", holder,
        "--department", department, "--level", str(level), "--out-dir", str(out),
    )  # fmt: skip


def cert_files(tmp_path: Path, holder: str) -> tuple[str, str]:
    """``(certificate, key)`` PEM paths of a holder issued by :func:`start_tls_platform`."""
    out = tmp_path / "issued"
    return str(out / f"{holder}.cert.pem"), str(out / f"{holder}.key.pem")


async def start_tls_platform(
    tmp_path: Path, clients: Sequence[tuple[str, int, str, str]]
) -> Platform:
    """A platform with SIP over TLS: a CA made by the CLI in ``tmp_path/ca`` (also the
    platform's own CA), a certificate per client ``(holder, level, department, kind)`` and
    the platform's own, all in ``tmp_path/issued`` (:func:`cert_files`). Issued before the
    platform starts: the CLI would otherwise be a second writer of its audit trail."""
    ca, out = tmp_path / "ca", tmp_path / "issued"
    cli("init-ca", "--ca-dir", str(ca))
    for holder, level, department, kind in clients:
        issue(ca, out, holder, level, department, kind)
    issue(ca, out, SERVER_ID, 1, "city", "platform")
    env = platform_env(
        tmp_path,
        GB28181_SIP_TLS_PORT=str(free_port()),
        GB28181_SIP_TLS_CERT=str(out / f"{SERVER_ID}.cert.pem"),
        GB28181_SIP_TLS_KEY=str(out / f"{SERVER_ID}.key.pem"),
        GB28181_SIP_TLS_CLIENT_CA=str(ca / "ca-cert.pem"),
        GB28181_AUTHZ_LEVEL1_VIEWS_UNSHARED="false",
        GB28181_DEVICES_CATALOG_SUBSCRIBE="false",
        GB28181_MEDIA_LISTEN="127.0.0.1",
        GB28181_MEDIA_IDLE_DELAY="0.2",
        GB28181_RECORDING_ROOT=str(tmp_path / "recordings"),
    )
    return await start_platform(env)


async def start_nvr(
    platform: Platform, tmp_path: Path, channels: Sequence[str] = (CHANNEL,)
) -> asyncio.subprocess.Process:
    """Start the SIPp NVR carrying ``channels``; return once all are in the platform's
    catalog (RecordInfo is answered for the first one)."""
    items = "\n".join(
        f"      <Item><DeviceID>{channel}</DeviceID><Name>cam</Name><ParentID>{NVR}</ParentID>"
        "<Status>ON</Status></Item>"
        for channel in channels
    )
    fmt = {"server": SERVER_ID, "domain": DOMAIN, "nvr": NVR, "channel": channels[0]}
    proc = await start_sipp_device(
        platform,
        tmp_path,
        NVR,
        register_scenario(NVR, SERVER_ID, DOMAIN),
        NVR_OOC.format(ssrc=ANSWER_SSRC, count=len(channels), items=items, **fmt),
        timeout=90,
    )
    assert platform.catalogs is not None
    catalogs = platform.catalogs

    async def in_catalog() -> bool:
        tree = catalogs.trees.get(NVR)
        return tree is not None and all(channel in tree for channel in channels)

    assert await wait_until(in_catalog, steps=1000), sipp_errors(tmp_path)
    return proc


class TlsCaller:
    """A client over TLS with a client certificate, speaking through our codec: it must read
    PS video at its own SDP address, and pjsua2 (an audio endpoint) hangs up a call whose
    answer is PS video, so pjsua2 plays the clients whose calls are refused."""

    def __init__(self, holder: str, cert: str, key: str) -> None:
        self.holder = holder
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        self.ctx.load_cert_chain(cert, key)
        self.parser = StreamParser(65536)
        self.pending: list[SipMessage] = []
        self.local = ("127.0.0.1", 0)

    async def connect(self, addr: tuple[str, int]) -> None:
        self.reader, self.writer = await asyncio.open_connection(*addr, ssl=self.ctx)
        sock = self.writer.get_extra_info("sockname")
        self.local = (sock[0], sock[1])

    def send(self, text: str, body: bytes = b"") -> None:
        raw = text.replace("\n", "\r\n").encode() + body
        self.writer.write(raw)

    async def next(self, timeout: float = 20.0) -> SipMessage:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            assert data, "the platform closed the TLS connection"
            for item in self.parser.feed(data):
                assert not isinstance(item, Exception), item
                self.pending.append(item)
        return self.pending.pop(0)

    def answer(self, request: SipRequest) -> None:
        """200 OK to a request from the platform."""
        self.writer.write(bytes(make_response(request, 200, to_tag="tc2")))

    def headers(
        self,
        method: str,
        cseq: int,
        branch: str,
        to_tag: str = "",
        *,
        channel: str = CHANNEL,
        call_id: str = "tls-call-1",
    ) -> str:
        """The header lines of a request in the dialog ``call_id`` with ``channel``."""
        to = f"<sip:{channel}@{DOMAIN}>" + (f";tag={to_tag}" if to_tag else "")
        host, port = self.local
        return (
            f"Via: SIP/2.0/TLS {host}:{port};rport;branch=z9hG4bK{branch}\n"
            f"From: <sip:{self.holder}@{DOMAIN}>;tag=tc1\n"
            f"To: {to}\n"
            f"Call-ID: {call_id}\n"
            f"CSeq: {cseq} {method}\n"
            f"Contact: <sip:{self.holder}@{host}:{port};transport=tls>\n"
            "Max-Forwards: 70\n"
        )


def offer(holder: str, port: int, tcp: bool) -> bytes:
    """The caller's offer: UDP to ``port``, or TCP where the caller connects to us
    (``a=setup:active``: WVP's and most upper platforms' TCP-passive mode, notes §6.4)."""
    media = f"m=video {port} RTP/AVP 96\r\n"
    if tcp:
        media = "m=video 9 TCP/RTP/AVP 96\r\na=setup:active\r\na=connection:new\r\n"
    return (
        f"v=0\r\no={holder} 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"{media}a=recvonly\r\na=rtpmap:96 PS/90000\r\ny={CALLER_SSRC}\r\n"
    ).encode()


class Viewer:
    """A TLS client's media side: UDP datagrams at its offer's port, or RFC 4571
    frames over the TCP connection it opens to our answer's port."""

    def __init__(self, tcp: bool) -> None:
        self.tcp = tcp
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.setblocking(False)
        self.stream: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    @property
    def port(self) -> int:
        return int(self.udp.getsockname()[1])

    async def connect(self, port: int) -> None:
        if self.tcp:
            self.stream, self.writer = await asyncio.open_connection("127.0.0.1", port)

    async def receive(self, count: int, timeout: float = 10.0) -> list[bytes]:
        received: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(received) < count and loop.time() < deadline:
            if self.stream is not None:
                with contextlib.suppress(TimeoutError):
                    head = await asyncio.wait_for(self.stream.readexactly(2), 1.0)
                    (size,) = struct.unpack(">H", head)
                    received.append(await self.stream.readexactly(size))
                continue
            try:
                received.append(self.udp.recv(65536))
            except BlockingIOError:
                await asyncio.sleep(0.01)
        return received

    def close(self) -> None:
        self.udp.close()
        if self.writer is not None:
            self.writer.close()
