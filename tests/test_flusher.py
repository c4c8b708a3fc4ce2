"""PeriodicFlusher: periodic and early flushes, back-off after a failure, final flush."""

from __future__ import annotations

import asyncio

import pytest

from gb28181.flusher import PeriodicFlusher


class Work:
    def __init__(self, fail: int = 0) -> None:
        self.calls = 0
        self.fail = fail

    async def flush(self) -> None:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise RuntimeError("store down")


async def test_flushes_every_interval_and_once_more_on_stop() -> None:
    work = Work()
    f = PeriodicFlusher(work.flush, 0.01, name="t")
    f.start()
    f.start()  # idempotent
    await asyncio.sleep(0.05)
    assert f.running and work.calls >= 2
    before = work.calls
    await f.stop()
    assert not f.running and work.calls == before + 1


async def test_wake_flushes_early_and_more_keeps_going() -> None:
    work = Work()
    backlog = [3]

    async def flush() -> None:
        await work.flush()
        backlog[0] = max(0, backlog[0] - 1)

    f = PeriodicFlusher(flush, 60.0, name="t", more=lambda: backlog[0] > 0)
    f.start()
    f.wake()
    for _ in range(50):
        await asyncio.sleep(0)
    assert work.calls == 3 and backlog[0] == 0  # woken once, then drained the backlog
    await f.stop()


async def test_a_failure_backs_off_and_the_task_survives() -> None:
    work = Work(fail=1)
    f = PeriodicFlusher(work.flush, 0.02, name="t")
    f.start()
    f.wake()
    for _ in range(20):
        await asyncio.sleep(0)
    assert work.calls == 1 and f.backing_off
    f.wake()  # ignored while backing off
    for _ in range(20):
        await asyncio.sleep(0)
    assert work.calls == 1
    await asyncio.sleep(0.05)
    assert work.calls >= 2 and not f.backing_off and f.running
    await f.stop()


async def test_stop_raises_what_the_last_flush_raises() -> None:
    work = Work(fail=1)
    f = PeriodicFlusher(work.flush, 60.0, name="t")
    f.start()
    with pytest.raises(RuntimeError, match="store down"):
        await f.stop()
