"""RecordingService with an injected clock: policy, index rows, reconciliation, retention,
quota. The calls service is a fake; the recorder is real but its thread is not started."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gb28181.calls import CallError
from gb28181.recordings import DAY, RecordingError, RecordingPolicy, RecordingService
from gb28181.store import RecordingRow, Store, open_store
from media.recorder import Recorder, SegmentClosed, SegmentOpened
from media.segments import SegmentInfo, scan_segment, segment_name

from .media.recording_helpers import encode_ps

CH = "34020000001320000001"
CH2 = "34020000001320000002"
NOW = 1_700_000_000.0


@dataclasses.dataclass
class FakeSession:
    session_id: str
    channel_id: str
    state: str = "playing"
    end_reason: str | None = None


@dataclasses.dataclass
class FakeConsumer:
    consumer_id: int


class FakeCalls:
    def __init__(self) -> None:
        self.plays: list[tuple[str, Any]] = []
        self.left: list[tuple[str, int]] = []
        self.sessions: dict[str, FakeSession] = {}
        self.refuse: set[str] = set()

    async def play(self, channel_id: str, output: Any = None) -> tuple[Any, Any]:
        if channel_id in self.refuse:
            raise CallError(504, "timeout", "device did not answer")
        self.plays.append((channel_id, output))
        session = FakeSession(f"s{len(self.plays)}", channel_id)
        self.sessions[session.session_id] = session
        return session, FakeConsumer(len(self.plays))

    def leave(self, session_id: str, consumer_id: int) -> None:
        self.left.append((session_id, consumer_id))


class FakeAudit:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []
        self.faults: list[tuple[str, str]] = []

    def record(self, action: str, target: str, outcome: str, **kw: Any) -> None:
        self.records.append((action, target, kw))

    def record_fault(self, target: str, cause: str) -> None:
        self.faults.append((target, cause))


class FakeFaults:
    def __init__(self) -> None:
        self.raised: list[tuple[str, str]] = []
        self.cleared: list[list[str]] = []

    def raise_fault(
        self, device_id: str, channel_id: str, kind: str, cause: str, now: float
    ) -> None:
        self.raised.append((kind, cause))

    def clear(self, device_id: str, channel_id: str, kinds: Any, now: float) -> None:
        self.cleared.append(list(kinds))


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        yield opened
    finally:
        await opened.close()


def _service(
    store: Store, root: Path, policy: RecordingPolicy | None = None, **kw: Any
) -> tuple[RecordingService, FakeCalls, FakeAudit, FakeFaults, Clock]:
    calls, audit, faults, clock = FakeCalls(), FakeAudit(), FakeFaults(), Clock()
    service = RecordingService(
        store,
        calls,
        Recorder(root),
        policy or RecordingPolicy(),
        audit=audit,  # type: ignore[arg-type]
        faults=faults,
        alarm_device="34020000002000000001",
        clock=clock,
        **kw,
    )
    return service, calls, audit, faults, clock


def _segment(root: Path, channel: str, start: float, frames: int = 50) -> tuple[str, bytes]:
    rel = segment_name(channel, start)
    data = b"".join(ps for ps, _, _ in encode_ps("h264", 100, 25, 25)[:frames])
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)
    return rel, data


def _row(rel: str, data: bytes, channel: str, start: float, **kw: Any) -> RecordingRow:
    values: dict[str, Any] = {
        "id": hashlib.md5(rel.encode()).hexdigest(),
        "channel_id": channel,
        "start": start,
        "end": start + 2.0,
        "path": rel,
        "bytes": len(data),
        "codec": "h264",
        "keyframes": ((0.0, 0),),
        "sha256": hashlib.sha256(data).hexdigest(),
        "state": "closed",
        "security_class": 0,
    }
    values.update(kw)
    return RecordingRow(**values)


# -- policy ---------------------------------------------------------------------------------


def test_schedule_windows_cross_midnight() -> None:
    policy = RecordingPolicy(schedules={CH: ((22 * 60, 6 * 60),), CH2: ((8 * 60, 9 * 60),)})
    midnight_local = 1_700_006_400.0 - 8 * 3600  # 2023-11-15 00:00 at UTC+8
    assert policy.scheduled(CH, midnight_local + 23 * 3600)
    assert policy.scheduled(CH, midnight_local + 5 * 3600)
    assert not policy.scheduled(CH, midnight_local + 7 * 3600)
    assert policy.scheduled(CH2, midnight_local + 8.5 * 3600)
    assert not policy.scheduled(CH2, midnight_local + 9 * 3600)
    assert not policy.scheduled("other", midnight_local)
    assert RecordingPolicy(retention_by_class={3: 90}).retention(3) == 90 * DAY
    assert RecordingPolicy().retention(3) == 30 * DAY


async def test_always_records_and_restarts_after_the_session_ends(
    store: Store, tmp_path: Path
) -> None:
    service, calls, _, _, clock = _service(
        store, tmp_path, RecordingPolicy(always=(CH,), check_interval=1e9)
    )
    await service.tick(clock.now)
    assert len(calls.plays) == 1
    channel, output = calls.plays[0]
    assert channel == CH and output[0] == "127.0.0.1" and output[2] == "udp"
    active = service.active[CH]
    assert active.state == "recording" and service.describe(active)["reasons"] == ["always"]
    # The device hangs up: the recorder stream closes, a restart follows the back-off.
    calls.sessions["s1"].state = "ended"
    calls.sessions["s1"].end_reason = "BYE from device"
    clock.now += 1
    await service.tick(clock.now)
    assert active.state == "retrying" and active.last_error == "BYE from device"
    assert active.stream_id is None and len(calls.plays) == 1
    clock.now += 5
    await service.tick(clock.now)
    assert len(calls.plays) == 2 and active.state == "recording"
    await service.stop()
    assert calls.left == [("s2", 2)]


async def test_failed_start_backs_off(store: Store, tmp_path: Path) -> None:
    service, calls, _, _, clock = _service(
        store, tmp_path, RecordingPolicy(always=(CH,), check_interval=1e9)
    )
    calls.refuse.add(CH)
    await service.tick(clock.now)
    active = service.active[CH]
    assert active.state == "retrying" and active.last_error == "device did not answer"
    assert active.retry_at == clock.now + 5 and active.backoff == 10
    clock.now += 5
    await service.tick(clock.now)
    assert active.retry_at == clock.now + 10 and active.backoff == 20
    await service.stop()


async def test_on_demand_with_duration(store: Store, tmp_path: Path) -> None:
    service, calls, audit, _, clock = _service(store, tmp_path, RecordingPolicy(check_interval=1e9))
    body = await service.record(CH, 10.0, principal_id="alice")
    assert body["state"] == "recording" and body["until"] == clock.now + 10
    assert audit.records[-1][:2] == ("recording.start", CH)
    assert audit.records[-1][2]["principal_id"] == "alice"
    clock.now += 5
    await service.tick(clock.now)
    assert CH in service.active
    clock.now += 5
    await service.tick(clock.now)
    assert CH not in service.active and calls.left == [("s1", 1)]
    with pytest.raises(RecordingError) as info:
        await service.stop_recording(CH)
    assert info.value.status == 404
    calls.refuse.add(CH2)
    with pytest.raises(RecordingError) as info:
        await service.record(CH2)
    assert info.value.status == 504 and CH2 not in service.active
    await service.stop()


async def test_on_demand_stop_leaves_a_policy_recording_running(
    store: Store, tmp_path: Path
) -> None:
    service, calls, _, _, clock = _service(
        store, tmp_path, RecordingPolicy(always=(CH,), check_interval=1e9)
    )
    await service.tick(clock.now)
    await service.record(CH)
    assert len(calls.plays) == 1 and service.active[CH].reasons == {"always", "api"}
    await service.stop_recording(CH)
    assert service.active[CH].reasons == {"always"} and calls.left == []
    await service.stop()


# -- index rows from recorder events -------------------------------------------------------


async def test_segment_events_write_open_then_closed_rows(store: Store, tmp_path: Path) -> None:
    service, *_ = _service(store, tmp_path, security_class=lambda channel: 4)
    rel = segment_name(CH, NOW)
    await service._write_row(CH, SegmentOpened(rel, NOW))
    [row] = await store.list_recordings(CH, 0, 2e9)
    assert row.state == "open" and row.security_class == 4 and row.sha256 is None
    info = SegmentInfo(rel, NOW, NOW + 60, 1234, "h264", ((0.0, 0), (2.0, 600)), "ab" * 32)
    await service._write_row(CH, SegmentClosed(info))
    closed = await store.get_recording(row.id)
    assert closed is not None and closed.state == "closed" and closed.bytes == 1234
    assert closed.keyframes == info.keyframes and closed.end == NOW + 60
    # A close whose open row was never written still indexes the segment.
    other = dataclasses.replace(info, path=segment_name(CH, NOW + 60), start=NOW + 60)
    await service._write_row(CH, SegmentClosed(other))
    assert len(await store.list_recordings(CH, 0, 2e9)) == 2


# -- reconciliation ------------------------------------------------------------------------


async def test_reconcile_matches_the_index_to_the_disk(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "rec"
    service, _, audit, _, _ = _service(store, root)
    # 1. An open row whose file was cut mid-pack by the crash.
    rel1, data1 = _segment(root, CH, NOW)
    with open(root / rel1, "ab") as f:
        f.write(data1[:10])  # a partial pack header of the next frame
    await store.add_recording(_row(rel1, b"", CH, NOW, state="open", sha256=None, end=NOW))
    # 2. A closed row that matches its file: untouched.
    rel2, data2 = _segment(root, CH, NOW + 100)
    await store.add_recording(_row(rel2, data2, CH, NOW + 100))
    # 3. A row whose file is gone.
    await store.add_recording(_row(segment_name(CH, NOW + 200), b"x", CH, NOW + 200))
    # 4. A file without a row.
    rel4, data4 = _segment(root, CH2, NOW + 300, frames=30)
    # 5. An open row whose file holds no whole frame.
    rel5 = segment_name(CH2, NOW + 400)
    (root / rel5).parent.mkdir(parents=True, exist_ok=True)
    (root / rel5).write_bytes(data1[:20])
    await store.add_recording(_row(rel5, b"", CH2, NOW + 400, state="open", sha256=None))
    (root / "stray.txt").write_text("not a segment")

    report = await service.reconcile()

    assert (report.recovered, report.truncated, report.removed_rows) == (1, 1, 1)
    assert (report.indexed_files, report.empty_removed) == (1, 1)
    rows = {r.path: r for r in await store.list_recordings(None, 0, 2e9)}
    assert set(rows) == {rel1, rel2, rel4}
    recovered = rows[rel1]
    assert recovered.state == "recovered" and recovered.bytes == len(data1)
    assert (root / rel1).read_bytes() == data1  # partial pack truncated off
    assert recovered.sha256 == hashlib.sha256(data1).hexdigest()
    assert recovered.end == pytest.approx(NOW + 2.0)
    assert rows[rel2] == _row(rel2, data2, CH, NOW + 100)
    indexed = rows[rel4]
    assert indexed.state == "recovered" and indexed.start == NOW + 300
    assert indexed.bytes == len(data4) and indexed.channel_id == CH2
    assert not (root / rel5).exists()
    assert [(a, kw["reason"]) for a, _, kw in audit.records] == [
        ("recording.delete", "file missing at start-up")
    ]
    # Every row now matches its file: a second pass changes nothing.
    again = await service.reconcile()
    assert not any(dataclasses.astuple(again))
    for row in rows.values():
        info = scan_segment(root / row.path, row.start)
        assert (info.bytes, info.sha256) == (row.bytes, row.sha256)


# -- retention and quota -------------------------------------------------------------------


async def test_retention_per_security_class(store: Store, tmp_path: Path) -> None:
    policy = RecordingPolicy(retention_days=30, retention_by_class={3: 90})
    service, _, audit, _, _ = _service(store, tmp_path, policy)
    old = NOW - 40 * DAY
    rel_a, data_a = _segment(tmp_path, CH, old)
    rel_b, data_b = _segment(tmp_path, CH2, old + 1)
    rel_c, data_c = _segment(tmp_path, CH, NOW - DAY)
    await store.add_recording(_row(rel_a, data_a, CH, old))
    await store.add_recording(_row(rel_b, data_b, CH2, old + 1, security_class=3))
    await store.add_recording(_row(rel_c, data_c, CH, NOW - DAY))
    assert await service.sweep(NOW) == 1
    assert not (tmp_path / rel_a).exists()
    assert (tmp_path / rel_b).exists() and (tmp_path / rel_c).exists()
    assert [r.path for r in await store.list_recordings(None, 0, 2e9)] == [rel_b, rel_c]
    action, _, kw = audit.records[-1]
    assert action == "recording.delete" and kw["reason"] == "retention"
    assert (
        kw["extra"]["path"] == rel_a
        and kw["extra"]["sha256"] == _row(rel_a, data_a, CH, old).sha256
    )
    assert await service.sweep(NOW + 60 * DAY) == 2


async def test_quota_deletes_oldest_first_and_raises_a_fault(store: Store, tmp_path: Path) -> None:
    service, _, audit, faults, _ = _service(store, tmp_path)
    rels = []
    for n in range(4):
        rel, data = _segment(tmp_path, CH, NOW - 1000 + n * 100)
        await store.add_recording(_row(rel, data, CH, NOW - 1000 + n * 100))
        rels.append(rel)
    open_rel = segment_name(CH, NOW)
    await store.add_recording(_row(open_rel, b"", CH, NOW, state="open", sha256=None, end=NOW))
    size = len(b"".join(ps for ps, _, _ in encode_ps("h264", 100, 25, 25)[:50]))
    service.policy = dataclasses.replace(service.policy, quota_bytes=int(size * 2.5))
    assert await service.sweep(NOW) == 2
    left = [r.path for r in await store.list_recordings(None, 0, 2e9)]
    assert left == [rels[2], rels[3], open_rel]  # the open segment is never a quota victim
    assert faults.raised[0][0] == "recording_quota" and len(audit.faults) == 1
    assert [kw["reason"] for _, _, kw in audit.records] == ["quota", "quota"]
    assert await service.sweep(NOW + 1) == 0
    assert faults.cleared == [["recording_quota"]]
    assert await store.recordings_total_bytes() == 2 * size


async def test_delete_tolerates_a_missing_file(store: Store, tmp_path: Path) -> None:
    service, *_ = _service(store, tmp_path)
    row = _row(segment_name(CH, NOW), b"abc", CH, NOW)
    await store.add_recording(row)
    await service.delete(row, "test")
    assert await store.get_recording(row.id) is None and service.deleted == 1


async def test_all_rows_pages_without_repeats(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gb28181.recordings as recordings

    monkeypatch.setattr(recordings, "_PAGE", 2)
    service, *_ = _service(store, tmp_path)
    starts = [NOW, NOW, NOW, NOW + 1, NOW + 2, NOW + 2, NOW + 3]
    for n, start in enumerate(starts):
        # Long rows overlap the later cursors: they must still come once.
        await store.add_recording(_row(f"p/{n}.ps", b"x", CH, start, end=start + 100))
    got = [row.path async for row in service._all_rows()]
    assert sorted(got) == sorted(f"p/{n}.ps" for n in range(len(starts)))
    assert len(got) == len(set(got))


async def test_stop_while_the_invite_is_under_way_gives_the_stream_back(
    store: Store, tmp_path: Path
) -> None:
    import asyncio

    service, calls, _, _, _ = _service(store, tmp_path, RecordingPolicy(check_interval=1e9))
    gate = asyncio.Event()
    play = calls.play

    async def slow_play(channel_id: str, output: Any = None) -> tuple[Any, Any]:
        await gate.wait()
        return await play(channel_id, output)

    calls.play = slow_play  # type: ignore[method-assign]
    task = asyncio.create_task(service.record(CH))
    await asyncio.sleep(0.05)
    assert service.active[CH].state == "starting"
    await service.stop_recording(CH)
    gate.set()
    await task
    assert calls.left == [("s1", 1)] and CH not in service.active
    await service.stop()


# -- on-demand requests survive a restart ---------------------------------------------------


async def _started(service: RecordingService, calls: FakeCalls, plays: int) -> None:
    """Start the service (reconcile, restore, policy loop) and wait for ``plays`` plays."""
    import asyncio

    await service.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while len(calls.plays) < plays:
        assert loop.time() < deadline, f"plays: {calls.plays}"
        await asyncio.sleep(0.01)


async def test_on_demand_requests_resume_after_a_restart(store: Store, tmp_path: Path) -> None:
    policy = RecordingPolicy(check_interval=1e9)
    service, calls, _, _, clock = _service(store, tmp_path, policy)
    await service.record(CH, principal_id="alice")
    await service.record(CH2, 10.0, principal_id="bob")
    stored = await store.list_recording_requests()
    assert [(r.channel_id, r.until, r.requested_by) for r in stored] == [
        (CH, None, "alice"),
        (CH2, clock.now + 10, "bob"),
    ]
    await service.stop()  # shutdown is not a DELETE: the requests stay
    assert len(await store.list_recording_requests()) == 2

    # Restart 20 s later: the open-ended request resumes, the 10-second one is over.
    service, calls, audit, _, clock = _service(store, tmp_path, policy)
    clock.now += 20
    await _started(service, calls, 1)
    assert [channel for channel, _ in calls.plays] == [CH]
    active = service.active[CH]
    assert active.state == "recording" and active.reasons == {"api"} and active.until is None
    assert CH2 not in service.active
    assert [r.channel_id for r in await store.list_recording_requests()] == [CH]
    assert audit.records == []  # resuming is not a new request
    # DELETE removes it for good.
    await service.stop_recording(CH)
    assert CH not in service.active and await store.list_recording_requests() == []
    await service.stop()

    service, calls, _, _, clock = _service(store, tmp_path, policy)
    await service.restore_requests()
    await service.tick(clock.now)
    assert service.active == {} and calls.plays == []


async def test_resumed_duration_ends_on_time_and_is_forgotten(store: Store, tmp_path: Path) -> None:
    policy = RecordingPolicy(check_interval=1e9)
    service, calls, _, _, clock = _service(store, tmp_path, policy)
    await service.record(CH, 60.0)
    await service.stop()
    service, calls, _, _, clock = _service(store, tmp_path, policy)
    clock.now += 30
    await service.restore_requests()
    await service.tick(clock.now)
    assert len(calls.plays) == 1 and service.active[CH].until == NOW + 60
    clock.now = NOW + 60
    await service.tick(clock.now)
    assert CH not in service.active and await store.list_recording_requests() == []
    await service.stop()


async def test_a_request_that_cannot_start_or_be_stored_is_not_kept(
    store: Store, tmp_path: Path
) -> None:
    service, calls, _, _, _ = _service(store, tmp_path, RecordingPolicy(check_interval=1e9))
    calls.refuse.add(CH)
    with pytest.raises(RecordingError):
        await service.record(CH)
    assert await store.list_recording_requests() == []
    await store.close()  # storage down: the request is refused, nothing starts
    with pytest.raises(RecordingError) as info:
        await service.record(CH2)
    assert info.value.status == 503 and CH2 not in service.active and calls.plays == []
    await service.stop()
