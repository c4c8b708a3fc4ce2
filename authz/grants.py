"""Permission changes and temporary emergency grants (第十八条), as a pure state machine.

第十八条: a department may apply for a permission change; in an emergency it may apply to the
emergency-management agency (市应急管理机构) for temporary access to live video outside its
jurisdiction, or for a temporary change of level. The grant "ends by itself": every approved
grant carries ``valid_to`` and stops counting the moment ``now`` reaches it, whether or not
:meth:`GrantBook.handle_timer` has run yet (the timer only moves it to ``EXPIRED`` and emits an
event for the audit trail).

States and moves (one table, one setter)::

    PENDING --approve--> APPROVED --expire--> EXPIRED
       |  \\--refuse--> REFUSED       \\--revoke--> REVOKED
       \\--revoke (withdrawn)--> REVOKED

Who may approve or refuse: a principal with ``is_emergency_manager`` or level 1, valid at
``now``, and not the requester (no self-approval). Who may revoke: the same, or the requester.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import Enum

from authz._model import MAX_LEVEL, MIN_LEVEL, Action, Principal, Scope

__all__ = [
    "Grant",
    "GrantBook",
    "GrantError",
    "GrantEvent",
    "GrantExpired",
    "GrantKind",
    "GrantNotAuthorised",
    "GrantState",
    "GrantStateError",
    "UnknownGrant",
]


class GrantError(Exception):
    """Base class of the grant book's errors (all are the caller's mistakes)."""


class UnknownGrant(GrantError, LookupError):
    """No grant has this ID."""


class GrantNotAuthorised(GrantError):
    """The acting principal may not make this move (not an emergency manager nor level 1,
    approving its own request, or not valid at ``now``)."""


class GrantStateError(GrantError):
    """The move is not legal from the grant's current state, or the request is malformed."""


class GrantKind(Enum):
    PERMISSION_CHANGE = "permission-change"  # 权限变更: extra actions on some channels
    EMERGENCY_ACCESS = "emergency-access"  # 临时申请: live video outside its jurisdiction
    LEVEL_CHANGE = "level-change"  # 临时变更权限级别


class GrantState(Enum):
    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"
    EXPIRED = "expired"
    REVOKED = "revoked"


_TRANSITIONS: dict[tuple[GrantState, str], GrantState] = {
    (GrantState.PENDING, "approve"): GrantState.APPROVED,
    (GrantState.PENDING, "refuse"): GrantState.REFUSED,
    (GrantState.PENDING, "revoke"): GrantState.REVOKED,
    (GrantState.APPROVED, "revoke"): GrantState.REVOKED,
    (GrantState.APPROVED, "expire"): GrantState.EXPIRED,
}

#: An emergency access grant with no explicit actions gives live video and snapshots.
DEFAULT_EMERGENCY_ACTIONS = frozenset({Action.VIEW, Action.SNAPSHOT})


@dataclass(frozen=True, slots=True)
class Grant:
    """One application and its fate.

    Exactly one of ``principal_id`` / ``department`` names the beneficiary. ``target`` says which
    channels it reaches. ``actions`` are the actions it allows there (permission change and
    emergency access); ``level`` is the temporary level (level change), under which the
    policy re-evaluates the request for channels in ``target``. Times are the caller's clock.
    """

    id: str
    kind: GrantKind
    target: Scope
    requested_by: str
    reason: str
    requested_at: float
    principal_id: str | None = None
    department: str | None = None
    actions: frozenset[Action] = frozenset()
    level: int | None = None
    state: GrantState = GrantState.PENDING
    approved_by: str | None = None
    decided_at: float | None = None
    valid_from: float = math.inf
    valid_to: float = -math.inf
    note: str = ""

    def applies_to(self, principal: Principal) -> bool:
        if self.principal_id is not None:
            return self.principal_id == principal.id
        return self.department == principal.department

    def is_active(self, now: float) -> bool:
        return self.state is GrantState.APPROVED and self.valid_from <= now < self.valid_to


