"""Error hierarchy: who is at fault, and the SIP status to answer with."""

from __future__ import annotations

import pytest

from gb28181.manscdp import (
    ManscdpDepthError,
    ManscdpDtdError,
    ManscdpEncodeError,
    ManscdpError,
    ManscdpHostileError,
    ManscdpLocalError,
    ManscdpRemoteError,
    ManscdpSizeError,
    ManscdpSyntaxError,
    ManscdpUnknownRootError,
    PtzCommandError,
)


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (ManscdpSyntaxError, 400),
        (ManscdpUnknownRootError, 415),
        (ManscdpDtdError, 400),
        (ManscdpDepthError, 400),
        (ManscdpSizeError, 513),
    ],
)
def test_remote_errors(cls: type[ManscdpRemoteError], status: int) -> None:
    assert issubclass(cls, ManscdpRemoteError) and issubclass(cls, ManscdpError)
    assert cls("x").status_hint == status


def test_hostile_family() -> None:
    for cls in (ManscdpDtdError, ManscdpDepthError, ManscdpSizeError):
        assert issubclass(cls, ManscdpHostileError)


def test_local_errors() -> None:
    for cls in (ManscdpEncodeError, PtzCommandError):
        assert issubclass(cls, ManscdpLocalError) and not issubclass(cls, ManscdpRemoteError)
    assert issubclass(ManscdpError, ValueError)
