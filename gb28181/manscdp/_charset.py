"""Body charsets: bytes on the wire <-> text.

GB/T 28181-2016 §6.10 says signalling text *should* be GB2312; 2022 §6.10 says GB18030. Devices
routinely send UTF-8 while declaring GB2312 and the other way round (notes §4.2, WVP #260, #1344),
so on receive the declaration is only a tie-breaker:

1. valid UTF-8 -> UTF-8, except when the declaration names a GB charset and every non-ASCII
   character UTF-8 yields is below U+0800: Chinese text in UTF-8 always produces CJK code points
   (U+0800 and above), whereas short GB2312 strings such as ``C3 A9`` (茅) happen to be valid
   two-byte UTF-8 (``é``). Then GB18030 is used.
2. otherwise GB18030, a superset of GB2312 and GBK, with undecodable bytes replaced by U+FFFD.

On send the declaration always names the charset actually used. A character that GB2312 or GBK
cannot represent escalates the whole body to GB18030 (the 2022 charset, byte-identical to GB2312
for everything GB2312 can express) unless the caller asks for ``strict=True``, which raises
``ManscdpEncodeError`` instead.
"""

from __future__ import annotations

import re
from enum import StrEnum

from ._errors import ManscdpEncodeError

__all__ = [
    "Charset",
    "declared_charset",
    "decode_body",
    "encode_document",
    "parse_charset",
    "strip_declaration",
]


class Charset(StrEnum):
    """Charsets a device may be configured with; the value is the spelling we declare."""

    GB2312 = "GB2312"
    GBK = "GBK"
    GB18030 = "GB18030"
    UTF8 = "UTF-8"


_CODEC = {
    Charset.GB2312: "gb2312",
    Charset.GBK: "gbk",
    Charset.GB18030: "gb18030",
    Charset.UTF8: "utf-8",
}
_ALIASES = {
    "gb2312": Charset.GB2312,
    "gb_2312": Charset.GB2312,
    "gb-2312": Charset.GB2312,
    "euc-cn": Charset.GB2312,
    "gbk": Charset.GBK,
    "cp936": Charset.GBK,
    "gb18030": Charset.GB18030,
    "gb-18030": Charset.GB18030,
    "utf-8": Charset.UTF8,
    "utf8": Charset.UTF8,
}
_GB_FAMILY = frozenset({Charset.GB2312, Charset.GBK, Charset.GB18030})
_DECL_ENCODING = re.compile(r"""^\s*<\?xml[^>]*?\bencoding\s*=\s*["']([^"']{0,40})["']""")
_WIDE = re.compile("[\u0800-\U0010ffff]")


def parse_charset(name: str | Charset) -> Charset:
    """Map a charset name as found in configuration or a declaration to ``Charset``.

    Raises:
        ManscdpEncodeError: the name is not one of the four charsets GB/T 28181 devices use.
    """
    if isinstance(name, Charset):
        return name
    found = _ALIASES.get(name.strip().lower())
    if found is None:
        raise ManscdpEncodeError(f"unsupported charset {name!r}")
    return found


def declared_charset(text: str) -> Charset | None:
    """The charset named by the XML declaration at the start of ``text``, if any and known."""
    match = _DECL_ENCODING.match(text)
    if match is None:
        return None
    return _ALIASES.get(match.group(1).strip().lower())


def decode_body(data: bytes) -> tuple[str, Charset]:
    """Decode a MANSCDP body to text (never raises); returns ``(text, charset used)``.

    Pure ASCII is reported as UTF-8. See the module docstring for the recipe.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="replace"), Charset.GB18030
    if not text.isascii() and declared_charset(text) in _GB_FAMILY and not _WIDE.search(text):
        gb = data.decode("gb18030", errors="replace")
        if "\ufffd" not in gb:
            return gb, Charset.GB18030
    return text, Charset.UTF8


def strip_declaration(text: str) -> str:
    """Remove a leading ``<?xml ...?>`` declaration.

    ElementTree refuses a ``str`` whose declaration names a multi-byte encoding ("multi-byte
    encodings are not supported", notes §4.2), and the text is already decoded anyway.
    """
    stripped = text.lstrip(" \t\r\n\ufeff")
    if stripped.startswith("<?xml"):
        end = stripped.find("?>")
        if end >= 0:
            return stripped[end + 2 :]
    return stripped


def encode_document(
    body: str, charset: Charset | str = Charset.GB2312, *, strict: bool = False
) -> bytes:
    """Prefix ``body`` with an XML declaration naming the charset it is encoded in.

    Args:
        body: the XML text without declaration.
        charset: the device's configured charset.
        strict: raise instead of escalating GB2312/GBK to GB18030 for unrepresentable characters.

    Raises:
        ManscdpEncodeError: unknown charset; unrepresentable character with ``strict``; lone
            surrogates (representable in no charset).
    """
    cs = parse_charset(charset)
    try:
        payload = body.encode(_CODEC[cs])
    except UnicodeEncodeError as exc:
        if strict or cs not in (Charset.GB2312, Charset.GBK):
            raise ManscdpEncodeError(f"text not representable in {cs}: {exc.reason}") from None
        cs = Charset.GB18030
        try:
            payload = body.encode("gb18030")
        except UnicodeEncodeError as exc2:
            raise ManscdpEncodeError(f"text not representable in {cs}: {exc2.reason}") from None
    return f'<?xml version="1.0" encoding="{cs}"?>\r\n'.encode("ascii") + payload
