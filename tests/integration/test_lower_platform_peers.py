"""A lower platform (type-200 ID) in our tree, over real sockets against SIPp.

SIPp plays the lower platform: it registers with digest and keeps alive every second. Its
out-of-call scenario answers our Catalog query with a catalog of **20,000 items** (3 regions, a
business group, 10 virtual organisations, 19,986 cameras with GB2312 Chinese names; some
cameras are placed only by CivilCode) in 1,000 MESSAGEs of 20 items. The items come from an
injection file (``-inf``; a scenario file holds at most 64 KiB): line *i* is the ``DeviceList``
content of MESSAGE *i*, read with ``[field0 line="[$i]"]`` in a loop. It then accepts our
catalog SUBSCRIBE and NOTIFYs OFF for three cameras, and 4 s later ON for two of them; after
that it stops keeping alive (a global variable the main scenario reads), so the platform
declares it offline and its channels with it; 15 s later it keeps alive again and its channels
are back with the status each last reported.

Then the other direction: the lower platform, bound to a level-3 certificate of its own
department with the real CLI, queries our catalog and subscribes to it: it gets exactly the
channels it may view (not the specific-area or unshared ones of other departments) and is told
of a change. Last, playing one of its channels: a slow answer (longer than the default INVITE
timeout and the no-media timeout), its own SSRC, its media server's address (UDP and TCP
active).
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest

from gb28181 import manscdp
from gb28181.server import Platform
from tests.helpers import sipp_path

from .cascade_helpers import bind_peer
from .conftest import (
    DOMAIN,
    PASSWORD,
    SERVER_ID,
    api_client,
    free_port,
    platform_env,
    start_platform,
)
from .sipp_device import sipp_errors, wait_until

pytestmark = pytest.mark.peer

LOWER = "34020000002000000002"  # the lower platform (type 200)
GROUP = "34020200002150000001"
REGIONS = [("34", "安徽省"), ("3402", "合肥市"), ("340202", "瑶海区")]
ORGS = [f"340202000021600000{n:02d}" for n in range(1, 11)]
TOTAL = 20_000
CAMERAS = TOTAL - len(REGIONS) - 1 - len(ORGS)
PER_MESSAGE = 20
OFF = 3  # cameras 1..3 go OFF; 1 and 2 come back ON


def camera(n: int) -> str:
    return f"3402020000132{n:07d}"


def camera_parent(n: int) -> str:
    """Every 100th camera has no ParentID (placed by its CivilCode, 340202)."""
    return "340202" if n % 100 == 0 else ORGS[n % len(ORGS)]


def catalog_items() -> list[str]:
    items = [f"<Item><DeviceID>{rid}</DeviceID><Name>{name}</Name></Item>" for rid, name in REGIONS]
    items.append(
        f"<Item><DeviceID>{GROUP}</DeviceID><Name>公安业务分组</Name>"
        f"<ParentID>{LOWER}</ParentID></Item>"
    )
    for i, org in enumerate(ORGS, start=1):
        items.append(
            f"<Item><DeviceID>{org}</DeviceID><Name>第{i}派出所</Name><ParentID>{GROUP}</ParentID>"
            f"<BusinessGroupID>{GROUP}</BusinessGroupID></Item>"
        )
    for n in range(1, CAMERAS + 1):
        parent = "" if n % 100 == 0 else f"<ParentID>{camera_parent(n)}</ParentID>"
        items.append(
            f"<Item><DeviceID>{camera(n)}</DeviceID><Name>摄像机{n:05d}号</Name>"
            f"<Manufacturer>海康</Manufacturer><CivilCode>340202</CivilCode>"
            f"<Address>合肥市瑶海区</Address><Parental>0</Parental>{parent}"
            f"<Status>ON</Status></Item>"
        )
    assert len(items) == TOTAL
    return items


def injection_file(path: Path) -> int:
    """One line per MESSAGE: ``DeviceList`` content;Num. Returns the number of lines."""
    items = catalog_items()
    lines = ["SEQUENTIAL"]
    for start in range(0, TOTAL, PER_MESSAGE):
        chunk = items[start : start + PER_MESSAGE]
        assert not any(";" in i for i in chunk)
        lines.append("".join(chunk) + f";{len(chunk)}")
    path.write_bytes(("\n".join(lines) + "\n").encode("gb2312"))
    return len(lines) - 1


_REGISTER = """
  <send retrans="500">
    <![CDATA[

      REGISTER sip:{server}@{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{lower}@{domain}>;tag=[pid]R[call_number]
      To: <sip:{lower}@{domain}>
      Call-ID: [call_id]
      CSeq: {cseq} REGISTER
      Contact: <sip:{lower}@[local_ip]:[local_port]>{auth}
      Max-Forwards: 70
      User-Agent: SIPp lower platform
      Expires: 3600
      Content-Length: 0

    ]]>
  </send>
"""

_KEEPALIVE_SEND = """
  <send retrans="500">
    <![CDATA[

      MESSAGE sip:{server}@{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]-[cseq]
      From: <sip:{lower}@{domain}>;tag=[pid]K[call_number]
      To: <sip:{server}@{domain}>
      Call-ID: [call_id]
      CSeq: [cseq] MESSAGE
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      <?xml version="1.0" encoding="GB2312"?>
      <Notify>
      <CmdType>Keepalive</CmdType>
      <SN>[cseq]</SN>
      <DeviceID>{lower}</DeviceID>
      <Status>OK</Status>
      </Notify>
    ]]>
  </send>
  <recv response="200" />
"""

# The keepalive loop; when the out-of-call scenario has seen our Catalog query (global
# ``query``), the answer: MESSAGE i carries line i of the injection file, with a keepalive
# every 50 MESSAGEs. Out-of-call scenarios cannot read injection files, so the answer goes out
# here, in the main call.
_LOOP = """
  <label id="1" />
{keepalive}
  <pause milliseconds="500" />
  <nop>
    <action>
      <test assign_to="asked" variable="query" compare="greater_than" value="0" />
      <test assign_to="quiet" variable="stop" compare="greater_than" value="0" />
    </action>
  </nop>
  <nop next="3" test="asked" />
  <nop next="2" test="quiet" />
  <nop next="1" />
  <label id="3" />
  <nop>
    <action>
      <assign assign_to="query" value="0" />
      <assign assign_to="i" value="0" />
      <assign assign_to="j" value="0" />
    </action>
  </nop>
  <label id="4" />
  <send retrans="500">
    <![CDATA[

      MESSAGE sip:{server}@{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]-[cseq]
      From: <sip:{lower}@{domain}>;tag=[pid]C[call_number]
      To: <sip:{server}@{domain}>
      Call-ID: [call_id]
      CSeq: [cseq] MESSAGE
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      <?xml version="1.0" encoding="GB2312"?>
      <Response>
      <CmdType>Catalog</CmdType>
      <SN>[$sn]</SN>
      <DeviceID>{lower}</DeviceID>
      <SumNum>{total}</SumNum>
      <DeviceList Num="[field1 line="[$i]"]">[field0 line="[$i]"]</DeviceList>
      </Response>
    ]]>
  </send>
  <recv response="200" />
  <nop>
    <action>
      <add assign_to="i" value="1" />
      <add assign_to="j" value="1" />
      <test assign_to="more" variable="i" compare="less_than" value="{messages}" />
      <test assign_to="due" variable="j" compare="greater_than_equal" value="50" />
    </action>
  </nop>
  <nop next="5" test="due" />
  <nop next="4" test="more" />
  <nop next="1" />
  <label id="5" />
  <nop>
    <action>
      <assign assign_to="j" value="0" />
    </action>
  </nop>
{keepalive}
  <nop next="4" test="more" />
  <nop next="1" />
  <label id="2" />
  <pause milliseconds="15000" />
  <label id="6" />
{keepalive}
  <pause milliseconds="1000" />
  <nop next="6" />
"""


def main_scenario(messages: int) -> str:
    fmt = {"server": SERVER_ID, "domain": DOMAIN, "lower": LOWER}
    keepalive = _KEEPALIVE_SEND.format(**fmt)
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="lower platform">\n'
        '  <Global variables="stop,query,sn" />\n'
        + _REGISTER.format(cseq=1, auth="", **fmt)
        + '  <recv response="401" auth="true" />\n'
        + _REGISTER.format(cseq=2, auth="\n      [authentication]", **fmt)
        + '  <recv response="200" />\n'
        + _LOOP.format(keepalive=keepalive, total=TOTAL, messages=messages, **fmt)
        + "</scenario>\n"
    )


def _notify(cseq: int, events: list[tuple[str, str]]) -> str:
    items = "".join(
        f"<Item><DeviceID>{cid}</DeviceID><Event>{event}</Event></Item>" for cid, event in events
    )
    body = (
        '<?xml version="1.0" encoding="GB2312"?>\n<Notify>\n<CmdType>Catalog</CmdType>\n'
        f"<SN>{cseq}</SN>\n<DeviceID>{LOWER}</DeviceID>\n<SumNum>{len(events)}</SumNum>\n"
        f'<DeviceList Num="{len(events)}">{items}</DeviceList>\n</Notify>'
    )
    return f"""
  <send retrans="500">
    <![CDATA[

      NOTIFY sip:{SERVER_ID}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{LOWER}@{DOMAIN}>;tag=[pid]S[call_number]
      To: [$from]
      Call-ID: [call_id]
      CSeq: {cseq} NOTIFY
      Contact: <sip:{LOWER}@[local_ip]:[local_port]>
      Event: [$event]
      Subscription-State: active;expires=3600
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      {body}
    ]]>
  </send>
  <recv response="200" />
"""


def ooc_scenario() -> str:
    ok = """
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]{tag}[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:{lower}@[local_ip]:[local_port]>
      {extra}Content-Length: 0

    ]]>
  </send>
