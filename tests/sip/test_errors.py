"""The SIP error hierarchy: who is at fault, and the status to answer with."""

from __future__ import annotations

import pytest

from gb28181.sip import SipError, SipLocalError, SipParseError, SipRemoteError


def test_hierarchy() -> None:
    assert issubclass(SipParseError, SipRemoteError)
    assert issubclass(SipRemoteError, SipError)
    assert issubclass(SipLocalError, SipError)
    assert not issubclass(SipLocalError, SipRemoteError)


def test_status_hint_defaults_to_400() -> None:
    assert SipRemoteError("bad").status_hint == 400
    err = SipParseError("too big", 513)
    assert err.status_hint == 513
    assert str(err) == "too big"


def test_caught_as_sip_error() -> None:
    with pytest.raises(SipError):
        raise SipParseError("x")
