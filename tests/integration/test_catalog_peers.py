"""Catalog over real sockets against SIPp playing an NVR.

The SIPp device registers (digest), keeps alive and waits. The platform's Catalog query arrives
on a new Call-ID, so SIPp's out-of-call scenario (``-oocsf``) takes it: it answers 200 OK, reads
the SN from the body and answers with 250 nodes in GB2312 (Chinese names) split over ten
MESSAGEs. The scenarios are generated here because the bodies carry GB2312 bytes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gb28181.server import Platform

from .conftest import DOMAIN, SERVER_ID, api_client
from .sipp_device import sipp_errors, start_sipp_device

pytestmark = pytest.mark.peer

NVR = "34020000001180000001"
GROUP = "34020000002150000001"
ORG = "34020000002160000001"
CAMERAS = 248
CHUNK = 25

_REGISTER = """
  <send retrans="500">
    <![CDATA[

      REGISTER sip:{server}@{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{nvr}@{domain}>;tag=[pid]R[call_number]
      To: <sip:{nvr}@{domain}>
      Call-ID: [call_id]
      CSeq: {cseq} REGISTER
      Contact: <sip:{nvr}@[local_ip]:[local_port]>{auth}
      Max-Forwards: 70
      User-Agent: SIPp NVR
      Expires: 3600
      Content-Length: 0

    ]]>
  </send>
"""

_MAIN_TAIL = """
  <recv response="200" />
  <send retrans="500">
    <![CDATA[

      MESSAGE sip:{server}@{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{nvr}@{domain}>;tag=[pid]K[call_number]
      To: <sip:{server}@{domain}>
      Call-ID: [call_id]
      CSeq: 3 MESSAGE
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      <?xml version="1.0" encoding="GB2312"?>
      <Notify>
      <CmdType>Keepalive</CmdType>
      <SN>1</SN>
      <DeviceID>{nvr}</DeviceID>
      <Status>OK</Status>
      </Notify>
    ]]>
  </send>
  <recv response="200" />
  <pause milliseconds="30000" />
"""

_RESPONSE = """
  <send retrans="500">
    <![CDATA[

      MESSAGE sip:{server}@{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{nvr}@{domain}>;tag=[pid]C{part}
      To: <sip:{server}@{domain}>
      Call-ID: [call_id]
      CSeq: {cseq} MESSAGE
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      {body}
    ]]>
  </send>
  <recv response="200" />
"""


def camera_id(n: int) -> str:
    return f"3402000000132{n:07d}"


def item(node_id: str, name: str, parent: str, extra: str = "") -> str:
    # Compact: SIPp reads scenario files of at most 64 KiB.
    return (
        f"<Item><DeviceID>{node_id}</DeviceID><Name>{name}</Name><Address>合肥</Address>"
        f"<ParentID>{parent}</ParentID>{extra}</Item>"
    )


def catalog_items() -> list[str]:
    items = [
        item(GROUP, "公安分局", NVR),
        item(ORG, "城东派出所", GROUP),
    ]
    for n in range(1, CAMERAS + 1):
        items.append(item(camera_id(n), f"摄像机{n:03d}", ORG, "<Status>ON</Status>"))
    return items


def ooc_scenario() -> str:
    items = catalog_items()
    parts = []
    for part, start in enumerate(range(0, len(items), CHUNK), start=1):
        chunk = items[start : start + CHUNK]
        body = (
            '<?xml version="1.0" encoding="GB2312"?>\n<Response>\n<CmdType>Catalog</CmdType>\n'
            f"<SN>[$sn]</SN>\n<DeviceID>{NVR}</DeviceID>\n<SumNum>{len(items)}</SumNum>\n"
            f'<DeviceList Num="{len(chunk)}">\n' + "\n".join(chunk) + "\n</DeviceList>\n</Response>"
        )
        parts.append(
            _RESPONSE.format(
                server=SERVER_ID, domain=DOMAIN, nvr=NVR, part=part, cseq=part, body=body
            )
        )
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="NVR answers Catalog">\n'
        '  <recv request="MESSAGE">\n    <action>\n'
        '      <ereg regexp="&lt;SN&gt;([0-9]+)&lt;/SN&gt;" search_in="body" check_it="true"'
        ' assign_to="all,sn" />\n'
        '      <log message="Catalog query [$all]" />\n    </action>\n  </recv>\n'
        "  <send>\n    <![CDATA[\n\n      SIP/2.0 200 OK\n      [last_Via:]\n      [last_From:]\n"
        "      [last_To:];tag=[pid]O[call_number]\n      [last_Call-ID:]\n      [last_CSeq:]\n"
        "      Content-Length: 0\n\n    ]]>\n  </send>\n" + "".join(parts) + "</scenario>\n"
    )


def main_scenario() -> str:
    fmt = {"server": SERVER_ID, "domain": DOMAIN, "nvr": NVR}
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="NVR registers">\n'
        + _REGISTER.format(cseq=1, auth="", **fmt)
        + '  <recv response="401" auth="true" />\n'
        + _REGISTER.format(cseq=2, auth="\n      [authentication]", **fmt)
        + _MAIN_TAIL.format(**fmt)
        + "</scenario>\n"
    )


async def test_sipp_nvr_catalog_of_250_gb2312_nodes_reaches_the_api(
    platform: Platform, tmp_path: Path
) -> None:
    proc = await start_sipp_device(
        platform, tmp_path, NVR, main_scenario(), ooc_scenario(), timeout=40
    )
    try:
        async with api_client(platform) as http:
            body: dict[str, object] = {}
            for _ in range(500):
                r = await http.get(f"/api/v1/devices/{NVR}/channels", params={"limit": 1000})
                if r.status_code == 200:
                    body = r.json()
                    if body["total"] == CAMERAS + 2:
                        break
                if proc.returncode is not None:
                    break
                await asyncio.sleep(0.02)
            log = sipp_errors(tmp_path)
            assert body.get("total") == CAMERAS + 2, (body, log)
            assert body["sync"] == "complete"
            items = body["items"]
            assert isinstance(items, list)
            by_id = {i["id"]: i for i in items}
            assert by_id[camera_id(7)]["name"] == "摄像机007"
            assert by_id[camera_id(7)]["status"] == "ON"
            assert by_id[camera_id(7)]["address"] == "合肥"
            assert by_id[GROUP]["kind"] == "business_group"
            assert by_id[ORG]["name"] == "城东派出所"

            tree = (await http.get(f"/api/v1/devices/{NVR}/tree")).json()
            assert tree["total"] == CAMERAS + 2
            [root] = tree["roots"]
            assert root["id"] == GROUP and root["name"] == "公安分局"
            [org] = root["children"]
            assert org["id"] == ORG and len(org["children"]) == CAMERAS

            page = (
                await http.get(
                    f"/api/v1/devices/{NVR}/channels", params={"limit": 10, "offset": 240}
                )
            ).json()
            assert page["total"] == CAMERAS + 2 and len(page["items"]) == 10

            # Persisted in the background; search reads the store.
            assert platform.channel_writer is not None
            await platform.channel_writer.flush()
            found = (await http.get("/api/v1/channels", params={"q": "摄像机12"})).json()
            names = {i["name"] for i in found["items"]}
            assert "摄像机120" in names and "摄像机012" not in names

        sample = platform.metrics.registry.get_sample_value(
            "gb28181_manscdp_queries_total", {"cmd_type": "Catalog", "outcome": "answered"}
        )
        assert sample == 1.0
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_ptz_control_through_the_api_reaches_a_pjsua2_device(
    platform: Platform, transport: str
) -> None:
    """pjsua2 (PJSIP) accepts our DeviceControl MESSAGE: the request is valid SIP."""
    from .test_register_peers import run_pjsua

    dev = "34020000001320000777"
    task = asyncio.create_task(
        run_pjsua(platform, transport, "--expect-message", "15", "--expect-cmd", "DeviceControl")
    )
    registrar = platform.registrar
    assert registrar is not None
    for _ in range(500):
        st = registrar.get(dev)
        if st is not None and st.registered and st.record.last_keepalive:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail(f"pjsua2 device did not register: {await task}")
    async with api_client(platform) as http:
        r = await http.post(f"/api/v1/devices/{dev}/ptz", json={"direction": "left", "speed": 64})
    assert r.status_code == 200, r.text
    assert r.json()["sip_status"] == 200
    result = await task
    received = result.get("received")
    assert isinstance(received, list), result
    controls = [m for m in received if "<CmdType>DeviceControl</CmdType>" in m["body"]]
    assert controls, received
    assert "<PTZCmd>A50F0102400000F7</PTZCmd>" in controls[0]["body"]
