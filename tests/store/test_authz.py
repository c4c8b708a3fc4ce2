"""Authorization state (migration 0008) on both dialects: certificate bindings, grant
documents, channel access lists."""

from __future__ import annotations

import pytest

from gb28181.store import CertBinding, Store, StoreDataError
from gb28181.store._authz import binding_from_row, binding_row

ACCOUNT = "34020000001320000001"


def _binding(serial: str = "AB", at: float = 1_700_000_000.25) -> CertBinding:
    return CertBinding(ACCOUNT, "-----BEGIN CERTIFICATE-----\n...", "f" * 64, serial, at, "n")


async def test_migration_eight_is_applied(store: Store) -> None:
    assert 8 in await store.applied_versions()


async def test_bindings_put_replace_get_delete(store: Store) -> None:
    assert await store.get_cert_binding(ACCOUNT) is None
    await store.put_cert_binding(_binding())
    assert await store.get_cert_binding(ACCOUNT) == _binding()
    await store.put_cert_binding(_binding("CD", 5.0))
    assert await store.get_cert_binding(ACCOUNT) == _binding("CD", 5.0)
    assert await store.delete_cert_binding(ACCOUNT) is True
    assert await store.delete_cert_binding(ACCOUNT) is False
    assert await store.get_cert_binding(ACCOUNT) is None


async def test_grants_upsert_and_load_in_order(store: Store) -> None:
    await store.save_grant("g1", "pending", '{"id": "g1", "state": "pending"}', 1.0)
    await store.save_grant("g2", "pending", '{"id": "g2"}', 2.0)
    await store.save_grant("g1", "approved", '{"id": "g1", "state": "approved"}', 3.0)
    bodies = await store.load_grants()
    assert len(bodies) == 2
    assert '{"id": "g1", "state": "approved"}' in bodies and '{"id": "g2"}' in bodies


async def test_channel_acl_replace_per_relation(store: Store) -> None:
    await store.set_channel_acl("c1", "shared_with", ["deptA", "deptB", "deptA"])
    await store.set_channel_acl("c1", "controllable_by", ["deptC"])
    await store.set_channel_acl("c2", "shared_with", ["u1"])
    await store.set_channel_acl("c1", "shared_with", ["deptB"])
    assert await store.load_channel_acl() == [
        ("c1", "controllable_by", "deptC"),
        ("c1", "shared_with", "deptB"),
        ("c2", "shared_with", "u1"),
    ]
    await store.set_channel_acl("c2", "shared_with", [])
    assert ("c2", "shared_with", "u1") not in await store.load_channel_acl()
    with pytest.raises(StoreDataError):
        await store.set_channel_acl("c1", "owner", ["x"])


def test_binding_row_conversion() -> None:
    assert binding_from_row(binding_row(_binding())) == _binding()
