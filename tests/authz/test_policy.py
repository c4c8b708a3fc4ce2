"""The level table of 第十六条, cell by cell, plus scope, windows, validity, grants and switches."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authz import (
    Action,
    ChannelInfo,
    Decision,
    Grant,
    GrantBook,
    GrantKind,
    Policy,
    PolicyConfig,
    Principal,
    PrincipalKind,
    Scope,
    Window,
)

CST = dt.timezone(dt.timedelta(hours=8))


def at(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> float:
    """A Unix time from Qingdao civil time."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=CST).timestamp()


NOW = at(2024, 7, 15)
POLICY = Policy()  # default configuration; building one compiles the table
ME = "dept-A"
OTHER = "dept-B"
CHANNEL_ID = "37020200001320000001"

# The regulation's table (regulation.md §4, 第十六条), written out by hand. Columns, in order:
# VIEW, CONTROL, PLAYBACK, DOWNLOAD, RECORD, SNAPSHOT ("Y" allowed, "-" refused).
# "listed": the channel's shared_with and controllable_by name the principal's department.
# Level 1: all shared channels, own always. Level 2: shared minus specific areas, own always.
# Level 3: view shared minus specific areas; control only where authorised (listed) or own;
# never extraction. Level 4: view shared-with-it only, minus specific areas; nothing else.
EXPECTED: dict[tuple[int, str, str, str, str], str] = {
    # level 1
    (1, "own", "ordinary", "shared", "listed"): "YYYYYY",
    (1, "own", "ordinary", "shared", "unlisted"): "YYYYYY",
    (1, "own", "ordinary", "unshared", "listed"): "YYYYYY",
    (1, "own", "ordinary", "unshared", "unlisted"): "YYYYYY",
    (1, "own", "specific", "shared", "listed"): "YYYYYY",
    (1, "own", "specific", "shared", "unlisted"): "YYYYYY",
    (1, "own", "specific", "unshared", "listed"): "YYYYYY",
    (1, "own", "specific", "unshared", "unlisted"): "YYYYYY",
    (1, "other", "ordinary", "shared", "listed"): "YYYYYY",
    (1, "other", "ordinary", "shared", "unlisted"): "YYYYYY",
    (1, "other", "ordinary", "unshared", "listed"): "------",
    (1, "other", "ordinary", "unshared", "unlisted"): "------",
    (1, "other", "specific", "shared", "listed"): "YYYYYY",
    (1, "other", "specific", "shared", "unlisted"): "YYYYYY",
    (1, "other", "specific", "unshared", "listed"): "------",
    (1, "other", "specific", "unshared", "unlisted"): "------",
    # level 2
    (2, "own", "ordinary", "shared", "listed"): "YYYYYY",
    (2, "own", "ordinary", "shared", "unlisted"): "YYYYYY",
    (2, "own", "ordinary", "unshared", "listed"): "YYYYYY",
    (2, "own", "ordinary", "unshared", "unlisted"): "YYYYYY",
    (2, "own", "specific", "shared", "listed"): "YYYYYY",
    (2, "own", "specific", "shared", "unlisted"): "YYYYYY",
    (2, "own", "specific", "unshared", "listed"): "YYYYYY",
    (2, "own", "specific", "unshared", "unlisted"): "YYYYYY",
    (2, "other", "ordinary", "shared", "listed"): "YYYYYY",
    (2, "other", "ordinary", "shared", "unlisted"): "YYYYYY",
    (2, "other", "ordinary", "unshared", "listed"): "------",
    (2, "other", "ordinary", "unshared", "unlisted"): "------",
    (2, "other", "specific", "shared", "listed"): "------",
    (2, "other", "specific", "shared", "unlisted"): "------",
    (2, "other", "specific", "unshared", "listed"): "------",
    (2, "other", "specific", "unshared", "unlisted"): "------",
    # level 3
    (3, "own", "ordinary", "shared", "listed"): "YY---Y",
    (3, "own", "ordinary", "shared", "unlisted"): "YY---Y",
    (3, "own", "ordinary", "unshared", "listed"): "YY---Y",
    (3, "own", "ordinary", "unshared", "unlisted"): "YY---Y",
    (3, "own", "specific", "shared", "listed"): "YY---Y",
    (3, "own", "specific", "shared", "unlisted"): "YY---Y",
    (3, "own", "specific", "unshared", "listed"): "YY---Y",
    (3, "own", "specific", "unshared", "unlisted"): "YY---Y",
    (3, "other", "ordinary", "shared", "listed"): "YY---Y",
    (3, "other", "ordinary", "shared", "unlisted"): "Y----Y",
    (3, "other", "ordinary", "unshared", "listed"): "------",
    (3, "other", "ordinary", "unshared", "unlisted"): "------",
    (3, "other", "specific", "shared", "listed"): "------",
    (3, "other", "specific", "shared", "unlisted"): "------",
    (3, "other", "specific", "unshared", "listed"): "------",
    (3, "other", "specific", "unshared", "unlisted"): "------",
    # level 4
    (4, "own", "ordinary", "shared", "listed"): "Y----Y",
    (4, "own", "ordinary", "shared", "unlisted"): "------",
    (4, "own", "ordinary", "unshared", "listed"): "------",
    (4, "own", "ordinary", "unshared", "unlisted"): "------",
    (4, "own", "specific", "shared", "listed"): "------",
    (4, "own", "specific", "shared", "unlisted"): "------",
    (4, "own", "specific", "unshared", "listed"): "------",
    (4, "own", "specific", "unshared", "unlisted"): "------",
    (4, "other", "ordinary", "shared", "listed"): "Y----Y",
    (4, "other", "ordinary", "shared", "unlisted"): "------",
    (4, "other", "ordinary", "unshared", "listed"): "------",
    (4, "other", "ordinary", "unshared", "unlisted"): "------",
    (4, "other", "specific", "shared", "listed"): "------",
    (4, "other", "specific", "shared", "unlisted"): "------",
    (4, "other", "specific", "unshared", "listed"): "------",
    (4, "other", "specific", "unshared", "unlisted"): "------",
}
ACTION_ORDER = (
    Action.VIEW,
    Action.CONTROL,
    Action.PLAYBACK,
    Action.DOWNLOAD,
    Action.RECORD,
    Action.SNAPSHOT,
)


