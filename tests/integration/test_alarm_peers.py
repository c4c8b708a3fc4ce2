"""Alarm subscription over real sockets against SIPp playing an NVR.

The SIPp device registers and keeps alive (the main scenario of ``test_catalog_peers``). Its
out-of-call scenario branches on the method: a MESSAGE is the Catalog query (answered with one
camera) or the platform's acknowledgement of the alarm (answered 200 only); the SUBSCRIBE with
``Event: presence`` that follows the first sync is accepted and the device NOTIFYs an alarm in
that dialog. The API then lists the alarm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gb28181.subscriptions import SubscriptionState

from .conftest import DOMAIN, SERVER_ID, api_client, platform_env, start_platform
from .sipp_device import send_manscdp, sipp_errors, start_sipp_device, wait_until
from .test_catalog_peers import NVR, main_scenario

pytestmark = pytest.mark.peer

CAM = "34020000001320000001"
ALARM_IN = "34020000001340000001"

_OK = """
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]O[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:{nvr}@[local_ip]:[local_port]>
      Expires: 3600
      Content-Length: 0

    ]]>
  </send>
"""


def _catalog_body() -> str:
    return (
        '<?xml version="1.0" encoding="GB2312"?>\n<Response>\n<CmdType>Catalog</CmdType>\n'
        f"<SN>[$sn]</SN>\n<DeviceID>{NVR}</DeviceID>\n<SumNum>1</SumNum>\n"
        f'<DeviceList Num="1">\n<Item><DeviceID>{CAM}</DeviceID><Name>大门</Name>'
        f"<ParentID>{NVR}</ParentID><Status>ON</Status></Item>\n</DeviceList>\n</Response>"
    )


def _alarm_body() -> str:
    return (
        '<?xml version="1.0" encoding="GB2312"?>\n<Notify>\n<CmdType>Alarm</CmdType>\n'
        f"<SN>501</SN>\n<DeviceID>{ALARM_IN}</DeviceID>\n<AlarmPriority>2</AlarmPriority>\n"
        "<AlarmMethod>2</AlarmMethod>\n<AlarmTime>2024-05-01T10:00:00</AlarmTime>\n"
        "<AlarmDescription>门磁报警</AlarmDescription>\n</Notify>"
    )


def ooc_scenario() -> str:
    fmt = {"nvr": NVR}
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="NVR alarm subscribe">\n'
        '  <recv request="SUBSCRIBE" optional="true" next="sub">\n    <action>\n'
        '      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="from" />\n'
        '      <ereg regexp=".*" search_in="hdr" header="Event:" assign_to="event" />\n'
        '      <log message="SUBSCRIBE event [$event]" />\n'
        "    </action>\n  </recv>\n"
        '  <recv request="MESSAGE">\n    <action>\n'
        '      <ereg regexp="&lt;CmdType&gt;Alarm" search_in="body" assign_to="ack" />\n'
        '      <ereg regexp="&lt;SN&gt;([0-9]+)&lt;/SN&gt;" search_in="body" check_it="true"'
        ' assign_to="all,sn" />\n'
        '      <log message="MESSAGE [$all]" />\n'
        "    </action>\n  </recv>\n"
        + _OK.format(**fmt)
        + '  <nop test="ack" next="end" />\n'
        + """
"""
        + send_manscdp(NVR, _catalog_body())
        + """
  <recv response="200" next="end" />
  <label id="sub" />
"""
        + _OK.format(**fmt)
        + f"""
  <send retrans="500">
    <![CDATA[

      NOTIFY sip:{SERVER_ID}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{NVR}@{DOMAIN}>;tag=[pid]O[call_number]
      To: [$from]
      Call-ID: [call_id]
      CSeq: 1 NOTIFY
      Contact: <sip:{NVR}@[local_ip]:[local_port]>
      Event: [$event]
      Subscription-State: active;expires=3600
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      {_alarm_body()}
    ]]>
  </send>
  <recv response="200" />
  <label id="end" />
</scenario>
"""
    )


async def test_sipp_nvr_accepts_alarm_subscribe_and_its_alarm_notify_reaches_the_api(
    tmp_path: Path,
) -> None:
    env = platform_env(
        tmp_path,
        GB28181_DEVICES_ALARM_SUBSCRIBE="true",
        GB28181_DEVICES_CATALOG_SUBSCRIBE="false",
    )
    platform = await start_platform(env)
    proc = await start_sipp_device(
        platform, tmp_path, NVR, main_scenario(), ooc_scenario(), timeout=30
    )
    try:
        async with api_client(platform) as http:
            body: dict[str, Any] = {}

            async def listed() -> bool:
                body.update((await http.get("/api/v1/alarms", params={"device": NVR})).json())
                return bool(body["total"])

            assert await wait_until(listed, steps=400), (body, sipp_errors(tmp_path))
        (alarm,) = body["items"]
        assert alarm["channel_id"] == ALARM_IN
        assert alarm["priority"] == 2 and alarm["method"] == "2"
        assert alarm["description"] == "门磁报警"
        subs = platform.subscriptions
        assert subs is not None
        sub = subs.table.get(NVR, "presence")
        assert sub is not None and sub.state is SubscriptionState.ACTIVE
        assert sub.notifies == 1
        assert subs.table.get(NVR, "Catalog") is None
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        await platform.stop()
