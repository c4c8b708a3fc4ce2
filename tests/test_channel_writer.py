"""ChannelWriter: coalescing, chunking, deletes and retry after a failed write."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gb28181.channel_writer import ChannelWriter
from gb28181.store import ChannelRecord

DEV = "34020000001180000001"


class FakeStore:
    def __init__(self) -> None:
        self.upserts: list[tuple[str, list[str]]] = []
        self.deletes: list[tuple[str, list[str]]] = []
        self.fail = False

    async def upsert_channels(self, device_id: str, records: Sequence[ChannelRecord]) -> None:
        if self.fail:
            raise OSError("disk full")
        self.upserts.append((device_id, [r.channel_id for r in records]))

    async def delete_channels(
        self, device_id: str, channel_ids: Sequence[str] | None = None
    ) -> int:
        self.deletes.append((device_id, list(channel_ids or ())))
        return len(channel_ids or ())


def rec(n: int, name: str = "") -> ChannelRecord:
    return ChannelRecord(device_id=DEV, channel_id=f"3402000000132{n:07d}", name=name)


async def test_rows_coalesce_and_are_written_in_chunks() -> None:
    store = FakeStore()
    writer = ChannelWriter(store, chunk=2)
    writer.upsert(DEV, [rec(1, "a"), rec(2), rec(3)])
    writer.upsert(DEV, [rec(1, "b")])
    writer.delete(DEV, [rec(4).channel_id])
    assert writer.pending == 4
    await writer.flush()
    assert store.upserts == [(DEV, [rec(1).channel_id, rec(2).channel_id]),
                             (DEV, [rec(3).channel_id])]  # fmt: skip
    assert store.deletes == [(DEV, [rec(4).channel_id])]
    assert writer.pending == 0 and writer.rows_written == 3 and writer.rows_deleted == 1


async def test_a_delete_after_an_upsert_wins_and_empty_calls_queue_nothing() -> None:
    store = FakeStore()
    writer = ChannelWriter(store)
    writer.upsert(DEV, [rec(1)])
    writer.delete(DEV, [rec(1).channel_id])
    writer.upsert("other", [])
    writer.delete("other", [])
    await writer.flush()
    assert store.upserts == [] and store.deletes == [(DEV, [rec(1).channel_id])]


async def test_failed_write_keeps_rows_newer_ones_win() -> None:
    store = FakeStore()
    writer = ChannelWriter(store)
    writer.upsert(DEV, [rec(1, "old"), rec(2)])
    store.fail = True
    with pytest.raises(OSError):
        await writer.flush()
    writer.upsert(DEV, [rec(1, "new")])
    assert writer.pending == 2
    store.fail = False
    await writer.stop()
    assert store.upserts == [(DEV, [rec(1).channel_id, rec(2).channel_id])]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ChannelWriter(FakeStore(), interval=0)
    with pytest.raises(ValueError):
        ChannelWriter(FakeStore(), chunk=0)
