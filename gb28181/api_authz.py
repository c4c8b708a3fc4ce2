"""HTTP routes for grants (第十八条), PTZ control sessions and channel authorization attributes.

Grants: ``POST /api/v1/grants`` applies (any authenticated principal, for itself, its
department, or a named principal); ``POST /api/v1/grants/{id}/approve`` (``valid_for``
seconds), ``/refuse`` and ``/revoke`` move it (an emergency manager or level 1, never on its own
request; the requester may withdraw its own); ``GET /api/v1/grants`` lists every grant to an
emergency manager or level 1, and to others the ones they asked for or that benefit them.
Approved grants end by themselves at ``valid_to``.

Control: ``GET /api/v1/channels/{id}/control`` shows the holder; ``POST
.../control/period`` (``seconds``) lets a level-1 principal take the camera and reserve it (lower
levels' commands are refused with the remaining time); ``DELETE .../control`` releases it.

Attributes: ``PATCH /api/v1/channels/{id}`` with any of ``security_class``,
``owner_department``, ``shared``, ``shared_with``, ``controllable_by``: level 1 only, audited as
a configuration change.

Every grant move, control period, release and attribute change is in the audit trail (the
authorizer records them).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authz import (
    Action,
    ArbitrationError,
    ControlSession,
    Grant,
    GrantKind,
    GrantNotAuthorised,
    GrantStateError,
    Principal,
    Scope,
    UnknownGrant,
)
from certs import CertError, parse_scope

from .api import ApiError, iso_time
from .api_auth import client_source, principal_of
from .authorizer import AuthorizationDenied, Authorizer, CatalogFacts, grant_to_json
from .catalog_sync import CatalogService
from .store import Store

__all__ = ["authz_routes", "control_json", "grant_json", "save_grant"]

log = logging.getLogger("gb28181.api_authz")

_MAX_BODY = 16384
_MAX_LIST = 1000


def grant_json(grant: Grant) -> dict[str, Any]:
    body = grant_to_json(grant)
    body["valid_from_iso"] = iso_time(body["valid_from"])
    body["valid_to_iso"] = iso_time(body["valid_to"])
    return body


def control_json(session: ControlSession | None, now: float, inactivity: float) -> dict[str, Any]:
    if session is None:
        return {"holder": None}
    return {
        "holder": session.holder_id,
        "department": session.department,
        "level": session.level,
        "emergency": session.emergency,
        "since": iso_time(session.started),
        "period_until": iso_time(session.period_until),
        "expires_in": round(max(session.expires_at(inactivity) - now, 0.0), 3),
    }


async def save_grant(store: Store, grant: Grant, now: float) -> None:
    """Persist a grant's current state (so the grant book survives a restart)."""
    body = json.dumps(grant_to_json(grant), separators=(",", ":"), allow_nan=False)
    await store.save_grant(grant.id, grant.state.value, body, now)


async def _body(request: Request) -> dict[str, Any]:
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


def _principal(request: Request) -> Principal:
    principal = principal_of(request)
    if principal is None:
        raise AuthorizationDenied("no authenticated principal", "unauthenticated", status=401)
    return principal


def _str_list(params: Mapping[str, Any], name: str) -> list[str] | None:
    value = params.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > _MAX_LIST
        or not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value)
    ):
        raise ApiError(400, "bad_parameter", f"{name} must be a list of strings")
    return value


def _scope(params: Mapping[str, Any]) -> Scope:
    target = params.get("target")
    if not isinstance(target, str) or not target or len(target) > 4096:
        raise ApiError(
            400, "bad_parameter", "target must be a scope such as '3702*,37020000001320000001'"
        )
    try:
        return parse_scope(target)
    except CertError as exc:
        raise ApiError(400, "bad_parameter", f"target: {exc}") from None


def _actions(params: Mapping[str, Any]) -> frozenset[Action]:
    names = _str_list(params, "actions") or []
    try:
        return frozenset(Action[n.upper()] for n in names)
    except KeyError as exc:
        known = ", ".join(a.label for a in Action)
        raise ApiError(400, "bad_parameter", f"unknown action {exc}; known: {known}") from None


def _seconds(params: Mapping[str, Any], name: str) -> float:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(400, "bad_parameter", f"{name} must be a number of seconds")
    if value <= 0:
        raise ApiError(400, "bad_parameter", f"{name} must be positive")
    return float(value)


def _grant_error(exc: Exception) -> ApiError:
    if isinstance(exc, UnknownGrant):
        return ApiError(404, "not_found", f"no grant {exc}")
    if isinstance(exc, GrantNotAuthorised):
        return ApiError(403, "forbidden", str(exc))
    return ApiError(409, "conflict", str(exc))


