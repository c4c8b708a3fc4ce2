"""Authentication of the HTTP API, and the helpers routes use to enforce authorization.

Every ``/api/`` request runs as a :class:`authz.Principal`: a bearer token
(``Authorization: Bearer gbt_...``, issued against a certificate) or, when the server does
mutual TLS (``[http] tls_client_ca``), the client's permission certificate. Without either the
answer is 401 with ``WWW-Authenticate: Bearer``. ``/healthz``, ``/readyz`` and ``/metrics``
stay open (operations probes carry no credentials and reveal no video).

Logins are audited (art. 21): every refused authentication, and the first successful one of
each credential from each client address per :data:`LOGIN_AUDIT_INTERVAL` (every request
authenticates; a record per request would drown the trail without telling more).

Routes enforce with :func:`enforce` (one audited decision) and filter listings with
:func:`visible_ids`; a refusal raises :class:`~gb28181.authorizer.AuthorizationDenied`, which
the app answers with 403 (or 409 for a camera held by another controller) and the rule.
Routes built without an authorizer (unit tests of route logic) enforce nothing.
"""

from __future__ import annotations

import json
import logging
import ssl
import time as _time
from collections.abc import Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authz import Action, Principal

from .authorizer import AuditSink, AuthorizationDenied, Authorizer
from .identity import Identity, IdentityError
from .tokens import hash_token

__all__ = [
    "LOGIN_AUDIT_INTERVAL",
    "OPEN_PATHS",
    "ApiAuthMiddleware",
    "client_source",
    "denied_json",
    "enforce",
    "peer_certificate",
    "principal_of",
    "visible_ids",
]

log = logging.getLogger("gb28181.api_auth")

#: Paths that need no credentials.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

#: Seconds between two login records for the same credential and client address.
LOGIN_AUDIT_INTERVAL = 600.0

_MAX_LOGINS_REMEMBERED = 10000


def peer_certificate(scope: Scope, receive: Receive) -> bytes | None:
    """The TLS client certificate (DER) of this request, if the client presented one.

    The ASGI TLS extension (``scope["extensions"]["tls"]["client_cert_chain"]``, PEM) where
    the server provides it; otherwise uvicorn's transport, reached through the ``receive``
    callable's request cycle (uvicorn does not implement the extension).
    """
    tls = (scope.get("extensions") or {}).get("tls")
    if isinstance(tls, dict):
        chain = tls.get("client_cert_chain")
        if chain:
            first = chain[0]
            return first.encode("ascii") if isinstance(first, str) else bytes(first)
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return der or None


def client_source(scope: Scope) -> str:
    client = scope.get("client")
    if not client:
        return ""
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class ApiAuthMiddleware:
    """ASGI middleware: authenticate ``/api/`` requests, put the principal on
    ``request.state.principal`` (``scope["state"]["principal"]``)."""

    def __init__(
        self,
        app: ASGIApp,
        identity: Identity,
        *,
        audit: AuditSink | None = None,
        clock: Callable[[], float] = _time.time,
    ) -> None:
        self.app = app
        self.identity = identity
        self.audit = audit
        self.clock = clock
        self._logins: dict[tuple[str, str], float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        source = client_source(scope)
        headers = dict(scope.get("headers") or ())
        authorization = headers.get(b"authorization", b"").decode("latin-1").strip()
        method = ""
        try:
            if authorization:
                scheme, _, credentials = authorization.partition(" ")
                if scheme.lower() != "bearer" or not credentials.strip():
                    raise IdentityError("only Bearer authorization is accepted")
                method = "bearer"
                credential = credentials.strip()
                principal = await self.identity.from_bearer(credential)
                key = hash_token(credential)
            else:
                der = peer_certificate(scope, receive)
                if der is None:
                    await _unauthorized(
                        send, "authentication required", challenge="Bearer", scope=scope
                    )
                    return
                method = "certificate"
                principal = self.identity.from_certificate(der)
                key = str(hash(der))
        except IdentityError as exc:
            self._audit_login(None, method or "none", source, "deny", exc.reason)
            challenge = 'Bearer error="invalid_token"' if method == "bearer" else "Bearer"
            await _unauthorized(send, exc.reason, challenge=challenge, scope=scope)
            return
        self._login_ok(principal, method, key, source)
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    def _login_ok(self, principal: Principal, method: str, key: str, source: str) -> None:
        now = self.clock()
        host = source.rsplit(":", 1)[0]
        last = self._logins.get((key, host))
        if last is not None and now - last < LOGIN_AUDIT_INTERVAL:
            return
        if len(self._logins) >= _MAX_LOGINS_REMEMBERED:
            self._logins.clear()
        self._logins[(key, host)] = now
        self._audit_login(principal, method, source, "ok", "")

    def _audit_login(
        self, principal: Principal | None, method: str, source: str, outcome: str, reason: str
    ) -> None:
        if self.audit is None:
            return
        try:
            self.audit.record(
                "login",
                "http-api",
                outcome,
                principal_id=principal.id if principal is not None else "anonymous",
                department=principal.department if principal is not None else "",
                level=principal.level if principal is not None else None,
                rule=method,
                reason=reason,
                source=source,
            )
        except Exception:
            log.exception("login audit record failed source=%s outcome=%s", source, outcome)


async def _unauthorized(send: Send, reason: str, *, challenge: str, scope: Scope) -> None:
    if scope["type"] == "websocket":  # closing before accept: the server answers 403
        await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
        return
    body = json.dumps({"error": "unauthorized", "reason": reason}).encode()
    start: Message = {
        "type": "http.response.start",
        "status": 401,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", challenge.encode("latin-1")),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})


# -- helpers for routes ---------------------------------------------------------------------


def principal_of(request: Request) -> Principal | None:
    """The authenticated principal, or ``None`` when the app runs without authentication."""
    principal = getattr(request.state, "principal", None)
    return principal if isinstance(principal, Principal) else None


def _require_principal(request: Request) -> Principal:
    principal = principal_of(request)
    if principal is None:
        # An authorizer without authentication is a wiring mistake: refuse, never allow.
        raise AuthorizationDenied("no authenticated principal", "unauthenticated", status=401)
    return principal


def enforce(
    request: Request, authorizer: Authorizer | None, action: Action, channel_id: str
) -> Principal | None:
    """One audited decision for this request; raises :class:`AuthorizationDenied` on refusal.
    :returns: the principal (``None`` when ``authorizer`` is ``None``)."""
    if authorizer is None:
        return None
    principal = _require_principal(request)
    source = client_source(request.scope)
    authorizer.check(principal, action, channel_id, source=source)
    return principal


def visible_ids(
    request: Request, authorizer: Authorizer | None, channel_ids: Iterable[str]
) -> set[str] | None:
    """The subset the principal may view, or ``None`` (= everything) without an authorizer."""
    if authorizer is None:
        return None
    principal = _require_principal(request)
    return set(authorizer.visible(principal, channel_ids))


def denied_json(exc: AuthorizationDenied) -> dict[str, Any]:
    """The JSON body of a refusal."""
    body: dict[str, Any] = {
        "error": {401: "unauthorized", 409: "control_held"}.get(exc.status, "forbidden"),
        "reason": exc.reason,
        "rule": exc.rule,
    }
    if exc.remaining is not None:
        body["remaining"] = exc.remaining
    return body
