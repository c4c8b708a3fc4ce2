"""Headers: case-insensitive, order-preserving, compact forms, list splitting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gb28181.sip import COMPACT_FORMS, Headers, _headers, canonical_name


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


def test_get_all_with_and_without_repeats() -> None:
    h = Headers([("Via", "a, b"), ("X-One", "1")])
    assert h.get_all("v") == ["a", "b"]
    assert h.get_all("x-one") == ["1"]
    h.add("X-One", "2")
    assert h.get_all("X-ONE") == ["1", "2"]
    assert h.get("X-One") == "1"


def test_name_key_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_headers, "_KEYS", {})
    h = Headers()
    h.add("X-" + "n" * 200, "long")  # too long to cache, still works
    assert h.get("x-" + "N" * 200) == "long"
    assert ("X-" + "n" * 200) not in _headers._KEYS
    for i in range(_headers._KEYS_MAX + 10):
        canonical_name(f"X-Many-{i}")
    assert len(_headers._KEYS) <= _headers._KEYS_MAX


# -- model-based: the first-value index never disagrees with the list

_NAMES = st.sampled_from(["Via", "v", "VIA", "Call-ID", "i", "X-A", "x-a", "Contact", "To"])
_VALUES = st.sampled_from(["1", "2", "a, b", ""])
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), _NAMES, _VALUES),
        st.tuples(st.just("prepend"), _NAMES, _VALUES),
        st.tuples(st.just("set"), _NAMES, _VALUES),
        st.tuples(st.just("set_all"), _NAMES, st.lists(_VALUES, max_size=3)),
        st.tuples(st.just("remove"), _NAMES, st.just("")),
        st.tuples(st.just("copy"), _NAMES, st.just("")),
        st.tuples(st.just("read"), _NAMES, st.just("")),
    ),
    max_size=25,
)


def _key(name: str) -> str:
    return canonical_name(name).lower()


@settings(max_examples=300, deadline=None)
@given(_OPS)
def test_lookups_match_a_plain_list_model(ops: list[tuple[str, str, object]]) -> None:
    h = Headers()
    model: list[tuple[str, str]] = []  # (key, value), the pre-index implementation's view
    for op, name, arg in ops:
        key = _key(name)
        if op == "add":
            h.add(name, str(arg))
            model.append((key, str(arg)))
        elif op == "prepend":
            h.prepend(name, str(arg))
            model.insert(0, (key, str(arg)))
        elif op in ("set", "set_all"):
            values = [str(arg)] if op == "set" else list(arg)  # type: ignore[call-overload]
            if op == "set":
                h.set(name, values[0])
            else:
                h.set_all(name, values)
            pos = next((i for i, (k, _) in enumerate(model) if k == key), len(model))
            model = [t for t in model if t[0] != key]
            model[pos:pos] = [(key, v) for v in values]
        elif op == "remove":
            h.remove(name)
            model = [t for t in model if t[0] != key]
        elif op == "copy":
            h = h.copy()
        else:
            h.get(name)  # builds the index mid-sequence
        assert [(_key(n), v) for n, v in h] == model
        for probe in ("Via", "Call-ID", "X-A", "Contact", "To"):
            pkey = _key(probe)
            values = [v for k, v in model if k == pkey]
            assert h.get(probe) == (values[0] if values else None)
            assert (probe in h) == bool(values)
            if pkey not in ("via", "contact"):
                assert h.get_all(probe) == values
