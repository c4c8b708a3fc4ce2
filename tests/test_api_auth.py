"""Authentication of the HTTP API: bearer tokens and client certificates, open probes,
401 with a challenge, logins audited, and route enforcement with 403 and the rule."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authz import Action, ChannelInfo, Policy, PrincipalKind, Scope
from certs import CertificateAuthority, init_ca
from gb28181.api import build_app
from gb28181.api_auth import ApiAuthMiddleware, enforce, peer_certificate, principal_of
from gb28181.authorizer import Authorizer
from gb28181.identity import Identity
from gb28181.metrics import Metrics
from gb28181.registrar import Registrar, RegistrarConfig
from gb28181.sip import DigestVerifier, NonceIssuer
from gb28181.store import ApiToken, Store, open_store
from gb28181.tokens import hash_token, new_token

CHANNEL = "34020000001320000001"


class Recorder:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, action: str, target: str, outcome: str, **kw: Any) -> None:
        self.records.append({"action": action, "target": target, "outcome": outcome, **kw})


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = await open_store("sqlite://:memory:")
    try:
        yield s
    finally:
        await s.close()


def issue(ca_dir: Path, subject: str, level: int) -> x509.Certificate:
    authority = CertificateAuthority.open(ca_dir)
    now = time.time()
    cert, _ = authority.issue(
        kind=PrincipalKind.USER,
        subject_id=subject,
        department="police",
        level=level,
        scope=Scope.everything(),
        not_before=now - 60,
        not_after=now + 86400,
    )
    return cert


async def token_for(store: Store, cert: x509.Certificate) -> str:
    token = new_token()
    await store.add_api_token(
        ApiToken(
            hash_token(token),
            "x",
            cert.fingerprint(hashes.SHA256()).hex(),
            f"{cert.serial_number:X}",
            time.time(),
        )
    )
    return token


async def app_with_auth(store: Store, ca_dir: Path, audit: Recorder) -> httpx.AsyncClient:
    reg = Registrar(
        RegistrarConfig(server_id="34020000002000000001", domain="3402000000"),
        DigestVerifier(NonceIssuer(b"s" * 32, 300), "3402000000"),
    )
    facts = {CHANNEL: ChannelInfo(CHANNEL, "traffic", 3, shared=True)}
    authorizer = Authorizer(Policy(), facts.get, audit=audit)

    async def play(request: Request) -> Response:
        principal = enforce(request, authorizer, Action.VIEW, request.path_params["cid"])
        assert principal is not None
        return JSONResponse({"as": principal.id})

    async def ready() -> bool:
        return True

    app = build_app(
        reg, Metrics(), store, ready, [Route("/api/v1/channels/{cid}/play", play, methods=["POST"])]
    )
    secured = ApiAuthMiddleware(app, Identity(store, ca_dir), audit=audit)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=secured), base_url="http://t")


async def test_probes_stay_open_and_api_needs_credentials(tmp_path: Path, store: Store) -> None:
    init_ca(tmp_path / "ca", "CA")
    audit = Recorder()
    async with await app_with_auth(store, tmp_path / "ca", audit) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200
        r = await http.get("/api/v1/devices")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"] == "unauthorized"
        r = await http.get("/api/v1/devices", headers={"Authorization": "Bearer gbt_nope"})
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert r.json()["reason"] == "unknown bearer token"
        r = await http.get("/api/v1/devices", headers={"Authorization": "Basic eDp5"})
        assert r.status_code == 401
    logins = [a for a in audit.records if a["action"] == "login"]
    assert len(logins) == 2 and all(a["outcome"] == "deny" for a in logins)


async def test_bearer_runs_as_its_principal_and_refusals_carry_the_rule(
    tmp_path: Path, store: Store
) -> None:
    init_ca(tmp_path / "ca", "CA")
    low = await token_for(store, issue(tmp_path / "ca", "user4", 4))
    high = await token_for(store, issue(tmp_path / "ca", "user1", 1))
    audit = Recorder()
    async with await app_with_auth(store, tmp_path / "ca", audit) as http:
        r = await http.post(
            f"/api/v1/channels/{CHANNEL}/play", headers={"Authorization": f"Bearer {low}"}
        )
        assert r.status_code == 403
        assert r.json() == {
            "error": "forbidden",
            "reason": "level 4 excludes specific areas",
            "rule": "L4-specific-area",
        }
        for _ in range(2):
            r = await http.post(
                f"/api/v1/channels/{CHANNEL}/play", headers={"Authorization": f"Bearer {high}"}
            )
            assert r.status_code == 200 and r.json() == {"as": "user1"}
    logins = [a for a in audit.records if a["action"] == "login"]
    # One login record per credential and address, not one per request.
    assert [(a["principal_id"], a["outcome"]) for a in logins] == [
        ("user4", "ok"),
        ("user1", "ok"),
    ]
    decisions = [a for a in audit.records if a["action"] == "authz.view"]
    assert [a["outcome"] for a in decisions] == ["deny", "allow", "allow"]


async def test_client_certificate_from_the_tls_extension(tmp_path: Path, store: Store) -> None:
    init_ca(tmp_path / "ca", "CA")
    cert = issue(tmp_path / "ca", "user2", 2)
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    seen: list[Any] = []

    async def who(request: Request) -> Response:
        principal = principal_of(request)
        seen.append(principal)
        return JSONResponse({"id": principal.id if principal else None})

    inner = Starlette(routes=[Route("/api/v1/me", who)])
    secured = ApiAuthMiddleware(inner, Identity(store, tmp_path / "ca"))

    async def call(with_cert: bool) -> tuple[int, bytes]:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "https",
            "path": "/api/v1/me",
            "raw_path": b"/api/v1/me",
            "query_string": b"",
            "root_path": "",
            "headers": [],
            "client": ("192.0.2.1", 4000),
            "server": ("t", 443),
        }
        if with_cert:
            scope["extensions"] = {"tls": {"client_cert_chain": [pem]}}
        messages: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            messages.append(message)

        await secured(scope, receive, send)
        return messages[0]["status"], messages[1]["body"]

    status, body = await call(True)
    assert status == 200 and b"user2" in body
    status, _ = await call(False)
    assert status == 401


def test_peer_certificate_without_tls_is_none() -> None:
    async def receive() -> dict[str, Any]:
        return {}

    assert peer_certificate({"type": "http"}, receive) is None
