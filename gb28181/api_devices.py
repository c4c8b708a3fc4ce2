"""HTTP routes for device management: catalog views, queries that wait, controls.

Routes stay thin: validate, call :class:`~gb28181.catalog_sync.CatalogService` or
:class:`~gb28181.queries.QueryService`, render JSON. A query's failure maps to the HTTP status
its error carries: 409 the device is offline, 504 it did not answer (the reason says what was
missing), 502 it refused; bad input is 400 with the reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authz import Action

from . import manscdp
from .alarms import AlarmService
from .api import MAX_PAGE, ApiError, int_param, iso_time
from .api_auth import client_source, enforce, principal_of, visible_ids
from .authorizer import AuthorizationDenied, Authorizer
from .catalog import CatalogNode, CatalogTree, ChannelStatus, NodeKind
from .catalog_sync import CatalogService
from .controls import CONTROL_BUILDERS, ControlError, build_control
from .correlator import QueryDone
from .faults import FaultService
from .queries import QueryError, QueryService
from .registrar import DeviceState, Registrar
from .store import AlarmRecord, ChannelRecord, FaultRecord, PositionRecord, Store
from .subscriptions import SubscriptionService

__all__ = ["channel_json", "device_routes", "message_json"]

#: Controls that move the camera or its lens: one holder at a time (control arbitration).
ARBITRATED_CONTROLS = frozenset({"ptz", "preset", "aux", "home-position"})
#: Nodes rendered by one tree request (the rest are counted, not shown).
MAX_TREE_NODES = 20000
_MAX_BODY = 16384


def message_json(value: Any) -> Any:
    """A decoded MANSCDP message or record as JSON: set fields only, by codec field name."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            if f.name in ("salvaged", "repairs", "charset", "extra_nodes", "root"):
                continue
            item = getattr(value, f.name)
            if item is None or item == () or item == {}:
                continue
            out[f.name] = message_json(item)
        return out
    if isinstance(value, tuple | list):
        return [message_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): message_json(v) for k, v in value.items()}
    return value


def channel_json(node: CatalogNode, online: bool = True) -> dict[str, Any]:
    """The public view of one catalog node. ``online``: whether the device or lower platform
    carrying it is online; while it is not, its channels show ``OFF`` (the status it last
    reported comes back with it)."""
    item = node.item
    return {
        "id": node.channel_id,
        "name": node.name,
        "kind": node.kind.value,
        "status": _status(node, online),
        "reported_status": node.status.value,
        "parent_ids": list(node.parent_ids),
        "manufacturer": item.manufacturer,
        "model": item.model,
        "address": item.address,
        "civil_code": item.civil_code,
        "longitude": item.longitude,
        "latitude": item.latitude,
        "ptz_type": item.info.ptz_type if item.info is not None else None,
        "security_class": node.security_class,
        "owner_department": node.owner_department,
        "shared": node.shared,
        "updated_at": iso_time(node.updated_at),
    }


def _status(node: CatalogNode, online: bool) -> str:
    if not online and node.kind is NodeKind.CHANNEL:
        return ChannelStatus.OFF.value
    return node.status.value


def _record_json(rec: ChannelRecord, online: bool = True) -> dict[str, Any]:
    off = not online and rec.kind == NodeKind.CHANNEL.value
    return {
        "device_id": rec.device_id,
        "id": rec.channel_id,
        "name": rec.name,
        "kind": rec.kind,
        "status": ChannelStatus.OFF.value if off else rec.status,
        "parent_ids": list(rec.parent_ids),
        "security_class": rec.security_class,
        "owner_department": rec.owner_department,
        "shared": rec.shared,
    }


