"""The generic element <-> record mapping."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gb28181.manscdp import (
    CatalogInfo,
    CatalogItem,
    CatalogResponse,
    DeviceControl,
    ManscdpEncodeError,
    PresetItem,
    Record,
    XmlNode,
)
from gb28181.manscdp._messages import _x
from gb28181.manscdp._records import (
    build,
    escape_text,
    format_float,
    read_fields,
    specs,
    write_leaf,
    write_record,
)


def test_specs_are_cached_and_ordered() -> None:
    names = [s.name for s in specs(PresetItem)]
    assert names == ["PresetID", "PresetName"]
    assert specs(PresetItem) is specs(PresetItem)
    iframe = next(s for s in specs(DeviceControl) if s.attr == "iframe_cmd")
    assert iframe.keys == ("ifamecmd", "iframecmd")


def test_read_fields_keeps_everything() -> None:
    elem = ET.fromstring(
        "<Item><deviceid>1</deviceid><Port>80x</Port><Longitude>1e3</Longitude><Odd a='1'>t</Odd>"
        "<Nest><X>1</X></Nest><Name>a</Name><Name>b</Name><Plain> v </Plain></Item>"
    )
    values = read_fields(CatalogItem, elem)
    assert values["device_id"] == "1" and values["name"] == "a" and values["longitude"] == 1000.0
    assert values["extra"] == {"Port": "80x", "Plain": "v"}
    assert values["extra_nodes"] == (
        XmlNode("Odd", "t", (("a", "1"),)),
        XmlNode("Nest", children=(XmlNode("X", "1"),)),
        XmlNode("Name", "b"),
    )


@pytest.mark.parametrize("raw", ["nan", "inf", "1_0", "", "1e9999", "0x10", "١٢"])
def test_bad_floats_go_to_extra(raw: str) -> None:
    values = read_fields(CatalogItem, ET.fromstring(f"<i><Latitude>{raw}</Latitude></i>"))
    assert "latitude" not in values and values["extra"] == {"Latitude": raw}


@pytest.mark.parametrize("raw", ["+5", "-5", "05"])
def test_ints(raw: str) -> None:
    assert read_fields(CatalogItem, ET.fromstring(f"<i><Port>{raw}</Port></i>"))["port"] == int(raw)


@pytest.mark.parametrize("raw", ["5_0", "５", "1" * 19, "1.0"])
def test_bad_ints_go_to_extra(raw: str) -> None:
    values = read_fields(CatalogItem, ET.fromstring(f"<i><Port>{raw}</Port></i>"))
    assert "port" not in values and values["extra"] == {"Port": raw}


def test_num_attribute_any_case() -> None:
    elem = ET.fromstring("<R><DeviceList num=' 4 '><Item/></DeviceList></R>")
    values = read_fields(CatalogResponse, elem)
    assert values["num"] == 4 and values["items"] == (CatalogItem(),)


@pytest.mark.parametrize(
    ("raw", "value"), [("117.25", 117.25), ("1.", 1.0), (".5", 0.5), ("-1.5", -1.5), ("1e3", 1e3)]
)
def test_floats(raw: str, value: float) -> None:
    assert read_fields(CatalogItem, ET.fromstring(f"<i><Latitude>{raw}</Latitude></i>")) == {
        "latitude": value
    }


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        # a second element of a name is "repeated", whatever the spelling of either
        ("<Name>a</Name><name>b</name>", {"name": "a", "extra_nodes": (XmlNode("name", "b"),)}),
        ("<name>b</name><Name>a</Name>", {"name": "b", "extra_nodes": (XmlNode("Name", "a"),)}),
        ("<port>7</port>", {"port": 7}),
        ("<port>x</port>", {"extra": {"port": "x"}}),
        ("<Latitude>" + "1" * 401 + "</Latitude>", {"extra": {"Latitude": "1" * 401}}),
        (
            "<Port>x</Port><Port>5</Port>",
            {"extra": {"Port": "x"}, "extra_nodes": (XmlNode("Port", "5"),)},
        ),
        (
            "<Odd>1</Odd><Latitude>n</Latitude><Port>p</Port>",  # bad numbers first, field order
            {"extra": {"Port": "p", "Latitude": "n", "Odd": "1"}},
        ),
        (
            "<Info/><Info><PTZType>1</PTZType></Info>",
            {
                "info": CatalogInfo(),
                "extra_nodes": (XmlNode("Info", children=(XmlNode("PTZType", "1"),)),),
            },
        ),
    ],
)
def test_read_fields_duplicates_and_order(xml: str, expected: dict[str, object]) -> None:
    values = read_fields(CatalogItem, ET.fromstring(f"<Item>{xml}</Item>"))
    assert values == expected
    assert list(values.get("extra", {})) == list(expected.get("extra", {}))  # type: ignore[call-overload]


def test_build_equals_the_constructor() -> None:
    values = {"device_id": "1", "info": CatalogInfo(ptz_type=1), "parental": 0}
    built = build(CatalogItem, values)
    assert type(built) is CatalogItem and built == CatalogItem(**values)  # type: ignore[arg-type]
    assert built.extra == {} and built.extra is not build(CatalogItem, values).extra
    assert build(CatalogItem, {}).extra_nodes == () and build(CatalogResponse, {}).cmd_type == (
        "Catalog"
    )


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class _Checked(Record):
    value: int | None = _x("Value", "int")

    def __post_init__(self) -> None:
        if self.value is not None and self.value < 0:
            raise ValueError("negative")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class _Holder(Record):
    num: int | None = _x("List", "num")
    items: tuple[_Checked, ...] = _x("List", "items", sub=_Checked)


@dataclass(frozen=True, kw_only=True, repr=False)
class _NoSlots(Record):  # fields in an instance dict: built by the constructor too
    value: int | None = _x("Value", "int")


def test_classes_with_post_init_use_their_constructor() -> None:
    assert build(_NoSlots, {"value": 1}) == _NoSlots(value=1)
    values = read_fields(_Holder, ET.fromstring("<H><List><I><Value>2</Value></I><I/></List></H>"))
    assert values == {"num": None, "items": (_Checked(value=2), _Checked())}
    assert build(_Checked, {"value": 3}) == _Checked(value=3)
    with pytest.raises(ValueError, match="negative"):
        build(_Checked, {"value": -1})


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class _SharedAlias(Record):
    a: str | None = _x("A", aliases=("B",))
    b: str | None = _x("B")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class _OddDefault(Record):
    c: str | None = field(default="x", metadata={"xml": ("C", "str", None, "Item", ())})


@pytest.mark.parametrize("cls", [_SharedAlias, _OddDefault])
def test_tables_refuse_ambiguous_declarations(cls: type[Record]) -> None:
    with pytest.raises(TypeError):
        read_fields(cls, ET.fromstring("<r/>"))


def test_write_record_order_and_num_default() -> None:
    out: list[str] = []
    msg = CatalogResponse(items=(CatalogItem(name="n", extra={"Z": "1"}),), extra={"Y": "2"})
    write_record(out, msg)
    assert out == [
        '<DeviceList Num="1">',
        "<Item>",
        "<Name>n</Name>",
        "<Z>1</Z>",
        "</Item>",
        "</DeviceList>",
        "<Y>2</Y>",
    ]


def test_write_xml_node() -> None:
    out: list[str] = []
    node = XmlNode("A", "t", (("k", 'v"<'),), (XmlNode("B", "1"),))
    write_record(out, CatalogItem(extra_nodes=(node,)))
    assert out == ['<A k="v&quot;&lt;">t', "<B>1</B>", "</A>"]


def test_escape_text() -> None:
    assert escape_text("a&b<c>d\re") == "a&amp;b&lt;c&gt;d&#13;e"
    for bad in ["\x00", "\x1f", "\ud800", "\ufffe"]:
        with pytest.raises(ManscdpEncodeError):
            escape_text(bad)


def test_invalid_names() -> None:
    for name in ["", "1a", "a b", "a:b", "<a>"]:
        with pytest.raises(ManscdpEncodeError):
            write_leaf([], name, "x")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (116.397128, "116.397128"),
        (1e-7, "0.0000001"),
        (1e22, "10000000000000000000000"),
        (-0.0, "-0.0"),
        (3.0, "3.0"),
    ],
)
def test_format_float(value: float, text: str) -> None:
    assert format_float(value) == text


@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_format_float_round_trips(value: float) -> None:
    text = format_float(value)
    assert "e" not in text.lower() and float(text) == value


def test_format_float_rejects_non_finite() -> None:
    with pytest.raises(ManscdpEncodeError):
        format_float(float("inf"))
