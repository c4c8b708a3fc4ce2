"""Grants, control sessions and channel attributes through the HTTP routes (authenticated
principals injected by a tiny middleware; authentication itself is tests/test_api_auth.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from authz import Policy, Principal, PrincipalKind
from gb28181.api import build_app
from gb28181.api_authz import authz_routes
from gb28181.api_devices import device_routes
from gb28181.authorizer import Authorizer, CatalogFacts, grant_from_json
from gb28181.catalog import CatalogTree, CatalogTrees
from gb28181.channel_writer import ChannelWriter
from gb28181.metrics import Metrics
from gb28181.registrar import Registrar, RegistrarConfig
from gb28181.sip import DigestVerifier, NonceIssuer
from gb28181.store import ChannelRecord, DeviceRecord, Store, open_store

T0 = 1_750_000_000.0
NVR = "34020000001110000001"
CAM = "34020000001320000001"
SECRET = "34020000001320000002"

PRINCIPALS = {
    "l1": Principal("l1", PrincipalKind.USER, "police", 1),
    "em": Principal("em", PrincipalKind.USER, "emergency", 2, is_emergency_manager=True),
    "l2": Principal("l2", PrincipalKind.USER, "traffic", 2),
    "l3": Principal("l3", PrincipalKind.USER, "district", 3),
    "l4": Principal("l4", PrincipalKind.USER, "water", 4),
}


class AsPrincipal:
    """Test middleware: ``X-As: <name>`` picks the principal."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or ())
        name = headers.get(b"x-as", b"").decode()
        if name:
            scope.setdefault("state", {})["principal"] = PRINCIPALS[name]
        await self.app(scope, receive, send)


class Audit:
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


class Env:
    def __init__(self, store: Store) -> None:
        self.now = T0
        self.audit = Audit()
        tree = CatalogTree(NVR)
        records = [
            ChannelRecord(NVR, CAM, owner_department="traffic", shared=True),
            ChannelRecord(NVR, SECRET, owner_department="traffic", shared=True, security_class=4),
        ]
        tree.load(records)
        self.trees = CatalogTrees({NVR: tree})
        self.catalogs = SimpleNamespace(
            trees=self.trees, device_of=self.trees.device_of, last_result={}, last_sync={}
        )
        self.facts = CatalogFacts(self.trees)
        self.authorizer = Authorizer(
            Policy(),
            self.facts,
            audit=self.audit,
            clock=lambda: self.now,
            channels_of=self.facts.channels_of,
        )
        self.registrar = Registrar(
            RegistrarConfig(server_id="34020000002000000001", domain="3402000000"),
            DigestVerifier(NonceIssuer(b"s" * 32, 300), "3402000000"),
        )
        self.registrar.restore(
            [DeviceRecord(NVR, "device", host="192.0.2.1", port=5060, expires=3600,
                          registered_at=T0, online=True)],
            T0,
        )  # fmt: skip
        self.store = store

    async def client(self) -> httpx.AsyncClient:
        await self.store.upsert_channels(NVR, self.trees[NVR].records())
        routes = authz_routes(
            self.authorizer, self.store, catalogs=self.catalogs, facts=self.facts,  # type: ignore[arg-type]
            max_grant_seconds=86400,
        )  # fmt: skip
        routes += device_routes(
            self.registrar, self.catalogs, SimpleNamespace(default_timeout=5),  # type: ignore[arg-type]
            self.store, authorizer=self.authorizer,
        )  # fmt: skip

        async def ready() -> bool:
            return True

        app = build_app(
            self.registrar, Metrics(), self.store, ready, routes,
            device_visible=self.authorizer.device_visible,
        )  # fmt: skip
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=AsPrincipal(app)),
                                 base_url="http://t")  # fmt: skip


def as_(name: str) -> dict[str, str]:
    return {"X-As": name}


