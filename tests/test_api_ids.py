"""The /api/v1/ids routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from gb28181.api import build_app
from gb28181.api_ids import id_routes
from gb28181.id_registry import IdRegistry
from gb28181.ids import IdAllocator, parse_ranges
from gb28181.metrics import Metrics
from gb28181.store import Store, open_store
from tests.test_api import T0, registrar_with_devices


@pytest.fixture
async def env() -> AsyncIterator[tuple[httpx.AsyncClient, IdRegistry]]:
    store: Store = await open_store("sqlite://:memory:")
    ranges = parse_ranges(
        [
            {"department": "交警", "prefix": "3402000000", "types": ["131", "132"],
             "serial_start": 1, "serial_end": 2000},
            {"department": "城管", "prefix": "3402000000", "types": ["118"], "network": "5",
             "serial_start": 1, "serial_end": 2},
        ]
    )  # fmt: skip
    registry = IdRegistry(IdAllocator(ranges), store)

    async def ready() -> bool:
        return True

    app = build_app(
        registrar_with_devices(),
        Metrics(),
        store,
        ready,
        id_routes(registry, store, clock=lambda: T0),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client, registry
    await store.close()


async def test_issue_then_list(env: tuple[httpx.AsyncClient, IdRegistry]) -> None:
    http, registry = env
    r = await http.post("/api/v1/ids", json={"department": "交警", "type": "132", "count": 3,
                                             "note": "北门卡口"})  # fmt: skip
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["count"] == 3
    assert [i["id"] for i in body["items"]] == [f"34020000001320000{n:03d}" for n in (1, 2, 3)]
    assert body["items"][0]["department"] == "交警" and body["items"][0]["note"] == "北门卡口"
    assert body["items"][0]["type"] == "132" and body["items"][0]["issued_at"]
    assert registry.is_issued("34020000001320000003")
    await http.post("/api/v1/ids", json={"department": "城管", "type": "118"})
    listed = (await http.get("/api/v1/ids", params={"limit": 2})).json()
    assert listed["total"] == 4 and len(listed["items"]) == 2
    mine = (await http.get("/api/v1/ids", params={"department": "城管"})).json()
    assert [i["id"] for i in mine["items"]] == ["34020000001185000001"]


async def test_concurrent_requests_get_distinct_ids(
    env: tuple[httpx.AsyncClient, IdRegistry],
) -> None:
    http, _ = env
    answers = await asyncio.gather(
        *(http.post("/api/v1/ids", json={"department": "交警", "type": "131", "count": 50})
          for _ in range(8))
    )  # fmt: skip
    ids = [i["id"] for r in answers for i in r.json()["items"]]
    assert len(ids) == 400 and len(set(ids)) == 400


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"department": "交警", "type": "132", "count": 1001}, 400, "bad_parameter"),
        ({"department": "交警", "type": "200"}, 400, "bad_parameter"),
        ({"department": "nobody", "type": "132"}, 400, "bad_parameter"),
        ({"type": "132"}, 400, "bad_parameter"),
        ({"department": "交警", "type": 132}, 400, "bad_parameter"),
        ({"department": "交警", "type": "132", "note": 7}, 400, "bad_parameter"),
        ({"department": "城管", "type": "118", "count": 3}, 409, "exhausted"),
        ([1, 2], 400, "bad_json"),
    ],
)
async def test_bad_requests(
    env: tuple[httpx.AsyncClient, IdRegistry], body: object, status: int, error: str
) -> None:
    http, _ = env
    r = await http.post("/api/v1/ids", json=body)
    assert r.status_code == status and r.json()["error"] == error, r.text


async def test_bad_json_and_paging(env: tuple[httpx.AsyncClient, IdRegistry]) -> None:
    http, _ = env
    r = await http.post("/api/v1/ids", content=b"{nope")
    assert r.status_code == 400 and r.json()["error"] == "bad_json"
    assert (await http.get("/api/v1/ids", params={"limit": 0})).status_code == 400
    assert (await http.post("/api/v1/ids", content=b"x" * 5000)).status_code == 413
