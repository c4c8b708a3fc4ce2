"""Issued IDs (migration 0004): the arithmetic shared by both backends.

IDs are fixed-length digit strings, so text order is numeric order and "the highest issued ID
in a block" is one ``max(id)`` over ``id BETWEEN lo AND hi``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._base import IssuedId
from ._errors import StoreDataError

__all__ = ["check_block", "issued_from_row", "next_ids"]

_ID_LEN = 20


def check_block(lo: str, hi: str, count: int, *, operation: str, dialect: str) -> None:
    """Refuse a malformed block before it reaches SQL."""
    for value in (lo, hi):
        if len(value) != _ID_LEN or not value.isdigit():
            raise StoreDataError(
                f"block bounds must be {_ID_LEN} digits, got {value!r}",
                operation=operation,
                dialect=dialect,
            )
    if count < 1:
        raise StoreDataError(
            f"count must be positive, got {count}", operation=operation, dialect=dialect
        )


def next_ids(highest: str | None, lo: str, hi: str, count: int) -> list[str]:
    """The ``count`` IDs after ``highest`` (or from ``lo`` when none), or ``[]`` when they
    would pass ``hi``."""
    first = int(lo) if highest is None else max(int(highest) + 1, int(lo))
    last = first + count - 1
    if last > int(hi):
        return []
    return [f"{n:0{_ID_LEN}d}" for n in range(first, last + 1)]


def issued_from_row(r: Sequence[Any]) -> IssuedId:
    return IssuedId(r[0], r[1], r[2], float(r[3]), r[4] or "")
