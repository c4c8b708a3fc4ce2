"""Cascade tests and benchmarks: identities for upper platforms, and the three-level chain.

:func:`bind_peer` gives a platform's peer (an upper platform) an identity the way an operator
does, with the real CLI: ``gb28181 certs init-ca`` (once per CA directory), ``gb28181 certs
issue --kind platform``, ``gb28181 certs bind ACCOUNT CERTFILE`` into the platform's store.

:func:`start_chain` runs three platforms in this process (province <- city <- district, each
registered to the next through ``[[upstream]]``); :func:`start_nvr` runs SIPp as an NVR with
one camera channel, registered at the district.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from gb28181.cli import main as cli
from gb28181.config import load_config
from gb28181.server import Platform
from gb28181.store import ChannelRecord, DeviceRecord, open_store
from tests.helpers import sipp_path

from .conftest import free_port, platform_env
from .sipp_device import register_scenario

__all__ = [
    "ANSWER_SSRC",
    "CAMERA",
    "CITY",
    "DISTRICT",
    "NEW_NAME",
    "NVR",
    "PROVINCE",
    "Chain",
    "bind_peer",
    "channel_name",
    "registered",
    "start_chain",
    "start_nvr",
]

PROVINCE = "44000000002000000001"
CITY = "44010000002000000001"
DISTRICT = "44010600002000000001"
NVR = "44010600001180000001"
CAMERA = "44010600001320000001"
PASSWORDS = {PROVINCE: "pw-province", CITY: "pw-city", DISTRICT: "pw-district"}
ANSWER_SSRC = "0106000042"
NEW_NAME = "Gate camera renamed"


# What the district sends the NVR: the INVITE (answered with the NVR's own y=, then ACK and,
# at the end, BYE), and a PTZ DeviceControl, after which the NVR reports a catalog change.
_NVR_OOC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="NVR answers">
  <recv request="INVITE" optional="true" next="invite" />
  <recv request="MESSAGE" next="message">
    <action>
      <ereg regexp="DeviceControl" search_in="body" check_it="false" assign_to="control" />
    </action>
  </recv>

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
      o={camera} 0 0 IN IP4 127.0.0.1
      s=Play
      c=IN IP4 127.0.0.1
      t=0 0
      m=video 15060 RTP/AVP 96
      a=sendonly
      a=rtpmap:96 PS/90000
      y={ssrc}
      f=

    ]]>
  </send>
  <recv request="ACK" />
  <recv request="BYE" />
  <send next="end">
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
  <nop next="report" test="control" />
  <nop next="end" />

  <label id="report" />
  <pause milliseconds="200" />
  <send retrans="500">
    <![CDATA[

      MESSAGE sip:{district}@{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{nvr}@{domain}>;tag=[pid]N[call_number]
      To: <sip:{district}@{domain}>
      Call-ID: [call_id]
      CSeq: 101 MESSAGE
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      <?xml version="1.0" encoding="GB2312"?>
      <Notify><CmdType>Catalog</CmdType><SN>901</SN><DeviceID>{nvr}</DeviceID>
      <SumNum>1</SumNum><DeviceList Num="1"><Item><DeviceID>{camera}</DeviceID>
      <Event>UPDATE</Event><Name>{new_name}</Name><Manufacturer>Acme</Manufacturer>
      <Model>IPC</Model><ParentID>{nvr}</ParentID><Parental>0</Parental><Status>ON</Status>
      </Item></DeviceList></Notify>
    ]]>
  </send>
  <recv response="200" />
  <send retrans="500">
    <![CDATA[

      MESSAGE sip:{district}@{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{nvr}@{domain}>;tag=[pid]A[call_number]
      To: <sip:{district}@{domain}>
      Call-ID: [call_id]
      CSeq: 102 MESSAGE
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      <?xml version="1.0" encoding="GB2312"?>
      <Notify><CmdType>Alarm</CmdType><SN>902</SN><DeviceID>{camera}</DeviceID>
      <AlarmPriority>1</AlarmPriority><AlarmMethod>5</AlarmMethod>
      <AlarmTime>2026-11-22T10:00:00</AlarmTime><AlarmDescription>motion</AlarmDescription>
      <Info><AlarmType>2</AlarmType></Info></Notify>
    ]]>
  </send>
  <recv response="200" />
  <label id="end" />
</scenario>
"""


@dataclass
class Chain:
    """The three platforms of a running chain."""

    province: Platform
    city: Platform
    district: Platform

    async def stop(self) -> None:
        for platform in (self.district, self.city, self.province):
            await platform.stop()


def _env(root: Path, name: str, sip_id: str, ports: int, **extra: str) -> dict[str, str]:
    (root / name).mkdir(parents=True, exist_ok=True)
    env = platform_env(
        root / name,
        GB28181_SIP_ID=sip_id,
        GB28181_SIP_PASSWORD=PASSWORDS[sip_id],
        GB28181_CERTS_CA_DIR=str(root / "ca"),  # one provincial CA
        GB28181_MEDIA_LISTEN="127.0.0.1",
        GB28181_MEDIA_IDLE_DELAY="0.2",
        GB28181_MEDIA_PORT_FIRST=str(ports),
        GB28181_MEDIA_PORT_LAST=str(ports + 99),
    )
    env.update(extra)
    return env


def _upstream(root: Path, name: str, upper_id: str, upper: Platform) -> Path:
    toml = root / name / "gb28181.toml"
    toml.write_text(
        f"""
[[upstream]]
id = "{upper_id}"
host = "127.0.0.1"
port = {upper.sip_addr[1]}
password = "{PASSWORDS[upper_id]}"
keepalive_interval = 5
retry_min = 0.5
retry_max = 2
share = ["{CAMERA}"]
"""
    )
    return toml