def authz_routes(
    authorizer: Authorizer,
    store: Store,
    *,
    catalogs: CatalogService | None = None,
    facts: CatalogFacts | None = None,
    max_grant_seconds: float | None = None,
    flush_channels: Callable[[], Awaitable[None]] | None = None,
) -> list[Route]:
    """The grant, control and channel-attribute routes (see the module docstring).

    :param flush_channels: writes the catalog rows still queued (the channel writer's
        flush). A channel's row may not be stored yet when an operator classifies it right
        after its catalog arrived; the attributes must land on a stored row, or the queued
        row (taken before the change) would be written later without them.
    """

    def _may_see_all(principal: Principal) -> bool:
        return principal.is_emergency_manager or principal.level == 1

    async def list_grants(request: Request) -> Response:
        principal = _principal(request)
        state = request.query_params.get("state")
        items = []
        for grant in authorizer.grants:
            if not _may_see_all(principal) and not (
                grant.requested_by == principal.id or grant.applies_to(principal)
            ):
                continue
            if state and grant.state.value != state:
                continue
            items.append(grant_json(grant))
        return JSONResponse({"total": len(items), "items": items})

    async def apply(request: Request) -> Response:
        principal = _principal(request)
        params = await _body(request)
        try:
            kind = GrantKind(params.get("kind"))
        except ValueError:
            kinds = ", ".join(k.value for k in GrantKind)
            raise ApiError(400, "bad_parameter", f"kind must be one of: {kinds}") from None
        reason = params.get("reason")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 1000:
            raise ApiError(400, "bad_parameter", "reason is required (at most 1000 characters)")
        level = params.get("level")
        if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
            raise ApiError(400, "bad_parameter", "level must be an integer 1-4")
        principal_id, department = params.get("principal_id"), params.get("department")
        for name, value in (("principal_id", principal_id), ("department", department)):
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 64):
                raise ApiError(400, "bad_parameter", f"{name} must be a string")
        now = authorizer.clock()
        try:
            grant = authorizer.apply_grant(
                principal,
                kind=kind,
                target=_scope(params),
                reason=reason.strip(),
                principal_id=principal_id,
                department=department,
                actions=_actions(params),
                level=level,
                source=client_source(request.scope),
                now=now,
            )
        except GrantStateError as exc:
            raise ApiError(400, "bad_parameter", str(exc)) from None
        await save_grant(store, grant, now)
        return JSONResponse(grant_json(grant), status_code=201)

    async def move(request: Request) -> Response:
        principal = _principal(request)
        params = await _body(request)
        move_name = request.path_params["move"]
        if move_name not in ("approve", "refuse", "revoke"):
            raise ApiError(404, "not_found", f"no grant action {move_name!r}")
        valid_for = 0.0
        if move_name == "approve":
            valid_for = _seconds(params, "valid_for")
            if max_grant_seconds is not None and valid_for > max_grant_seconds:
                raise ApiError(
                    400, "bad_parameter", f"valid_for exceeds {max_grant_seconds:.0f} seconds"
                )
        note = params.get("note", "")
        if not isinstance(note, str) or len(note) > 1000:
            raise ApiError(400, "bad_parameter", "note must be a string")
        now = authorizer.clock()
        try:
            grant = authorizer.decide_grant(
                request.path_params["grant_id"],
                move_name,
                principal,
                valid_for=valid_for,
                note=note,
                source=client_source(request.scope),
                now=now,
            )
        except (UnknownGrant, GrantNotAuthorised, GrantStateError) as exc:
            raise _grant_error(exc) from None
        await save_grant(store, grant, now)
        return JSONResponse(grant_json(grant))

    def _visible_channel(request: Request, principal: Principal) -> str:
        channel_id = str(request.path_params["channel_id"])
        if not authorizer.visible(principal, [channel_id]):
            raise ApiError(404, "not_found", f"channel {channel_id} is not known")
        return channel_id

    def _inactivity() -> float:
        return authorizer.arbiter.config.inactivity_timeout

    async def get_control(request: Request) -> Response:
        principal = _principal(request)
        channel_id = _visible_channel(request, principal)
        now = authorizer.clock()
        return JSONResponse(
            control_json(authorizer.holder(channel_id, now=now), now, _inactivity())
        )

    async def control_period(request: Request) -> Response:
        principal = _principal(request)
        params = await _body(request)
        seconds = _seconds(params, "seconds")
        channel_id = request.path_params["channel_id"]
        if principal.level != 1:
            raise AuthorizationDenied(
                "only level 1 may set a control period", "control-period-level-1"
            )
        now = authorizer.clock()
        try:
            session = authorizer.set_control_period(
                principal, channel_id, seconds, source=client_source(request.scope), now=now
            )
        except ArbitrationError as exc:
            raise ApiError(400, "bad_parameter", str(exc)) from None
        return JSONResponse(control_json(session, now, _inactivity()))

    async def release(request: Request) -> Response:
        principal = _principal(request)
        channel_id = request.path_params["channel_id"]
        if not authorizer.release(principal, channel_id, source=client_source(request.scope)):
            raise ApiError(404, "not_held", "you do not hold control of this channel")
        return Response(status_code=204)

    async def patch_channel(request: Request) -> Response:
        principal = _principal(request)
        channel_id = request.path_params["channel_id"]
        if principal.level != 1:
            authorizer_audit(principal, channel_id, "deny", "level 1 only", request)
            raise AuthorizationDenied(
                "only level 1 may change a channel's authorization attributes", "config-level-1"
            )
        params = await _body(request)
        unknown = set(params) - {
            "security_class",
            "owner_department",
            "shared",
            "shared_with",
            "controllable_by",
        }
        if unknown:
            raise ApiError(400, "bad_parameter", f"unknown fields: {', '.join(sorted(unknown))}")
        security_class = params.get("security_class")
        if security_class is not None and (
            isinstance(security_class, bool)
            or not isinstance(security_class, int)
            or not 0 <= security_class <= 255
        ):
            raise ApiError(400, "bad_parameter", "security_class must be an integer 0-255")
        owner = params.get("owner_department")
        if owner is not None and (not isinstance(owner, str) or len(owner) > 64):
            raise ApiError(400, "bad_parameter", "owner_department must be a string")
        shared = params.get("shared")
        if shared is not None and not isinstance(shared, bool):
            raise ApiError(400, "bad_parameter", "shared must be true or false")
        shared_with = _str_list(params, "shared_with")
        controllable_by = _str_list(params, "controllable_by")
        device_id = _device_of(channel_id)
        if device_id is None:
            raise ApiError(404, "not_found", f"channel {channel_id} is in no catalog")
        now = authorizer.clock()
        if security_class is not None or owner is not None or shared is not None:
            assert catalogs is not None
            catalogs.trees[device_id].set_attributes(
                channel_id, now, security_class=security_class, owner_department=owner,
                shared=shared,
            )  # fmt: skip
            if flush_channels is not None:
                await flush_channels()
            await store.set_channel_attributes(
                device_id, channel_id, security_class=security_class, owner_department=owner,
                shared=shared, updated_at=now,
            )  # fmt: skip
        if facts is not None and (shared_with is not None or controllable_by is not None):
            current = facts.acl.get(channel_id, (frozenset(), frozenset()))
            new_shared = current[0] if shared_with is None else frozenset(shared_with)
            new_control = current[1] if controllable_by is None else frozenset(controllable_by)
            await store.set_channel_acl(channel_id, "shared_with", sorted(new_shared))
            await store.set_channel_acl(channel_id, "controllable_by", sorted(new_control))
            facts.set_acl(channel_id, new_shared, new_control)
        authorizer_audit(principal, channel_id, "ok", "", request, extra=params)
        info = authorizer.channel_info(channel_id)
        assert info is not None
        return JSONResponse(
            {
                "id": channel_id,
                "device_id": device_id,
                "security_class": info.security_class,
                "owner_department": info.owner_department or None,
                "shared": info.shared,
                "specific_area": authorizer.policy.is_specific_area(info),
                "shared_with": sorted(info.shared_with),
                "controllable_by": sorted(info.controllable_by),
            }
        )

    def _device_of(channel_id: str) -> str | None:
        """The tree whose node carries the attributes (the catalog's channel index: any node,
        a device's own included, since an IPC's attributes sit on the node of its own ID)."""
        return catalogs.device_of(channel_id) if catalogs is not None else None

    def authorizer_audit(
        principal: Principal,
        channel_id: str,
        outcome: str,
        reason: str,
        request: Request,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if authorizer.audit is None:
            return
        try:
            authorizer.audit.record(
                "config.channel",
                channel_id,
                outcome,
                principal_id=principal.id,
                department=principal.department,
                level=principal.level,
                reason=reason,
                source=client_source(request.scope),
                extra=dict(extra) if extra else None,
            )
        except Exception:
            log.exception("audit of a channel change failed channel=%s", channel_id)

    channel = "/api/v1/channels/{channel_id}"
    return [
        Route("/api/v1/grants", list_grants, methods=["GET"]),
        Route("/api/v1/grants", apply, methods=["POST"]),
        Route("/api/v1/grants/{grant_id}/{move}", move, methods=["POST"]),
        Route(f"{channel}/control", get_control, methods=["GET"]),
        Route(f"{channel}/control", release, methods=["DELETE"]),
        Route(f"{channel}/control/period", control_period, methods=["POST"]),
        Route(channel, patch_channel, methods=["PATCH"]),
    ]