"""
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="lower platform ooc">\n'
        '  <Global variables="stop,query,sn" />\n'
        '  <recv request="SUBSCRIBE" optional="true" next="sub">\n    <action>\n'
        '      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="from" />\n'
        '      <ereg regexp=".*" search_in="hdr" header="Event:" assign_to="event" />\n'
        "    </action>\n  </recv>\n"
        '  <recv request="MESSAGE">\n    <action>\n'
        '      <ereg regexp="&lt;SN&gt;([0-9]+)&lt;/SN&gt;" search_in="body" check_it="true"'
        ' assign_to="all,sn" />\n'
        '      <log message="Catalog query [$all]" />\n'
        '      <assign assign_to="query" value="1" />\n'
        "    </action>\n  </recv>\n"
        + ok.format(tag="O", lower=LOWER, extra="")
        + '  <nop next="end" />\n'
        + '  <label id="sub" />\n'
        + ok.format(tag="S", lower=LOWER, extra="Expires: 3600\n      ")
        + '  <pause milliseconds="500" />\n'
        + _notify(1, [(camera(n), "OFF") for n in range(1, OFF + 1)])
        + '  <pause milliseconds="4000" />\n'
        + _notify(2, [(camera(n), "ON") for n in range(1, OFF)])
        + '  <nop>\n    <action>\n      <assign assign_to="stop" value="1" />\n'
        "    </action>\n  </nop>\n"
        + '  <pause milliseconds="20000" />\n'
        + '  <label id="end" />\n</scenario>\n'
    )


async def start_lower_platform(
    platform: Platform, tmp_path: Path, *, timeout: int = 120
) -> asyncio.subprocess.Process:
    """SIPp as the lower platform, with the catalog in its injection file."""
    messages = injection_file(tmp_path / "catalog.csv")
    return await start_sipp(
        platform,
        tmp_path,
        main_scenario(messages),
        ooc_scenario(),
        "-inf",
        str(tmp_path / "catalog.csv"),
        timeout=timeout,
    )


async def start_sipp(
    platform: Platform, tmp_path: Path, main_xml: str, ooc_xml: str, *args: str, timeout: int
) -> asyncio.subprocess.Process:
    """SIPp as the lower platform ``LOWER`` (digest with the test password) against
    ``platform``, with extra SIPp ``args``; errors go to ``sipp_errors.log``."""
    main = tmp_path / "lower.xml"
    main.write_bytes(main_xml.encode("gb2312"))  # bodies in GB2312, as devices send
    ooc = tmp_path / "lower_ooc.xml"
    ooc.write_bytes(ooc_xml.encode("gb2312"))
    host, port = platform.sip_addr
    return await asyncio.create_subprocess_exec(
        sipp_path(),
        "-sf", str(main),
        "-oocsf", str(ooc),
        *args,
        "-t", "u1",
        "-i", "127.0.0.1",
        "-p", str(free_port()),
        "-au", LOWER,
        "-ap", PASSWORD,
        "-m", "1",
        "-timeout", str(timeout),
        "-nostdin",
        "-trace_err",
        "-error_file", str(tmp_path / "sipp_errors.log"),
        f"{host}:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=tmp_path,
    )  # fmt: skip


async def all_channels(http: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every node the API lists under the lower platform (pages of 1,000), and the last page's
    envelope."""
    nodes: dict[str, Any] = {}
    offset = 0
    body: dict[str, Any] = {}
    while True:
        r = await http.get(
            f"/api/v1/devices/{LOWER}/channels", params={"limit": 1000, "offset": offset}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        nodes.update({i["id"]: i for i in body["items"]})
        offset += len(body["items"])
        if not body["items"] or offset >= body["total"]:
            return nodes, body


async def test_lower_platform_catalog_of_20000_items_status_and_keepalive(
    tmp_path: Path,
) -> None:
    platform = await start_platform(
        platform_env(
            tmp_path,
            GB28181_SIP_KEEPALIVE_INTERVAL="1",
            GB28181_SIP_KEEPALIVE_MISSES="3",
        )
    )
    # The administrator is made before the catalog floods the store with writes.
    client = api_client(platform, timeout=60)
    proc = await start_lower_platform(platform, tmp_path)
    try:
        catalogs = platform.catalogs
        assert catalogs is not None

        async def synced() -> bool:
            if proc.returncode is not None:
                return True
            return catalogs.last_result.get(LOWER) is not None

        assert await wait_until(synced, steps=1800, interval=0.05), sipp_errors(tmp_path)
        assert catalogs.last_result.get(LOWER) == "complete", (
            catalogs.last_result,
            sipp_errors(tmp_path),
        )
        async with client as http:
            nodes, envelope = await all_channels(http)
            assert envelope["total"] == TOTAL and len(nodes) == TOTAL
            assert envelope["sync"] == "complete"
            # Every item as the lower platform described it, GB2312 names decoded.
            for rid, name in REGIONS:
                assert nodes[rid]["name"] == name and nodes[rid]["kind"] == "region"
            assert nodes[GROUP]["kind"] == "business_group" and nodes[GROUP]["parent_ids"] == []
            for i, org in enumerate(ORGS, start=1):
                node = nodes[org]
                assert (node["name"], node["kind"], node["parent_ids"]) == (
                    f"第{i}派出所",
                    "virtual_org",
                    [GROUP],
                )
            for n in range(1, CAMERAS + 1):
                node = nodes[camera(n)]
                assert node["name"] == f"摄像机{n:05d}号", node
                assert node["parent_ids"] == [camera_parent(n)], node
                assert node["kind"] == "channel" and node["civil_code"] == "340202"
                assert node["manufacturer"] == "海康" and node["address"] == "合肥市瑶海区"
            # The tree keeps its organisation: regions 34 > 3402 > 340202 (with the cameras
            # placed by CivilCode), and the business group > 10 organisations > cameras.
            tree = (await http.get(f"/api/v1/devices/{LOWER}/tree")).json()
            assert tree["total"] == TOTAL and tree["not_shown"] == 0
            roots = {r["id"]: r for r in tree["roots"]}
            assert set(roots) == {"34", GROUP}
            (city,) = roots["34"]["children"]
            (district,) = city["children"]
            assert district["id"] == "340202"
            assert len(district["children"]) == CAMERAS // 100
            orgs = roots[GROUP]["children"]
            assert [o["id"] for o in orgs] == ORGS
            assert sum(len(o["children"]) for o in orgs) == CAMERAS - CAMERAS // 100

            # Catalog NOTIFY in the subscription: OFF for three, then ON for two.
            async def status(n: int) -> str:
                r = await http.get(
                    f"/api/v1/devices/{LOWER}/channels",
                    params={"parent": camera_parent(n), "limit": 1000},
                )
                return str({i["id"]: i["status"] for i in r.json()["items"]}[camera(n)])

            async def off() -> bool:
                return [await status(n) for n in range(1, OFF + 1)] == ["OFF"] * OFF

            assert await wait_until(off, steps=400, interval=0.05), sipp_errors(tmp_path)

            async def back_on() -> bool:
                return [await status(n) for n in range(1, OFF + 1)] == ["ON", "ON", "OFF"]

            assert await wait_until(back_on, steps=400, interval=0.05), sipp_errors(tmp_path)
            assert await status(OFF + 1) == "ON"

            # Keepalives stop: the lower platform goes offline and its channels with it; the
            # status each last reported is kept for when it comes back.
            async def offline() -> bool:
                r = await http.get(
                    f"/api/v1/devices/{LOWER}/channels", params={"status": "ON", "limit": 1}
                )
                return bool(r.json()["total"] == 0)

            assert await wait_until(offline, steps=300, interval=0.05), sipp_errors(tmp_path)
            nodes, _ = await all_channels(http)
            channels = [v for v in nodes.values() if v["kind"] == "channel"]
            assert len(channels) == CAMERAS
            assert all(c["status"] == "OFF" for c in channels)
            assert sum(c["reported_status"] == "ON" for c in channels) == CAMERAS - 1
            registrar = platform.registrar
            assert registrar is not None
            st = registrar.get(LOWER)
            assert st is not None and not st.record.online

            # It keeps alive again: its channels are back with the status each last reported.
            async def back() -> bool:
                r = await http.get(
                    f"/api/v1/devices/{LOWER}/channels", params={"status": "ON", "limit": 1}
                )
                return bool(r.json()["total"] == CAMERAS - 1)

            assert await wait_until(back, steps=600, interval=0.05), sipp_errors(tmp_path)
            assert await status(OFF) == "OFF" and await status(1) == "ON"
    finally:
        await client.aclose()
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        await platform.stop()


# -- a Catalog query from the lower platform to us --------------------------------------------

NVR = "34020000001180000001"  # a device of ours carrying the channels we may publish


def our_camera(n: int) -> str:
    return f"3402000000132{n:07d}"


#: Our channels: (security class, owner department, shared) and whether a level-3 principal
#: of department "district-9" may view it (第十六条: shared channels except specific areas,
#: and its own department's).
OUR_CHANNELS = {
    our_camera(1): (0, "traffic", True, True),  # shared
    our_camera(2): (4, "traffic", True, False),  # shared, but a specific area
    our_camera(3): (0, "district-9", False, True),  # its own department's
    our_camera(4): (0, "traffic", False, False),  # not shared
    our_camera(5): (4, "district-9", False, True),  # its own, specific area (own wins)
    our_camera(6): (2, "water", True, True),  # shared, below the threshold
}


def query_main_scenario() -> str:
    fmt = {"server": SERVER_ID, "domain": DOMAIN, "lower": LOWER}
    query = (
        '<?xml version="1.0" encoding="GB2312"?>\n<Query>\n<CmdType>Catalog</CmdType>\n'
        f"<SN>4711</SN>\n<DeviceID>{SERVER_ID}</DeviceID>\n</Query>"
    )
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="lower platform asks">\n'
        + _REGISTER.format(cseq=1, auth="", **fmt)
        + '  <recv response="401" auth="true" />\n'
        + _REGISTER.format(cseq=2, auth="\n      [authentication]", **fmt)
        + '  <recv response="200" />\n'
        + _KEEPALIVE_SEND.format(**fmt)
        + '  <pause milliseconds="1500" />\n'
        + f"""
  <send retrans="500">
    <![CDATA[

      MESSAGE sip:{SERVER_ID}@{DOMAIN} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{LOWER}@{DOMAIN}>;tag=[pid]Q[call_number]
      To: <sip:{SERVER_ID}@{DOMAIN}>
      Call-ID: [call_id]
      CSeq: [cseq] MESSAGE
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      {query}
    ]]>
  </send>
  <recv response="200" />
  <pause milliseconds="1000" />
  <send retrans="500">
    <![CDATA[

      SUBSCRIBE sip:{SERVER_ID}@{DOMAIN} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{LOWER}@{DOMAIN}>;tag=[pid]S[call_number]
      To: <sip:{SERVER_ID}@{DOMAIN}>
      Call-ID: [call_id]
      CSeq: [cseq] SUBSCRIBE
      Contact: <sip:{LOWER}@[local_ip]:[local_port]>
      Event: Catalog;id=9
      Expires: 60
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      {query}
    ]]>
  </send>
  <recv response="200" />
{_NOTIFY_OK}
{_NOTIFY_OK}
  <pause milliseconds="20000" />
</scenario>
"""
    )


