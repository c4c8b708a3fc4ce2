"""GrantBook: the 第十八条 state machine, authority to approve, expiry by time."""

from __future__ import annotations

import pytest

from authz import (
    Action,
    GrantBook,
    GrantExpired,
    GrantKind,
    GrantNotAuthorised,
    GrantState,
    GrantStateError,
    Principal,
    PrincipalKind,
    Scope,
    UnknownGrant,
)

MANAGER = Principal("mgr", PrincipalKind.USER, "emergency", 2, is_emergency_manager=True)
LEADER = Principal("leader", PrincipalKind.USER, "city", 1)
CLERK = Principal("clerk", PrincipalKind.USER, "water", 3)
ALL = Scope.everything()


def apply(book: GrantBook, **kw: object) -> str:
    fields: dict[str, object] = {
        "kind": GrantKind.EMERGENCY_ACCESS,
        "target": ALL,
        "requested_by": "clerk",
        "reason": "flood",
        "now": 0.0,
        "department": "water",
    }
    fields.update(kw)
    return book.apply(**fields).id  # type: ignore[arg-type]


def test_apply_approve_expire() -> None:
    book = GrantBook()
    gid = apply(book)
    grant = book.get(gid)
    assert grant.state is GrantState.PENDING
    assert grant.actions == frozenset({Action.VIEW, Action.SNAPSHOT})
    assert book.active_for(CLERK, 1.0) == ()
    assert book.get_timer() is None
    approved = book.approve(gid, MANAGER, 10.0, 100.0)
    assert approved.state is GrantState.APPROVED
    assert (approved.approved_by, approved.valid_from, approved.valid_to) == ("mgr", 10.0, 110.0)
    assert book.active_for(CLERK, 50.0) == (approved,)
    assert book.active_for(CLERK, 110.0) == ()  # ends by itself, before any timer
    assert book.get_timer() == 110.0
    book.handle_timer(109.0)
    assert book.next_event() is None
    book.handle_timer(110.0)
    event = book.next_event()
    assert isinstance(event, GrantExpired) and event.at == 110.0
    assert event.grant.state is GrantState.EXPIRED
    assert book.get(gid).state is GrantState.EXPIRED
    assert book.get_timer() is None
    assert len(book) == 1 and [g.id for g in book] == [gid]


def test_level1_may_approve_and_others_may_not() -> None:
    book = GrantBook()
    gid = apply(book)
    with pytest.raises(GrantNotAuthorised):
        book.approve(gid, CLERK, 0.0, 10.0)
    expired_mgr = Principal("m2", PrincipalKind.USER, "e", 2, is_emergency_manager=True, valid_to=1)
    with pytest.raises(GrantNotAuthorised):
        book.approve(gid, expired_mgr, 5.0, 10.0)
    assert book.approve(gid, LEADER, 0.0, 10.0).approved_by == "leader"


def test_no_self_approval() -> None:
    book = GrantBook()
    gid = apply(book, requested_by="mgr")
    with pytest.raises(GrantNotAuthorised):
        book.approve(gid, MANAGER, 0.0, 10.0)


def test_refuse_and_illegal_moves() -> None:
    book = GrantBook()
    gid = apply(book)
    refused = book.refuse(gid, MANAGER, 1.0, "not an emergency")
    assert refused.state is GrantState.REFUSED and refused.note == "not an emergency"
    with pytest.raises(GrantStateError):
        book.approve(gid, MANAGER, 2.0, 10.0)
    with pytest.raises(GrantStateError):
        book.revoke(gid, MANAGER, 2.0)
    with pytest.raises(UnknownGrant):
        book.get("nope")


def test_revoke() -> None:
    book = GrantBook()
    gid = apply(book)
    book.approve(gid, MANAGER, 0.0, 100.0)
    with pytest.raises(GrantNotAuthorised):
        book.revoke(gid, Principal("x", PrincipalKind.USER, "y", 4), 5.0)
    revoked = book.revoke(gid, MANAGER, 5.0, "over")
    assert revoked.state is GrantState.REVOKED and revoked.valid_to == 5.0
    assert book.active_for(CLERK, 6.0) == ()
    # The requester may withdraw a pending application.
    gid2 = apply(book)
    assert book.revoke(gid2, CLERK, 1.0).state is GrantState.REVOKED


@pytest.mark.parametrize(
    "kw",
    [
        {"department": None},
        {"principal_id": "p"},
        {"kind": GrantKind.LEVEL_CHANGE},
        {"kind": GrantKind.LEVEL_CHANGE, "level": 5},
        {"level": 1},
        {"kind": GrantKind.PERMISSION_CHANGE},
    ],
)
def test_malformed_applications(kw: dict[str, object]) -> None:
    with pytest.raises(GrantStateError):
        apply(GrantBook(), **kw)


def test_ids_and_durations() -> None:
    book = GrantBook(max_valid_for=60.0)
    apply(book, grant_id="g2")
    assert apply(book) == "g1"
    assert apply(book) == "g3"
    with pytest.raises(GrantStateError):
        apply(book, grant_id="g1")
    with pytest.raises(GrantStateError):
        book.approve("g1", MANAGER, 0.0, 61.0)
    with pytest.raises(GrantStateError):
        book.approve("g1", MANAGER, 0.0, 0.0)
    assert book.approve("g1", MANAGER, 0.0, 60.0).valid_to == 60.0


def test_active_for_principal_and_department() -> None:
    book = GrantBook()
    a = apply(book, department=None, principal_id="clerk")
    b = apply(book)
    c = apply(book, department="other")
    for gid in (a, b, c):
        book.approve(gid, MANAGER, 0.0, 10.0)
    assert {g.id for g in book.active_for(CLERK, 1.0)} == {a, b}
