"""Value types: scope matching, windows, civil time, principal validation."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authz import AuthzError, Principal, PrincipalKind, Scope, Window, civil_month_minute

CST = dt.timezone(dt.timedelta(hours=8))


def test_scope() -> None:
    assert Scope.everything().covers("anything")
    assert Scope.everything().is_everything
    assert not Scope().covers("37020000001320000001")
    s = Scope(prefixes=("3702",), channel_ids=frozenset({"x"}))
    assert s.covers("37021") and s.covers("x") and not s.covers("3703") and not s.is_everything


def test_window_month_mask_wraps() -> None:
    assert Window(12, 2).month_mask == (1 << 12) | (1 << 1) | (1 << 2)
    assert Window().month_mask == sum(1 << m for m in range(1, 13))
    assert Window(12, 2).is_open(1, 0, frozenset())
    assert not Window(12, 2).is_open(3, 0, frozenset())
    assert not Window(first_minute=60, last_minute=120).is_open(1, 121, frozenset())
    assert not Window(flag="wartime").is_open(1, 0, frozenset())


@pytest.mark.parametrize(
    "kw",
    [{"first_month": 0}, {"last_month": 13}, {"first_minute": -1}, {"last_minute": 1440}],
)
def test_window_validation(kw: dict[str, int]) -> None:
    with pytest.raises(AuthzError):
        Window(**kw)  # type: ignore[arg-type]


@given(st.floats(-4e9, 4e9))
def test_civil_month_minute_matches_datetime(now: float) -> None:
    t = dt.datetime.fromtimestamp(math.floor(now), CST)
    assert civil_month_minute(now, 8 * 3600) == (t.month, t.hour * 60 + t.minute)


def test_principal_validation() -> None:
    with pytest.raises(AuthzError):
        Principal("p", PrincipalKind.USER, "d", 0)
    with pytest.raises(AuthzError):
        Principal("p", PrincipalKind.USER, "d", 5)
    with pytest.raises(AuthzError):
        Principal("p", PrincipalKind.USER, "d", 1, valid_from=2.0, valid_to=1.0)


def test_principal_in_windows() -> None:
    p = Principal("p", PrincipalKind.USER, "d", 1)
    assert p.in_windows(0.0, frozenset(), 0)
    q = Principal("p", PrincipalKind.USER, "d", 1, windows=(Window(2, 2),))
    assert not q.in_windows(0.0, frozenset(), 0)  # 1970-01-01
    assert q == Principal("p", PrincipalKind.USER, "d", 1, windows=(Window(2, 2),))