async def _provision_district(url: str) -> None:
    """The district already knows the NVR and its camera (an earlier catalog)."""
    async with await open_store(url) as store:
        await store.upsert_devices([DeviceRecord(NVR, "device", name="NVR")])
        await store.upsert_channels(
            NVR,
            [
                ChannelRecord(NVR, NVR, (), kind="device", name="NVR", status="ON"),
                ChannelRecord(NVR, CAMERA, (NVR,), name="Gate camera", status="ON"),
            ],
        )


async def start_chain(root: Path, *, province_mode: str = "UDP", province_level: int = 1) -> Chain:
    """Start province, city and district under ``root`` (one directory each, one CA).

    The province receives in ``province_mode`` (TCP passive: the city connects to it; TCP
    active: it connects to the city); the lower legs use UDP. Each upper platform's account
    is bound to a platform certificate at the platform below it, before that one starts (as
    an operator does with ``gb28181 certs bind``): level 1, the province's ``province_level``.
    """
    ca = root / "ca"
    started: list[Platform] = []
    try:
        # The province and the city subscribe to the alarms of the platform below them.
        province_env = _env(
            root,
            "province",
            PROVINCE,
            31400,
            GB28181_MEDIA_STREAM_MODE=province_mode,
            GB28181_DEVICES_ALARM_SUBSCRIBE="true",
        )
        province = Platform(load_config(None, env=province_env))
        await province.start()
        started.append(province)

        city_env = _env(root, "city", CITY, 31500, GB28181_DEVICES_ALARM_SUBSCRIBE="true")
        city_cfg = load_config(_upstream(root, "city", PROVINCE, province), env=city_env)
        await bind_peer(
            ca, city_cfg.storage.url, PROVINCE, level=province_level, department="province"
        )
        city = Platform(city_cfg)
        await city.start()
        started.append(city)

        # Its catalog of the NVR is provisioned (below), so it does not query the NVR's.
        district_env = _env(
            root, "district", DISTRICT, 31600, GB28181_DEVICES_CATALOG_ON_REGISTER="false"
        )
        district_cfg = load_config(_upstream(root, "district", CITY, city), env=district_env)
        await bind_peer(ca, district_cfg.storage.url, CITY, level=1, department="city")
        await _provision_district(district_cfg.storage.url)
        district = Platform(district_cfg)
        await district.start()
        started.append(district)
    except BaseException:
        for platform in reversed(started):
            await platform.stop()
        raise
    return Chain(province, city, district)


async def start_nvr(district: Platform, tmp_path: Path) -> asyncio.subprocess.Process:
    """SIPp as the NVR at the bottom: registers to the district, answers its INVITEs and its
    DeviceControl (then reports a catalog change and an alarm of the camera); messages logged
    in ``nvr_messages.log``."""
    fmt = {
        "district": DISTRICT,
        "domain": DISTRICT[:10],
        "nvr": NVR,
        "camera": CAMERA,
        "ssrc": ANSWER_SSRC,
        "new_name": NEW_NAME,
    }
    main = tmp_path / "nvr.xml"
    main.write_text(register_scenario(NVR, DISTRICT, DISTRICT[:10], hold_ms=60000))
    ooc = tmp_path / "nvr_ooc.xml"
    ooc.write_text(_NVR_OOC.format(**fmt))
    host, port = district.sip_addr
    return await asyncio.create_subprocess_exec(
        sipp_path(),
        "-sf", str(main),
        "-oocsf", str(ooc),
        "-t", "u1",
        "-i", "127.0.0.1",
        "-p", str(free_port()),
        "-au", NVR,
        "-ap", PASSWORDS[DISTRICT],
        "-m", "1",
        "-timeout", "90",
        "-nostdin",
        "-trace_err",
        "-trace_msg",
        "-error_file", str(tmp_path / "nvr_errors.log"),
        "-message_file", str(tmp_path / "nvr_messages.log"),
        f"{host}:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=tmp_path,
    )  # fmt: skip


async def bind_peer(
    ca_dir: Path, store_url: str, account_id: str, *, level: int = 1, department: str = "cascade"
) -> None:
    """Issue a ``platform`` certificate for ``account_id`` and bind it in ``store_url``.

    The CLI runs its own event loop, so it runs in a thread here.
    """

    def run() -> None:
        if not (ca_dir / "ca-cert.pem").exists():
            assert cli(["certs", "init-ca", "--ca-dir", str(ca_dir)]) == 0
        out = ca_dir / "issued-peers"
        cert = out / f"{account_id}.cert.pem"
        if not cert.exists():
            out.mkdir(parents=True, exist_ok=True)
            argv = ["certs", "issue", "--ca-dir", str(ca_dir), "--kind", "platform"]
            argv += ["--id", account_id, "--department", department, "--level", str(level)]
            argv += ["--out-dir", str(out)]
            assert cli(argv) == 0
        argv = ["certs", "bind", account_id, str(cert), "--ca-dir", str(ca_dir)]
        assert cli([*argv, "--store-url", store_url]) == 0

    await asyncio.to_thread(run)


def registered(platform: Platform, device_id: str) -> bool:
    """Whether ``device_id`` is registered at ``platform``."""
    assert platform.registrar is not None
    st = platform.registrar.get(device_id)
    return st is not None and st.registered


def channel_name(platform: Platform, device_id: str) -> str | None:
    """The camera's name in ``platform``'s catalog of ``device_id`` (None: not there)."""
    assert platform.catalogs is not None
    tree = platform.catalogs.trees.get(device_id)
    node = tree.get(CAMERA) if tree is not None else None
    return node.item.name if node is not None else None
