"""Recording service: which channels record, the segment index, retention and the disk quota.

Policy. A channel records while at least one reason holds: it is listed in ``[recording]
always``, the civil time is inside one of its ``schedules`` windows, or an operator asked for it
through the API (optionally for a duration). :meth:`RecordingService.tick` (every second)
compares the wanted set with the running one, starts and stops recordings, and restarts one
whose live session ended (device BYE, no media) after a back-off. On-demand requests are kept
in the store (channel, end time, who asked) from the request to its ``DELETE`` or the end of
its duration, so that they resume at the next start as the configured ones do.

Recording is a consumer of the live relay: :meth:`CallService.play` with an output to the
recorder's loopback UDP port (:class:`media.recorder.Recorder`), so a recorded channel being
watched is still one camera stream. Stopping is :meth:`CallService.leave` for that consumer.

Index. The recorder reports each segment as it opens and closes (on its thread; the events are
queued onto the loop and written in order by one task). An ``open`` row is written when a
segment starts, so a crash always leaves a row to reconcile; the close rewrites it with size,
key frames and SHA-256. If storage is down the row writes are retried, then given up with a log
line: start-up reconciliation indexes any file without a row.

Start-up reconciliation (:meth:`reconcile`), before recording resumes: open rows are rebuilt
from their files (:func:`media.segments.scan_segment`; a partial trailing pack is truncated off
the file) and marked ``recovered``; closed rows whose file size differs are rebuilt the same way;
rows whose file is gone are removed (logged and audited); files without a row are indexed.

Retention and quota (:meth:`sweep`, every ``check_interval``): a segment is deleted (file
unlinked, row removed, ``recording.delete`` audited; nothing can bring it back) once it ended
more than its channel's retention (per security class, default 30 days) ago. Past
``quota_bytes`` the oldest closed segments are deleted until the total is back under the quota,
and a ``recording_quota`` fault is raised (cleared when a sweep finds the disk under quota
without deleting).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import dataclasses
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from media.recorder import Recorder, RecorderError, SegmentClosed, SegmentOpened
from media.segments import SegmentInfo, scan_segment

from .audit import AuditLog
from .calls import CallError
from .store import RecordingRequest, RecordingRow, Store, StoreError

__all__ = [
    "ReconcileReport",
    "RecordingError",
    "RecordingPolicy",
    "RecordingService",
]

log = logging.getLogger(__name__)

DAY = 86400.0
#: Seconds between policy checks (and checks of the live sessions recordings ride on).
TICK = 1.0
#: Restart back-off after a failed or ended recording: first, doubling up to the maximum.
RETRY_FIRST = 5.0
RETRY_MAX = 60.0
#: Attempts (one second apart) at writing one index row before giving up on it.
ROW_ATTEMPTS = 5
_PAGE = 1000
_NAME = re.compile(r"^(?P<channel>[^/]+)/(?P<day>\d{8})/(?P=channel)_(?P<ms>\d+)\.ps$")
_DAY = re.compile(r"^(?P<channel>[^/]+)/(?P<day>\d{8})$")
_FAR_FUTURE = 1e13


class RecordingError(Exception):
    """A recording request cannot be done; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


class _Calls(Protocol):
    async def play(
        self, channel_id: str, output: tuple[str, int, str] | None = None
    ) -> tuple[Any, Any]: ...

    def leave(self, session_id: str, consumer_id: int) -> None: ...


class _Faults(Protocol):
    def raise_fault(
        self, device_id: str, channel_id: str, kind: str, cause: str, now: float
    ) -> object: ...

    def clear(self, device_id: str, channel_id: str, kinds: Iterable[str], now: float) -> None: ...


