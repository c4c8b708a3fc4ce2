"""A tamper-evident audit trail of video access (第二十一条; regulation.md §7).

Every call-up, control, playback, download and permission change becomes an
:class:`AuditRecord`: who (principal, department, level), what (action, target), when, from
where, the outcome and the rule that decided it. Records form a hash chain::

    hash_n = H(canonical_json(fields_n including prev_hash = hash_{n-1}))

where ``canonical_json`` is JSON with sorted keys, no insignificant white space, UTF-8, and
``hash_0``'s predecessor is :data:`GENESIS` (64 zeros). Changing, deleting, inserting or
reordering any record breaks the chain at that record's sequence number, which
:func:`verify` reports.

Threat model.

* With ``H`` = plain SHA-256, the chain detects accidental damage and tampering by anyone who
  cannot, or does not bother to, recompute every later hash. A database administrator who can
  rewrite the table *can* recompute the whole chain from the altered record onwards.
* With ``H`` = HMAC-SHA-256 under a key kept outside the database (a file readable only by the
  platform's service user, or an HSM), rewriting requires the key: an administrator of the
  database alone can no longer forge a consistent chain.
* Truncation of the tail (dropping the newest records) cannot be seen from the records alone.
  Publish an anchor (the latest ``seq`` and ``hash``) periodically to a place the database
  administrator cannot write (a log shipped off the host, a signed daily digest), and pass it
  to :func:`verify` as ``expected_tail``.
* Nothing here keeps records secret; they contain no video, only metadata.

Pure: no clock (the caller passes ``time``), no I/O; JSON-lines helpers work on strings.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "GENESIS",
    "AuditChain",
    "AuditError",
    "AuditRecord",
    "VerifyResult",
    "from_jsonl",
    "to_jsonl",
    "verify",
]

GENESIS = "0" * 64

#: A line of the JSON-lines export may not exceed this many characters.
MAX_LINE_LENGTH = 64 * 1024

_FIELDS = (
    "seq",
    "time",
    "principal_id",
    "department",
    "level",
    "action",
    "target",
    "outcome",
    "rule",
    "reason",
    "source",
    "extra",
    "prev_hash",
)


class AuditError(ValueError):
    """A record could not be built, serialised or parsed."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited event. ``hash`` covers every other field (see the module docstring)."""

    seq: int
    time: float
    principal_id: str
    department: str
    level: int | None
    action: str
    target: str
    outcome: str
    rule: str
    reason: str
    source: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""

    def body(self) -> dict[str, Any]:
        """The hashed fields as plain JSON values."""
        return {
            "seq": self.seq,
            "time": self.time,
            "principal_id": self.principal_id,
            "department": self.department,
            "level": self.level,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "rule": self.rule,
            "reason": self.reason,
            "source": self.source,
            "extra": dict(self.extra),
            "prev_hash": self.prev_hash,
        }


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8, no NaN/Infinity.

    :raises AuditError: the value is not representable as strict JSON.
    """
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise AuditError(f"not canonical JSON: {exc}") from None
    return text.encode("utf-8")


def compute_hash(record: AuditRecord, key: bytes | None = None) -> str:
    """SHA-256 (or HMAC-SHA-256 under ``key``) of the record's canonical body, in hex."""
    data = canonical_json(record.body())
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


