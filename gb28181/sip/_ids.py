"""Fresh identifiers for SIP: Via branches, tags and Call-IDs (RFC 3261 §8.1.1).

Each must be unique in space and time and hard to guess (a guessable tag or
Call-ID lets an off-path attacker inject a BYE, RFC 3261 §26.3.2.2), so they
come from ``os.urandom``, read in batches. They are made
on every request we send, so they are kept short and cheap: 64 bits of
randomness for branches and tags, 96 for Call-IDs.
"""

from __future__ import annotations

import os
from collections import deque

__all__ = ["BRANCH_COOKIE", "new_branch", "new_call_id", "new_tag"]

#: Prefix that marks an RFC 3261 branch (§8.1.1.7); without it a peer follows RFC 2543.
BRANCH_COOKIE = "z9hG4bK"

# One os.urandom call per 256 identifiers instead of one each (a system call
# plus two Python layers of ``secrets.token_hex`` cost more than the rest of a
# tag). Each 64-bit chunk is handed out once: ``deque.popleft`` is atomic, so
# threads never share one, and a forked child drops the parent's pool.
_POOL_BYTES = 2048
_pool: deque[str] = deque()


def _refill() -> None:
    text = os.urandom(_POOL_BYTES).hex()
    _pool.extend([text[i : i + 16] for i in range(0, len(text), 16)])


def _random64() -> str:
    """16 fresh hex digits (64 bits) from the operating system's CSPRNG."""
    try:
        return _pool.popleft()
    except IndexError:
        _refill()
        return _pool.popleft()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.clear)


def new_branch() -> str:
    """A Via branch for a new client transaction, with the ``z9hG4bK`` cookie."""
    return BRANCH_COOKIE + _random64()


def new_tag() -> str:
    """A From/To tag (RFC 3261 §19.3): 16 hex digits of randomness."""
    return _random64()


def new_call_id(host: str | None = None) -> str:
    """A Call-ID, ``<24 hex digits>@host`` when ``host`` is given (RFC 3261 §8.1.1.4)."""
    local = _random64() + _random64()[:8]
    return f"{local}@{host}" if host else local