def principal(level: int, **kw: object) -> Principal:
    fields: dict[str, object] = {
        "id": "37020000002000000001",
        "kind": PrincipalKind.USER,
        "department": ME,
        "level": level,
    }
    fields.update(kw)
    return Principal(**fields)  # type: ignore[arg-type]


def channel(
    own: bool = False,
    specific: bool = False,
    shared: bool = True,
    listed: bool = False,
    channel_id: str = CHANNEL_ID,
) -> ChannelInfo:
    lists = frozenset({ME}) if listed else frozenset({"dept-X"})
    return ChannelInfo(
        channel_id=channel_id,
        owner_department=ME if own else OTHER,
        security_class=5 if specific else 1,
        shared=shared,
        shared_with=lists,
        controllable_by=lists,
    )


CELLS = [
    (key, action, expected[i] == "Y")
    for key, expected in EXPECTED.items()
    for i, action in enumerate(ACTION_ORDER)
]


def test_table_is_complete() -> None:
    assert len(EXPECTED) == 4 * 2 * 2 * 2 * 2
    assert len(CELLS) == 384


@pytest.mark.parametrize(("key", "action", "allowed"), CELLS, ids=lambda v: str(v))
def test_level_table_cell(
    key: tuple[int, str, str, str, str], action: Action, allowed: bool
) -> None:
    level, own, area, shared, listed = key
    ch = channel(
        own=own == "own",
        specific=area == "specific",
        shared=shared == "shared",
        listed=listed == "listed",
    )
    decision = POLICY.decide(principal(level), action, ch, NOW)
    assert decision.allow is allowed, decision
    assert decision.rule
    if level > 1:
        assert decision.rule.startswith(f"L{level}-")


