"""QueryCorrelator: matching Responses to queries by (DeviceID, CmdType, SN)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gb28181 import manscdp
from gb28181.correlator import (
    CorrelatorConfig,
    CorrelatorError,
    QueryCorrelator,
    QueryDone,
    ResponseUnmatched,
)
from gb28181.manscdp import (
    CatalogItem,
    CatalogResponse,
    ConfigDownloadResponse,
    DeviceInfoResponse,
    PresetItem,
    PresetQueryResponse,
    RecordInfoResponse,
    RecordItem,
    ResultResponse,
)
from tests.manscdp.helpers import body

NVR = "34020000001180000001"
CAM = "34020000001320000002"


def chunk(
    ids: range | list[int], *, sn: int = 1, sum_num: int = 10, dev: str = NVR
) -> CatalogResponse:
    items = tuple(CatalogItem(device_id=f"3402000000131{n:07d}") for n in ids)
    return CatalogResponse(sn=sn, device_id=dev, sum_num=sum_num, num=len(items), items=items)


def done_of(events: Sequence[object]) -> QueryDone:
    assert len(events) == 1
    assert isinstance(events[0], QueryDone)
    return events[0]


def test_real_hikvision_catalog_completes() -> None:
    message = manscdp.decode(body("hikvision_catalog-response_1"))
    corr = QueryCorrelator()
    corr.expect(CAM, "Catalog", 10021, 0.0, timeout=30)

    done = done_of(corr.receive(message, CAM, 0.1))
    assert (done.device_id, done.sn, done.partial, done.sum_num) == (CAM, 10021, False, 2)
    assert [i.device_id for i in done.items] == ["34020000001310000001", "34020000001340000001"]
    assert done.reason == "2 of 2 items"
    assert done.message is message
    assert corr.pending_count == 0
    assert corr.get_timer() is None


def test_real_dahua_catalog_completes() -> None:
    message = manscdp.decode(body("dahua_catalog-response_2"))
    corr = QueryCorrelator()
    corr.expect(message.device_id, "catalog", message.sn, 0.0, timeout=30)

    done = done_of(corr.receive(message, message.device_id, 0.0))
    assert len(done.items) == 1


def test_chunks_dedupe_and_complete_at_sum_num() -> None:
    corr = QueryCorrelator()
    corr.expect(NVR, "Catalog", 1, 0.0, timeout=30)

    assert corr.receive(chunk(range(0, 4)), NVR, 0.1) == []
    assert corr.receive(chunk(range(0, 4)), NVR, 0.2) == []  # retransmitted chunk
    assert corr.receive(chunk(range(4, 8)), NVR, 0.3) == []
    done = done_of(corr.receive(chunk(range(6, 10)), NVR, 0.4))

    assert len(done.items) == 10
    assert len(done.messages) == 4
    assert not done.partial
    assert (done.started, done.finished) == (0.0, 0.4)


def test_sum_num_zero_completes_at_once() -> None:
    corr = QueryCorrelator()
    corr.expect(NVR, "Catalog", 1, 0.0, timeout=30)

    done = done_of(corr.receive(chunk([], sum_num=0), NVR, 0.1))
    assert done.items == ()
    assert not done.partial


def test_timeout_returns_partial_with_reason() -> None:
    corr = QueryCorrelator()
    handle = corr.expect(NVR, "Catalog", 1, 10.0, timeout=30)
    assert handle.deadline == 40.0
    assert corr.get_timer() == 40.0
    corr.receive(chunk(range(37), sum_num=137), NVR, 11.0)

    assert corr.handle_timer(39.9) == []
    done = done_of(corr.handle_timer(40.0))
    assert done.partial
    assert done.reason == "timeout: 37 of 137 items"
    assert len(done.items) == 37
    assert corr.get_timer() is None


def test_timeout_without_any_response() -> None:
    corr = QueryCorrelator()
    corr.expect(CAM, "DeviceInfo", 5, 0.0, timeout=5)

    done = done_of(corr.handle_timer(5.0))
    assert done.partial
    assert done.reason == "timeout: no response"
    assert done.message is None


def test_cmd_type_matches_case_insensitively() -> None:
    corr = QueryCorrelator()
    corr.expect(CAM, "deviceinfo", 3, 0.0, timeout=5)

    done = done_of(corr.receive(DeviceInfoResponse(sn=3, device_id=CAM), CAM, 0.0))
    assert done.cmd_type == "deviceinfo"
    assert done.reason == "answered"


def test_match_by_body_device_id_not_sender() -> None:
    # Queried a channel under an NVR: the NVR answers from its own ID, the body names the channel.
    corr = QueryCorrelator()
    corr.expect(CAM, "RecordInfo", 9, 0.0, timeout=5)
    response = RecordInfoResponse(sn=9, device_id=CAM, sum_num=0)

    assert not done_of(corr.receive(response, NVR, 0.1)).partial


def test_sender_id_fallback() -> None:
    corr = QueryCorrelator()
    corr.expect(NVR, "DeviceStatus", 4, 0.0, timeout=5)
    response = ResultResponse(cmd_type="DeviceStatus", sn=4, device_id="some-other-id")

    done = done_of(corr.receive(response, NVR, 0.1))
    assert done.device_id == NVR


def test_response_before_expect_is_held_and_replayed() -> None:
    corr = QueryCorrelator(CorrelatorConfig(hold_time=2.0))
    assert corr.receive(chunk(range(0, 5)), NVR, 0.0) == []
    assert corr.held_count == 1
    assert corr.get_timer() == 2.0

    handle = corr.expect(NVR, "Catalog", 1, 0.5, timeout=30)
    assert handle.done is None
    assert corr.held_count == 0
    done = done_of(corr.receive(chunk(range(5, 10)), NVR, 0.6))
    assert len(done.items) == 10


def test_held_responses_can_complete_on_expect() -> None:
    corr = QueryCorrelator()
    corr.receive(chunk(range(10)), NVR, 0.0)
    corr.receive(chunk(range(10)), NVR, 0.0)  # duplicate, discarded once complete

    handle = corr.expect(NVR, "Catalog", 1, 0.1, timeout=30)
    assert handle.done is not None
    assert len(handle.done.items) == 10
    assert corr.pending_count == 0
    assert corr.held_count == 0
    assert corr.get_timer() is None


def test_unclaimed_held_response_is_reported() -> None:
    corr = QueryCorrelator(CorrelatorConfig(hold_time=2.0))
    message = DeviceInfoResponse(sn=77, device_id=CAM)
    corr.receive(message, CAM, 1.0)

    assert corr.handle_timer(2.9) == []
    (event,) = corr.handle_timer(3.0)
    assert isinstance(event, ResponseUnmatched)
    assert (event.message, event.sender_id, event.reason) == (message, CAM, "no pending query")
    assert corr.held_count == 0


def test_held_responses_expire_individually() -> None:
    corr = QueryCorrelator(CorrelatorConfig(hold_time=2.0))
    corr.receive(chunk(range(2)), NVR, 0.0)
    corr.receive(chunk(range(2, 4)), NVR, 1.0)

    assert len(corr.handle_timer(2.0)) == 1
    assert corr.held_count == 1
    handle = corr.expect(NVR, "Catalog", 1, 2.5, timeout=30)
    assert handle.done is None
    assert len(done_of(corr.handle_timer(32.5)).items) == 2


def test_hold_buffer_is_bounded() -> None:
    corr = QueryCorrelator(CorrelatorConfig(max_held=2))
    corr.receive(chunk([1], sn=1), NVR, 0.0)
    corr.receive(chunk([1], sn=2), NVR, 0.0)

    (event,) = corr.receive(chunk([1], sn=3), NVR, 0.0)
    assert isinstance(event, ResponseUnmatched)
    assert "full" in event.reason


def test_not_a_response_is_reported() -> None:
    notify = replace(chunk([1]), root=manscdp.Root.NOTIFY)
    (event,) = QueryCorrelator().receive(notify, NVR, 0.0)
    assert isinstance(event, ResponseUnmatched)
    assert "Notify" in event.reason


def test_allocate_sn_distinct_for_concurrent_identical_queries() -> None:
    corr = QueryCorrelator(CorrelatorConfig(first_sn=100))
    first = corr.allocate_sn(CAM, "RecordInfo")
    corr.expect(CAM, "RecordInfo", first, 0.0, timeout=5)
    second = corr.allocate_sn(CAM, "RecordInfo")
    corr.expect(CAM, "RecordInfo", second, 0.0, timeout=5)

    assert first == 100
    assert second != first


def test_allocate_sn_skips_pending_and_wraps() -> None:
    corr = QueryCorrelator(CorrelatorConfig(first_sn=999_999_999))
    corr.expect(CAM, "Catalog", 1, 0.0, timeout=5)

    assert corr.allocate_sn(CAM, "catalog") == 999_999_999
    assert corr.allocate_sn(CAM, "CATALOG") == 2  # wrapped, 1 is in use


def test_expect_twice_and_max_pending() -> None:
    corr = QueryCorrelator(CorrelatorConfig(max_pending=1))
    corr.expect(CAM, "Catalog", 1, 0.0, timeout=5)
    with pytest.raises(CorrelatorError, match="already pending"):
        corr.expect(CAM, "catalog", 1, 0.0, timeout=5)
    with pytest.raises(CorrelatorError, match="too many"):
        corr.expect(CAM, "Catalog", 2, 0.0, timeout=5)


def test_max_items_truncates() -> None:
    corr = QueryCorrelator(CorrelatorConfig(max_items=5))
    corr.expect(NVR, "Catalog", 1, 0.0, timeout=30)

    done = done_of(corr.receive(chunk(range(8), sum_num=100), NVR, 0.1))
    assert done.partial
    assert done.reason == "truncated: kept 5 of 100 items"
    assert len(done.items) == 5


def test_items_without_identity_are_dropped_and_counted() -> None:
    corr = QueryCorrelator()
    corr.expect(NVR, "Catalog", 1, 0.0, timeout=30)
    message = CatalogResponse(
        sn=1, device_id=NVR, sum_num=2, items=(CatalogItem(), CatalogItem(device_id="1"))
    )
    corr.receive(message, NVR, 0.0)

    assert done_of(corr.handle_timer(30.0)).reason == "timeout: 1 of 2 items, 1 dropped"


def test_error_result_completes() -> None:
    corr = QueryCorrelator()
    corr.expect(CAM, "RecordInfo", 1, 0.0, timeout=30)
    response = RecordInfoResponse(sn=1, device_id=CAM, result="ERROR")

    done = done_of(corr.receive(response, CAM, 0.0))
    assert done.result == "ERROR"
    assert not done.partial


def test_records_dedupe_by_file_and_time() -> None:
    corr = QueryCorrelator()
    corr.expect(CAM, "RecordInfo", 1, 0.0, timeout=30)
    a = RecordItem(device_id=CAM, start_time="2024-05-01T00:00:00", end_time="2024-05-01T01:00:00")
    b = RecordItem(device_id=CAM, start_time="2024-05-01T01:00:00", end_time="2024-05-01T02:00:00")

    corr.receive(RecordInfoResponse(sn=1, device_id=CAM, sum_num=2, items=(a,)), CAM, 0.0)
    corr.receive(RecordInfoResponse(sn=1, device_id=CAM, sum_num=2, items=(a,)), CAM, 0.0)
    done = done_of(
        corr.receive(RecordInfoResponse(sn=1, device_id=CAM, sum_num=2, items=(b,)), CAM, 0.0)
    )
    assert done.items == (a, b)


def test_preset_query_without_sum_num_is_one_response() -> None:
    corr = QueryCorrelator()
    corr.expect(CAM, "PresetQuery", 1, 0.0, timeout=30)
    items = (PresetItem(preset_id=1, preset_name="gate"), PresetItem(preset_id=2))
    done = done_of(corr.receive(PresetQueryResponse(sn=1, device_id=CAM, items=items), CAM, 0.0))

    assert done.items == items
    assert done.sum_num is None
    assert not done.partial


def test_config_download_counts_parts() -> None:
    corr = QueryCorrelator()
    corr.expect(CAM, "ConfigDownload", 1, 0.0, timeout=30, expected_parts=2)
    part = ConfigDownloadResponse(sn=1, device_id=CAM, result="OK")

    assert corr.receive(part, CAM, 0.0) == []
    done = done_of(corr.receive(part, CAM, 0.1))
    assert done.reason == "2 of 2 parts"
    assert done.result == "OK"


def test_config_download_timeout_reports_parts() -> None:
    corr = QueryCorrelator()
    corr.expect(CAM, "ConfigDownload", 1, 0.0, timeout=30, expected_parts=3)
    corr.receive(ConfigDownloadResponse(sn=1, device_id=CAM), CAM, 0.0)

    assert done_of(corr.handle_timer(30.0)).reason == "timeout: 1 of 3 parts"


def test_explicit_single_part_for_multipart_kind() -> None:
    corr = QueryCorrelator()
    corr.expect(NVR, "Catalog", 1, 0.0, timeout=30, multipart=False)

    assert not done_of(corr.receive(chunk(range(2)), NVR, 0.0)).partial


def test_cancel() -> None:
    corr = QueryCorrelator()
    corr.expect(NVR, "Catalog", 1, 0.0, timeout=30)
    corr.receive(chunk(range(3)), NVR, 0.0)

    done = corr.cancel(NVR, "CATALOG", 1, 1.0)
    assert done is not None
    assert done.partial
    assert done.reason == "cancelled: 3 of 10 items"
    assert corr.cancel(NVR, "Catalog", 1, 1.0) is None
    assert corr.get_timer() is None
    assert corr.handle_timer(100.0) == []


def test_late_chunk_after_completion_is_held_then_reported() -> None:
    corr = QueryCorrelator(CorrelatorConfig(hold_time=1.0))
    corr.expect(NVR, "Catalog", 1, 0.0, timeout=30)
    corr.receive(chunk(range(10)), NVR, 0.0)

    assert corr.receive(chunk(range(2)), NVR, 0.5) == []
    (event,) = corr.handle_timer(1.5)
    assert isinstance(event, ResponseUnmatched)


# -- property: arbitrary interleavings ---------------------------------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("expect"), st.integers(1, 3), st.floats(0.5, 20)),
        st.tuples(
            st.just("chunk"),
            st.integers(1, 3),
            st.lists(st.integers(0, 12), max_size=6),
            st.integers(0, 12),
        ),
        st.tuples(st.just("tick"), st.floats(0, 10)),
        st.tuples(st.just("cancel"), st.integers(1, 3)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(_ops)
def test_random_interleavings_never_raise_or_complete_twice(ops: list[tuple[object, ...]]) -> None:
    corr = QueryCorrelator(CorrelatorConfig(hold_time=1.0, max_items=8, max_held=5))
    now = 0.0
    live: set[int] = set()
    finished: list[int] = []
    unmatched = 0

    def collect(events: Sequence[object]) -> None:
        nonlocal unmatched
        for event in events:
            if isinstance(event, QueryDone):
                assert event.sn in live, "completed a query that is not pending"
                live.discard(event.sn)
                finished.append(event.sn)
                assert len({getattr(i, "device_id", None) for i in event.items}) == len(event.items)
                assert len(event.items) <= 8
                if not event.partial:
                    assert event.sum_num is None or len(event.items) >= min(event.sum_num, 8)
            else:
                assert isinstance(event, ResponseUnmatched)
                unmatched += 1

    for op in ops:
        if op[0] == "expect":
            _, sn, timeout = op
            assert isinstance(sn, int) and isinstance(timeout, float)
            if sn in live:
                with pytest.raises(CorrelatorError):
                    corr.expect(NVR, "Catalog", sn, now, timeout=timeout)
                continue
            live.add(sn)
            handle = corr.expect(NVR, "Catalog", sn, now, timeout=timeout)
            if handle.done is not None:
                collect([handle.done])
        elif op[0] == "chunk":
            _, sn, ids, total = op
            assert isinstance(sn, int) and isinstance(ids, list) and isinstance(total, int)
            collect(corr.receive(chunk(ids, sn=sn, sum_num=total), NVR, now))
        elif op[0] == "tick":
            delta = op[1]
            assert isinstance(delta, float)
            now += delta
            collect(corr.handle_timer(now))
        else:
            sn = op[1]
            assert isinstance(sn, int)
            done = corr.cancel(NVR, "Catalog", sn, now)
            if done is not None:
                collect([done])
        assert corr.pending_count == len(live)
        timer = corr.get_timer()
        assert timer is None or timer >= 0

    # Draining all timers ends every query and empties the hold buffer.
    collect(corr.handle_timer(now + 1e6))
    assert live == set()
    assert corr.pending_count == 0
    assert corr.held_count == 0
    assert corr.get_timer() is None
