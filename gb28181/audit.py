"""The platform's audit trail: records sealed in memory, written behind to the store.

Every access decision, control, playback, certificate operation, grant, configuration change
and system event (start-up, settings, faults) becomes one hash-chained
:class:`authz.audit.AuditRecord` (regulation art. 21; the chain and its threat model are in
:mod:`authz.audit`). :class:`AuditLog` keeps the chain head in memory, so :meth:`AuditLog.record`
seals a record synchronously (a decision on the signalling path never waits for the
database), and one background task writes the pending records in a single transaction every
``interval`` seconds or as soon as ``max_batch`` are pending.

Ordering and loss: records are sealed in call order and written in that order. A failed write
puts the batch back at the front of the queue and is retried one ``interval`` later, so an
outage costs memory, not records. When a write committed but its acknowledgement was lost, the
retry would collide with the stored rows; before retrying, the already stored prefix is
recognised by the store's tail (same ``seq`` and ``hash``) and dropped.

One writer per database: the chain head lives in this process. A second platform process
writing the same ``audit_log`` would fork the chain; the primary key on ``seq`` refuses the
fork, the loser's writes keep failing and are logged.

Threat model (see :mod:`authz.audit`): without a key the chain detects edits by anyone who
does not recompute every later hash; a database administrator can. With ``[audit] key_file``
(an HMAC key readable only by the platform's service user, never stored in the database)
rewriting the chain needs the key. Truncation of the newest records needs an external anchor:
publish :attr:`AuditLog.head` periodically off the host.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time as _time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from authz.audit import GENESIS, AuditChain, AuditRecord

from .flusher import PeriodicFlusher

__all__ = [
    "MIN_KEY_BYTES",
    "SYSTEM_PRINCIPAL",
    "AuditConfigError",
    "AuditLog",
    "AuditStore",
    "load_key",
]

log = logging.getLogger("gb28181.audit")

#: ``principal_id`` of events the platform records about itself.
SYSTEM_PRINCIPAL = "system"

#: A key file must hold at least this many bytes (HMAC-SHA-256 wants 32 bytes of entropy).
MIN_KEY_BYTES = 32


class AuditConfigError(ValueError):
    """The audit key file is missing, unreadable, too short or readable by others."""


class AuditStore(Protocol):
    """What :class:`AuditLog` needs from a :class:`~gb28181.store.Store`."""

    @property
    def dialect(self) -> str: ...

    async def append_audit(self, records: Sequence[AuditRecord]) -> None: ...

    async def audit_tail(self) -> AuditRecord | None: ...


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read an HMAC key file (raw bytes; surrounding white space is stripped).

    Create one with ``head -c 32 /dev/urandom > audit.key; chmod 600 audit.key``.

    :raises AuditConfigError: unreadable, shorter than :data:`MIN_KEY_BYTES`, or readable by
        group or others (a key anyone can read protects nothing).
    """
    file = Path(path)
    try:
        mode = file.stat().st_mode
        key = file.read_bytes().strip()
    except OSError as exc:
        raise AuditConfigError(f"audit key file {file}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuditConfigError(f"audit key file {file} is accessible by others; chmod 600 it")
    if len(key) < MIN_KEY_BYTES:
        raise AuditConfigError(f"audit key file {file} holds fewer than {MIN_KEY_BYTES} bytes")
    return key


class AuditLog:
    """Seal audit records now, store them in the background.

    :param store: where records go (``append_audit``, ``audit_tail``).
    :param key: HMAC key (see :func:`load_key`), or ``None`` for plain SHA-256.
    :param clock: epoch seconds for records recorded without an explicit ``time``.
    :param interval: seconds between background flushes (and between retries after a failure).
    :param max_batch: flush early once this many records are pending.

    Counters for metrics: ``recorded``, ``written``, ``flushes``, ``failures``; ``last_error``.
    """

    def __init__(
        self,
        store: AuditStore,
        *,
        key: bytes | None = None,
        clock: Callable[[], float] = _time.time,
        interval: float = 1.0,
        max_batch: int = 1000,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._store = store
        self._key = key
        self._clock = clock
        self._interval = interval
        self._max_batch = max_batch
        self._chain: AuditChain | None = None
        self._pending: list[AuditRecord] = []
        self._flush_lock = asyncio.Lock()
        self._flusher = PeriodicFlusher(
            self.flush,
            interval,
            name="gb28181-audit-writer",
            more=lambda: len(self._pending) >= self._max_batch,
        )
        self._unsure = False  # a write failed: the store may hold part of what we think pending

        self.recorded = 0
        self.written = 0
        self.flushes = 0
        self.failures = 0
        self.last_error: str | None = None

    # -- life cycle ------------------------------------------------------------------------

    @property
    def resumed(self) -> bool:
        """Whether :meth:`resume` (or :meth:`start`) has loaded the chain head."""
        return self._chain is not None

    @property
    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the newest sealed record: the anchor to publish off the host."""
        if self._chain is None:
            return 0, GENESIS
        return self._chain.last_seq, self._chain.last_hash

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> bool:
        return self._flusher.running

    async def resume(self) -> None:
        """Continue the chain from the store's newest record. Idempotent.

        :raises StoreError: the store cannot be read (the platform should not start without
            its audit trail).
        """
        if self._chain is not None:
            return
        tail = await self._store.audit_tail()
        if tail is None:
            self._chain = AuditChain(key=self._key)
        else:
            self._chain = AuditChain(key=self._key, last_seq=tail.seq, last_hash=tail.hash)

    async def start(self) -> None:
        """:meth:`resume`, then start the background writer on the running loop."""
        await self.resume()
        self._flusher.start()

    async def stop(self) -> None:
        """Stop the background writer, then write what is pending.

        :raises StoreError: the final write failed; the records stay pending.
        """
        await self._flusher.stop()

    # -- producing -------------------------------------------------------------------------

    def record(
        self,
        action: str,
        target: str,
        outcome: str,
        *,
        principal_id: str = SYSTEM_PRINCIPAL,
        department: str = "",
        level: int | None = None,
        rule: str = "",
        reason: str = "",
        source: str = "",
        extra: Mapping[str, Any] | None = None,
        time: float | None = None,
    ) -> AuditRecord:
        """Seal one record and queue it for writing. Never awaits.

        :raises RuntimeError: before :meth:`resume` (sealing needs the chain head).
        :raises authz.audit.AuditError: ``extra`` is not strict JSON or ``time`` not finite;
            nothing was queued and the chain is unchanged.
        """
        if self._chain is None:
            raise RuntimeError("AuditLog.resume() must run before record()")
        sealed = self._chain.append(
            time=self._clock() if time is None else time,
            principal_id=principal_id,
            department=department,
            level=level,
            action=action,
            target=target,
            outcome=outcome,
            rule=rule,
            reason=reason,
            source=source,
            extra=extra,
        )
        self._pending.append(sealed)
        self.recorded += 1
        if len(self._pending) >= self._max_batch and not self._unsure:
            self._flusher.wake()
        return sealed

    def record_startup(self, version: str, settings: Mapping[str, Any]) -> AuditRecord:
        """The platform started with these settings (leave secrets out of ``settings``)."""
        return self.record("system.start", "platform", "ok", extra={"version": version, **settings})

    def record_settings(self, changes: Mapping[str, Any], *, principal_id: str = "") -> AuditRecord:
        """Settings changed (``{key: new value}``), by ``principal_id`` or the system."""
        return self.record(
            "system.settings",
            "platform",
            "ok",
            principal_id=principal_id or SYSTEM_PRINCIPAL,
            extra={"changes": dict(changes)},
        )

    def record_fault(self, target: str, cause: str) -> AuditRecord:
        """A fault of the platform or a component (``target``)."""
        return self.record("system.fault", target, "fault", reason=cause)

    # -- writing ---------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write everything pending now, in one transaction.

        :raises Exception: the store's error; the records are back at the front of the queue.
        """
        async with self._flush_lock:
            if self._unsure and self._pending:
                await self._drop_stored_prefix()
            if not self._pending:
                return
            batch, self._pending = self._pending, []
            try:
                await self._store.append_audit(batch)
            except BaseException as exc:
                self._pending[:0] = batch
                if isinstance(exc, Exception):
                    self._unsure = True
                    self.failures += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning(
                        "audit write failed, keeping %d records for retry (dialect=%s): %s",
                        len(batch),
                        self._store.dialect,
                        self.last_error,
                    )
                raise
            self._unsure = False
            self.flushes += 1
            self.written += len(batch)
            self.last_error = None

    async def _drop_stored_prefix(self) -> None:
        """After a failed write: drop pending records the store has after all; if another
        writer appended meanwhile (an operator's CLI command on the same database), seal
        the pending records again on top of its newest record instead of failing forever."""
        tail = await self._store.audit_tail()
        if tail is None or not self._pending:
            return
        for index, record in enumerate(self._pending):
            if record.seq == tail.seq and record.hash == tail.hash:
                stored = self._pending[: index + 1]
                del self._pending[: index + 1]
                self.written += len(stored)
                log.info("audit: %d records were stored by the failed write", len(stored))
                return
        first = self._pending[0]
        if tail.seq >= first.seq or (tail.seq == first.seq - 1 and tail.hash != first.prev_hash):
            self._rechain(tail)

    def _rechain(self, tail: AuditRecord) -> None:
        """Seal every pending record again after ``tail`` (no await: nothing is recorded
        in between), and continue the chain from the last of them."""
        chain = AuditChain(key=self._key, last_seq=tail.seq, last_hash=tail.hash)
        self._pending = [
            chain.append(
                time=r.time,
                principal_id=r.principal_id,
                department=r.department,
                level=r.level,
                action=r.action,
                target=r.target,
                outcome=r.outcome,
                rule=r.rule,
                reason=r.reason,
                source=r.source,
                extra=r.extra,
            )
            for r in self._pending
        ]
        self._chain = chain
        log.warning(
            "audit: another writer appended up to seq %d; %d pending records sealed after it",
            tail.seq,
            len(self._pending),
        )
