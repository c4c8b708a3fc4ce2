"""The permission extension: round trips, exact DER, bounds, strictness, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authz import PrincipalKind, Scope, Window
from certs import (
    PERMISSION_EXTENSION_OID,
    MalformedExtension,
    PermissionExtension,
    decode_permission,
    encode_permission,
)
from certs._der import encode_integer, encode_sequence, encode_utf8

SAMPLE = PermissionExtension(
    kind=PrincipalKind.USER,
    level=1,
    department="城乡建设",
    scope=Scope(prefixes=("3702",), channel_ids=frozenset({"37030000001320000001"})),
    windows=(Window(6, 9), Window(12, 2), Window(flag="wartime")),
    roles=frozenset({"emergency-manager"}),
)


def test_oid_is_under_the_documentation_pen() -> None:
    assert PERMISSION_EXTENSION_OID.dotted_string.startswith("1.3.6.1.4.1.32473.")


def test_round_trip() -> None:
    assert decode_permission(encode_permission(SAMPLE)) == SAMPLE


def test_exact_encoding_of_a_minimal_extension() -> None:
    ext = PermissionExtension(PrincipalKind.DEVICE, 4, "d", Scope())
    assert encode_permission(ext).hex() == (
        "3016"  # SEQUENCE of 22 octets
        "020101"  # version 1
        "020103"  # kind device(3)
        "020104"  # level 4
        "0c0164"  # department "d"
        "3004"
        "3000"
        "3000"  # scope: no prefixes, no IDs
        "3000"  # windows
        "3000"  # roles
    )


def test_everything_scope_round_trips() -> None:
    ext = PermissionExtension(PrincipalKind.PLATFORM, 2, "d", Scope.everything())
    assert decode_permission(encode_permission(ext)).scope.is_everything


def test_to_principal() -> None:
    p = SAMPLE.to_principal("370200", 0.0, 10.0)
    assert (p.id, p.level, p.department, p.is_emergency_manager, p.emergency) == (
        "370200",
        1,
        "城乡建设",
        True,
        False,
    )
    ext = PermissionExtension(PrincipalKind.USER, 2, "d", Scope(), roles=frozenset({"emergency"}))
    assert ext.to_principal("x", 0.0, 1.0).emergency


@pytest.mark.parametrize(
    "ext",
    [
        PermissionExtension(PrincipalKind.USER, 0, "d", Scope()),
        PermissionExtension(PrincipalKind.USER, 1, "", Scope()),
        PermissionExtension(PrincipalKind.USER, 1, "d" * 129, Scope()),
        PermissionExtension(PrincipalKind.USER, 1, "d", Scope(prefixes=("1",) * 257)),
        PermissionExtension(PrincipalKind.USER, 1, "d", Scope(prefixes=("1" * 21,))),
        PermissionExtension(
            PrincipalKind.USER, 1, "d", Scope(channel_ids=frozenset(str(i) for i in range(2049)))
        ),
        PermissionExtension(PrincipalKind.USER, 1, "d", Scope(channel_ids=frozenset({""}))),
        PermissionExtension(PrincipalKind.USER, 1, "d", Scope(), windows=(Window(),) * 33),
        PermissionExtension(PrincipalKind.USER, 1, "d", Scope(), windows=(Window(flag="f" * 65),)),
        PermissionExtension(PrincipalKind.USER, 1, "d", Scope(), roles=frozenset({""})),
        PermissionExtension(
            PrincipalKind.USER, 1, "d", Scope(), roles=frozenset(str(i) for i in range(17))
        ),
    ],
)
def test_encode_refuses_out_of_bounds(ext: PermissionExtension) -> None:
    with pytest.raises(MalformedExtension):
        encode_permission(ext)


def _ext(*fields: bytes) -> bytes:
    return encode_sequence(fields)


EMPTY = encode_sequence(())
SCOPE = encode_sequence((EMPTY, EMPTY))
HEAD = (encode_integer(1), encode_integer(1), encode_integer(2), encode_utf8("d"))


def _window(*values: int, flag: str = "") -> bytes:
    return encode_sequence((*(encode_integer(v) for v in values), encode_utf8(flag)))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated"),
        (_ext(*HEAD, SCOPE, EMPTY, EMPTY) + b"\x00", "unexpected data"),
        (_ext(encode_integer(2), *HEAD[1:], SCOPE, EMPTY, EMPTY), "version"),
        (_ext(encode_integer(1), encode_integer(5), *HEAD[2:], SCOPE, EMPTY, EMPTY), "kind"),
        (_ext(*HEAD[:2], encode_integer(5), HEAD[3], SCOPE, EMPTY, EMPTY), "level"),
        (_ext(*HEAD, SCOPE, EMPTY), "truncated"),
        (_ext(*HEAD, SCOPE, EMPTY, EMPTY, EMPTY), "unexpected data"),
        (_ext(*HEAD, encode_sequence((EMPTY,)), EMPTY, EMPTY), "truncated"),
        (_ext(*HEAD, SCOPE, encode_sequence((_window(13, 1, 0, 0),)), EMPTY), "firstMonth"),
        (_ext(*HEAD, SCOPE, encode_sequence((_window(1, 1, 0, 1440),)), EMPTY), "lastMinute"),
        (
            _ext(*HEAD, SCOPE, encode_sequence((_window(1, 1, 0, 0) + b"",) * 33), EMPTY),
            "too many windows",
        ),
        (
            _ext(
                *HEAD,
                encode_sequence((EMPTY, encode_sequence((encode_utf8("b"), encode_utf8("a"))))),
                EMPTY,
                EMPTY,
            ),
            "sorted",
        ),
        (_ext(*HEAD, SCOPE, EMPTY, encode_sequence((encode_utf8("r"),) * 2)), "sorted"),
    ],
)
def test_decode_is_strict(data: bytes, message: str) -> None:
    with pytest.raises(MalformedExtension, match=message):
        decode_permission(data)


def test_decode_refuses_huge_and_non_bytes() -> None:
    with pytest.raises(MalformedExtension):
        decode_permission(b"\x30" * 70000)
    with pytest.raises(MalformedExtension):
        decode_permission("not bytes")  # type: ignore[arg-type]


extensions = st.builds(
    PermissionExtension,
    kind=st.sampled_from(list(PrincipalKind)),
    level=st.integers(1, 4),
    department=st.text(min_size=1, max_size=20),
    scope=st.builds(
        Scope,
        prefixes=st.lists(st.text("0123456789", max_size=8), max_size=4).map(tuple),
        channel_ids=st.frozensets(st.text("0123456789", min_size=1, max_size=20), max_size=4),
    ),
    windows=st.lists(
        st.builds(
            Window,
            st.integers(1, 12),
            st.integers(1, 12),
            st.integers(0, 1439),
            st.integers(0, 1439),
            st.text(max_size=8),
        ),
        max_size=3,
    ).map(tuple),
    roles=st.frozensets(st.text(min_size=1, max_size=10), max_size=3),
)


@settings(max_examples=150)
@given(extensions)
def test_round_trip_property(ext: PermissionExtension) -> None:
    try:
        data = encode_permission(ext)
    except MalformedExtension:
        return  # surrogates in generated text
    assert decode_permission(data) == ext


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_fuzz_decoder_raises_only_malformed(data: bytes) -> None:
    try:
        decode_permission(data)
    except MalformedExtension:
        pass


@settings(max_examples=300)
@given(st.data())
def test_fuzz_mutated_valid_extension(data: st.DataObject) -> None:
    raw = bytearray(encode_permission(SAMPLE))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        decode_permission(bytes(raw[:cut]))
    except MalformedExtension:
        pass
