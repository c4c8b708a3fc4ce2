"""Registering to an upper platform played by SIPp (cascade, notes §9).

SIPp is the upper platform (UAS): it challenges our REGISTER with 401 and accepts the digest
answer, answers our keepalive MESSAGEs, and then asks us, in MESSAGEs of its own, for our
DeviceInfo and our Catalog; our answers come back as new MESSAGEs (one per chunk for the
catalog). Then it disappears (the process is killed: nothing answers any more) and returns
(a new SIPp on the same port): we notice the missed keepalives, register again after the
back-off without a restart, and its catalog query is answered again.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gb28181 import manscdp
from gb28181.config import load_config
from gb28181.server import Platform
from gb28181.sip import DigestCredentials, compute_response
from gb28181.store import ChannelRecord
from gb28181.uplink import UplinkState
from tests.helpers import sipp_path

from .cascade_helpers import bind_peer
from .conftest import SERVER_ID, api_client, free_port, platform_env
from .sipp_device import wait_until

pytestmark = pytest.mark.peer

UPPER = "44010000002000000001"
UPPER_DOMAIN = "4401000000"
UPPER_PASSWORD = "upper-pass-1"
NVR = "34020000001110000001"
SHARED = [f"3402000000132{n:07d}" for n in range(1, 24)]
PRIVATE = "34020000001320009999"

_UPPER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="upper platform">
  <recv request="REGISTER" optional="true" next="register" />
  <recv request="MESSAGE" next="message" />

  <label id="register" />
  <send>
    <![CDATA[

      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]U[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="{domain}", nonce="[pid]n[call_number]", qop="auth"
      Content-Length: 0

    ]]>
  </send>
  <recv request="REGISTER" />
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]U[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:]
      Expires: 3600
      Date: 2026-11-22T10:00:00.000
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="300" />
  <send retrans="500">
    <![CDATA[

      MESSAGE sip:{local}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{upper}@{domain}>;tag=[pid]D[call_number]
      To: <sip:{local}@{domain}>
      Call-ID: [call_id]
      CSeq: 20 MESSAGE
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      <?xml version="1.0" encoding="GB2312"?>
      <Query><CmdType>DeviceInfo</CmdType><SN>71</SN><DeviceID>{local}</DeviceID></Query>
    ]]>
  </send>
  <recv response="200" />
  <send retrans="500">
    <![CDATA[

      MESSAGE sip:{local}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{upper}@{domain}>;tag=[pid]C[call_number]
      To: <sip:{local}@{domain}>
      Call-ID: [call_id]
      CSeq: 21 MESSAGE
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      <?xml version="1.0" encoding="GB2312"?>
      <Query><CmdType>Catalog</CmdType><SN>72</SN><DeviceID>{local}</DeviceID></Query>
    ]]>
  </send>
  <recv response="200" next="end" />

  <label id="message" />
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
  <label id="end" />
</scenario>
"""


async def start_upper(
    tmp_path: Path, port: int, run: int, transport: str = "udp"
) -> asyncio.subprocess.Process:
    scenario = tmp_path / "upper.xml"
    scenario.write_text(_UPPER.format(domain=UPPER_DOMAIN, upper=UPPER, local=SERVER_ID))
    return await asyncio.create_subprocess_exec(
        sipp_path(),
        "-sf", str(scenario),
        "-t", "t1" if transport == "tcp" else "u1",
        "-i", "127.0.0.1",
        "-p", str(port),
        "-nostdin",
        "-trace_msg",
        "-message_file", str(tmp_path / f"upper{run}_messages.log"),
        "-trace_err",
        "-error_file", str(tmp_path / f"upper{run}_errors.log"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=tmp_path,
    )  # fmt: skip


def received(log_path: Path) -> list[str]:
    """The SIP messages SIPp logged as received, in order (line ends normalised to LF)."""
    if not log_path.exists():
        return []
    text = log_path.read_bytes().decode("gb18030", errors="replace").replace("\r\n", "\n")
    out = []
    for chunk in re.split(r"\n?-{20,} [^\n]*\n", text):
        if chunk.startswith(("UDP message received", "TCP message received")):
            out.append(chunk.split("\n", 2)[2] if chunk.count("\n") >= 2 else "")
    return out


def body_of(message: str) -> bytes:
    _, _, body = message.partition("\n\n")
    return body.strip().encode("gb18030")


@pytest.fixture(params=["udp", "tcp"])
async def lower(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Platform, int]]:
    """Our platform, configured with the upper platform (SIPp) over UDP or TCP."""
    upper_port = free_port()
    toml = tmp_path / "gb28181.toml"
    share = ", ".join(f'"{c}"' for c in SHARED)
    toml.write_text(
        f"""
[[upstream]]
id = "{UPPER}"
host = "127.0.0.1"
port = {upper_port}
transport = "{request.param}"
password = "{UPPER_PASSWORD}"
expires = 3600
keepalive_interval = 0.5
keepalive_misses = 2
retry_min = 0.5
retry_max = 1.0
register_timeout = 2
share = [{share}]
id_map = {{ "{SHARED[0]}" = "44010000001320000001" }}
"""
    )
    env = platform_env(tmp_path, GB28181_DEVICES_CATALOG_ON_REGISTER="false")
    config = load_config(toml, env=env)
    # The upper platform's identity, bound before the platform starts (as an operator does):
    # a level-1 platform certificate bound to its account.
    await bind_peer(Path(config.certs.ca_dir), config.storage.url, UPPER, level=1)
    platform = Platform(config)
    await platform.start()
    try:
        yield platform, upper_port
    finally:
        await platform.stop()


