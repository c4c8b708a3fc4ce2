"""Device-management routes: catalog views, waiting queries, controls and their errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gb28181 import manscdp
from gb28181.alarms import AlarmService
from gb28181.api import build_app
from gb28181.api_devices import device_routes, message_json
from gb28181.catalog_sync import CatalogService
from gb28181.channel_writer import ChannelWriter
from gb28181.correlator import QueryDone
from gb28181.metrics import Metrics
from gb28181.queries import DeviceOffline, QueryRejected, QueryTimeout
from gb28181.sip import Headers, SipResponse
from gb28181.store import PositionRecord, Store, open_store
from tests.test_api import DEVICE, T0, registrar_with_devices

GROUP = "34020000002150000001"


def cam(n: int) -> str:
    return f"3402000000132{n:07d}"


class FakeQueries:
    default_timeout = 10.0

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.asked: list[tuple[str, manscdp.Message, float | None, int]] = []
        self.controls: list[tuple[str, manscdp.Message]] = []

    async def query(
        self,
        device_id: str,
        message: manscdp.Message,
        *,
        timeout: float | None = None,
        expected_parts: int = 1,
    ) -> QueryDone:
        self.asked.append((device_id, message, timeout, expected_parts))
        if self.error is not None:
            raise self.error
        answer = manscdp.DeviceInfoResponse(device_id=message.device_id, manufacturer="Hik")
        return QueryDone(device_id, message.cmd_type, 1, (answer,), (), None, False, "answered",
                         None, T0, T0 + 0.5)  # fmt: skip

    async def control(self, device_id: str, message: manscdp.Message) -> SipResponse:
        self.controls.append((device_id, message))
        if self.error is not None:
            raise self.error
        return SipResponse(200, "OK", Headers([]))


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = await open_store("sqlite://:memory:")
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def env(store: Store) -> AsyncIterator[tuple[httpx.AsyncClient, FakeQueries, CatalogService]]:
    registrar = registrar_with_devices()
    queries = FakeQueries()
    writer = ChannelWriter(store)
    catalogs = CatalogService(queries, writer, Metrics(), server_id="34020000002000000001")  # type: ignore[arg-type]
    items = [manscdp.CatalogItem(device_id=GROUP, name="分局", parent_id=DEVICE)]
    items += [
        manscdp.CatalogItem(device_id=cam(n), name=f"摄像机{n}", parent_id=GROUP, status="ON")
        for n in range(1, 6)
    ]
    catalogs.apply_answer(DEVICE, QueryDone(DEVICE, "Catalog", 1, (), tuple(items), 6, False, "",
                                            None, T0, T0), T0)  # fmt: skip
    await writer.flush()

    async def ready() -> bool:
        return True

    alarms = AlarmService(None, Metrics())
    alarms.on_alarm(DEVICE, manscdp.AlarmNotify(sn=3, device_id=cam(1), alarm_method="2"), T0)
    routes = device_routes(registrar, catalogs, queries, store, alarms=alarms)  # type: ignore[arg-type]
    app = build_app(registrar, Metrics(), store, ready, routes)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client, queries, catalogs


Env = tuple[httpx.AsyncClient, FakeQueries, CatalogService]


async def test_channels_are_paged_and_filtered(env: Env) -> None:
    http, _q, _c = env
    body = (await http.get(f"/api/v1/devices/{DEVICE}/channels", params={"limit": 2})).json()
    assert body["total"] == 6 and body["sync"] == "complete"
    assert [i["id"] for i in body["items"]] == [cam(1), cam(2)]
    body = (await http.get(f"/api/v1/devices/{DEVICE}/channels", params={"parent": GROUP})).json()
    assert body["total"] == 5 and body["items"][0]["name"] == "摄像机1"
    body = (await http.get(f"/api/v1/devices/{DEVICE}/channels", params={"status": "off"})).json()
    assert body["total"] == 0
    r = await http.get("/api/v1/devices/34020000001320009999/channels")
    assert r.status_code == 404


async def test_tree_and_search(env: Env) -> None:
    http, _q, _c = env
    tree = (await http.get(f"/api/v1/devices/{DEVICE}/tree")).json()
    assert tree["counts"] == {"business_group": 1, "channel": 5}
    [root] = tree["roots"]
    assert root["name"] == "分局" and len(root["children"]) == 5
    found = (await http.get("/api/v1/channels", params={"q": "摄像机3"})).json()
    assert [i["id"] for i in found["items"]] == [cam(3)]
    assert (await http.get("/api/v1/channels", params={"q": "x" * 65})).status_code == 400


async def test_queries_wait_for_the_answer(env: Env) -> None:
    http, queries, _c = env
    r = await http.get(f"/api/v1/devices/{DEVICE}/device-info", params={"channel": cam(1)})
    assert r.status_code == 200
    assert r.json()["response"]["manufacturer"] == "Hik"
    assert queries.asked[-1][1] == manscdp.DeviceInfoQuery(device_id=cam(1))
    r = await http.get(
        f"/api/v1/devices/{DEVICE}/records",
        params={"start": "2024-01-01T00:00:00", "end": "2024-01-01 12:00", "timeout": "3"},
    )
    assert r.status_code == 200
    sent = queries.asked[-1]
    assert isinstance(sent[1], manscdp.RecordInfoQuery)
    assert (sent[1].start_time, sent[1].end_time, sent[1].type) == (
        "2024-01-01T00:00:00", "2024-01-01T12:00:00", "all",
    )  # fmt: skip
    assert sent[2] == 3.0
    await http.get(f"/api/v1/devices/{DEVICE}/config", params={"type": "BasicParam/VideoParamOpt"})
    assert queries.asked[-1][3] == 2
    for path in ("device-status", "presets"):
        assert (await http.get(f"/api/v1/devices/{DEVICE}/{path}")).status_code == 200


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (DeviceOffline("device is offline"), 409, "offline"),
        (QueryTimeout("did not answer DeviceInfo: timeout: no response"), 504, "timeout"),
        (QueryRejected("device answered 403"), 502, "device_error"),
    ],
)
async def test_query_failures_map_to_statuses(
    env: Env, error: Exception, status: int, code: str
) -> None:
    http, queries, _c = env
    queries.error = error
    r = await http.get(f"/api/v1/devices/{DEVICE}/device-info")
    assert r.status_code == status
    assert r.json() == {"error": code, "reason": str(error)}
    r = await http.post(f"/api/v1/devices/{DEVICE}/keyframe", json={})
    assert r.status_code == status


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("records", {"start": "2024-01-02T00:00:00", "end": "2024-01-01T00:00:00"}),
        ("records", {"start": "yesterday", "end": "2024-01-01T00:00:00"}),
        ("records", {"end": "2024-01-01T00:00:00"}),
        ("device-info", {"channel": "42"}),
        ("device-info", {"timeout": "0"}),
        ("config", {"type": "Basic<Param>"}),
    ],
)
async def test_bad_query_parameters_are_400(env: Env, path: str, params: dict[str, str]) -> None:
    http, queries, _c = env
    r = await http.get(f"/api/v1/devices/{DEVICE}/{path}", params=params)
    assert r.status_code == 400, r.text
    assert queries.asked == []


async def test_controls_validate_and_send(env: Env) -> None:
    http, queries, _c = env
    r = await http.post(
        f"/api/v1/devices/{DEVICE}/ptz", json={"channel": cam(2), "direction": "left"}
    )
    assert r.status_code == 200 and r.json() == {"sent": True, "sip_status": 200,
                                                  "target": cam(2)}  # fmt: skip
    device_id, msg = queries.controls[-1]
    assert device_id == DEVICE and msg.device_id == cam(2)
    r = await http.post(f"/api/v1/devices/{DEVICE}/ptz", json={"direction": "sideways"})
    assert r.status_code == 400 and "direction" in r.json()["reason"]
    r = await http.post(f"/api/v1/devices/{DEVICE}/preset", content=b"{not json")
    assert r.status_code == 400
    r = await http.post(f"/api/v1/devices/{DEVICE}/teleport", json={})
    assert r.status_code == 404
    r = await http.post(f"/api/v1/devices/{DEVICE}/catalog")
    assert r.status_code == 202


def test_message_json_keeps_set_fields_only() -> None:
    item = manscdp.CatalogItem(device_id=cam(1), name="a")
    msg = manscdp.CatalogResponse(device_id=DEVICE, sum_num=1, items=(item,))
    out: Any = message_json(msg)
    assert out == {"cmd_type": "Catalog", "sn": 0, "device_id": DEVICE, "sum_num": 1,
                   "items": [{"device_id": cam(1), "name": "a"}]}  # fmt: skip


async def test_alarms_are_listed(env: Env) -> None:
    http, _q, _c = env
    body = (await http.get("/api/v1/alarms", params={"device": DEVICE})).json()
    assert body["total"] == 1
    assert body["items"][0]["channel_id"] == cam(1) and body["items"][0]["method"] == "2"
    assert (await http.get("/api/v1/alarms", params={"device": "x"})).json()["total"] == 0


async def test_positions_of_a_device_or_channel(env: Env, store: Store) -> None:
    http, _q, _c = env
    await store.add_positions(
        [
            PositionRecord(DEVICE, DEVICE, T0, "2024-05-01T10:00:00", 117.2, 31.8, 3.0),
            PositionRecord(DEVICE, DEVICE, T0 + 5, None, 117.3, 31.9),
            PositionRecord(DEVICE, cam(2), T0 + 6, None, 117.4, 31.7),
        ]
    )
    body = (await http.get(f"/api/v1/devices/{DEVICE}/positions", params={"limit": 1})).json()
    assert body["channel"] == DEVICE and len(body["items"]) == 1
    assert body["items"][0]["longitude"] == 117.3 and body["items"][0]["received_at"]
    body = (await http.get(f"/api/v1/devices/{DEVICE}/positions?channel={cam(2)}")).json()
    assert [i["latitude"] for i in body["items"]] == [31.7]
    assert (await http.get(f"/api/v1/devices/{DEVICE}/positions?channel=x")).status_code == 400
    assert (await http.get("/api/v1/devices/34020000001320009999/positions")).status_code == 404
