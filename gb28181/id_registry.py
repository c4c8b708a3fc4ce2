"""Issuing IDs and refusing registrations from IDs never issued (regulation art. 11).

:class:`IdRegistry` ties the configured ranges (:mod:`gb28181.ids`) to the store's atomic
allocation and keeps every issued ID in a set in memory, so the REGISTER guard answers without
touching the database. The set is loaded at start, grows with every local allocation, and is
reloaded periodically (:meth:`IdRegistry.reload`) to learn IDs issued by other nodes sharing
the database.
"""

from __future__ import annotations

import logging
from typing import Protocol

from .ids import IdAllocator, IdError, check_note
from .sip import SipRequest, SipResponse, make_response, new_tag
from .store import IssuedId

__all__ = ["IdRegistry", "IdStore", "IdsExhausted"]

log = logging.getLogger(__name__)


class IdsExhausted(IdError):
    """No configured range of the department has ``count`` free IDs of that type left."""


class IdStore(Protocol):
    async def issue_ids(
        self,
        lo: str,
        hi: str,
        count: int,
        *,
        department: str,
        type_code: str,
        note: str = "",
        at: float,
    ) -> list[IssuedId]: ...

    async def load_issued_ids(self) -> list[str]: ...


class IdRegistry:
    """Issued IDs: allocation through the store, membership in memory.

    :param refuse_unissued: :meth:`register_guard` refuses IDs not issued.
    """

    def __init__(
        self, allocator: IdAllocator, store: IdStore, *, refuse_unissued: bool = False
    ) -> None:
        self.allocator = allocator
        self.store = store
        self.refuse_unissued = refuse_unissued
        self.issued: set[str] = set()
        self.refused = 0

    async def reload(self) -> int:
        """Add the stored IDs to the in-memory set (IDs are never withdrawn, so a union keeps
        those issued here while the load ran); :returns: how many are known."""
        self.issued.update(await self.store.load_issued_ids())
        return len(self.issued)

    async def issue(
        self, department: str, type_code: str, count: int, note: object, now: float
    ) -> list[IssuedId]:
        """Issue ``count`` consecutive IDs of ``type_code`` to ``department``.

        Ranges of the department that allow the type are tried in configured order; the first
        with room gives all of them.

        :raises IdError: bad request (unknown department, type not allowed, count, note).
        :raises IdsExhausted: no range has room.
        :raises StoreError: storage failed.
        """
        text = check_note(note)
        for lo, hi in self.allocator.blocks(department, type_code, count):
            issued = await self.store.issue_ids(
                lo, hi, count, department=department, type_code=type_code, note=text, at=now
            )
            if issued:
                self.issued.update(i.id for i in issued)
                log.info(
                    "issued %d IDs department=%s type=%s %s..%s",
                    len(issued),
                    department,
                    type_code,
                    issued[0].id,
                    issued[-1].id,
                )
                return issued
        raise IdsExhausted(f"no {count} free IDs of type {type_code} left for {department!r}")

    def is_issued(self, device_id: str) -> bool:
        return device_id in self.issued

    def register_guard(self, request: SipRequest, device_id: str) -> SipResponse | None:
        """A :data:`~gb28181.signalling.RegisterGuard`: 403 "ID Not Issued" for IDs never
        issued, when :attr:`refuse_unissued` is on."""
        if not self.refuse_unissued or device_id in self.issued:
            return None
        self.refused += 1
        log.info("REGISTER refused: ID %s was never issued", device_id or "(none)")
        return make_response(request, 403, "ID Not Issued", to_tag=new_tag())
