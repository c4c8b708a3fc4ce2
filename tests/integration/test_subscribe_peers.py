"""Catalog subscription over real sockets against SIPp playing an NVR.

The SIPp device registers and keeps alive (the main scenario of ``test_catalog_peers``). Its
out-of-call scenario branches on the method: the Catalog query MESSAGE is answered with three
cameras; the SUBSCRIBE that follows the first sync is accepted (200, ``Expires: 10``) and the
device then NOTIFYs, in that dialog, OFF/VLOST/DEL/ADD events; the refresh SUBSCRIBE (in the
same dialog, so the same SIPp call) is accepted too. A second test refuses the SUBSCRIBE
(489 Bad Event) and the platform falls back to polling.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gb28181.server import Platform
from gb28181.subscriptions import SubscriptionState

from .conftest import DOMAIN, SERVER_ID, api_client, platform_env, start_platform
from .sipp_device import send_manscdp, sipp_errors, start_sipp_device, wait_until
from .test_catalog_peers import NVR, main_scenario

pytestmark = pytest.mark.peer

ORG = "34020000002160000001"


def cam(n: int) -> str:
    return f"3402000000132{n:07d}"


def _item(node: str, status: str = "ON", event: str = "") -> str:
    ev = f"<Event>{event}</Event>" if event else ""
    return (
        f"<Item><DeviceID>{node}</DeviceID><Name>摄像机{node[-3:]}</Name>"
        f"<ParentID>{ORG}</ParentID><Status>{status}</Status>{ev}</Item>"
    )


def _catalog_body() -> str:
    items = [
        f"<Item><DeviceID>{ORG}</DeviceID><Name>城东派出所</Name><ParentID>{NVR}</ParentID></Item>",
        *(_item(cam(n)) for n in (1, 2, 3, 4)),
    ]
    return (
        '<?xml version="1.0" encoding="GB2312"?>\n<Response>\n<CmdType>Catalog</CmdType>\n'
        f"<SN>[$sn]</SN>\n<DeviceID>{NVR}</DeviceID>\n<SumNum>{len(items)}</SumNum>\n"
        f'<DeviceList Num="{len(items)}">\n' + "\n".join(items) + "\n</DeviceList>\n</Response>"
    )


def _notify_body() -> str:
    items = [
        _item(cam(1), "OFF", "OFF"),
        _item(cam(2), "VLOST", "VLOST"),
        _item(cam(3), "ON", "DEL"),
        _item(cam(9), "ON", "ADD"),
    ]
    return (
        '<?xml version="1.0" encoding="GB2312"?>\n<Notify>\n<CmdType>Catalog</CmdType>\n'
        f"<SN>77</SN>\n<DeviceID>{NVR}</DeviceID>\n<SumNum>{len(items)}</SumNum>\n"
        f'<DeviceList Num="{len(items)}">\n' + "\n".join(items) + "\n</DeviceList>\n</Notify>"
    )


_OK = """
  <send>
    <![CDATA[

      SIP/2.0 {status}
      [last_Via:]
      [last_From:]
      [last_To:]{tag}
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:{nvr}@[local_ip]:[local_port]>
      Expires: 10
      Content-Length: 0

    ]]>
  </send>
"""


def ooc_scenario(accept: bool) -> str:
    fmt = {"server": SERVER_ID, "domain": DOMAIN, "nvr": NVR}
    tag = ";tag=[pid]O[call_number]"
    if accept:
        subscribe = (
            _OK.format(status="200 OK", tag=tag, **fmt)
            + f"""
  <send retrans="500">
    <![CDATA[

      NOTIFY sip:{SERVER_ID}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{NVR}@{DOMAIN}>{tag}
      To: [$from]
      Call-ID: [call_id]
      CSeq: 1 NOTIFY
      Contact: <sip:{NVR}@[local_ip]:[local_port]>
      Event: [$event]
      Subscription-State: active;expires=10
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      {_notify_body()}
    ]]>
  </send>
  <recv response="200" />
  <recv request="SUBSCRIBE" />
