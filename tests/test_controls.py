"""Control builders: operator intent to DeviceControl, validation errors as ControlError."""

from __future__ import annotations

from typing import Any

import pytest

from gb28181 import manscdp
from gb28181.controls import CONTROL_BUILDERS, ControlError, build_control

CHANNEL = "34020000001320000001"


def test_ptz_directions_build_the_standard_byte_strings() -> None:
    _ch, msg = build_control("ptz", {"direction": "stop"})
    assert msg.ptz_cmd == "A50F0100000000B5"
    _ch, msg = build_control("ptz", {"direction": "left", "speed": 128})
    assert msg.ptz_cmd is not None
    intent = manscdp.decode_ptz(msg.ptz_cmd)
    assert intent == manscdp.PtzMove(pan=-1, pan_speed=128)
    _ch, msg = build_control("ptz", {"direction": "zoomin", "zoom_speed": 5})
    assert msg.ptz_cmd is not None
    assert manscdp.decode_ptz(msg.ptz_cmd) == manscdp.PtzMove(zoom=1, zoom_speed=5)
    ch, msg = build_control("ptz", {"direction": "up", "stop": True, "channel": CHANNEL})
    assert ch == CHANNEL and msg.ptz_cmd == manscdp.ptz_stop()


@pytest.mark.parametrize(
    ("name", "params", "check"),
    [
        ("preset", {"action": "call", "index": 3}, lambda m: m.ptz_cmd == manscdp.preset_call(3)),
        ("preset", {"action": "set", "index": 9}, lambda m: m.ptz_cmd == manscdp.preset_set(9)),
        ("aux", {"switch": 1, "on": False}, lambda m: m.ptz_cmd == manscdp.aux_off(1)),
        ("reboot", {}, lambda m: m.tele_boot == "Boot"),
        ("record", {"start": False}, lambda m: m.record_cmd == "StopRecord"),
        ("record", {"stream": 1}, lambda m: m.record_cmd == "Record" and m.stream_number == 1),
        ("guard", {"set": False}, lambda m: m.guard_cmd == "ResetGuard"),
        ("reset-alarm", {"alarm_method": "2"},
         lambda m: m.alarm_cmd == "ResetAlarm" and m.info.alarm_method == "2"),
        ("reset-alarm", {}, lambda m: m.alarm_cmd == "ResetAlarm" and m.info is None),
        ("keyframe", {}, lambda m: m.iframe_cmd == "Send"),
        ("home-position", {"preset": 4},
         lambda m: m.home_position == manscdp.HomePosition(enabled=1, reset_time=60,
                                                           preset_index=4)),
        ("home-position", {"enabled": False},
         lambda m: m.home_position == manscdp.HomePosition(enabled=0)),
    ],
)  # fmt: skip
def test_each_control_builds_its_command(name: str, params: dict[str, Any], check: Any) -> None:
    _ch, msg = build_control(name, params)
    assert check(msg)
    # What we build encodes and decodes back to the same message.
    assert manscdp.decode(manscdp.encode(msg)) == msg


@pytest.mark.parametrize(
    ("name", "params", "reason"),
    [
        ("ptz", {"direction": "sideways"}, "direction must be one of"),
        ("ptz", {"direction": "left", "speed": 256}, "speed must be between 0 and 255"),
        ("ptz", {"direction": "left", "speed": True}, "speed must be an integer"),
        ("preset", {"index": 0}, "index must be between 1 and 255"),
        ("preset", {"action": "jump", "index": 1}, "action must be"),
        ("preset", {}, "index is required"),
        ("aux", {"switch": 1, "on": "yes"}, "on must be true or false"),
        ("reboot", {"channel": CHANNEL}, "addresses the device"),
        ("reset-alarm", {"alarm_type": "<x>"}, "alphanumeric"),
        ("ptz", {"channel": "123"}, "20-digit"),
        ("ptz", [], "JSON object"),
        ("teleport", {}, "unknown control"),
    ],
)
def test_bad_input_is_a_control_error(name: str, params: Any, reason: str) -> None:
    with pytest.raises(ControlError, match=reason):
        build_control(name, params)


def test_every_api_control_has_a_builder() -> None:
    assert set(CONTROL_BUILDERS) == {
        "ptz", "preset", "aux", "reboot", "record", "guard", "reset-alarm", "keyframe",
        "home-position",
    }  # fmt: skip
