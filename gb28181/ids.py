"""Central allocation of 20-digit IDs (regulation 第十一条; GB/T 28181-2016 Annex D).

The city platform issues the IDs of devices, channels and platforms. An operator configures,
per department, which IDs it may be given: the first 10 digits (centre code of the
administrative region + industry code), the type codes allowed (131 camera, 132 IPC, 118 NVR,
200 platform...), the network digit and a serial range. An ID is
``prefix(10) + type(3) + network(1) + serial(6)``, so each (range, type) is one contiguous
numeric *block* of IDs, and issuing is "the next ``count`` IDs after the highest issued in the
block" (done atomically by the store, :meth:`gb28181.store.Store.issue_ids`).

This module is sans-IO: it validates the configured ranges and requests and names the blocks;
it never touches storage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_ISSUE",
    "IdAllocator",
    "IdError",
    "IdRange",
    "check_note",
    "compose_id",
    "parse_ranges",
]

#: Most IDs one request may issue.
MAX_ISSUE = 1000
_MAX_SERIAL = 999_999
_MAX_NOTE = 500
_MAX_DEPARTMENT = 100


class IdError(ValueError):
    """A configured range or an allocation request is invalid (the text says which part)."""


def compose_id(prefix: str, type_code: str, network: str, serial: int) -> str:
    """The 20-digit ID ``prefix + type + network + serial`` (serial zero-padded to 6)."""
    return f"{prefix}{type_code}{network}{serial:06d}"


@dataclass(frozen=True, slots=True)
class IdRange:
    """The IDs one department may be issued."""

    department: str
    prefix: str
    """First 10 digits: centre code (8) + industry code (2)."""
    types: tuple[str, ...]
    """Allowed 3-digit type codes."""
    network: str
    """One digit: network identification (0-4 monitoring networks, 5 public, 7 private...)."""
    serial_start: int
    serial_end: int

    def block(self, type_code: str) -> tuple[str, str]:
        """The lowest and highest ID of ``type_code`` in this range."""
        return (
            compose_id(self.prefix, type_code, self.network, self.serial_start),
            compose_id(self.prefix, type_code, self.network, self.serial_end),
        )

    def contains(self, device_id: str) -> bool:
        """Whether ``device_id`` lies in this range (any allowed type)."""
        if len(device_id) != 20 or not device_id.isdigit():
            return False
        return (
            device_id[:10] == self.prefix
            and device_id[10:13] in self.types
            and device_id[13] == self.network
            and self.serial_start <= int(device_id[14:]) <= self.serial_end
        )


def _digits(where: str, name: str, value: Any, length: int) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise IdError(f"{where}.{name}: must be a string of {length} digits, got {value!r}")
    text = str(value)
    if len(text) != length or not text.isdigit():
        raise IdError(f"{where}.{name}: must be {length} digits, got {text!r}")
    return text


def _serial(where: str, name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_SERIAL:
        raise IdError(f"{where}.{name}: must be an integer 0-{_MAX_SERIAL}, got {value!r}")
    return value


def _one_range(where: str, raw: Any) -> IdRange:
    if not isinstance(raw, Mapping):
        raise IdError(f"{where}: must be a table")
    known = {"department", "prefix", "types", "network", "serial_start", "serial_end"}
    for key in raw:
        if key not in known:
            raise IdError(f"{where}.{key}: unknown key")
    department = raw.get("department")
    if not isinstance(department, str) or not department.strip():
        raise IdError(f"{where}.department: must be a non-empty string")
    if len(department) > _MAX_DEPARTMENT:
        raise IdError(f"{where}.department: longer than {_MAX_DEPARTMENT} characters")
    types_raw = raw.get("types")
    if not isinstance(types_raw, list) or not types_raw:
        raise IdError(f"{where}.types: must be a non-empty list of 3-digit type codes")
    types = tuple(_digits(where, "types", t, 3) for t in types_raw)
    start = _serial(where, "serial_start", raw.get("serial_start", 1))
    end = _serial(where, "serial_end", raw.get("serial_end", _MAX_SERIAL))
    if start > end:
        raise IdError(f"{where}.serial_start: {start} is above serial_end {end}")
    return IdRange(
        department=department.strip(),
        prefix=_digits(where, "prefix", raw.get("prefix"), 10),
        types=tuple(dict.fromkeys(types)),
        network=_digits(where, "network", raw.get("network", "0"), 1),
        serial_start=start,
        serial_end=end,
    )


def parse_ranges(raw: Any, *, key: str = "ids.ranges") -> tuple[IdRange, ...]:
    """Validate the configured ranges (a list of tables, TOML ``[[ids.ranges]]``).

    Two ranges whose blocks overlap (same prefix, network and a shared type with intersecting
    serials) are refused: one ID must belong to exactly one department.

    :raises IdError: naming the offending entry and key.
    """
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise IdError(f"{key}: must be a list of tables")
    ranges = tuple(_one_range(f"{key}[{i}]", r) for i, r in enumerate(raw))
    for i, a in enumerate(ranges):
        for j in range(i):
            b = ranges[j]
            if (
                a.prefix == b.prefix
                and a.network == b.network
                and set(a.types) & set(b.types)
                and a.serial_start <= b.serial_end
                and b.serial_start <= a.serial_end
            ):
                raise IdError(f"{key}[{i}]: overlaps {key}[{j}] ({b.department})")
    return ranges


class IdAllocator:
    """The configured ranges, looked up by department and type."""

    def __init__(self, ranges: Sequence[IdRange]) -> None:
        self.ranges = tuple(ranges)

    @property
    def departments(self) -> list[str]:
        return list(dict.fromkeys(r.department for r in self.ranges))

    def blocks(self, department: str, type_code: str, count: int) -> list[tuple[str, str]]:
        """The blocks ``(lowest ID, highest ID)`` an allocation may come from, in order.

        :raises IdError: unknown department, type not allowed to it, or a bad count.
        """
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_ISSUE:
            raise IdError(f"count must be an integer 1-{MAX_ISSUE}")
        if len(type_code) != 3 or not type_code.isdigit():
            raise IdError(f"type must be a 3-digit type code, got {type_code!r}")
        mine = [r for r in self.ranges if r.department == department]
        if not mine:
            raise IdError(f"no ID range is configured for department {department!r}")
        allowed = [r for r in mine if type_code in r.types]
        if not allowed:
            types = sorted({t for r in mine for t in r.types})
            raise IdError(f"type {type_code} is not allowed for {department!r} (allowed: {types})")
        return [r.block(type_code) for r in allowed if r.serial_end - r.serial_start + 1 >= count]

    def owner(self, device_id: str) -> str | None:
        """The department whose range holds ``device_id``, if any."""
        return next((r.department for r in self.ranges if r.contains(device_id)), None)


def check_note(note: Any) -> str:
    """A request's note: a string of at most 500 characters (``None`` is empty)."""
    if note is None:
        return ""
    if not isinstance(note, str) or len(note) > _MAX_NOTE:
        raise IdError(f"note must be a string of at most {_MAX_NOTE} characters")
    return note
