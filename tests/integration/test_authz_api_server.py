"""Authorization end to end: certificates issued by the real CLI, callers on mutual TLS, a
level-4 user refused a specific-area camera with 403 and the reason, a level-1 user playing it
(SIPp camera), PTZ pre-emption and a level-1 control period between two users, then the audit
trail verified by ``gb28181 audit verify``, broken by editing one stored record, and detected.

Users present their permission certificates over TLS (their own HTTPS clients; the
administrator goes through ``api_client``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import ssl
from pathlib import Path

import httpx
import pytest

from gb28181.cli import main as cli
from gb28181.server import Platform
from gb28181.store import ChannelRecord
from tests.helpers import sipp_path

from .conftest import SERVER_ID, api_client, platform_env, start_platform
from .sipp_device import register_scenario, start_sipp_device
from .test_calls_peers import _OOC, ANSWER_SSRC
from .test_calls_peers import CAMERA as PLAY_CAM
from .test_calls_peers import DOMAIN as CALL_DOMAIN

pytestmark = pytest.mark.peer

PTZ_CAM = "34020000001320000002"

_PTZ_OOC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="camera takes a DeviceControl">
  <recv request="MESSAGE" />
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
</scenario>
"""


def issue(ca: Path, out: Path, subject: str, level: int, department: str, *extra: str) -> None:
    code = cli(
        ["certs", "issue", "--ca-dir", str(ca), "--out-dir", str(out), "--id", subject,
         "--level", str(level), "--department", department, *extra]
    )  # fmt: skip
    assert code == 0


def user_client(platform: Platform, certs: Path, subject: str) -> httpx.AsyncClient:
    ctx = ssl.create_default_context(cafile=platform.config.http.tls_client_ca)
    ctx.load_cert_chain(certs / f"{subject}.cert.pem", certs / f"{subject}.key.pem")
    return httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{platform.http_port}", verify=ctx, timeout=20
    )


async def wait_registered(platform: Platform, *ids: str) -> None:
    assert platform.registrar is not None
    for _ in range(500):
        states = [platform.registrar.get(i) for i in ids]
        if all(st is not None and st.registered for st in states):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{ids} did not register")


