"""Headers: case-insensitive, order-preserving, compact forms, list splitting."""

from __future__ import annotations

from gb28181.sip import COMPACT_FORMS, Headers, canonical_name


def test_canonical_names() -> None:
    assert canonical_name("call-id") == "Call-ID"
    assert canonical_name("CSEQ") == "CSeq"
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("x-gb-ver") == "X-GB-Ver"
    assert canonical_name("X-Unknown") == "X-Unknown"
    for short, full in COMPACT_FORMS.items():
        assert canonical_name(short) == full
        assert canonical_name(short.upper()) == full


def test_lookup_is_case_insensitive_and_compact_aware() -> None:
    h = Headers([("v", "SIP/2.0/UDP a"), ("CALL-ID", "c1"), ("x-thing", "1")])
    assert h.get("Via") == "SIP/2.0/UDP a"
    assert h.get("i") == "c1"
    assert h.get("call-id") == "c1"
    assert h.get("X-THING") == "1"
    assert h.get("Missing") is None
    assert h.get("Missing", "d") == "d"
    assert "v" in h
    assert "VIA" in h
    assert 42 not in h
    assert list(h) == [("Via", "SIP/2.0/UDP a"), ("Call-ID", "c1"), ("x-thing", "1")]
    assert len(h) == 3


def test_get_all_splits_list_headers_only() -> None:
    h = Headers()
    h.add("Via", "SIP/2.0/UDP a;branch=1, SIP/2.0/UDP b;branch=2")
    h.add("v", "SIP/2.0/TCP c")
    h.add("Contact", '"Doe, John" <sip:j@x;a=1,2>;q=0.5, <sip:k@y>')
    h.add("WWW-Authenticate", 'Digest realm="a", nonce="b"')
    h.add("Date", "Sat, 15 Oct 2005 04:44:56 GMT")
    assert h.get_all("via") == ["SIP/2.0/UDP a;branch=1", "SIP/2.0/UDP b;branch=2", "SIP/2.0/TCP c"]
    assert h.get_all("m") == ['"Doe, John" <sip:j@x;a=1,2>;q=0.5', "<sip:k@y>"]
    assert h.get_all("WWW-Authenticate") == ['Digest realm="a", nonce="b"']
    assert h.get_all("Date") == ["Sat, 15 Oct 2005 04:44:56 GMT"]
    assert h.get_all("Route") == []


def test_set_replaces_in_place_and_appends_when_absent() -> None:
    h = Headers([("X-A", "1"), ("Via", "x"), ("X-B", "2"), ("via", "y")])
    h.set("VIA", "z")
    assert list(h) == [("X-A", "1"), ("Via", "z"), ("X-B", "2")]
    h.set("X-C", "3")
    assert list(h)[-1] == ("X-C", "3")


def test_set_all_prepend_remove_copy_eq() -> None:
    h = Headers([("X-A", "1"), ("Via", "x"), ("X-B", "2"), ("Via", "y")])
    h.set_all("Via", ["p", "q", "r"])
    assert list(h) == [("X-A", "1"), ("Via", "p"), ("Via", "q"), ("Via", "r"), ("X-B", "2")]
    h.set_all("Route", ["<sip:r>"])
    assert list(h)[-1] == ("Route", "<sip:r>")
    c = h.copy()
    assert c == h
    h.prepend("v", "top")
    assert next(iter(h)) == ("Via", "top")
    assert c != h
    h.remove("via")
    assert "Via" not in h
    assert (h == "not headers") is False
    assert repr(Headers([("i", "c")])) == "Headers([('Call-ID', 'c')])"


def test_equality_ignores_name_spelling() -> None:
    assert Headers([("call-id", "c")]) == Headers([("i", "c")])
