"""HTTP routes for recording (on demand) and the recording index.

``POST /api/v1/channels/{id}/record`` with an optional JSON body ``{"duration": seconds}``
records the channel now (201 with the recording's state); ``DELETE`` of the same path ends an
on-demand recording (204; a channel also recorded by policy goes on); ``GET`` shows it.
``GET /api/v1/recordings?channel=&start=&end=&limit=`` lists index rows overlapping the range
(times as ISO 8601 or epoch seconds; rows' times are ISO 8601), ``GET /api/v1/recordings/{id}``
shows one, ``GET /api/v1/recordings/{id}/file`` downloads its raw MPEG-PS file.

With an authorizer, recording needs RECORD of the channel, a download DOWNLOAD (each an audited
decision), and rows are listed and shown only for channels the caller may view.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from authz import Action

from .api import ApiError, int_param, iso_time
from .api_auth import enforce, visible_ids
from .authorizer import Authorizer
from .recordings import RecordingError, RecordingService
from .store import RecordingRow

__all__ = ["parse_time", "recording_json", "recording_routes"]

_MAX_BODY = 4096
#: Longest on-demand recording one request may ask for (seconds).
MAX_DURATION = 7 * 86400


def parse_time(name: str, raw: str | None, default: float) -> float:
    """A query time: ISO 8601 (a naive one is local time) or epoch seconds.

    :raises ApiError: 400 for anything else.
    """
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name} must be ISO 8601 or epoch seconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()
    return parsed.timestamp()


def recording_json(row: RecordingRow) -> dict[str, Any]:
    """The public view of one index row."""
    return {
        "id": row.id,
        "channel": row.channel_id,
        "start": iso_time(row.start),
        "end": iso_time(row.end),
        "duration": round(row.end - row.start, 3),
        "path": row.path,
        "bytes": row.bytes,
        "codec": row.codec,
        "keyframes": [[t, offset] for t, offset in row.keyframes],
        "sha256": row.sha256,
        "state": row.state,
        "security_class": row.security_class,
    }


def recording_routes(
    recordings: RecordingService, authorizer: Authorizer | None = None
) -> list[Route]:
    """The recording and index routes over ``recordings``."""
    store = recordings.store

    def _principal_id(request: Request, action: Action, channel_id: str) -> str:
        principal = enforce(request, authorizer, action, channel_id)
        return getattr(principal, "id", "") if principal is not None else ""

    async def _row(request: Request) -> RecordingRow:
        row = await store.get_recording(request.path_params["recording_id"])
        if row is None:
            raise ApiError(404, "not_found", "no such recording")
        shown = visible_ids(request, authorizer, [row.channel_id])
        if shown is not None and row.channel_id not in shown:
            raise ApiError(404, "not_found", "no such recording")
        return row

    async def record(request: Request) -> Response:
        channel_id = request.path_params["channel_id"]
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            raise ApiError(413, "too_large", "request body too large")
        try:
            params = json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(400, "bad_json", "the body must be JSON") from None
        if not isinstance(params, dict):
            raise ApiError(400, "bad_json", "the body must be a JSON object")
        duration = params.get("duration")
        if duration is not None and (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not math.isfinite(duration)
            or not 0 < duration <= MAX_DURATION
        ):
            raise ApiError(
                400, "bad_parameter", f"duration must be seconds between 0 and {MAX_DURATION}"
            )
        principal_id = _principal_id(request, Action.RECORD, channel_id)
        try:
            body = await recordings.record(
                channel_id,
                None if duration is None else float(duration),
                principal_id=principal_id,
            )
        except RecordingError as exc:
            raise ApiError(exc.status, exc.error, exc.reason) from None
        return JSONResponse(body, status_code=201)

    async def record_status(request: Request) -> Response:
        channel_id = request.path_params["channel_id"]
        shown = visible_ids(request, authorizer, [channel_id])
        active = recordings.active.get(channel_id)
        if active is None or (shown is not None and channel_id not in shown):
            raise ApiError(404, "not_found", f"{channel_id} is not being recorded")
        return JSONResponse(recordings.describe(active))

    async def stop_record(request: Request) -> Response:
        channel_id = request.path_params["channel_id"]
        principal_id = _principal_id(request, Action.RECORD, channel_id)
        try:
            await recordings.stop_recording(channel_id, principal_id=principal_id)
        except RecordingError as exc:
            raise ApiError(exc.status, exc.error, exc.reason) from None
        return Response(status_code=204)

    async def list_recordings(request: Request) -> Response:
        q = request.query_params
        channel_id = q.get("channel") or None
        start = parse_time("start", q.get("start"), 0.0)
        end = parse_time("end", q.get("end"), 1e13)
        if end <= start:
            raise ApiError(400, "bad_parameter", "end must be after start")
        limit = int_param(request, "limit", 1000, 1, 10000)
        rows = await store.list_recordings(channel_id, start, end, limit=limit)
        shown = visible_ids(request, authorizer, {r.channel_id for r in rows})
        items = [recording_json(r) for r in rows if shown is None or r.channel_id in shown]
        return JSONResponse({"total": len(items), "items": items})

    async def get_recording(request: Request) -> Response:
        return JSONResponse(recording_json(await _row(request)))

    async def download(request: Request) -> Response:
        row = await _row(request)
        _principal_id(request, Action.DOWNLOAD, row.channel_id)
        full = recordings.path_of(row)
        if not os.path.isfile(full):
            raise ApiError(410, "gone", "the recording's file is gone")
        return FileResponse(full, media_type="video/MP2P", filename=os.path.basename(row.path))

    return [
        Route("/api/v1/channels/{channel_id}/record", record, methods=["POST"]),
        Route("/api/v1/channels/{channel_id}/record", record_status, methods=["GET"]),
        Route("/api/v1/channels/{channel_id}/record", stop_record, methods=["DELETE"]),
        Route("/api/v1/recordings", list_recordings, methods=["GET"]),
        Route("/api/v1/recordings/{recording_id}", get_recording, methods=["GET"]),
        Route("/api/v1/recordings/{recording_id}/file", download, methods=["GET"]),
    ]