#: Take one NOTIFY in the subscription dialog (the initial one, then the change).
_NOTIFY_OK = """  <recv request="NOTIFY" />
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
  </send>"""


def answer_ooc_scenario() -> str:
    """Every MESSAGE from us (our answer's chunks) is taken with 200."""
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="takes our answer">\n'
        '  <recv request="MESSAGE" />\n'
        "  <send>\n    <![CDATA[\n\n      SIP/2.0 200 OK\n      [last_Via:]\n"
        "      [last_From:]\n      [last_To:];tag=[pid]A[call_number]\n      [last_Call-ID:]\n"
        "      [last_CSeq:]\n      Content-Length: 0\n\n    ]]>\n  </send>\n</scenario>\n"
    )


def answers(log: bytes) -> list[manscdp.CatalogResponse]:
    """The Catalog Response bodies SIPp received (from its message trace)."""
    out = []
    for body in re.findall(rb"<Response>.*?</Response>", log, re.DOTALL):
        message = manscdp.decode(b'<?xml version="1.0" encoding="GB2312"?>\r\n' + body)
        assert isinstance(message, manscdp.CatalogResponse)
        out.append(message)
    return out


async def test_catalog_query_from_the_lower_platform_gets_what_its_certificate_allows(
    tmp_path: Path,
) -> None:
    platform = await start_platform(
        platform_env(tmp_path, GB28181_DEVICES_CATALOG_ON_REGISTER="false")
    )
    proc: asyncio.subprocess.Process | None = None
    try:
        # Level 3 of department "district-9", bound to the lower platform's account with the
        # real CLI (certs issue + certs bind).
        await bind_peer(
            Path(platform.config.certs.ca_dir),
            platform.config.storage.url,
            LOWER,
            level=3,
            department="district-9",
        )
        catalogs = platform.catalogs
        assert catalogs is not None
        items = [
            manscdp.CatalogItem(device_id=cid, name=f"路口{cid[-2:]}号", parent_id=NVR, status="ON")
            for cid in OUR_CHANNELS
        ]
        catalogs.tree(NVR).apply_catalog(items, platform.clock())
        async with api_client(platform) as http:
            for cid, (security_class, owner, shared, _) in OUR_CHANNELS.items():
                r = await http.patch(
                    f"/api/v1/channels/{cid}",
                    json={
                        "security_class": security_class,
                        "owner_department": owner,
                        "shared": shared,
                    },
                )
                assert r.status_code == 200, r.text
        proc = await start_sipp(
            platform,
            tmp_path,
            query_main_scenario(),
            answer_ooc_scenario(),
            "-trace_msg",
            "-message_file",
            str(tmp_path / "msg.log"),
            timeout=40,
        )
        got: list[manscdp.CatalogResponse] = []

        async def answered() -> bool:
            log = tmp_path / "msg.log"
            got[:] = answers(log.read_bytes()) if log.exists() else []
            total = sum(len(g.items) for g in got)
            return bool(got) and total == got[0].sum_num

        assert await wait_until(answered, steps=400, interval=0.05), (got, sipp_errors(tmp_path))
        assert all(g.sn == 4711 and g.device_id == SERVER_ID for g in got)
        listed = [i for g in got for i in g.items]
        assert listed[0].device_id == SERVER_ID and listed[0].parental == 1  # our platform
        channels = {i.device_id: i for i in listed[1:]}
        visible = {cid for cid, (*_, may) in OUR_CHANNELS.items() if may}
        assert set(channels) == visible
        assert got[0].sum_num == len(visible) + 1
        # IDs as we publish them, placed under our platform, with the names in GB2312; the
        # NVR carrying them is not registered now, so they are published OFF.
        cam3 = channels[our_camera(3)]
        assert cam3.name == "路口03号" and cam3.parent_id == SERVER_ID and cam3.status == "OFF"
        assert "路口01号".encode("gb2312") in (tmp_path / "msg.log").read_bytes()
        responder = platform.catalog_responder
        assert responder is not None and responder.answered == 1

        # Its catalog SUBSCRIBE: accepted, confirmed by a bodiless NOTIFY; when one of the
        # channels it sees is deleted, it is told (DEL); a change of a hidden one is not told.
        async def subscribed() -> bool:
            return any(s.ready and s.notifies for s in responder.subscriptions.values())

        assert await wait_until(subscribed, steps=400, interval=0.05), sipp_errors(tmp_path)
        (sub,) = responder.subscriptions.values()
        assert sub.published == {our_camera(n) for n in (1, 3, 5, 6)}
        for hidden in (our_camera(2), our_camera(1)):  # hidden first: nothing goes out for it
            catalogs.apply_notify(
                NVR,
                manscdp.CatalogResponse(
                    root=manscdp.Root.NOTIFY,
                    items=(manscdp.CatalogItem(device_id=hidden, event="DEL"),),
                ),
                platform.clock(),
            )

        async def told() -> bool:
            log = (tmp_path / "msg.log").read_bytes()
            return log.count(b"<Event>DEL</Event>") == 1

        assert await wait_until(told, steps=200, interval=0.05), sipp_errors(tmp_path)
        log = (tmp_path / "msg.log").read_bytes()
        at = log.index(b"<Event>DEL</Event>")
        notify = log[log.rindex(b"<Notify>", 0, at) : log.index(b"</Notify>", at)]
        assert our_camera(1).encode() in notify and our_camera(2).encode() not in notify
        assert b"NOTIFY sip:" in log and b"Subscription-State: active" in log
    finally:
        if proc is not None:
            if proc.returncode is None:
                proc.terminate()
            await proc.wait()
        await platform.stop()


