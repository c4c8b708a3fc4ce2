"""DeviceInfo over real sockets: the API asks a SIPp NVR and returns its answer.

The SIPp device registers and keeps alive (the main scenario of ``test_catalog_peers``); the
platform's DeviceInfo query arrives on a new Call-ID, so SIPp's out-of-call scenario answers it
200 OK and then sends the ``Response`` with the query's SN (GB2312, Chinese manufacturer name).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from .conftest import api_client, platform_env, start_platform
from .sipp_device import send_manscdp, sipp_errors, start_sipp_device
from .test_catalog_peers import NVR, main_scenario

pytestmark = pytest.mark.peer


def ooc_scenario() -> str:
    body = (
        '<?xml version="1.0" encoding="GB2312"?>\n<Response>\n<CmdType>DeviceInfo</CmdType>\n'
        f"<SN>[$sn]</SN>\n<DeviceID>{NVR}</DeviceID>\n<Result>OK</Result>\n"
        "<DeviceName>东门录像机</DeviceName>\n<Manufacturer>海康威视</Manufacturer>\n"
        "<Model>DS-7816N</Model>\n<Firmware>V4.1.20</Firmware>\n<Channel>16</Channel>\n"
        "</Response>"
    )
    return (
        """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="NVR answers DeviceInfo">
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
        + send_manscdp(NVR, body, tag="D1")
        + """
  <recv response="200" />
</scenario>
"""
    )


async def test_sipp_nvr_answers_device_info_through_the_api(tmp_path: Path) -> None:
    env = platform_env(tmp_path, GB28181_DEVICES_CATALOG_ON_REGISTER="false")
    platform = await start_platform(env)
    proc = await start_sipp_device(
        platform, tmp_path, NVR, main_scenario(), ooc_scenario(), timeout=30
    )
    try:
        async with api_client(platform) as http:
            for _ in range(400):
                r = await http.get(f"/api/v1/devices/{NVR}")
                if r.status_code == 200 and r.json()["online"]:
                    break
                await asyncio.sleep(0.02)
            r = await http.get(f"/api/v1/devices/{NVR}/device-info", params={"timeout": 5})
        assert r.status_code == 200, (r.text, sipp_errors(tmp_path))
        body = r.json()
        assert body["partial"] is False, body
        info = body["response"]
        assert info["manufacturer"] == "海康威视" and info["model"] == "DS-7816N", info
        assert info["device_name"] == "东门录像机" and info["channel"] == 16, info
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        await platform.stop()
