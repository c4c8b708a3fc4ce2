"""A whole platform on loopback, with a real SQLite file, for tests against real peers."""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from certs import init_ca, issue_to_files
from gb28181.cli import add_admin_token, create_admin
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
        # The platform's own CA (api_client issues the administrator from it).
        "GB28181_CERTS_CA_DIR": str(tmp_path / "ca"),
        # Segment files of any recording stay in the test's directory.
        "GB28181_RECORDING_ROOT": str(tmp_path / "recordings"),
        # Cameras registered by these tests are never classified or shared by an operator;
        # the administrator (level 1) must still reach them. The authorization tests set
        # the regulation's default (false).
        "GB28181_AUTHZ_LEVEL1_VIEWS_UNSHARED": "true",
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


_ADMIN_TOKENS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_ADMIN_DEPARTMENT = "platform-admin"


def _ensure_ca(ca_dir: Path) -> None:
    if not (ca_dir / "ca-cert.pem").exists():
        init_ca(ca_dir, "Test platform CA")


async def admin_token(platform: Any) -> str:
    """A bearer token of an administrator of ``platform``, made the way an operator does:
    ``gb28181 certs init-ca`` (once per CA directory), then ``gb28181 admin create``.
    One per platform, made on first use.

    An in-process :class:`Platform` stores the token through its own store and audits the
    issues in its own trail (one writer per database: a second connection writing while the
    platform flushes a large batch could wait out SQLite's busy timeout). A server in another
    process gets the real command (:func:`gb28181.cli.create_admin`), whose records the
    server re-seals after its own.
    """
    token = _ADMIN_TOKENS.get(platform)
    if token is not None:
        return token
    ca_dir = Path(platform.config.certs.ca_dir)
    name = f"admin-{uuid.uuid4().hex[:8]}"
    store = getattr(platform, "store", None)
    audit = getattr(platform, "audit", None)
    if store is not None and audit is not None:
        out_dir = ca_dir / "admins"
        _ensure_ca(ca_dir)
        issue_to_files(
            str(ca_dir),
            kind="user",
            subject_id=name,
            department=_ADMIN_DEPARTMENT,
            level=1,
            scope="*",
            roles="",
            valid_days=365,
            out_dir=str(out_dir),
        )
        token, events = await add_admin_token(
            store, out_dir / f"{name}.cert.pem", name, _ADMIN_DEPARTMENT
        )
        for action, target, extra in events:
            audit.record(action, target, "ok", principal_id="cli", source="cli", extra=extra)
    else:

        def create() -> str:
            _ensure_ca(ca_dir)
            _, made = create_admin(
                str(ca_dir),
                platform.config.storage.url,
                name=name,
                department=_ADMIN_DEPARTMENT,
                out_dir=str(ca_dir / "admins"),
            )
            return made

        # create_admin runs its own event loop; keep the test's loop free meanwhile.
        token = await asyncio.get_running_loop().run_in_executor(None, create)
    _ADMIN_TOKENS[platform] = token
    return token


class _AdminAuth(httpx.Auth):
    """Bearer authentication as the platform's administrator, made on the first request."""

    def __init__(self, platform: Any) -> None:
        self.platform = platform

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await admin_token(self.platform)}"
        yield request


def api_client(platform: Platform, *, timeout: float = 20.0) -> httpx.AsyncClient:
    """An HTTP client for the platform's API, authenticated as an administrator.

    Every integration test talks to the API through this one client, so that how callers
    authenticate is decided in one place: a level-1 administrator's bearer token
    (:func:`admin_token`).
    """
    http = platform.config.http
    scheme, verify = "http", True
    if http.tls_cert:  # HTTPS: trust the CA that issued the server's certificate
        scheme, verify = "https", True
        if http.tls_client_ca:
            verify = ssl.create_default_context(cafile=http.tls_client_ca)  # type: ignore[assignment]
    return httpx.AsyncClient(
        base_url=f"{scheme}://127.0.0.1:{platform.http_port}",
        timeout=timeout,
        verify=verify,
        auth=_AdminAuth(platform),
    )


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
