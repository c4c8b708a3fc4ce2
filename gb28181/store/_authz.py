"""Authorization state (migration 0008): the row shapes both backends share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._base import CertBinding
from ._errors import StoreDataError

__all__ = [
    "ACL_RELATIONS",
    "BINDING_COLUMNS",
    "binding_from_row",
    "binding_row",
    "check_relation",
]

BINDING_COLUMNS = "account_id, cert_pem, cert_sha256, cert_serial, bound_at, note"

#: The per-channel lists of ``channel_acl``.
ACL_RELATIONS = frozenset({"shared_with", "controllable_by"})


def binding_row(binding: CertBinding) -> tuple[Any, ...]:
    return (
        binding.account_id,
        binding.cert_pem,
        binding.cert_sha256,
        binding.cert_serial,
        binding.bound_at,
        binding.note,
    )


def binding_from_row(r: Sequence[Any]) -> CertBinding:
    return CertBinding(r[0], r[1], r[2], r[3], float(r[4]), r[5] or "")


def check_relation(relation: str, *, operation: str, dialect: str) -> None:
    if relation not in ACL_RELATIONS:
        raise StoreDataError(
            f"relation must be one of {sorted(ACL_RELATIONS)}, got {relation!r}",
            operation=operation,
            dialect=dialect,
        )
