"""Recording routes: on-demand record/stop, the index listing, one row, the file download."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gb28181.api import ApiError
from gb28181.api_recordings import parse_time, recording_json, recording_routes
from gb28181.recordings import RecordingPolicy, RecordingService
from gb28181.store import Store, open_store
from media.recorder import Recorder
from media.segments import segment_name

from .test_recordings import CH, CH2, NOW, FakeCalls, _row, _segment


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": exc.error, "reason": exc.reason}, status_code=exc.status)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def client(
    store: Store, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, RecordingService, FakeCalls]]:
    calls = FakeCalls()
    service = RecordingService(store, calls, Recorder(tmp_path), RecordingPolicy())
    app = Starlette(routes=recording_routes(service), exception_handlers={ApiError: api_error})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as h:
        yield h, service, calls
    await service.stop()


def test_parse_time() -> None:
    assert parse_time("start", None, 5.0) == 5.0
    assert parse_time("start", "1700000000.5", 0) == 1700000000.5
    assert parse_time("start", "2023-11-14T22:13:20+00:00", 0) == 1_700_000_000.0
    with pytest.raises(ApiError):
        parse_time("start", "yesterday", 0)


async def test_record_on_demand_and_stop(
    client: tuple[httpx.AsyncClient, RecordingService, FakeCalls], store: Store
) -> None:
    h, _, calls = client
    for bad in (b"[1]", b"{", b'{"duration": 0}', b'{"duration": "5"}', b'{"duration": true}'):
        r = await h.post(f"/api/v1/channels/{CH}/record", content=bad)
        assert r.status_code == 400, bad
    r = await h.post(f"/api/v1/channels/{CH}/record", json={"duration": 30})
    assert r.status_code == 201
    body = r.json()
    assert body["channel"] == CH and body["state"] == "recording" and body["reasons"] == ["api"]
    assert calls.plays[0][1][0] == "127.0.0.1"
    r = await h.get(f"/api/v1/channels/{CH}/record")
    assert r.status_code == 200 and r.json()["session"] == "s1"
    calls.refuse.add(CH2)
    r = await h.post(f"/api/v1/channels/{CH2}/record")
    assert r.status_code == 504 and r.json()["error"] == "timeout"
    # Kept for a restart: the request that started, not the refused one.
    assert [q.channel_id for q in await store.list_recording_requests()] == [CH]
    r = await h.delete(f"/api/v1/channels/{CH}/record")
    assert r.status_code == 204 and calls.left == [("s1", 1)]
    assert await store.list_recording_requests() == []
    r = await h.delete(f"/api/v1/channels/{CH}/record")
    assert r.status_code == 404
    r = await h.get(f"/api/v1/channels/{CH}/record")
    assert r.status_code == 404


async def test_list_get_and_download(
    client: tuple[httpx.AsyncClient, RecordingService, FakeCalls], store: Store, tmp_path: Path
) -> None:
    h, _, _ = client
    rel, data = _segment(tmp_path, CH, NOW)
    row = _row(rel, data, CH, NOW)
    await store.add_recording(row)
    other = _row("x/y.ps", b"zz", CH2, NOW + 10)
    await store.add_recording(other)
    r = await h.get("/api/v1/recordings")
    assert [i["id"] for i in r.json()["items"]] == [row.id, other.id]
    r = await h.get(f"/api/v1/recordings?channel={CH}&start={NOW - 10}&end=2023-11-14T22:13:21Z")
    assert r.json() == {"total": 1, "items": [recording_json(row)]}
    assert r.json()["items"][0]["start"].startswith("20") and r.json()["items"][0]["duration"] == 2
    r = await h.get(f"/api/v1/recordings?start={NOW}&end={NOW - 1}")
    assert r.status_code == 400
    r = await h.get(f"/api/v1/recordings/{row.id}")
    assert r.json()["sha256"] == row.sha256 and r.json()["keyframes"] == [[0.0, 0]]
    r = await h.get("/api/v1/recordings/nope")
    assert r.status_code == 404
    r = await h.get(f"/api/v1/recordings/{row.id}/file")
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "video/MP2P"
    assert segment_name(CH, NOW).rsplit("/", 1)[1] in r.headers["content-disposition"]
    r = await h.get(f"/api/v1/recordings/{other.id}/file")
    assert r.status_code == 410
