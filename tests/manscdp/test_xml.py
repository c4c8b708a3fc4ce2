"""Sanitising, rebalancing, salvage and hostile-input refusal."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gb28181.manscdp import ManscdpDepthError, ManscdpDtdError, ManscdpError, ManscdpSyntaxError
from gb28181.manscdp._xml import (
    _check_depth,
    check_hostile,
    parse_document,
    rebalance,
    salvage,
    sanitize,
)


def test_sanitize_clean_text_untouched() -> None:
    text = "<a>x &amp; y &#20013; &lt;</a>"
    assert sanitize(text) == (text, [])


def test_sanitize_repairs() -> None:
    text, repairs = sanitize("<a>\x00x & y <3\x1f</a>")
    assert text == "<a>x &amp; y &lt;3</a>"
    assert repairs == ["control-chars", "bare-ampersand", "stray-lt"]


def test_check_hostile() -> None:
    check_hostile("<a>&lt;!DOCTYPE</a>")
    check_hostile("<a><!-- comment --></a>")
    for text in ["<!DOCTYPE a>", "<! ENTITY x 'y'>", "<!ElEmEnT a ANY>", "<!ATTLIST a b CDATA>"]:
        with pytest.raises(ManscdpDtdError):
            check_hostile(text)


def test_parse_document_clean() -> None:
    parsed = parse_document("<Notify><CmdType>Keepalive</CmdType></Notify>")
    assert parsed.root.tag == "Notify" and not parsed.salvaged and parsed.repairs == ()


@pytest.mark.parametrize(
    ("text", "repairs"),
    [
        ("<a>x\x01</a>", ("control-chars",)),  # expat refuses it: the sanitising path runs
        ("<a>\ufffe</a>", ("control-chars",)),
        ("<a>&nbsp;</a>", ("bare-ampersand",)),
        ("<a>1 <2</a>", ("stray-lt",)),
        ("<a><![CDATA[x<y]]></a>", ()),  # "<!" starts markup: nothing to repair
    ],
)
def test_parse_document_sanitises_only_when_needed(text: str, repairs: tuple[str, ...]) -> None:
    parsed = parse_document(text)
    assert parsed.repairs == repairs and not parsed.salvaged


def test_depth_check_walks_trees_with_many_branches() -> None:
    # 41 elements with children: too many for the shortcut, so the tree is walked level by level.
    root = ET.fromstring("<R><L>" + "<I><X>1</X></I>" * 40 + "</L></R>")
    _check_depth(root, 4)
    with pytest.raises(ManscdpDepthError):
        _check_depth(root, 3)
    _check_depth(ET.fromstring("<R><I><X>1</X></I></R>"), 3)  # few branches: no walk


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<a><b>x</c></a>", "<a><b>x</b></a>"),  # typo closes the leaf
        ("<a><b><c>x</c></d></b></a>", "<a><b><c>x</c></b></a>"),  # stray close dropped
        ("<a><b>x</B></a>", "<a><b>x</b></a>"),
        ("<a><b><c>x</a>", "<a><b><c>x</c></b></a>"),
        ("<a><b>x</b", "<a><b>x</b></a>"),
        ("</z><a>1</a><b>2</b>", "<a>1</a>"),
        ("<a x=1 y='2' x=\"3\" junk><b/></a>", '<a x="1" y="2"><b/></a>'),
        ("<a><!-- c --><?pi x?><![CDATA[<&>]]></a>", "<a>&lt;&amp;&gt;</a>"),
        ("<a>&#0;&#x41;&#1114112;</a>", "<a>&#x41;</a>"),
        ("<a>x ]]> y</a>", "<a>x ]]&gt; y</a>"),
    ],
)
def test_rebalance(text: str, expected: str) -> None:
    fixed, _ = rebalance(text)
    assert fixed == expected
    ET.fromstring(fixed)


def test_rebalance_drops_truncated_item() -> None:
    fixed, repairs = rebalance("<R><L><Item><N>1</N></Item><Item><N>2</N><M>x")
    assert fixed == "<R><L><Item><N>1</N></Item></L></R>"
    assert repairs == ["truncated", "partial-item-dropped"]


def test_rebalance_depth_limit() -> None:
    with pytest.raises(ManscdpDepthError):
        rebalance("<a>" * 10, max_depth=5)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="<>/&;#x1aAbB =\"'!-?[]CDAT\x00\n", max_size=80))
def test_rebalance_output_always_parses(text: str) -> None:
    fixed, _ = rebalance(sanitize(text)[0])
    if fixed:
        ET.fromstring(f"<w>{fixed}</w>")


def test_salvage() -> None:
    text = (
        "<Response><CmdType>Catalog</CmdType><SN>3</SN><SumNum>2</SumNum>"
        "<DeviceList Num='2'><Item><DeviceID>1</DeviceID><Name>a &amp; b</Name>"
        "<Info><PTZType>1</PTZType></Info></Item>"
        '<Item  x="<"><DeviceID>2</DeviceID></Item>'
        "<Item><DeviceID>4</DeviceID><Name>c\x01</Name></Item>"
        "<Item><DeviceID>3</DeviceID>"
    )
    root = salvage(text)
    assert root.tag == "Response"
    assert [c.tag for c in root] == ["CmdType", "SN", "SumNum", "DeviceList"]
    container = root[3]
    assert container.get("Num") == "2"
    assert [i.findtext("DeviceID") for i in container] == ["1", "4"]
    assert container[0].findtext("Name") == "a & b" and container[0].findtext("PTZType") == "1"
    assert container[1].findtext("Name") == "c"


def test_salvage_without_root() -> None:
    with pytest.raises(ManscdpSyntaxError):
        salvage("<Foo><CmdType>x</CmdType></Foo>")


def test_salvage_without_container() -> None:
    root = salvage("<Notify><CmdType>Keepalive</CmdType><Item><A>1</A></Item>")
    assert [c.tag for c in root] == ["CmdType"]


def test_parse_document_falls_back_to_salvage(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rebalancing always yields parsable XML in practice; force the last resort to run.
    import gb28181.manscdp._xml as module

    monkeypatch.setattr(module, "rebalance", lambda text, max_depth: ("<<", ["x"]))
    parsed = parse_document("<Notify><CmdType>Keepalive</CmdType><SN>1</Notify>")
    assert parsed.salvaged and parsed.repairs[-1] == "item-salvage"
    assert parsed.root.findtext("CmdType") == "Keepalive"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parse_document_raises_only_manscdp_error(text: str) -> None:
    try:
        parse_document(text)
    except ManscdpError:
        pass
