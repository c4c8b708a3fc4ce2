"""Charset detection on receive and declared == actual on send (notes §4.2)."""

from __future__ import annotations

import pytest

from gb28181.manscdp import Charset, ManscdpEncodeError
from gb28181.manscdp._charset import (
    declared_charset,
    decode_body,
    encode_document,
    parse_charset,
    strip_declaration,
)

GB_DECL = '<?xml version="1.0" encoding="GB2312"?>'


def test_ascii_is_utf8() -> None:
    assert decode_body(b"<a>1</a>") == ("<a>1</a>", Charset.UTF8)


def test_utf8_declared_gb2312() -> None:
    data = f"{GB_DECL}<a>北京</a>".encode()
    assert decode_body(data) == (f"{GB_DECL}<a>北京</a>", Charset.UTF8)


def test_gb2312_declared_utf8() -> None:
    text = '<?xml version="1.0" encoding="UTF-8"?><a>北京</a>'
    assert decode_body(text.encode("gb2312")) == (text, Charset.GB18030)


def test_short_gb2312_that_is_valid_utf8_uses_declaration() -> None:
    # 茅 in GB2312 is C3 A9, which is also "é" in UTF-8.
    data = f"{GB_DECL}<a>茅</a>".encode("gb2312")
    assert data.decode("utf-8").endswith("<a>é</a>")
    assert decode_body(data)[0].endswith("<a>茅</a>")
    undeclared = "<a>é</a>".encode()
    assert decode_body(undeclared) == ("<a>é</a>", Charset.UTF8)


def test_bom_and_undecodable_bytes() -> None:
    assert decode_body(b"\xef\xbb\xbf<a/>") == ("<a/>", Charset.UTF8)
    text, charset = decode_body(b"<a>\xff\xfe\x80</a>")
    assert charset is Charset.GB18030 and text.startswith("<a>") and "\ufffd" in text


def test_gbk_and_gb18030_characters() -> None:
    assert decode_body("<a>萳</a>".encode("gbk"))[0] == "<a>萳</a>"
    assert decode_body("<a>😀䶮</a>".encode("gb18030"))[0] == "<a>😀䶮</a>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('<?xml version="1.0" encoding="gb2312"?>', Charset.GB2312),
        ("<?xml version='1.0' encoding='GB18030' ?>", Charset.GB18030),
        ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>', Charset.UTF8),
        ('<?xml version="1.0"?>', None),
        ('<?xml version="1.0" encoding="latin-1"?>', None),
        ("<a/>", None),
    ],
)
def test_declared_charset(text: str, expected: Charset | None) -> None:
    assert declared_charset(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('<?xml version="1.0" encoding="GB2312" ?>\n<a/>', "\n<a/>"),
        ("\r\n  <?xml version='1.0'?><a/>", "<a/>"),
        ("\ufeff<a/>", "<a/>"),
        ("<a/>", "<a/>"),
        ("<?xml version='1.0'", "<?xml version='1.0'"),
    ],
)
def test_strip_declaration(text: str, expected: str) -> None:
    assert strip_declaration(text) == expected


def test_parse_charset() -> None:
    assert parse_charset("utf8") is Charset.UTF8
    assert parse_charset(" GB2312 ") is Charset.GB2312
    assert parse_charset(Charset.GBK) is Charset.GBK
    with pytest.raises(ManscdpEncodeError):
        parse_charset("shift_jis")


@pytest.mark.parametrize("charset", list(Charset))
def test_declared_equals_actual(charset: Charset) -> None:
    data = encode_document("<a>北京</a>", charset)
    decl = f'<?xml version="1.0" encoding="{charset.value}"?>\r\n'.encode()
    assert data.startswith(decl)
    codec = {"UTF-8": "utf-8"}.get(charset.value, charset.value.lower())
    assert data[len(decl) :] == "<a>北京</a>".encode(codec)


def test_escalation_and_strict() -> None:
    assert encode_document("<a>萳</a>", "GB2312").startswith(
        b'<?xml version="1.0" encoding="GB18030"'
    )
    assert encode_document("<a>萳</a>", "GBK").startswith(b'<?xml version="1.0" encoding="GBK"')
    with pytest.raises(ManscdpEncodeError):
        encode_document("<a>萳</a>", "GB2312", strict=True)
    with pytest.raises(ManscdpEncodeError):
        encode_document("<a>\ud800</a>", "GB2312")
    with pytest.raises(ManscdpEncodeError):
        encode_document("<a>\ud800</a>", "UTF-8")
