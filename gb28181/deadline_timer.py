"""One asyncio timer that follows a sans-IO object's ``get_timer()`` deadline.

The sans-IO cores (transaction layer, query correlator...) expose a single
absolute deadline; the glue arms one loop timer for it and re-arms only when
the deadline changes (the aioquic pattern, style guide §6). This is that
glue, written once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["DeadlineTimer"]


class DeadlineTimer:
    """Calls ``fire(now)`` once the deadline passed to :meth:`update` is reached.

    ``now`` is never earlier than the deadline that was armed, so the sans-IO
    object always sees its timer as due.

    :param fire: called with the current time when the deadline is reached.
    :param clock: the clock the deadlines are expressed in.
    """

    __slots__ = ("_at", "_handle", "clock", "fire")

    def __init__(self, fire: Callable[[float], None], clock: Callable[[], float]) -> None:
        self.fire = fire
        self.clock = clock
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None

    @property
    def deadline(self) -> float | None:
        """The deadline currently armed, if any."""
        return self._at

    def update(self, deadline: float | None) -> None:
        """Arm for ``deadline`` (``None`` disarms); a no-op when unchanged.

        Outside a running event loop (sans-IO tests) nothing is armed.
        """
        if deadline == self._at:
            return
        self.cancel()
        if deadline is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._at = deadline
        self._handle = loop.call_later(max(0.0, deadline - self.clock()), self._expired, deadline)

    def cancel(self) -> None:
        """Disarm."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._at = None

    def _expired(self, deadline: float) -> None:
        self._handle = None
        self._at = None
        self.fire(max(self.clock(), deadline))