def _tree_json(
    tree: CatalogTree, online: bool = True, hide: frozenset[str] = frozenset()
) -> tuple[list[dict[str, Any]], int]:
    """The rendered roots and how many nodes were not rendered (``hide``: nodes the caller
    may not view; neither rendered nor counted)."""
    budget = [MAX_TREE_NODES]
    seen: set[str] = set(hide)

    def render(node: CatalogNode) -> dict[str, Any]:
        seen.add(node.channel_id)
        budget[0] -= 1
        body: dict[str, Any] = {
            "id": node.channel_id,
            "name": node.name,
            "kind": node.kind.value,
            "status": _status(node, online),
        }
        kids = [c for c in tree.children(node.channel_id) if c.channel_id not in seen]
        if kids:
            body["children"] = [render(c) for c in kids if budget[0] > 0]
        return body

    roots = [render(n) for n in tree.roots() if budget[0] > 0 and n.channel_id not in seen]
    return roots, len(tree) - len(seen)


def _gb_time(request: Request, name: str) -> str:
    raw = request.query_params.get(name)
    if not raw:
        raise ApiError(400, "bad_parameter", f"{name} is required (ISO 8601 local time)")
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name} must be an ISO 8601 time") from None
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def _query_json(done: QueryDone) -> dict[str, Any]:
    body: dict[str, Any] = {
        "partial": done.partial,
        "reason": done.reason,
        "round_trip": round(done.finished - done.started, 3),
    }
    if done.items or done.sum_num is not None:
        body["sum_num"] = done.sum_num
        body["items"] = [message_json(i) for i in done.items]
    elif done.message is not None:
        body["response"] = message_json(done.message)
    if len(done.messages) > 1 and not done.items:
        body["responses"] = [message_json(m) for m in done.messages]
    return body


def _alarm_json(alarm: AlarmRecord) -> dict[str, Any]:
    return {
        "device_id": alarm.device_id,
        "channel_id": alarm.channel_id,
        "received_at": iso_time(alarm.received_at),
        "priority": alarm.priority,
        "method": alarm.method,
        "type": alarm.alarm_type,
        "alarm_time": alarm.alarm_time,
        "description": alarm.description,
        "longitude": alarm.longitude,
        "latitude": alarm.latitude,
    }


def _position_json(pos: PositionRecord) -> dict[str, Any]:
    return {
        "device_id": pos.device_id,
        "channel_id": pos.channel_id,
        "received_at": iso_time(pos.received_at),
        "capture_time": pos.capture_time,
        "longitude": pos.longitude,
        "latitude": pos.latitude,
        "speed": pos.speed,
        "direction": pos.direction,
        "altitude": pos.altitude,
    }


def _fault_json(fault: FaultRecord) -> dict[str, Any]:
    return {
        "device_id": fault.device_id,
        "channel_id": fault.channel_id or None,
        "kind": fault.kind,
        "cause": fault.cause,
        "at": iso_time(fault.at),
        "cleared_at": iso_time(fault.cleared_at),
    }


def _gap_stats(gaps: list[float]) -> dict[str, Any]:
    if not gaps:
        return {"count": 0, "max": None, "mean": None}
    return {
        "count": len(gaps),
        "max": round(max(gaps), 3),
        "mean": round(sum(gaps) / len(gaps), 3),
    }


