"""The four permission levels of 第十六条 as a decision function.

Strategy. The level table depends on only six facts about a (principal, channel) pair: the
level, whether the channel belongs to the principal's department, whether it is a specific area
(security class at or above the threshold, 第十三条/第十六条), whether it is shared, whether it is
shared with the principal (level 4) and whether the principal is authorised to control it
(level 3). :class:`Policy` evaluates the readable rules in :func:`_rule` once per combination
and action at construction, and keeps the 768 resulting :class:`Decision` objects in a list.
``decide`` then checks validity, windows and scope, computes an index from those six facts and
returns the interned decision: no allocation unless a grant is involved.

The rules (defaults; the switches in :class:`PolicyConfig` change the "our reading" points):

* Level 1 (一级): everything on every shared channel, specific areas included; its own
  department's channels always. Unshared channels of other departments are refused: the text
  says "所有共享图像" (all *shared* images); an emergency grant, or
  ``level1_views_unshared``, reaches them.
* Level 2 (二级): view, control and extract every shared channel except specific areas; its own
  department's channels always (``own_department_overrides_specific_area``: the own-department
  clause carries no specific-area exception). Whether a higher level currently *holds* control
  is the arbiter's business (:mod:`authz.arbitration`), not the policy's.
* Level 3 (三级): view shared channels except specific areas; control only the shared channels
  it was authorised for (``controllable_by``), never specific areas
  (``level3_control_excludes_specific_areas``); view and control its own department's channels;
  no extraction (``level3_extraction``) unless a grant says otherwise.
* Level 4 (四级): view only shared channels shared with it (``shared_with``), never specific areas;
  no control; no extraction (``level4_extraction``). The level-4 clause has no own-department
  sentence, so its own channels get nothing special (``level4_views_own_department``).
* SNAPSHOT follows VIEW (``snapshot_is_extraction`` makes it follow the extraction column).

On top of the table: a principal outside its validity (``valid_from``/``valid_to``), outside
all of its windows (the certificate's sharing period, 第二十条), or asking for a channel outside
its scope is refused with a rule naming which. Approved grants (第十八条) then widen: they are
consulted only when the base decision refuses, and they may reach beyond scope and windows (an
emergency grant is by definition outside the jurisdiction), but never beyond the principal's own
validity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from authz._model import (
    EXTRACTION_ACTIONS,
    Action,
    ChannelInfo,
    Decision,
    Principal,
)
from authz.grants import Grant, GrantKind, GrantState

__all__ = ["Policy", "PolicyConfig"]


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Settings of the policy. Defaults follow regulation.md §4 ("our reading where silent")."""

    #: Channels with ``security_class >= specific_area_threshold`` are specific areas (特定区域).
    specific_area_threshold: int = 3
    #: Civil time for recurring windows: seconds east of UTC (China Standard Time by default).
    utc_offset: int = 8 * 3600
    level1_views_unshared: bool = False
    own_department_overrides_specific_area: bool = True
    level3_control_excludes_specific_areas: bool = True
    level3_extraction: bool = False
    level4_extraction: bool = False
    level4_views_own_department: bool = False
    snapshot_is_extraction: bool = False


_NOT_YET_VALID = Decision(False, "certificate not yet valid", "validity-not-yet")
_EXPIRED = Decision(False, "certificate expired", "validity-expired")
_WINDOW_CLOSED = Decision(False, "outside the certificate's sharing period", "window-closed")
_OUT_OF_SCOPE = Decision(False, "channel outside the certificate's scope", "scope-outside")

# Bits of the table index below the level (level-1 occupies the bits above, * 32).
_OWN, _SPECIFIC, _SHARED, _SHARED_WITH, _CONTROL_AUTH = 16, 8, 4, 2, 1
_ACTIONS = len(Action)


class _Facts:
    """The six facts a cell of the level table depends on (used only at compile time)."""

    __slots__ = ("authorised", "level", "own", "shared", "shared_with", "specific")

    def __init__(self, level: int, bits: int) -> None:
        self.level = level
        self.own = bool(bits & _OWN)
        self.specific = bool(bits & _SPECIFIC)
        self.shared = bool(bits & _SHARED)
        # Lists only count for channels in the sharing pool.
        self.shared_with = self.shared and bool(bits & _SHARED_WITH)
        self.authorised = self.shared and bool(bits & _CONTROL_AUTH)


def _allow(rule: str, reason: str) -> Decision:
    return Decision(True, reason, rule)


def _deny(rule: str, reason: str) -> Decision:
    return Decision(False, reason, rule)


def _category(action: Action, config: PolicyConfig) -> str:
    if action is Action.CONTROL:
        return "control"
    if action in EXTRACTION_ACTIONS or (
        action is Action.SNAPSHOT and config.snapshot_is_extraction
    ):
        return "extract"
    return "view"