# -- playing a lower platform's channel ---------------------------------------------------------

LOWER_CAMERA = "34020200001320000777"
LOWER_SSRC = "1340200777"  # the lower platform's own y=, not the one we offered
MEDIA_SERVER = "127.0.0.2"  # its media server: not its SIP address (127.0.0.1)


def play_ooc_scenario(media_port: int, proto: str, setup: str) -> str:
    """Answers our Catalog query with one camera; answers our INVITE slowly (100 Trying, then
    200 after 2.5 s) with its media server's address and its own SSRC; takes ACK and BYE."""
    catalog = (
        '<?xml version="1.0" encoding="GB2312"?>\n<Response>\n<CmdType>Catalog</CmdType>\n'
        f"<SN>[$sn]</SN>\n<DeviceID>{LOWER}</DeviceID>\n<SumNum>1</SumNum>\n"
        f'<DeviceList Num="1"><Item><DeviceID>{LOWER_CAMERA}</DeviceID><Name>卡口</Name>'
        f"<ParentID>{LOWER}</ParentID><Status>ON</Status></Item></DeviceList>\n</Response>"
    )
    reply = """
  <send>
    <![CDATA[

      SIP/2.0 {status}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]P[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:{lower}@[local_ip]:[local_port]>
{extra}
    ]]>
  </send>
"""
    sdp = (
        "      Content-Type: application/sdp\n      Content-Length: [len]\n\n"
        f"      v=0\n      o={LOWER_CAMERA} 0 0 IN IP4 {MEDIA_SERVER}\n      s=Play\n"
        f"      c=IN IP4 {MEDIA_SERVER}\n      t=0 0\n      m=video {media_port} {proto} 96\n"
        f"      a=sendonly{setup}\n      a=rtpmap:96 PS/90000\n      y={LOWER_SSRC}\n      f=\n"
    )
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="lower platform plays">\n'
        '  <recv request="INVITE" optional="true" next="invite" />\n'
        '  <recv request="MESSAGE">\n    <action>\n'
        '      <ereg regexp="&lt;SN&gt;([0-9]+)&lt;/SN&gt;" search_in="body" check_it="true"'
        ' assign_to="all,sn" />\n      <log message="Catalog query [$all]" />\n'
        "    </action>\n  </recv>\n"
        + reply.format(status="200 OK", lower=LOWER, extra="      Content-Length: 0\n")
        + f"""
  <send retrans="500">
    <![CDATA[

      MESSAGE sip:{SERVER_ID}@{DOMAIN} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{LOWER}@{DOMAIN}>;tag=[pid]C[call_number]
      To: <sip:{SERVER_ID}@{DOMAIN}>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      {catalog}
    ]]>
  </send>
  <recv response="200" next="end" />
  <label id="invite" />
"""
        + reply.format(status="100 Trying", lower=LOWER, extra="      Content-Length: 0\n")
        + '  <pause milliseconds="2500" />\n'
        + reply.format(status="200 OK", lower=LOWER, extra=sdp)
        + '  <recv request="ACK" />\n  <recv request="BYE" />\n'
        + reply.format(status="200 OK", lower=LOWER, extra="      Content-Length: 0\n")
        + '  <label id="end" />\n</scenario>\n'
    )


