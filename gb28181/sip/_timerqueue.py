"""Many deadlines, few distinct durations: O(1) arm, cancel and expiry.

A transaction layer arms one or two timers per message and cancels most of
them early (a response stops the retransmission timer). A binary heap costs
``O(log n)`` per pop and keeps cancelled entries until they surface; but SIP
timers only ever use a handful of durations (T1·2^k, T2, T4, 64·T1...). With
one FIFO per duration, entries armed with a non-decreasing ``now`` come out
of each FIFO in deadline order, so arming is an ``append`` and expiry a
``popleft``. Cancelling marks the entry dead (lazy deletion); dead entries are
dropped when they reach the head. A deadline that would break a FIFO's order
(the caller's clock went backwards) goes to a small fallback heap instead.

An entry is a list ``[deadline, seq, owner, kind, live]``; ``seq`` is unique,
so comparisons never reach ``owner``.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any

__all__ = ["TimerEntry", "TimerQueue"]

#: ``[deadline, seq, owner, kind, live]`` -- see the module docstring.
TimerEntry = list[Any]


class TimerQueue:
    """Deadlines keyed by owner object and timer kind (sans-IO: ``now`` is passed in)."""

    __slots__ = ("_fifos", "_heap", "_seq")

    def __init__(self) -> None:
        self._fifos: dict[float, deque[TimerEntry]] = {}
        self._heap: list[TimerEntry] = []
        self._seq = 0

    def arm(self, now: float, duration: float, owner: object, kind: int) -> TimerEntry:
        """Schedule ``(owner, kind)`` at ``now + duration``; keep the entry to cancel it."""
        deadline = now + duration
        self._seq += 1
        entry: TimerEntry = [deadline, self._seq, owner, kind, True]
        fifo = self._fifos.get(duration)
        if fifo is None:
            fifo = self._fifos[duration] = deque()
        if fifo and fifo[-1][0] > deadline:
            heapq.heappush(self._heap, entry)
        else:
            fifo.append(entry)
        return entry

    @staticmethod
    def cancel(entry: TimerEntry | None) -> None:
        """Cancel an armed entry (harmless if it already fired or was cancelled)."""
        if entry is not None:
            entry[4] = False
            entry[2] = None

    def pop_due(self, now: float) -> list[TimerEntry]:
        """Remove and return the live entries due at ``now``, earliest first.

        Firing one entry may cancel another in the same batch, so callers
        re-check ``entry[4]`` before acting on each.
        """
        due: list[TimerEntry] = []
        for fifo in self._fifos.values():
            while fifo and fifo[0][0] <= now:
                entry = fifo.popleft()
                if entry[4]:
                    due.append(entry)
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if entry[4]:
                due.append(entry)
        if len(due) > 1:
            due.sort(key=_sort_key)
        return due

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or ``None`` when nothing is armed."""
        best: float | None = None
        for fifo in self._fifos.values():
            while fifo and not fifo[0][4]:
                fifo.popleft()
            if fifo and (best is None or fifo[0][0] < best):
                best = fifo[0][0]
        heap = self._heap
        while heap and not heap[0][4]:
            heapq.heappop(heap)
        if heap and (best is None or heap[0][0] < best):
            best = heap[0][0]
        return best

    def __len__(self) -> int:
        """Entries held, live or not yet discarded (for tests and metrics)."""
        return sum(len(f) for f in self._fifos.values()) + len(self._heap)


def _sort_key(entry: TimerEntry) -> tuple[float, int]:
    return entry[0], entry[1]
