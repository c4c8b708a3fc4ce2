"""The platform's enforcement point: one object in front of the pure authz package.

Every enforcement point (HTTP API, inbound INVITE, forwarded DeviceControl, catalog answers to
other platforms) asks :class:`Authorizer` rather than :class:`authz.Policy` directly, so that
three things happen the same way everywhere:

* the channel's facts (security class, owner department, sharing) come from the catalog the
  platform holds, through one ``lookup`` callable; a channel the platform does not know is
  refused with rule ``unknown-channel`` (nothing is decided on guessed facts);
* the principal's active grants (第十八条) are consulted, and the control arbiter sees the level
  a level-change grant gives;
* every decision, allowed or refused, becomes one audit record (art. 21: who, what, when, from
  where, outcome, rule), while listings (:meth:`Authorizer.visible`) are filtered without a
  record per item (a listing is not an access to video).

Enforcement points turn a refusal into :class:`AuthorizationDenied` (HTTP 403 with the rule and
reason; on SIP a 403 with :func:`warning_header`).

Hooks for the engineers adding playback, download and recording APIs: call
``platform.authorizer.check(principal, Action.PLAYBACK, channel_id, source=...)`` (or
``decide`` to inspect the decision) before starting the work; ``check`` raises
:class:`AuthorizationDenied`, which the API turns into 403.

Time: ``now`` defaults to the injected clock. Not thread-safe: call from the event loop.
"""

from __future__ import annotations

import logging
import math
import time as _time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from authz import (
    Action,
    ArbitrationOutcome,
    ArbitrationResult,
    ChannelInfo,
    ControlArbiter,
    ControlExpired,
    ControlPreempted,
    ControlSession,
    Decision,
    Grant,
    GrantBook,
    GrantExpired,
    GrantKind,
    GrantState,
    Policy,
    Principal,
    Scope,
)

from .catalog import CatalogNode, CatalogTrees

__all__ = [
    "UNKNOWN_CHANNEL",
    "AuditSink",
    "AuthorizationDenied",
    "Authorizer",
    "CatalogFacts",
    "ChannelLookup",
    "grant_from_json",
    "grant_to_json",
    "warning_header",
]

log = logging.getLogger("gb28181.authorizer")

UNKNOWN_CHANNEL = Decision(False, "channel not known to the platform", "unknown-channel")

#: ``channel_id -> ChannelInfo | None`` (None: the platform does not know the channel).
ChannelLookup = Callable[[str], ChannelInfo | None]


class AuditSink(Protocol):
    """What the authorizer needs from :class:`gb28181.audit.AuditLog`."""

    def record(
        self,
        action: str,
        target: str,
        outcome: str,
        *,
        principal_id: str = ...,
        department: str = ...,
        level: int | None = ...,
        rule: str = ...,
        reason: str = ...,
        source: str = ...,
        extra: Mapping[str, Any] | None = ...,
        time: float | None = ...,
    ) -> Any: ...


class AuthorizationDenied(Exception):
    """An enforcement point refuses: HTTP 403 / SIP 403 with ``rule`` and ``reason``.

    ``status`` is 403 for a policy refusal and 409 for a control refusal by arbitration (the
    camera is held by someone else; ``remaining`` says for how many seconds at most).
    """

    def __init__(
        self, reason: str, rule: str, *, status: int = 403, remaining: float | None = None
    ) -> None:
        super().__init__(f"{rule}: {reason}")
        self.status = status
        self.reason = reason
        self.rule = rule
        self.remaining = remaining

    @classmethod
    def from_decision(cls, decision: Decision) -> AuthorizationDenied:
        return cls(decision.reason, decision.rule)


def warning_header(decision: Decision | AuthorizationDenied, host: str) -> str:
    """The value of a SIP ``Warning`` header naming the rule (RFC 3261 §20.43, code 399:
    miscellaneous warning). Quotes and backslashes in the text are escaped."""
    text = f"{decision.rule}: {decision.reason}".replace("\\", "\\\\").replace('"', '\\"')
    return f'399 {host} "{text}"'


def _outcome(decision: Decision) -> str:
    return "allow" if decision.allow else "deny"


