"""HTTP API (Starlette): thin routes that validate, call a service, render JSON.

``/api/v1`` is the versioned API; ``/healthz`` (process alive), ``/readyz``
(listeners bound and storage reachable) and ``/metrics`` (Prometheus) are for
operations. Errors are JSON ``{"error": <code>, "reason": <text>}`` with the
HTTP status that says what happened.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from authz import Principal

from .api_auth import denied_json, principal_of
from .authorizer import AuthorizationDenied
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .registrar import DeviceState, Registrar
from .store import Store

__all__ = ["MAX_PAGE", "ApiError", "build_app", "device_json", "int_param", "iso_time"]

MAX_PAGE = 1000


class ApiError(Exception):
    """Raised by a route to answer ``status`` with a JSON reason."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


def iso_time(epoch: float | None) -> str | None:
    """Epoch seconds as local ISO 8601 with offset (``None`` stays ``None``)."""
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="milliseconds")


def device_json(st: DeviceState) -> dict[str, Any]:
    """The public view of one device."""
    rec = st.record
    return {
        "id": rec.device_id,
        "name": rec.name,
        "type": rec.kind,
        "transport": rec.transport,
        "address": f"{rec.host}:{rec.port}" if rec.host else None,
        "online": rec.online,
        "registered": st.registered,
        "registered_at": iso_time(rec.registered_at),
        "expires": rec.expires,
        "last_keepalive": iso_time(rec.last_keepalive),
        "user_agent": rec.user_agent,
        "gb_version": rec.gb_version or None,
    }


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    """Query parameter ``name`` as an int in ``lo..hi`` (400 otherwise)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise ApiError(400, "bad_parameter", f"{name} must be between {lo} and {hi}")
    return value


def build_app(
    registrar: Registrar,
    metrics: Metrics,
    store: Store,
    ready: Callable[[], Awaitable[bool]],
    extra_routes: Sequence[BaseRoute] = (),
    *,
    device_visible: Callable[[Principal, str], bool] | None = None,
) -> Starlette:
    """Build the ASGI app over the running services (``extra_routes``: other services').

    ``device_visible(principal, device_id)``: whether a device is listed to the principal
    (the server passes :meth:`gb28181.authorizer.Authorizer.device_visible`); ``None`` lists
    every device (route tests without authentication).
    """

    def _shown(request: Request, device_id: str) -> bool:
        if device_visible is None:
            return True
        principal = principal_of(request)
        return principal is not None and device_visible(principal, device_id)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok = await ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def list_devices(request: Request) -> Response:
        limit = int_param(request, "limit", 100, 1, MAX_PAGE)
        offset = int_param(request, "offset", 0, 0, 10**9)
        online = request.query_params.get("online")
        kind = request.query_params.get("type")
        items = sorted(registrar.devices.values(), key=lambda s: s.record.device_id)
        items = [s for s in items if s.registered or s.record.registered_at is not None]
        items = [s for s in items if _shown(request, s.record.device_id)]
        if online is not None:
            want = online.lower() in ("1", "true", "yes")
            items = [s for s in items if s.record.online == want]
        if kind is not None:
            items = [s for s in items if s.record.kind == kind]
        page = items[offset : offset + limit]
        return JSONResponse(
            {"total": len(items), "offset": offset, "items": [device_json(s) for s in page]}
        )

    def _device(request: Request) -> DeviceState:
        device_id = request.path_params["device_id"]
        st = registrar.get(device_id)
        if st is None or st.record.registered_at is None or not _shown(request, device_id):
            raise ApiError(404, "not_found", f"device {device_id} is not known")
        return st

    async def get_device(request: Request) -> Response:
        st = _device(request)
        body = device_json(st)
        body["contact"] = st.record.contact
        body["keepalive_gaps"] = [round(g, 3) for g in st.keepalive_gaps]
        return JSONResponse(body)

    async def device_history(request: Request) -> Response:
        st = _device(request)
        limit = int_param(request, "limit", 100, 1, MAX_PAGE)
        events = await store.status_history(st.record.device_id, limit=limit)
        return JSONResponse(
            {
                "items": [
                    {"at": iso_time(e.at), "online": e.online, "reason": e.reason} for e in events
                ]
            }
        )

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return JSONResponse({"error": exc.error, "reason": exc.reason}, status_code=exc.status)

    async def denied(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthorizationDenied)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(denied_json(exc), status_code=exc.status, headers=headers)

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_route),
        Route("/api/v1/devices", list_devices),
        Route("/api/v1/devices/{device_id}", get_device),
        Route("/api/v1/devices/{device_id}/status-history", device_history),
        *extra_routes,
    ]
    handlers = {ApiError: api_error, AuthorizationDenied: denied}
    return Starlette(routes=routes, exception_handlers=handlers)