def load_channels(platform: Platform) -> None:
    assert platform.catalogs is not None
    records = [ChannelRecord(NVR, NVR, (), kind="device", name="NVR", status="ON")]
    for channel_id in [*SHARED, PRIVATE]:
        records.append(
            ChannelRecord(NVR, channel_id, (NVR,), name=f"cam {channel_id[-4:]}", status="ON")
        )
    platform.catalogs.load(NVR, records)


async def test_register_keepalive_answer_and_come_back_after_the_upper_platform_returns(
    lower: tuple[Platform, int], tmp_path: Path
) -> None:
    platform, upper_port = lower
    load_channels(platform)
    assert platform.uplinks is not None
    up = platform.uplinks.uplinks[UPPER]
    transport = up.cfg.transport
    proc = await start_upper(tmp_path, upper_port, 1, transport)
    try:
        assert await wait_until(lambda: _true(up.registered), steps=500), up.stats
        # Keepalives flow and are answered.
        assert await wait_until(lambda: _true(up.stats.keepalives_sent >= 3), steps=500)
        assert up.stats.keepalives_missed == 0
        metrics = platform.metrics.render().decode()
        assert f'gb28181_upstream_registered{{upstream="{UPPER}"}} 1.0' in metrics
        async with api_client(platform) as http:
            r = await http.get("/api/v1/upstreams")
        assert r.status_code == 200, r.text
        (listed,) = r.json()["items"]
        assert listed["id"] == UPPER and listed["state"] == "registered"
        assert listed["transport"] == transport.upper()

        # The upper platform's DeviceInfo query is answered in a MESSAGE of ours.
        log1 = tmp_path / "upper1_messages.log"

        assert await wait_until(lambda: _true(bool(answers("DeviceInfo", log1))), steps=500)
        (info,) = answers("DeviceInfo", log1)
        assert isinstance(info, manscdp.DeviceInfoResponse)
        assert info.sn == 71 and info.device_id == SERVER_ID and info.result == "OK"
        assert info.channel == len(SHARED)

        # Its Catalog query is answered with exactly the shared channels (one under its
        # published ID), a few items per MESSAGE, SumNum counting them all.
        expected = {"44010000001320000001", *SHARED[1:]}
        assert await wait_until(lambda: _true(catalog_ids(log1) >= expected), steps=500), (
            catalog_ids(log1)
        )
        chunks = [m for m in answers("Catalog", log1) if m.sn == 72]
        assert isinstance(chunks[0], manscdp.CatalogResponse)
        # Few items per MESSAGE over UDP (10), more over a stream (50).
        assert len(chunks) == (3 if transport == "udp" else 1)
        total = {c.sum_num for c in chunks if isinstance(c, manscdp.CatalogResponse)}
        ids = catalog_ids(log1)
        assert total == {len(ids)}
        assert ids - expected <= {SERVER_ID}
        assert PRIVATE not in ids and SHARED[0] not in ids

        # Our digest answer was right (checked here with the password SIPp was not told).
        registers = [m for m in received(log1) if m.startswith("REGISTER ")]
        assert len(registers) >= 2
        auth = re.search(r"^Authorization: (.*)$", registers[1], re.M)
        assert auth is not None
        creds = DigestCredentials.parse(auth.group(1))
        assert creds.username == SERVER_ID and creds.realm == UPPER_DOMAIN
        assert creds.qop == "auth" and creds.nc == "00000001"
        assert creds.response == compute_response(
            "MD5",
            SERVER_ID,
            UPPER_DOMAIN,
            UPPER_PASSWORD,
            "REGISTER",
            creds.uri or "",
            creds.nonce or "",
            creds.nc,
            creds.cnonce,
            creds.qop,
        )

        # The upper platform disappears: nothing answers. We give the registration up.
        proc.kill()
        await proc.wait()
        assert await wait_until(lambda: _true(not up.registered), steps=500)
        assert up.state is UplinkState.BACKOFF
        assert up.stats.keepalives_missed >= 2
        metrics = platform.metrics.render().decode()
        assert f'gb28181_upstream_registered{{upstream="{UPPER}"}} 0.0' in metrics
        # Let a REGISTER or two go unanswered while it is away.
        failures = up.stats.failures
        assert await wait_until(lambda: _true(up.stats.failures > failures), steps=500)

        # It returns on the same address: we register again without a restart.
        proc = await start_upper(tmp_path, upper_port, 2, transport)
        assert await wait_until(lambda: _true(up.registered), steps=1000), up.stats
        assert up.stats.registrations == 2
        log2 = tmp_path / "upper2_messages.log"
        assert await wait_until(lambda: _true(bool(answers("DeviceInfo", log2))), steps=500)
        assert await wait_until(lambda: _true(catalog_ids(log2) >= expected), steps=500)
        assert await wait_until(lambda: _true(up.stats.keepalives_sent >= 3), steps=500)
        errors = tmp_path / "upper2_errors.log"
        text = errors.read_text(errors="replace") if errors.exists() else ""
        assert "unexpected" not in text.lower(), text[-2000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def answers(cmd_type: str, log_path: Path) -> list[manscdp.Message]:
    """Our MANSCDP Responses of ``cmd_type`` that SIPp received."""
    out = []
    for message in received(log_path):
        if not message.startswith("MESSAGE ") or "<Response>" not in message:
            continue
        decoded = manscdp.decode(body_of(message))
        if decoded.cmd_type == cmd_type:
            out.append(decoded)
    return out


def catalog_ids(log_path: Path) -> set[str]:
    ids: set[str] = set()
    for message in answers("Catalog", log_path):
        assert isinstance(message, manscdp.CatalogResponse)
        ids.update(item.device_id or "" for item in message.items)
    return ids


async def _true(value: bool) -> bool:
    return value
