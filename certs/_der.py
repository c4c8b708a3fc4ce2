"""A small, strict DER codec: SEQUENCE, INTEGER and UTF8String only (ITU-T X.690).

Only what the permission extension needs, so that parsing it does not depend on a general ASN.1
library. Strict means DER, not BER: definite lengths in the shortest form, minimal two's
complement integers, valid UTF-8, no trailing bytes. Bounded: lengths above
:data:`MAX_LENGTH` and integers wider than 8 bytes are refused. Every failure is a
:class:`certs.errors.MalformedExtension`.
"""

from __future__ import annotations

from collections.abc import Iterable

from certs.errors import MalformedExtension

__all__ = [
    "MAX_LENGTH",
    "TAG_INTEGER",
    "TAG_SEQUENCE",
    "TAG_UTF8STRING",
    "DerReader",
    "encode_integer",
    "encode_sequence",
    "encode_utf8",
]

TAG_INTEGER = 0x02
TAG_UTF8STRING = 0x0C
TAG_SEQUENCE = 0x30

#: Largest content length accepted or produced (two length octets at most).
MAX_LENGTH = 0xFFFF
_MAX_INTEGER_OCTETS = 8


def _encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    if length <= 0xFF:
        return bytes((0x81, length))
    if length <= MAX_LENGTH:
        return bytes((0x82, length >> 8, length & 0xFF))
    raise MalformedExtension(f"content of {length} octets exceeds {MAX_LENGTH}")


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _encode_length(len(content)) + content


def encode_integer(value: int) -> bytes:
    """Minimal two's complement INTEGER."""
    size = max(1, (value + (value < 0)).bit_length() // 8 + 1)
    if size > _MAX_INTEGER_OCTETS:
        raise MalformedExtension(f"integer {value} wider than {_MAX_INTEGER_OCTETS} octets")
    return _tlv(TAG_INTEGER, value.to_bytes(size, "big", signed=True))


def encode_utf8(value: str) -> bytes:
    try:
        return _tlv(TAG_UTF8STRING, value.encode("utf-8"))
    except UnicodeEncodeError as exc:  # lone surrogates
        raise MalformedExtension(f"string not encodable as UTF-8: {exc.reason}") from None


def encode_sequence(items: Iterable[bytes]) -> bytes:
    return _tlv(TAG_SEQUENCE, b"".join(items))


class DerReader:
    """Reads consecutive TLVs from ``data[start:end]``; nested SEQUENCEs get their own reader."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end

    def at_end(self) -> bool:
        return self._pos >= self._end

    def expect_end(self, what: str) -> None:
        if not self.at_end():
            raise MalformedExtension(f"unexpected data after {what}")

    def _read(self, tag: int, what: str) -> tuple[int, int]:
        data, pos, end = self._data, self._pos, self._end
        if end - pos < 2:
            raise MalformedExtension(f"truncated {what}")
        if data[pos] != tag:
            raise MalformedExtension(f"{what}: expected tag {tag:#04x}, found {data[pos]:#04x}")
        first = data[pos + 1]
        pos += 2
        if first < 0x80:
            length = first
        elif first in (0x81, 0x82):
            count = first & 0x7F
            if end - pos < count:
                raise MalformedExtension(f"truncated length of {what}")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
            if length < 0x80 or (count == 2 and length <= 0xFF):
                raise MalformedExtension(f"{what}: length not in shortest form")
        else:
            raise MalformedExtension(f"{what}: unsupported length octet {first:#04x}")
        if end - pos < length:
            raise MalformedExtension(f"truncated {what}")
        self._pos = pos + length
        return pos, pos + length

    def read_sequence(self, what: str) -> DerReader:
        start, stop = self._read(TAG_SEQUENCE, what)
        return DerReader(self._data, start, stop)

    def read_integer(self, what: str, low: int, high: int) -> int:
        """An INTEGER that must lie in ``low..high``."""
        start, stop = self._read(TAG_INTEGER, what)
        content = self._data[start:stop]
        if not content:
            raise MalformedExtension(f"{what}: empty integer")
        if len(content) > _MAX_INTEGER_OCTETS:
            raise MalformedExtension(f"{what}: integer too wide")
        if len(content) > 1 and (
            (content[0] == 0x00 and content[1] < 0x80)
            or (content[0] == 0xFF and content[1] >= 0x80)
        ):
            raise MalformedExtension(f"{what}: integer not minimally encoded")
        value = int.from_bytes(content, "big", signed=True)
        if not low <= value <= high:
            raise MalformedExtension(f"{what}: {value} outside {low}..{high}")
        return value

    def read_utf8(self, what: str, min_length: int, max_length: int) -> str:
        """A UTF8String of ``min_length..max_length`` characters."""
        start, stop = self._read(TAG_UTF8STRING, what)
        try:
            value = self._data[start:stop].decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise MalformedExtension(f"{what}: invalid UTF-8") from None
        if not min_length <= len(value) <= max_length:
            raise MalformedExtension(
                f"{what}: length {len(value)} outside {min_length}..{max_length}"
            )
        return value
