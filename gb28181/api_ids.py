"""HTTP routes for central ID allocation (regulation art. 11).

``POST /api/v1/ids`` with JSON ``{"department", "type", "count", "note"}`` issues the next free
IDs (201); ``GET /api/v1/ids?department=&limit=&offset=`` lists issued IDs newest first.
Bad requests are 400 with the reason; a department whose ranges are full is 409.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .api import MAX_PAGE, ApiError, int_param, iso_time
from .id_registry import IdRegistry, IdsExhausted
from .ids import IdError
from .store import IssuedId, Store

__all__ = ["id_routes", "issued_json"]

_MAX_BODY = 4096


def issued_json(issued: IssuedId) -> dict[str, Any]:
    return {
        "id": issued.id,
        "department": issued.department,
        "type": issued.type_code,
        "issued_at": iso_time(issued.issued_at),
        "note": issued.note,
    }


def id_routes(
    registry: IdRegistry, store: Store, *, clock: Callable[[], float] = time.time
) -> list[Route]:
    """The ``/api/v1/ids`` routes over ``registry`` (allocation) and ``store`` (listing)."""

    async def issue(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            raise ApiError(413, "too_large", "request body too large")
        try:
            params = json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(400, "bad_json", "the body must be JSON") from None
        if not isinstance(params, dict):
            raise ApiError(400, "bad_json", "the body must be a JSON object")
        department = params.get("department")
        type_code = params.get("type")
        count = params.get("count", 1)
        if not isinstance(department, str) or not department:
            raise ApiError(400, "bad_parameter", "department is required")
        if not isinstance(type_code, str):
            raise ApiError(400, "bad_parameter", "type must be a 3-digit type code string")
        try:
            issued = await registry.issue(department, type_code, count, params.get("note"), clock())
        except IdsExhausted as exc:
            raise ApiError(409, "exhausted", str(exc)) from None
        except IdError as exc:
            raise ApiError(400, "bad_parameter", str(exc)) from None
        return JSONResponse(
            {"count": len(issued), "items": [issued_json(i) for i in issued]}, status_code=201
        )

    async def list_ids(request: Request) -> Response:
        limit = int_param(request, "limit", 100, 1, MAX_PAGE)
        offset = int_param(request, "offset", 0, 0, 10**9)
        department = request.query_params.get("department") or None
        total, page = await store.list_issued_ids(department=department, limit=limit, offset=offset)
        return JSONResponse(
            {"total": total, "offset": offset, "items": [issued_json(i) for i in page]}
        )

    return [
        Route("/api/v1/ids", issue, methods=["POST"]),
        Route("/api/v1/ids", list_ids, methods=["GET"]),
    ]