def play_main_scenario() -> str:
    fmt = {"server": SERVER_ID, "domain": DOMAIN, "lower": LOWER}
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="lower platform">\n'
        + _REGISTER.format(cseq=1, auth="", **fmt)
        + '  <recv response="401" auth="true" />\n'
        + _REGISTER.format(cseq=2, auth="\n      [authentication]", **fmt)
        + '  <recv response="200" />\n'
        + _KEEPALIVE_SEND.format(**fmt)
        + '  <pause milliseconds="30000" />\n</scenario>\n'
    )


@pytest.mark.parametrize("mode", ["UDP", "TCP-ACTIVE"])
async def test_play_a_lower_platform_channel_slow_answer_own_ssrc_media_server(
    tmp_path: Path, mode: str
) -> None:
    """The INVITE waits longer than ``media.invite_timeout`` (a lower platform's timeout
    applies) and than ``media.no_media_timeout`` (the receiver is held); the stream is taken
    from the answer's media server with the answer's SSRC (UDP: it sends from there; TCP
    active: we connect there)."""
    from .test_calls_peers import FRAMES, decoded_frames, load_capture, with_ssrc

    platform = await start_platform(
        platform_env(
            tmp_path,
            GB28181_DEVICES_CATALOG_SUBSCRIBE="false",
            GB28181_MEDIA_LISTEN="127.0.0.1",
            GB28181_MEDIA_STREAM_MODE=mode,
            GB28181_MEDIA_INVITE_TIMEOUT="1",
            GB28181_DEVICES_PLATFORM_INVITE_TIMEOUT="10",
            # Shorter than the answer takes: silence before the answer is not a dead stream.
            GB28181_MEDIA_NO_MEDIA_TIMEOUT="1.5",
            GB28181_MEDIA_IDLE_DELAY="0.2",
        )
    )
    listener: socket.socket | None = None
    media: socket.socket | None = None
    if mode == "UDP":
        media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        media.bind((MEDIA_SERVER, 0))
        port, proto, setup = 15060, "RTP/AVP", ""
    else:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((MEDIA_SERVER, 0))
        listener.listen(1)
        listener.setblocking(False)
        port, proto = listener.getsockname()[1], "TCP/RTP/AVP"
        setup = "\n      a=setup:passive\n      a=connection:new"
    consumer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    consumer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    consumer.bind(("127.0.0.1", 0))
    consumer.setblocking(False)
    proc = await start_sipp(
        platform,
        tmp_path,
        play_main_scenario(),
        play_ooc_scenario(port, proto, setup),
        timeout=40,
    )
    try:
        catalogs = platform.catalogs
        assert catalogs is not None

        async def known() -> bool:
            tree = catalogs.trees.get(LOWER)
            return tree is not None and LOWER_CAMERA in tree

        assert await wait_until(known, steps=400, interval=0.05), sipp_errors(tmp_path)
        assert platform.calls is not None
        assert platform.calls.invite_timeout_of(LOWER) == 10.0
        async with api_client(platform) as http:
            output = {"addr": "127.0.0.1", "port": consumer.getsockname()[1], "transport": "udp"}
            loop = asyncio.get_running_loop()
            # Answered 2.5 s after the INVITE: more than media.invite_timeout (1 s) and
            # media.no_media_timeout (1.5 s).
            r = await http.post(f"/api/v1/channels/{LOWER_CAMERA}/play", json={"output": output})
            assert r.status_code == 201, (r.text, sipp_errors(tmp_path))
            session = r.json()
            assert session["device"] == LOWER
            assert session["answer_ssrc"] == LOWER_SSRC
            assert session["device_media"] == [MEDIA_SERVER, port]
            if mode == "UDP":
                assert media is not None
                media.connect(("127.0.0.1", session["receive"]["port"]))
            else:
                assert listener is not None
                deadline = loop.time() + 10
                while media is None:
                    try:
                        media, _ = listener.accept()  # the platform connects to 127.0.0.2
                    except BlockingIOError:
                        assert loop.time() < deadline, "the platform did not connect"
                        await asyncio.sleep(0.01)
                media.setblocking(True)
            packets = load_capture()
            for n, packet in enumerate(packets):
                data = with_ssrc(packet, int(LOWER_SSRC))
                if mode == "UDP":
                    media.send(data)
                else:
                    media.sendall(struct.pack(">H", len(data)) + data)
                if n % 8 == 7:
                    await asyncio.sleep(0.002)
            received: list[bytes] = []
            deadline = loop.time() + 10
            while len(received) < len(packets) and loop.time() < deadline:
                try:
                    received.append(consumer.recv(65536))
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            assert len(received) == len(packets)
            assert decoded_frames(received) == FRAMES
            r = await http.delete(f"/api/v1/sessions/{session['id']}")
            assert r.status_code == 204
    finally:
        for sock in (consumer, media, listener):
            if sock is not None:
                sock.close()
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        await platform.stop()
