"""Row conversion helpers shared by both backends."""

from __future__ import annotations

import dataclasses
import math

import pytest

from gb28181.store import DeviceRecord, StoreDataError
from gb28181.store._rows import (
    DEVICE_COLUMNS,
    check_limit,
    decode_extra,
    device_from_row,
    encode_extra,
    latest_per_device,
)


def test_columns_follow_record_fields() -> None:
    assert tuple(f.name for f in dataclasses.fields(DeviceRecord)) == DEVICE_COLUMNS


def test_latest_per_device_keeps_last() -> None:
    a1 = DeviceRecord("a", "device", name="1")
    b = DeviceRecord("b", "device")
    a2 = DeviceRecord("a", "device", name="2")

    assert latest_per_device([a1, b, a2]) == [a2, b]


def test_encode_extra_compact_utf8() -> None:
    record = DeviceRecord("a", "device", extra={"名": "东门", "n": [1, 2]})

    assert encode_extra(record, operation="test", dialect="sqlite") == '{"名":"东门","n":[1,2]}'


@pytest.mark.parametrize("bad", [{"s": {1}}, {"nan": math.nan}, {"obj": object()}])
def test_encode_extra_rejects(bad: dict[str, object]) -> None:
    record = DeviceRecord("34020000001320000001", "device", extra=bad)

    with pytest.raises(StoreDataError, match=r"34020000001320000001.*not JSON-serialisable"):
        encode_extra(record, operation="test", dialect="sqlite")


def test_decode_extra() -> None:
    assert decode_extra('{"a":1}', "d", operation="test", dialect="sqlite") == {"a": 1}
    assert decode_extra("", "d", operation="test", dialect="sqlite") == {}
    assert decode_extra(None, "d", operation="test", dialect="sqlite") == {}


@pytest.mark.parametrize(("text", "message"), [("{bad", "not valid JSON"), ("[1]", "list")])
def test_decode_extra_rejects(text: str, message: str) -> None:
    with pytest.raises(StoreDataError, match=message):
        decode_extra(text, "d", operation="test", dialect="sqlite")


def test_device_from_row_normalises_types() -> None:
    row = ("a", "device", "", None, "UDP", "", "", 5060, 0, 1, None, 1, "", "", "GB2312", "{}")

    record = device_from_row(row, operation="test", dialect="sqlite")

    assert record.online is True
    assert isinstance(record.registered_at, float)
    assert record.last_keepalive is None


def test_check_limit() -> None:
    assert check_limit(0, operation="test", dialect="sqlite") == 0
    with pytest.raises(StoreDataError):
        check_limit(-5, operation="test", dialect="sqlite")
