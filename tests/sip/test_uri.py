"""SIP URIs, name-addr / addr-spec values, Via, and the list/parameter helpers."""

from __future__ import annotations

import pytest

from gb28181.sip import (
    NameAddr,
    SipParseError,
    SipUri,
    Via,
    format_params,
    parse_params,
    split_header_list,
)


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
