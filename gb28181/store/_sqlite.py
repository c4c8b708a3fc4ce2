"""SQLite backend: the embedded default (one file under ``./var``).

One ``aiosqlite`` connection (a worker thread) serves the whole process; an ``asyncio.Lock``
keeps each transaction's statements together, since interleaving two coroutines' statements on
one connection would mix their transactions. The connection runs in autocommit mode and every
write is an explicit ``BEGIN IMMEDIATE ... COMMIT``: taking the write lock up front means a
second process waits (busy timeout) instead of failing half-way with ``SQLITE_BUSY``.

WAL lets readers run beside the single writer; ``synchronous=NORMAL`` in WAL mode can lose the
last commits on power loss but never corrupts the file, which suits state that devices
re-send on their next REGISTER or keepalive anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from authz.audit import AuditRecord

from ._audit import (
    AUDIT_COLUMNS,
    TOKEN_COLUMNS,
    audit_from_row,
    audit_row,
    token_from_row,
    token_row,
    token_where,
)
from ._authz import BINDING_COLUMNS, binding_from_row, binding_row, check_relation
from ._base import (
    AlarmRecord,
    ApiToken,
    CertBinding,
    ChannelRecord,
    DeviceRecord,
    FaultRecord,
    IssuedId,
    PositionRecord,
    StatusEvent,
    Store,
)
from ._channels import (
    CHANNEL_COLUMNS,
    UPDATE_COLUMNS,
    channel_from_row,
    channel_values,
    latest_per_channel,
    like_patterns,
)
from ._errors import (
    StoreClosedError,
    StoreConnectionError,
    StoreDataError,
    StoreError,
    StoreMigrationError,
)
from ._history import (
    ALARM_COLUMNS,
    FAULT_COLUMNS,
    POSITION_COLUMNS,
    alarm_from_row,
    alarm_row,
    fault_from_row,
    fault_row,
    position_from_row,
    position_row,
)
from ._issued import check_block, issued_from_row, next_ids
from ._migrations import Migration, load_migrations, pending_migrations, split_sqlite_script
from ._recordings import (
    RECORDING_COLUMNS,
    REQUEST_COLUMNS,
    RecordingRequest,
    RecordingRow,
    recording_from_row,
    recording_row,
    request_from_row,
    request_row,
)
from ._rows import (
    DEVICE_COLUMNS,
    check_limit,
    device_from_row,
    encode_extra,
    latest_per_device,
)
from ._url import MEMORY

__all__ = ["SqliteStore"]

DIALECT = "sqlite"

_COLUMNS = ", ".join(DEVICE_COLUMNS)
_UPSERT = (
    f"INSERT INTO devices ({_COLUMNS}) VALUES ({', '.join('?' * len(DEVICE_COLUMNS))}) "
    "ON CONFLICT (device_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in DEVICE_COLUMNS if c != "device_id")
)
_SELECT_DEVICES = f"SELECT {_COLUMNS} FROM devices"
_INSERT_EVENT = (
    "INSERT INTO device_status_history (device_id, at, online, reason) VALUES (?, ?, ?, ?)"
)
_CHANNEL_SELECT = f"SELECT {', '.join(CHANNEL_COLUMNS)} FROM channels"
_CHANNEL_UPSERT = (
    f"INSERT INTO channels ({', '.join(CHANNEL_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(CHANNEL_COLUMNS))}) "
    "ON CONFLICT (device_id, channel_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in UPDATE_COLUMNS)
)
_CHANNEL_SEARCH = (
    f"{_CHANNEL_SELECT} WHERE name LIKE ? ESCAPE '\\' OR channel_id LIKE ? ESCAPE '\\' "
    "ORDER BY device_id, channel_id LIMIT ? OFFSET ?"
)
_CHANNEL_ATTRIBUTES = (
    "UPDATE channels SET security_class = coalesce(?, security_class), "
    "owner_department = CASE WHEN ? IS NULL THEN owner_department ELSE nullif(?, '') END, "
    "shared = coalesce(?, shared), updated_at = coalesce(?, updated_at) "
    "WHERE device_id = ? AND channel_id = ?"
)
_BOOTSTRAP = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
)


class SqliteStore(Store):
    """Store backed by one SQLite file (or ``":memory:"`` for throw-away tests).

    :param path: database file; relative paths are resolved against the current directory at
        :meth:`open` time and the parent directory is created.
    :param busy_timeout: seconds to wait for another process's write lock.
    :param migrations: override the shipped migrations (tests, extensions).
    """

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = 5.0,
        migrations: Sequence[Migration] | None = None,
    ) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._migrations = list(migrations) if migrations is not None else load_migrations(DIALECT)
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def dialect(self) -> str:
        return DIALECT

    @property
    def path(self) -> str:
        """The database path as configured (``":memory:"`` for an in-memory store)."""
        return self._path

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"<SqliteStore {self._path!r} {state}>"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        target = self._path
        with self._errors("open", connect=True):
            if target != MEMORY:
                file = Path(target).expanduser().absolute()
                file.parent.mkdir(parents=True, exist_ok=True)
                target = str(file)
            conn = await aiosqlite.connect(target, isolation_level=None, timeout=self._busy_timeout)
            try:
                if target != MEMORY:
                    await conn.execute("PRAGMA journal_mode=WAL")
                await conn.execute("PRAGMA synchronous=NORMAL")
                await conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
            except BaseException:
                await conn.close()
                raise
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        async with self._lock:
            with self._errors("close"):
                await conn.close()

    # -- migrations ------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        applied_now: list[int] = []
        async with self._lock:
            conn = self._require("migrate")
            with self._errors("migrate"):
                await conn.execute(_BOOTSTRAP)
                rows = await conn.execute_fetchall("SELECT version FROM schema_migrations")
            for migration in pending_migrations(self._migrations, (r[0] for r in rows)):
                # Re-read inside the write transaction: another process may have applied
                # this version while we waited for its lock.
                async with self._transaction(conn, "migrate"):
                    rows = await conn.execute_fetchall("SELECT version FROM schema_migrations")
                    if not pending_migrations([migration], (r[0] for r in rows)):
                        continue
                    await self._apply(conn, migration)
                applied_now.append(migration.version)
        return applied_now

    async def _apply(self, conn: aiosqlite.Connection, migration: Migration) -> None:
        try:
            for statement in split_sqlite_script(migration.sql):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
        except sqlite3.Error as exc:
            raise StoreMigrationError(
                f"migration {migration.label} failed: {exc}", operation="migrate", dialect=DIALECT
            ) from exc

    async def applied_versions(self) -> list[int]:
        """Versions recorded in ``schema_migrations``, ascending."""
        async with self._lock:
            conn = self._require("applied_versions")
            with self._errors("applied_versions"):
                rows = await conn.execute_fetchall(
                    "SELECT version FROM schema_migrations ORDER BY version"
                )
        return [int(r[0]) for r in rows]

    # -- devices ---------------------------------------------------------------------------

    async def load_devices(self) -> list[DeviceRecord]:
        async with self._lock:
            conn = self._require("load_devices")
            with self._errors("load_devices"):
                rows = await conn.execute_fetchall(f"{_SELECT_DEVICES} ORDER BY device_id")
        return [device_from_row(r, operation="load_devices", dialect=DIALECT) for r in rows]

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        async with self._lock:
            conn = self._require("get_device")
            with self._errors("get_device"):
                rows = list(
                    await conn.execute_fetchall(
                        f"{_SELECT_DEVICES} WHERE device_id = ?", (device_id,)
                    )
                )
        if not rows:
            return None
        return device_from_row(rows[0], operation="get_device", dialect=DIALECT)

    async def upsert_devices(self, records: Sequence[DeviceRecord]) -> None:
        await self._write("upsert_devices", records, ())

    async def delete_device(self, device_id: str) -> bool:
        async with self._lock:
            conn = self._require("delete_device")
            async with self._transaction(conn, "delete_device"):
                cursor = await conn.execute("DELETE FROM devices WHERE device_id = ?", (device_id,))
                deleted = cursor.rowcount > 0
                await cursor.close()
        return deleted

    # -- status history --------------------------------------------------------------------

    async def append_status_events(self, events: Sequence[StatusEvent]) -> None:
        await self._write("append_status_events", (), events)

    async def status_history(
        self, device_id: str, *, limit: int = 100, before: float | None = None
    ) -> list[StatusEvent]:
        check_limit(limit, operation="status_history", dialect=DIALECT)
        sql = "SELECT device_id, at, online, reason FROM device_status_history WHERE device_id = ?"
        params: list[Any] = [device_id]
        if before is not None:
            sql += " AND at < ?"
            params.append(before)
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        params.append(limit)
        async with self._lock:
            conn = self._require("status_history")
            with self._errors("status_history"):
                rows = await conn.execute_fetchall(sql, params)
        return [StatusEvent(r[0], float(r[1]), bool(r[2]), r[3]) for r in rows]

    # -- batched write ---------------------------------------------------------------------

    async def write_batch(
        self, records: Sequence[DeviceRecord], events: Sequence[StatusEvent]
    ) -> None:
        await self._write("write_batch", records, events)

    async def _write(
        self, operation: str, records: Sequence[DeviceRecord], events: Sequence[StatusEvent]
    ) -> None:
        # Serialise before taking the lock: a bad record fails fast and writes nothing.
        device_rows = [_device_row(r, operation) for r in latest_per_device(records)]
        event_rows = [(e.device_id, e.at, int(e.online), e.reason) for e in events]
        if not device_rows and not event_rows:
            return
        async with self._lock:
            conn = self._require(operation)
            async with self._transaction(conn, operation):
                if device_rows:
                    await conn.executemany(_UPSERT, device_rows)
                if event_rows:
                    await conn.executemany(_INSERT_EVENT, event_rows)

    # -- channels --------------------------------------------------------------------------

    async def upsert_channels(self, device_id: str, records: Sequence[ChannelRecord]) -> None:
        op = "upsert_channels"
        rows = [
            _sqlite_channel(channel_values(device_id, r, operation=op, dialect=DIALECT))
            for r in latest_per_channel(records)
        ]
        if not rows:
            return
        async with self._lock:
            conn = self._require(op)
            async with self._transaction(conn, op):
                await conn.executemany(_CHANNEL_UPSERT, rows)

    async def delete_channels(
        self, device_id: str, channel_ids: Sequence[str] | None = None
    ) -> int:
        op = "delete_channels"
        async with self._lock:
            conn = self._require(op)
            async with self._transaction(conn, op):
                if channel_ids is None:
                    cursor = await conn.execute(
                        "DELETE FROM channels WHERE device_id = ?", (device_id,)
                    )
                    deleted = cursor.rowcount
                    await cursor.close()
                else:
                    deleted = 0
                    for channel_id in dict.fromkeys(channel_ids):
                        cursor = await conn.execute(
                            "DELETE FROM channels WHERE device_id = ? AND channel_id = ?",
                            (device_id, channel_id),
                        )
                        deleted += cursor.rowcount
                        await cursor.close()
        return int(deleted)

    async def load_channels(self, device_id: str) -> list[ChannelRecord]:
        op = "load_channels"
        async with self._lock:
            conn = self._require(op)
            with self._errors(op):
                rows = await conn.execute_fetchall(
                    f"{_CHANNEL_SELECT} WHERE device_id = ? ORDER BY channel_id", (device_id,)
                )
        return [channel_from_row(r, operation=op, dialect=DIALECT) for r in rows]

    async def search_channels(
        self, text: str, *, limit: int = 50, offset: int = 0
    ) -> list[ChannelRecord]:
        op = "search_channels"
        check_limit(limit, operation=op, dialect=DIALECT)
        check_limit(offset, operation=op, dialect=DIALECT)
        contains, prefix = like_patterns(text)
        async with self._lock:
            conn = self._require(op)
            with self._errors(op):
                rows = await conn.execute_fetchall(
                    _CHANNEL_SEARCH, (contains, prefix, limit, offset)
                )
        return [channel_from_row(r, operation=op, dialect=DIALECT) for r in rows]

    async def set_channel_attributes(
        self,
        device_id: str,
        channel_id: str,
        *,
        security_class: int | None = None,
        owner_department: str | None = None,
        shared: bool | None = None,
        updated_at: float | None = None,
    ) -> bool:
        op = "set_channel_attributes"
        params = (
            security_class,
            owner_department,
            owner_department,
            None if shared is None else int(shared),
            updated_at,
            device_id,
            channel_id,
        )
        async with self._lock:
            conn = self._require(op)
            async with self._transaction(conn, op):
                cursor = await conn.execute(_CHANNEL_ATTRIBUTES, params)
                found = cursor.rowcount > 0
                await cursor.close()
        return found

    # -- faults, alarms, positions ---------------------------------------------------------

    async def _insert(self, op: str, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        async with self._lock:
            conn = self._require(op)
            async with self._transaction(conn, op):
                await conn.executemany(sql, rows)

    async def _page(
        self, op: str, table: str, columns: str, where: list[tuple[str, Any]], order: str,
        limit: int, offset: int,
    ) -> tuple[int, list[Any]]:  # fmt: skip
        check_limit(limit, operation=op, dialect=DIALECT)
        check_limit(offset, operation=op, dialect=DIALECT)
        clause = " AND ".join(c for c, _ in where) or "1"
        params = [v for _, v in where if v is not None]
        async with self._lock:
            conn = self._require(op)
            with self._errors(op):
                total = await conn.execute_fetchall(
                    f"SELECT count(*) FROM {table} WHERE {clause}", params
                )
                rows = await conn.execute_fetchall(
                    f"SELECT {columns} FROM {table} WHERE {clause} ORDER BY {order} "
                    "LIMIT ? OFFSET ?",
                    [*params, limit, offset],
                )
        return int(next(iter(total))[0]), list(rows)

    async def add_faults(self, faults: Sequence[FaultRecord]) -> None:
        await self._insert(
            "add_faults",
            f"INSERT INTO faults ({FAULT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            [fault_row(f) for f in faults],
        )

    async def clear_faults(self, device_id: str, channel_id: str, kind: str, at: float) -> int:
        op = "clear_faults"
        async with self._lock:
            conn = self._require(op)
            async with self._transaction(conn, op):
                cursor = await conn.execute(
                    "UPDATE faults SET cleared_at = ? WHERE device_id = ? AND channel_id = ? "
                    "AND kind = ? AND cleared_at IS NULL",
                    (at, device_id, channel_id, kind),
                )
                cleared = cursor.rowcount
                await cursor.close()
        return int(cleared)

    async def list_faults(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        device_id: str | None = None,
        open_only: bool = False,
    ) -> tuple[int, list[FaultRecord]]:
        where: list[tuple[str, Any]] = []
        if device_id is not None:
            where.append(("device_id = ?", device_id))
        if open_only:
            where.append(("cleared_at IS NULL", None))
        total, rows = await self._page(
            "list_faults", "faults", FAULT_COLUMNS, where, "at DESC, id DESC", limit, offset
        )
        return total, [fault_from_row(r) for r in rows]

    async def add_alarms(self, alarms: Sequence[AlarmRecord]) -> None:
        await self._insert(
            "add_alarms",
            f"INSERT INTO alarms ({ALARM_COLUMNS}) VALUES ({', '.join('?' * 11)})",
            [alarm_row(a) for a in alarms],
        )

    async def list_alarms(
        self, *, limit: int = 100, offset: int = 0, device_id: str | None = None
    ) -> tuple[int, list[AlarmRecord]]:
        where = [("device_id = ?", device_id)] if device_id is not None else []
        total, rows = await self._page(
            "list_alarms", "alarms", ALARM_COLUMNS, where, "received_at DESC, id DESC",
            limit, offset,
        )  # fmt: skip
        return total, [alarm_from_row(r) for r in rows]

    async def add_positions(self, positions: Sequence[PositionRecord]) -> None:
        await self._insert(
            "add_positions",
            f"INSERT INTO mobile_positions ({POSITION_COLUMNS}) VALUES ({', '.join('?' * 9)})",
            [position_row(p) for p in positions],
        )

    async def position_history(self, channel_id: str, *, limit: int = 100) -> list[PositionRecord]:
        _, rows = await self._page(
            "position_history", "mobile_positions", POSITION_COLUMNS,
            [("channel_id = ?", channel_id)], "received_at DESC, id DESC", limit, 0,
        )  # fmt: skip
        return [position_from_row(r) for r in rows]

    # -- issued IDs ------------------------------------------------------------------------

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
    ) -> list[IssuedId]:
        op = "issue_ids"
        check_block(lo, hi, count, operation=op, dialect=DIALECT)
        # BEGIN IMMEDIATE takes the database's write lock before reading the highest ID, so
        # another process cannot read the same one meanwhile (and the lock serialises ours).
        async with self._lock:
            conn = self._require(op)
            async with self._transaction(conn, op):
                rows = await conn.execute_fetchall(
                    "SELECT max(id) FROM issued_ids WHERE id BETWEEN ? AND ?", (lo, hi)
                )
                ids = next_ids(next(iter(rows))[0], lo, hi, count)
                issued = [IssuedId(i, department, type_code, at, note) for i in ids]
                await conn.executemany(
                    "INSERT INTO issued_ids (id, department, type, issued_at, note) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(r.id, r.department, r.type_code, r.issued_at, r.note) for r in issued],
                )
        return issued

    async def list_issued_ids(
        self, *, department: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[IssuedId]]:
        where = [("department = ?", department)] if department is not None else []
        total, rows = await self._page(
            "list_issued_ids", "issued_ids", "id, department, type, issued_at, note", where,
            "issued_at DESC, id DESC", limit, offset,
        )  # fmt: skip
        return total, [issued_from_row(r) for r in rows]

    async def load_issued_ids(self) -> list[str]:
        op = "load_issued_ids"
        async with self._lock:
            conn = self._require(op)
            with self._errors(op):
                rows = await conn.execute_fetchall("SELECT id FROM issued_ids ORDER BY id")
        return [str(r[0]) for r in rows]

    # -- audit trail -----------------------------------------------------------------------

    async def append_audit(self, records: Sequence[AuditRecord]) -> None:
        op = "append_audit"
        await self._insert(
            op,
            f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ({', '.join('?' * 14)})",
            [audit_row(r, operation=op, dialect=DIALECT) for r in records],
        )

    async def load_audit(self, *, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
        op = "load_audit"
        check_limit(limit, operation=op, dialect=DIALECT)
        async with self._lock:
            conn = self._require(op)
            with self._errors(op):
                rows = await conn.execute_fetchall(
                    f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                )
        return [audit_from_row(r) for r in rows]

    async def audit_tail(self) -> AuditRecord | None:
        op = "audit_tail"
        async with self._lock:
            conn = self._require(op)
            with self._errors(op):
                rows = list(
                    await conn.execute_fetchall(
                        f"SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1"
                    )
                )
        return audit_from_row(rows[0]) if rows else None

    # -- API tokens ------------------------------------------------------------------------

    async def add_api_token(self, token: ApiToken) -> None:
        await self._insert(
            "add_api_token",
            f"INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES ({', '.join('?' * 8)})",
            [token_row(token)],
        )

    async def get_api_token(self, token_hash: str) -> ApiToken | None:
        op = "get_api_token"
        async with self._lock:
            conn = self._require(op)
            with self._errors(op):
                rows = list(
                    await conn.execute_fetchall(
                        f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?",
                        (token_hash,),
                    )
                )
        return token_from_row(rows[0]) if rows else None

    async def revoke_api_tokens(
        self, *, at: float, token_hash: str | None = None, cert_serial: str | None = None
    ) -> int:
        op = "revoke_api_tokens"
        where = token_where(token_hash, cert_serial, operation=op, dialect=DIALECT)
        clause = " AND ".join(f"{column} = ?" for column, _ in where)
        async with self._lock:
            conn = self._require(op)
            async with self._transaction(conn, op):
                cursor = await conn.execute(
                    f"UPDATE api_tokens SET revoked_at = ? WHERE {clause} AND revoked_at IS NULL",
                    (at, *(value for _, value in where)),
                )
                revoked = cursor.rowcount
                await cursor.close()
        return int(revoked)

    # -- authorization state (migration 0008) -----------------------------------------------

    async def put_cert_binding(self, binding: CertBinding) -> None:
        await self._insert(
            "put_cert_binding",
            f"INSERT OR REPLACE INTO cert_bindings ({BINDING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            [binding_row(binding)],
        )

    async def get_cert_binding(self, account_id: str) -> CertBinding | None:
        op = "get_cert_binding"
        async with self._lock:
            conn = self._require(op)
            with self._errors(op):
                rows = list(
                    await conn.execute_fetchall(
                        f"SELECT {BINDING_COLUMNS} FROM cert_bindings WHERE account_id = ?",
                        (account_id,),
                    )
                )
        return binding_from_row(rows[0]) if rows else None

    async def delete_cert_binding(self, account_id: str) -> bool:
        op = "delete_cert_binding"
        async with self._lock:
            conn = self._require(op)
            async with self._transaction(conn, op):
                cursor = await conn.execute(
                    "DELETE FROM cert_bindings WHERE account_id = ?", (account_id,)
                )
                deleted = cursor.rowcount
                await cursor.close()
        return bool(deleted)

    async def save_grant(self, grant_id: str, state: str, body: str, updated_at: float) -> None:
        await self._insert(
            "save_grant",
            "INSERT OR REPLACE INTO grants (id, state, body, updated_at) VALUES (?, ?, ?, ?)",
            [(grant_id, state, body, updated_at)],
        )

    async def load_grants(self) -> list[str]:
        op = "load_grants"
        async with self._lock:
            conn = self._require(op)
            with self._errors(op):
                rows = await conn.execute_fetchall("SELECT body FROM grants ORDER BY rowid")
        return [str(r[0]) for r in rows]

    async def set_channel_acl(self, channel_id: str, relation: str, parties: Sequence[str]) -> None:
        op = "set_channel_acl"
        check_relation(relation, operation=op, dialect=DIALECT)
        async with self._lock:
            conn = self._require(op)
            async with self._transaction(conn, op):
                await conn.execute(
                    "DELETE FROM channel_acl WHERE channel_id = ? AND relation = ?",
                    (channel_id, relation),
                )
                await conn.executemany(
                    "INSERT OR IGNORE INTO channel_acl (channel_id, relation, party)"
                    " VALUES (?, ?, ?)",
                    [(channel_id, relation, p) for p in parties],
                )

    async def load_channel_acl(self) -> list[tuple[str, str, str]]:
        op = "load_channel_acl"
        async with self._lock:
            conn = self._require(op)
            with self._errors(op):
                rows = await conn.execute_fetchall(
                    "SELECT channel_id, relation, party FROM channel_acl ORDER BY 1, 2, 3"
                )
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    # -- recording index (migration 0007) ---------------------------------------------------

    async def add_recording(self, row: RecordingRow) -> None:
        op = "add_recording"
        await self._insert(
            op,
            f"INSERT INTO recordings ({RECORDING_COLUMNS}) VALUES ({', '.join('?' * 11)})",
            [recording_row(row, operation=op, dialect=DIALECT)],
        )

    async def update_recording(self, row: RecordingRow) -> bool:
        op = "update_recording"
        values = recording_row(row, operation=op, dialect=DIALECT)
        async with self._lock:
            conn = self._require(op)
            async with self._transaction(conn, op):
                cursor = await conn.execute(
                    "UPDATE recordings SET channel_id = ?, start_at = ?, end_at = ?, path = ?, "
                    "bytes = ?, codec = ?, keyframes = ?, sha256 = ?, state = ?, "
                    "security_class = ? WHERE id = ?",
                    (*values[1:], values[0]),
                )
                found = cursor.rowcount > 0
                await cursor.close()
        return found

    async def list_recordings(
        self,
        channel_id: str | None,
        start: float,
        end: float,
        *,
        state: str | None = None,
        limit: int = 10_000,
    ) -> list[RecordingRow]:
        op = "list_recordings"
        check_limit(limit, operation=op, dialect=DIALECT)
        clause = "start_at < ? AND (end_at > ? OR state = 'open')"
        params: list[Any] = [end, start]
        if channel_id is not None:
            clause += " AND channel_id = ?"
            params.append(channel_id)
        if state is not None:
            clause += " AND state = ?"
            params.append(state)
        return await self._recordings(
            op, f"WHERE {clause} ORDER BY start_at, id LIMIT ?", (*params, limit)
        )

    async def get_recording(self, recording_id: str) -> RecordingRow | None:
        rows = await self._recordings("get_recording", "WHERE id = ?", (recording_id,))
        return rows[0] if rows else None

    async def delete_recording(self, recording_id: str) -> bool:
        op = "delete_recording"
        async with self._lock:
            conn = self._require(op)
            async with self._transaction(conn, op):
                cursor = await conn.execute("DELETE FROM recordings WHERE id = ?", (recording_id,))
                found = cursor.rowcount > 0
                await cursor.close()
        return found

    async def oldest_recordings(self, limit: int) -> list[RecordingRow]:
        op = "oldest_recordings"
        check_limit(limit, operation=op, dialect=DIALECT)
        return await self._recordings(
            op, "WHERE state != 'open' ORDER BY start_at, id LIMIT ?", (limit,)
        )

    async def recordings_total_bytes(self) -> int:
        op = "recordings_total_bytes"
        async with self._lock:
            conn = self._require(op)
            with self._errors(op):
                rows = list(
                    await conn.execute_fetchall("SELECT coalesce(sum(bytes), 0) FROM recordings")
                )
        return int(rows[0][0])

    # -- on-demand recording requests (migration 0009) --------------------------------------

    async def put_recording_request(self, request: RecordingRequest) -> None:
        await self._insert(
            "put_recording_request",
            f"INSERT OR REPLACE INTO recording_requests ({REQUEST_COLUMNS}) VALUES (?, ?, ?, ?)",
            [request_row(request)],
        )

    async def delete_recording_request(self, channel_id: str) -> bool:
        op = "delete_recording_request"
        async with self._lock:
            conn = self._require(op)
            async with self._transaction(conn, op):
                cursor = await conn.execute(
                    "DELETE FROM recording_requests WHERE channel_id = ?", (channel_id,)
                )
                found = cursor.rowcount > 0
                await cursor.close()
        return found

    async def list_recording_requests(self) -> list[RecordingRequest]:
        op = "list_recording_requests"
        async with self._lock:
            conn = self._require(op)
            with self._errors(op):
                rows = await conn.execute_fetchall(
                    f"SELECT {REQUEST_COLUMNS} FROM recording_requests ORDER BY channel_id"
                )
        return [request_from_row(tuple(r)) for r in rows]

    async def _recordings(self, op: str, tail: str, params: tuple[Any, ...]) -> list[RecordingRow]:
        async with self._lock:
            conn = self._require(op)
            with self._errors(op):
                rows = await conn.execute_fetchall(
                    f"SELECT {RECORDING_COLUMNS} FROM recordings {tail}", params
                )
        return [recording_from_row(tuple(r)) for r in rows]

    # -- plumbing --------------------------------------------------------------------------

    def _require(self, operation: str) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreClosedError(
                f"store {self._path!r} is not open", operation=operation, dialect=DIALECT
            )
        return self._conn

    @contextlib.asynccontextmanager
    async def _transaction(self, conn: aiosqlite.Connection, operation: str) -> AsyncIterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception (caller holds lock)."""
        with self._errors(operation):
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    @contextlib.contextmanager
    def _errors(self, operation: str, *, connect: bool = False) -> Iterator[None]:
        """Re-raise driver exceptions as typed store errors carrying the operation."""
        try:
            yield
        except StoreError:
            raise
        except (sqlite3.IntegrityError, sqlite3.DataError, OverflowError) as exc:
            raise StoreDataError(
                f"{self._path}: {exc}", operation=operation, dialect=DIALECT
            ) from exc
        except (sqlite3.Error, OSError, ValueError) as exc:
            kind: type[StoreError] = StoreConnectionError if connect else StoreError
            if isinstance(exc, ValueError) and "no active connection" in str(exc):
                kind = StoreClosedError
            raise kind(f"{self._path}: {exc}", operation=operation, dialect=DIALECT) from exc


def _sqlite_channel(values: tuple[Any, ...]) -> tuple[Any, ...]:
    # ``shared`` is the only bool column; SQLite stores 0/1.
    return (*values[:-2], int(values[-2]), values[-1])


def _device_row(record: DeviceRecord, operation: str) -> tuple[Any, ...]:
    return (
        record.device_id,
        record.kind,
        record.name,
        record.password,
        record.transport,
        record.contact,
        record.host,
        record.port,
        record.expires,
        record.registered_at,
        record.last_keepalive,
        int(record.online),
        record.user_agent,
        record.gb_version,
        record.charset,
        encode_extra(record, operation=operation, dialect=DIALECT),
    )