@pytest.mark.parametrize(
    ("level", "kw", "action", "rule"),
    [
        (1, {"shared": True}, Action.DOWNLOAD, "L1-shared"),
        (1, {"own": True, "shared": False}, Action.VIEW, "L1-own-department"),
        (1, {"shared": False}, Action.VIEW, "L1-not-shared"),
        (2, {"specific": True}, Action.VIEW, "L2-specific-area"),
        (2, {"shared": False}, Action.VIEW, "L2-not-shared"),
        (2, {}, Action.RECORD, "L2-shared"),
        (2, {"own": True, "specific": True}, Action.CONTROL, "L2-own-department"),
        (3, {}, Action.PLAYBACK, "L3-no-extraction"),
        (3, {}, Action.CONTROL, "L3-control-not-authorised"),
        (3, {"listed": True}, Action.CONTROL, "L3-control-authorised"),
        (3, {"listed": True, "specific": True}, Action.CONTROL, "L3-specific-area"),
        (3, {"specific": True}, Action.VIEW, "L3-specific-area"),
        (3, {"shared": False}, Action.VIEW, "L3-not-shared"),
        (3, {}, Action.VIEW, "L3-shared"),
        (3, {"own": True}, Action.CONTROL, "L3-own-department"),
        (4, {"listed": True}, Action.CONTROL, "L4-no-control"),
        (4, {"listed": True}, Action.DOWNLOAD, "L4-no-extraction"),
        (4, {"listed": True, "specific": True}, Action.VIEW, "L4-specific-area"),
        (4, {}, Action.VIEW, "L4-not-shared-with"),
        (4, {"listed": True}, Action.VIEW, "L4-shared-with"),
    ],
)
def test_rule_names(level: int, kw: dict[str, bool], action: Action, rule: str) -> None:
    ch = channel(**kw)  # type: ignore[arg-type]
    assert POLICY.decide(principal(level), action, ch, NOW).rule == rule


def test_common_decisions_are_interned() -> None:
    policy = POLICY
    p = principal(4)
    first = policy.decide(p, Action.CONTROL, channel(), NOW)
    assert policy.decide(p, Action.CONTROL, channel(), NOW + 5) is first


def test_listed_by_principal_id_counts_like_department() -> None:
    p = principal(4)
    ch = ChannelInfo(CHANNEL_ID, OTHER, shared=True, shared_with=frozenset({p.id}))
    assert POLICY.decide(p, Action.VIEW, ch, NOW).allow
    ch3 = ChannelInfo(CHANNEL_ID, OTHER, shared=True, controllable_by=frozenset({p.id}))
    assert POLICY.decide(principal(3), Action.CONTROL, ch3, NOW).allow


def test_threshold_is_configurable() -> None:
    ch = ChannelInfo(CHANNEL_ID, OTHER, security_class=2, shared=True)
    assert POLICY.decide(principal(2), Action.VIEW, ch, NOW).allow
    strict = Policy(PolicyConfig(specific_area_threshold=2))
    assert strict.is_specific_area(ch)
    assert strict.decide(principal(2), Action.VIEW, ch, NOW).rule == "L2-specific-area"


# -- configuration switches ("our reading where silent") -----------------------------------


def test_switch_level1_views_unshared() -> None:
    policy = Policy(PolicyConfig(level1_views_unshared=True))
    d = policy.decide(principal(1), Action.VIEW, channel(shared=False), NOW)
    assert d == Decision(True, d.reason, "L1-unshared")


def test_switch_own_department_specific_area() -> None:
    policy = Policy(PolicyConfig(own_department_overrides_specific_area=False))
    own_specific = channel(own=True, specific=True)
    assert policy.decide(principal(2), Action.VIEW, own_specific, NOW).rule == "L2-specific-area"
    assert policy.decide(principal(3), Action.CONTROL, own_specific, NOW).rule == (
        "L3-specific-area"
    )
    assert policy.decide(principal(1), Action.VIEW, own_specific, NOW).allow


def test_switch_level3_extraction() -> None:
    policy = Policy(PolicyConfig(level3_extraction=True))
    assert policy.decide(principal(3), Action.DOWNLOAD, channel(), NOW).allow
    assert not policy.decide(principal(3), Action.DOWNLOAD, channel(specific=True), NOW).allow


