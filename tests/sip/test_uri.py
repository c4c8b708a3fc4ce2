"""SIP URIs, name-addr / addr-spec values, Via, and the list/parameter helpers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gb28181.sip import (
    NameAddr,
    SipParseError,
    SipUri,
    Via,
    format_params,
    parse_params,
    split_header_list,
)
from gb28181.sip._uri import _fast_name_addr, _fast_uri, _fast_via


def test_full_sip_uri() -> None:
    uri = SipUri.parse("sips:alice:secret@example.com:5061;transport=tcp;lr?subject=hi&x=1")
    assert uri.scheme == "sips"
    assert (uri.user, uri.password) == ("alice", "secret")
    assert (uri.host, uri.port) == ("example.com", 5061)
    assert uri.params == {"transport": "tcp", "lr": None}
    assert uri.headers == "subject=hi&x=1"
    assert uri.host_port == "example.com:5061"
    assert str(uri) == "sips:alice:secret@example.com:5061;transport=tcp;lr?subject=hi&x=1"


def test_gb28181_ids_and_scheme_case() -> None:
    uri = SipUri.parse(" SIP:34020000001320000001@3402000000 ")
    assert (uri.scheme, uri.user, uri.host, uri.port) == (
        "sip",
        "34020000001320000001",
        "3402000000",
        None,
    )
    assert str(uri) == "sip:34020000001320000001@3402000000"


def test_ipv6_hosts() -> None:
    uri = SipUri.parse("sip:user@[2001:db8::1]:5060;maddr=[2001:db8::2]")
    assert (uri.host, uri.port) == ("[2001:db8::1]", 5060)
    assert uri.params == {"maddr": "[2001:db8::2]"}
    assert str(uri) == "sip:user@[2001:db8::1]:5060;maddr=[2001:db8::2]"
    assert SipUri.parse("sip:[::1]").host == "[::1]"


def test_user_part_with_reserved_characters() -> None:
    uri = SipUri.parse("sip:a?b;c=d/e:pw;x@host;p=1?h=2")
    assert (uri.user, uri.password, uri.host) == ("a?b;c=d/e", "pw;x", "host")
    assert (uri.params, uri.headers) == ({"p": "1"}, "h=2")


def test_opaque_schemes() -> None:
    uri = SipUri.parse("tel:+1-201-555-0123")
    assert (uri.scheme, uri.opaque) == ("tel", "+1-201-555-0123")
    assert str(uri) == "tel:+1-201-555-0123"


@pytest.mark.parametrize(
    "text",
    [
        "example.com",
        "1sip:a@b",
        "sip:a b@c",
        "sip:<a@b>",
        "tel:",
        "sip:@host",
        "sip:",
        "sip:user@",
        "sip:host:port",
        "sip:host:99999",
        "sip:host:",
        "sip:ho$t",
        "sip:[::1",
        "sip:[xyz]",
        "sip:[::1]x",
        "sip:a@b;=v",
        'sip:a@b;p="open',
    ],
)
def test_bad_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(text)


def test_name_addr_forms() -> None:
    na = NameAddr.parse('"Alice \\"A\\", Ltd" <sip:alice@a.com;transport=udp>;tag=7;expires=60')
    assert na.display_name == 'Alice \\"A\\", Ltd'
    assert na.uri.params == {"transport": "udp"}
    assert na.params == {"tag": "7", "expires": "60"}
    assert na.tag == "7"
    assert str(na) == '"Alice \\"A\\", Ltd" <sip:alice@a.com;transport=udp>;tag=7;expires=60'
    assert NameAddr.parse("Bob <sip:b@b.com>").display_name == "Bob"
    spec = NameAddr.parse("sip:c@c.com;tag=x")
    assert (spec.display_name, spec.uri.params, spec.tag) == (None, {}, "x")
    assert str(spec) == "<sip:c@c.com>;tag=x"
    assert NameAddr.parse("<sip:d@d.com>").display_name is None


def test_wildcard_contact() -> None:
    star = NameAddr.parse(" * ")
    assert star.wildcard
    assert str(star) == "*"


@pytest.mark.parametrize(
    "text",
    [
        '"unterminated <sip:a@b>',
        '"quoted" sip:a@b',
        "Bell, Alexander <sip:a@b>",
        "<sip:a@b",
        "<sip:a@b> junk",
        "< sip:a@b >",
        "<sip:a@b >",
        "sip:a@b?x=y",
        "sip:a@b,c",
        "",
    ],
)
def test_bad_name_addrs(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)


def test_via_with_rport_and_received() -> None:
    via = Via.parse("SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK77")
    assert (via.transport, via.host, via.port, via.branch) == (
        "UDP",
        "192.168.1.64",
        5060,
        "z9hG4bK77",
    )
    assert via.params["rport"] is None
    via.params["rport"] = "40000"
    via.params["received"] = "203.0.113.9"
    text = str(via)
    assert text == "SIP/2.0/UDP 192.168.1.64:5060;rport=40000;branch=z9hG4bK77;received=203.0.113.9"
    again = Via.parse(text)
    assert again == via
    assert again.sent_by == "192.168.1.64:5060"


def test_via_tolerates_spaces_and_case() -> None:
    via = Via.parse("sip / 2.0 / tcp [2001:db8::9]:5061 ; branch = x")
    assert (via.transport, via.host, via.port, via.params) == (
        "TCP",
        "[2001:db8::9]",
        5061,
        {"branch": "x"},
    )
    assert Via.parse("SIP/2.0/UDP 0.0.0.0:5060").branch is None


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0 UDP host",
        "SIP/3.0/UDP host",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP a b",
        "SIP/2.0/UDP h:x",
        ";",
    ],
)
def test_bad_vias(text: str) -> None:
    with pytest.raises(SipParseError):
        Via.parse(text)


def test_params_helpers() -> None:
    assert parse_params("") == {}
    assert parse_params(';A=1; b ;c = "x;y";;') == {"a": "1", "b": None, "c": '"x;y"'}
    assert format_params({"a": "1", "b": None}) == ";a=1;b"
    with pytest.raises(SipParseError):
        parse_params(";=1")


def test_split_header_list() -> None:
    assert split_header_list("  a  ") == ["a"]
    assert split_header_list("") == []
    assert split_header_list('a, "b,\\"c", <d,e>, ,f') == ["a", '"b,\\"c"', "<d,e>", "f"]
    with pytest.raises(SipParseError):
        split_header_list('"open, b')


# -- fast paths: same answer as the general parsers, or no answer at all


def _agrees(fast: object, general: object) -> None:
    assert fast == general
    assert str(fast) == str(general)  # parameter order too


@pytest.mark.parametrize(
    "text",
    [
        "<sip:34020000001320000001@3402000000>;tag=134020000001320000001",
        "<sip:34020000001320000001@3402000000>",
        "<sip:34020000001320000001@192.168.1.64:5060>",
        "<sips:a.b-c_d!~*'()&=+$%25/@h>;tag=x",
        '"Camera 1" <sip:34020000001320000001@3402000000>;tag=9',
        '""<sip:a@b>',
        "<sip:a@b;transport=udp;lr>;tag=1;expires=60",
        "<sip:h:0>",
        "sip:a@b;tag=1",
        "sip:b",
    ],
)
def test_fast_name_addr_taken_and_same_as_general(text: str) -> None:
    fast = _fast_name_addr(text)
    assert fast is not None
    _agrees(fast, NameAddr._parse(text))


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP 127.0.0.1:6000;rport;branch=z9hG4bK1",
        "SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK1",
        "SIP/2.0/TCP host;branch=z9hG4bK-.!%66*_+`'~",
        "SIP/2.0/udp h:5060;branch=b;rport",
        "SIP/2.0/UDP h:65535;rport=5060;received=1.2.3.4;branch=b",
        "SIP/2.0/SCTP h",
    ],
)
def test_fast_via_taken_and_same_as_general(text: str) -> None:
    fast = _fast_via(text)
    assert fast is not None
    _agrees(fast, Via._parse(text))


@pytest.mark.parametrize(
    "text",
    ["sip:34020000002000000001@3402000000", "sips:h:5061;transport=tls;lr", "sip:u@h;X=Y"],
)
def test_fast_uri_taken_and_same_as_general(text: str) -> None:
    fast = _fast_uri(text)
    assert fast is not None
    _agrees(fast, SipUri._parse(text))


@pytest.mark.parametrize(
    ("fast", "text"),
    [
        (_fast_name_addr, "<sip:a@b:65536>"),
        (_fast_name_addr, " <sip:a@b>"),
        (_fast_name_addr, "<SIP:a@b>"),
        (_fast_name_addr, "<sip:a:pw@b>"),
        (_fast_name_addr, "<sip:a@[::1]>"),
        (_fast_name_addr, '<sip:a@b>;tag="q"'),
        (_fast_name_addr, "Bob <sip:a@b>"),
        (_fast_name_addr, "*"),
        (_fast_via, "SIP/2.0/UDP h:99999;branch=b"),
        (_fast_via, "SIP / 2.0 / UDP h"),
        (_fast_via, "SIP/2.0/UDP [::1];branch=b"),
        (_fast_via, "SIP/2.0/UDP h;branch="),
        (_fast_uri, "sip:a@b?subject=x"),
        (_fast_uri, "tel:+1234"),
    ],
)
def test_fast_paths_leave_the_unusual_to_the_general_parsers(fast: object, text: str) -> None:
    assert fast(text) is None  # type: ignore[operator]


_PARAM = st.builds(
    lambda name, value: f";{name}" if value is None else f";{name}={value}",
    st.sampled_from(["tag", "TAG", "branch", "rport", "lr", "x", "", " tag"]),
    st.sampled_from([None, "", "1", "z9hG4bK1", "a b", '"q"', "1.2.3.4", "[::1]", "a=b", "é"]),
)
_PARAMS = st.lists(_PARAM, max_size=3).map("".join)
_HOSTPORT = st.builds(
    "{}{}".format,
    st.sampled_from(["3402000000", "127.0.0.1", "ex-a.com", "[::1]", "h st", "", "é"]),
    st.sampled_from(["", ":5060", ":65535", ":65536", ":0", ":99999", ":", ":x", ":123456"]),
)
_URI = st.builds(
    "{}:{}{}{}".format,
    st.sampled_from(["sip", "sips", "SIP", "tel", "sipx"]),
    st.sampled_from(["", "34020000001320000001@", "a.b!~*'()&=+$%/@", "a:pw@", "@", "a@b@", "é@"]),
    _HOSTPORT,
    _PARAMS,
)


@st.composite
def _name_addrs(draw: st.DrawFn) -> str:
    display = draw(st.sampled_from(["", '"Bob" ', '""', '"a\\"b" ', "Bob ", '"x"\t']))
    uri = draw(_URI)
    if draw(st.booleans()):
        uri = f"<{uri}>"
    return display + uri + draw(_PARAMS) + draw(st.sampled_from(["", " ", ">", ","]))


_VIAS = st.builds(
    "{}/{} {}{}".format,
    st.sampled_from(["SIP/2.0", "sip/2.0", "SIP/2.1", "SIP / 2.0", "SIP/2.0 "]),
    st.sampled_from(["UDP", "udp", "TCP", "TLS", "SCTP", "X-1", ""]),
    _HOSTPORT,
    _PARAMS,
)


def _check_agreement(fast: object, general: object, text: str) -> None:
    got = fast(text)  # type: ignore[operator]
    if got is not None:
        _agrees(got, general(text))  # type: ignore[operator]


@settings(max_examples=400, deadline=None)
@given(_name_addrs())
def test_fast_name_addr_never_disagrees(text: str) -> None:
    _check_agreement(_fast_name_addr, NameAddr._parse, text)


@settings(max_examples=300, deadline=None)
@given(_VIAS)
def test_fast_via_never_disagrees(text: str) -> None:
    _check_agreement(_fast_via, Via._parse, text)


@settings(max_examples=300, deadline=None)
@given(_URI)
def test_fast_uri_never_disagrees(text: str) -> None:
    _check_agreement(_fast_uri, SipUri._parse, text)
