"""Audit trail rows (migration 0005): the conversion shared by both backends.

Records cross the :class:`~gb28181.store.Store` interface as :class:`authz.audit.AuditRecord`.
A row must read back as exactly the record that was hashed, or verification would report
tampering that never happened: ``extra`` is stored as its canonical JSON text and ``time`` as
a double. A row that no longer decodes (someone wrote garbage into ``extra``) still loads, with
the raw text kept under :data:`UNDECODABLE`, so ``audit verify`` names its ``seq`` instead of
the loader failing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from authz.audit import AuditError, AuditRecord, canonical_json

from ._base import ApiToken
from ._errors import StoreDataError

__all__ = [
    "AUDIT_COLUMNS",
    "TOKEN_COLUMNS",
    "UNDECODABLE",
    "audit_from_row",
    "audit_row",
    "token_from_row",
    "token_row",
    "token_where",
]

AUDIT_COLUMNS = (
    "seq, time, principal, department, level, action, target, outcome, rule, reason, source, "
    "extra, prev_hash, hash"
)

#: Key of the ``extra`` mapping that carries a stored ``extra`` which is not a JSON object.
UNDECODABLE = "__undecodable__"


def audit_row(record: AuditRecord, *, operation: str, dialect: str) -> tuple[Any, ...]:
    """The column values of one record. :raises StoreDataError: ``extra`` is not JSON."""
    try:
        extra = canonical_json(dict(record.extra)).decode("utf-8")
    except AuditError as exc:
        raise StoreDataError(
            f"audit seq {record.seq}: {exc}", operation=operation, dialect=dialect
        ) from None
    return (
        record.seq,
        record.time,
        record.principal_id,
        record.department,
        record.level,
        record.action,
        record.target,
        record.outcome,
        record.rule,
        record.reason,
        record.source,
        extra,
        record.prev_hash,
        record.hash,
    )


def audit_from_row(r: Sequence[Any]) -> AuditRecord:
    try:
        extra = json.loads(r[11])
    except (TypeError, ValueError, RecursionError):
        extra = None
    if not isinstance(extra, dict):
        extra = {UNDECODABLE: str(r[11])}
    return AuditRecord(
        seq=int(r[0]),
        time=float(r[1]),
        principal_id=r[2],
        department=r[3],
        level=None if r[4] is None else int(r[4]),
        action=r[5],
        target=r[6],
        outcome=r[7],
        rule=r[8],
        reason=r[9],
        source=r[10],
        extra=MappingProxyType(extra),
        prev_hash=r[12],
        hash=r[13],
    )


# -- API tokens (migration 0006) -----------------------------------------------------------

TOKEN_COLUMNS = (
    "token_hash, principal, cert_sha256, cert_serial, created_at, expires_at, revoked_at, note"
)


def token_row(token: ApiToken) -> tuple[Any, ...]:
    return (
        token.token_hash,
        token.principal_id,
        token.cert_sha256,
        token.cert_serial,
        token.created_at,
        token.expires_at,
        token.revoked_at,
        token.note,
    )


def token_from_row(r: Sequence[Any]) -> ApiToken:
    return ApiToken(
        r[0],
        r[1],
        r[2],
        r[3],
        float(r[4]),
        None if r[5] is None else float(r[5]),
        None if r[6] is None else float(r[6]),
        r[7] or "",
    )


def token_where(
    token_hash: str | None, cert_serial: str | None, *, operation: str, dialect: str
) -> list[tuple[str, str]]:
    """``(column, value)`` conditions of a revocation. :raises StoreDataError: none given."""
    where = [(c, v) for c, v in (("token_hash", token_hash), ("cert_serial", cert_serial)) if v]
    if not where:
        raise StoreDataError(
            "give a token hash or a certificate serial", operation=operation, dialect=dialect
        )
    return where