class Authorizer:
    """Policy, grants, control arbitration and the audit of decisions, in one place.

    :param policy: the level table (:class:`authz.Policy`).
    :param lookup: channel facts from the catalog (see :data:`ChannelLookup`).
    :param audit: where decisions go (``None`` only in tests of something else).
    :param grants: the grant book (restored from storage by the caller).
    :param arbiter: the control arbiter.
    :param flags: named conditions currently set (``"wartime"``) that windows may require.
    :param clock: epoch seconds when ``now`` is not given.
    """

    def __init__(
        self,
        policy: Policy,
        lookup: ChannelLookup,
        *,
        audit: AuditSink | None = None,
        grants: GrantBook | None = None,
        arbiter: ControlArbiter | None = None,
        flags: frozenset[str] = frozenset(),
        clock: Callable[[], float] = _time.time,
        channels_of: Callable[[str], Iterable[str]] = lambda _device_id: (),
    ) -> None:
        self.policy = policy
        self.lookup = lookup
        self.channels_of = channels_of
        self.audit = audit
        self.grants = grants if grants is not None else GrantBook()
        self.arbiter = arbiter if arbiter is not None else ControlArbiter()
        self.flags = flags
        self.clock = clock
        #: Called with each pre-emption (tell the loser: SIP side, websocket...).
        self.on_preempted: list[Callable[[ControlPreempted], None]] = []
        #: Called with each grant whose state changed by itself (expiry): persist it.
        self.on_grant_changed: list[Callable[[Grant], None]] = []
        # (channel_id, loser id) -> the pre-emption its next command is told about.
        self._notices: dict[tuple[str, str], ControlPreempted] = {}

    # -- facts ---------------------------------------------------------------------------

    def channel_info(self, channel_id: str) -> ChannelInfo | None:
        """The channel's facts, or ``None`` when the platform does not know it."""
        try:
            return self.lookup(channel_id)
        except Exception:
            log.exception("channel lookup failed channel=%s", channel_id)
            return None

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else now

    # -- decisions -----------------------------------------------------------------------

    def decide(
        self,
        principal: Principal,
        action: Action,
        channel_id: str,
        *,
        source: str = "",
        now: float | None = None,
    ) -> Decision:
        """Whether ``principal`` may ``action`` ``channel_id``; always audited."""
        at = self._now(now)
        info = self.channel_info(channel_id)
        if info is None:
            decision = UNKNOWN_CHANNEL
        else:
            grants = self.grants.active_for(principal, at)
            decision = self.policy.decide(
                principal, action, info, at, flags=self.flags, grants=grants
            )
        self._record(
            f"authz.{action.label}",
            channel_id,
            _outcome(decision),
            principal,
            rule=decision.rule,
            reason=decision.reason,
            source=source,
            time=at,
        )
        return decision

    def check(
        self,
        principal: Principal,
        action: Action,
        channel_id: str,
        *,
        source: str = "",
        now: float | None = None,
    ) -> Decision:
        """:meth:`decide`, raising :class:`AuthorizationDenied` on refusal."""
        decision = self.decide(principal, action, channel_id, source=source, now=now)
        if not decision.allow:
            raise AuthorizationDenied.from_decision(decision)
        return decision

    def may(
        self, principal: Principal, action: Action, channel_id: str, *, now: float | None = None
    ) -> bool:
        """Like :meth:`decide` without an audit record (for filters and UI hints only)."""
        at = self._now(now)
        info = self.channel_info(channel_id)
        if info is None:
            return False
        grants = self.grants.active_for(principal, at)
        return self.policy.decide(
            principal, action, info, at, flags=self.flags, grants=grants
        ).allow

    def visible(
        self, principal: Principal, channel_ids: Iterable[str], *, now: float | None = None
    ) -> list[str]:
        """The IDs (in input order) ``principal`` may VIEW: the listing filter. No audit per
        item: a listing shows that a camera exists, it is not access to its video."""
        at = self._now(now)
        grants = self.grants.active_for(principal, at)
        policy, flags, lookup = self.policy, self.flags, self.channel_info
        out: list[str] = []
        for channel_id in channel_ids:
            info = lookup(channel_id)
            if (
                info is not None
                and policy.decide(
                    principal, Action.VIEW, info, at, flags=flags, grants=grants
                ).allow
            ):
                out.append(channel_id)
        return out

    def device_visible(
        self, principal: Principal, device_id: str, *, now: float | None = None
    ) -> bool:
        """Whether a device (or lower platform) is listed to ``principal``.

        Our reading: level 1 manages every front-end device in its scope (第十条: remote
        management of every front-end device), so it sees every device; any other level sees
        a device when it may view the device itself or one of its channels.
        """
        if principal.level == 1 and principal.scope.covers(device_id):
            return True
        at = self._now(now)
        if self.may(principal, Action.VIEW, device_id, now=at):
            return True
        return bool(self.visible(principal, self.channels_of(device_id), now=at))

    # -- control arbitration ---------------------------------------------------------------

    def control(
        self,
        principal: Principal,
        channel_id: str,
        *,
        emergency: bool = False,
        source: str = "",
        now: float | None = None,
    ) -> ArbitrationResult:
        """Ask to control ``channel_id`` (call on every PTZ/lens/aux command).

        Decides CONTROL first (audited; a refusal raises :class:`AuthorizationDenied`, 403),
        then arbitrates (audited as ``control.<outcome>``). A refusal by arbitration is returned
        (``result.granted`` false, ``result.remaining`` seconds); :meth:`require_control`
        raises it as a 409 instead. A principal that lost control to a pre-emption is told so
        by the reason of its next refusal.
        """
        at = self._now(now)
        decision = self.decide(principal, Action.CONTROL, channel_id, source=source, now=at)
        if not decision.allow:
            raise AuthorizationDenied.from_decision(decision)
        info = self.channel_info(channel_id)
        assert info is not None  # decide() refused unknown channels
        level = self.policy.effective_level(
            principal, info, at, self.grants.active_for(principal, at)
        )
        result = self.arbiter.request(principal, info, at, emergency=emergency, level=level)
        self._drain_arbiter()
        notice = self._notices.pop((channel_id, principal.id), None)
        if notice is not None and not result.granted:
            result = replace(
                result,
                rule=notice.rule,
                reason=(
                    f"control taken by {notice.winner.holder_id} (level {notice.winner.level}): "
                    f"{notice.reason}"
                ),
            )
        self._record(
            f"control.{result.outcome.value}",
            channel_id,
            "allow" if result.granted else "deny",
            principal,
            rule=result.rule,
            reason=result.reason,
            source=source,
            time=at,
            extra=self._control_extra(result),
        )
        return result

    def require_control(
        self,
        principal: Principal,
        channel_id: str,
        *,
        emergency: bool = False,
        source: str = "",
        now: float | None = None,
    ) -> ArbitrationResult:
        """:meth:`control`, raising :class:`AuthorizationDenied` (409 with ``remaining``) when
        someone else holds the camera."""
        result = self.control(principal, channel_id, emergency=emergency, source=source, now=now)
        if not result.granted:
            raise AuthorizationDenied(
                result.reason, result.rule, status=409, remaining=math.ceil(result.remaining)
            )
        return result

    def holder(self, channel_id: str, *, now: float | None = None) -> ControlSession | None:
        return self.arbiter.holder(channel_id, self._now(now))

    def set_control_period(
        self,
        principal: Principal,
        channel_id: str,
        seconds: float,
        *,
        source: str = "",
        now: float | None = None,
    ) -> ControlSession:
        """A level-1 holder reserves the camera for ``seconds`` (it takes control first if
        nobody holds it). :raises AuthorizationDenied: not allowed (403) or held by another
        (409); :raises authz.ArbitrationError: not level 1, or a bad period."""
        at = self._now(now)
        self.require_control(principal, channel_id, source=source, now=at)
        session = self.arbiter.set_control_period(principal, channel_id, at + seconds, at)
        self._record(
            "control.period",
            channel_id,
            "ok",
            principal,
            source=source,
            time=at,
            extra={"seconds": seconds, "until": at + seconds},
        )
        return session

    def release(
        self, principal: Principal, channel_id: str, *, source: str = "", now: float | None = None
    ) -> bool:
        at = self._now(now)
        released = self.arbiter.release(principal, channel_id, at)
        self._record(
            "control.release",
            channel_id,
            "ok" if released else "not-held",
            principal,
            source=source,
            time=at,
        )
        return released

    # -- grants (第十八条) -------------------------------------------------------------------

    def apply_grant(
        self,
        requester: Principal,
        *,
        kind: GrantKind,
        target: Scope,
        reason: str,
        principal_id: str | None = None,
        department: str | None = None,
        actions: frozenset[Action] = frozenset(),
        level: int | None = None,
        source: str = "",
        now: float | None = None,
    ) -> Grant:
        """Record an application (pending). Without a beneficiary, the requester's own
        department benefits. :raises authz.GrantError: malformed."""
        at = self._now(now)
        if principal_id is None and department is None:
            department = requester.department
        grant = self.grants.apply(
            kind=kind,
            target=target,
            requested_by=requester.id,
            reason=reason,
            now=at,
            principal_id=principal_id,
            department=department,
            actions=actions,
            level=level,
        )
        self._record(
            "grant.apply",
            grant.id,
            "ok",
            requester,
            reason=reason,
            source=source,
            time=at,
            extra=grant_to_json(grant),
        )
        return grant

    def decide_grant(
        self,
        grant_id: str,
        move: str,
        actor: Principal,
        *,
        valid_for: float = 0.0,
        note: str = "",
        source: str = "",
        now: float | None = None,
    ) -> Grant:
        """``move`` is ``approve`` (for ``valid_for`` seconds), ``refuse`` or ``revoke``.
        Refused attempts are audited too. :raises authz.GrantError: see :class:`GrantBook`."""
        at = self._now(now)
        try:
            if move == "approve":
                grant = self.grants.approve(grant_id, actor, at, valid_for)
            elif move == "refuse":
                grant = self.grants.refuse(grant_id, actor, at, note)
            elif move == "revoke":
                grant = self.grants.revoke(grant_id, actor, at, note)
            else:
                raise ValueError(f"unknown grant move {move!r}")
        except Exception as exc:
            self._record(
                f"grant.{move}",
                grant_id,
                "deny",
                actor,
                rule=type(exc).__name__,
                reason=str(exc),
                source=source,
                time=at,
            )
            raise
        self._record(
            f"grant.{move}",
            grant_id,
            "ok",
            actor,
            reason=note,
            source=source,
            time=at,
            extra={"state": grant.state.value, "valid_to": _finite(grant.valid_to)},
        )
        return grant

    # -- timers ----------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Expire control sessions and grants due at ``now``; audit and announce them."""
        at = self._now(now)
        self.arbiter.handle_timer(at)
        self._drain_arbiter()
        self.grants.handle_timer(at)
        while (event := self.grants.next_event()) is not None:
            if isinstance(event, GrantExpired):
                self._record_system("grant.expire", event.grant.id, time=event.at)
                for listener in self.on_grant_changed:
                    _call(listener, event.grant)

    def _drain_arbiter(self) -> None:
        while (event := self.arbiter.next_event()) is not None:
            if isinstance(event, ControlPreempted):
                loser = event.loser
                self._notices[(loser.channel_id, loser.holder_id)] = event
                self._record_system(
                    "control.preempted",
                    loser.channel_id,
                    time=event.at,
                    rule=event.rule,
                    reason=event.reason,
                    extra={"loser": loser.holder_id, "winner": event.winner.holder_id},
                )
                for listener in self.on_preempted:
                    _call(listener, event)
            elif isinstance(event, ControlExpired):
                self._record_system(
                    "control.expire",
                    event.session.channel_id,
                    time=event.at,
                    extra={"holder": event.session.holder_id},
                )
        if len(self._notices) > 10000:  # losers that never came back
            self._notices.clear()

    # -- audit -----------------------------------------------------------------------------

    @staticmethod
    def _control_extra(result: ArbitrationResult) -> dict[str, Any]:
        extra: dict[str, Any] = {"holder": result.session.holder_id}
        if result.outcome is ArbitrationOutcome.REFUSED:
            extra["remaining"] = round(result.remaining, 3)
        if result.preempted is not None:
            extra["preempted"] = result.preempted.holder_id
        return extra

    def _record(
        self,
        action: str,
        target: str,
        outcome: str,
        principal: Principal,
        *,
        rule: str = "",
        reason: str = "",
        source: str = "",
        time: float,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if self.audit is None:
            return
        try:
            self.audit.record(
                action,
                target,
                outcome,
                principal_id=principal.id,
                department=principal.department,
                level=principal.level,
                rule=rule,
                reason=reason,
                source=source,
                extra=extra,
                time=time,
            )
        except Exception:
            # A decision is never lost silently: the log names it when the trail cannot.
            log.exception(
                "audit record failed action=%s target=%s principal=%s outcome=%s",
                action,
                target,
                principal.id,
                outcome,
            )

    def _record_system(
        self,
        action: str,
        target: str,
        *,
        time: float,
        rule: str = "",
        reason: str = "",
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if self.audit is None:
            return
        try:
            self.audit.record(
                action, target, "ok", rule=rule, reason=reason, extra=extra, time=time
            )
        except Exception:
            log.exception("audit record failed action=%s target=%s", action, target)


def _call(listener: Callable[[Any], None], value: Any) -> None:
    try:
        listener(value)
    except Exception:
        log.exception("authorizer listener failed: %r", listener)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# -- grants as JSON (the store keeps them as documents) -------------------------------------


def grant_to_json(grant: Grant) -> dict[str, Any]:
    """A JSON-safe dict of every field (infinite bounds as ``None``)."""
    return {
        "id": grant.id,
        "kind": grant.kind.value,
        "target": {
            "prefixes": list(grant.target.prefixes),
            "channel_ids": sorted(grant.target.channel_ids),
        },
        "requested_by": grant.requested_by,
        "reason": grant.reason,
        "requested_at": grant.requested_at,
        "principal_id": grant.principal_id,
        "department": grant.department,
        "actions": sorted(a.label for a in grant.actions),
        "level": grant.level,
        "state": grant.state.value,
        "approved_by": grant.approved_by,
        "decided_at": grant.decided_at,
        "valid_from": _finite(grant.valid_from),
        "valid_to": _finite(grant.valid_to),
        "note": grant.note,
    }


def grant_from_json(body: Mapping[str, Any]) -> Grant:
    """Inverse of :func:`grant_to_json`. :raises ValueError: malformed document."""
    try:
        target = body["target"]
        valid_from = body.get("valid_from")
        valid_to = body.get("valid_to")
        return Grant(
            id=str(body["id"]),
            kind=GrantKind(body["kind"]),
            target=Scope(
                prefixes=tuple(str(p) for p in target.get("prefixes", ())),
                channel_ids=frozenset(str(c) for c in target.get("channel_ids", ())),
            ),
            requested_by=str(body["requested_by"]),
            reason=str(body.get("reason", "")),
            requested_at=float(body["requested_at"]),
            principal_id=body.get("principal_id"),
            department=body.get("department"),
            actions=frozenset(Action[a.upper()] for a in body.get("actions", ())),
            level=body.get("level"),
            state=GrantState(body["state"]),
            approved_by=body.get("approved_by"),
            decided_at=body.get("decided_at"),
            valid_from=math.inf if valid_from is None else float(valid_from),
            valid_to=-math.inf if valid_to is None else float(valid_to),
            note=str(body.get("note", "")),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed grant document: {exc}") from exc


# -- channel facts from the catalog ---------------------------------------------------------


class CatalogFacts:
    """A :data:`ChannelLookup` over the platform's catalog trees.

    A channel is a node of some device's tree (operator attributes on the node; the catalog's
    channel index names the tree, the most recent reporter when several list it); a registered
    device with no node of its own ID (an IPC addressed by its own ID) is a channel with
    default attributes (class 0, no owner, not shared). The access lists that the channel
    table lacks (``shared_with``: level-4 sharing on application; ``controllable_by``: level-3
    control authorisation) come from ``acl`` (store ``channel_acl``, migration 0008).

    :param trees: ``CatalogService.trees`` (read live, not copied; its index follows every
        change, so a lookup is O(1) and never stale).
    :param is_device: whether an ID is a registered device.
    """

    def __init__(
        self,
        trees: CatalogTrees,
        is_device: Callable[[str], bool] = lambda _id: False,
    ) -> None:
        self.trees = trees
        self.is_device = is_device
        self.acl: dict[str, tuple[frozenset[str], frozenset[str]]] = {}

    def set_acl(
        self, channel_id: str, shared_with: Iterable[str], controllable_by: Iterable[str]
    ) -> None:
        entry = (frozenset(shared_with), frozenset(controllable_by))
        if entry[0] or entry[1]:
            self.acl[channel_id] = entry
        else:
            self.acl.pop(channel_id, None)

    def channels_of(self, device_id: str) -> list[str]:
        """The IDs in the device's catalog (without the device's own node)."""
        tree = self.trees.get(device_id)
        if tree is None:
            return []
        return [n.channel_id for n in tree if n.channel_id != device_id]

    def node(self, channel_id: str) -> CatalogNode | None:
        """The catalog node of ``channel_id`` in the tree that carries it (an IPC may list its
        own ID as its channel)."""
        device_id = self.trees.device_of(channel_id)
        tree = self.trees.get(device_id) if device_id is not None else None
        return tree.get(channel_id) if tree is not None else None

    def __call__(self, channel_id: str) -> ChannelInfo | None:
        node = self.node(channel_id)
        shared_with, controllable_by = self.acl.get(channel_id, (frozenset(), frozenset()))
        if node is not None:
            return ChannelInfo(
                channel_id=channel_id,
                owner_department=node.owner_department or "",
                security_class=node.security_class,
                shared=node.shared,
                shared_with=shared_with,
                controllable_by=controllable_by,
            )
        if self.is_device(channel_id):
            return ChannelInfo(
                channel_id=channel_id,
                owner_department="",
                shared_with=shared_with,
                controllable_by=controllable_by,
            )
        return None
