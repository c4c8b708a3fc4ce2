"""Store URL parsing and password redaction."""

from __future__ import annotations

import re

import pytest

from gb28181.store import StoreConfigError, StoreUrl, parse_store_url, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///./var/gb28181.db", StoreUrl("sqlite", "./var/gb28181.db")),
        ("sqlite:///var/gb28181.db", StoreUrl("sqlite", "var/gb28181.db")),
        ("sqlite:////srv/gb/gb28181.db", StoreUrl("sqlite", "/srv/gb/gb28181.db")),
        ("SQLITE:///x.db", StoreUrl("sqlite", "x.db")),
        ("sqlite://:memory:", StoreUrl("sqlite", ":memory:")),
        ("sqlite:///:memory:", StoreUrl("sqlite", ":memory:")),
        (
            "postgresql://gb@10.0.0.5:5432/gb28181",
            StoreUrl("postgresql", "postgresql://gb@10.0.0.5:5432/gb28181"),
        ),
        (
            "postgres://gb:pw@db/gb28181?search_path=gb",
            StoreUrl("postgresql", "postgresql://gb:pw@db/gb28181?search_path=gb"),
        ),
    ],
)
def test_parse(url: str, expected: StoreUrl) -> None:
    assert parse_store_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/gb", "unsupported store URL scheme 'mysql'"),
        ("./var/gb28181.db", "has no scheme"),
        ("://x", "has no scheme"),
        ("sqlite://var/gb28181.db", "sqlite:///relative/path.db"),
        ("sqlite://", "sqlite:///relative/path.db"),
        ("sqlite:///", "does not name a database file"),
        ("sqlite:///var/", "does not name a database file"),
        ("sqlite:///gb.db?mode=ro", "takes no query"),
        ("postgresql://", "no host or database"),
    ],
)
def test_parse_rejects(url: str, message: str) -> None:
    with pytest.raises(StoreConfigError, match=re.escape(message)):
        parse_store_url(url)


def test_unknown_scheme_message_hides_password() -> None:
    with pytest.raises(StoreConfigError) as info:
        parse_store_url("mysql://root:hunter2@db/gb")

    assert "hunter2" not in str(info.value)
    assert "sqlite://" in str(info.value) and "postgresql://" in str(info.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://gb:hunter2@db:5432/gb", "postgresql://gb:***@db:5432/gb"),
        ("postgresql://gb:@db/gb", "postgresql://gb:***@db/gb"),
        ("postgresql://gb@db:5432/gb", "postgresql://gb@db:5432/gb"),
        ("postgresql://db:5432/gb?x=a@b", "postgresql://db:5432/gb?x=a@b"),
        ("sqlite:///./var/gb28181.db", "sqlite:///./var/gb28181.db"),
    ],
)
def test_redact(url: str, expected: str) -> None:
    assert redact_url(url) == expected
