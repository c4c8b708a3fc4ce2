"""Fresh identifiers for SIP: Via branches, tags and Call-IDs (RFC 3261 §8.1.1).

Each must be unique in space and time and hard to guess (a guessable tag or
Call-ID lets an off-path attacker inject a BYE, RFC 3261 §26.3.2.2), so they
come from :func:`secrets.token_hex`, which reads ``os.urandom``. They are made
on every request we send, so they are kept short and cheap: 64 bits of
randomness for branches and tags, 96 for Call-IDs.
"""

from __future__ import annotations

from secrets import token_hex

__all__ = ["BRANCH_COOKIE", "new_branch", "new_call_id", "new_tag"]

#: Prefix that marks an RFC 3261 branch (§8.1.1.7); without it a peer follows RFC 2543.
BRANCH_COOKIE = "z9hG4bK"


def new_branch() -> str:
    """A Via branch for a new client transaction, with the ``z9hG4bK`` cookie."""
    return BRANCH_COOKIE + token_hex(8)


def new_tag() -> str:
    """A From/To tag (RFC 3261 §19.3): 16 hex digits of randomness."""
    return token_hex(8)


def new_call_id(host: str | None = None) -> str:
    """A Call-ID, ``<24 hex digits>@host`` when ``host`` is given (RFC 3261 §8.1.1.4)."""
    local = token_hex(12)
    return f"{local}@{host}" if host else local
