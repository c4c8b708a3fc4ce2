"""HTTP route for the upper platforms we register to (cascade, ``[[upstream]]``).

``GET /api/v1/upstreams`` lists each one: its ID, address and transport, our ID toward it, the
registration state (``registering``, ``registered``, ``backoff``...), when the registration
runs out, how many registrations and failures there were and the last error. It shows the
network topology, so only level 1 may read it (403 otherwise).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .api import iso_time
from .api_auth import principal_of
from .authorizer import AuthorizationDenied
from .uplink_service import UplinkService

__all__ = ["uplink_routes"]


def uplink_routes(uplinks: UplinkService) -> list[Route]:
    """The route above, over ``uplinks``."""

    async def list_upstreams(request: Request) -> Response:
        principal = principal_of(request)
        if principal is not None and principal.level != 1:
            raise AuthorizationDenied("only level 1 may list the upper platforms", "level-1-only")
        items: list[dict[str, Any]] = []
        for item in uplinks.describe():
            until = item.pop("registered_until")
            items.append({**item, "registered_until": iso_time(until) if until else None})
        return JSONResponse({"total": len(items), "items": items})

    return [Route("/api/v1/upstreams", list_upstreams)]
