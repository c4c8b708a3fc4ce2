"""One background task that writes queued work every few seconds.

Several services keep changes in memory and write them in batches (device
state, channels, faults, the audit trail): the per-message path only
queues, and a background task does the I/O. This is that task, written once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["PeriodicFlusher"]

log = logging.getLogger(__name__)


class PeriodicFlusher:
    """Calls the async ``flush`` every ``interval`` seconds in a background task.

    * :meth:`wake` asks for a flush now (a batch filled up), except while
      backing off after a failed flush: a failure waits one full interval,
      so a store that is down is not hammered.
    * ``more()``, asked after a successful flush, says a full batch is still
      waiting, so the next flush starts at once.
    * :meth:`stop` ends the task (a flush in progress finishes) and flushes
      once more, raising what that last flush raises.

    The owner's ``flush`` counts and logs its own failures and keeps what it
    could not write; this task survives any exception, since its death would
    silently stop persistence.
    """

    def __init__(
        self,
        flush: Callable[[], Awaitable[None]],
        interval: float,
        *,
        name: str,
        more: Callable[[], bool] = lambda: False,
    ) -> None:
        self._flush = flush
        self.interval = interval
        self.name = name
        self._more = more
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.backing_off = False

    @property
    def running(self) -> bool:
        """Whether the background task is running."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the task on the running event loop. Idempotent."""
        if self.running:
            return
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    def wake(self) -> None:
        """Flush soon rather than at the next interval (unless backing off)."""
        if not self.backing_off:
            self._wake.set()

    async def stop(self) -> None:
        """Stop the task, then flush what is left (its error propagates)."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._wake.set()
            await task
        await self._flush()

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self._flush()
            except Exception:
                log.debug("%s: flush failed; retrying after %.1f s", self.name, self.interval)
                self.backing_off = True
                continue
            self.backing_off = False
            if self._more():
                self._wake.set()
