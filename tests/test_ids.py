"""ID ranges and allocation requests (sans-IO)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gb28181.ids import (
    MAX_ISSUE,
    IdAllocator,
    IdError,
    IdRange,
    check_note,
    compose_id,
    parse_ranges,
)


def _raw(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "department": "交警支队",
        "prefix": "3402000000",
        "types": ["131", "132"],
        "network": "0",
        "serial_start": 1,
        "serial_end": 500,
    }
    raw.update(over)
    return raw


def test_compose_id_pads_the_serial() -> None:
    assert compose_id("3402000000", "132", "0", 7) == "34020000001320000007"


def test_parse_ranges_builds_ranges_and_blocks() -> None:
    (r,) = parse_ranges([_raw(types=["131", "132", "131"])])
    assert r == IdRange("交警支队", "3402000000", ("131", "132"), "0", 1, 500)
    assert r.block("132") == ("34020000001320000001", "34020000001320000500")
    assert r.contains("34020000001310000500")
    assert not r.contains("34020000001310000501")
    assert not r.contains("34020000001180000001")  # type not allowed
    assert not r.contains("34020000001315000001")  # other network
    assert not r.contains("3402")


def test_defaults_cover_the_whole_serial_space() -> None:
    (r,) = parse_ranges([{"department": "d", "prefix": "3402000000", "types": ["200"]}])
    assert (r.network, r.serial_start, r.serial_end) == ("0", 1, 999_999)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"prefix": "34020000"}, "ids.ranges[0].prefix: must be 10 digits"),
        ({"prefix": True}, "ids.ranges[0].prefix"),
        ({"types": []}, "ids.ranges[0].types"),
        ({"types": ["13"]}, "ids.ranges[0].types: must be 3 digits"),
        ({"network": "00"}, "ids.ranges[0].network"),
        ({"serial_start": 10, "serial_end": 9}, "above serial_end"),
        ({"serial_end": 1_000_000}, "serial_end"),
        ({"serial_end": "9"}, "serial_end"),
        ({"department": " "}, "department"),
        ({"department": "x" * 101}, "department"),
        ({"colour": "red"}, "ids.ranges[0].colour: unknown key"),
    ],
)
def test_bad_ranges_name_the_key(over: dict[str, Any], message: str) -> None:
    with pytest.raises(IdError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_ranges([_raw(**over)])


def test_ranges_must_be_a_list_of_tables() -> None:
    with pytest.raises(IdError, match="list of tables"):
        parse_ranges("x")
    with pytest.raises(IdError, match="must be a table"):
        parse_ranges([1])


def test_overlapping_ranges_are_refused() -> None:
    with pytest.raises(IdError, match=r"ids.ranges\[1\]: overlaps ids.ranges\[0\]"):
        parse_ranges([_raw(), _raw(department="城管", types=["132"], serial_start=500)])
    # Same serials, but other types or another network: no overlap.
    parse_ranges([_raw(), _raw(department="城管", types=["118"])])
    parse_ranges([_raw(), _raw(department="城管", network="5")])


def test_blocks_for_a_department_and_type() -> None:
    alloc = IdAllocator(
        parse_ranges(
            [
                _raw(serial_end=10),
                _raw(prefix="3401000000", serial_end=999),
                _raw(department="城管", types=["200"], serial_end=5),
            ]
        )
    )
    assert alloc.departments == ["交警支队", "城管"]
    assert alloc.blocks("交警支队", "132", 5) == [
        ("34020000001320000001", "34020000001320000010"),
        ("34010000001320000001", "34010000001320000999"),
    ]
    # A range too small for the request is skipped.
    assert alloc.blocks("交警支队", "132", 11) == [("34010000001320000001", "34010000001320000999")]
    assert alloc.blocks("城管", "200", 6) == []
    assert alloc.owner("34020000002000000003") == "城管"
    assert alloc.owner("34020000002000000009") is None


@pytest.mark.parametrize(
    ("department", "type_code", "count", "message"),
    [
        ("nobody", "132", 1, "no ID range is configured"),
        ("交警支队", "200", 1, "not allowed"),
        ("交警支队", "13x", 1, "3-digit"),
        ("交警支队", "132", 0, "count"),
        ("交警支队", "132", MAX_ISSUE + 1, "count"),
        ("交警支队", "132", True, "count"),
    ],
)
def test_bad_requests(department: str, type_code: str, count: Any, message: str) -> None:
    alloc = IdAllocator(parse_ranges([_raw()]))
    with pytest.raises(IdError, match=message):
        alloc.blocks(department, type_code, count)


def test_check_note() -> None:
    assert check_note(None) == ""
    assert check_note("新建卡口") == "新建卡口"
    with pytest.raises(IdError):
        check_note(3)
    with pytest.raises(IdError):
        check_note("x" * 501)


@given(st.lists(st.dictionaries(st.text(max_size=12), st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=12),
    st.lists(st.text(max_size=4), max_size=3)), max_size=7), max_size=3))  # fmt: skip
def test_arbitrary_config_raises_only_id_error(raw: list[dict[str, Any]]) -> None:
    try:
        parse_ranges(raw)
    except IdError:
        pass