def test_switch_level3_control_of_specific_areas() -> None:
    policy = Policy(PolicyConfig(level3_control_excludes_specific_areas=False))
    ch = channel(specific=True, listed=True)
    assert policy.decide(principal(3), Action.CONTROL, ch, NOW).allow
    assert not policy.decide(principal(3), Action.VIEW, ch, NOW).allow


def test_switch_level4_extraction_and_own_department() -> None:
    policy = Policy(PolicyConfig(level4_extraction=True, level4_views_own_department=True))
    assert policy.decide(principal(4), Action.PLAYBACK, channel(listed=True), NOW).allow
    own = channel(own=True, shared=False)
    assert policy.decide(principal(4), Action.VIEW, own, NOW).rule == "L4-own-department"
    assert not policy.decide(principal(4), Action.CONTROL, own, NOW).allow


def test_switch_snapshot_is_extraction() -> None:
    policy = Policy(PolicyConfig(snapshot_is_extraction=True))
    assert not policy.decide(principal(3), Action.SNAPSHOT, channel(), NOW).allow
    assert policy.decide(principal(3), Action.VIEW, channel(), NOW).allow
    assert POLICY.decide(principal(3), Action.SNAPSHOT, channel(), NOW).allow


# -- validity, windows, scope ----------------------------------------------------------------


def test_validity_bounds() -> None:
    p = principal(1, valid_from=NOW, valid_to=NOW + 10)
    policy = POLICY
    assert policy.decide(p, Action.VIEW, channel(), NOW - 1).rule == "validity-not-yet"
    assert policy.decide(p, Action.VIEW, channel(), NOW).allow
    assert policy.decide(p, Action.VIEW, channel(), NOW + 9.999).allow
    assert policy.decide(p, Action.VIEW, channel(), NOW + 10).rule == "validity-expired"


def test_seasonal_windows_typhoon_and_snow() -> None:
    # 城乡建设: level 1 in the summer typhoon season and the winter snow season.
    p = principal(1, windows=(Window(6, 9), Window(12, 2)))
    policy = POLICY
    for month, allowed in [(1, True), (2, True), (3, False), (5, False), (6, True), (9, True)]:
        d = policy.decide(p, Action.VIEW, channel(), at(2024, month, 15))
        assert d.allow is allowed, month
    assert policy.decide(p, Action.VIEW, channel(), at(2024, 10, 1)).rule == "window-closed"
    assert policy.decide(p, Action.VIEW, channel(), at(2024, 12, 1, 0, 0)).allow
    # Month boundaries are civil time: 2024-09-30 23:59 CST is still September.
    assert policy.decide(p, Action.VIEW, channel(), at(2024, 9, 30, 23, 59)).allow
    assert not policy.decide(p, Action.VIEW, channel(), at(2024, 10, 1, 0, 0)).allow


def test_flag_window_wartime() -> None:
    p = principal(1, windows=(Window(flag="wartime"),))
    policy = POLICY
    assert policy.decide(p, Action.VIEW, channel(), NOW).rule == "window-closed"
    assert policy.decide(p, Action.VIEW, channel(), NOW, flags=frozenset({"wartime"})).allow
    assert not policy.decide(p, Action.VIEW, channel(), NOW, flags=frozenset({"drill"})).allow


def test_daily_window_wraps_midnight() -> None:
    p = principal(2, windows=(Window(first_minute=22 * 60, last_minute=6 * 60 - 1),))
    policy = POLICY
    assert policy.decide(p, Action.VIEW, channel(), at(2024, 7, 1, 23, 0)).allow
    assert policy.decide(p, Action.VIEW, channel(), at(2024, 7, 1, 5, 59)).allow
    assert not policy.decide(p, Action.VIEW, channel(), at(2024, 7, 1, 6, 0)).allow
    utc = Policy(PolicyConfig(utc_offset=0))
    assert not utc.decide(p, Action.VIEW, channel(), at(2024, 7, 1, 23, 0)).allow


def test_scope_prefix_and_explicit_ids() -> None:
    p = principal(1, scope=Scope(prefixes=("370202",), channel_ids=frozenset({"3703" + "0" * 16})))
    policy = POLICY
    assert policy.decide(p, Action.VIEW, channel(), NOW).allow
    assert policy.decide(p, Action.VIEW, channel(channel_id="3703" + "0" * 16), NOW).allow
    d = policy.decide(p, Action.VIEW, channel(channel_id="37030000001320000002"), NOW)
    assert d.rule == "scope-outside"
    nothing = principal(1, scope=Scope())
    assert policy.decide(nothing, Action.VIEW, channel(), NOW).rule == "scope-outside"


