"""Recording index (migration 0007) on both dialects: insert, update, overlap queries, quota
order, totals."""

from __future__ import annotations

import pytest

from gb28181.store import RecordingRequest, RecordingRow, Store, StoreDataError
from gb28181.store._recordings import recording_from_row, recording_row


def _row(n: int, channel: str = "34020000001320000001", **kw: object) -> RecordingRow:
    values: dict[str, object] = {
        "id": f"r{n}",
        "channel_id": channel,
        "start": 1_700_000_000.0 + 60 * n,
        "end": 1_700_000_060.0 + 60 * n,
        "path": f"{channel}/20231114/{channel}_{n}.ps",
        "bytes": 1000 * (n + 1),
        "codec": "h264",
        "keyframes": ((0.0, 0), (2.0, 4096)),
        "sha256": "ab" * 32,
        "state": "closed",
        "security_class": 2,
    }
    values.update(kw)
    return RecordingRow(**values)  # type: ignore[arg-type]


async def test_migration_seven_is_applied(store: Store) -> None:
    assert 7 in await store.applied_versions()


async def test_round_trip_update_delete(store: Store) -> None:
    row = _row(1, state="open", sha256=None, keyframes=())
    await store.add_recording(row)
    assert await store.get_recording("r1") == row
    with pytest.raises(StoreDataError):
        await store.add_recording(row)
    closed = _row(1)
    assert await store.update_recording(closed)
    assert await store.get_recording("r1") == closed
    assert not await store.update_recording(_row(9))
    assert await store.delete_recording("r1")
    assert not await store.delete_recording("r1")
    assert await store.get_recording("r1") is None


async def test_list_overlapping_ordered_by_start(store: Store) -> None:
    other = "34020000001320000002"
    for n in (3, 1, 2):
        await store.add_recording(_row(n))
    await store.add_recording(_row(4, other, path="x/4.ps"))
    await store.add_recording(_row(5, state="open", end=_row(5).start, sha256=None))
    t0 = 1_700_000_000.0
    rows = await store.list_recordings("34020000001320000001", t0 + 100, t0 + 170)
    assert [r.id for r in rows] == ["r1", "r2"]  # r1 [60, 120), r2 [120, 180)
    every = await store.list_recordings(None, 0, 2e9)
    assert [r.id for r in every] == ["r1", "r2", "r3", "r4", "r5"]
    # An open row overlaps everything after its start.
    later = await store.list_recordings("34020000001320000001", t0 + 1000, t0 + 2000)
    assert [r.id for r in later] == ["r5"]
    assert [r.id for r in await store.list_recordings(None, 0, 2e9, state="open")] == ["r5"]
    assert len(await store.list_recordings(None, 0, 2e9, limit=2)) == 2


async def test_oldest_skips_open_rows_and_total_bytes(store: Store) -> None:
    assert await store.recordings_total_bytes() == 0
    await store.add_recording(_row(0, state="open", sha256=None))
    for n in (2, 1):
        await store.add_recording(_row(n))
    assert [r.id for r in await store.oldest_recordings(5)] == ["r1", "r2"]
    assert [r.id for r in await store.oldest_recordings(1)] == ["r1"]
    assert await store.recordings_total_bytes() == 1000 + 2000 + 3000


async def test_bad_state_is_refused(store: Store) -> None:
    with pytest.raises(StoreDataError):
        await store.add_recording(_row(1, state="weird"))


def test_row_conversion() -> None:
    row = _row(7, keyframes=((0.0, 0), (1.96, 123456)))
    assert recording_from_row(recording_row(row, operation="t", dialect="sqlite")) == row


# -- on-demand recording requests (migration 0009) ----------------------------------------------


async def test_recording_requests_put_replace_list_delete(store: Store) -> None:
    assert 9 in await store.applied_versions()
    assert await store.list_recording_requests() == []
    timed = RecordingRequest("34020000001320000002", 1_700_000_600.0, "alice", 1_700_000_000.0)
    open_ended = RecordingRequest("34020000001320000001", None, "", 1_700_000_001.5)
    await store.put_recording_request(timed)
    await store.put_recording_request(open_ended)
    assert await store.list_recording_requests() == [open_ended, timed]  # by channel
    # Asked again (another duration, someone else): one row per channel, the latest request.
    again = RecordingRequest("34020000001320000002", None, "bob", 1_700_000_100.0)
    await store.put_recording_request(again)
    assert await store.list_recording_requests() == [open_ended, again]
    assert await store.delete_recording_request("34020000001320000002")
    assert not await store.delete_recording_request("34020000001320000002")
    assert await store.list_recording_requests() == [open_ended]
