"""Control arbitration: pre-emption, equal-level tie-breaks, control periods, expiry."""

from __future__ import annotations

import pytest

from authz import (
    ArbiterConfig,
    ArbitrationError,
    ArbitrationOutcome,
    ChannelInfo,
    ControlArbiter,
    ControlExpired,
    ControlPreempted,
    Principal,
    PrincipalKind,
)

CAM = ChannelInfo("37020200001320000001", "traffic", shared=True)


def who(pid: str, level: int, dept: str = "other", **kw: bool) -> Principal:
    return Principal(pid, PrincipalKind.USER, dept, level, **kw)  # type: ignore[arg-type]


def test_free_channel_is_granted_and_renewed() -> None:
    arb = ControlArbiter()
    a = who("a", 2)
    r = arb.request(a, CAM, 0.0)
    assert r.outcome is ArbitrationOutcome.GRANTED and r.granted
    assert r.session.holder_id == "a"
    r = arb.request(a, CAM, 10.0)
    assert r.outcome is ArbitrationOutcome.RENEWED
    assert arb.get_timer() == 40.0
    holder = arb.holder(CAM.channel_id, 39.0)
    assert holder is not None and holder.holder_id == "a"


def test_higher_level_preempts() -> None:
    arb = ControlArbiter()
    low, high = who("low", 3), who("high", 1)
    arb.request(low, CAM, 0.0)
    r = arb.request(high, CAM, 1.0)
    assert r.outcome is ArbitrationOutcome.PREEMPTED
    assert r.rule == "preempt-higher-level"
    assert r.preempted is not None and r.preempted.holder_id == "low"
    event = arb.next_event()
    assert isinstance(event, ControlPreempted)
    assert (event.loser.holder_id, event.winner.holder_id, event.at) == ("low", "high", 1.0)
    assert arb.next_event() is None
    # The lower level is now refused, with the time left on the holder's session.
    r = arb.request(low, CAM, 5.0)
    assert r.outcome is ArbitrationOutcome.REFUSED and not r.granted
    assert r.rule == "held-higher-level"
    assert r.remaining == pytest.approx(26.0)


def test_equal_level_emergency_then_relevance_then_first_come() -> None:
    arb = ControlArbiter()
    first = who("first", 2)
    second = who("second", 2)
    arb.request(first, CAM, 0.0)
    r = arb.request(second, CAM, 1.0)
    assert (r.outcome, r.rule) == (ArbitrationOutcome.REFUSED, "held-first-come")
    # Relevance: the camera's own department beats an unrelated one.
    owner = who("owner", 2, dept="traffic")
    r = arb.request(owner, CAM, 2.0)
    assert (r.outcome, r.rule) == (ArbitrationOutcome.PREEMPTED, "preempt-relevance")
    r = arb.request(first, CAM, 3.0)
    assert (r.outcome, r.rule) == (ArbitrationOutcome.REFUSED, "held-relevance")
    # Emergency beats relevance.
    r = arb.request(second, CAM, 4.0, emergency=True)
    assert (r.outcome, r.rule) == (ArbitrationOutcome.PREEMPTED, "preempt-emergency")
    assert r.session.emergency
    r = arb.request(owner, CAM, 5.0)
    assert (r.outcome, r.rule) == (ArbitrationOutcome.REFUSED, "held-emergency")
    # A principal flagged for emergency work counts as an emergency request.
    r = arb.request(who("e", 2, dept="traffic", emergency=True), CAM, 6.0)
    assert r.outcome is ArbitrationOutcome.PREEMPTED  # emergency and relevant beats emergency


def test_lower_level_never_preempts_even_in_emergency() -> None:
    arb = ControlArbiter()
    arb.request(who("l1", 1), CAM, 0.0)
    r = arb.request(who("l2", 2, dept="traffic"), CAM, 1.0, emergency=True)
    assert r.rule == "held-higher-level"


def test_effective_level_overrides() -> None:
    arb = ControlArbiter()
    arb.request(who("a", 2), CAM, 0.0)
    r = arb.request(who("b", 3), CAM, 1.0, level=1)
    assert r.outcome is ArbitrationOutcome.PREEMPTED and r.session.level == 1


def test_control_period_holds_off_lower_levels() -> None:
    arb = ControlArbiter()
    leader = who("leader", 1)
    arb.request(leader, CAM, 0.0)
    session = arb.set_control_period(leader, CAM.channel_id, until=600.0, now=0.0)
    assert session.period_until == 600.0
    r = arb.request(who("dept", 2, dept="traffic"), CAM, 100.0, emergency=True)
    assert (r.outcome, r.rule) == (ArbitrationOutcome.REFUSED, "control-period")
    assert r.remaining == pytest.approx(500.0)
    # The session survives inactivity until the period ends.
    assert arb.get_timer() == 600.0
    arb.handle_timer(599.0)
    assert arb.holder(CAM.channel_id, 599.0) is not None
    # Another level 1 with an emergency still competes normally.
    r = arb.request(who("police", 1), CAM, 200.0, emergency=True)
    assert r.outcome is ArbitrationOutcome.PREEMPTED


def test_control_period_rules() -> None:
    arb = ControlArbiter(ArbiterConfig(max_control_period=100.0))
    leader, deputy = who("leader", 1), who("deputy", 2)
    with pytest.raises(ArbitrationError):
        arb.set_control_period(leader, CAM.channel_id, 50.0, 0.0)  # holds nothing
    arb.request(deputy, CAM, 0.0)
    with pytest.raises(ArbitrationError):
        arb.set_control_period(deputy, CAM.channel_id, 50.0, 0.0)  # not level 1
    arb.request(leader, CAM, 0.0)
    with pytest.raises(ArbitrationError):
        arb.set_control_period(leader, CAM.channel_id, 0.0, 0.0)
    with pytest.raises(ArbitrationError):
        arb.set_control_period(leader, CAM.channel_id, 101.0, 0.0)
    assert arb.set_control_period(leader, CAM.channel_id, 100.0, 0.0).period_until == 100.0


def test_inactivity_expiry_with_injected_time() -> None:
    arb = ControlArbiter(ArbiterConfig(inactivity_timeout=30.0))
    a = who("a", 3)
    arb.request(a, CAM, 0.0)
    arb.request(a, CAM, 20.0)
    assert arb.get_timer() == 50.0
    arb.handle_timer(49.9)
    assert arb.next_event() is None
    arb.handle_timer(50.0)
    event = arb.next_event()
    assert isinstance(event, ControlExpired) and event.session.holder_id == "a"
    assert arb.get_timer() is None
    assert arb.holder(CAM.channel_id, 50.0) is None


def test_expired_session_is_replaced_on_request_without_timer() -> None:
    arb = ControlArbiter()
    arb.request(who("high", 1), CAM, 0.0)
    assert arb.holder(CAM.channel_id, 30.0) is None
    r = arb.request(who("low", 4), CAM, 31.0)
    assert r.outcome is ArbitrationOutcome.GRANTED
    assert isinstance(arb.next_event(), ControlExpired)


def test_release() -> None:
    arb = ControlArbiter()
    a, b = who("a", 2), who("b", 2)
    arb.request(a, CAM, 0.0)
    assert not arb.release(b, CAM.channel_id, 1.0)
    assert arb.release(a, CAM.channel_id, 1.0)
    assert not arb.release(a, CAM.channel_id, 1.0)
    assert arb.request(b, CAM, 2.0).outcome is ArbitrationOutcome.GRANTED
