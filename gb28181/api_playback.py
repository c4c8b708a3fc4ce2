"""HTTP routes for recording search, playback and download (notes §4.6, §6.9, §7).

* ``GET /api/v1/channels/{id}/records?start=&end=&source=platform|device`` lists recordings:
  ``platform`` (default) from our index, ``device`` by a RecordInfo query to the device that
  carries the channel. ``start``/``end`` are Unix seconds or ISO 8601 times.
* ``POST /api/v1/channels/{id}/playback`` with ``{"start", "end", "source", "download",
  "speed", "ssrc", "output": {"addr", "port", "transport": "udp"|"tcp-active"|"tcp-passive"}}``
  starts a session (201): ``tcp-active`` means we connect to the output, ``tcp-passive`` that
  the consumer connects to the session's ``local_port``.
* ``POST /api/v1/playback/{session}/control`` with ``{"action": "play"|"pause"|"teardown",
  "scale", "seek"}``: ``seek`` is seconds from the range start; the action is applied exactly
  as the MANSRTSP an INFO would carry.
* ``GET /api/v1/playback``, ``GET /api/v1/playback/{session}``, ``DELETE
  /api/v1/playback/{session}``.

With an authorizer, a playback needs PLAYBACK of the channel (a download DOWNLOAD), and
searching either source needs PLAYBACK.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import json
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authz import Action

from . import manscdp
from .api import ApiError, iso_time
from .api_auth import enforce, visible_ids
from .api_devices import message_json
from .authorizer import Authorizer
from .calls import CallError
from .mansrtsp import MansrtspRequest, Method
from .playback import SOURCES, PlaybackControlError, PlaybackService, PlaybackSession
from .queries import QueryError, QueryService

__all__ = ["parse_time", "playback_routes"]

_MAX_BODY = 4096
_TRANSPORTS = ("udp", "tcp-active", "tcp-passive")
_ACTIONS = {"play": Method.PLAY, "pause": Method.PAUSE, "teardown": Method.TEARDOWN}


def parse_time(value: Any, name: str) -> float:
    """Unix seconds (a number) or an ISO 8601 time (local time when it has no offset).

    :raises ApiError: anything else.
    """
    if isinstance(value, bool):
        raise ApiError(400, "bad_parameter", f"{name} must be Unix seconds or ISO 8601")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ApiError(400, "bad_parameter", f"{name} must be Unix seconds or ISO 8601")
        return float(value)
    if isinstance(value, str) and value:
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return dt.datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    raise ApiError(400, "bad_parameter", f"{name} must be Unix seconds or ISO 8601")


def _gb_time(epoch: float) -> str:
    """MANSCDP time: local, no zone (notes §4.6)."""
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%dT%H:%M:%S")


def _output(params: Any) -> tuple[str, int, str]:
    if not isinstance(params, dict):
        raise ApiError(400, "bad_parameter", "output must be an object")
    addr, port = params.get("addr"), params.get("port", 0)
    transport = params.get("transport", "udp")
    if not isinstance(transport, str) or transport.lower() not in _TRANSPORTS:
        raise ApiError(
            400, "bad_parameter", "output.transport must be udp, tcp-active or tcp-passive"
        )
    transport = transport.lower()
    try:
        ipaddress.ip_address(addr if isinstance(addr, str) else "")
    except ValueError:
        raise ApiError(400, "bad_parameter", "output.addr must be an IP address") from None
    low = 0 if transport == "tcp-passive" else 1
    if isinstance(port, bool) or not isinstance(port, int) or not low <= port <= 65535:
        raise ApiError(400, "bad_parameter", "output.port must be a port number 1-65535")
    return str(addr), port, transport


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > _MAX_BODY:
        raise ApiError(413, "too_large", "request body too large")
    try:
        params = json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(400, "bad_json", "the body must be JSON") from None
    if not isinstance(params, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return params


def playback_routes(
    playback: PlaybackService,
    *,
    queries: QueryService | None = None,
    authorizer: Authorizer | None = None,
) -> list[Route]:
    """The record search and playback routes over ``playback`` (``queries``: device search)."""
    cseq = itertools.count(1)

    def _session(request: Request) -> PlaybackSession:
        session = playback.sessions.get(request.path_params["session_id"])
        if session is None or not _may_view(request, session.channel_id):
            raise ApiError(404, "not_found", "no such playback session")
        return session

    def _may_view(request: Request, channel_id: str) -> bool:
        shown = visible_ids(request, authorizer, [channel_id])
        return shown is None or channel_id in shown

    async def records(request: Request) -> Response:
        channel_id = request.path_params["channel_id"]
        q = request.query_params
        start = parse_time(q.get("start"), "start")
        end = parse_time(q.get("end"), "end")
        if end <= start:
            raise ApiError(400, "bad_parameter", "start must be before end")
        source = q.get("source", "platform")
        if source not in ("platform", "device"):
            raise ApiError(400, "bad_parameter", "source must be platform or device")
        enforce(request, authorizer, Action.PLAYBACK, channel_id)
        if source == "platform":
            rows = await playback.store.list_recordings(channel_id, start, end)
            items = [
                {
                    "id": r.id,
                    "start": r.start,
                    "end": r.end,
                    "start_time": iso_time(r.start),
                    "end_time": iso_time(r.end),
                    "bytes": r.bytes,
                    "codec": r.codec,
                    "state": r.state,
                }
                for r in rows
            ]
            return JSONResponse({"source": "platform", "total": len(items), "items": items})
        device_id = playback.calls.locate(channel_id) if playback.calls is not None else None
        if queries is None or device_id is None:
            raise ApiError(404, "not_found", f"channel {channel_id} is not known")
        query = manscdp.RecordInfoQuery(
            device_id=channel_id,
            start_time=_gb_time(start),
            end_time=_gb_time(end),
            secrecy=0,
            type="all",
        )
        try:
            done = await queries.query(device_id, query)
        except QueryError as exc:
            raise ApiError(exc.status, type(exc).__name__.lower(), str(exc)) from None
        found = sorted(
            (message_json(i) for i in done.items), key=lambda i: str(i.get("start_time", ""))
        )
        return JSONResponse(
            {
                "source": "device",
                "partial": done.partial,
                "sum_num": done.sum_num,
                "total": len(found),
                "items": found,
            }
        )

    async def start_playback(request: Request) -> Response:
        channel_id = request.path_params["channel_id"]
        params = await _json_body(request)
        start = parse_time(params.get("start"), "start")
        end = parse_time(params.get("end"), "end")
        download = params.get("download", False)
        if not isinstance(download, bool):
            raise ApiError(400, "bad_parameter", "download must be true or false")
        speed = params.get("speed", 1)
        if isinstance(speed, bool) or not isinstance(speed, int | float):
            raise ApiError(400, "bad_parameter", "speed must be a number")
        source = params.get("source", "auto")
        if source not in SOURCES:
            raise ApiError(400, "bad_parameter", f"source must be one of {', '.join(SOURCES)}")
        ssrc = params.get("ssrc", 0)
        if isinstance(ssrc, bool) or not isinstance(ssrc, int) or not 0 <= ssrc <= 0xFFFFFFFF:
            raise ApiError(400, "bad_parameter", "ssrc must be a 32-bit integer")
        output = _output(params.get("output"))
        enforce(request, authorizer, Action.DOWNLOAD if download else Action.PLAYBACK, channel_id)
        try:
            session = await playback.open(
                channel_id,
                start,
                end,
                download=download,
                speed=float(speed),
                output=output,
                ssrc=ssrc,
                source=source,
            )
        except CallError as exc:
            raise ApiError(exc.status, exc.error, exc.reason) from None
        return JSONResponse(playback.describe(session), status_code=201)

    async def control(request: Request) -> Response:
        session = _session(request)
        params = await _json_body(request)
        method = _ACTIONS.get(str(params.get("action", "")))
        if method is None:
            raise ApiError(400, "bad_parameter", "action must be play, pause or teardown")
        scale, seek = params.get("scale"), params.get("seek")
        for name, value in (("scale", scale), ("seek", seek)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise ApiError(400, "bad_parameter", f"{name} must be a number")
        if method is not Method.PLAY and (scale is not None or seek is not None):
            raise ApiError(400, "bad_parameter", "scale and seek go with action play")
        rtsp = MansrtspRequest(
            method,
            next(cseq),
            scale=None if scale is None else float(scale),
            range_start=None if seek is None else float(seek),
            pause_time="now" if method is Method.PAUSE else None,
        )
        try:
            await playback.apply(session.session_id, rtsp)
        except PlaybackControlError as exc:
            raise ApiError(400, "bad_parameter", str(exc)) from None
        except CallError as exc:
            raise ApiError(exc.status, exc.error, exc.reason) from None
        if method is Method.TEARDOWN:
            return Response(status_code=204)
        return JSONResponse(playback.describe(session))

    async def list_sessions(request: Request) -> Response:
        sessions = list(playback.sessions.values())
        shown = visible_ids(request, authorizer, {s.channel_id for s in sessions})
        items = [playback.describe(s) for s in sessions if shown is None or s.channel_id in shown]
        return JSONResponse({"total": len(items), "items": items})

    async def get_session(request: Request) -> Response:
        return JSONResponse(playback.describe(_session(request)))

    async def delete_session(request: Request) -> Response:
        session = _session(request)
        try:
            await playback.close(session.session_id, "stopped by API")
        except CallError as exc:
            raise ApiError(exc.status, exc.error, exc.reason) from None
        return Response(status_code=204)

    return [
        Route("/api/v1/channels/{channel_id}/records", records, methods=["GET"]),
        Route("/api/v1/channels/{channel_id}/playback", start_playback, methods=["POST"]),
        Route("/api/v1/playback", list_sessions, methods=["GET"]),
        Route("/api/v1/playback/{session_id}", get_session, methods=["GET"]),
        Route("/api/v1/playback/{session_id}", delete_session, methods=["DELETE"]),
        Route("/api/v1/playback/{session_id}/control", control, methods=["POST"]),
    ]