async def test_grant_lifecycle_apply_approve_expire_persisted(store: Store) -> None:
    env = Env(store)
    async with await env.client() as http:
        r = await http.post(
            "/api/v1/grants",
            headers=as_("l4"),
            json={"kind": "emergency-access", "target": SECRET, "reason": "flood on the road"},
        )
        assert r.status_code == 201, r.text
        grant = r.json()
        assert grant["state"] == "pending" and grant["department"] == "water"
        assert grant["actions"] == ["snapshot", "view"]
        gid = grant["id"]
        # Nobody but a decider approves; no self-approval.
        r = await http.post(f"/api/v1/grants/{gid}/approve", headers=as_("l4"),
                            json={"valid_for": 60})  # fmt: skip
        assert r.status_code == 403
        r = await http.post(f"/api/v1/grants/{gid}/approve", headers=as_("em"),
                            json={"valid_for": 10**6})  # fmt: skip
        assert r.status_code == 400 and "exceeds" in r.json()["reason"]
        r = await http.post(f"/api/v1/grants/{gid}/approve", headers=as_("em"),
                            json={"valid_for": 60})  # fmt: skip
        assert r.status_code == 200 and r.json()["state"] == "approved"
        r = await http.post(f"/api/v1/grants/{gid}/approve", headers=as_("em"),
                            json={"valid_for": 60})  # fmt: skip
        assert r.status_code == 409
        assert (await http.post("/api/v1/grants/nope/refuse", headers=as_("em"))).status_code == 404
        listed = (await http.get("/api/v1/grants", headers=as_("l4"))).json()
        assert [g["id"] for g in listed["items"]] == [gid]
        assert (await http.get("/api/v1/grants", headers=as_("l3"))).json()["total"] == 0
        assert (await http.get("/api/v1/grants", headers=as_("l1"))).json()["total"] == 1
    # The level-4 department now sees the specific-area camera, until the grant ends.
    water = PRINCIPALS["l4"]
    assert env.authorizer.decide(water, _view(), SECRET).rule == "grant-emergency-access"
    stored = [grant_from_json(json.loads(b)) for b in await store.load_grants()]
    assert stored[0].state.value == "approved"
    env.now += 61
    env.authorizer.tick()
    assert not env.authorizer.decide(water, _view(), SECRET).allow


def _view() -> Any:
    from authz import Action

    return Action.VIEW


async def test_grant_validation(store: Store) -> None:
    env = Env(store)
    async with await env.client() as http:
        bad = [
            {"kind": "nope", "target": CAM, "reason": "x"},
            {"kind": "permission-change", "target": CAM, "reason": "x"},  # no actions
            {"kind": "permission-change", "target": CAM, "reason": "x", "actions": ["fly"]},
            {"kind": "level-change", "target": CAM, "reason": "x", "level": 9},
            {"kind": "emergency-access", "target": "", "reason": "x"},
            {"kind": "emergency-access", "target": CAM, "reason": ""},
        ]
        for body in bad:
            r = await http.post("/api/v1/grants", headers=as_("l3"), json=body)
            assert r.status_code == 400, body
        r = await http.post("/api/v1/grants", json={"kind": "emergency-access"})
        assert r.status_code == 401


async def test_control_period_preemption_and_release(store: Store) -> None:
    env = Env(store)
    async with await env.client() as http:
        ptz = f"/api/v1/devices/{NVR}/ptz"
        body = {"channel": CAM, "direction": "left", "speed": 50}
        # The routes reach the control check before sending (the query service is a stub).
        with pytest.raises(AttributeError):
            await http.post(ptz, headers=as_("l2"), json=body)
        holder = (await http.get(f"/api/v1/channels/{CAM}/control", headers=as_("l2"))).json()
        assert holder["holder"] == "l2" and holder["level"] == 2
        # Level 1 takes it and reserves it for 10 minutes.
        r = await http.post(f"/api/v1/channels/{CAM}/control/period", headers=as_("l1"),
                            json={"seconds": 600})  # fmt: skip
        assert r.status_code == 200 and r.json()["holder"] == "l1"
        env.now += 100
        r = await http.post(ptz, headers=as_("l2"), json=body)
        assert r.status_code == 409
        refusal = r.json()
        assert refusal["error"] == "control_held" and refusal["rule"] == "preempt-higher-level"
        assert "control taken by l1" in refusal["reason"]
        r = await http.post(ptz, headers=as_("l2"), json=body)
        assert r.status_code == 409 and r.json()["rule"] == "control-period"
        assert r.json()["remaining"] == 500
        r = await http.post(f"/api/v1/channels/{CAM}/control/period", headers=as_("l2"),
                            json={"seconds": 60})  # fmt: skip
        assert r.status_code == 403 and r.json()["rule"] == "control-period-level-1"
        r = await http.post(ptz, headers=as_("l3"), json=body)
        assert r.status_code == 403 and r.json()["rule"] == "L3-control-not-authorised"
        r = await http.post(ptz, headers=as_("l4"), json=body)
        assert r.status_code == 404  # a device it may not view is not known to it
        assert (
            await http.delete(f"/api/v1/channels/{CAM}/control", headers=as_("l2"))
        ).status_code == 404
        assert (
            await http.delete(f"/api/v1/channels/{CAM}/control", headers=as_("l1"))
        ).status_code == 204
        free = (await http.get(f"/api/v1/channels/{CAM}/control", headers=as_("l1"))).json()
        assert free == {"holder": None}
    actions = [r["action"] for r in env.audit.records]
    for expected in ("control.granted", "control.period", "control.preempted", "control.refused",
                     "control.release"):  # fmt: skip
        assert expected in actions


