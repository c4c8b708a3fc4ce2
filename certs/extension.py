"""The permission-level certificate extension (第二十条: 权限级别数字证书).

The e-government department issues each approved user a certificate that states its
permission level, its sharing period and its scope. We carry that statement in a private,
non-critical X.509 v3 extension:

``PERMISSION_EXTENSION_OID = 1.3.6.1.4.1.32473.28181.1.1``

PEN 32473 is the Private Enterprise Number IANA reserves for documentation (RFC 5612). It is a
**placeholder**: a deployment must replace it with an arc under its own registered PEN before
issuing production certificates. The extension is non-critical so that TLS stacks which do not
know it still complete handshakes; the platform itself refuses certificates without it.

ASN.1 (DER; ``SEQUENCE OF`` elements in the order given, ``channelIds`` and ``roles`` sorted)::

    GB28181Permission ::= SEQUENCE {
        version     INTEGER (1),
        kind        INTEGER { user(1), platform(2), device(3), departmentClient(4) },
        level       INTEGER (1..4),                    -- 第十六条: 一级 .. 四级
        department  UTF8String (SIZE (1..128)),
        scope       Scope,
        windows     SEQUENCE SIZE (0..32) OF Window,   -- empty: always
        roles       SEQUENCE SIZE (0..16) OF UTF8String (SIZE (1..64))
    }

    Scope ::= SEQUENCE {
        prefixes    SEQUENCE SIZE (0..256) OF UTF8String (SIZE (0..20)),  -- "" = everything
        channelIds  SEQUENCE SIZE (0..2048) OF UTF8String (SIZE (1..32))
    }

    Window ::= SEQUENCE {                              -- inclusive, wrapping when first > last
        firstMonth  INTEGER (1..12),
        lastMonth   INTEGER (1..12),
        firstMinute INTEGER (0..1439),                 -- minute of the day, civil time
        lastMinute  INTEGER (0..1439),
        flag        UTF8String (SIZE (0..64))          -- "" = none; else must be set
    }

Known roles: ``"emergency-manager"`` (may approve grants, 第十八条) and ``"emergency"`` (acts
for emergency work, which control arbitration favours between equal levels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509

from authz import Principal, PrincipalKind, Scope, Window
from certs._der import DerReader, encode_integer, encode_sequence, encode_utf8
from certs.errors import MalformedExtension

__all__ = [
    "MAX_EXTENSION_SIZE",
    "PERMISSION_EXTENSION_OID",
    "ROLE_EMERGENCY",
    "ROLE_EMERGENCY_MANAGER",
    "PermissionExtension",
    "decode_permission",
    "encode_permission",
]

PERMISSION_EXTENSION_OID = x509.ObjectIdentifier("1.3.6.1.4.1.32473.28181.1.1")
MAX_EXTENSION_SIZE = 0xFFFF + 4

ROLE_EMERGENCY_MANAGER = "emergency-manager"
ROLE_EMERGENCY = "emergency"

_VERSION = 1
_KIND_CODES = {
    PrincipalKind.USER: 1,
    PrincipalKind.PLATFORM: 2,
    PrincipalKind.DEVICE: 3,
    PrincipalKind.DEPARTMENT_CLIENT: 4,
}
_KINDS = {code: kind for kind, code in _KIND_CODES.items()}
_MAX_PREFIXES, _MAX_PREFIX_LEN = 256, 20
_MAX_IDS, _MAX_ID_LEN = 2048, 32
_MAX_WINDOWS, _MAX_FLAG_LEN = 32, 64
_MAX_ROLES, _MAX_ROLE_LEN = 16, 64
_MAX_DEPARTMENT_LEN = 128


@dataclass(frozen=True, slots=True)
class PermissionExtension:
    """The decoded extension."""

    kind: PrincipalKind
    level: int
    department: str
    scope: Scope
    windows: tuple[Window, ...] = ()
    roles: frozenset[str] = field(default_factory=frozenset)

    def to_principal(
        self, subject_id: str, valid_from: float, valid_to: float, *, emergency: bool = False
    ) -> Principal:
        return Principal(
            id=subject_id,
            kind=self.kind,
            department=self.department,
            level=self.level,
            scope=self.scope,
            windows=self.windows,
            valid_from=valid_from,
            valid_to=valid_to,
            emergency=emergency or ROLE_EMERGENCY in self.roles,
            is_emergency_manager=ROLE_EMERGENCY_MANAGER in self.roles,
        )


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise MalformedExtension(message)


def encode_permission(ext: PermissionExtension) -> bytes:
    """DER of ``ext``.

    :raises MalformedExtension: a value is outside the ASN.1 bounds above.
    """
    _check(1 <= ext.level <= 4, "level outside 1..4")
    _check(1 <= len(ext.department) <= _MAX_DEPARTMENT_LEN, "department length")
    prefixes = ext.scope.prefixes
    ids = sorted(ext.scope.channel_ids)
    _check(len(prefixes) <= _MAX_PREFIXES, "too many prefixes")
    _check(all(len(p) <= _MAX_PREFIX_LEN for p in prefixes), "prefix too long")
    _check(len(ids) <= _MAX_IDS, "too many channel IDs")
    _check(all(1 <= len(i) <= _MAX_ID_LEN for i in ids), "channel ID length")
    _check(len(ext.windows) <= _MAX_WINDOWS, "too many windows")
    _check(all(len(w.flag) <= _MAX_FLAG_LEN for w in ext.windows), "flag too long")
    roles = sorted(ext.roles)
    _check(len(roles) <= _MAX_ROLES, "too many roles")
    _check(all(1 <= len(r) <= _MAX_ROLE_LEN for r in roles), "role length")
    scope = encode_sequence(
        (
            encode_sequence(encode_utf8(p) for p in prefixes),
            encode_sequence(encode_utf8(i) for i in ids),
        )
    )
    windows = encode_sequence(
        encode_sequence(
            (
                encode_integer(w.first_month),
                encode_integer(w.last_month),
                encode_integer(w.first_minute),
                encode_integer(w.last_minute),
                encode_utf8(w.flag),
            )
        )
        for w in ext.windows
    )
    return encode_sequence(
        (
            encode_integer(_VERSION),
            encode_integer(_KIND_CODES[ext.kind]),
            encode_integer(ext.level),
            encode_utf8(ext.department),
            scope,
            windows,
            encode_sequence(encode_utf8(r) for r in roles),
        )
    )


def decode_permission(data: bytes) -> PermissionExtension:
    """Parse the extension's DER strictly.

    :raises MalformedExtension: on any deviation from the ASN.1 above (and only that).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedExtension("extension value must be bytes")
    data = bytes(data)
    _check(len(data) <= MAX_EXTENSION_SIZE, "extension too large")
    outer = DerReader(data)
    top = outer.read_sequence("GB28181Permission")
    outer.expect_end("GB28181Permission")
    top.read_integer("version", _VERSION, _VERSION)
    kind = _KINDS[top.read_integer("kind", 1, len(_KINDS))]
    level = top.read_integer("level", 1, 4)
    department = top.read_utf8("department", 1, _MAX_DEPARTMENT_LEN)

    scope_r = top.read_sequence("scope")
    prefixes = _read_strings(scope_r.read_sequence("prefixes"), "prefix", 0, _MAX_PREFIX_LEN)
    _check(len(prefixes) <= _MAX_PREFIXES, "too many prefixes")
    ids = _read_strings(scope_r.read_sequence("channelIds"), "channel ID", 1, _MAX_ID_LEN)
    _check(len(ids) <= _MAX_IDS, "too many channel IDs")
    scope_r.expect_end("scope")

    windows_r = top.read_sequence("windows")
    windows: list[Window] = []
    while not windows_r.at_end():
        _check(len(windows) < _MAX_WINDOWS, "too many windows")
        w = windows_r.read_sequence("window")
        window = Window(
            first_month=w.read_integer("firstMonth", 1, 12),
            last_month=w.read_integer("lastMonth", 1, 12),
            first_minute=w.read_integer("firstMinute", 0, 1439),
            last_minute=w.read_integer("lastMinute", 0, 1439),
            flag=w.read_utf8("flag", 0, _MAX_FLAG_LEN),
        )
        w.expect_end("window")
        windows.append(window)
    roles = _read_strings(top.read_sequence("roles"), "role", 1, _MAX_ROLE_LEN)
    _check(len(roles) <= _MAX_ROLES, "too many roles")
    top.expect_end("GB28181Permission")
    _check(ids == sorted(set(ids)), "channel IDs not sorted and unique")
    _check(roles == sorted(set(roles)), "roles not sorted and unique")
    return PermissionExtension(
        kind=kind,
        level=level,
        department=department,
        scope=Scope(prefixes=tuple(prefixes), channel_ids=frozenset(ids)),
        windows=tuple(windows),
        roles=frozenset(roles),
    )


def _read_strings(reader: DerReader, what: str, low: int, high: int) -> list[str]:
    values: list[str] = []
    while not reader.at_end():
        _check(len(values) <= _MAX_IDS, f"too many {what} values")
        values.append(reader.read_utf8(what, low, high))
    return values
