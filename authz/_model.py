"""Value types shared by the policy, the grant book, the arbiter and the CA.

Everything here is immutable. A :class:`Principal` precomputes, once, the few derived values
the hot path of :meth:`authz.Policy.decide` needs (scope prefixes as a tuple for
``str.startswith``, windows as month bit masks), so that a decision costs a handful of attribute
reads and no allocation.

Time is a float on the caller's clock (seconds since the Unix epoch); recurring windows are
evaluated in the city's civil time, given to the policy as a fixed UTC offset (China has no
daylight saving), so no time-zone database and no clock read are needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum, IntEnum

__all__ = [
    "EXTRACTION_ACTIONS",
    "MAX_LEVEL",
    "MIN_LEVEL",
    "Action",
    "AuthzError",
    "ChannelInfo",
    "Decision",
    "Principal",
    "PrincipalKind",
    "Scope",
    "Window",
    "civil_month_minute",
]

#: Level 1 (一级) is the highest permission level, level 4 (四级) the lowest (第十六条).
MIN_LEVEL = 1
MAX_LEVEL = 4


class AuthzError(ValueError):
    """A value handed to the authz package is invalid (a caller's mistake)."""


class Action(IntEnum):
    """What a principal wants to do with a channel (第十七条).

    An ``IntEnum`` so that the policy can index its precompiled table with the member itself.
    """

    VIEW = 0  # live video call-up (实时图像调用)
    CONTROL = 1  # PTZ, lens and auxiliary control (运动控制)
    PLAYBACK = 2  # historical recording playback (回放)
    DOWNLOAD = 3  # recording download (下载)
    RECORD = 4  # store video locally or at another site (本地或异地存储)
    SNAPSHOT = 5  # a still picture of live video

    @property
    def label(self) -> str:
        return self.name.lower()


#: Actions that extract and store video: granted to levels 1 and 2 only (第十六条).
EXTRACTION_ACTIONS = frozenset({Action.PLAYBACK, Action.DOWNLOAD, Action.RECORD})


class PrincipalKind(Enum):
    """Who presents the certificate: a person, a lower platform, a device, a department's client."""

    USER = "user"
    PLATFORM = "platform"
    DEVICE = "device"
    DEPARTMENT_CLIENT = "department-client"


@dataclass(frozen=True, slots=True)
class Scope:
    """The cameras a certificate or a grant reaches: ID prefixes and explicit channel IDs.

    GB/T 28181 IDs begin with the administrative region code (the first 2, 4, 6 or 8 digits),
    so a region is a prefix. An empty scope reaches nothing; :meth:`everything` (the empty
    prefix) reaches every channel.
    """

    prefixes: tuple[str, ...] = ()
    channel_ids: frozenset[str] = frozenset()

    @classmethod
    def everything(cls) -> Scope:
        return cls(prefixes=("",))

    @property
    def is_everything(self) -> bool:
        return "" in self.prefixes

    def covers(self, channel_id: str) -> bool:
        return channel_id in self.channel_ids or channel_id.startswith(self.prefixes)


@dataclass(frozen=True, slots=True)
class Window:
    """A recurring window: months ``first_month..last_month`` and minutes of the day
    ``first_minute..last_minute`` (both inclusive, wrapping when first > last), and optionally a
    named flag (such as ``"wartime"``) that must be set when deciding.

    ``Window(6, 9)`` is the summer typhoon season, ``Window(12, 2)`` the winter snow season and
    ``Window(flag="wartime")`` civil defence's wartime level 1 (第十六条 (一)).
    """

    first_month: int = 1
    last_month: int = 12
    first_minute: int = 0
    last_minute: int = 1439
    flag: str = ""

    def __post_init__(self) -> None:
        for month in (self.first_month, self.last_month):
            if not 1 <= month <= 12:
                raise AuthzError(f"month out of range 1..12: {month}")
        for minute in (self.first_minute, self.last_minute):
            if not 0 <= minute <= 1439:
                raise AuthzError(f"minute of day out of range 0..1439: {minute}")

    @property
    def month_mask(self) -> int:
        """Bit ``m`` is set when month ``m`` (1..12) lies in the window."""
        first, last = self.first_month, self.last_month
        months = (
            range(first, last + 1) if first <= last else [*range(first, 13), *range(1, last + 1)]
        )
        mask = 0
        for month in months:
            mask |= 1 << month
        return mask

    def is_open(self, month: int, minute: int, flags: frozenset[str]) -> bool:
        """Whether civil ``month`` / ``minute`` of the day and the set ``flags`` fall inside."""
        if not (self.month_mask >> month) & 1:
            return False
        if not _minute_in(minute, self.first_minute, self.last_minute):
            return False
        return not self.flag or self.flag in flags


def _minute_in(minute: int, first: int, last: int) -> bool:
    if first <= last:
        return first <= minute <= last
    return minute >= first or minute <= last


def civil_month_minute(now: float, utc_offset: int) -> tuple[int, int]:
    """Month (1..12) and minute of the day of ``now`` in civil time ``utc_offset`` seconds east.

    Integer arithmetic only (H. Hinnant's ``civil_from_days``), no time-zone database.
    """
    local = math.floor(now) + utc_offset
    days, seconds = divmod(local, 86400)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    return month, seconds // 60


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated party and what its permission certificate says (第二十条).

    ``level`` 1..4 (第十六条), ``scope`` and ``windows`` (the sharing period) come from the
    certificate; ``valid_from`` / ``valid_to`` bound it (seconds since the epoch; half-open).
    An empty ``windows`` means "always"; otherwise at least one window must be open.
    ``emergency`` marks a principal acting for emergency work (used by control arbitration),
    ``is_emergency_manager`` one that may approve grants (第十八条: 市应急管理机构).
    """

    id: str
    kind: PrincipalKind
    department: str
    level: int
    scope: Scope = field(default_factory=Scope.everything)
    windows: tuple[Window, ...] = ()
    valid_from: float = -math.inf
    valid_to: float = math.inf
    emergency: bool = False
    is_emergency_manager: bool = False
    # Precomputed for Policy.decide; not part of identity.
    _row: int = field(init=False, repr=False, compare=False, hash=False, default=0)
    _prefixes: tuple[str, ...] = field(
        init=False, repr=False, compare=False, hash=False, default=()
    )
    _ids: frozenset[str] = field(
        init=False, repr=False, compare=False, hash=False, default=frozenset()
    )
    _compiled_windows: tuple[tuple[int, int, int, str], ...] = field(
        init=False, repr=False, compare=False, hash=False, default=()
    )

    def __post_init__(self) -> None:
        if not MIN_LEVEL <= self.level <= MAX_LEVEL:
            raise AuthzError(f"level out of range 1..4: {self.level}")
        if self.valid_from > self.valid_to:
            raise AuthzError("valid_from is after valid_to")
        setter = object.__setattr__
        setter(self, "_row", (self.level - 1) * 32)
        setter(self, "_prefixes", tuple(self.scope.prefixes))
        setter(self, "_ids", frozenset(self.scope.channel_ids))
        compiled = tuple(
            (w.month_mask, w.first_minute, w.last_minute, w.flag) for w in self.windows
        )
        setter(self, "_compiled_windows", compiled)

    def in_windows(self, now: float, flags: frozenset[str], utc_offset: int) -> bool:
        """Whether one of the windows is open at ``now`` (true when there are none)."""
        if not self._compiled_windows:
            return True
        month, minute = civil_month_minute(now, utc_offset)
        for mask, first, last, flag in self._compiled_windows:
            if (
                (mask >> month) & 1
                and _minute_in(minute, first, last)
                and (not flag or flag in flags)
            ):
                return True
        return False


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What the policy needs to know about a channel (a camera, 通道).

    ``security_class`` is fixed from the video's source and use (第十三条); channels at or above
    the policy's threshold are the specific areas (特定区域). ``shared`` puts the channel in the
    sharing pool; ``shared_with`` names the departments or principal IDs a level-4 principal
    must belong to (shared on application); ``controllable_by`` the departments or principal IDs
    authorised to control it at level 3.
    """

    channel_id: str
    owner_department: str
    security_class: int = 0
    shared: bool = False
    shared_with: frozenset[str] = frozenset()
    controllable_by: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer. ``rule`` is a stable identifier (``"L2-specific-area"``) for audit
    and metrics; ``reason`` is for people."""

    allow: bool
    reason: str
    rule: str