def device_routes(
    registrar: Registrar,
    catalogs: CatalogService,
    queries: QueryService,
    store: Store,
    *,
    alarms: AlarmService | None = None,
    faults: FaultService | None = None,
    subscriptions: SubscriptionService | None = None,
    authorizer: Authorizer | None = None,
) -> list[Route]:
    """The device-management routes under ``/api/v1``.

    With ``authorizer``: devices and channels are listed only when the caller may view them
    (a hidden device is 404, as if unknown); RecordInfo needs PLAYBACK of its target and a
    DeviceControl CONTROL, PTZ-family controls through control arbitration (409 while another
    holder has the camera, with the remaining seconds).
    """

    def _device(request: Request) -> DeviceState:
        device_id = request.path_params["device_id"]
        st = registrar.get(device_id)
        if st is None or st.record.registered_at is None or not _device_shown(request, device_id):
            raise ApiError(404, "not_found", f"device {device_id} is not known")
        return st

    def _device_shown(request: Request, device_id: str) -> bool:
        if authorizer is None:
            return True
        principal = principal_of(request)
        return principal is not None and authorizer.device_visible(principal, device_id)

    def _shown_nodes(request: Request, nodes: list[CatalogNode]) -> list[CatalogNode]:
        shown = visible_ids(request, authorizer, [n.channel_id for n in nodes])
        return nodes if shown is None else [n for n in nodes if n.channel_id in shown]

    def _online(device_id: str) -> bool:
        st = registrar.get(device_id)
        return st is not None and st.record.online

    def _channel(request: Request) -> str | None:
        channel = request.query_params.get("channel")
        if channel is not None and (not channel.isdigit() or len(channel) != 20):
            raise ApiError(400, "bad_parameter", "channel must be a 20-digit ID")
        return channel

    def _timeout(request: Request) -> float:
        return float(int_param(request, "timeout", round(queries.default_timeout), 1, 120))

    async def _ask(
        request: Request, build: Callable[[str], manscdp.Message], parts: int = 1
    ) -> Response:
        st = _device(request)
        device_id = st.record.device_id
        target = _channel(request) or device_id
        timeout = _timeout(request)
        done = await _guard(
            queries.query(device_id, build(target), timeout=timeout, expected_parts=parts)
        )
        return JSONResponse(_query_json(done))

    async def list_channels(request: Request) -> Response:
        st = _device(request)
        limit = int_param(request, "limit", 100, 1, MAX_PAGE)
        offset = int_param(request, "offset", 0, 0, 10**9)
        tree = catalogs.trees.get(st.record.device_id)
        parent = request.query_params.get("parent")
        nodes: list[CatalogNode] = []
        if tree is not None:
            nodes = tree.children(parent) if parent else sorted(tree, key=_node_id)
        online = st.record.online
        status = request.query_params.get("status")
        if status:
            nodes = [n for n in nodes if _status(n, online) == status.upper()]
        nodes = _shown_nodes(request, nodes)
        page = nodes[offset : offset + limit]
        return JSONResponse(
            {
                "total": len(nodes),
                "offset": offset,
                "sync": catalogs.last_result.get(st.record.device_id),
                "last_sync": iso_time(catalogs.last_sync.get(st.record.device_id)),
                "items": [channel_json(n, online) for n in page],
            }
        )

    async def device_tree(request: Request) -> Response:
        st = _device(request)
        tree = catalogs.trees.get(st.record.device_id)
        if tree is None:
            return JSONResponse({"total": 0, "counts": {}, "roots": [], "not_shown": 0})
        hide: frozenset[str] = frozenset()
        if authorizer is not None:
            channels = [n.channel_id for n in tree if n.kind is NodeKind.CHANNEL]
            hide = frozenset(channels) - (visible_ids(request, authorizer, channels) or set())
        roots, not_shown = _tree_json(tree, st.record.online, hide)
        counts = {k.value: v for k, v in tree.count_by_kind().items()}
        if hide:
            counts[NodeKind.CHANNEL.value] -= len(hide)
        return JSONResponse(
            {"total": len(tree) - len(hide), "counts": counts, "roots": roots,
             "not_shown": not_shown}
        )  # fmt: skip

    async def search_channels(request: Request) -> Response:
        text = request.query_params.get("q", "")
        if len(text) > 64:
            raise ApiError(400, "bad_parameter", "q must be at most 64 characters")
        limit = int_param(request, "limit", 50, 1, MAX_PAGE)
        offset = int_param(request, "offset", 0, 0, 10**9)
        rows = await store.search_channels(text, limit=limit, offset=offset)
        shown = visible_ids(request, authorizer, [r.channel_id for r in rows])
        if shown is not None:
            rows = [r for r in rows if r.channel_id in shown]
        items = [_record_json(r, _online(r.device_id)) for r in rows]
        return JSONResponse({"offset": offset, "items": items})

    async def sync_catalog(request: Request) -> Response:
        st = _device(request)
        device_id = st.record.device_id
        if not st.record.online:
            raise ApiError(409, "offline", f"device {device_id} is offline")
        catalogs.request_sync(device_id)
        return JSONResponse({"started": True}, status_code=202)

    async def device_info(request: Request) -> Response:
        return await _ask(request, lambda t: manscdp.DeviceInfoQuery(device_id=t))

    async def device_status(request: Request) -> Response:
        return await _ask(request, lambda t: manscdp.DeviceStatusQuery(device_id=t))

    async def presets(request: Request) -> Response:
        return await _ask(request, lambda t: manscdp.PresetQuery(device_id=t))

    async def records(request: Request) -> Response:
        start, end = _gb_time(request, "start"), _gb_time(request, "end")
        if start >= end:
            raise ApiError(400, "bad_parameter", "start must be before end")
        kind = request.query_params.get("type", "all")
        if kind not in ("all", "time", "alarm", "manual"):
            raise ApiError(400, "bad_parameter", "type must be all, time, alarm or manual")
        target = _channel(request) or _device(request).record.device_id
        enforce(request, authorizer, Action.PLAYBACK, target)
        return await _ask(
            request,
            lambda t: manscdp.RecordInfoQuery(
                device_id=t, start_time=start, end_time=end, secrecy=0, type=kind
            ),
        )

    async def config(request: Request) -> Response:
        kinds = request.query_params.get("type", "BasicParam")
        parts = [k for k in kinds.split("/") if k]
        if not parts or not all(k.isalnum() and len(k) <= 40 for k in parts) or len(parts) > 8:
            raise ApiError(400, "bad_parameter", "type must be config types joined by /")
        return await _ask(
            request,
            lambda t: manscdp.ConfigDownloadQuery(device_id=t, config_type="/".join(parts)),
            parts=len(parts),
        )

    async def control(request: Request) -> Response:
        st = _device(request)
        name = request.path_params["control"]
        if name not in CONTROL_BUILDERS:
            raise ApiError(404, "not_found", f"no control {name!r}")
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            raise ApiError(413, "too_large", "request body too large")
        try:
            params = json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(400, "bad_json", "the body must be JSON") from None
        try:
            channel, message = build_control(name, params)
        except ControlError as exc:
            raise ApiError(400, "bad_parameter", str(exc)) from None
        device_id = st.record.device_id
        if authorizer is not None:
            _authorize_control(request, authorizer, name, channel or device_id, params)
        message = dataclasses.replace(message, device_id=channel or device_id)
        response = await _guard(queries.control(device_id, message))
        return JSONResponse(
            {"sent": True, "sip_status": response.status, "target": channel or device_id}
        )

    async def list_alarms(request: Request) -> Response:
        limit = int_param(request, "limit", 100, 1, MAX_PAGE)
        offset = int_param(request, "offset", 0, 0, 10**9)
        device = request.query_params.get("device") or None
        if alarms is not None and alarms.store is not None:
            total, page = await store.list_alarms(limit=limit, offset=offset, device_id=device)
        elif alarms is not None:
            total, page = alarms.page(limit=limit, offset=offset, device_id=device)
        else:
            total, page = 0, []
        return JSONResponse(
            {"total": total, "offset": offset, "items": [_alarm_json(a) for a in page]}
        )

    async def list_faults(request: Request) -> Response:
        limit = int_param(request, "limit", 100, 1, MAX_PAGE)
        offset = int_param(request, "offset", 0, 0, 10**9)
        device = request.query_params.get("device") or None
        open_only = request.query_params.get("open", "").lower() in ("1", "true", "yes")
        total, page = await store.list_faults(
            limit=limit, offset=offset, device_id=device, open_only=open_only
        )
        return JSONResponse(
            {"total": total, "offset": offset, "items": [_fault_json(f) for f in page]}
        )

    async def diagnosis(request: Request) -> Response:
        st = _device(request)
        device_id = st.record.device_id
        rec = st.record
        subs = subscriptions.table.of_device(device_id) if subscriptions is not None else []
        tracker = faults.tracker if faults is not None else None
        return JSONResponse(
            {
                "id": device_id,
                "online": rec.online,
                "registered": st.registered,
                "last_registration": iso_time(rec.registered_at),
                "transport": rec.transport,
                "address": f"{rec.host}:{rec.port}" if rec.host else None,
                "last_keepalive": iso_time(rec.last_keepalive),
                "keepalive_status": rec.extra.get("last_status", "OK"),
                "keepalive_gaps": [round(g, 3) for g in st.keepalive_gaps],
                "keepalive_gap_stats": _gap_stats(list(st.keepalive_gaps)),
                "round_trips": [round(t, 3) for t in queries.round_trips.get(device_id, [])],
                "catalog": {
                    "last_sync": iso_time(catalogs.last_sync.get(device_id)),
                    "result": catalogs.last_result.get(device_id),
                    "polled": device_id in catalogs.polled,
                },
                "subscriptions": [
                    {
                        "event": s.event,
                        "state": s.state.value,
                        "expires_at": iso_time(s.expires_at) if s.expires_at else None,
                        "notifies": s.notifies,
                        "reason": s.reason or None,
                    }
                    for s in subs
                ],
                "open_faults": [
                    _fault_json(f) for f in (tracker.of_device(device_id) if tracker else [])
                ],
                "last_errors": [
                    _fault_json(f)
                    for f in reversed(tracker.recent.get(device_id, ()) if tracker else ())
                ],
            }
        )

    async def positions(request: Request) -> Response:
        st = _device(request)
        channel = _channel(request) or st.record.device_id
        limit = int_param(request, "limit", 100, 1, MAX_PAGE)
        history = await store.position_history(channel, limit=limit)
        return JSONResponse({"channel": channel, "items": [_position_json(p) for p in history]})

    base = "/api/v1/devices/{device_id}"
    return [
        Route(f"{base}/positions", positions),
        Route("/api/v1/alarms", list_alarms),
        Route("/api/v1/faults", list_faults),
        Route(f"{base}/diagnosis", diagnosis),
        Route("/api/v1/channels", search_channels),
        Route(f"{base}/channels", list_channels),
        Route(f"{base}/tree", device_tree),
        Route(f"{base}/catalog", sync_catalog, methods=["POST"]),
        Route(f"{base}/device-info", device_info),
        Route(f"{base}/device-status", device_status),
        Route(f"{base}/records", records),
        Route(f"{base}/presets", presets),
        Route(f"{base}/config", config),
        Route(base + "/{control}", control, methods=["POST"]),
    ]


def _authorize_control(
    request: Request, authorizer: Authorizer, name: str, target: str, params: Any
) -> None:
    """CONTROL of ``target``; camera-moving controls through arbitration (``"emergency":
    true`` in the body asks for emergency priority)."""
    principal = principal_of(request)
    if principal is None:
        raise AuthorizationDenied("no authenticated principal", "unauthenticated", status=401)
    source = client_source(request.scope)
    if name in ARBITRATED_CONTROLS:
        emergency = isinstance(params, dict) and params.get("emergency") is True
        authorizer.require_control(principal, target, emergency=emergency, source=source)
    else:
        authorizer.check(principal, Action.CONTROL, target, source=source)


def _node_id(node: CatalogNode) -> str:
    return node.channel_id


async def _guard(awaitable: Awaitable[Any]) -> Any:
    try:
        return await awaitable
    except QueryError as exc:
        code = {409: "offline", 504: "timeout", 502: "device_error"}.get(exc.status, "error")
        raise ApiError(exc.status, code, str(exc)) from None
