"""API tokens (migration 0006) on both dialects: stored by hash, looked up, revoked."""

from __future__ import annotations

import pytest

from gb28181.store import ApiToken, Store, StoreDataError
from gb28181.store._audit import token_from_row, token_row


def _token(n: int, serial: str = "AB") -> ApiToken:
    return ApiToken(f"{n:064x}", f"user{n}", "f" * 64, serial, 1_700_000_000.5, note="n")


async def test_migration_six_is_applied(store: Store) -> None:
    assert 6 in await store.applied_versions()


async def test_tokens_round_trip_and_are_unique(store: Store) -> None:
    token = _token(1)
    await store.add_api_token(token)
    assert await store.get_api_token(token.token_hash) == token
    assert await store.get_api_token("0" * 64) is None
    with pytest.raises(StoreDataError):
        await store.add_api_token(token)


async def test_revoke_by_hash_or_by_certificate(store: Store) -> None:
    for n, serial in ((1, "AB"), (2, "AB"), (3, "CD")):
        await store.add_api_token(_token(n, serial))
    assert await store.revoke_api_tokens(at=10.0, token_hash=_token(3).token_hash) == 1
    assert await store.revoke_api_tokens(at=11.0, cert_serial="AB") == 2
    assert await store.revoke_api_tokens(at=12.0, cert_serial="AB") == 0
    revoked = await store.get_api_token(_token(1).token_hash)
    assert revoked is not None and revoked.revoked_at == 11.0
    with pytest.raises(StoreDataError):
        await store.revoke_api_tokens(at=1.0)


def test_row_conversion() -> None:
    token = ApiToken("h", "p", "f", "s", 1.0, 2.0, None, "")
    assert token_from_row(token_row(token)) == token
