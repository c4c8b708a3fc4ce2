"""DeadlineTimer: re-arms only on change, never fires early, disarms outside a loop."""

from __future__ import annotations

import asyncio

from gb28181.deadline_timer import DeadlineTimer


async def test_fires_once_at_the_deadline_with_a_time_not_before_it() -> None:
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    timer = DeadlineTimer(fired.append, loop.time)
    deadline = loop.time() + 0.01
    timer.update(deadline)
    timer.update(deadline)  # unchanged: still one handle
    assert timer.deadline == deadline
    await asyncio.sleep(0.05)
    assert len(fired) == 1 and fired[0] >= deadline
    assert timer.deadline is None


async def test_update_replaces_and_none_disarms() -> None:
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    timer = DeadlineTimer(fired.append, loop.time)
    timer.update(loop.time() + 10)
    timer.update(loop.time() + 0.01)
    await asyncio.sleep(0.05)
    assert len(fired) == 1
    timer.update(loop.time() + 0.01)
    timer.update(None)
    await asyncio.sleep(0.05)
    assert len(fired) == 1


def test_outside_a_loop_nothing_is_armed() -> None:
    timer = DeadlineTimer(lambda now: None, lambda: 0.0)
    timer.update(5.0)
    assert timer.deadline is None
    timer.cancel()