"""
            + _OK.format(status="200 OK", tag="", **fmt)
            + '  <pause milliseconds="2000" />\n'
        )
    else:
        subscribe = _OK.format(status="489 Bad Event", tag=tag, **fmt)
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="NVR catalog + subscribe">\n'
        '  <recv request="SUBSCRIBE" optional="true" next="sub">\n    <action>\n'
        '      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="from" />\n'
        '      <ereg regexp=".*" search_in="hdr" header="Event:" assign_to="event" />\n'
        '      <log message="SUBSCRIBE from [$from] event [$event]" />\n'
        "    </action>\n  </recv>\n"
        '  <recv request="MESSAGE">\n    <action>\n'
        '      <ereg regexp="&lt;SN&gt;([0-9]+)&lt;/SN&gt;" search_in="body" check_it="true"'
        ' assign_to="all,sn" />\n'
        '      <log message="Catalog query [$all]" />\n    </action>\n  </recv>\n'
        + _OK.format(status="200 OK", tag=tag, **fmt)
        + """
"""
        + send_manscdp(NVR, _catalog_body())
        + """
  <recv response="200" next="end" />
  <label id="sub" />
"""
        + subscribe
        + '  <label id="end" />\n</scenario>\n'
    )


async def _run_sipp(platform: Platform, tmp_path: Path, accept: bool) -> asyncio.subprocess.Process:
    return await start_sipp_device(
        platform, tmp_path, NVR, main_scenario(), ooc_scenario(accept), timeout=40
    )


async def test_sipp_nvr_accepts_catalog_subscribe_and_its_notify_reaches_the_api(
    tmp_path: Path,
) -> None:
    platform = await start_platform(platform_env(tmp_path, GB28181_DEVICES_SUBSCRIBE_EXPIRES="10"))
    proc = await _run_sipp(platform, tmp_path, accept=True)
    try:
        async with api_client(platform) as http:
            items: dict[str, Any] = {}

            async def changed() -> bool:
                r = await http.get(f"/api/v1/devices/{NVR}/channels")
                if r.status_code != 200:
                    return False
                items.clear()
                items.update({i["id"]: i for i in r.json()["items"]})
                return cam(9) in items and cam(3) not in items

            assert await wait_until(changed), (items, sipp_errors(tmp_path))
            assert items[cam(1)]["status"] == "OFF"
            assert items[cam(2)]["status"] == "VLOST"
            assert items[cam(4)]["status"] == "ON"
            assert items[cam(9)]["name"] == "摄像机009"

            # The OFF and VLOST events are faults (regulation art. 10), stored and listed.
            assert platform.faults is not None
            await platform.faults.flush()
            faults = (await http.get("/api/v1/faults", params={"device": NVR})).json()
            kinds = {(f["channel_id"], f["kind"]) for f in faults["items"]}
            assert kinds == {(cam(1), "channel_off"), (cam(2), "vlost")}, faults
            diag = (await http.get(f"/api/v1/devices/{NVR}/diagnosis")).json()
            assert diag["online"] and diag["catalog"]["result"] == "complete"
            assert diag["subscriptions"][0]["state"] == "active"
            assert len(diag["open_faults"]) == 2 and len(diag["round_trips"]) == 1

        subs = platform.subscriptions
        assert subs is not None
        sub = subs.table.get(NVR, "Catalog")
        assert sub is not None and sub.state is SubscriptionState.ACTIVE and sub.notifies == 1
        first_expiry = sub.expires_at

        async def refreshed() -> bool:
            return sub.expires_at > first_expiry

        # Granted for 10 s, refreshed in-dialog after 5 s.
        assert await wait_until(refreshed, steps=500), sipp_errors(tmp_path)
        assert sub.state is SubscriptionState.ACTIVE
        assert NVR not in platform.catalogs.polled  # type: ignore[union-attr]
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        await platform.stop()


async def test_sipp_nvr_refusing_subscribe_is_polled(platform: Platform, tmp_path: Path) -> None:
    proc = await _run_sipp(platform, tmp_path, accept=False)
    try:
        catalogs = platform.catalogs
        assert catalogs is not None

        async def polled() -> bool:
            return NVR in catalogs.polled

        assert await wait_until(polled), sipp_errors(tmp_path)
        assert len(catalogs.trees[NVR]) == 5
        subs = platform.subscriptions
        assert subs is not None
        sub = subs.table.get(NVR, "Catalog")
        assert sub is not None and sub.state is SubscriptionState.REFUSED
        assert "489" in sub.reason
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
