"""Platform events to an operator's HTTP endpoint: POST JSON, never blocking the caller.

:meth:`Webhook.publish` only puts the event on a bounded queue; one background task POSTs
them in order. A full queue drops the event (counted, logged) rather than growing without
bound when the endpoint is down; a failed POST is logged and the next event is tried.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

__all__ = ["Webhook"]

log = logging.getLogger(__name__)


class Webhook:
    """:param url: where events are POSTed. :param queue: events waiting at most."""

    def __init__(
        self,
        url: str,
        *,
        queue: int = 1000,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._queue: asyncio.Queue[dict[str, object]] = asyncio.Queue(maxsize=queue)
        self._transport = transport
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.dropped = 0
        self.failed = 0

    def publish(self, event: dict[str, object]) -> None:
        """Queue ``event`` for POSTing (drops it when the queue is full)."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("webhook queue full: event dropped (%d so far)", self.dropped)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def drain(self) -> None:
        """Wait until every queued event was tried (tests, shutdown)."""
        await self._queue.join()

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout, transport=self._transport) as client:
            while True:
                event = await self._queue.get()
                try:
                    response = await client.post(self.url, json=event)
                    if response.status_code >= 300:
                        raise httpx.HTTPStatusError(
                            f"status {response.status_code}",
                            request=response.request,
                            response=response,
                        )
                    self.sent += 1
                except httpx.HTTPError as exc:
                    self.failed += 1
                    log.warning("webhook POST to %s failed: %s", self.url, exc)
                finally:
                    self._queue.task_done()