async def test_listings_are_filtered_and_attributes_level1_only(store: Store) -> None:
    env = Env(store)
    async with await env.client() as http:
        listed = (await http.get(f"/api/v1/devices/{NVR}/channels", headers=as_("l2"))).json()
        assert [c["id"] for c in listed["items"]] == [CAM, SECRET]  # own department
        listed = (await http.get(f"/api/v1/devices/{NVR}/channels", headers=as_("l3"))).json()
        assert [c["id"] for c in listed["items"]] == [CAM]
        tree = (await http.get(f"/api/v1/devices/{NVR}/tree", headers=as_("l3"))).json()
        assert tree["total"] == 1 and [n["id"] for n in tree["roots"]] == [CAM]
        assert tree["counts"]["channel"] == 1 and tree["not_shown"] == 0
        tree = (await http.get(f"/api/v1/devices/{NVR}/tree", headers=as_("l1"))).json()
        assert tree["total"] == 2
        assert (await http.get("/api/v1/devices", headers=as_("l4"))).json()["total"] == 0
        assert (await http.get(f"/api/v1/devices/{NVR}", headers=as_("l4"))).status_code == 404
        assert (await http.get("/api/v1/devices", headers=as_("l1"))).json()["total"] == 1
        r = await http.patch(f"/api/v1/channels/{CAM}", headers=as_("l2"), json={"shared": False})
        assert r.status_code == 403 and r.json()["rule"] == "config-level-1"
        r = await http.patch(
            f"/api/v1/channels/{CAM}", headers=as_("l1"),
            json={"security_class": 1, "shared_with": ["water"], "controllable_by": ["district"]},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["shared_with"] == ["water"] and r.json()["specific_area"] is False
        assert (await http.get("/api/v1/devices", headers=as_("l4"))).json()["total"] == 1
        r = await http.patch(f"/api/v1/channels/{CAM}", headers=as_("l1"), json={"colour": 1})
        assert r.status_code == 400
        r = await http.patch(f"/api/v1/channels/{CAM}9", headers=as_("l1"), json={"shared": True})
        assert r.status_code == 404
    assert await store.load_channel_acl() == [
        (CAM, "controllable_by", "district"),
        (CAM, "shared_with", "water"),
    ]
    rows = await store.load_channels(NVR)
    assert next(r for r in rows if r.channel_id == CAM).security_class == 1
    changes = [r for r in env.audit.records if r["action"] == "config.channel"]
    assert [c["outcome"] for c in changes] == ["deny", "ok"]


async def test_attributes_go_to_the_tree_of_the_latest_reporter(store: Store) -> None:
    env = Env(store)
    nvr2 = "34020000001110000002"
    moved = CatalogTree(nvr2)
    moved.load([ChannelRecord(nvr2, CAM, owner_department="traffic", updated_at=T0 + 1)])
    env.trees[nvr2] = moved  # the camera moved: both NVRs list it, nvr2 most recently
    async with await env.client() as http:
        r = await http.patch(
            f"/api/v1/channels/{CAM}", headers=as_("l1"), json={"security_class": 2}
        )
        assert r.status_code == 200, r.text
        assert r.json()["device_id"] == nvr2 and r.json()["security_class"] == 2
    node, old = moved.get(CAM), env.trees[NVR].get(CAM)
    assert node is not None and node.security_class == 2
    assert old is not None and old.security_class == 0


class FakeCalls:
    """The part of CallService the session routes use."""

    def __init__(self) -> None:
        self.sessions: dict[str, Any] = {}
        self.stopped: list[str] = []
        self.left: list[int] = []

    async def play(self, channel_id: str, output: Any) -> tuple[Any, Any]:
        session = self.sessions.setdefault(
            "s1", SimpleNamespace(session_id="s1", channel_id=channel_id, consumers={})
        )
        consumer = SimpleNamespace(consumer_id=len(session.consumers) + 1)
        session.consumers[consumer.consumer_id] = consumer
        return session, consumer

    def describe(self, session: Any) -> dict[str, Any]:
        return {"id": session.session_id, "channel": session.channel_id}

    async def stop(self, session_id: str) -> None:
        self.stopped.append(session_id)

    def leave(self, session_id: str, consumer_id: int) -> None:
        self.left.append(consumer_id)
        del self.sessions[session_id].consumers[consumer_id]


async def test_viewers_end_their_own_consumers_level1_ends_streams(store: Store) -> None:
    from gb28181.api_calls import call_routes

    env = Env(store)
    calls = FakeCalls()

    async def ready() -> bool:
        return True

    app = build_app(
        env.registrar, Metrics(), store, ready,
        call_routes(calls, env.authorizer),  # type: ignore[arg-type]
    )  # fmt: skip
    transport = httpx.ASGITransport(app=AsPrincipal(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        r = await http.post(f"/api/v1/channels/{SECRET}/play", headers=as_("l3"))
        assert r.status_code == 403 and r.json()["rule"] == "L3-specific-area"
        assert (await http.post(f"/api/v1/channels/{CAM}/play", headers=as_("l2"))).json()[
            "consumer"
        ] == 1
        assert (await http.post(f"/api/v1/channels/{CAM}/play", headers=as_("l3"))).json()[
            "consumer"
        ] == 2
        assert (await http.get("/api/v1/sessions", headers=as_("l4"))).json()["total"] == 0
        assert (await http.get("/api/v1/sessions", headers=as_("l3"))).json()["total"] == 1
        r = await http.delete("/api/v1/sessions/s1?consumer=1", headers=as_("l3"))
        assert r.status_code == 403 and r.json()["rule"] == "session-not-own"
        r = await http.delete("/api/v1/sessions/s1", headers=as_("l3"))
        assert r.status_code == 403
        assert (
            await http.delete("/api/v1/sessions/s1?consumer=2", headers=as_("l3"))
        ).status_code == 204
        assert (await http.delete("/api/v1/sessions/s1", headers=as_("l4"))).status_code == 404
        assert (await http.delete("/api/v1/sessions/s1", headers=as_("l1"))).status_code == 204
    assert calls.left == [2] and calls.stopped == ["s1"]


async def test_attributes_set_before_the_catalog_rows_are_stored_are_kept(store: Store) -> None:
    """An operator classifying a channel right after its catalog arrived: the channel
    writer still holds the row (taken before the change); the PATCH writes it first, so the
    classification lands on a stored row and is not overwritten by the late insert."""
    env = Env(store)
    writer = ChannelWriter(store, interval=3600)
    writer.upsert(NVR, env.trees[NVR].records())  # queued, not stored
    routes = authz_routes(
        env.authorizer, store, catalogs=env.catalogs, facts=env.facts,  # type: ignore[arg-type]
        flush_channels=writer.flush,
    )  # fmt: skip

    async def ready() -> bool:
        return True

    app = build_app(env.registrar, Metrics(), store, ready, routes)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=AsPrincipal(app)), base_url="http://t"
    ) as http:
        r = await http.patch(
            f"/api/v1/channels/{CAM}", headers=as_("l1"), json={"security_class": 3}
        )
        assert r.status_code == 200, r.text
    await writer.flush()
    rows = await store.load_channels(NVR)
    assert next(r for r in rows if r.channel_id == CAM).security_class == 3