def test_scope_applies_to_own_department_too() -> None:
    p = principal(2, scope=Scope(prefixes=("3703",)))
    assert not POLICY.decide(p, Action.VIEW, channel(own=True), NOW).allow


# -- grants ----------------------------------------------------------------------------------


MANAGER = Principal("manager", PrincipalKind.USER, "emergency", 2, is_emergency_manager=True)


def approved(book: GrantBook, valid_for: float = 3600.0, **kw: object) -> Grant:
    fields: dict[str, object] = {
        "requested_by": "requester",
        "reason": "flood",
        "now": NOW,
        "principal_id": "37020000002000000001",
    }
    fields.update(kw)
    grant = book.apply(**fields)  # type: ignore[arg-type]
    return book.approve(grant.id, MANAGER, NOW, valid_for)


def test_emergency_access_reaches_outside_jurisdiction() -> None:
    book = GrantBook()
    p = principal(4, scope=Scope(prefixes=("3703",)))
    target = channel(shared=False)
    approved(
        book, kind=GrantKind.EMERGENCY_ACCESS, target=Scope(channel_ids=frozenset({CHANNEL_ID}))
    )
    grants = book.active_for(p, NOW)
    policy = POLICY
    assert not policy.decide(p, Action.VIEW, target, NOW).allow
    d = policy.decide(p, Action.VIEW, target, NOW, grants=grants)
    assert d.allow and d.rule == "grant-emergency-access"
    assert policy.decide(p, Action.SNAPSHOT, target, NOW, grants=grants).allow
    assert not policy.decide(p, Action.CONTROL, target, NOW, grants=grants).allow
    other = channel(shared=False, channel_id="37020200001320000002")
    assert not policy.decide(p, Action.VIEW, other, NOW, grants=grants).allow
    # It ends by itself.
    assert not policy.decide(p, Action.VIEW, target, NOW + 3600, grants=grants).allow


def test_permission_change_for_department_gives_extraction_to_level3() -> None:
    book = GrantBook()
    approved(
        book,
        kind=GrantKind.PERMISSION_CHANGE,
        target=Scope(prefixes=("370202",)),
        actions=frozenset({Action.PLAYBACK}),
        principal_id=None,
        department=ME,
    )
    p = principal(3)
    grants = book.active_for(p, NOW)
    d = POLICY.decide(p, Action.PLAYBACK, channel(), NOW, grants=grants)
    assert d.allow and d.rule == "grant-permission-change"
    assert not POLICY.decide(p, Action.DOWNLOAD, channel(), NOW, grants=grants).allow


def test_level_change_grant() -> None:
    book = GrantBook()
    approved(book, kind=GrantKind.LEVEL_CHANGE, target=Scope(prefixes=("370202",)), level=1)
    p = principal(3)
    grants = book.active_for(p, NOW)
    policy = POLICY
    d = policy.decide(p, Action.DOWNLOAD, channel(specific=True), NOW, grants=grants)
    assert d.allow and d.rule == "grant-level-change"
    # Level 1 still does not reach unshared channels of other departments.
    assert not policy.decide(p, Action.VIEW, channel(shared=False), NOW, grants=grants).allow
    outside = channel(channel_id="37030000001320000001")
    assert not policy.decide(p, Action.DOWNLOAD, outside, NOW, grants=grants).allow
    assert policy.effective_level(p, channel(), NOW, grants) == 1
    assert policy.effective_level(p, outside, NOW, grants) == 3
    assert policy.effective_level(p, channel(), NOW + 4000, grants) == 3


def test_level_change_to_a_lower_level_does_not_widen() -> None:
    book = GrantBook()
    approved(book, kind=GrantKind.LEVEL_CHANGE, target=Scope.everything(), level=4)
    p = principal(3)
    grants = book.active_for(p, NOW)
    assert not POLICY.decide(p, Action.CONTROL, channel(), NOW, grants=grants).allow


