"""PTZ control arbitration: who holds a camera's control right now (第十六条).

The policy says whether a principal *may* control a channel; the arbiter says whether it
*gets* to, given who else is steering it. One control session per channel. Rules, in order:

1. A level-1 holder may set a control period (设定控制权限所需时段): until it ends, requests
   from lower levels are refused with the remaining time ("该时段内相关部门的控制权上交").
2. A higher level (smaller number) pre-empts a lower one (取得优先控制权).
3. Between equal levels (同权限级别单位同时调用): emergency need first, then relevance to the
   work (the channel belongs to the requester's department), then first come.
4. A session ends after ``inactivity_timeout`` seconds without a command from its holder (but
   not before its control period ends), or when released.

Sans-IO: the caller passes ``now``, calls :meth:`ControlArbiter.handle_timer` at
:meth:`ControlArbiter.get_timer`, and drains :meth:`ControlArbiter.next_event` to tell people
that they lost control.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from enum import Enum

from authz._model import ChannelInfo, Principal

__all__ = [
    "ArbiterConfig",
    "ArbitrationError",
    "ArbitrationOutcome",
    "ArbitrationResult",
    "ControlArbiter",
    "ControlEvent",
    "ControlExpired",
    "ControlPreempted",
    "ControlSession",
]


class ArbitrationError(Exception):
    """The caller misused the arbiter (a control period by a non-holder or below level 1)."""


@dataclass(frozen=True, slots=True)
class ArbiterConfig:
    inactivity_timeout: float = 30.0
    #: Longest control period a level-1 holder may set, in seconds (None: no ceiling).
    max_control_period: float | None = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class ControlSession:
    """Who controls ``channel_id``, with what standing, until when."""

    channel_id: str
    holder_id: str
    department: str
    level: int
    emergency: bool
    relevant: bool  # the channel belongs to the holder's department
    started: float
    last_activity: float
    period_until: float | None = None

    def expires_at(self, inactivity_timeout: float) -> float:
        idle = self.last_activity + inactivity_timeout
        return idle if self.period_until is None else max(idle, self.period_until)

    @property
    def rank(self) -> tuple[int, bool, bool]:
        """Smaller is stronger: level, then emergency, then relevance."""
        return (self.level, not self.emergency, not self.relevant)


class ArbitrationOutcome(Enum):
    GRANTED = "granted"  # nobody held it
    RENEWED = "renewed"  # the requester already held it
    PREEMPTED = "preempted"  # the requester took it from ``preempted``
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class ArbitrationResult:
    outcome: ArbitrationOutcome
    rule: str
    reason: str
    session: ControlSession  # the session now in force (the holder's, when refused)
    remaining: float = 0.0  # when refused: seconds until the holder's session may end
    preempted: ControlSession | None = None

    @property
    def granted(self) -> bool:
        return self.outcome is not ArbitrationOutcome.REFUSED


class ControlEvent:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ControlPreempted(ControlEvent):
    """``loser`` lost control of the channel to ``winner`` (tell the loser)."""

    loser: ControlSession
    winner: ControlSession
    rule: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class ControlExpired(ControlEvent):
    session: ControlSession
    at: float


_PREEMPT_REASONS = (
    ("preempt-higher-level", "a higher level takes priority control"),
    ("preempt-emergency", "emergency need takes priority at equal level"),
    ("preempt-relevance", "the camera's own department takes priority at equal level"),
)
_REFUSE_REASONS = (
    ("held-higher-level", "a higher level holds control"),
    ("held-emergency", "an emergency holder at equal level holds control"),
    ("held-relevance", "the camera's own department holds control at equal level"),
    ("held-first-come", "an equal-level holder came first"),
)


class ControlArbiter:
    """One control session per channel; see the module docstring for the rules."""

    def __init__(self, config: ArbiterConfig | None = None) -> None:
        self._config = config if config is not None else ArbiterConfig()
        self._sessions: dict[str, ControlSession] = {}
        self._events: deque[ControlEvent] = deque()

    @property
    def config(self) -> ArbiterConfig:
        return self._config

    # -- inputs -------------------------------------------------------------------------

    def request(
        self,
        principal: Principal,
        channel: ChannelInfo,
        now: float,
        *,
        emergency: bool = False,
        level: int | None = None,
    ) -> ArbitrationResult:
        """Ask for control of ``channel`` (call on every control command; a holder's call
        renews its session).

        :param emergency: the request is for emergency work (also true when
            ``principal.emergency``).
        :param level: the effective level if a grant changed it
            (:meth:`authz.Policy.effective_level`); defaults to ``principal.level``.
        """
        self._expire(channel.channel_id, now)
        challenger = ControlSession(
            channel_id=channel.channel_id,
            holder_id=principal.id,
            department=principal.department,
            level=principal.level if level is None else level,
            emergency=emergency or principal.emergency,
            relevant=channel.owner_department == principal.department,
            started=now,
            last_activity=now,
        )
        holder = self._sessions.get(channel.channel_id)
        if holder is None:
            self._sessions[channel.channel_id] = challenger
            return ArbitrationResult(
                ArbitrationOutcome.GRANTED, "control-free", "nobody held control", challenger
            )
        if holder.holder_id == principal.id:
            renewed = replace(
                holder,
                last_activity=now,
                level=min(holder.level, challenger.level),
                emergency=holder.emergency or challenger.emergency,
            )
            self._sessions[channel.channel_id] = renewed
            return ArbitrationResult(
                ArbitrationOutcome.RENEWED, "control-renewed", "already the holder", renewed
            )
        remaining = holder.expires_at(self._config.inactivity_timeout) - now
        if (
            holder.period_until is not None
            and holder.period_until > now
            and challenger.level > holder.level
        ):
            return ArbitrationResult(
                ArbitrationOutcome.REFUSED,
                "control-period",
                f"level-1 control period for {holder.period_until - now:.0f} s more",
                holder,
                remaining=holder.period_until - now,
            )
        beats = _first_difference(challenger.rank, holder.rank)
        if beats is not None and challenger.rank < holder.rank:
            rule, reason = _PREEMPT_REASONS[beats]
            self._sessions[channel.channel_id] = challenger
            self._events.append(ControlPreempted(holder, challenger, rule, reason, now))
            return ArbitrationResult(
                ArbitrationOutcome.PREEMPTED, rule, reason, challenger, preempted=holder
            )
        rule, reason = _REFUSE_REASONS[3 if beats is None else beats]
        return ArbitrationResult(
            ArbitrationOutcome.REFUSED, rule, reason, holder, remaining=max(remaining, 0.0)
        )

    def set_control_period(
        self, principal: Principal, channel_id: str, until: float, now: float
    ) -> ControlSession:
        """A level-1 holder reserves control until ``until`` (第十六条 (一)).

        :raises ArbitrationError: the principal is not level 1, does not hold the channel, or
            the period is in the past or longer than ``max_control_period``.
        """
        self._expire(channel_id, now)
        holder = self._sessions.get(channel_id)
        if principal.level != 1 or holder is None or holder.holder_id != principal.id:
            raise ArbitrationError("only the level-1 holder of a channel may set a control period")
        if until <= now:
            raise ArbitrationError("control period ends in the past")
        ceiling = self._config.max_control_period
        if ceiling is not None and until - now > ceiling:
            raise ArbitrationError(f"control period longer than {ceiling} s")
        updated = replace(holder, period_until=until, last_activity=now)
        self._sessions[channel_id] = updated
        return updated

    def release(self, principal: Principal, channel_id: str, now: float) -> bool:
        """End the principal's session on the channel; False if it held none."""
        self._expire(channel_id, now)
        holder = self._sessions.get(channel_id)
        if holder is None or holder.holder_id != principal.id:
            return False
        del self._sessions[channel_id]
        return True

    def handle_timer(self, now: float) -> None:
        """Expire every session idle past its deadline (a :class:`ControlExpired` each)."""
        for channel_id in list(self._sessions):
            self._expire(channel_id, now)

    # -- outputs ------------------------------------------------------------------------

    def holder(self, channel_id: str, now: float) -> ControlSession | None:
        """The session in force at ``now`` (an idle one past its deadline does not count)."""
        session = self._sessions.get(channel_id)
        if session is None or session.expires_at(self._config.inactivity_timeout) <= now:
            return None
        return session

    def get_timer(self) -> float | None:
        timeout = self._config.inactivity_timeout
        return min((s.expires_at(timeout) for s in self._sessions.values()), default=None)

    def next_event(self) -> ControlEvent | None:
        return self._events.popleft() if self._events else None

    def _expire(self, channel_id: str, now: float) -> None:
        session = self._sessions.get(channel_id)
        if session is not None and session.expires_at(self._config.inactivity_timeout) <= now:
            del self._sessions[channel_id]
            self._events.append(ControlExpired(session, now))


def _first_difference(a: tuple[int, bool, bool], b: tuple[int, bool, bool]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x != y:
            return i
    return None
