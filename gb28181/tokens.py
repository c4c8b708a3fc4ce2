"""Bearer tokens of the HTTP API, each bound to the certificate it was issued against.

A token is 256 random bits, shown once to the operator and stored only as its SHA-256 (a slow
password hash buys nothing for a value nobody can guess; a leaked table grants nothing). The
stored :class:`~gb28181.store.ApiToken` names the certificate's fingerprint and serial: a
caller presenting the token runs as the certificate's ``Principal``, and revoking the
certificate revokes its tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["TOKEN_PREFIX", "hash_token", "looks_like_token", "new_token", "same_token"]

#: Recognisable in logs and by secret scanners.
TOKEN_PREFIX = "gbt_"

_RANDOM_BYTES = 32
_MAX_LENGTH = 128


def new_token() -> str:
    """A fresh token: the prefix and 43 URL-safe characters."""
    return TOKEN_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def hash_token(token: str) -> str:
    """Hex SHA-256 of the token's UTF-8 bytes: the key it is stored and looked up under."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(text: str) -> bool:
    """Cheap shape check before a database lookup (bounded length, our prefix)."""
    return len(text) <= _MAX_LENGTH and text.startswith(TOKEN_PREFIX) and text.isascii()


def same_token(token: str, token_hash: str) -> bool:
    """Constant-time comparison of a presented token with a stored hash."""
    return hmac.compare_digest(hash_token(token), token_hash)