class GrantEvent:
    """Base class of the grant book's events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class GrantExpired(GrantEvent):
    grant: Grant
    at: float


def _may_decide(principal: Principal, now: float) -> bool:
    return (principal.is_emergency_manager or principal.level == 1) and (
        principal.valid_from <= now < principal.valid_to
    )


class GrantBook:
    """Holds grants and moves them through their states. Pure: ``now`` comes in.

    :param max_valid_for: optional ceiling (seconds) on how long an approval may last.
    """

    def __init__(self, *, max_valid_for: float | None = None) -> None:
        self._grants: dict[str, Grant] = {}
        self._by_principal: dict[str, list[str]] = {}
        self._by_department: dict[str, list[str]] = {}
        self._events: deque[GrantEvent] = deque()
        self._counter = 0
        self._max_valid_for = max_valid_for

    # -- inputs -------------------------------------------------------------------------

    def apply(
        self,
        *,
        kind: GrantKind,
        target: Scope,
        requested_by: str,
        reason: str,
        now: float,
        principal_id: str | None = None,
        department: str | None = None,
        actions: frozenset[Action] = frozenset(),
        level: int | None = None,
        grant_id: str | None = None,
    ) -> Grant:
        """Record an application; it starts ``PENDING``.

        :raises GrantStateError: the application is malformed (no or two beneficiaries, a level
            change without a valid level, a permission change without actions, duplicate ID).
        """
        if (principal_id is None) == (department is None):
            raise GrantStateError("exactly one of principal_id and department is required")
        if kind is GrantKind.LEVEL_CHANGE:
            if level is None or not MIN_LEVEL <= level <= MAX_LEVEL:
                raise GrantStateError("a level change needs a level in 1..4")
        elif level is not None:
            raise GrantStateError("only a level change carries a level")
        if kind is GrantKind.PERMISSION_CHANGE and not actions:
            raise GrantStateError("a permission change needs at least one action")
        if kind is GrantKind.EMERGENCY_ACCESS and not actions:
            actions = DEFAULT_EMERGENCY_ACTIONS
        if grant_id is None:
            self._counter += 1
            grant_id = f"g{self._counter}"
            while grant_id in self._grants:
                self._counter += 1
                grant_id = f"g{self._counter}"
        elif grant_id in self._grants:
            raise GrantStateError(f"duplicate grant id {grant_id!r}")
        grant = Grant(
            id=grant_id,
            kind=kind,
            target=target,
            requested_by=requested_by,
            reason=reason,
            requested_at=now,
            principal_id=principal_id,
            department=department,
            actions=frozenset(actions),
            level=level,
        )
        self._grants[grant_id] = grant
        if principal_id is not None:
            self._by_principal.setdefault(principal_id, []).append(grant_id)
        else:
            assert department is not None
            self._by_department.setdefault(department, []).append(grant_id)
        return grant

    def approve(self, grant_id: str, approver: Principal, now: float, valid_for: float) -> Grant:
        """Approve a pending grant for ``valid_for`` seconds from ``now``.

        :raises UnknownGrant: no such grant.
        :raises GrantNotAuthorised: ``approver`` may not approve (see module docstring).
        :raises GrantStateError: the grant is not pending, or ``valid_for`` is not positive or
            exceeds ``max_valid_for``.
        """
        grant = self.get(grant_id)
        self._check_decider(grant, approver, now)
        if not valid_for > 0 or math.isinf(valid_for):
            raise GrantStateError("valid_for must be a positive, finite number of seconds")
        if self._max_valid_for is not None and valid_for > self._max_valid_for:
            raise GrantStateError(f"valid_for exceeds the ceiling of {self._max_valid_for} s")
        return self._set_state(
            grant,
            "approve",
            approved_by=approver.id,
            decided_at=now,
            valid_from=now,
            valid_to=now + valid_for,
        )

    def refuse(self, grant_id: str, approver: Principal, now: float, note: str = "") -> Grant:
        """Refuse a pending grant.

        :raises UnknownGrant, GrantNotAuthorised, GrantStateError: as for :meth:`approve`.
        """
        grant = self.get(grant_id)
        self._check_decider(grant, approver, now)
        return self._set_state(grant, "refuse", approved_by=approver.id, decided_at=now, note=note)

    def revoke(self, grant_id: str, by: Principal, now: float, note: str = "") -> Grant:
        """Revoke an approved grant, or withdraw a pending one.

        :raises UnknownGrant: no such grant.
        :raises GrantNotAuthorised: ``by`` is neither a decider nor the requester.
        :raises GrantStateError: the grant is already refused, expired or revoked.
        """
        grant = self.get(grant_id)
        if by.id != grant.requested_by and not _may_decide(by, now):
            raise GrantNotAuthorised(f"{by.id} may not revoke grant {grant_id}")
        valid_to = (
            min(grant.valid_to, now) if grant.state is GrantState.APPROVED else grant.valid_to
        )
        return self._set_state(grant, "revoke", valid_to=valid_to, note=note)

    def restore(self, grant: Grant) -> None:
        """Put back a grant read from storage, in whatever state it was saved (start-up).

        :raises GrantStateError: a grant with this ID is already held.
        """
        if grant.id in self._grants:
            raise GrantStateError(f"duplicate grant id {grant.id!r}")
        self._grants[grant.id] = grant
        if grant.principal_id is not None:
            self._by_principal.setdefault(grant.principal_id, []).append(grant.id)
        elif grant.department is not None:
            self._by_department.setdefault(grant.department, []).append(grant.id)

    def handle_timer(self, now: float) -> None:
        """Move approved grants whose ``valid_to`` has passed to ``EXPIRED`` (one
        :class:`GrantExpired` event each)."""
        for grant in list(self._grants.values()):
            if grant.state is GrantState.APPROVED and grant.valid_to <= now:
                expired = self._set_state(grant, "expire")
                self._events.append(GrantExpired(grant=expired, at=now))

    # -- outputs ------------------------------------------------------------------------

    def get(self, grant_id: str) -> Grant:
        """:raises UnknownGrant: no such grant."""
        try:
            return self._grants[grant_id]
        except KeyError:
            raise UnknownGrant(grant_id) from None

    def __iter__(self) -> Iterator[Grant]:
        return iter(list(self._grants.values()))

    def __len__(self) -> int:
        return len(self._grants)

    def active_for(self, principal: Principal, now: float) -> tuple[Grant, ...]:
        """The grants that count for ``principal`` at ``now``: approved and within validity,
        addressed to it or to its department. Pass them to :meth:`authz.Policy.decide`."""
        ids = [
            *self._by_principal.get(principal.id, ()),
            *self._by_department.get(principal.department, ()),
        ]
        grants = (self._grants[i] for i in ids)
        return tuple(g for g in grants if g.is_active(now))

    def get_timer(self) -> float | None:
        """The earliest ``valid_to`` of an approved grant, or ``None``."""
        deadlines = [g.valid_to for g in self._grants.values() if g.state is GrantState.APPROVED]
        return min(deadlines, default=None)

    def next_event(self) -> GrantEvent | None:
        return self._events.popleft() if self._events else None

    # -- internals ----------------------------------------------------------------------

    def _check_decider(self, grant: Grant, approver: Principal, now: float) -> None:
        if not _may_decide(approver, now):
            raise GrantNotAuthorised(
                f"{approver.id} is neither an emergency manager nor level 1 (or not valid now)"
            )
        if approver.id == grant.requested_by:
            raise GrantNotAuthorised(f"{approver.id} may not decide its own request")

    def _set_state(self, grant: Grant, move: str, **changes: object) -> Grant:
        try:
            state = _TRANSITIONS[(grant.state, move)]
        except KeyError:
            raise GrantStateError(
                f"cannot {move} grant {grant.id} in state {grant.state.value}"
            ) from None
        updated = replace(grant, state=state, **changes)  # type: ignore[arg-type]
        self._grants[grant.id] = updated
        return updated
