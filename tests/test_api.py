"""HTTP API routes over a registrar and a real (in-memory SQLite) store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gb28181.api import build_app, iso_time
from gb28181.metrics import Metrics
from gb28181.registrar import Registrar, RegistrarConfig, Source
from gb28181.sip import DigestVerifier, NonceIssuer
from gb28181.store import DeviceRecord, StatusEvent, Store, open_store

T0 = 1_700_000_000.0
DEVICE = "34020000001320000001"
PLATFORM = "34020100002000000001"


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = await open_store("sqlite://:memory:")
    try:
        yield s
    finally:
        await s.close()


def registrar_with_devices() -> Registrar:
    reg = Registrar(
        RegistrarConfig(server_id="34020000002000000001", domain="3402000000"),
        DigestVerifier(NonceIssuer(b"s" * 32, 300), "3402000000"),
    )
    reg.restore(
        [
            DeviceRecord(
                device_id=DEVICE,
                kind="device",
                host="192.0.2.1",
                port=5060,
                expires=3600,
                registered_at=T0,
                online=True,
            ),
            DeviceRecord(
                device_id=PLATFORM,
                kind="platform",
                host="192.0.2.2",
                port=5060,
                expires=3600,
                registered_at=T0,
                online=True,
            ),
        ],
        T0 + 1,
    )
    reg.handle_keepalive(DEVICE, Source("UDP", "192.0.2.1", 5060), T0 + 2)
    return reg


async def client(reg: Registrar, store: Store, ready: bool = True) -> httpx.AsyncClient:
    async def is_ready() -> bool:
        return ready

    app = build_app(reg, Metrics(), store, is_ready)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_list_filter_and_page(store: Store) -> None:
    async with await client(registrar_with_devices(), store) as http:
        body = (await http.get("/api/v1/devices")).json()
        assert body["total"] == 2
        assert [d["id"] for d in body["items"]] == [DEVICE, PLATFORM]
        assert body["items"][0]["address"] == "192.0.2.1:5060"
        assert body["items"][0]["last_keepalive"] == iso_time(T0 + 2)
        only = (await http.get("/api/v1/devices", params={"type": "platform"})).json()
        assert [d["id"] for d in only["items"]] == [PLATFORM]
        page = (await http.get("/api/v1/devices", params={"limit": 1, "offset": 1})).json()
        assert page["total"] == 2 and [d["id"] for d in page["items"]] == [PLATFORM]
        offline = (await http.get("/api/v1/devices", params={"online": "false"})).json()
        assert offline["total"] == 0


@pytest.mark.parametrize("query", ["limit=abc", "limit=0", "limit=100000", "offset=-1"])
async def test_bad_paging_is_400_with_reason(store: Store, query: str) -> None:
    async with await client(registrar_with_devices(), store) as http:
        resp = await http.get(f"/api/v1/devices?{query}")
    assert resp.status_code == 400
    assert resp.json()["error"] == "bad_parameter"


async def test_device_detail_history_and_404(store: Store) -> None:
    await store.append_status_events([StatusEvent(DEVICE, T0, True, "registered")])
    async with await client(registrar_with_devices(), store) as http:
        one = (await http.get(f"/api/v1/devices/{DEVICE}")).json()
        assert one["id"] == DEVICE and one["registered"] is True
        hist = (await http.get(f"/api/v1/devices/{DEVICE}/status-history")).json()
        assert hist["items"] == [{"at": iso_time(T0), "online": True, "reason": "registered"}]
        missing = await http.get("/api/v1/devices/nope/status-history")
        assert missing.status_code == 404


async def test_health_ready_and_metrics(store: Store) -> None:
    async with await client(registrar_with_devices(), store, ready=False) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 503
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")


def test_iso_time_keeps_none() -> None:
    assert iso_time(None) is None