def _rule(f: _Facts, action: Action, c: PolicyConfig) -> Decision:
    """The level table, one cell. Read with the module docstring and regulation.md §4."""
    cat = _category(action, c)
    own_ok = f.own and (not f.specific or c.own_department_overrides_specific_area)
    if f.level == 1:
        if f.own:
            return _allow("L1-own-department", "level 1: own department's channel")
        if f.shared:
            return _allow("L1-shared", "level 1: every shared channel")
        if c.level1_views_unshared:
            return _allow("L1-unshared", "level 1: unshared channels allowed by configuration")
        return _deny("L1-not-shared", "level 1 reaches shared channels only")
    if f.level == 2:
        if own_ok:
            return _allow("L2-own-department", "level 2: own department's channel")
        if f.specific:
            return _deny("L2-specific-area", "level 2 excludes specific areas")
        if not f.shared:
            return _deny("L2-not-shared", "channel not shared")
        return _allow("L2-shared", "level 2: shared channel outside specific areas")
    if f.level == 3:
        if cat == "extract" and not c.level3_extraction:
            return _deny("L3-no-extraction", "level 3 may not extract or store video")
        if own_ok:
            return _allow("L3-own-department", "level 3: own department's channel")
        if cat == "control" and f.authorised:
            if f.specific and c.level3_control_excludes_specific_areas:
                return _deny("L3-specific-area", "level 3 never controls specific areas")
            return _allow("L3-control-authorised", "level 3: authorised to control")
        if f.specific:
            return _deny("L3-specific-area", "level 3 excludes specific areas")
        if not f.shared:
            return _deny("L3-not-shared", "channel not shared")
        if cat == "control":
            return _deny("L3-control-not-authorised", "level 3 controls authorised channels only")
        return _allow("L3-shared", "level 3: shared channel outside specific areas")
    # Level 4.
    if cat == "control":
        return _deny("L4-no-control", "level 4 may not control")
    if cat == "extract" and not c.level4_extraction:
        return _deny("L4-no-extraction", "level 4 may not extract or store video")
    if f.own and c.level4_views_own_department and own_ok:
        return _allow("L4-own-department", "level 4: own department's channel by configuration")
    if f.specific:
        return _deny("L4-specific-area", "level 4 excludes specific areas")
    if not f.shared_with:
        return _deny("L4-not-shared-with", "channel not shared with this department")
    return _allow("L4-shared-with", "level 4: channel shared with this department")


class Policy:
    """Decides whether a principal may perform an action on a channel. Pure and thread-safe
    (no state changes after construction)."""

    __slots__ = ("_config", "_offset", "_table", "_threshold")

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self._config = config = config if config is not None else PolicyConfig()
        self._threshold = config.specific_area_threshold
        self._offset = config.utc_offset
        table: list[Decision] = []
        for level in (1, 2, 3, 4):
            for bits in range(32):
                facts = _Facts(level, bits)
                table.extend(_rule(facts, action, config) for action in Action)
        self._table = table

    @property
    def config(self) -> PolicyConfig:
        return self._config

    def is_specific_area(self, channel: ChannelInfo) -> bool:
        return channel.security_class >= self._threshold

    def decide(
        self,
        principal: Principal,
        action: Action,
        channel: ChannelInfo,
        now: float,
        *,
        flags: frozenset[str] = frozenset(),
        grants: Sequence[Grant] = (),
    ) -> Decision:
        """Whether ``principal`` may perform ``action`` on ``channel`` at ``now``.

        :param flags: named conditions currently set (``"wartime"``) that windows may require.
        :param grants: the principal's active grants (:meth:`authz.GrantBook.active_for`);
            only consulted when the base decision refuses.
        :returns: an interned :class:`Decision` for every base outcome; a fresh one when a
            grant allows.
        """
        p = principal
        if now < p.valid_from:
            return _NOT_YET_VALID
        if now >= p.valid_to:
            return _EXPIRED
        if p._compiled_windows and not p.in_windows(now, flags, self._offset):
            decision = _WINDOW_CLOSED
        else:
            cid = channel.channel_id
            if cid in p._ids or cid.startswith(p._prefixes):
                decision = self._table[self._index(p, channel, p._row) + action]
            else:
                decision = _OUT_OF_SCOPE
        if grants and not decision.allow:
            return self._with_grants(p, action, channel, now, grants, decision)
        return decision

    def effective_level(
        self, principal: Principal, channel: ChannelInfo, now: float, grants: Sequence[Grant] = ()
    ) -> int:
        """The principal's level for ``channel`` once active level-change grants count (for the
        control arbiter)."""
        level = principal.level
        for grant in grants:
            if (
                grant.kind is GrantKind.LEVEL_CHANGE
                and grant.level is not None
                and grant.is_active(now)
                and grant.applies_to(principal)
                and grant.target.covers(channel.channel_id)
            ):
                level = min(level, grant.level)
        return level

    def _index(self, p: Principal, channel: ChannelInfo, row: int) -> int:
        dept = p.department
        i = row
        if channel.owner_department == dept:
            i += _OWN
        if channel.security_class >= self._threshold:
            i += _SPECIFIC
        if channel.shared:
            i += _SHARED
            if row >= 64:  # levels 3 and 4 look at the lists
                pid = p.id
                lst = channel.shared_with
                if pid in lst or dept in lst:
                    i += _SHARED_WITH
                lst = channel.controllable_by
                if pid in lst or dept in lst:
                    i += _CONTROL_AUTH
        return i * _ACTIONS

    def _with_grants(
        self,
        p: Principal,
        action: Action,
        channel: ChannelInfo,
        now: float,
        grants: Sequence[Grant],
        base: Decision,
    ) -> Decision:
        cid = channel.channel_id
        for g in grants:
            if not (
                g.state is GrantState.APPROVED
                and g.valid_from <= now < g.valid_to
                and g.applies_to(p)
                and g.target.covers(cid)
            ):
                continue
            if g.kind is GrantKind.LEVEL_CHANGE:
                if g.level is not None and g.level < p.level:
                    cell = self._table[self._index(p, channel, (g.level - 1) * 32) + action]
                    if cell.allow:
                        reason = f"grant {g.id}: temporary level {g.level}: {cell.reason}"
                        return Decision(True, reason, "grant-level-change")
            elif action in g.actions:
                reason = f"grant {g.id} ({g.kind.value}) allows {action.label}"
                return Decision(True, reason, f"grant-{g.kind.value}")
        return base