async def test_levels_control_and_a_tamper_evident_trail(tmp_path: Path) -> None:
    sipp_path()  # skips without SIPp
    ca, certs = tmp_path / "ca", tmp_path / "certs"
    assert cli(["certs", "init-ca", "--ca-dir", str(ca), "--subject", "City CA"]) == 0
    issue(ca, certs, SERVER_ID, 1, "city", "--kind", "platform", "--san", "127.0.0.1")
    issue(ca, certs, "user4", 4, "water")
    issue(ca, certs, "user2", 2, "traffic")
    issue(ca, certs, "user1", 1, "police")
    env = platform_env(
        tmp_path,
        GB28181_AUTHZ_LEVEL1_VIEWS_UNSHARED="false",
        GB28181_CERTS_CA_DIR=str(ca),
        GB28181_HTTP_TLS_CERT=str(certs / f"{SERVER_ID}.cert.pem"),
        GB28181_HTTP_TLS_KEY=str(certs / f"{SERVER_ID}.key.pem"),
        GB28181_HTTP_TLS_CLIENT_CA=str(ca / "ca-cert.pem"),
        GB28181_DEVICES_CATALOG_ON_REGISTER="false",
        GB28181_MEDIA_LISTEN="127.0.0.1",
        GB28181_MEDIA_IDLE_DELAY="0.2",
        GB28181_MEDIA_STREAM_MODE="UDP",
    )
    platform = await start_platform(env)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    fmt = {"server": SERVER_ID, "domain": CALL_DOMAIN, "cam": PLAY_CAM, "ssrc": ANSWER_SSRC,
           "media_port": 15060, "proto": "RTP/AVP", "setup": ""}  # fmt: skip
    play_main = register_scenario(PLAY_CAM, SERVER_ID, CALL_DOMAIN)
    play_cam = await start_sipp_device(
        platform, tmp_path / "a", PLAY_CAM, play_main, _OOC.format(**fmt)
    )
    ptz_cam = await start_sipp_device(
        platform,
        tmp_path / "b",
        PTZ_CAM,
        register_scenario(PTZ_CAM, SERVER_ID, CALL_DOMAIN),
        _PTZ_OOC,
    )
    try:
        await wait_registered(platform, PLAY_CAM, PTZ_CAM)
        # Each IPC lists itself as its channel (what a catalog sync would have stored).
        assert platform.catalogs is not None and platform.store is not None
        for cam in (PLAY_CAM, PTZ_CAM):
            records = [ChannelRecord(cam, cam, name=f"camera {cam[-1]}")]
            await platform.store.upsert_channels(cam, records)
            platform.catalogs.load(cam, records)
        async with api_client(platform) as admin:
            r = await admin.patch(
                f"/api/v1/channels/{PLAY_CAM}",
                json={"security_class": 4, "shared": True, "owner_department": "city"},
            )
            assert r.status_code == 200 and r.json()["specific_area"] is True, r.text
            r = await admin.patch(
                f"/api/v1/channels/{PTZ_CAM}",
                json={"security_class": 0, "shared": True, "owner_department": "city"},
            )
            assert r.status_code == 200, r.text
            assert (await admin.get("/api/v1/devices")).status_code == 200

        async with user_client(platform, certs, "user4") as u4:
            r = await u4.post(f"/api/v1/channels/{PLAY_CAM}/play")
            assert r.status_code == 403
            assert r.json() == {
                "error": "forbidden",
                "reason": "level 4 excludes specific areas",
                "rule": "L4-specific-area",
            }
            # Listings hide what it may not view.
            assert (await u4.get("/api/v1/devices")).json()["total"] == 0
        async with httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{platform.http_port}",
            verify=ssl.create_default_context(cafile=str(ca / "ca-cert.pem")),
        ) as anonymous:
            r = await anonymous.get("/api/v1/devices")
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"

        async with (
            user_client(platform, certs, "user1") as u1,
            user_client(platform, certs, "user2") as u2,
        ):
            r = await u1.post(f"/api/v1/channels/{PLAY_CAM}/play")
            assert r.status_code == 201, r.text
            session = r.json()["id"]
            assert (await u1.delete(f"/api/v1/sessions/{session}")).status_code == 204

            ptz = f"/api/v1/devices/{PTZ_CAM}/ptz"
            left = {"direction": "left", "speed": 60}
            r = await u2.post(ptz, json=left)
            assert r.status_code == 200 and r.json()["sent"] is True, r.text
            r = await u1.post(ptz, json=left)  # level 1 pre-empts level 2
            assert r.status_code == 200, r.text
            r = await u2.post(ptz, json=left)
            assert r.status_code == 409
            assert r.json()["rule"] == "preempt-higher-level"
            assert "control taken by user1 (level 1)" in r.json()["reason"]
            r = await u1.post(f"/api/v1/channels/{PTZ_CAM}/control/period", json={"seconds": 600})
            assert r.status_code == 200 and r.json()["holder"] == "user1"
            r = await u2.post(ptz, json=left)
            assert r.status_code == 409 and r.json()["rule"] == "control-period"
            assert 595 <= r.json()["remaining"] <= 600
            assert "control period" in r.json()["reason"]
            holder = (await u2.get(f"/api/v1/channels/{PTZ_CAM}/control")).json()
            assert holder["holder"] == "user1" and holder["level"] == 1
    finally:
        for proc in (play_cam, ptz_cam):
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        await platform.stop()

    url = platform.config.storage.url
    assert await asyncio.to_thread(cli, ["audit", "verify", "--store-url", url]) == 0
    db = url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        actions = {row[0] for row in conn.execute("SELECT action FROM audit_log")}
        for expected in ("login", "authz.view", "control.preempted", "control.period",
                         "config.channel", "cert.issue", "token.issue"):  # fmt: skip
            assert expected in actions, expected
        # Someone turns the refusal into an allowed access.
        changed = conn.execute(
            "UPDATE audit_log SET outcome = 'allow' WHERE seq = (SELECT min(seq) FROM audit_log"
            " WHERE action = 'authz.view' AND outcome = 'deny')"
        ).rowcount
        assert changed == 1
    assert await asyncio.to_thread(cli, ["audit", "verify", "--store-url", url]) == 1


async def test_grants_and_access_lists_survive_a_restart(tmp_path: Path) -> None:
    env = platform_env(tmp_path, GB28181_MEDIA_ENABLED="false")
    platform = await start_platform(env)
    try:
        async with api_client(platform) as admin:
            r = await admin.post(
                "/api/v1/grants",
                json={"kind": "emergency-access", "target": "3402*", "reason": "typhoon",
                      "department": "water"},
            )  # fmt: skip
            assert r.status_code == 201, r.text
            grant_id = r.json()["id"]
    finally:
        await platform.stop()
    platform = await start_platform(env)
    try:
        assert platform.authorizer is not None
        grant = platform.authorizer.grants.get(grant_id)
        assert grant.state.value == "pending" and grant.department == "water"
        async with api_client(platform) as admin:
            listed = (await admin.get("/api/v1/grants")).json()
            assert [g["id"] for g in listed["items"]] == [grant_id]
    finally:
        await platform.stop()
