"""RFC 4475 torture-test messages against the codec (vectors in tests/fixtures/rfc4475).

Valid messages must parse, with the fields the RFC points at read back correctly.
Invalid ones must be refused with :class:`SipParseError`, either by ``parse_message``
(framing, start line, mandatory and single-value headers, CSeq, Content-Length) or by
``SipMessage.check()`` (the lazily parsed headers). Application-layer messages (§3.3)
must parse; the test pins what the codec gives the layer above to decide on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gb28181.sip import (
    SipParseError,
    SipRequest,
    SipResponse,
    StreamParser,
    parse_message,
)

VECTORS = Path(__file__).parent.parent / "fixtures" / "rfc4475"

VALID = [
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    # §3.2 / §3.3 / §3.4: the parser accepts these; the application decides.
    "badbranch",
    "novelsc",
    "unkscm",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    "inv2543",
    # §3.1.2.12: invalid, but an element may ignore Date; this codec never reads it.
    "baddate",
]

#: Refused by parse_message itself: name -> status hint.
REJECTED_BY_PARSER = {
    "clerr": 400,
    "ncl": 400,
    "scalar02": 400,
    "scalarlg": 400,
    "ltgtruri": 400,
    "lwsruri": 400,
    "lwsstart": 400,
    "trws": 400,
    "badvers": 505,
    "mismatch01": 400,
    "mismatch02": 400,
    "bigcode": 400,
    "insuf": 400,
    "multi01": 400,
    "mcl01": 400,
    "test": 400,
}

#: Framed and parsed, refused by check(): name -> status hint.
REJECTED_BY_CHECK = {
    "badinv01": 400,
    "quotbal": 400,
    "escruri": 400,
    "regbadct": 400,
    "badaspec": 400,
    "baddn": 400,
    "unkscm": 416,
    "novelsc": 416,
}


def load(name: str) -> bytes:
    return (VECTORS / f"{name}.dat").read_bytes()


def request(name: str) -> SipRequest:
    msg = parse_message(load(name))
    assert isinstance(msg, SipRequest)
    return msg


def start_line(msg: SipRequest | SipResponse | object) -> tuple[object, ...]:
    if isinstance(msg, SipRequest):
        return (msg.method, msg.uri)
    assert isinstance(msg, SipResponse)
    return (msg.status, msg.reason)


def without_length(msg: SipRequest | SipResponse | object) -> list[tuple[str, str]]:
    assert isinstance(msg, SipRequest | SipResponse)
    return [(n, v) for n, v in msg.headers if n != "Content-Length"]


def test_every_vector_is_classified() -> None:
    names = {p.stem for p in VECTORS.glob("*.dat")}
    assert len(names) == 50  # the 49 messages of RFC 4475 and the archive's stray test.dat
    classified = set(VALID) | set(REJECTED_BY_PARSER) | set(REJECTED_BY_CHECK)
    assert names == classified


@pytest.mark.parametrize("name", VALID)
def test_valid_message_parses_and_round_trips(name: str) -> None:
    msg = parse_message(load(name))
    again = parse_message(bytes(msg))
    assert type(again) is type(msg)
    assert start_line(again) == start_line(msg)
    # Serialising recomputes Content-Length from the body.
    assert without_length(again) == without_length(msg)
    assert again.headers.get("Content-Length") == str(len(msg.body))
    assert again.body == msg.body


@pytest.mark.parametrize("name", sorted(REJECTED_BY_PARSER))
def test_invalid_message_rejected_by_parser(name: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load(name))
    assert info.value.status_hint == REJECTED_BY_PARSER[name]


@pytest.mark.parametrize("name", sorted(REJECTED_BY_CHECK))
def test_invalid_message_rejected_by_check(name: str) -> None:
    msg = parse_message(load(name))
    with pytest.raises(SipParseError) as info:
        msg.check()
    assert info.value.status_hint == REJECTED_BY_CHECK[name]


@pytest.mark.parametrize("name", sorted(set(VALID) - set(REJECTED_BY_CHECK)))
def test_valid_message_passes_check(name: str) -> None:
    parse_message(load(name)).check()


@pytest.mark.parametrize("name", sorted(set(VALID) - {"dblreq"}))
def test_valid_message_framed_on_a_stream(name: str) -> None:
    data = load(name)
    if b"Content-Length" not in data and b"\nl:" not in data.lower():
        data = data.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n", 1)
        data = data[: data.index(b"\r\n\r\n") + 4]  # inv2543: no Content-Length
    parser = StreamParser()
    out = parser.feed(data)
    assert len(out) == 1
    assert not isinstance(out[0], SipParseError)
    assert parser.buffered == 0


# -- §3.1.1 valid messages: the fields the RFC draws attention to


def test_wsinv_folding_compact_forms_and_whitespace() -> None:
    msg = request("wsinv")
    assert msg.method == "INVITE"
    assert msg.request_uri.params == {"unknownparam": None}
    assert msg.to.uri.user == "vivekg"
    assert msg.to.tag == "1918181833n"
    assert msg.from_.display_name == r"J Rosenberg \\\""  # quoted-pairs kept as sent
    assert msg.from_.tag == "98asjd8"
    assert msg.headers.get("Max-Forwards") == "0068"
    assert msg.cseq == (9, "INVITE")
    assert msg.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert msg.headers.get("Subject") == ""  # "s :" compact, empty
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    route = msg.headers.get("Route")
    assert route == "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"
    vias = msg.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    (contact,) = msg.contacts
    assert contact.display_name == r"Quoted string \"\""
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert msg.content_type == "application/sdp"
    assert len(msg.body) == 150
    assert msg.body.startswith(b"v=0\r\n")


def test_intmeth_wide_range_of_characters() -> None:
    msg = request("intmeth")
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.method == method
    assert msg.cseq == (139122385, method)
    uri = msg.request_uri
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert uri.headers is None
    assert msg.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.to.display_name == "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f"
    assert msg.to.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    # Serialising only adds the space after the colon of that last header.
    assert bytes(msg) == load("intmeth").replace(b"~:\xef", b"~: \xef")


def test_esc01_escapes_kept_as_sent() -> None:
    msg = request("esc01")
    assert msg.request_uri.user == "sips%3Auser%40example.com"
    assert msg.request_uri.host == "example.net"
    assert msg.to.uri.user == "%75se%72"
    assert msg.from_.uri.user == "I%20have%20spaces"
    assert msg.call_id == "esc01.239409asdfakjkn23onasd0-3234"  # "i" compact form
    assert msg.content_type == "application/sdp"  # "C" compact form
    (contact,) = msg.contacts
    assert contact.uri.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}


def test_escnull_percent_00_in_uris() -> None:
    msg = request("escnull")
    assert msg.to.uri.user == "null-%00-null"
    assert msg.from_.uri.user == "null-%00-null"
    assert [c.uri.user for c in msg.contacts] == ["%00", "%00%00"]
    assert msg.headers.get("Content-Length") == "0"  # "L:0"


def test_esc02_percent_is_not_an_escape_everywhere() -> None:
    msg = request("esc02")
    assert msg.method == "RE%47IST%45R"  # not REGISTER
    assert msg.to.display_name == "%Z%45"
    assert [c.uri.host for c in msg.contacts] == ["host1.example.com", "host3.example.com"]
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert msg.top_via.branch == "z9hG4bK209%fzsnel234"


def test_lwsdisp_display_name_without_space() -> None:
    assert request("lwsdisp").from_.display_name == "caller"


def test_longreq_long_values() -> None:
    msg = request("longreq")
    assert msg.to.display_name == "I have a user name of " + "extreme" * 10 + " proportion"
    assert msg.to.uri.port == 6000
    assert msg.to.uri.params["unknownparam1"] == "very" + "long" * 20 + "value"
    assert msg.to.uri.params["longparam" + "name" * 25] == "shortvalue"
    assert msg.to.uri.params["very" + "long" * 25 + "parameternamewithnovalue"] is None
    assert msg.from_.uri.user == "amazinglylongcallername" * 5
    assert msg.from_.tag == "12" + "982" * 50 + "424"
    assert msg.call_id == "longreq.one" + "really" * 20 + "longcallid"
    vias = msg.vias
    assert len(vias) == 34
    assert [v.host for v in vias[:33]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
    assert vias[33].branch == "very" + "long" * 50 + "branchvalue"
    assert vias[33].params["received"] == "192.0.2.5"
    assert msg.contacts[0].uri.user == "amazinglylongcallername" * 5


def test_dblreq_extra_octets_ignored() -> None:
    msg = request("dblreq")
    assert msg.method == "REGISTER"
    assert msg.body == b""
    assert msg.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"


def test_dblreq_on_a_stream_is_two_messages_then_junk() -> None:
    # On a stream the trailing INVITE is a message of its own; its SDP is 3 bytes
    # longer than its Content-Length, and those bytes cannot start a message.
    parser = StreamParser()
    out = parser.feed(load("dblreq"))
    assert [m.method for m in out if isinstance(m, SipRequest)] == ["REGISTER", "INVITE"]
    with pytest.raises(SipParseError, match="unframeable"):
        parser.feed(b"")


def test_semiuri_semicolon_in_user_part() -> None:
    msg = request("semiuri")
    assert msg.request_uri.user == "user;par=u%40example.net"
    assert msg.request_uri.host == "example.com"
    assert msg.request_uri.params == {}
    accept = msg.headers.get_all("Accept")
    assert accept == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_transports_all_via_transports() -> None:
    msg = request("transports")
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert msg.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_binary_body_measured_in_bytes() -> None:
    msg = request("mpart01")
    assert len(msg.body) == 553
    assert b"\x00" in msg.body
    assert msg.content_type == "multipart/mixed"
    assert msg.top_via.params == {
        "branch": "z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-",
        "rport": None,
    }
    assert bytes(msg) == load("mpart01")


def test_unreason_utf8_reason_phrase() -> None:
    msg = parse_message(load("unreason"))
    assert isinstance(msg, SipResponse)
    assert msg.status == 200
    assert msg.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert bytes(msg) == load("unreason")


def test_noreason_empty_reason_phrase() -> None:
    msg = parse_message(load("noreason"))
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (100, "")
    assert bytes(msg) == load("noreason")


# -- §3.1.2 invalid messages: the reason they are refused


def test_clerr_content_length_larger_than_body() -> None:
    with pytest.raises(SipParseError, match="Content-Length says 9999"):
        parse_message(load("clerr"))


def test_clerr_on_a_stream_waits_for_the_body() -> None:
    parser = StreamParser()
    assert parser.feed(load("clerr")) == []  # 9999 bytes may still come
    assert parser.buffered == len(load("clerr"))


def test_scalar02_overlarge_values() -> None:
    with pytest.raises(SipParseError, match="CSeq"):
        parse_message(load("scalar02"))
    fixed = load("scalar02").replace(b"36893488147419103232", b"1")
    with pytest.raises(SipParseError, match="Max-Forwards"):
        parse_message(fixed)
    fixed = fixed.replace(b"Max-Forwards: 300", b"Max-Forwards: 70")
    msg = parse_message(fixed)
    with pytest.raises(SipParseError, match="Expires"):
        _ = msg.expires


def test_badvers_answers_505() -> None:
    with pytest.raises(SipParseError, match=r"SIP/7\.0") as info:
        parse_message(load("badvers"))
    assert info.value.status_hint == 505


def test_mismatch_cseq_method() -> None:
    for name in ("mismatch01", "mismatch02"):
        with pytest.raises(SipParseError, match="CSeq method"):
            parse_message(load(name))


def test_multi01_repeated_single_value_headers() -> None:
    with pytest.raises(SipParseError, match="more than one"):
        parse_message(load("multi01"))


def test_mcl01_conflicting_content_lengths() -> None:
    with pytest.raises(SipParseError, match="conflicting Content-Length"):
        parse_message(load("mcl01"))
    with pytest.raises(SipParseError, match="unframeable"):
        StreamParser().feed(load("mcl01"))


def test_insuf_names_the_missing_headers() -> None:
    with pytest.raises(SipParseError, match="From, To, Call-ID"):
        parse_message(load("insuf"))


def test_escruri_request_uri_headers() -> None:
    msg = request("escruri")
    with pytest.raises(SipParseError, match="headers in Request-URI"):
        _ = msg.request_uri


def test_baddate_is_left_to_the_application() -> None:
    # RFC 4475 §3.1.2.12 lets an element ignore a Date it does not need;
    # GB/T 28181 puts its own ISO format in Date, so the codec never reads it.
    msg = request("baddate")
    assert msg.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


# -- §3.2-§3.4: parsed; the layer above decides


def test_badbranch_bare_magic_cookie() -> None:
    assert request("badbranch").top_via.branch == "z9hG4bK"


def test_unkscm_and_novelsc_opaque_request_uri() -> None:
    uri = request("unkscm").request_uri
    assert (uri.scheme, uri.opaque) == ("nobodyknowsthisscheme", "totallyopaquecontent")
    uri = request("novelsc").request_uri
    assert (uri.scheme, uri.opaque) == ("soap.beep", "//192.0.2.103:3002")


def test_unksm2_unknown_schemes_in_headers() -> None:
    msg = request("unksm2")
    assert (msg.to.uri.scheme, msg.to.uri.opaque) == ("isbn", "2983792873")
    assert (msg.from_.uri.scheme, msg.from_.tag) == ("http", "3234233")
    assert msg.contacts[0].uri.scheme == "name"


def test_bext01_require_values_listed() -> None:
    msg = request("bext01")
    assert msg.headers.get_all("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert msg.headers.get_all("Proxy-Require") == [
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ]


def test_invut_and_sdp01_content_negotiation_inputs() -> None:
    assert request("invut").content_type == "application/unknownformat"
    assert request("sdp01").headers.get_all("Accept") == ["text/nobodyKnowsThis"]


def test_regaut01_unknown_scheme_kept_raw() -> None:
    value = request("regaut01").headers.get("Authorization")
    assert value == "NoOneKnowsThisScheme opaque-data=here"


def test_bcast_broadcast_via() -> None:
    msg = parse_message(load("bcast"))
    assert [v.host for v in msg.vias] == ["192.0.2.198", "255.255.255.255"]


def test_zeromf_max_forwards_zero() -> None:
    assert request("zeromf").headers.get("Max-Forwards") == "0"


def test_cparam01_header_param_cparam02_uri_param() -> None:
    (c1,) = request("cparam01").contacts
    assert c1.params == {"unknownparam": None}
    assert c1.uri.params == {}
    (c2,) = request("cparam02").contacts
    assert c2.params == {}
    assert c2.uri.params == {"unknownparam": None}


def test_regescrt_escaped_headers_in_contact() -> None:
    (contact,) = request("regescrt").contacts
    assert contact.uri.headers == "Route=%3Csip:sip.example.com%3E"
    assert str(contact) == "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>"


def test_inv2543_rfc2543_request() -> None:
    msg = request("inv2543")
    assert msg.top_via.branch is None
    assert msg.to.tag is None
    assert "Max-Forwards" not in msg.headers
    assert msg.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")