def test_grants_do_not_revive_an_expired_principal() -> None:
    book = GrantBook()
    approved(book, kind=GrantKind.EMERGENCY_ACCESS, target=Scope.everything())
    p = principal(4, valid_to=NOW - 1)
    grants = book.active_for(p, NOW)
    assert POLICY.decide(p, Action.VIEW, channel(), NOW, grants=grants).rule == ("validity-expired")


def test_grant_for_someone_else_is_ignored() -> None:
    book = GrantBook()
    g = approved(book, kind=GrantKind.EMERGENCY_ACCESS, target=Scope.everything(), principal_id="x")
    p = principal(4)
    assert not POLICY.decide(p, Action.VIEW, channel(), NOW, grants=(g,)).allow


# -- property: no principal exceeds its level's row -----------------------------------------

DEPTS = ["d1", "d2", "d3"]
IDS = ["37020200001320000001", "37020300001320000002", "37030000001320000003"]


@st.composite
def principals(draw: st.DrawFn) -> Principal:
    windows = draw(
        st.lists(
            st.builds(
                Window,
                st.integers(1, 12),
                st.integers(1, 12),
                st.integers(0, 1439),
                st.integers(0, 1439),
                st.sampled_from(["", "wartime"]),
            ),
            max_size=2,
        )
    )
    start = draw(st.sampled_from([0.0, 1.5e9, 3e9]))
    return Principal(
        id=draw(st.sampled_from(["p1", "p2"])),
        kind=draw(st.sampled_from(list(PrincipalKind))),
        department=draw(st.sampled_from(DEPTS)),
        level=draw(st.integers(1, 4)),
        scope=Scope(
            prefixes=tuple(draw(st.lists(st.sampled_from(["", "3702", "370203", "3703"])))),
            channel_ids=frozenset(draw(st.lists(st.sampled_from(IDS)))),
        ),
        windows=tuple(windows),
        valid_from=start,
        valid_to=start + draw(st.sampled_from([1e9, 3e9])),
    )


names = st.frozensets(st.sampled_from([*DEPTS, "p1", "p2"]))
channels = st.builds(
    ChannelInfo,
    channel_id=st.sampled_from(IDS),
    owner_department=st.sampled_from(DEPTS),
    security_class=st.integers(0, 5),
    shared=st.booleans(),
    shared_with=names,
    controllable_by=names,
)


@settings(max_examples=300, deadline=None)
@given(
    p=principals(),
    action=st.sampled_from(list(Action)),
    ch=channels,
    now=st.floats(0, 4e9, allow_subnormal=False),
    flags=st.frozensets(st.sampled_from(["wartime", "drill"])),
)
def test_no_principal_exceeds_its_row(
    p: Principal, action: Action, ch: ChannelInfo, now: float, flags: frozenset[str]
) -> None:
    d = POLICY.decide(p, action, ch, now, flags=flags)
    if not d.allow:
        return
    # Written independently of the policy's table, from 第十六条.
    assert p.valid_from <= now < p.valid_to
    assert ch.channel_id in p.scope.channel_ids or any(
        ch.channel_id.startswith(x) for x in p.scope.prefixes
    )
    assert not p.windows or any(w.is_open(*_civil(now), flags) for w in p.windows)
    own = ch.owner_department == p.department
    specific = ch.security_class >= 3
    extraction = action in (Action.PLAYBACK, Action.DOWNLOAD, Action.RECORD)
    if p.level == 1:
        assert own or ch.shared
    elif p.level == 2:
        assert own or (ch.shared and not specific)
    elif p.level == 3:
        assert not extraction
        assert own or (ch.shared and not specific)
        if action is Action.CONTROL:
            assert own or p.id in ch.controllable_by or p.department in ch.controllable_by
    else:
        assert action in (Action.VIEW, Action.SNAPSHOT)
        assert ch.shared and not specific
        assert p.id in ch.shared_with or p.department in ch.shared_with


def _civil(now: float) -> tuple[int, int]:
    t = dt.datetime.fromtimestamp(now, CST)
    return t.month, t.hour * 60 + t.minute
