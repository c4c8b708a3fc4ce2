"""PTZCmd strings: the worked examples of notes §4.7 byte for byte, builders, decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gb28181.manscdp import (
    AuxCommand,
    CruiseAction,
    CruiseCommand,
    FiMove,
    ManscdpError,
    ManscdpSyntaxError,
    PresetAction,
    PresetCommand,
    PtzCommandError,
    PtzIntent,
    PtzMove,
    RawPtzCommand,
    ScanAction,
    ScanCommand,
    aux_off,
    aux_on,
    cruise_add_point,
    cruise_delete_point,
    cruise_dwell,
    cruise_speed,
    cruise_start,
    decode_ptz,
    fi_command,
    preset_call,
    preset_delete,
    preset_set,
    ptz_command,
    ptz_stop,
    scan_set_left,
    scan_set_right,
    scan_speed,
    scan_start,
)


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (ptz_stop(), "A50F0100000000B5"),
        (ptz_command(), "A50F0100000000B5"),
        (ptz_command(tilt=1, tilt_speed=0x80), "A50F01080080003D"),
        (ptz_command(pan=1, pan_speed=0x80), "A50F010180000036"),
        (ptz_command(zoom=1, zoom_speed=5), "A50F011000005015"),
        (preset_call(3), "A50F01820003003A"),
        (preset_set(3), "A50F018100030039"),
        (aux_on(1), "A50F018C01000042"),
    ],
)
def test_worked_examples(built: str, expected: str) -> None:
    assert built == expected


def _checksum_ok(text: str) -> bool:
    raw = bytes.fromhex(text)
    return sum(raw[:7]) & 0xFF == raw[7]


@pytest.mark.parametrize(
    ("built", "command", "data1", "data2", "byte7"),
    [
        (ptz_command(pan=-1, pan_speed=1), 0x02, 1, 0, 0x00),
        (ptz_command(tilt=-1, tilt_speed=2), 0x04, 0, 2, 0x00),
        (ptz_command(tilt=1), 0x08, 0, 0, 0x00),
        (ptz_command(zoom=-1, zoom_speed=15), 0x20, 0, 0, 0xF0),
        (ptz_command(pan=1, tilt=1, zoom=1, pan_speed=255, tilt_speed=255), 0x19, 255, 255, 0),
        (fi_command(focus=1, focus_speed=9), 0x41, 9, 0, 0),
        (fi_command(focus=-1), 0x42, 0, 0, 0),
        (fi_command(iris=1, iris_speed=7), 0x44, 0, 7, 0),
        (fi_command(iris=-1), 0x48, 0, 0, 0),
        (fi_command(), 0x40, 0, 0, 0),
        (preset_delete(255), 0x83, 0, 255, 0),
        (cruise_add_point(2, 5), 0x84, 2, 5, 0),
        (cruise_delete_point(2), 0x85, 2, 0, 0),
        (cruise_delete_point(2, 7), 0x85, 2, 7, 0),
        (cruise_speed(1, 0xABC), 0x86, 1, 0xBC, 0xA0),
        (cruise_dwell(1, 30), 0x87, 1, 30, 0),
        (cruise_start(3), 0x88, 3, 0, 0),
        (scan_start(1), 0x89, 1, 0, 0),
        (scan_set_left(1), 0x89, 1, 1, 0),
        (scan_set_right(1), 0x89, 1, 2, 0),
        (scan_speed(1, 0x123), 0x8A, 1, 0x23, 0x10),
        (aux_off(2), 0x8D, 2, 0, 0),
    ],
)
def test_builders(built: str, command: int, data1: int, data2: int, byte7: int) -> None:
    raw = bytes.fromhex(built)
    assert built == built.upper() and len(built) == 16
    assert raw[:3] == b"\xa5\x0f\x01"
    assert (raw[3], raw[4], raw[5], raw[6]) == (command, data1, data2, byte7)
    assert _checksum_ok(built)


def test_address_is_twelve_bits() -> None:
    text = ptz_command(address=0xABC)
    raw = bytes.fromhex(text)
    assert raw[2] == 0xBC and raw[6] == 0x0A and _checksum_ok(text)
    assert decode_ptz(text) == PtzMove(address=0xABC)


@pytest.mark.parametrize(
    "call",
    [
        lambda: ptz_command(pan=2),
        lambda: ptz_command(tilt=-2),
        lambda: ptz_command(pan_speed=256),
        lambda: ptz_command(zoom_speed=16),
        lambda: ptz_command(address=4096),
        lambda: fi_command(iris_speed=-1),
        lambda: preset_call(0),
        lambda: preset_set(256),
        lambda: cruise_add_point(1, 0),
        lambda: cruise_speed(1, 4096),
        lambda: scan_speed(256, 1),
        lambda: aux_on(300),
        lambda: RawPtzCommand(1, 2, 3, 16).encode(),
    ],
)
def test_builder_errors(call: object) -> None:
    with pytest.raises(PtzCommandError):
        call()  # type: ignore[operator]


def test_decode_worked_examples() -> None:
    assert decode_ptz("A50F0100000000B5") == PtzMove()
    assert decode_ptz("a50f01080080003d") == PtzMove(tilt=1, tilt_speed=0x80)
    assert decode_ptz(" A50F010180000036\r\n") == PtzMove(pan=1, pan_speed=0x80)
    assert decode_ptz("A50F011000005015") == PtzMove(zoom=1, zoom_speed=5)
    assert decode_ptz("A50F01820003003A") == PresetCommand(PresetAction.CALL, 3)
    assert decode_ptz("A50F018100030039") == PresetCommand(PresetAction.SET, 3)
    assert decode_ptz("A50F018C01000042") == AuxCommand(True, 1)


def test_decode_wvp_preset_with_data1() -> None:
    # WVP puts 01 in byte 5 of preset commands; it means nothing.
    text = "A50F0182010300" + f"{(0xA5 + 0x0F + 0x01 + 0x82 + 0x01 + 0x03) & 0xFF:02X}"
    assert decode_ptz(text) == PresetCommand(PresetAction.CALL, 3)


@pytest.mark.parametrize(
    "text",
    [
        "A50F0100000000B",  # short
        "A50F0100000000B5FF",  # long
        "A50F01000000ZZB5",  # not hex
        "A60F0100000000B6",  # header
        "A5000100000000A6",  # version nibble
        "A50F0100000000B6",  # checksum
    ],
)
def test_decode_errors(text: str) -> None:
    with pytest.raises(ManscdpSyntaxError):
        decode_ptz(text)


def _framed(command: int, data1: int = 0, data2: int = 0, byte7: int = 0) -> str:
    raw = bytes([0xA5, 0x0F, 0x01, command, data1, data2, byte7])
    return (raw + bytes([sum(raw) & 0xFF])).hex().upper()


@pytest.mark.parametrize("command", [0x03, 0x0C, 0x30, 0x43, 0x4C])
def test_opposite_directions_rejected(command: int) -> None:
    with pytest.raises(ManscdpSyntaxError):
        decode_ptz(_framed(command))


def test_checksum_can_be_ignored() -> None:
    assert decode_ptz("A50F0108008000FF", verify_checksum=False) == PtzMove(tilt=1, tilt_speed=0x80)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        (_framed(0x8B, 1, 2, 0x30), RawPtzCommand(0x8B, 1, 2, 3)),
        (_framed(0x81, 0, 0), RawPtzCommand(0x81, 0, 0, 0)),  # preset 0 does not exist
        (_framed(0x89, 1, 9), RawPtzCommand(0x89, 1, 9, 0)),
        (_framed(0x84, 1, 0), RawPtzCommand(0x84, 1, 0, 0)),
        (_framed(0x88, 1, 0), CruiseCommand(CruiseAction.START, 1)),
        (_framed(0x8A, 2, 0x34, 0x50), ScanCommand(ScanAction.SPEED, 2, value=0x534)),
        (_framed(0x87, 2, 0x34, 0x10), CruiseCommand(CruiseAction.DWELL, 2, value=0x134)),
        (_framed(0x45, 1, 2), FiMove(focus=1, iris=1, focus_speed=1, iris_speed=2)),
    ],
)
def test_decode_other_commands(text: str, intent: PtzIntent) -> None:
    assert decode_ptz(text) == intent
    assert decode_ptz(intent.encode()) == intent


_addr = st.integers(0, 0xFFF)
_dir = st.integers(-1, 1)
_byte = st.integers(0, 255)
_intents: st.SearchStrategy[PtzIntent] = st.one_of(
    st.builds(PtzMove, _dir, _dir, _dir, _byte, _byte, st.integers(0, 15), _addr),
    st.builds(FiMove, _dir, _dir, _byte, _byte, _addr),
    st.builds(PresetCommand, st.sampled_from(PresetAction), st.integers(1, 255), _addr),
    st.builds(
        CruiseCommand,
        st.just(CruiseAction.ADD_POINT),
        _byte,
        st.integers(1, 255),
        st.just(0),
        _addr,
    ),
    st.builds(CruiseCommand, st.just(CruiseAction.DELETE_POINT), _byte, _byte, st.just(0), _addr),
    st.builds(
        CruiseCommand,
        st.sampled_from([CruiseAction.SPEED, CruiseAction.DWELL]),
        _byte,
        st.just(0),
        st.integers(0, 0xFFF),
        _addr,
    ),
    st.builds(CruiseCommand, st.just(CruiseAction.START), _byte, st.just(0), st.just(0), _addr),
    st.builds(
        ScanCommand,
        st.sampled_from([ScanAction.START, ScanAction.SET_LEFT, ScanAction.SET_RIGHT]),
        _byte,
        st.just(0),
        _addr,
    ),
    st.builds(ScanCommand, st.just(ScanAction.SPEED), _byte, st.integers(0, 0xFFF), _addr),
    st.builds(AuxCommand, st.booleans(), _byte, _addr),
)


@given(_intents)
def test_intent_round_trip(intent: PtzIntent) -> None:
    text = intent.encode()
    assert len(text) == 16 and _checksum_ok(text)
    assert decode_ptz(text) == intent


@given(st.text(max_size=20))
def test_decode_arbitrary_text_raises_only_manscdp_error(text: str) -> None:
    try:
        decode_ptz(text)
    except ManscdpError:
        pass


@given(st.binary(min_size=7, max_size=7))
def test_every_well_framed_command_decodes_or_is_rejected_cleanly(raw7: bytes) -> None:
    raw = bytes([0xA5, 0x0F]) + raw7[2:]
    text = (raw + bytes([sum(raw) & 0xFF])).hex()
    try:
        intent = decode_ptz(text)
    except ManscdpSyntaxError:
        return
    assert decode_ptz(intent.encode()) == intent
