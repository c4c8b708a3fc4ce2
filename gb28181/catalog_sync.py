"""Keeps every device's catalog tree current: full queries, change notifications, persistence.

GB/T 28181-2016 §9.5.2 / notes §4.4-§5. After a device registers (the first time, or again after
being offline) the platform asks for its whole Catalog; the answer, possibly split over many
MESSAGEs, is assembled by the correlator (through :class:`~gb28181.queries.QueryService`) and
applied to the device's :class:`~gb28181.catalog.CatalogTree` in one go. Catalog ``Notify``
messages (MESSAGE, or NOTIFY in a subscription) carry ``Event`` items (ON/OFF/VLOST/DEFECT/
ADD/DEL/UPDATE) applied one by one; an event about a channel we do not know means our tree is
stale, so a full query follows. Devices that support no subscription are polled every
``refresh_interval`` seconds when configured.

The trees live in memory (loaded from the store at start-up); the rows the changes produce go to
the :class:`~gb28181.channel_writer.ChannelWriter`, never to the database on the message path.
Only a complete answer deletes nodes it no longer lists: a partial one (timed out) must not wipe
channels (notes §4.4).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from . import manscdp
from .catalog import CatalogChange, CatalogSync, CatalogTree, CatalogTrees, ChangeKind
from .channel_writer import ChannelWriter
from .correlator import QueryDone
from .queries import QueryError, QueryService
from .store import ChannelRecord

__all__ = ["CatalogListener", "CatalogMetrics", "CatalogService", "SyncListener"]

log = logging.getLogger(__name__)

CatalogListener = Callable[[str, list[CatalogChange], float], None]
"""Called with (device ID, changes, now) after every applied sync or notification."""
SyncListener = Callable[[str, "CatalogSync | None", float], None]
"""Called with (device ID, result or ``None`` when the query failed, now) after every sync."""


class CatalogMetrics(Protocol):
    def catalog_change(self, kind: str, count: int = 1) -> None: ...


class CatalogService:
    """The catalog trees of all devices and the work that keeps them current.

    :param queries: sends Catalog queries and awaits the assembled answer.
    :param writer: persists changed rows in the background.
    :param server_id: our SIP ID (a ParentID equal to it means root).
    :param timeout: seconds a Catalog query may take before what arrived is used (partial).
    :param platform_timeout: the same for lower platforms (ID type 200): tens of thousands of
        items, paced one MESSAGE per 200 OK (notes §9), take minutes; ``None``: ``timeout``.
    :param refresh_interval: seconds between periodic full queries per device; 0 disables.
    :param concurrency: Catalog queries in flight at once (a restart re-registers everyone).
    :param poll_interval: seconds between full queries of devices in :attr:`polled` (those
        that refused a catalog subscription); 0 disables.
    """

    def __init__(
        self,
        queries: QueryService,
        writer: ChannelWriter,
        metrics: CatalogMetrics,
        *,
        server_id: str,
        clock: Callable[[], float] = time.time,
        timeout: float = 60.0,
        platform_timeout: float | None = None,
        refresh_interval: float = 0.0,
        concurrency: int = 64,
        poll_interval: float = 0.0,
    ) -> None:
        self.queries = queries
        self.writer = writer
        self.metrics = metrics
        self.server_id = server_id
        self.clock = clock
        self.timeout = timeout
        self.platform_timeout = platform_timeout
        self.refresh_interval = refresh_interval
        #: Every tree, and the channel index every tree change keeps current.
        self.trees = CatalogTrees()
        #: When each device's catalog was last queried (answered, partial or failed).
        self.last_sync: dict[str, float] = {}
        #: The latest sync result per device: "complete", "partial: ..." or the error.
        self.last_result: dict[str, str] = {}
        self.listeners: list[CatalogListener] = []
        #: Told after every full sync, answered or failed (subscriptions, faults).
        self.sync_listeners: list[SyncListener] = []
        #: Devices polled every ``poll_interval`` (no catalog subscription).
        self.polled: set[str] = set()
        self.poll_interval = poll_interval
        self._syncing: dict[str, asyncio.Task[CatalogSync | None]] = {}
        self._limit = asyncio.Semaphore(concurrency)

    # -- trees ------------------------------------------------------------------------------

    def tree(self, device_id: str) -> CatalogTree:
        """The tree of ``device_id`` (created empty on first use)."""
        tree = self.trees.get(device_id)
        if tree is None:
            tree = self.trees[device_id] = CatalogTree(device_id, self.server_id)
        return tree

    def device_of(self, channel_id: str) -> str | None:
        """The device (or lower platform) whose tree holds ``channel_id``, the most recent
        reporter if several do (:class:`~gb28181.catalog.ChannelIndex`); O(1)."""
        return self.trees.device_of(channel_id)

    def load(self, device_id: str, records: list[ChannelRecord]) -> None:
        """Rebuild a tree from stored rows (start-up)."""
        if records:
            self.tree(device_id).load(records)

    # -- full sync --------------------------------------------------------------------------

    def device_online(self, device_id: str, now: float) -> None:
        """A device registered (first time, or after being offline): query its catalog."""
        self.request_sync(device_id)

    def request_sync(self, device_id: str) -> asyncio.Task[CatalogSync | None]:
        """Start a full Catalog query unless one is already running for ``device_id``."""
        task = self._syncing.get(device_id)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(
                self.sync(device_id), name=f"catalog-{device_id}"
            )
            self._syncing[device_id] = task
            task.add_done_callback(lambda t: self._sync_done(device_id, t))
        return task

    def _sync_done(self, device_id: str, task: asyncio.Task[CatalogSync | None]) -> None:
        if self._syncing.get(device_id) is task:
            del self._syncing[device_id]

    async def sync(self, device_id: str) -> CatalogSync | None:
        """Query the whole catalog and apply it; ``None`` when the query failed (logged)."""
        async with self._limit:
            try:
                done = await self.queries.query(
                    device_id,
                    manscdp.CatalogQuery(device_id=device_id),
                    timeout=self.timeout_of(device_id),
                )
            except QueryError as exc:
                # An attempt counts for the periodic refresh too: retried one interval later.
                self.last_sync[device_id] = self.clock()
                self.last_result[device_id] = f"failed: {exc}"
                log.info("catalog query failed device=%s: %s", device_id, exc)
                self._synced(device_id, None)
                return None
        result = self.apply_answer(device_id, done, self.clock())
        self._synced(device_id, result)
        return result

    def _synced(self, device_id: str, result: CatalogSync | None) -> None:
        now = self.clock()
        for listener in self.sync_listeners:
            try:
                listener(device_id, result, now)
            except Exception:
                log.exception("catalog sync listener failed device=%s", device_id)

    def apply_answer(self, device_id: str, done: QueryDone, now: float) -> CatalogSync:
        """Apply an assembled Catalog answer to the tree and queue the changed rows."""
        tree = self.tree(device_id)
        result = tree.apply_catalog(done.items, now, complete=not done.partial)
        changes = list(result.changes)
        if result.missing:
            changes.extend(tree.remove(result.missing))
        self.last_sync[device_id] = now
        self.last_result[device_id] = f"partial: {done.reason}" if done.partial else "complete"
        self._persist(device_id, tree, changes, now)
        log.info(
            "catalog synced device=%s items=%d changed=%d removed=%d %s",
            device_id,
            len(done.items),
            len(result.changes),
            len(result.missing),
            self.last_result[device_id],
        )
        return result

    def timeout_of(self, device_id: str) -> float:
        """Seconds a full Catalog query of ``device_id`` may take."""
        if self.platform_timeout is not None and device_id[10:13] == "200":
            return self.platform_timeout
        return self.timeout

    def due(self, online: Callable[[str], bool], now: float) -> list[str]:
        """Online devices whose periodic refresh is due: every device each
        ``refresh_interval``, devices in :attr:`polled` each ``poll_interval`` (0 disables)."""
        out = []
        for device_id, at in self.last_sync.items():
            intervals = [self.refresh_interval]
            if device_id in self.polled:
                intervals.append(self.poll_interval)
            enabled = [i for i in intervals if i > 0]
            if not enabled or at > now - min(enabled):
                continue
            if device_id not in self._syncing and online(device_id):
                out.append(device_id)
        return out

    # -- notifications ----------------------------------------------------------------------

    def apply_notify(
        self, device_id: str, message: manscdp.Message, now: float
    ) -> list[CatalogChange]:
        """Apply a Catalog Notify (its ``Event`` items); schedules a full query when the events
        name channels we do not know."""
        items: tuple[manscdp.CatalogItem, ...] = getattr(message, "items", ())
        tree = self.tree(device_id)
        changes = tree.apply_events(items, now)
        self._persist(device_id, tree, changes, now)
        stale = [
            c for c in changes if c.kind is ChangeKind.IGNORED and c.reason == "unknown channel"
        ]
        if stale:
            log.info(
                "catalog event for %d unknown channels device=%s: full query", len(stale), device_id
            )
            self.request_sync(device_id)
        return changes

    # -- shutdown ---------------------------------------------------------------------------

    async def stop(self) -> None:
        """Cancel running syncs."""
        tasks = list(self._syncing.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass

    # -- internals --------------------------------------------------------------------------

    def _persist(
        self, device_id: str, tree: CatalogTree, changes: list[CatalogChange], now: float
    ) -> None:
        if not changes:
            return
        counts: dict[str, int] = {}
        for change in changes:
            counts[change.kind.value] = counts.get(change.kind.value, 0) + 1
        for kind, count in counts.items():
            self.metrics.catalog_change(kind, count)
        removed = [c.channel_id for c in changes if c.kind is ChangeKind.REMOVED]
        if removed:
            self.writer.delete(device_id, removed)
        self.writer.upsert(device_id, tree.records(changes))
        for listener in self.listeners:
            listener(device_id, changes, now)
