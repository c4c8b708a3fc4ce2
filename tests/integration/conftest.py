"""A whole platform on loopback, with a real SQLite file, for tests against real peers."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
import pytest

from gb28181.config import load_config
from gb28181.server import Platform

SERVER_ID = "34020000002000000001"
DOMAIN = "3402000000"
PASSWORD = "12345678"


def platform_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "GB28181_SIP_LISTEN": "127.0.0.1",
        "GB28181_SIP_PORT": "0",
        "GB28181_SIP_ADVERTISED_HOST": "127.0.0.1",
        "GB28181_SIP_PASSWORD": PASSWORD,
        "GB28181_HTTP_PORT": "0",
        "GB28181_STORAGE_URL": f"sqlite:///{tmp_path}/gb28181.db",
        "GB28181_STORAGE_FLUSH_INTERVAL": "0.2",
        # Peers that play one scenario would take an alarm SUBSCRIBE for another request;
        # the alarm-subscription test turns it on.
        "GB28181_DEVICES_ALARM_SUBSCRIBE": "false",
    }
    env.update(extra)
    return env


async def start_platform(env: Mapping[str, str]) -> Platform:
    platform = Platform(load_config(None, env=env))
    await platform.start()
    return platform


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    p = await start_platform(platform_env(tmp_path))
    try:
        yield p
    finally:
        await p.stop()


def api_client(platform: Platform, *, timeout: float = 20.0) -> httpx.AsyncClient:
    """An HTTP client for the platform's API, authenticated as an administrator.

    Every integration test talks to the API through this one client, so that how callers
    authenticate is decided in one place.
    """
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}", timeout=timeout)


def free_port() -> int:
    """A port free for both UDP and TCP right now (for a peer's local port)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")
