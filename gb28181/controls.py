"""DeviceControl commands from operator intent (pure: JSON-like dict in, message out).

GB/T 28181-2016 §9.3 / A.2.3.1 (notes §4.7). Each control the HTTP API offers has one builder in
:data:`CONTROL_BUILDERS`, which validates its parameters and returns the ``DeviceControl``
message to send (SN and DeviceID are filled in when it is sent). Bad input raises
:class:`ControlError`, whose text is the reason given back (HTTP 400).

Every builder accepts ``channel``: the 20-digit ID of the channel to control; without it the
command addresses the device itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import manscdp

__all__ = ["CONTROL_BUILDERS", "PTZ_DIRECTIONS", "ControlError", "build_control"]


class ControlError(ValueError):
    """A control request is malformed or out of range (answer 400 with this text)."""


#: direction -> (pan, tilt, zoom): pan 1 right, tilt 1 up, zoom 1 in (tele).
PTZ_DIRECTIONS: dict[str, tuple[int, int, int]] = {
    "left": (-1, 0, 0),
    "right": (1, 0, 0),
    "up": (0, 1, 0),
    "down": (0, -1, 0),
    "upleft": (-1, 1, 0),
    "upright": (1, 1, 0),
    "downleft": (-1, -1, 0),
    "downright": (1, -1, 0),
    "zoomin": (0, 0, 1),
    "zoomout": (0, 0, -1),
    "stop": (0, 0, 0),
}


def _int(params: Mapping[str, Any], name: str, lo: int, hi: int, default: int | None = None) -> int:
    value = params.get(name, default)
    if value is None:
        raise ControlError(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ControlError(f"{name} must be an integer")
    if not lo <= value <= hi:
        raise ControlError(f"{name} must be between {lo} and {hi}")
    return value


def _bool(params: Mapping[str, Any], name: str, default: bool | None = None) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise ControlError(f"{name} must be true or false")
    return value


def _text(params: Mapping[str, Any], name: str, max_len: int = 32) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.isalnum() or len(value) > max_len:
        raise ControlError(f"{name} must be a short alphanumeric string")
    return value


def _ptz(params: Mapping[str, Any]) -> manscdp.DeviceControl:
    direction = params.get("direction", "stop")
    if params.get("stop") is True:
        direction = "stop"
    if not isinstance(direction, str) or direction.lower() not in PTZ_DIRECTIONS:
        raise ControlError(f"direction must be one of {', '.join(PTZ_DIRECTIONS)}")
    pan, tilt, zoom = PTZ_DIRECTIONS[direction.lower()]
    speed = _int(params, "speed", 0, 255, 128)
    zoom_speed = _int(params, "zoom_speed", 0, 15, min(15, speed >> 4))
    try:
        cmd = manscdp.ptz_command(
            pan,
            tilt,
            zoom,
            pan_speed=speed if pan else 0,
            tilt_speed=speed if tilt else 0,
            zoom_speed=zoom_speed if zoom else 0,
        )
    except manscdp.PtzCommandError as exc:  # pragma: no cover - ranges checked above
        raise ControlError(str(exc)) from None
    return manscdp.DeviceControl(ptz_cmd=cmd, info=manscdp.DeviceControlInfo(control_priority=5))


_PRESET_ACTIONS: dict[str, Callable[[int], str]] = {
    "set": manscdp.preset_set,
    "call": manscdp.preset_call,
    "delete": manscdp.preset_delete,
}


def _preset(params: Mapping[str, Any]) -> manscdp.DeviceControl:
    action = params.get("action", "call")
    if action not in _PRESET_ACTIONS:
        raise ControlError("action must be set, call or delete")
    index = _int(params, "index", 1, 255)
    return manscdp.DeviceControl(ptz_cmd=_PRESET_ACTIONS[action](index))


def _aux(params: Mapping[str, Any]) -> manscdp.DeviceControl:
    switch = _int(params, "switch", 1, 255)
    on = _bool(params, "on", True)
    cmd = manscdp.aux_on(switch) if on else manscdp.aux_off(switch)
    return manscdp.DeviceControl(ptz_cmd=cmd)


def _reboot(params: Mapping[str, Any]) -> manscdp.DeviceControl:
    if params.get("channel"):
        raise ControlError("reboot addresses the device, not a channel")
    return manscdp.DeviceControl(tele_boot="Boot")


def _record(params: Mapping[str, Any]) -> manscdp.DeviceControl:
    start = _bool(params, "start", True)
    stream = params.get("stream")
    return manscdp.DeviceControl(
        record_cmd="Record" if start else "StopRecord",
        stream_number=None if stream is None else _int(params, "stream", 0, 9),
    )


def _guard(params: Mapping[str, Any]) -> manscdp.DeviceControl:
    return manscdp.DeviceControl(
        guard_cmd="SetGuard" if _bool(params, "set", True) else "ResetGuard"
    )


def _reset_alarm(params: Mapping[str, Any]) -> manscdp.DeviceControl:
    method = _text(params, "alarm_method")
    kind = _text(params, "alarm_type")
    info = None
    if method is not None or kind is not None:
        info = manscdp.DeviceControlInfo(alarm_method=method, alarm_type=kind)
    return manscdp.DeviceControl(alarm_cmd="ResetAlarm", info=info)


def _keyframe(params: Mapping[str, Any]) -> manscdp.DeviceControl:
    return manscdp.DeviceControl(iframe_cmd="Send")


def _home_position(params: Mapping[str, Any]) -> manscdp.DeviceControl:
    enabled = _bool(params, "enabled", True)
    home = manscdp.HomePosition(
        enabled=1 if enabled else 0,
        reset_time=_int(params, "reset_time", 0, 86400, 60) if enabled else None,
        preset_index=_int(params, "preset", 0, 255, 1) if enabled else None,
    )
    return manscdp.DeviceControl(home_position=home)


CONTROL_BUILDERS: dict[str, Callable[[Mapping[str, Any]], manscdp.DeviceControl]] = {
    "ptz": _ptz,
    "preset": _preset,
    "aux": _aux,
    "reboot": _reboot,
    "record": _record,
    "guard": _guard,
    "reset-alarm": _reset_alarm,
    "keyframe": _keyframe,
    "home-position": _home_position,
}
"""Control name (the API path segment) -> builder."""


def build_control(name: str, params: object) -> tuple[str | None, manscdp.DeviceControl]:
    """Validate ``params`` for control ``name``.

    :returns: the target channel (``None`` = the device itself) and the message to send.
    :raises ControlError: unknown control, params not an object, or a bad value.
    """
    builder = CONTROL_BUILDERS.get(name)
    if builder is None:
        raise ControlError(f"unknown control {name!r}")
    if not isinstance(params, Mapping):
        raise ControlError("the body must be a JSON object")
    channel = params.get("channel")
    if channel is not None and (
        not isinstance(channel, str) or not channel.isdigit() or len(channel) != 20
    ):
        raise ControlError("channel must be a 20-digit ID")
    return channel, builder(params)
