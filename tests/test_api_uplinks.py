"""GET /api/v1/upstreams: the upper platforms' registration state, level 1 only."""

from __future__ import annotations

import random
from types import SimpleNamespace

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from authz import Principal, PrincipalKind
from gb28181.api_uplinks import uplink_routes
from gb28181.authorizer import AuthorizationDenied
from gb28181.config import UpstreamConfig
from gb28181.metrics import Metrics
from gb28181.sip import make_response
from gb28181.uplink_service import UplinkService

UPPER = "44010000002000000001"


class As:
    """Test middleware: the principal of the given level."""

    def __init__(self, app: ASGIApp, level: int) -> None:
        self.app, self.level = app, level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = Principal("p", PrincipalKind.USER, "police", self.level)
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def service() -> UplinkService:
    sig = SimpleNamespace(transport=SimpleNamespace(local_addr=("192.0.2.1", 5060)))
    cfg = UpstreamConfig(id=UPPER, host="192.0.2.10", password="p")
    return UplinkService(
        sig,  # type: ignore[arg-type]
        [cfg],
        Metrics(),
        server_id="34020000002000000001",
        local_host="192.0.2.1",
        clock=lambda: 1_700_000_000.0,
        rng=random.Random(3),
    )


def app(uplinks: UplinkService, level: int) -> ASGIApp:
    async def denied(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthorizationDenied)
        return JSONResponse({"error": exc.rule, "reason": exc.reason}, status_code=403)

    inner = Starlette(
        routes=uplink_routes(uplinks), exception_handlers={AuthorizationDenied: denied}
    )
    return As(inner, level)


async def test_lists_the_upper_platforms_with_their_state() -> None:
    uplinks = service()
    up = uplinks.uplinks[UPPER]
    (register,) = up.poll(1_700_000_000.0)
    up.on_response(
        register,
        make_response(register, 200, to_tag="u", headers=[("Expires", "3600")]),
        1_700_000_000.0,
    )
    transport = httpx.ASGITransport(app=app(uplinks, 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        r = await http.get("/api/v1/upstreams")
    assert r.status_code == 200
    (item,) = r.json()["items"]
    assert item["id"] == UPPER and item["state"] == "registered"
    assert item["host"] == "192.0.2.10" and item["transport"] == "UDP"
    assert item["local_id"] == "34020000002000000001"
    assert item["registrations"] == 1 and item["registered_until"]


async def test_levels_below_1_are_refused() -> None:
    transport = httpx.ASGITransport(app=app(service(), 2))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        r = await http.get("/api/v1/upstreams")
    assert r.status_code == 403 and r.json()["error"] == "level-1-only"
