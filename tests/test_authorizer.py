"""The enforcement point: decisions with channel facts from the catalog, grants, control
arbitration with notices to the pre-empted, and an audit record for every decision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from authz import (
    Action,
    ArbitrationError,
    ArbitrationOutcome,
    ChannelInfo,
    ControlPreempted,
    GrantKind,
    GrantNotAuthorised,
    Policy,
    Principal,
    PrincipalKind,
    Scope,
)
from gb28181.authorizer import (
    AuthorizationDenied,
    Authorizer,
    CatalogFacts,
    grant_from_json,
    grant_to_json,
    warning_header,
)
from gb28181.catalog import CatalogTree, CatalogTrees
from gb28181.manscdp import CatalogItem
from gb28181.store import ChannelRecord

T0 = 1_750_000_000.0
OPEN = "34020000001320000001"  # shared, class 0, owned by traffic
SECRET = "34020000001320000002"  # shared, specific area (class 3)
PRIVATE = "34020000001320000003"  # unshared, owned by traffic


def user(pid: str, level: int, department: str = "police", **kw: Any) -> Principal:
    return Principal(pid, PrincipalKind.USER, department, level, **kw)


@dataclass
class Recorder:
    records: list[dict[str, Any]] = field(default_factory=list)

    def record(self, action: str, target: str, outcome: str, **kw: Any) -> None:
        self.records.append({"action": action, "target": target, "outcome": outcome, **kw})


FACTS = {
    OPEN: ChannelInfo(OPEN, "traffic", 0, shared=True),
    SECRET: ChannelInfo(SECRET, "traffic", 3, shared=True),
    PRIVATE: ChannelInfo(PRIVATE, "traffic", 0, shared=False),
}


def make() -> tuple[Authorizer, Recorder]:
    audit = Recorder()
    return Authorizer(Policy(), FACTS.get, audit=audit, clock=lambda: T0), audit


def test_decide_audits_allowed_and_refused_with_rule_and_source() -> None:
    authz, audit = make()
    l4 = user("u4", 4)
    d = authz.decide(l4, Action.VIEW, SECRET, source="192.0.2.9:5000")
    assert not d.allow and d.rule == "L4-specific-area"
    assert authz.decide(user("u1", 1), Action.VIEW, SECRET).allow
    first, second = audit.records
    assert first["action"] == "authz.view" and first["outcome"] == "deny"
    assert first["principal_id"] == "u4" and first["level"] == 4
    assert first["department"] == "police" and first["rule"] == "L4-specific-area"
    assert first["source"] == "192.0.2.9:5000" and first["time"] == T0
    assert second["outcome"] == "allow"


def test_unknown_channel_is_refused_and_check_raises() -> None:
    authz, audit = make()
    d = authz.decide(user("u1", 1), Action.VIEW, "34020000001320000099")
    assert not d.allow and d.rule == "unknown-channel"
    with pytest.raises(AuthorizationDenied) as info:
        authz.check(user("u4", 4), Action.PLAYBACK, OPEN)
    assert info.value.status == 403 and info.value.rule == "L4-no-extraction"
    assert len(audit.records) == 2


def test_visible_filters_without_audit() -> None:
    authz, audit = make()
    ids = [OPEN, SECRET, PRIVATE, "unknown"]
    assert authz.visible(user("u2", 2), ids) == [OPEN]
    assert authz.visible(user("u2", 2, "traffic"), ids) == [OPEN, SECRET, PRIVATE]
    assert authz.visible(user("u1", 1), ids) == [OPEN, SECRET]
    assert audit.records == []


def test_warning_header_escapes_quotes() -> None:
    authz, _ = make()
    d = authz.decide(user("u4", 4), Action.VIEW, SECRET)
    assert warning_header(d, "10.0.0.1") == (
        '399 10.0.0.1 "L4-specific-area: level 4 excludes specific areas"'
    )
    denied = AuthorizationDenied('say "no"', "r")
    assert warning_header(denied, "h") == '399 h "r: say \\"no\\""'


def test_preemption_tells_the_loser_on_its_next_command() -> None:
    authz, audit = make()
    told: list[ControlPreempted] = []
    authz.on_preempted.append(told.append)
    low, high = user("u2", 2), user("u1", 1, "emergency")
    assert authz.control(low, OPEN, now=T0).outcome is ArbitrationOutcome.GRANTED
    r = authz.control(high, OPEN, now=T0 + 1)
    assert r.outcome is ArbitrationOutcome.PREEMPTED and r.rule == "preempt-higher-level"
    assert told and told[0].loser.holder_id == "u2"
    with pytest.raises(AuthorizationDenied) as info:
        authz.require_control(low, OPEN, now=T0 + 2)
    assert info.value.status == 409
    assert info.value.rule == "preempt-higher-level"
    assert "control taken by u1 (level 1)" in info.value.reason
    # Told once: the next refusal names the holder's standing.
    again = authz.control(low, OPEN, now=T0 + 3)
    assert again.rule == "held-higher-level" and again.remaining > 0
    actions = [r["action"] for r in audit.records]
    assert "control.preempted" in actions and "control.refused" in actions


def test_control_refused_by_policy_raises_403() -> None:
    authz, _ = make()
    with pytest.raises(AuthorizationDenied) as info:
        authz.control(user("u4", 4), OPEN)
    assert info.value.status == 403 and info.value.rule == "L4-no-control"


def test_control_period_refuses_lower_levels_with_remaining_time() -> None:
    authz, audit = make()
    l1, l2 = user("u1", 1), user("u2", 2)
    session = authz.set_control_period(l1, OPEN, 600, now=T0)
    assert session.period_until == T0 + 600
    with pytest.raises(AuthorizationDenied) as info:
        authz.require_control(l2, OPEN, now=T0 + 100)
    assert info.value.status == 409 and info.value.rule == "control-period"
    assert info.value.remaining == 500
    with pytest.raises(ArbitrationError):
        authz.set_control_period(user("u1b", 2, "traffic"), PRIVATE, 60, now=T0)
    assert authz.holder(OPEN, now=T0 + 1) is not None
    assert authz.release(l1, OPEN, now=T0 + 2) and authz.holder(OPEN, now=T0 + 3) is None
    assert any(r["action"] == "control.period" for r in audit.records)


def test_inactivity_expiry_is_audited() -> None:
    authz, audit = make()
    authz.control(user("u2", 2), OPEN, now=T0)
    authz.tick(T0 + 31)
    assert authz.holder(OPEN, now=T0 + 31) is None
    assert audit.records[-1]["action"] == "control.expire"


def test_grants_widen_then_expire_by_themselves() -> None:
    authz, audit = make()
    l4, manager = user("u4", 4, "water"), user("em", 1, "emergency", is_emergency_manager=True)
    grant = authz.apply_grant(
        l4, kind=GrantKind.EMERGENCY_ACCESS, target=Scope(channel_ids=frozenset({OPEN})),
        reason="flood", now=T0,
    )  # fmt: skip
    assert grant.department == "water" and not authz.decide(l4, Action.VIEW, OPEN, now=T0).allow
    with pytest.raises(GrantNotAuthorised):
        authz.decide_grant(grant.id, "approve", l4, valid_for=60, now=T0)
    authz.decide_grant(grant.id, "approve", manager, valid_for=60, now=T0 + 1)
    d = authz.decide(l4, Action.VIEW, OPEN, now=T0 + 2)
    assert d.allow and d.rule == "grant-emergency-access"
    changed: list[Any] = []
    authz.on_grant_changed.append(changed.append)
    authz.tick(T0 + 62)
    assert not authz.decide(l4, Action.VIEW, OPEN, now=T0 + 62).allow
    assert changed and changed[0].state.value == "expired"
    actions = [r["action"] for r in audit.records]
    for expected in ("grant.apply", "grant.approve", "grant.expire"):
        assert expected in actions
    denied = [r for r in audit.records if r["action"] == "grant.approve" and r["outcome"] == "deny"]
    assert denied and denied[0]["rule"] == "GrantNotAuthorised"


def test_level_change_grant_counts_for_arbitration() -> None:
    authz, _ = make()
    l2, l2b = user("a", 2), user("b", 2, "fire")
    manager = user("em", 1, "emergency", is_emergency_manager=True)
    g = authz.apply_grant(
        l2b, kind=GrantKind.LEVEL_CHANGE, target=Scope.everything(), level=1, reason="typhoon",
        now=T0,
    )  # fmt: skip
    authz.decide_grant(g.id, "approve", manager, valid_for=3600, now=T0)
    authz.control(l2, OPEN, now=T0)
    assert authz.control(l2b, OPEN, now=T0 + 1).outcome is ArbitrationOutcome.PREEMPTED


def test_grant_json_round_trip() -> None:
    authz, _ = make()
    g = authz.apply_grant(
        user("u3", 3), kind=GrantKind.PERMISSION_CHANGE, reason="x", now=T0,
        target=Scope(prefixes=("3402",), channel_ids=frozenset({OPEN})),
        actions=frozenset({Action.PLAYBACK, Action.VIEW}),
    )  # fmt: skip
    assert grant_from_json(grant_to_json(g)) == g
    approved = authz.decide_grant(
        g.id, "approve", user("em", 1, "e", is_emergency_manager=True), valid_for=5, now=T0
    )
    assert grant_from_json(grant_to_json(approved)) == approved
    with pytest.raises(ValueError):
        grant_from_json({"id": "x"})


def _tree(device_id: str, *rows: tuple[str, int, str | None, bool]) -> CatalogTree:
    tree = CatalogTree(device_id)
    tree.load(
        ChannelRecord(device_id, c, security_class=k, owner_department=o, shared=s, updated_at=1.0)
        for c, k, o, s in rows
    )
    return tree


def test_catalog_facts_from_trees_devices_and_acl() -> None:
    trees = CatalogTrees(
        {"dev1": _tree("dev1", ("dev1", 9, "x", True), (OPEN, 2, "traffic", True))}
    )
    facts = CatalogFacts(trees, is_device=lambda i: i == "ipc1")
    info = facts(OPEN)
    assert info == ChannelInfo(OPEN, "traffic", 2, shared=True)
    assert facts("dev1") == ChannelInfo("dev1", "x", 9, shared=True)  # an IPC's own node
    assert facts("ipc1") == ChannelInfo("ipc1", "", 0, shared=False)
    assert facts("nothing") is None
    facts.set_acl(OPEN, ["water"], ["fire"])
    info = facts(OPEN)
    assert info is not None and info.shared_with == {"water"} and info.controllable_by == {"fire"}
    facts.set_acl(OPEN, [], [])
    assert OPEN not in facts.acl


def test_catalog_facts_follow_the_catalog_index_live() -> None:
    trees = CatalogTrees({"nvr1": _tree("nvr1", (OPEN, 2, "traffic", True))})
    facts = CatalogFacts(trees)
    assert facts(OPEN) == ChannelInfo(OPEN, "traffic", 2, shared=True)
    # The camera moved: the NVR that reported it last carries its attributes.
    trees["nvr2"] = _tree("nvr2")
    trees["nvr2"].apply_catalog([CatalogItem(device_id=OPEN, name="moved")], 5.0)
    assert facts(OPEN) == ChannelInfo(OPEN, "", 0, shared=False)
    trees["nvr2"].apply_event(CatalogItem(device_id=OPEN, event="DEL"), 6.0)
    assert facts(OPEN) == ChannelInfo(OPEN, "traffic", 2, shared=True)
    del trees["nvr1"]
    assert facts(OPEN) is None
