"""The audit hash chain: append, verify, and every kind of tampering detected."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authz import GENESIS, AuditChain, AuditError, AuditRecord, from_jsonl, to_jsonl, verify_audit
from authz.audit import canonical_json, compute_hash


def build(n: int = 5, key: bytes | None = None) -> list[AuditRecord]:
    chain = AuditChain(key=key)
    return [
        chain.append(
            time=1_700_000_000.0 + i,
            principal_id=f"3702000000200000000{i}",
            department="traffic",
            level=2,
            action="view",
            target="37020200001320000001",
            outcome="allow" if i % 2 else "deny",
            rule="L2-shared",
            reason="level 2: shared channel",
            source="10.0.0.1:5060",
            extra={"call_id": f"c{i}", "路段": "香港中路"},
        )
        for i in range(n)
    ]


def test_append_links_records() -> None:
    records = build()
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
    assert all(len(r.hash) == 64 for r in records)
    result = verify_audit(records)
    assert result.ok and result.count == 5 and result.last_seq == 5
    assert result.last_hash == records[-1].hash


def test_hash_is_sha256_of_canonical_body() -> None:
    import hashlib

    record = build(1)[0]
    body = json.dumps(record.body(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert record.hash == hashlib.sha256(body.encode()).hexdigest()


def test_altered_record_detected() -> None:
    records = build()
    records[2] = dataclasses.replace(
        records[2], outcome="allow" if records[2].outcome == "deny" else "deny"
    )
    result = verify_audit(records)
    assert not result.ok and result.broken_seq == 3 and "altered" in result.reason


def test_altered_extra_detected() -> None:
    records = build()
    records[1] = dataclasses.replace(records[1], extra={"call_id": "forged"})
    assert verify_audit(records).broken_seq == 2


def test_recomputed_record_breaks_the_next_link() -> None:
    records = build()
    forged = dataclasses.replace(records[2], reason="nothing to see")
    forged = dataclasses.replace(forged, hash=compute_hash(forged))
    records[2] = forged
    result = verify_audit(records)
    assert result.broken_seq == 4 and "prev_hash" in result.reason


def test_deleted_record_detected() -> None:
    records = build()
    del records[2]
    result = verify_audit(records)
    assert not result.ok and result.broken_seq == 4


def test_deleted_first_record_detected() -> None:
    assert verify_audit(build()[1:]).broken_seq == 2


def test_inserted_record_detected() -> None:
    records = build()
    intruder = dataclasses.replace(records[2], principal_id="intruder")
    intruder = dataclasses.replace(intruder, hash=compute_hash(intruder))
    records.insert(3, intruder)
    result = verify_audit(records)
    assert not result.ok and result.broken_seq == 3 and "reordered" in result.reason


def test_reordered_records_detected() -> None:
    records = build()
    records[1], records[2] = records[2], records[1]
    result = verify_audit(records)
    assert not result.ok and result.broken_seq == 3


def test_truncation_needs_an_anchor() -> None:
    records = build()
    anchor = (records[-1].seq, records[-1].hash)
    assert verify_audit(records[:-1]).ok
    result = verify_audit(records[:-1], expected_tail=anchor)
    assert not result.ok and result.broken_seq == 5
    assert verify_audit(records, expected_tail=anchor).ok


def test_segment_verification_and_resume() -> None:
    records = build(6)
    assert verify_audit(records[3:], start=(records[2].seq, records[2].hash)).ok
    chain = AuditChain(last_seq=records[-1].seq, last_hash=records[-1].hash)
    more = chain.append(
        time=1.0,
        principal_id="p",
        department="d",
        level=None,
        action="grant.approve",
        target="g1",
        outcome="ok",
        rule="grant",
    )
    assert verify_audit([*records, more]).ok
    assert chain.last_seq == 7 and chain.last_hash == more.hash


def test_hmac_key_prevents_recomputation_without_it() -> None:
    key = b"k" * 32
    records = build(key=key)
    assert verify_audit(records, key=key).ok
    assert not verify_audit(records).ok  # a plain SHA-256 chain does not match
    # An attacker without the key recomputes with plain SHA-256: detected.
    forged = [dataclasses.replace(r) for r in records]
    prev = GENESIS
    for i, r in enumerate(forged):
        r = dataclasses.replace(r, prev_hash=prev, reason="rewritten")
        r = dataclasses.replace(r, hash=compute_hash(r))
        forged[i], prev = r, r.hash
    assert verify_audit(forged).ok
    assert verify_audit(forged, key=key).broken_seq == 1


def test_append_rejects_non_json() -> None:
    chain = AuditChain()
    with pytest.raises(AuditError):
        chain.append(
            time=float("nan"),
            principal_id="p",
            department="d",
            level=1,
            action="view",
            target="t",
            outcome="allow",
            rule="r",
        )
    with pytest.raises(AuditError):
        chain.append(
            time=1.0,
            principal_id="p",
            department="d",
            level=1,
            action="view",
            target="t",
            outcome="allow",
            rule="r",
            extra={"x": object()},
        )
    assert chain.last_seq == 0
    with pytest.raises(AuditError):
        canonical_json(float("inf"))


def test_unserialisable_record_fails_verification() -> None:
    record = dataclasses.replace(build(1)[0], extra={"x": {1, 2}})
    assert not verify_audit([record]).ok


def test_jsonl_round_trip() -> None:
    records = build()
    text = to_jsonl(records)
    assert text.count("\n") == 5 and "香港中路" in text
    parsed = from_jsonl(text + "\n\n")
    assert [r.hash for r in parsed] == [r.hash for r in records]
    assert verify_audit(parsed).ok
    assert to_jsonl(parsed) == text


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        "[]",
        '{"seq": 1}',
        "NaN",
        "x" * (64 * 1024 + 1),
    ],
)
def test_jsonl_rejects_garbage(line: str) -> None:
    with pytest.raises(AuditError):
        from_jsonl(line)


def test_jsonl_rejects_wrong_types() -> None:
    obj = json.loads(to_jsonl(build(1)))
    for name, bad in [("seq", "1"), ("level", True), ("extra", []), ("time", None)]:
        with pytest.raises(AuditError):
            from_jsonl(json.dumps({**obj, name: bad}))


@given(st.text(max_size=300))
def test_jsonl_fuzz_raises_only_audit_error(text: str) -> None:
    try:
        from_jsonl(text)
    except AuditError:
        pass
