"""WriteBehind: coalescing, batching, flush on stop, and no loss when a flush fails."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gb28181.store import (
    DeviceRecord,
    SqliteStore,
    StatusEvent,
    StoreConnectionError,
    WriteBehind,
)

DEVICE_ID = "34020000001320000001"
OTHER_ID = "34020000001320000002"
GUARD = 10.0  # seconds; only a safety net against a hung test, never an assertion


class SignallingStore(SqliteStore):
    """A real in-memory store that also announces each completed batch."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.batches: list[tuple[int, int]] = []
        self.written = asyncio.Event()

    async def write_batch(
        self, records: Sequence[DeviceRecord], events: Sequence[StatusEvent]
    ) -> None:
        await super().write_batch(records, events)
        self.batches.append((len(records), len(events)))
        self.written.set()


class FlakyStore:
    """In-memory fake that fails its next ``fail`` writes (failure tests only)."""

    dialect = "fake"

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.attempts = 0
        self.devices: dict[str, DeviceRecord] = {}
        self.events: list[StatusEvent] = []
        self.during_write: Callable[[], None] | None = None
        self.gate: asyncio.Event | None = None
        self.written = asyncio.Event()
        self.attempted = asyncio.Event()

    async def write_batch(
        self, records: Sequence[DeviceRecord], events: Sequence[StatusEvent]
    ) -> None:
        self.attempts += 1
        self.attempted.set()
        if self.during_write is not None:
            self.during_write()
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)  # a real driver yields to the loop mid-write
        if self.fail:
            self.fail -= 1
            raise StoreConnectionError(
                "connection refused", operation="write_batch", dialect=self.dialect
            )
        for record in records:
            self.devices[record.device_id] = record
        self.events.extend(events)
        self.written.set()


@pytest.fixture
async def store() -> AsyncIterator[SignallingStore]:
    store = SignallingStore()
    await store.open()
    await store.migrate()
    yield store
    await store.close()


def keepalive(at: float, device_id: str = DEVICE_ID) -> DeviceRecord:
    return DeviceRecord(device_id, "device", online=True, last_keepalive=at, expires=3600)


# -- with a real store --------------------------------------------------------------------


async def test_hundred_marks_of_one_device_write_one_row(store: SignallingStore) -> None:
    wb = WriteBehind(store)
    for i in range(100):
        wb.mark_dirty(keepalive(1000.0 + i))
    assert wb.pending == 1

    await wb.flush()

    assert store.batches == [(1, 0)]
    assert (wb.marks, wb.flushes, wb.rows_written, wb.devices_written) == (100, 1, 1, 1)
    assert await store.load_devices() == [keepalive(1099.0)]
    assert wb.pending == 0


async def test_devices_and_events_in_one_transaction(store: SignallingStore) -> None:
    wb = WriteBehind(store)
    events = [StatusEvent(DEVICE_ID, 10.0 + i, i % 2 == 0, f"e{i}") for i in range(5)]
    wb.mark_dirty(keepalive(1.0))
    wb.mark_dirty(keepalive(2.0, OTHER_ID))
    for event in events:
        wb.add_event(event)

    await wb.flush()

    assert store.batches == [(2, 5)]
    assert (wb.flushes, wb.rows_written, wb.devices_written, wb.events_written) == (1, 7, 2, 5)
    assert await store.status_history(DEVICE_ID) == events[::-1]


async def test_flush_writes_the_latest_state_of_a_marked_record(store: SignallingStore) -> None:
    wb = WriteBehind(store)
    record = keepalive(1.0)
    record.extra["channels"] = 4
    wb.mark_dirty(record)

    record.last_keepalive = 99.0
    record.extra["channels"] = 8
    await wb.flush()

    assert await store.get_device(DEVICE_ID) == DeviceRecord(
        DEVICE_ID, "device", online=True, last_keepalive=99.0, expires=3600, extra={"channels": 8}
    )


async def test_flush_with_nothing_pending_skips_the_store(store: SignallingStore) -> None:
    wb = WriteBehind(store)

    await wb.flush()

    assert store.batches == []
    assert wb.flushes == 0


async def test_stop_flushes_pending(store: SignallingStore) -> None:
    wb = WriteBehind(store, interval=3600.0)
    wb.start()
    wb.start()  # idempotent
    assert wb.running
    wb.mark_dirty(keepalive(5.0))
    wb.add_event(StatusEvent(DEVICE_ID, 5.0, True, "registered"))

    await wb.stop()

    assert not wb.running
    assert await store.load_devices() == [keepalive(5.0)]
    assert len(await store.status_history(DEVICE_ID)) == 1


async def test_background_flush_on_interval(store: SignallingStore) -> None:
    wb = WriteBehind(store, interval=0.01)
    wb.start()
    wb.mark_dirty(keepalive(7.0))

    await asyncio.wait_for(store.written.wait(), GUARD)
    await wb.stop()

    assert await store.load_devices() == [keepalive(7.0)]


async def test_max_batch_flushes_early(store: SignallingStore) -> None:
    wb = WriteBehind(store, interval=3600.0, max_batch=10)
    wb.start()
    for i in range(9):
        wb.add_event(StatusEvent(DEVICE_ID, float(i), True, "registered"))
    await asyncio.sleep(0)
    assert store.batches == []

    wb.add_event(StatusEvent(DEVICE_ID, 9.0, True, "registered"))
    await asyncio.wait_for(store.written.wait(), GUARD)
    await wb.stop()

    assert store.batches == [(0, 10)]


