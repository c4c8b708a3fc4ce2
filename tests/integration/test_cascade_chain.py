"""The three-level chain (issue 6's acceptance): district -> city -> province, in one process.

Three :class:`Platform` instances on loopback, each with its own SQLite file and ports, one
provincial CA. The district registers to the city and the city to the province through
``[[upstream]]``; each upper platform's account is bound (``gb28181 certs bind``) to a level-1
platform certificate at the platform below it, which is how authz lets it in. The district
knows an NVR (SIPp) with one camera channel; the NVR registers with digest.

At the top, through the province's API:

* the province plays the camera two levels down: its INVITE goes to the city, whose inbound
  side invites the district, whose inbound side invites the NVR. The fixture capture is sent
  to the district's receive port with the SSRC the NVR answered; what the province's consumer
  receives holds the same PS bytes, and FFmpeg (PyAV) decodes every frame;
* PTZ reaches the NVR (a DeviceControl forwarded city -> district -> NVR);
* the NVR then reports a catalog change (UPDATE of the channel's name) to the district, which
  NOTIFYs the city's subscription, which NOTIFYs the province's: the new name shows at the top;
  and an alarm of the camera, forwarded the same way along the alarm subscriptions;
* DELETE of the session at the top: BYE province -> city -> district -> NVR.

And the upper platform's own level decides below it: bound as level 3 at the city, the
province sees the camera only once it is shared, may play it, and its PTZ is refused (403).
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .cascade_helpers import (
    ANSWER_SSRC,
    CAMERA,
    CITY,
    DISTRICT,
    NEW_NAME,
    NVR,
    Chain,
    channel_name,
    registered,
    start_chain,
    start_nvr,
)
from .conftest import api_client
from .sipp_device import wait_until
from .test_calls_peers import FRAMES, decoded_frames, load_capture, with_ssrc

pytestmark = pytest.mark.peer


@pytest.fixture(params=["UDP", "TCP-PASSIVE", "TCP-ACTIVE"])
async def chain(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Chain]:
    """The three platforms; the province receives in each stream mode (TCP passive: the city
    connects to it; TCP active: it connects to the city), the lower legs by UDP."""
    running = await start_chain(tmp_path, province_mode=request.param)
    try:
        yield running
    finally:
        await running.stop()


async def _holds(value: bool) -> bool:
    return value


async def test_province_plays_controls_and_hangs_up_a_camera_two_levels_down(
    chain: Chain, tmp_path: Path
) -> None:
    province, city, district = chain.province, chain.city, chain.district
    # The chain registers upward, and each upper platform learns the shared camera.
    assert await wait_until(lambda: _holds(registered(city, DISTRICT)), steps=1000)
    assert await wait_until(lambda: _holds(registered(province, CITY)), steps=1000)
    assert await wait_until(
        lambda: _holds(channel_name(province, CITY) == "Gate camera"), steps=1000
    ), "the province never learned the camera"
    assert channel_name(city, DISTRICT) == "Gate camera"

    nvr = await start_nvr(district, tmp_path)
    consumer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    consumer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    consumer.bind(("127.0.0.1", 0))
    consumer.setblocking(False)
    camera = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert await wait_until(lambda: _holds(registered(district, NVR)), steps=1000)
        async with api_client(province, timeout=60) as http:
            # Play at the top.
            output = {"addr": "127.0.0.1", "port": consumer.getsockname()[1], "transport": "udp"}
            r = await http.post(f"/api/v1/channels/{CAMERA}/play", json={"output": output})
            assert r.status_code == 201, r.text
            session = r.json()
            assert session["device"] == CITY
            # The bottom leg: the district's session toward the NVR, re-keyed to its y=.
            assert district.calls is not None and city.calls is not None
            (bottom,) = district.calls.sessions.values()
            assert bottom.answer_ssrc == ANSWER_SSRC and bottom.device_id == NVR
            assert len(city.calls.sessions) == 1

            packets = load_capture()
            camera.connect(("127.0.0.1", bottom.port))
            for n, packet in enumerate(packets):
                camera.send(with_ssrc(packet, int(ANSWER_SSRC)))
                if n % 8 == 7:
                    await asyncio.sleep(0.003)
            received: list[bytes] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while len(received) < len(packets) and loop.time() < deadline:
                try:
                    received.append(consumer.recv(65536))
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            assert len(received) == len(packets)
            ordered = sorted(received, key=lambda p: struct.unpack_from(">H", p, 2)[0])
            assert b"".join(p[12:] for p in ordered) == b"".join(p[12:] for p in packets)
            assert decoded_frames(received) == FRAMES

            # PTZ from the top reaches the NVR; the NVR then reports a catalog change, which
            # climbs the chain of catalog subscriptions to the top.
            r = await http.post(
                f"/api/v1/devices/{CITY}/ptz",
                json={"channel": CAMERA, "direction": "left", "speed": 64},
            )
            assert r.status_code == 200, r.text
            log = tmp_path / "nvr_messages.log"
            assert await wait_until(
                lambda: _holds("<CmdType>DeviceControl</CmdType>" in log.read_text("latin-1")),
                steps=1000,
            )
            assert "<PTZCmd>A50F01" in log.read_text("latin-1")
            assert await wait_until(
                lambda: _holds(channel_name(province, CITY) == NEW_NAME), steps=1000
            ), (channel_name(district, NVR), channel_name(city, DISTRICT))
            # ... and an alarm of the camera, which climbs the alarm subscriptions.
            assert province.alarms is not None

            def alarm_at_top() -> bool:
                assert province.alarms is not None
                return any(a.channel_id == CAMERA for a in province.alarms.alarms)

            assert await wait_until(lambda: _holds(alarm_at_top()), steps=1000)
            (alarm,) = [a for a in province.alarms.alarms if a.channel_id == CAMERA]
            assert alarm.device_id == CITY and alarm.method == "5" and alarm.priority == 1

            # Hang up at the top: the stream stops at the bottom.
            r = await http.delete(f"/api/v1/sessions/{session['id']}")
            assert r.status_code == 204, r.text
            assert await wait_until(lambda: _holds(not district.calls.sessions), steps=1000)
            assert not city.calls.sessions
        messages = (tmp_path / "nvr_messages.log").read_text(errors="replace")
        assert re.search(r"^BYE sip:\S+ SIP/2.0", messages, re.M), messages[-2000:]
    finally:
        consumer.close()
        camera.close()
        if nvr.returncode is None:
            nvr.kill()
            await nvr.wait()


@pytest.fixture
async def level3_chain(tmp_path: Path) -> AsyncIterator[Chain]:
    """The chain with the province bound at the city as level 3 (a district government)."""
    running = await start_chain(tmp_path, province_level=3)
    try:
        yield running
    finally:
        await running.stop()


async def test_the_upper_platforms_own_level_decides_at_the_lower_platform(
    level3_chain: Chain, tmp_path: Path
) -> None:
    """Level 3 views shared cameras but controls only those it was authorised to: the city
    lets the province's INVITE through and refuses its PTZ with 403, naming the rule."""
    province, city, district = level3_chain.province, level3_chain.city, level3_chain.district
    assert await wait_until(lambda: _holds(channel_name(city, DISTRICT) is not None), steps=1000)
    # Level 3 sees only shared cameras: not yet this one.
    assert province.catalogs is not None
    assert await wait_until(lambda: _holds(bool(province.catalogs.trees.get(CITY))), steps=1000)
    assert channel_name(province, CITY) is None
    # The city's operator shares it; the province's next catalog query shows it.
    async with api_client(city) as http:
        r = await http.patch(f"/api/v1/channels/{CAMERA}", json={"shared": True})
        assert r.status_code == 200, r.text
    async with api_client(province) as http:
        r = await http.post(f"/api/v1/devices/{CITY}/catalog")
        assert r.status_code in (200, 202), r.text
    assert await wait_until(
        lambda: _holds(channel_name(province, CITY) == "Gate camera"), steps=1000
    )
    nvr = await start_nvr(district, tmp_path)
    try:
        assert await wait_until(lambda: _holds(registered(district, NVR)), steps=1000)
        async with api_client(province, timeout=60) as http:
            r = await http.post(f"/api/v1/channels/{CAMERA}/play", json={})
            assert r.status_code == 201, r.text
            r = await http.post(
                f"/api/v1/devices/{CITY}/ptz", json={"channel": CAMERA, "direction": "up"}
            )
            assert r.status_code == 502, r.text
            assert "403" in r.json()["reason"] and "level 3" in r.json()["reason"], r.text
            await asyncio.sleep(0.5)
            log = (tmp_path / "nvr_messages.log").read_text("latin-1")
            assert "<CmdType>DeviceControl</CmdType>" not in log
    finally:
        if nvr.returncode is None:
            nvr.kill()
            await nvr.wait()
