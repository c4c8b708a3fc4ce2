"""The strict DER subset: encodings, strictness, bounds, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certs import MalformedExtension
from certs._der import DerReader, encode_integer, encode_sequence, encode_utf8


@pytest.mark.parametrize(
    ("value", "der"),
    [
        (0, "020100"),
        (1, "020101"),
        (127, "02017f"),
        (128, "02020080"),
        (256, "02020100"),
        (-1, "0201ff"),
        (-128, "020180"),
        (-129, "0202ff7f"),
    ],
)
def test_integer_vectors(value: int, der: str) -> None:
    assert encode_integer(value).hex() == der
    assert DerReader(bytes.fromhex(der)).read_integer("i", -1000, 1000) == value


def test_lengths() -> None:
    assert encode_utf8("a" * 127)[:2] == b"\x0c\x7f"
    assert encode_utf8("a" * 128)[:3] == b"\x0c\x81\x80"
    assert encode_utf8("a" * 256)[:4] == b"\x0c\x82\x01\x00"
    with pytest.raises(MalformedExtension):
        encode_utf8("a" * 0x10000)
    with pytest.raises(MalformedExtension):
        encode_integer(1 << 64)
    with pytest.raises(MalformedExtension):
        encode_utf8("\ud800")


def test_sequence_round_trip() -> None:
    data = encode_sequence([encode_integer(5), encode_utf8("青岛")])
    outer = DerReader(data)
    seq = outer.read_sequence("s")
    outer.expect_end("s")
    assert seq.read_integer("i", 0, 9) == 5
    assert seq.read_utf8("u", 0, 9) == "青岛"
    assert seq.at_end()


@pytest.mark.parametrize(
    ("hexdata", "message"),
    [
        ("02", "truncated"),
        ("0202 00", "truncated"),
        ("3000", "expected tag"),
        ("0200", "empty integer"),
        ("02020001", "minimally"),
        ("0202ff80", "minimally"),
        ("0209 010000000000000000", "too wide"),
        ("020105", "outside"),
        ("0280", "unsupported length"),
        ("020f", "truncated"),
        ("0c8101 41", "shortest form"),
        ("0c820001 41", "shortest form"),
        ("0c83000001 41", "unsupported length"),
        ("0c81", "truncated length"),
        ("0c01 ff", "invalid UTF-8"),
        ("0c00", "length 0"),
    ],
)
def test_strictness(hexdata: str, message: str) -> None:
    reader = DerReader(bytes.fromhex(hexdata.replace(" ", "")))
    with pytest.raises(MalformedExtension, match=message):
        if hexdata.startswith("0c"):
            reader.read_utf8("u", 1, 10)
        else:
            reader.read_integer("i", 0, 4)


def test_trailing_data() -> None:
    reader = DerReader(encode_integer(1) + b"\x00")
    reader.read_integer("i", 0, 4)
    with pytest.raises(MalformedExtension, match="unexpected data"):
        reader.expect_end("x")


@given(st.binary(max_size=64))
def test_fuzz_reader(data: bytes) -> None:
    reader = DerReader(data)
    try:
        while not reader.at_end():
            if data[0] == 0x30:
                reader.read_sequence("s")
            elif data[0] == 0x0C:
                reader.read_utf8("u", 0, 100)
            else:
                reader.read_integer("i", -(1 << 63), (1 << 63) - 1)
    except MalformedExtension:
        pass


@given(st.integers(-(1 << 63), (1 << 63) - 1))
def test_integer_round_trip(value: int) -> None:
    assert DerReader(encode_integer(value)).read_integer("i", -(1 << 63), (1 << 63) - 1) == value
