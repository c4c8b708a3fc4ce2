"""Bearer tokens: random, prefixed, stored by hash, compared in constant time."""

from __future__ import annotations

from gb28181.tokens import TOKEN_PREFIX, hash_token, looks_like_token, new_token, same_token


def test_tokens_are_fresh_prefixed_and_hashable() -> None:
    first, second = new_token(), new_token()
    assert first != second and first.startswith(TOKEN_PREFIX)
    assert looks_like_token(first) and not looks_like_token("Bearer x")
    assert not looks_like_token(TOKEN_PREFIX + "x" * 200)
    assert len(hash_token(first)) == 64 and hash_token(first) != hash_token(second)
    assert same_token(first, hash_token(first)) and not same_token(second, hash_token(first))
