"""Identifier generation: shape, uniqueness across pool refills."""

from __future__ import annotations

from gb28181.sip import BRANCH_COOKIE, _ids, new_branch, new_call_id, new_tag


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def test_shapes() -> None:
    tag = new_tag()
    assert len(tag) == 16 and _is_hex(tag)
    branch = new_branch()
    assert branch.startswith(BRANCH_COOKIE) and len(branch) == 23 and _is_hex(branch[7:])
    local, _, host = new_call_id("10.0.0.5").partition("@")
    assert host == "10.0.0.5" and len(local) == 24 and _is_hex(local)
    assert "@" not in new_call_id()


def test_unique_across_refills() -> None:
    count = 3 * _ids._POOL_BYTES // 8  # three pool refills
    tags = {new_tag() for _ in range(count)}
    assert len(tags) == count


def test_empty_pool_refills() -> None:
    _ids._pool.clear()  # what a forked child starts with
    assert len(new_tag()) == 16
    assert len(_ids._pool) == _ids._POOL_BYTES // 8 - 1