@dataclass(frozen=True, slots=True)
class RecordingPolicy:
    """What to record and how long to keep it (from ``[recording]``)."""

    segment_seconds: float = 60.0
    retention_days: float = 30.0
    retention_by_class: dict[int, float] = field(default_factory=dict)
    quota_bytes: int = 0
    always: tuple[str, ...] = ()
    #: ``{channel: ((start minute, end minute), ...)}`` in civil time.
    schedules: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    utc_offset: int = 8 * 3600
    check_interval: float = 30.0

    def retention(self, security_class: int) -> float:
        """Seconds a segment of that class is kept."""
        return self.retention_by_class.get(security_class, self.retention_days) * DAY

    def scheduled(self, channel_id: str, now: float) -> bool:
        """Whether ``now`` falls in one of the channel's windows (a window may cross midnight)."""
        windows = self.schedules.get(channel_id)
        if not windows:
            return False
        minute = int(((now + self.utc_offset) % DAY) // 60)
        for first, last in windows:
            if first <= last:
                if first <= minute < last:
                    return True
            elif minute >= first or minute < last:
                return True
        return False


@dataclass(slots=True)
class ReconcileReport:
    """What start-up reconciliation did (counts)."""

    recovered: int = 0
    truncated: int = 0
    removed_rows: int = 0
    indexed_files: int = 0
    empty_removed: int = 0


@dataclass(eq=False)
class _Active:
    """One channel being recorded (or waiting to restart)."""

    channel_id: str
    reasons: set[str] = field(default_factory=set)
    until: float | None = None
    stream_id: int | None = None
    session: Any = None
    consumer_id: int | None = None
    state: str = "starting"
    started_at: float | None = None
    retry_at: float = 0.0
    backoff: float = RETRY_FIRST
    last_error: str | None = None
    segment: str | None = None


class RecordingService:
    """Records channels through the live relay and keeps the segment index.

    :param store: the index.
    :param calls: live play (``play(channel, output)``, ``leave(session, consumer)``).
    :param recorder: the recording thread (this service starts and stops it).
    :param security_class: a channel's security class (0 when unknown).
    :param faults: raises the quota fault; ``alarm_device`` is the ID it is raised against.
    """

    def __init__(
        self,
        store: Store,
        calls: _Calls,
        recorder: Recorder,
        policy: RecordingPolicy,
        *,
        security_class: Callable[[str], int] = lambda channel_id: 0,
        audit: AuditLog | None = None,
        faults: _Faults | None = None,
        alarm_device: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.calls = calls
        self.recorder = recorder
        self.root = recorder.root
        self.policy = policy
        self.security_class = security_class
        self.audit = audit
        self.faults = faults
        self.alarm_device = alarm_device
        self.clock = clock
        self.active: dict[str, _Active] = {}
        self._open_rows: dict[str, RecordingRow] = {}
        self._events: asyncio.Queue[tuple[str, SegmentOpened | SegmentClosed]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._swept_at: float | None = None
        self._quota_fault = False
        # Serialises the stored on-demand requests with their in-memory reasons (both change
        # across an await).
        self._requests = asyncio.Lock()
        self.deleted = 0
        self.row_failures = 0

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> ReconcileReport:
        """Reconcile the index with the disk, then start the recorder and the policy loop.

        The root directory is created by the first segment, not here: a platform that never
        records leaves no directory behind.
        """
        report = await self.reconcile()
        await self.restore_requests()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, SegmentOpened | SegmentClosed]] = asyncio.Queue()
        self._events = events

        def on_event(stream_id: int, channel_id: str, event: SegmentOpened | SegmentClosed) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (channel_id, event))

        self.recorder.on_event = on_event
        self.recorder.start()
        self._tasks = [
            asyncio.create_task(self._write_rows(), name="recording-index"),
            asyncio.create_task(self._run(), name="recording-policy"),
        ]
        return report

    async def stop(self) -> None:
        """Stop every recording (segments closed and fsynced, rows written), then the recorder."""
        for task in self._tasks[1:]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for active in list(self.active.values()):
            await self._stop(active, "shutdown")
        self.active.clear()
        await asyncio.to_thread(self.recorder.stop)
        if self._events is not None:
            await asyncio.sleep(0)
            await self._events.join()
        for task in self._tasks[:1]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # -- on demand (API) ---------------------------------------------------------------------

    async def record(
        self, channel_id: str, duration: float | None = None, *, principal_id: str = ""
    ) -> dict[str, Any]:
        """Record ``channel_id`` now, for ``duration`` seconds or until :meth:`stop_recording`.

        The request is stored first (it resumes after a restart) and forgotten if the
        recording cannot start.

        :raises RecordingError: 503 the request cannot be stored; the live stream cannot be had
            (status from the call).
        """
        now = self.clock()
        until = None if duration is None else now + duration
        async with self._requests:
            try:
                await self.store.put_recording_request(
                    RecordingRequest(channel_id, until, principal_id, now)
                )
            except StoreError as exc:
                log.error("on-demand recording of %s not stored: %s", channel_id, exc)
                raise RecordingError(503, "store", f"request not stored: {exc}") from None
            active = self.active.get(channel_id)
            if active is None:
                active = self.active[channel_id] = _Active(channel_id)
            active.reasons.add("api")
            active.until = until
        if active.stream_id is None:
            try:
                await self._start(active)
            except RecordingError:
                async with self._requests:
                    active.reasons.discard("api")
                    if not active.reasons:
                        self.active.pop(channel_id, None)
                    await self._forget_request(channel_id, "it did not start")
                raise
        self._audit("recording.start", channel_id, principal_id, duration=duration)
        return self.describe(active)

    async def stop_recording(self, channel_id: str, *, principal_id: str = "") -> None:
        """End an on-demand recording (a channel also recorded by policy goes on).

        :raises RecordingError: 404 when the channel is not recorded on demand; 503 when its
            stored request cannot be removed (nothing is stopped: it would resume at restart).
        """
        async with self._requests:
            active = self.active.get(channel_id)
            if active is None or "api" not in active.reasons:
                raise RecordingError(404, "not_found", f"{channel_id} is not recorded on demand")
            try:
                await self.store.delete_recording_request(channel_id)
            except StoreError as exc:
                log.error("on-demand recording of %s not removed: %s", channel_id, exc)
                raise RecordingError(503, "store", f"request not removed: {exc}") from None
            active.reasons.discard("api")
            active.until = None
        self._audit("recording.stop", channel_id, principal_id)
        if not active.reasons:
            await self._stop(active, "stopped")
            self.active.pop(channel_id, None)

    async def restore_requests(self) -> None:
        """Take up the stored on-demand requests (at start, before the policy loop): those
        whose duration ended while the platform was down are removed, the others are wanted
        again until their end (the first :meth:`tick` starts them)."""
        now = self.clock()
        async with self._requests:
            for request in await self.store.list_recording_requests():
                channel_id = request.channel_id
                if request.until is not None and now >= request.until:
                    log.info("on-demand recording of %s ended while stopped", channel_id)
                    await self._forget_request(channel_id, "its duration ended")
                    continue
                active = self.active.get(channel_id)
                if active is None:
                    active = self.active[channel_id] = _Active(channel_id)
                active.reasons.add("api")
                active.until = request.until
                log.info(
                    "on-demand recording of %s resumed (asked by %s at %.0f, until %s)",
                    channel_id, request.requested_by or "-", request.requested_at,
                    "stopped" if request.until is None else f"{request.until:.0f}",
                )  # fmt: skip

    async def _forget_request(self, channel_id: str, why: str) -> None:
        """Remove a stored request the service no longer holds (caller holds the lock). A
        failure is logged: an expired one is removed at the next start anyway."""
        try:
            await self.store.delete_recording_request(channel_id)
        except StoreError as exc:
            log.error("on-demand recording of %s (%s) not removed: %s", channel_id, why, exc)

    def describe(self, active: _Active) -> dict[str, Any]:
        """The public view of one recording."""
        session = active.session
        return {
            "channel": active.channel_id,
            "state": active.state,
            "reasons": sorted(active.reasons),
            "until": active.until,
            "started_at": active.started_at,
            "session": getattr(session, "session_id", None),
            "segment": active.segment,
            "last_error": active.last_error,
        }

    def path_of(self, row: RecordingRow) -> str:
        """Absolute path of a row's file."""
        return os.path.join(self.root, row.path)

    # -- policy loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self.tick(self.clock())
            except Exception:
                log.exception("recording policy check failed")
            await asyncio.sleep(TICK)

    def wanted(self, now: float) -> dict[str, set[str]]:
        """Channels policy wants recorded now, with the reasons."""
        out: dict[str, set[str]] = {}
        for channel_id in self.policy.always:
            out.setdefault(channel_id, set()).add("always")
        for channel_id in self.policy.schedules:
            if self.policy.scheduled(channel_id, now):
                out.setdefault(channel_id, set()).add("schedule")
        return out

    async def tick(self, now: float) -> None:
        """Start/stop recordings to match the policy; restart ended ones; sweep when due."""
        wanted = self.wanted(now)
        for channel_id, reasons in wanted.items():
            active = self.active.get(channel_id)
            if active is None:
                active = self.active[channel_id] = _Active(channel_id)
            active.reasons = (active.reasons & {"api"}) | reasons
        for active in list(self.active.values()):
            active.reasons = (active.reasons & {"api"}) | wanted.get(active.channel_id, set())
            if "api" in active.reasons and active.until is not None and now >= active.until:
                async with self._requests:
                    # Asked again (a later end) while the lock was held: that one goes on.
                    if active.until is not None and now >= active.until:
                        active.reasons.discard("api")
                        active.until = None
                        await self._forget_request(active.channel_id, "its duration ended")
            if not active.reasons:
                await self._stop(active, "not wanted")
                self.active.pop(active.channel_id, None)
                continue
            session = active.session
            if session is not None and getattr(session, "state", "playing") == "ended":
                reason = getattr(session, "end_reason", None) or "session ended"
                await self._stop(active, reason)
                active.state = "retrying"
                active.last_error = reason
                active.retry_at = now + active.backoff
            if active.stream_id is None and now >= active.retry_at:
                with contextlib.suppress(RecordingError):
                    await self._start(active)
        if self._swept_at is None or now - self._swept_at >= self.policy.check_interval:
            self._swept_at = now
            await self.sweep(now)

    async def _start(self, active: _Active) -> None:
        channel_id = active.channel_id
        active.state = "starting"
        try:
            opened = await asyncio.to_thread(
                self.recorder.call, lambda: self.recorder.open(channel_id)
            )
        except RecorderError as exc:
            self._retry_later(active, str(exc))
            raise RecordingError(503, "recorder", str(exc)) from None
        active.stream_id = opened["stream"]
        try:
            session, consumer = await self.calls.play(
                channel_id, output=(opened["host"], opened["port"], "udp")
            )
        except CallError as exc:
            await self._close_stream(active)
            self._retry_later(active, exc.reason)
            log.warning("recording of %s cannot start: %s", channel_id, exc.reason)
            raise RecordingError(exc.status, exc.error, exc.reason) from None
        if active.stream_id != opened["stream"]:
            # Stopped while the INVITE was under way: give the stream back at once.
            with contextlib.suppress(CallError):
                self.calls.leave(session.session_id, consumer.consumer_id)
            return
        active.session = session
        active.consumer_id = consumer.consumer_id
        active.state = "recording"
        active.started_at = self.clock()
        active.backoff = RETRY_FIRST
        active.last_error = None
        log.info("recording channel=%s session=%s", channel_id, session.session_id)

    def _retry_later(self, active: _Active, reason: str) -> None:
        active.state = "retrying"
        active.last_error = reason
        active.retry_at = self.clock() + active.backoff
        active.backoff = min(active.backoff * 2, RETRY_MAX)

    async def _stop(self, active: _Active, reason: str) -> None:
        session, consumer_id = active.session, active.consumer_id
        active.session = None
        active.consumer_id = None
        if session is not None and consumer_id is not None and session.state != "ended":
            try:
                self.calls.leave(session.session_id, consumer_id)
            except CallError as exc:
                log.info("recording of %s: leaving its session: %s", active.channel_id, exc)
        await self._close_stream(active)
        active.state = "stopped"
        log.info("recording stopped channel=%s reason=%s", active.channel_id, reason)

    async def _close_stream(self, active: _Active) -> None:
        stream_id, active.stream_id = active.stream_id, None
        active.segment = None
        if stream_id is None:
            return
        try:
            await asyncio.to_thread(self.recorder.call, lambda: self.recorder.close(stream_id))
        except RecorderError as exc:
            log.warning("recorder stream of %s: %s", active.channel_id, exc)

    # -- index rows (one writer task, in event order) ---------------------------------------

    async def _write_rows(self) -> None:
        assert self._events is not None
        while True:
            channel_id, event = await self._events.get()
            try:
                await self._write_row(channel_id, event)
            finally:
                self._events.task_done()

    async def _write_row(self, channel_id: str, event: SegmentOpened | SegmentClosed) -> None:
        active = self.active.get(channel_id)
        if isinstance(event, SegmentOpened):
            row = RecordingRow(
                id=uuid.uuid4().hex,
                channel_id=channel_id,
                start=event.start,
                end=event.start,
                path=event.path,
                bytes=0,
                codec="",
                keyframes=(),
                sha256=None,
                state="open",
                security_class=self.security_class(channel_id),
            )
            self._open_rows[event.path] = row
            if active is not None:
                active.segment = event.path
            await self._retry(lambda: self.store.add_recording(row), "add", event.path)
            return
        info = event.info
        opened = self._open_rows.pop(info.path, None)
        if opened is None:
            row = self._row_from_info(channel_id, info, "closed", uuid.uuid4().hex)
            await self._retry(lambda: self.store.add_recording(row), "add", info.path)
            return
        row = self._row_from_info(channel_id, info, "closed", opened.id, opened.security_class)
        await self._retry(self._updater(row), "update", info.path)

    def _updater(self, row: RecordingRow) -> Callable[[], Any]:
        async def update() -> None:
            if not await self.store.update_recording(row):
                await self.store.add_recording(row)  # its "open" row was never written

        return update

    async def _retry(self, write: Callable[[], Any], what: str, path: str) -> None:
        for attempt in range(ROW_ATTEMPTS):
            try:
                await write()
                return
            except Exception as exc:
                log.warning(
                    "recording index %s failed path=%s attempt=%d: %s", what, path, attempt + 1, exc
                )
                await asyncio.sleep(1.0)
        self.row_failures += 1
        log.error("recording index %s given up path=%s (reconciled at next start)", what, path)

    def _row_from_info(
        self,
        channel_id: str,
        info: SegmentInfo,
        state: str,
        row_id: str,
        security_class: int | None = None,
    ) -> RecordingRow:
        return RecordingRow(
            id=row_id,
            channel_id=channel_id,
            start=info.start,
            end=info.end,
            path=info.path,
            bytes=info.bytes,
            codec=info.codec,
            keyframes=info.keyframes,
            sha256=info.sha256,
            state=state,
            security_class=(
                self.security_class(channel_id) if security_class is None else security_class
            ),
        )

    # -- reconciliation ----------------------------------------------------------------------

    async def _all_rows(self) -> AsyncIterator[RecordingRow]:
        """Every row, by start, a page at a time (memory bounded by one page).

        Pages are ``ORDER BY start, id`` prefixes from a start cursor; rows overlapping the
        cursor from before it were already yielded, and so were those at exactly the cursor
        listed in ``boundary``.
        """
        cursor = -1.0
        boundary: set[str] = set()
        limit = _PAGE
        while True:
            # Just before the cursor: a zero-length row (one frame) at the cursor still overlaps.
            page = await self.store.list_recordings(None, cursor - 0.001, _FAR_FUTURE, limit=limit)
            fresh = [
                r for r in page if r.start > cursor or (r.start == cursor and r.id not in boundary)
            ]
            for row in fresh:
                yield row
            if len(page) < limit:
                return
            if not fresh:
                # The page held only rows already seen (many rows at one start, or long rows
                # overlapping the cursor): ask for more from the same cursor.
                limit *= 2
                continue
            limit = _PAGE
            last = fresh[-1].start
            if last != cursor:
                boundary = set()
            boundary.update(r.id for r in fresh if r.start == last)
            cursor = last

    async def reconcile(self) -> ReconcileReport:
        """Make the index match the disk (see the module docstring). Run before recording.

        Two passes, each bounded in memory: every row against its file, then every
        ``<channel>/<day>`` directory against that channel's rows of that day.
        """
        report = ReconcileReport()
        async for row in self._all_rows():
            full = self.path_of(row)
            try:
                size = os.path.getsize(full)
            except FileNotFoundError:
                await self.store.delete_recording(row.id)
                report.removed_rows += 1
                log.warning("recording %s: file %s is gone; row removed", row.id, row.path)
                self._audit_delete(row, "file missing at start-up")
                continue
            if row.state == "open" or size != row.bytes:
                await self._recover(row, full, size, report)
        for day_dir, names in await asyncio.to_thread(self._day_dirs):
            match = _DAY.match(day_dir)
            if match is None:
                log.warning("recordings root holds an unexpected directory: %s", day_dir)
                continue
            day = calendar.timegm(time.strptime(match["day"], "%Y%m%d"))
            rows = await self.store.list_recordings(
                match["channel"], day - DAY, day + 2 * DAY, limit=1_000_000
            )
            indexed = {r.path for r in rows}
            for name in names:
                rel = f"{day_dir}/{name}"
                if rel not in indexed:
                    await self._index_file(rel, report)
        if any(dataclasses.astuple(report)):
            log.info("recordings reconciled: %s", report)
        return report

    async def _index_file(self, rel: str, report: ReconcileReport) -> None:
        match = _NAME.match(rel)
        if match is None:
            log.warning("recordings root holds an unexpected file: %s", rel)
            return
        full = os.path.join(self.root, rel)
        info = await asyncio.to_thread(scan_segment, full, int(match["ms"]) / 1000)
        if info.bytes == 0:
            os.unlink(full)
            report.empty_removed += 1
            return
        await asyncio.to_thread(self._truncate, full, info.bytes)
        info = dataclasses.replace(info, path=rel)
        await self.store.add_recording(
            self._row_from_info(match["channel"], info, "recovered", uuid.uuid4().hex)
        )
        report.indexed_files += 1
        log.warning("recording file without a row indexed: %s", rel)

    async def _recover(
        self, row: RecordingRow, full: str, size: int, report: ReconcileReport
    ) -> None:
        info = await asyncio.to_thread(scan_segment, full, row.start)
        if info.bytes == 0:
            os.unlink(full)
            await self.store.delete_recording(row.id)
            report.empty_removed += 1
            log.info("recording %s held no whole frame; removed", row.path)
            return
        if size > info.bytes:
            await asyncio.to_thread(self._truncate, full, info.bytes)
            report.truncated += 1
        info = dataclasses.replace(info, path=row.path)
        await self.store.update_recording(
            self._row_from_info(row.channel_id, info, "recovered", row.id, row.security_class)
        )
        report.recovered += 1
        log.warning(
            "recording %s recovered: %d of %d bytes, %.1f s", row.path, info.bytes, size,
            info.end - info.start,
        )  # fmt: skip

    @staticmethod
    def _truncate(full: str, size: int) -> None:
        """Cut a partial trailing pack off, so the file is whole frames (and matches its hash)."""
        with open(full, "r+b") as f:
            f.truncate(size)
            os.fsync(f.fileno())

    def _day_dirs(self) -> list[tuple[str, list[str]]]:
        """``(<channel>/<day>, [segment file names])`` under the root; stray files logged."""
        out = []
        for dirpath, _, files in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            names = sorted(n for n in files if n.endswith(".ps"))
            for name in files:
                if not name.endswith(".ps"):
                    log.warning("recordings root holds an unexpected file: %s/%s", rel, name)
            if names:
                out.append((rel, names))
        return sorted(out)

    # -- retention and quota -----------------------------------------------------------------

    async def sweep(self, now: float) -> int:
        """Delete expired segments, then the oldest past the quota. :returns: segments deleted."""
        deleted = 0
        shortest = min([self.policy.retention_days, *self.policy.retention_by_class.values()])
        cutoff = now - shortest * DAY
        async for row in self._rows_starting_before(cutoff):
            if row.state != "open" and row.end < now - self.policy.retention(row.security_class):
                await self.delete(row, "retention")
                deleted += 1
        quota = self.policy.quota_bytes
        if quota > 0:
            total = await self.store.recordings_total_bytes()
            by_quota = 0
            while total > quota:
                oldest = await self.store.oldest_recordings(50)
                if not oldest:
                    break
                for row in oldest:
                    if total <= quota:
                        break
                    await self.delete(row, "quota")
                    total -= row.bytes
                    by_quota += 1
            deleted += by_quota
            if by_quota:
                cause = f"recordings over the {quota}-byte quota: {by_quota} oldest deleted"
                if self.faults is not None:
                    self.faults.raise_fault(self.alarm_device, "", "recording_quota", cause, now)
                if self.audit is not None:
                    self.audit.record_fault("recordings", cause)
                log.warning("%s", cause)
                self._quota_fault = True
            elif self._quota_fault:
                if self.faults is not None:
                    self.faults.clear(self.alarm_device, "", ["recording_quota"], now)
                self._quota_fault = False
        return deleted

    async def _rows_starting_before(self, cutoff: float) -> AsyncIterator[RecordingRow]:
        async for row in self._all_rows():
            if row.start >= cutoff:
                return
            yield row

    async def delete(self, row: RecordingRow, reason: str) -> None:
        """Delete a segment for good: unlink the file, remove the row, audit it."""
        full = self.path_of(row)
        try:
            os.unlink(full)
        except FileNotFoundError:
            log.warning("recording %s: file already gone", row.path)
        await self.store.delete_recording(row.id)
        self.deleted += 1
        log.info("recording deleted path=%s reason=%s", row.path, reason)
        self._audit_delete(row, reason)

    def _audit_delete(self, row: RecordingRow, reason: str) -> None:
        if self.audit is None:
            return
        self.audit.record(
            "recording.delete",
            row.id,
            "ok",
            reason=reason,
            extra={
                "channel": row.channel_id,
                "path": row.path,
                "start": row.start,
                "end": row.end,
                "bytes": row.bytes,
                "sha256": row.sha256,
            },
        )

    def _audit(self, action: str, channel_id: str, principal_id: str, **extra: Any) -> None:
        if self.audit is None:
            return
        kwargs: dict[str, Any] = {"extra": {k: v for k, v in extra.items() if v is not None}}
        if principal_id:
            kwargs["principal_id"] = principal_id
        self.audit.record(action, channel_id, "ok", **kwargs)
