"""The storage error hierarchy."""

from __future__ import annotations

import pytest

from gb28181.store import (
    StoreClosedError,
    StoreConfigError,
    StoreConnectionError,
    StoreDataError,
    StoreError,
    StoreMigrationError,
)


@pytest.mark.parametrize(
    "kind",
    [
        StoreClosedError,
        StoreConfigError,
        StoreConnectionError,
        StoreDataError,
        StoreMigrationError,
    ],
)
def test_every_error_is_a_store_error(kind: type[StoreError]) -> None:
    assert issubclass(kind, StoreError)


def test_str_carries_context() -> None:
    error = StoreDataError("bad value", operation="upsert_devices", dialect="postgresql")

    assert str(error) == "bad value (dialect=postgresql, operation=upsert_devices)"
    assert error.message == "bad value"


def test_str_without_context() -> None:
    assert str(StoreConfigError("bad url")) == "bad url"
    assert str(StoreError("x", operation="open")) == "x (operation=open)"
