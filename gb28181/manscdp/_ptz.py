"""PTZCmd: the 8-byte front-end command of DeviceControl, as 16 upper-case hex characters.

GB/T 28181-2016 Annex A.3 (notes §4.7). Byte layout::

    1 A5 | 2 version<<4 | (0xA + 0x5 + version) % 16 | 3 address low 8 bits | 4 command
    5 data1 | 6 data2 | 7 data3 (high nibble) | address high 4 bits (low nibble) | 8 checksum

The checksum is the sum of bytes 1-7 modulo 256. Command byte families:

* ``00xxxxxx`` PTZ: bit0 right, bit1 left, bit2 down, bit3 up, bit4 zoom in, bit5 zoom out;
  data1 pan speed, data2 tilt speed, data3 zoom speed (0-15). All clear = stop.
* ``0100xxxx`` FI: bit0 focus far, bit1 focus near, bit2 iris open, bit3 iris close; data1 focus
  speed, data2 iris speed.
* ``81``/``82``/``83`` preset set/call/delete (data2 = preset 1-255);
  ``84``-``88`` cruise; ``89``/``8A`` scan; ``8C``/``8D`` auxiliary switch on/off.

Intent classes (``PtzMove``, ``FiMove``, ``PresetCommand``, ``CruiseCommand``, ``ScanCommand``,
``AuxCommand``, ``RawPtzCommand``) each ``encode()`` to the string; ``decode_ptz`` maps a string
back to one of them. The ``ptz_command``/``preset_call``/... helpers build strings directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ._errors import ManscdpSyntaxError, PtzCommandError

__all__ = [
    "AuxCommand",
    "CruiseAction",
    "CruiseCommand",
    "FiMove",
    "PresetAction",
    "PresetCommand",
    "PtzIntent",
    "PtzMove",
    "RawPtzCommand",
    "ScanAction",
    "ScanCommand",
    "aux_off",
    "aux_on",
    "cruise_add_point",
    "cruise_delete_point",
    "cruise_dwell",
    "cruise_speed",
    "cruise_start",
    "decode_ptz",
    "fi_command",
    "preset_call",
    "preset_delete",
    "preset_set",
    "ptz_command",
    "ptz_stop",
    "scan_set_left",
    "scan_set_right",
    "scan_speed",
    "scan_start",
]

_HEADER = 0xA5
_VERSION = 0

# PTZ bits
_RIGHT, _LEFT, _DOWN, _UP, _ZOOM_IN, _ZOOM_OUT = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
# FI bits
_FOCUS_FAR, _FOCUS_NEAR, _IRIS_OPEN, _IRIS_CLOSE = 0x01, 0x02, 0x04, 0x08


class PresetAction(Enum):
    SET = 0x81
    CALL = 0x82
    DELETE = 0x83


class CruiseAction(Enum):
    ADD_POINT = 0x84
    DELETE_POINT = 0x85
    SPEED = 0x86
    DWELL = 0x87
    START = 0x88


class ScanAction(Enum):
    START = 0
    SET_LEFT = 1
    SET_RIGHT = 2
    SPEED = 3  # command 0x8A


def _check(name: str, value: int, low: int, high: int) -> int:
    if not isinstance(value, int) or not low <= value <= high:
        raise PtzCommandError(f"{name} must be an integer in {low}..{high}, not {value!r}")
    return value


def _frame(command: int, data1: int, data2: int, data3: int, address: int) -> str:
    _check("address", address, 0, 0xFFF)
    raw = [
        _HEADER,
        (_VERSION << 4) | ((0xA + 0x5 + _VERSION) & 0x0F),
        address & 0xFF,
        command,
        data1,
        data2,
        ((data3 & 0x0F) << 4) | (address >> 8),
    ]
    raw.append(sum(raw) & 0xFF)
    return bytes(raw).hex().upper()


def _direction(value: int, positive: int, negative: int, name: str) -> int:
    _check(name, value, -1, 1)
    return positive if value > 0 else negative if value < 0 else 0


@dataclass(frozen=True, slots=True)
class PtzMove:
    """Pan (1 right, -1 left), tilt (1 up, -1 down), zoom (1 in/tele, -1 out/wide); all 0 = stop."""

    pan: int = 0
    tilt: int = 0
    zoom: int = 0
    pan_speed: int = 0
    tilt_speed: int = 0
    zoom_speed: int = 0
    address: int = 1

    def encode(self) -> str:
        command = (
            _direction(self.pan, _RIGHT, _LEFT, "pan")
            | _direction(self.tilt, _UP, _DOWN, "tilt")
            | _direction(self.zoom, _ZOOM_IN, _ZOOM_OUT, "zoom")
        )
        return _frame(
            command,
            _check("pan_speed", self.pan_speed, 0, 255),
            _check("tilt_speed", self.tilt_speed, 0, 255),
            _check("zoom_speed", self.zoom_speed, 0, 15),
            self.address,
        )


@dataclass(frozen=True, slots=True)
class FiMove:
    """Focus (1 far, -1 near) and iris (1 open, -1 close); both 0 = stop FI."""

    focus: int = 0
    iris: int = 0
    focus_speed: int = 0
    iris_speed: int = 0
    address: int = 1

    def encode(self) -> str:
        command = (
            0x40
            | _direction(self.focus, _FOCUS_FAR, _FOCUS_NEAR, "focus")
            | _direction(self.iris, _IRIS_OPEN, _IRIS_CLOSE, "iris")
        )
        return _frame(
            command,
            _check("focus_speed", self.focus_speed, 0, 255),
            _check("iris_speed", self.iris_speed, 0, 255),
            0,
            self.address,
        )


@dataclass(frozen=True, slots=True)
class PresetCommand:
    action: PresetAction
    preset: int
    address: int = 1

    def encode(self) -> str:
        return _frame(self.action.value, 0, _check("preset", self.preset, 1, 255), 0, self.address)


@dataclass(frozen=True, slots=True)
class CruiseCommand:
    """``preset`` is used by ADD_POINT/DELETE_POINT (0 deletes the whole tour), ``value`` by
    SPEED/DWELL (12 bits: low 8 in data2, high 4 in data3)."""

    action: CruiseAction
    group: int
    preset: int = 0
    value: int = 0
    address: int = 1

    def encode(self) -> str:
        group = _check("group", self.group, 0, 255)
        if self.action in (CruiseAction.SPEED, CruiseAction.DWELL):
            value = _check("value", self.value, 0, 0xFFF)
            return _frame(self.action.value, group, value & 0xFF, value >> 8, self.address)
        low = 1 if self.action is CruiseAction.ADD_POINT else 0
        preset = 0 if self.action is CruiseAction.START else _check("preset", self.preset, low, 255)
        return _frame(self.action.value, group, preset, 0, self.address)


@dataclass(frozen=True, slots=True)
class ScanCommand:
    """Automatic scan: START / SET_LEFT / SET_RIGHT (command 0x89) or SPEED (0x8A, 12 bits)."""

    action: ScanAction
    group: int
    value: int = 0
    address: int = 1

    def encode(self) -> str:
        group = _check("group", self.group, 0, 255)
        if self.action is ScanAction.SPEED:
            value = _check("value", self.value, 0, 0xFFF)
            return _frame(0x8A, group, value & 0xFF, value >> 8, self.address)
        return _frame(0x89, group, self.action.value, 0, self.address)


@dataclass(frozen=True, slots=True)
class AuxCommand:
    """Auxiliary switch (1 = wiper) on or off."""

    on: bool
    switch: int
    address: int = 1

    def encode(self) -> str:
        switch = _check("switch", self.switch, 0, 255)
        return _frame(0x8C if self.on else 0x8D, switch, 0, 0, self.address)


@dataclass(frozen=True, slots=True)
class RawPtzCommand:
    """A well-framed command whose command byte this codec does not interpret."""

    command: int
    data1: int
    data2: int
    data3: int
    address: int = 1

    def encode(self) -> str:
        return _frame(
            _check("command", self.command, 0, 255),
            _check("data1", self.data1, 0, 255),
            _check("data2", self.data2, 0, 255),
            _check("data3", self.data3, 0, 15),
            self.address,
        )


PtzIntent = (
    PtzMove | FiMove | PresetCommand | CruiseCommand | ScanCommand | AuxCommand | RawPtzCommand
)


def _axis(command: int, positive: int, negative: int) -> int:
    if command & positive and command & negative:
        raise ManscdpSyntaxError(f"PTZCmd command byte {command:02X} sets opposite directions")
    return 1 if command & positive else -1 if command & negative else 0


def decode_ptz(text: str, *, verify_checksum: bool = True) -> PtzIntent:
    """Decode a PTZCmd string (case and surrounding whitespace ignored) into an intent.

    Raises:
        ManscdpSyntaxError: not 16 hex characters, bad header or version byte, bad checksum
            (unless ``verify_checksum`` is false), or opposite direction bits set together.
    """
    text = text.strip()
    if len(text) != 16:
        raise ManscdpSyntaxError(f"PTZCmd must be 16 hex characters, got {len(text)}")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ManscdpSyntaxError(f"PTZCmd is not hexadecimal: {text!r}") from None
    if raw[0] != _HEADER:
        raise ManscdpSyntaxError(f"PTZCmd must start with A5, not {raw[0]:02X}")
    version = raw[1] >> 4
    if raw[1] & 0x0F != (0xA + 0x5 + version) & 0x0F:
        raise ManscdpSyntaxError(f"PTZCmd byte 2 {raw[1]:02X} is inconsistent")
    if verify_checksum and sum(raw[:7]) & 0xFF != raw[7]:
        raise ManscdpSyntaxError(f"PTZCmd checksum {raw[7]:02X} != {sum(raw[:7]) & 0xFF:02X}")
    command, data1, data2 = raw[3], raw[4], raw[5]
    data3 = raw[6] >> 4
    address = raw[2] | ((raw[6] & 0x0F) << 8)
    if command & 0xC0 == 0:
        return PtzMove(
            pan=_axis(command, _RIGHT, _LEFT),
            tilt=_axis(command, _UP, _DOWN),
            zoom=_axis(command, _ZOOM_IN, _ZOOM_OUT),
            pan_speed=data1,
            tilt_speed=data2,
            zoom_speed=data3,
            address=address,
        )
    if command & 0xF0 == 0x40:
        return FiMove(
            focus=_axis(command, _FOCUS_FAR, _FOCUS_NEAR),
            iris=_axis(command, _IRIS_OPEN, _IRIS_CLOSE),
            focus_speed=data1,
            iris_speed=data2,
            address=address,
        )
    if 0x81 <= command <= 0x83 and data2 >= 1:
        return PresetCommand(PresetAction(command), data2, address)
    if 0x84 <= command <= 0x88:
        action = CruiseAction(command)
        if action in (CruiseAction.SPEED, CruiseAction.DWELL):
            return CruiseCommand(action, data1, value=data2 | (data3 << 8), address=address)
        if action is CruiseAction.START:
            return CruiseCommand(action, data1, address=address)
        if action is CruiseAction.DELETE_POINT or data2 >= 1:
            return CruiseCommand(action, data1, preset=data2, address=address)
    if command == 0x89 and data2 <= 2:
        return ScanCommand(ScanAction(data2), data1, address=address)
    if command == 0x8A:
        return ScanCommand(ScanAction.SPEED, data1, value=data2 | (data3 << 8), address=address)
    if command in (0x8C, 0x8D):
        return AuxCommand(command == 0x8C, data1, address)
    return RawPtzCommand(command, data1, data2, data3, address)


# --- builders ------------------------------------------------------------------------------------


def ptz_command(
    pan: int = 0,
    tilt: int = 0,
    zoom: int = 0,
    pan_speed: int = 0,
    tilt_speed: int = 0,
    zoom_speed: int = 0,
    address: int = 1,
) -> str:
    """Move command: pan 1 right / -1 left, tilt 1 up / -1 down, zoom 1 in / -1 out.

    Speeds: pan and tilt 0-255, zoom 0-15. Raises ``PtzCommandError`` when out of range.
    Most devices keep moving until ``ptz_stop()``.
    """
    return PtzMove(pan, tilt, zoom, pan_speed, tilt_speed, zoom_speed, address).encode()


def ptz_stop(address: int = 1) -> str:
    """``A50F0100000000B5`` for address 1."""
    return PtzMove(address=address).encode()


def fi_command(
    focus: int = 0, iris: int = 0, focus_speed: int = 0, iris_speed: int = 0, address: int = 1
) -> str:
    """Focus 1 far / -1 near, iris 1 open / -1 close; speeds 0-255; all 0 stops FI."""
    return FiMove(focus, iris, focus_speed, iris_speed, address).encode()


def preset_set(preset: int, address: int = 1) -> str:
    return PresetCommand(PresetAction.SET, preset, address).encode()


def preset_call(preset: int, address: int = 1) -> str:
    return PresetCommand(PresetAction.CALL, preset, address).encode()


def preset_delete(preset: int, address: int = 1) -> str:
    return PresetCommand(PresetAction.DELETE, preset, address).encode()


def cruise_add_point(group: int, preset: int, address: int = 1) -> str:
    return CruiseCommand(CruiseAction.ADD_POINT, group, preset=preset, address=address).encode()


def cruise_delete_point(group: int, preset: int = 0, address: int = 1) -> str:
    """``preset`` 0 deletes the whole tour."""
    return CruiseCommand(CruiseAction.DELETE_POINT, group, preset=preset, address=address).encode()


def cruise_speed(group: int, speed: int, address: int = 1) -> str:
    return CruiseCommand(CruiseAction.SPEED, group, value=speed, address=address).encode()


def cruise_dwell(group: int, seconds: int, address: int = 1) -> str:
    return CruiseCommand(CruiseAction.DWELL, group, value=seconds, address=address).encode()


def cruise_start(group: int, address: int = 1) -> str:
    """Stop a tour with ``ptz_stop()``."""
    return CruiseCommand(CruiseAction.START, group, address=address).encode()


def scan_start(group: int, address: int = 1) -> str:
    return ScanCommand(ScanAction.START, group, address=address).encode()


def scan_set_left(group: int, address: int = 1) -> str:
    return ScanCommand(ScanAction.SET_LEFT, group, address=address).encode()


def scan_set_right(group: int, address: int = 1) -> str:
    return ScanCommand(ScanAction.SET_RIGHT, group, address=address).encode()


def scan_speed(group: int, speed: int, address: int = 1) -> str:
    return ScanCommand(ScanAction.SPEED, group, value=speed, address=address).encode()


def aux_on(switch: int, address: int = 1) -> str:
    return AuxCommand(True, switch, address).encode()


def aux_off(switch: int, address: int = 1) -> str:
    return AuxCommand(False, switch, address).encode()