class AuditChain:
    """Appends records to a chain. Resume an existing chain with its tail's ``seq`` and
    ``hash``; the caller stores the records."""

    def __init__(
        self, *, key: bytes | None = None, last_seq: int = 0, last_hash: str = GENESIS
    ) -> None:
        self._key = key
        self._seq = last_seq
        self._hash = last_hash

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def last_hash(self) -> str:
        return self._hash

    def append(
        self,
        *,
        time: float,
        principal_id: str,
        department: str,
        level: int | None,
        action: str,
        target: str,
        outcome: str,
        rule: str,
        reason: str = "",
        source: str = "",
        extra: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Build the next record, computing its ``seq``, ``prev_hash`` and ``hash``.

        :raises AuditError: ``time`` is not finite or ``extra`` is not strict JSON.
        """
        if not math.isfinite(time):
            raise AuditError("time must be finite")
        record = AuditRecord(
            seq=self._seq + 1,
            time=float(time),
            principal_id=principal_id,
            department=department,
            level=level,
            action=action,
            target=target,
            outcome=outcome,
            rule=rule,
            reason=reason,
            source=source,
            extra=MappingProxyType(dict(extra or {})),
            prev_hash=self._hash,
        )
        digest = compute_hash(record, self._key)
        sealed = AuditRecord(**{**_as_kwargs(record), "hash": digest})
        self._seq = sealed.seq
        self._hash = digest
        return sealed


def _as_kwargs(record: AuditRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in (*_FIELDS, "hash")}


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    count: int  # records checked
    broken_seq: int | None = None  # first seq (as found, or as expected) where the chain broke
    reason: str = ""
    last_seq: int = 0
    last_hash: str = GENESIS


def verify(
    records: Iterable[AuditRecord],
    *,
    key: bytes | None = None,
    start: tuple[int, str] = (0, GENESIS),
    expected_tail: tuple[int, str] | None = None,
) -> VerifyResult:
    """Check a chain segment.

    :param start: ``(seq, hash)`` of the record before the first one given (the genesis by
        default); verifies a segment of a longer chain.
    :param expected_tail: a published anchor ``(seq, hash)``; detects truncation.
    :returns: the first break found: an altered record (hash mismatch), a gap or reordering
        (seq not the next one), a deleted or inserted record (prev_hash mismatch).
    """
    seq, prev = start
    count = 0
    for record in records:
        count += 1
        if record.seq != seq + 1:
            what = "reordered or duplicated" if record.seq <= seq else "deleted records before"
            return VerifyResult(False, count, record.seq, f"seq {record.seq}: {what}", seq, prev)
        try:
            digest = compute_hash(record, key)
        except AuditError as exc:
            return VerifyResult(False, count, record.seq, str(exc), seq, prev)
        if not hmac.compare_digest(digest, record.hash):
            return VerifyResult(
                False, count, record.seq, "record altered (hash mismatch)", seq, prev
            )
        if record.prev_hash != prev:
            return VerifyResult(
                False, count, record.seq, "chain broken (prev_hash mismatch)", seq, prev
            )
        seq, prev = record.seq, record.hash
    if expected_tail is not None and (seq, prev) != tuple(expected_tail):
        return VerifyResult(
            False,
            count,
            seq + 1,
            f"chain ends at seq {seq}, anchor says {expected_tail[0]}",
            seq,
            prev,
        )
    return VerifyResult(True, count, None, "", seq, prev)


# -- JSON lines ----------------------------------------------------------------------------


def to_jsonl(records: Iterable[AuditRecord]) -> str:
    """One canonical JSON object per line (with the ``hash``), newline-terminated."""
    lines = []
    for record in records:
        lines.append(canonical_json({**record.body(), "hash": record.hash}).decode("utf-8"))
    return "".join(line + "\n" for line in lines)


_TYPES: dict[str, tuple[type, ...]] = {
    "seq": (int,),
    "time": (int, float),
    "principal_id": (str,),
    "department": (str,),
    "level": (int, type(None)),
    "action": (str,),
    "target": (str,),
    "outcome": (str,),
    "rule": (str,),
    "reason": (str,),
    "source": (str,),
    "extra": (dict,),
    "prev_hash": (str,),
    "hash": (str,),
}


def from_jsonl(text: str) -> list[AuditRecord]:
    """Parse :func:`to_jsonl` output. Blank lines are skipped. Does not verify the chain.

    :raises AuditError: a line is too long, not JSON, or not a record.
    """
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_LENGTH:
            raise AuditError(f"line {number}: longer than {MAX_LINE_LENGTH} characters")
        try:
            obj = json.loads(line, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise AuditError(f"line {number}: not JSON: {exc}") from None
        if not isinstance(obj, dict) or set(obj) != set(_TYPES):
            raise AuditError(f"line {number}: not an audit record")
        for name, types in _TYPES.items():
            value = obj[name]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise AuditError(f"line {number}: field {name!r} has the wrong type")
        obj["time"] = float(obj["time"])
        obj["extra"] = MappingProxyType(obj["extra"])
        records.append(AuditRecord(**obj))
    return records


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")
