"""Record search and playback routes (ASGI): validation, platform source, control, errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from gb28181.api import ApiError
from gb28181.api_playback import parse_time, playback_routes
from gb28181.playback import PlaybackService
from media.playback_worker import PlaybackWorker
from media.rtp import RtpPacket
from tests.test_api_calls import api_error
from tests.test_playback import CHANNEL, T0, FakeStore, _row


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, PlaybackService, Any]]:
    worker = PlaybackWorker("127.0.0.1", connect_timeout=2.0)
    worker.start()
    row, _ = _row(tmp_path, "h264", T0, 50, "a")
    service = PlaybackService(worker, FakeStore([row]), tmp_path)  # type: ignore[arg-type]
    app = Starlette(routes=playback_routes(service), exception_handlers={ApiError: api_error})
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as h:
            yield h, service, row
    finally:
        await service.shutdown()
        worker.stop()


def test_parse_time() -> None:
    assert parse_time(1.5, "start") == 1.5
    assert parse_time("1700000000", "start") == 1_700_000_000.0
    assert parse_time("2023-11-14T22:13:20+00:00", "start") == 1_700_000_000.0
    for bad in (None, True, -1, "yesterday", float("nan"), [1]):
        with pytest.raises(ApiError):
            parse_time(bad, "start")


async def test_platform_records(client: tuple[httpx.AsyncClient, PlaybackService, Any]) -> None:
    h, _service, row = client
    r = await h.get(
        f"/api/v1/channels/{CHANNEL}/records", params={"start": T0 - 10, "end": T0 + 10}
    )
    assert r.status_code == 200
    body = r.json()
    assert body["source"] == "platform" and body["total"] == 1
    assert body["items"][0]["id"] == row.id and body["items"][0]["bytes"] == row.bytes
    r = await h.get(f"/api/v1/channels/{CHANNEL}/records", params={"start": T0, "end": T0 - 1})
    assert r.status_code == 400
    r = await h.get(
        f"/api/v1/channels/{CHANNEL}/records", params={"start": T0, "end": T0 + 1, "source": "x"}
    )
    assert r.status_code == 400
    # No device source configured: the channel cannot be located.
    r = await h.get(
        f"/api/v1/channels/{CHANNEL}/records",
        params={"start": T0, "end": T0 + 1, "source": "device"},
    )
    assert r.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"start": T0, "end": T0 + 1},  # no output
        {"start": T0, "end": T0 + 1, "output": {"addr": "x", "port": 9}},
        {"start": T0, "end": T0 + 1, "output": {"addr": "127.0.0.1", "port": 0}},
        {
            "start": T0,
            "end": T0 + 1,
            "output": {"addr": "127.0.0.1", "port": 9, "transport": "tcp"},
        },
        {"start": T0, "end": T0 + 1, "download": "yes", "output": {"addr": "127.0.0.1", "port": 9}},
        {"start": T0, "end": T0 + 1, "speed": "x", "output": {"addr": "127.0.0.1", "port": 9}},
        {"start": T0, "end": T0 + 1, "source": "nas", "output": {"addr": "127.0.0.1", "port": 9}},
        {"start": T0, "end": T0 + 1, "ssrc": -1, "output": {"addr": "127.0.0.1", "port": 9}},
        {"start": "soon", "end": T0 + 1, "output": {"addr": "127.0.0.1", "port": 9}},
        {"start": T0, "end": T0, "output": {"addr": "127.0.0.1", "port": 9}},
        {"start": T0, "end": T0 + 1, "speed": 100, "output": {"addr": "127.0.0.1", "port": 9}},
    ],
)
async def test_bad_playback_requests_are_400(
    client: tuple[httpx.AsyncClient, PlaybackService, Any], body: dict[str, Any]
) -> None:
    h, _service, _row = client
    r = await h.post(f"/api/v1/channels/{CHANNEL}/playback", json=body)
    assert r.status_code == 400, r.text


async def test_playback_session_lifecycle(
    client: tuple[httpx.AsyncClient, PlaybackService, Any],
) -> None:
    h, _service, row = client
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5.0)
    r = await h.post(
        f"/api/v1/channels/{CHANNEL}/playback",
        json={
            "start": T0,
            "end": row.end,
            "source": "platform",
            "ssrc": 1020000009,
            "output": {"addr": "127.0.0.1", "port": rx.getsockname()[1]},
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    sid = body["id"]
    assert body["source"] == "platform" and body["ssrc"] == "1020000009"
    first = await asyncio.to_thread(rx.recv, 2048)
    assert RtpPacket.parse(first).ssrc == 1020000009
    r = await h.post(f"/api/v1/playback/{sid}/control", json={"action": "pause"})
    assert r.status_code == 200 and r.json()["stats"]["paused"]
    r = await h.post(
        f"/api/v1/playback/{sid}/control", json={"action": "play", "scale": 2, "seek": 1}
    )
    assert r.status_code == 200
    stats = r.json()["stats"]
    assert not stats["paused"] and stats["scale"] == 2
    for bad in (
        {"action": "jump"},
        {"action": "pause", "scale": 2},
        {"action": "play", "scale": 9},
        {"action": "play", "seek": "x"},
    ):
        r = await h.post(f"/api/v1/playback/{sid}/control", json=bad)
        assert r.status_code == 400, bad
    r = await h.get("/api/v1/playback")
    assert r.json()["total"] == 1
    r = await h.get(f"/api/v1/playback/{sid}")
    assert r.json()["id"] == sid
    r = await h.post(f"/api/v1/playback/{sid}/control", json={"action": "teardown"})
    assert r.status_code == 204
    r = await h.get(f"/api/v1/playback/{sid}")
    assert r.status_code == 404
    r = await h.delete(f"/api/v1/playback/{sid}")
    assert r.status_code == 404
    rx.close()


async def test_delete_and_not_found(client: tuple[httpx.AsyncClient, PlaybackService, Any]) -> None:
    h, _service, row = client
    r = await h.post(
        f"/api/v1/channels/{CHANNEL}/playback",
        json={
            "start": T0,
            "end": row.end,
            "output": {"addr": "0.0.0.0", "transport": "tcp-passive"},
        },
    )
    assert r.status_code == 201
    body = r.json()
    assert body["local_port"] > 0 and body["output"]["transport"] == "tcp-passive"
    r = await h.delete(f"/api/v1/playback/{body['id']}")
    assert r.status_code == 204
    r = await h.post(
        f"/api/v1/channels/{CHANNEL}/playback",
        json={
            "start": T0 + 3600,
            "end": T0 + 3700,
            "source": "platform",
            "output": {"addr": "127.0.0.1", "port": 9},
        },
    )
    assert r.status_code == 404 and r.json()["error"] == "no_recording"