@pytest.mark.parametrize(("interval", "max_batch"), [(0.0, 10), (-1.0, 10), (1.0, 0)])
def test_rejects_bad_settings(interval: float, max_batch: int) -> None:
    with pytest.raises(ValueError):
        WriteBehind(FlakyStore(), interval=interval, max_batch=max_batch)


# -- failure handling, with the failing fake ----------------------------------------------


async def test_failed_flush_loses_nothing(caplog: pytest.LogCaptureFixture) -> None:
    fake = FlakyStore(fail=1)
    wb = WriteBehind(fake)
    e1 = StatusEvent(DEVICE_ID, 1.0, True, "registered")
    e2 = StatusEvent(DEVICE_ID, 2.0, False, "keepalive timeout")
    wb.mark_dirty(keepalive(1.0))
    wb.add_event(e1)

    with (
        caplog.at_level(logging.WARNING, logger="gb28181.store"),
        pytest.raises(StoreConnectionError),
    ):
        await wb.flush()

    assert wb.pending == 2
    assert (wb.failures, wb.flushes, wb.rows_written) == (1, 0, 0)
    assert wb.last_error is not None and "connection refused" in wb.last_error
    assert "1 devices and 1 events" in caplog.text
    assert "dialect=fake" in caplog.text

    wb.mark_dirty(keepalive(2.0))
    wb.add_event(e2)
    await wb.flush()

    assert fake.devices == {DEVICE_ID: keepalive(2.0)}
    assert fake.events == [e1, e2]
    assert (wb.failures, wb.flushes, wb.rows_written) == (1, 1, 3)
    assert wb.last_error is None
    assert wb.pending == 0


async def test_state_marked_during_failed_write_stays_newest() -> None:
    fake = FlakyStore(fail=1)
    wb = WriteBehind(fake)
    wb.mark_dirty(keepalive(1.0))
    fake.during_write = lambda: wb.mark_dirty(keepalive(3.0))

    with pytest.raises(StoreConnectionError):
        await wb.flush()
    fake.during_write = None
    await wb.flush()

    assert fake.devices == {DEVICE_ID: keepalive(3.0)}


async def test_background_task_retries_after_failure() -> None:
    fake = FlakyStore(fail=2)
    wb = WriteBehind(fake, interval=0.01)
    wb.start()
    wb.mark_dirty(keepalive(1.0))

    await asyncio.wait_for(fake.written.wait(), GUARD)
    await wb.stop()

    assert fake.attempts == 3
    assert wb.failures == 2
    assert fake.devices == {DEVICE_ID: keepalive(1.0)}


async def test_full_batch_does_not_cut_retry_pause_short() -> None:
    fake = FlakyStore(fail=1)
    wb = WriteBehind(fake, interval=3600.0, max_batch=1)
    wb.start()
    wb.add_event(StatusEvent(DEVICE_ID, 1.0, True, "registered"))
    await asyncio.wait_for(fake.attempted.wait(), GUARD)
    while wb.failures == 0:
        await asyncio.sleep(0)
    await asyncio.sleep(0)

    wb.add_event(StatusEvent(DEVICE_ID, 2.0, False, "expired"))
    for _ in range(5):
        await asyncio.sleep(0)

    assert fake.attempts == 1  # no retry storm: the next try waits for the interval
    await wb.stop()  # the final flush succeeds and writes both
    assert [e.at for e in fake.events] == [1.0, 2.0]


async def test_stop_with_failing_store_raises_and_keeps_items() -> None:
    fake = FlakyStore(fail=1)
    wb = WriteBehind(fake, interval=3600.0)
    wb.start()
    wb.mark_dirty(keepalive(1.0))

    with pytest.raises(StoreConnectionError):
        await wb.stop()

    assert wb.pending == 1
    await wb.flush()
    assert fake.devices == {DEVICE_ID: keepalive(1.0)}


async def test_cancelled_flush_requeues() -> None:
    fake = FlakyStore()
    fake.gate = asyncio.Event()
    wb = WriteBehind(fake)
    wb.mark_dirty(keepalive(1.0))
    task = asyncio.create_task(wb.flush())
    await asyncio.wait_for(fake.attempted.wait(), GUARD)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert wb.pending == 1
    fake.gate = None
    await wb.flush()
    assert fake.devices == {DEVICE_ID: keepalive(1.0)}


ops = st.lists(
    st.one_of(
        st.tuples(st.just("mark"), st.sampled_from([DEVICE_ID, OTHER_ID]), st.integers(0, 99)),
        st.tuples(st.just("event"), st.sampled_from([DEVICE_ID, OTHER_ID]), st.integers(0, 99)),
        st.tuples(st.just("flush"), st.booleans(), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_no_loss_under_random_failures(script: list[tuple[str, object, int]]) -> None:
    """Whatever fails in between, the final state is the last mark per device and every event
    in order."""

    async def run() -> None:
        fake = FlakyStore()
        wb = WriteBehind(fake)
        expected_devices: dict[str, DeviceRecord] = {}
        expected_events: list[StatusEvent] = []
        for op, arg, n in script:
            if op == "mark":
                assert isinstance(arg, str)
                expected_devices[arg] = keepalive(float(n), arg)
                wb.mark_dirty(keepalive(float(n), arg))
            elif op == "event":
                assert isinstance(arg, str)
                event = StatusEvent(arg, float(n), n % 2 == 0, "r")
                expected_events.append(event)
                wb.add_event(event)
            else:
                fake.fail = 1 if arg else 0
                try:
                    await wb.flush()
                except StoreConnectionError:
                    pass
        fake.fail = 0
        await wb.flush()
        assert fake.devices == expected_devices
        assert fake.events == expected_events
        assert wb.events_written == len(expected_events)

    asyncio.run(run())
