"""HTTP routes for live play (notes §6).

``POST /api/v1/channels/{id}/play`` with an optional JSON body ``{"output": {"addr", "port",
"transport"}}`` starts the channel's stream, or joins it when it is already playing, and
returns the session with the new consumer's id (201). ``DELETE /api/v1/sessions/{id}`` ends
the session at once (BYE); with ``?consumer=<n>`` only that consumer leaves, and BYE follows
after the idle delay when it was the last. ``GET /api/v1/sessions`` lists the sessions.
``GET /api/v1/sessions/{id}/snapshot[?quality=1-100]`` returns a JPEG of the latest keyframe
(``image/jpeg``), or 409 while none has been received.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authz import Action
from media.snapshot import DEFAULT_QUALITY

from .api import ApiError
from .api_auth import enforce, principal_of, visible_ids
from .authorizer import AuthorizationDenied, Authorizer
from .calls import CallError, CallService

__all__ = ["call_routes", "parse_output"]

_MAX_BODY = 4096


def parse_output(params: Any) -> tuple[str, int, str] | None:
    """The ``output`` object of a play request as ``(addr, port, transport)``.

    :raises ApiError: not an object, an address that is not an IP, a bad port or transport.
    """
    if params is None:
        return None
    if not isinstance(params, dict):
        raise ApiError(400, "bad_parameter", "output must be an object")
    addr, port = params.get("addr"), params.get("port")
    transport = params.get("transport", "udp")
    try:
        ipaddress.ip_address(addr if isinstance(addr, str) else "")
    except ValueError:
        raise ApiError(400, "bad_parameter", "output.addr must be an IP address") from None
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ApiError(400, "bad_parameter", "output.port must be a port number 1-65535")
    if not isinstance(transport, str) or transport.lower() not in ("udp", "tcp"):
        raise ApiError(400, "bad_parameter", "output.transport must be udp or tcp")
    return str(addr), port, transport.lower()


def call_routes(calls: CallService, authorizer: Authorizer | None = None) -> list[Route]:
    """The play and session routes over ``calls``.

    With ``authorizer``: play needs VIEW of the channel and a snapshot SNAPSHOT (each an
    audited decision, 403 with the rule otherwise); sessions are listed and shown only for
    channels the caller may view; a viewer removes its own consumers, and ending a stream
    with other viewers takes level 1 (403 ``session-not-own``).
    """

    def _session(request: Request) -> Any:
        session = calls.sessions.get(request.path_params["session_id"])
        if session is None or not _may_view(request, session.channel_id):
            raise ApiError(404, "not_found", "no such session")
        return session

    def _may_view(request: Request, channel_id: str) -> bool:
        shown = visible_ids(request, authorizer, [channel_id])
        return shown is None or channel_id in shown

    # (session, consumer) -> who added it: a viewer removes its own consumers; stopping a
    # stream others watch takes level 1.
    owners: dict[tuple[str, int], str] = {}

    def _may_end(request: Request, session: Any, consumer: int | None) -> None:
        principal = principal_of(request)
        if authorizer is None or principal is None or principal.level == 1:
            return
        ids = [consumer] if consumer is not None else list(session.consumers)
        if all(owners.get((session.session_id, i)) == principal.id for i in ids):
            return
        raise AuthorizationDenied(
            "only level 1 may end what other viewers watch", "session-not-own"
        )

    async def play(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            raise ApiError(413, "too_large", "request body too large")
        try:
            params = json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(400, "bad_json", "the body must be JSON") from None
        if not isinstance(params, dict):
            raise ApiError(400, "bad_json", "the body must be a JSON object")
        output = parse_output(params.get("output"))
        enforce(request, authorizer, Action.VIEW, request.path_params["channel_id"])
        try:
            session, consumer = await calls.play(request.path_params["channel_id"], output)
        except CallError as exc:
            raise ApiError(exc.status, exc.error, exc.reason) from None
        body = calls.describe(session)
        body["consumer"] = consumer.consumer_id
        principal = principal_of(request)
        if principal is not None:
            if len(owners) > 100_000:  # sessions long gone
                live = {(s.session_id, c) for s in calls.sessions.values() for c in s.consumers}
                for key in [k for k in owners if k not in live]:
                    del owners[key]
            owners[(session.session_id, consumer.consumer_id)] = principal.id
        return JSONResponse(body, status_code=201)

    async def list_sessions(request: Request) -> Response:
        sessions = list(calls.sessions.values())
        shown = visible_ids(request, authorizer, {s.channel_id for s in sessions})
        items = [calls.describe(s) for s in sessions if shown is None or s.channel_id in shown]
        return JSONResponse({"total": len(items), "items": items})

    async def get_session(request: Request) -> Response:
        return JSONResponse(calls.describe(_session(request)))

    async def snapshot(request: Request) -> Response:
        quality = request.query_params.get("quality", str(DEFAULT_QUALITY))
        if not quality.isdigit() or not 1 <= int(quality) <= 100:
            raise ApiError(400, "bad_parameter", "quality must be an integer 1-100")
        enforce(request, authorizer, Action.SNAPSHOT, _session(request).channel_id)
        try:
            jpeg = await calls.snapshot(request.path_params["session_id"], int(quality))
        except CallError as exc:
            raise ApiError(exc.status, exc.error, exc.reason) from None
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def delete_session(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        session = _session(request)
        consumer = request.query_params.get("consumer")
        if consumer is not None and not consumer.isdigit():
            raise ApiError(400, "bad_parameter", "consumer must be an integer")
        _may_end(request, session, None if consumer is None else int(consumer))
        try:
            if consumer is None:
                await calls.stop(session_id)
            else:
                calls.leave(session_id, int(consumer))
        except CallError as exc:
            raise ApiError(exc.status, exc.error, exc.reason) from None
        return Response(status_code=204)

    return [
        Route("/api/v1/channels/{channel_id}/play", play, methods=["POST"]),
        Route("/api/v1/sessions", list_sessions, methods=["GET"]),
        Route("/api/v1/sessions/{session_id}", get_session, methods=["GET"]),
        Route("/api/v1/sessions/{session_id}", delete_session, methods=["DELETE"]),
        Route("/api/v1/sessions/{session_id}/snapshot", snapshot, methods=["GET"]),
    ]
