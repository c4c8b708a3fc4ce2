"""Shared helpers for the MANSCDP tests: fixture bodies split out of captured SIP messages."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sip-wire"


def split_sip(data: bytes) -> tuple[bytes, bytes]:
    """Split a SIP message at the first empty line (CRLF CRLF, or LF LF as a fallback)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        index = data.find(sep)
        if index >= 0:
            return data[:index], data[index + len(sep) :]
    return data, b""


def body(name: str) -> bytes:
    """The body of ``tests/fixtures/sip-wire/<name>.sip``."""
    return split_sip((FIXTURES / f"{name}.sip").read_bytes())[1]


def manscdp_fixtures() -> list[str]:
    """Names of every fixture whose body is MANSCDP XML."""
    names = []
    for path in sorted(FIXTURES.glob("*.sip")):
        head, payload = split_sip(path.read_bytes())
        if b"manscdp" in head.lower() and payload.strip():
            names.append(path.stem)
    return names
