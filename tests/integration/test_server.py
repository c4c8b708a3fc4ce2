"""The whole server on loopback: restart persistence (SQLite and PostgreSQL),
HTTP API, metrics, transports (UDP rport, TCP connection reuse)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gb28181.server import Platform
from tests.helpers import need, sipp_path

from .conftest import (
    DOMAIN,
    PASSWORD,
    SERVER_ID,
    api_client,
    free_port,
    platform_env,
    start_platform,
)
from .sip_client import TestDevice

DEVICE = "34020000001320000001"


def device(platform: Platform, device_id: str = DEVICE, **kw: str) -> TestDevice:
    return TestDevice(
        device_id, PASSWORD, platform.sip_addr, server_id=SERVER_ID, domain=DOMAIN, **kw
    )


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/restart.db"
        return
    base = os.environ.get("GB28181_TEST_POSTGRES_URL")
    need(base is not None, "GB28181_TEST_POSTGRES_URL not set: PostgreSQL tests skipped")
    assert base is not None
    import asyncpg  # type: ignore[import-untyped]

    name = f"gb28181_test_restart_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(base)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_registrations_survive_a_restart(tmp_path: Path, store_url: str) -> None:
    env = platform_env(tmp_path, GB28181_STORAGE_URL=store_url)
    first = await start_platform(env)
    dev = device(first)
    await dev.open()
    try:
        assert (await dev.register()).status == 200
        assert (await dev.keepalive()).status == 200
    finally:
        await dev.close()
    await first.stop()  # flushes the write-behind queue

    second = await start_platform(env)
    try:
        registrar = second.registrar
        assert registrar is not None
        st = registrar.get(DEVICE)
        assert st is not None and st.registered and st.record.online
        assert registrar.registered_count == 1 and registrar.online_count == 1
        # Its keepalives are accepted without re-registering.
        dev = device(second)
        await dev.open()
        try:
            assert (await dev.keepalive()).status == 200
        finally:
            await dev.close()
        assert second.store is not None
        history = await second.store.status_history(DEVICE)
        assert [e.reason for e in history] == ["registered"]
    finally:
        await second.stop()


async def test_http_api_lists_devices_and_serves_metrics(platform: Platform) -> None:
    dev = device(platform)
    await dev.open()
    try:
        assert (await dev.register()).status == 200
        assert (await dev.keepalive()).status == 200
    finally:
        await dev.close()
    async with api_client(platform) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).status_code == 200
        listing = (await http.get("/api/v1/devices")).json()
        assert listing["total"] == 1
        item = listing["items"][0]
        assert item["id"] == DEVICE and item["online"] is True and item["type"] == "device"
        assert item["transport"] == "UDP" and item["address"].startswith("127.0.0.1:")
        assert item["registered_at"] and item["last_keepalive"]
        one = (await http.get(f"/api/v1/devices/{DEVICE}")).json()
        assert one["contact"].startswith("<sip:")
        missing = await http.get("/api/v1/devices/34020000001320009999")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        bad = await http.get("/api/v1/devices?limit=0")
        assert bad.status_code == 400
        assert platform.writer is not None
        await platform.writer.flush()
        hist = (await http.get(f"/api/v1/devices/{DEVICE}/status-history")).json()
        assert hist["items"][0]["reason"] == "registered"
        text = (await http.get("/metrics")).text
    for name in (
        "gb28181_devices_registered 1.0",
        "gb28181_devices_online 1.0",
        'gb28181_sip_messages_total{direction="in",method="REGISTER"} 2.0',
        'gb28181_sip_responses_total{code="401",direction="out",method="REGISTER"} 1.0',
        "gb28181_register_duration_seconds_count 2.0",
        "gb28181_auth_failures_total",
    ):
        assert name in text, name


async def test_wrong_password_counts_auth_failures(platform: Platform) -> None:
    dev = TestDevice(DEVICE, "wrong", platform.sip_addr, server_id=SERVER_ID, domain=DOMAIN)
    await dev.open()
    try:
        resp = await dev.register()
    finally:
        await dev.close()
    assert resp.status == 403
    value = platform.metrics.registry.get_sample_value(
        "gb28181_auth_failures_total", {"reason": "bad_response"}
    )
    assert value == 1.0


async def test_udp_response_carries_received_and_rport(platform: Platform) -> None:
    dev = device(platform)
    await dev.open()
    try:
        resp = await dev.register()
    finally:
        await dev.close()
    top = resp.top_via
    assert top.params.get("rport") == str(dev.local[1])
    assert top.params.get("received") is None or top.params["received"] == "127.0.0.1"


async def test_keepalive_from_unknown_device_is_404(platform: Platform) -> None:
    dev = device(platform, "34020000001320000999")
    await dev.open()
    try:
        assert (await dev.keepalive()).status == 404
    finally:
        await dev.close()


async def test_tcp_device_goes_offline_when_its_connection_drops(platform: Platform) -> None:
    dev = device(platform, transport="TCP")
    await dev.open()
    assert (await dev.register()).status == 200
    registrar = platform.registrar
    assert registrar is not None
    st = registrar.get(DEVICE)
    assert st is not None and st.record.transport == "TCP" and st.conn_id is not None
    assert (await dev.keepalive()).status == 200
    await dev.close()
    for _ in range(100):
        if registrar.online_count == 0:
            break
        import asyncio

        await asyncio.sleep(0.02)
    assert registrar.online_count == 0


def test_serve_command_starts_on_embedded_defaults_and_stops_cleanly(tmp_path: Path) -> None:
    """The README's run command, in a fresh directory: starts, SIPp registers, it stops."""
    root = Path(__file__).resolve().parents[2]
    sip_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "GB28181_SIP_PORT": str(sip_port),
        "GB28181_SIP_LISTEN": "127.0.0.1",
        "GB28181_HTTP_PORT": str(http_port),
        "PYTHONPATH": str(root),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gb28181", "serve", "--config", str(root / "conf" / "gb28181.toml")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        ok = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ok = httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                break
            time.sleep(0.1)
        assert ok, "server did not become ready"
        assert (tmp_path / "var" / "gb28181.db").exists()
        # A device (SIPp) registers to it with digest auth, keeps alive, unregisters.
        inf = tmp_path / "dev.csv"
        inf.write_text(
            f"SEQUENTIAL\n{DEVICE};{SERVER_ID};{DOMAIN};"
            f"[authentication username={DEVICE} password={PASSWORD}]\n"
        )
        sipp = subprocess.run(
            [
                sipp_path(),
                "-sf",
                str(root / "tests" / "integration" / "sipp" / "device_lifecycle.xml"),
                "-inf",
                str(inf),
                "-i",
                "127.0.0.1",
                "-p",
                str(free_port()),
                "-m",
                "1",
                "-timeout",
                "30",
                "-nostdin",
                f"127.0.0.1:{sip_port}",
            ],
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
        )
        assert sipp.returncode == 0, sipp.stdout.decode(errors="replace")[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]


async def test_start_up_is_recorded_in_the_audit_trail(tmp_path: Path) -> None:
    platform = await start_platform(platform_env(tmp_path))
    await platform.stop()  # flushes the audit writer
    again = await start_platform(platform_env(tmp_path))
    try:
        assert again.store is not None and again.audit is not None
        await again.audit.flush()
        records = await again.store.load_audit()
        assert [r.action for r in records] == ["system.start", "system.start"]
        assert records[1].prev_hash == records[0].hash  # one chain across restarts
        assert records[0].extra["sip.id"] == SERVER_ID
    finally:
        await again.stop()
