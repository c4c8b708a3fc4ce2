"""TimerQueue: FIFO-per-duration deadlines with lazy cancellation."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gb28181.sip._timerqueue import TimerQueue


def test_due_entries_come_out_in_deadline_order() -> None:
    q = TimerQueue()
    a = q.arm(0.0, 4.0, "a", 1)
    b = q.arm(0.0, 0.5, "b", 2)
    c = q.arm(1.0, 0.5, "c", 3)
    assert q.next_deadline() == 0.5
    assert [e[2] for e in q.pop_due(1.5)] == ["b", "c"]
    assert q.next_deadline() == 4.0
    assert q.pop_due(3.9) == []
    assert q.pop_due(4.0) == [a]
    assert q.next_deadline() is None and len(q) == 0
    assert b[4] and c[4]  # the caller marks fired entries itself


def test_cancelled_entries_are_skipped_and_dropped() -> None:
    q = TimerQueue()
    a = q.arm(0.0, 1.0, "a", 1)
    b = q.arm(0.0, 2.0, "b", 1)
    TimerQueue.cancel(a)
    TimerQueue.cancel(None)
    assert a[2] is None  # the owner is released at once
    assert q.next_deadline() == 2.0
    TimerQueue.cancel(b)
    assert q.next_deadline() is None
    assert q.pop_due(10.0) == []


def test_clock_going_backwards_uses_the_heap() -> None:
    q = TimerQueue()
    late = q.arm(10.0, 1.0, "late", 1)
    early = q.arm(5.0, 1.0, "early", 1)  # would break the FIFO's order
    also = q.arm(4.0, 1.0, "also", 1)
    assert q.next_deadline() == 5.0
    assert q.pop_due(6.0) == [also, early]
    TimerQueue.cancel(q.arm(0.0, 1.0, "gone", 1))
    assert q.next_deadline() == 11.0
    assert q.pop_due(11.0) == [late]


@given(st.lists(st.tuples(st.floats(0, 100), st.sampled_from([0.5, 1.0, 4.0, 32.0]))))
def test_matches_a_sorted_list(arms: list[tuple[float, float]]) -> None:
    q = TimerQueue()
    now = 0.0
    expected = []
    for i, (step, duration) in enumerate(arms):
        now += step / 10
        q.arm(now, duration, i, 0)
        expected.append((now + duration, i))
    expected.sort()
    got = [(e[0], e[2]) for e in q.pop_due(float("inf"))]
    assert got == expected
