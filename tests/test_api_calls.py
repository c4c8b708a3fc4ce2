"""Play and session routes: validation, answers, errors (ASGI, scripted device)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gb28181.api import ApiError
from gb28181.api_calls import call_routes, parse_output
from gb28181.calls import CallService
from media.worker import RelayWorker
from tests.media.conftest import get_capture
from tests.test_calls import CHANNEL, T0, ScriptedSignalling, env

__all__ = ["env"]  # the fixture, re-used

SRC = ("192.0.2.1", 15060)


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": exc.error, "reason": exc.reason}, status_code=exc.status)


@pytest.mark.parametrize(
    "output",
    [
        "x",
        {"addr": "camera.local", "port": 5000},
        {"addr": "127.0.0.1", "port": 0},
        {"addr": "127.0.0.1", "port": True},
        {"addr": "127.0.0.1", "port": 5000, "transport": "sctp"},
    ],
)
def test_bad_outputs_are_400(output: Any) -> None:
    with pytest.raises(ApiError) as err:
        parse_output(output)
    assert err.value.status == 400


def test_output_defaults_to_udp() -> None:
    assert parse_output(None) is None
    assert parse_output({"addr": "::1", "port": 5000}) == ("::1", 5000, "udp")
    assert parse_output({"addr": "10.0.0.1", "port": 1, "transport": "TCP"}) == (
        "10.0.0.1",
        1,
        "tcp",
    )


async def test_play_list_get_delete(
    env: tuple[CallService, ScriptedSignalling, RelayWorker],
) -> None:
    calls, sig, _worker = env
    app = Starlette(routes=call_routes(calls), exception_handlers={ApiError: api_error})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as h:
        r = await h.post(f"/api/v1/channels/{CHANNEL}/play", content=b"[1]")
        assert r.status_code == 400
        r = await h.post("/api/v1/channels/34020000001329999999/play")
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        r = await h.post(
            f"/api/v1/channels/{CHANNEL}/play",
            json={"output": {"addr": "127.0.0.1", "port": 9}},
        )
        assert r.status_code == 201
        body = r.json()
        assert body["channel"] == CHANNEL and body["consumer"] >= 1
        assert body["outputs"][0]["port"] == 9
        r = await h.get("/api/v1/sessions")
        assert r.json()["total"] == 1
        r = await h.get(f"/api/v1/sessions/{body['id']}")
        assert r.json()["ssrc"] == body["ssrc"]
        r = await h.delete(f"/api/v1/sessions/{body['id']}?consumer=x")
        assert r.status_code == 400
        r = await h.delete(f"/api/v1/sessions/{body['id']}?consumer=999")
        assert r.status_code == 404
        r = await h.delete(f"/api/v1/sessions/{body['id']}")
        assert r.status_code == 204
        assert [m.method for m in sig.sent] == ["INVITE", "BYE"]
        r = await h.get(f"/api/v1/sessions/{body['id']}")
        assert r.status_code == 404


async def test_snapshot_404_409_then_jpeg(
    env: tuple[CallService, ScriptedSignalling, RelayWorker],
) -> None:
    calls, _sig, worker = env
    app = Starlette(routes=call_routes(calls), exception_handlers={ApiError: api_error})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as h:
        r = await h.get("/api/v1/sessions/nope/snapshot")
        assert r.status_code == 404
        r = await h.post(f"/api/v1/channels/{CHANNEL}/play")
        assert r.status_code == 201
        session_id = r.json()["id"]
        r = await h.get(f"/api/v1/sessions/{session_id}/snapshot")
        assert r.status_code == 409 and r.json()["error"] == "no_keyframe"
        r = await h.get(f"/api/v1/sessions/{session_id}/snapshot?quality=101")
        assert r.status_code == 400
        # Media arrives (fed straight to the worker's relay: no sockets in unit tests).
        relay = worker._session(calls.sessions[session_id].media_id).relay
        ssrc = int(calls.sessions[session_id].ssrc)
        for packet in get_capture("ps_rtp_udp").packets[:40]:
            relay.receive_rtp(packet[:8] + ssrc.to_bytes(4, "big") + packet[12:], SRC, T0)
        r = await h.get(f"/api/v1/sessions/{session_id}/snapshot?quality=50")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg"
        assert r.content[:2] == b"\xff\xd8"
