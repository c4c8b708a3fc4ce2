"""PostgreSQL backend: the production and multi-node store.

Uses an ``asyncpg`` pool. Batched writes are one ``INSERT ... SELECT FROM unnest(...)`` per
table: every column travels as one typed array, so 10,000 devices are one statement and one
round trip, with no per-row protocol overhead (the ``COPY``-like path without ``COPY``'s lack
of ``ON CONFLICT``).

Times are ``timestamptz`` in the schema and float epoch seconds in Python; the conversion is done
in SQL (``to_timestamp`` / ``extract(epoch ...)``), at the microsecond resolution of
``timestamptz``.

Migrations run under a session advisory lock keyed on the current schema, so two nodes starting
together apply each version exactly once: the second waits, then finds nothing pending.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from asyncpg.exceptions._base import (  # type: ignore[import-untyped]
    DataError as _ArgumentError,
)

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
    alarm_from_row,
    alarm_row,
    fault_from_row,
    fault_row,
    position_from_row,
    position_row,
)
from ._issued import check_block, issued_from_row, next_ids
from ._migrations import Migration, load_migrations, pending_migrations
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
    TIME_COLUMNS,
    check_limit,
    device_from_row,
    encode_extra,
    latest_per_device,
)
from ._url import redact_url

__all__ = ["PostgresStore"]

DIALECT = "postgresql"

ISSUE_LOCK_CLASS = 0x6B282
"""First key of the transaction advisory lock serialising ID allocation (second: the block)."""
MIGRATION_LOCK_CLASS = 0x6B281
"""First key of the two-key advisory lock taken while migrating (second: hash of the schema)."""

_PG_TYPES: dict[str, str] = {
    "port": "int4",
    "expires": "int4",
    "registered_at": "float8",
    "last_keepalive": "float8",
    "online": "bool",
}


def _select_expr(column: str) -> str:
    if column in TIME_COLUMNS:
        return f"extract(epoch FROM {column})::float8 AS {column}"
    if column == "extra":
        return "extra::text AS extra"
    return column


def _insert_expr(column: str) -> str:
    if column in TIME_COLUMNS:
        return f"to_timestamp(d.{column})"
    if column == "extra":
        return "d.extra::jsonb"
    return f"d.{column}"


_UPSERT = (
    f"INSERT INTO devices ({', '.join(DEVICE_COLUMNS)}) "
    f"SELECT {', '.join(_insert_expr(c) for c in DEVICE_COLUMNS)} FROM unnest("
    + ", ".join(f"${i}::{_PG_TYPES.get(c, 'text')}[]" for i, c in enumerate(DEVICE_COLUMNS, 1))
    + f") AS d({', '.join(DEVICE_COLUMNS)}) "
    "ON CONFLICT (device_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in DEVICE_COLUMNS if c != "device_id")
)
_SELECT_DEVICES = f"SELECT {', '.join(_select_expr(c) for c in DEVICE_COLUMNS)} FROM devices"
# WITH ORDINALITY + ORDER BY keeps identity ids in batch order, the tie-break for equal times.
_INSERT_EVENTS = (
    "INSERT INTO device_status_history (device_id, at, online, reason) "
    "SELECT e.device_id, to_timestamp(e.at), e.online, e.reason "
    "FROM unnest($1::text[], $2::float8[], $3::bool[], $4::text[]) "
    "WITH ORDINALITY AS e(device_id, at, online, reason, n) ORDER BY e.n"
)
_HISTORY = (
    "SELECT device_id, extract(epoch FROM at)::float8, online, reason "
    "FROM device_status_history WHERE device_id = $1 "
    "AND ($2::float8 IS NULL OR at < to_timestamp($2::float8)) "
    "ORDER BY at DESC, id DESC LIMIT $3"
)
_CHANNEL_TYPES: dict[str, str] = {
    "parental": "int4",
    "longitude": "float8",
    "latitude": "float8",
    "ptz_type": "int4",
    "security_class": "int4",
    "shared": "bool",
    "updated_at": "float8",
}


def _channel_select(column: str) -> str:
    if column == "updated_at":
        return "extract(epoch FROM updated_at)::float8 AS updated_at"
    if column == "info":
        return "info::text AS info"
    return column


def _channel_insert(column: str) -> str:
    if column == "updated_at":
        return "to_timestamp(c.updated_at)"
    if column == "info":
        return "c.info::jsonb"
    return f"c.{column}"


_CHANNEL_SELECT = f"SELECT {', '.join(_channel_select(c) for c in CHANNEL_COLUMNS)} FROM channels"
_CHANNEL_UPSERT = (
    f"INSERT INTO channels ({', '.join(CHANNEL_COLUMNS)}) "
    f"SELECT {', '.join(_channel_insert(c) for c in CHANNEL_COLUMNS)} FROM unnest("
    + ", ".join(
        f"${i}::{_CHANNEL_TYPES.get(c, 'text')}[]" for i, c in enumerate(CHANNEL_COLUMNS, 1)
    )
    + f") AS c({', '.join(CHANNEL_COLUMNS)}) "
    "ON CONFLICT (device_id, channel_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in UPDATE_COLUMNS)
)
_CHANNEL_SEARCH = (
    f"{_CHANNEL_SELECT} WHERE name ILIKE $1 ESCAPE '\\' OR channel_id LIKE $2 ESCAPE '\\' "
    "ORDER BY device_id, channel_id LIMIT $3 OFFSET $4"
)
_CHANNEL_ATTRIBUTES = (
    "UPDATE channels SET security_class = coalesce($1::int4, security_class), "
    "owner_department = CASE WHEN $2::text IS NULL THEN owner_department "
    "ELSE nullif($2::text, '') END, "
    "shared = coalesce($3::bool, shared), "
    "updated_at = coalesce(to_timestamp($4::float8), updated_at) "
    "WHERE device_id = $5 AND channel_id = $6"
)
_BOOTSTRAP = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version integer NOT NULL PRIMARY KEY, name text NOT NULL, "
    "applied_at timestamptz NOT NULL DEFAULT now())"
)
_LOCK_KEY = "coalesce(current_schema(), '')"

# Failures that mean "the server is not there / the connection broke", as opposed to a query
# the server rejected.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
    TimeoutError,
)


class PostgresStore(Store):
    """Store backed by a PostgreSQL database through an ``asyncpg`` pool.

    :param dsn: ``postgresql://user[:password]@host[:port]/database[?param=value]``; extra query
        parameters such as ``search_path`` become server settings.
    :param min_size, max_size: pool bounds.
    :param connect_timeout: seconds to wait for a connection.
    :param migrations: override the shipped migrations (tests, extensions).
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        migrations: Sequence[Migration] | None = None,
    ) -> None:
        self._dsn = dsn
        self._display = redact_url(dsn)
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._migrations = list(migrations) if migrations is not None else load_migrations(DIALECT)
        self._pool: asyncpg.Pool | None = None

    @property
    def dialect(self) -> str:
        return DIALECT

    def __repr__(self) -> str:
        state = "open" if self._pool is not None else "closed"
        return f"<PostgresStore {self._display} {state}>"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        with self._errors("open", connect=True):
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._connect_timeout,
            )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        with self._errors("close"):
            await pool.close()

    # -- migrations ------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        pool = self._require("migrate")
        applied_now: list[int] = []
        with self._errors("migrate"):
            async with pool.acquire() as conn:
                await conn.execute(
                    f"SELECT pg_advisory_lock($1, hashtext({_LOCK_KEY}))", MIGRATION_LOCK_CLASS
                )
                try:
                    await conn.execute(_BOOTSTRAP)
                    rows = await conn.fetch("SELECT version FROM schema_migrations")
                    for migration in pending_migrations(self._migrations, (r[0] for r in rows)):
                        await self._apply(conn, migration)
                        applied_now.append(migration.version)
                finally:
                    # Pool release also runs pg_advisory_unlock_all(); this just frees the
                    # lock as early as possible, and must not mask the original error.
                    with contextlib.suppress(asyncpg.PostgresError, *_CONNECTION_ERRORS):
                        await conn.execute(
                            f"SELECT pg_advisory_unlock($1, hashtext({_LOCK_KEY}))",
                            MIGRATION_LOCK_CLASS,
                        )
        return applied_now

    async def _apply(self, conn: asyncpg.Connection, migration: Migration) -> None:
        try:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) "
                    "VALUES ($1, $2, to_timestamp($3::float8))",
                    migration.version,
                    migration.name,
                    time.time(),
                )
        except asyncpg.PostgresError as exc:
            raise StoreMigrationError(
                f"migration {migration.label} failed: {exc}", operation="migrate", dialect=DIALECT
            ) from exc

    async def applied_versions(self) -> list[int]:
        """Versions recorded in ``schema_migrations``, ascending."""
        pool = self._require("applied_versions")
        with self._errors("applied_versions"):
            rows = await pool.fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [int(r[0]) for r in rows]

    # -- devices ---------------------------------------------------------------------------

    async def load_devices(self) -> list[DeviceRecord]:
        pool = self._require("load_devices")
        with self._errors("load_devices"):
            rows = await pool.fetch(f"{_SELECT_DEVICES} ORDER BY device_id")
        return [device_from_row(r, operation="load_devices", dialect=DIALECT) for r in rows]

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        pool = self._require("get_device")
        with self._errors("get_device"):
            row = await pool.fetchrow(f"{_SELECT_DEVICES} WHERE device_id = $1", device_id)
        if row is None:
            return None
        return device_from_row(row, operation="get_device", dialect=DIALECT)

    async def upsert_devices(self, records: Sequence[DeviceRecord]) -> None:
        await self._write("upsert_devices", records, ())

    async def delete_device(self, device_id: str) -> bool:
        pool = self._require("delete_device")
        with self._errors("delete_device"):
            status = await pool.execute("DELETE FROM devices WHERE device_id = $1", device_id)
        return bool(status != "DELETE 0")

    # -- status history --------------------------------------------------------------------

    async def append_status_events(self, events: Sequence[StatusEvent]) -> None:
        await self._write("append_status_events", (), events)

    async def status_history(
        self, device_id: str, *, limit: int = 100, before: float | None = None
    ) -> list[StatusEvent]:
        check_limit(limit, operation="status_history", dialect=DIALECT)
        pool = self._require("status_history")
        with self._errors("status_history"):
            rows = await pool.fetch(_HISTORY, device_id, before, limit)
        return [StatusEvent(r[0], float(r[1]), bool(r[2]), r[3]) for r in rows]

    # -- batched write ---------------------------------------------------------------------

    async def write_batch(
        self, records: Sequence[DeviceRecord], events: Sequence[StatusEvent]
    ) -> None:
        await self._write("write_batch", records, events)

    async def _write(
        self, operation: str, records: Sequence[DeviceRecord], events: Sequence[StatusEvent]
    ) -> None:
        devices = latest_per_device(records)
        device_args = _device_columns(devices, operation) if devices else None
        event_args = (
            (
                [e.device_id for e in events],
                [e.at for e in events],
                [e.online for e in events],
                [e.reason for e in events],
            )
            if events
            else None
        )
        if device_args is None and event_args is None:
            return
        pool = self._require(operation)
        with self._errors(operation):
            async with pool.acquire() as conn, conn.transaction():
                if device_args is not None:
                    await conn.execute(_UPSERT, *device_args)
                if event_args is not None:
                    await conn.execute(_INSERT_EVENTS, *event_args)

    # -- channels --------------------------------------------------------------------------

    async def upsert_channels(self, device_id: str, records: Sequence[ChannelRecord]) -> None:
        op = "upsert_channels"
        rows = [
            channel_values(device_id, r, operation=op, dialect=DIALECT)
            for r in latest_per_channel(records)
        ]
        if not rows:
            return
        columns = [list(column) for column in zip(*rows, strict=True)]
        pool = self._require(op)
        with self._errors(op):
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(_CHANNEL_UPSERT, *columns)

    async def delete_channels(
        self, device_id: str, channel_ids: Sequence[str] | None = None
    ) -> int:
        op = "delete_channels"
        pool = self._require(op)
        with self._errors(op):
            if channel_ids is None:
                status = await pool.execute("DELETE FROM channels WHERE device_id = $1", device_id)
            else:
                status = await pool.execute(
                    "DELETE FROM channels WHERE device_id = $1 AND channel_id = ANY($2::text[])",
                    device_id,
                    list(channel_ids),
                )
        return int(str(status).rsplit(" ", 1)[-1])

    async def load_channels(self, device_id: str) -> list[ChannelRecord]:
        op = "load_channels"
        pool = self._require(op)
        with self._errors(op):
            rows = await pool.fetch(
                f"{_CHANNEL_SELECT} WHERE device_id = $1 ORDER BY channel_id", device_id
            )
        return [channel_from_row(r, operation=op, dialect=DIALECT) for r in rows]

    async def search_channels(
        self, text: str, *, limit: int = 50, offset: int = 0
    ) -> list[ChannelRecord]:
        op = "search_channels"
        check_limit(limit, operation=op, dialect=DIALECT)
        check_limit(offset, operation=op, dialect=DIALECT)
        contains, prefix = like_patterns(text)
        pool = self._require(op)
        with self._errors(op):
            rows = await pool.fetch(_CHANNEL_SEARCH, contains, prefix, limit, offset)
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
        pool = self._require(op)
        with self._errors(op):
            status = await pool.execute(
                _CHANNEL_ATTRIBUTES,
                security_class,
                owner_department,
                shared,
                updated_at,
                device_id,
                channel_id,
            )
        return bool(status != "UPDATE 0")

    # -- faults, alarms, positions ---------------------------------------------------------

    async def _insert(self, op: str, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        pool = self._require(op)
        with self._errors(op):
            async with pool.acquire() as conn, conn.transaction():
                await conn.executemany(sql, rows)

    async def _page(
        self, op: str, table: str, columns: str, where: list[str], params: list[Any],
        order: str, limit: int, offset: int,
    ) -> tuple[int, list[Any]]:  # fmt: skip
        check_limit(limit, operation=op, dialect=DIALECT)
        check_limit(offset, operation=op, dialect=DIALECT)
        clause = " AND ".join(where) or "true"
        n = len(params)
        pool = self._require(op)
        with self._errors(op):
            async with pool.acquire() as conn:
                total = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {clause}", *params)
                rows = await conn.fetch(
                    f"SELECT {columns} FROM {table} WHERE {clause} ORDER BY {order} "
                    f"LIMIT ${n + 1} OFFSET ${n + 2}",
                    *params,
                    limit,
                    offset,
                )
        return int(total), list(rows)

    async def add_faults(self, faults: Sequence[FaultRecord]) -> None:
        await self._insert(
            "add_faults",
            "INSERT INTO faults (device_id, channel_id, kind, cause, at, cleared_at) "
            "VALUES ($1, $2, $3, $4, to_timestamp($5::float8), to_timestamp($6::float8))",
            [fault_row(f) for f in faults],
        )

    async def clear_faults(self, device_id: str, channel_id: str, kind: str, at: float) -> int:
        op = "clear_faults"
        pool = self._require(op)
        with self._errors(op):
            status = await pool.execute(
                "UPDATE faults SET cleared_at = to_timestamp($1::float8) WHERE device_id = $2 "
                "AND channel_id = $3 AND kind = $4 AND cleared_at IS NULL",
                at,
                device_id,
                channel_id,
                kind,
            )
        return int(str(status).rsplit(" ", 1)[-1])

    async def list_faults(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        device_id: str | None = None,
        open_only: bool = False,
    ) -> tuple[int, list[FaultRecord]]:
        where: list[str] = []
        params: list[Any] = []
        if device_id is not None:
            params.append(device_id)
            where.append(f"device_id = ${len(params)}")
        if open_only:
            where.append("cleared_at IS NULL")
        total, rows = await self._page(
            "list_faults", "faults",
            "device_id, channel_id, kind, cause, extract(epoch FROM at)::float8, "
            "extract(epoch FROM cleared_at)::float8",
            where, params, "at DESC, id DESC", limit, offset,
        )  # fmt: skip
        return total, [fault_from_row(r) for r in rows]

    async def add_alarms(self, alarms: Sequence[AlarmRecord]) -> None:
        await self._insert(
            "add_alarms",
            "INSERT INTO alarms (device_id, channel_id, sn, received_at, priority, method, "
            "alarm_type, alarm_time, description, longitude, latitude) VALUES "
            "($1, $2, $3, to_timestamp($4::float8), $5, $6, $7, $8, $9, $10, $11)",
            [alarm_row(a) for a in alarms],
        )

    async def list_alarms(
        self, *, limit: int = 100, offset: int = 0, device_id: str | None = None
    ) -> tuple[int, list[AlarmRecord]]:
        where, params = (["device_id = $1"], [device_id]) if device_id is not None else ([], [])
        total, rows = await self._page(
            "list_alarms", "alarms",
            "device_id, channel_id, sn, extract(epoch FROM received_at)::float8, priority, "
            "method, alarm_type, alarm_time, description, longitude, latitude",
            where, params, "received_at DESC, id DESC", limit, offset,
        )  # fmt: skip
        return total, [alarm_from_row(r) for r in rows]

    async def add_positions(self, positions: Sequence[PositionRecord]) -> None:
        await self._insert(
            "add_positions",
            "INSERT INTO mobile_positions (device_id, channel_id, received_at, capture_time, "
            "longitude, latitude, speed, direction, altitude) VALUES "
            "($1, $2, to_timestamp($3::float8), $4, $5, $6, $7, $8, $9)",
            [position_row(p) for p in positions],
        )

    async def position_history(self, channel_id: str, *, limit: int = 100) -> list[PositionRecord]:
        _, rows = await self._page(
            "position_history", "mobile_positions",
            "device_id, channel_id, extract(epoch FROM received_at)::float8, capture_time, "
            "longitude, latitude, speed, direction, altitude",
            ["channel_id = $1"], [channel_id], "received_at DESC, id DESC", limit, 0,
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
        pool = self._require(op)
        with self._errors(op):
            async with pool.acquire() as conn, conn.transaction():
                # Nodes sharing the database queue here per block until the holder commits, so
                # each reads the highest ID after the previous allocation; the primary key
                # would refuse a duplicate anyway.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))", ISSUE_LOCK_CLASS, lo
                )
                highest = await conn.fetchval(
                    "SELECT max(id) FROM issued_ids WHERE id BETWEEN $1 AND $2", lo, hi
                )
                ids = next_ids(highest, lo, hi, count)
                issued = [IssuedId(i, department, type_code, at, note) for i in ids]
                if issued:
                    await conn.execute(
                        "INSERT INTO issued_ids (id, department, type, issued_at, note) "
                        "SELECT i, $2, $3, to_timestamp($4::float8), $5 FROM unnest($1::text[]) i",
                        ids,
                        department,
                        type_code,
                        at,
                        note,
                    )
        return issued

    async def list_issued_ids(
        self, *, department: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[IssuedId]]:
        where, params = (["department = $1"], [department]) if department is not None else ([], [])
        total, rows = await self._page(
            "list_issued_ids", "issued_ids",
            "id, department, type, extract(epoch FROM issued_at)::float8, note",
            where, params, "issued_at DESC, id DESC", limit, offset,
        )  # fmt: skip
        return total, [issued_from_row(r) for r in rows]

    async def load_issued_ids(self) -> list[str]:
        op = "load_issued_ids"
        pool = self._require(op)
        with self._errors(op):
            rows = await pool.fetch("SELECT id FROM issued_ids ORDER BY id")
        return [str(r[0]) for r in rows]

    # -- audit trail -----------------------------------------------------------------------

    async def append_audit(self, records: Sequence[AuditRecord]) -> None:
        op = "append_audit"
        rows = [audit_row(r, operation=op, dialect=DIALECT) for r in records]
        if not rows:
            return
        params = ", ".join(f"${i}" for i in range(1, 15))
        pool = self._require(op)
        with self._errors(op):
            async with pool.acquire() as conn, conn.transaction():
                await conn.executemany(
                    f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ({params})", rows
                )

    async def load_audit(self, *, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
        op = "load_audit"
        check_limit(limit, operation=op, dialect=DIALECT)
        pool = self._require(op)
        with self._errors(op):
            rows = await pool.fetch(
                f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                after_seq,
                limit,
            )
        return [audit_from_row(tuple(r)) for r in rows]

    async def audit_tail(self) -> AuditRecord | None:
        op = "audit_tail"
        pool = self._require(op)
        with self._errors(op):
            row = await pool.fetchrow(
                f"SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1"
            )
        return None if row is None else audit_from_row(tuple(row))

    # -- API tokens ------------------------------------------------------------------------

    async def add_api_token(self, token: ApiToken) -> None:
        op = "add_api_token"
        pool = self._require(op)
        with self._errors(op):
            await pool.execute(
                f"INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                *token_row(token),
            )

    async def get_api_token(self, token_hash: str) -> ApiToken | None:
        op = "get_api_token"
        pool = self._require(op)
        with self._errors(op):
            row = await pool.fetchrow(
                f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1", token_hash
            )
        return None if row is None else token_from_row(tuple(row))

    async def revoke_api_tokens(
        self, *, at: float, token_hash: str | None = None, cert_serial: str | None = None
    ) -> int:
        op = "revoke_api_tokens"
        where = token_where(token_hash, cert_serial, operation=op, dialect=DIALECT)
        clause = " AND ".join(f"{column} = ${i}" for i, (column, _) in enumerate(where, start=2))
        pool = self._require(op)
        with self._errors(op):
            status = await pool.execute(
                f"UPDATE api_tokens SET revoked_at = $1 WHERE {clause} AND revoked_at IS NULL",
                at,
                *(value for _, value in where),
            )
        return int(str(status).rsplit(" ", 1)[-1])

    # -- authorization state (migration 0008) -----------------------------------------------

    async def put_cert_binding(self, binding: CertBinding) -> None:
        op = "put_cert_binding"
        pool = self._require(op)
        with self._errors(op):
            await pool.execute(
                f"INSERT INTO cert_bindings ({BINDING_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (account_id) DO UPDATE SET cert_pem = EXCLUDED.cert_pem,"
                " cert_sha256 = EXCLUDED.cert_sha256, cert_serial = EXCLUDED.cert_serial,"
                " bound_at = EXCLUDED.bound_at, note = EXCLUDED.note",
                *binding_row(binding),
            )

    async def get_cert_binding(self, account_id: str) -> CertBinding | None:
        op = "get_cert_binding"
        pool = self._require(op)
        with self._errors(op):
            row = await pool.fetchrow(
                f"SELECT {BINDING_COLUMNS} FROM cert_bindings WHERE account_id = $1", account_id
            )
        return None if row is None else binding_from_row(tuple(row))

    async def delete_cert_binding(self, account_id: str) -> bool:
        op = "delete_cert_binding"
        pool = self._require(op)
        with self._errors(op):
            status = await pool.execute(
                "DELETE FROM cert_bindings WHERE account_id = $1", account_id
            )
        return int(str(status).rsplit(" ", 1)[-1]) > 0

    async def save_grant(self, grant_id: str, state: str, body: str, updated_at: float) -> None:
        op = "save_grant"
        pool = self._require(op)
        with self._errors(op):
            await pool.execute(
                "INSERT INTO grants (id, state, body, updated_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, body = EXCLUDED.body,"
                " updated_at = EXCLUDED.updated_at",
                grant_id,
                state,
                body,
                updated_at,
            )

    async def load_grants(self) -> list[str]:
        op = "load_grants"
        pool = self._require(op)
        with self._errors(op):
            rows = await pool.fetch("SELECT body FROM grants ORDER BY updated_at, id")
        return [str(r[0]) for r in rows]

    async def set_channel_acl(self, channel_id: str, relation: str, parties: Sequence[str]) -> None:
        op = "set_channel_acl"
        check_relation(relation, operation=op, dialect=DIALECT)
        pool = self._require(op)
        with self._errors(op):
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "DELETE FROM channel_acl WHERE channel_id = $1 AND relation = $2",
                    channel_id,
                    relation,
                )
                await conn.executemany(
                    "INSERT INTO channel_acl (channel_id, relation, party) VALUES ($1, $2, $3)"
                    " ON CONFLICT DO NOTHING",
                    [(channel_id, relation, p) for p in parties],
                )

    async def load_channel_acl(self) -> list[tuple[str, str, str]]:
        op = "load_channel_acl"
        pool = self._require(op)
        with self._errors(op):
            rows = await pool.fetch(
                "SELECT channel_id, relation, party FROM channel_acl ORDER BY 1, 2, 3"
            )
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    # -- recording index (migration 0007) ---------------------------------------------------

    async def add_recording(self, row: RecordingRow) -> None:
        op = "add_recording"
        values = recording_row(row, operation=op, dialect=DIALECT)
        pool = self._require(op)
        with self._errors(op):
            await pool.execute(
                f"INSERT INTO recordings ({RECORDING_COLUMNS}) VALUES "
                "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                *values,
            )

    async def update_recording(self, row: RecordingRow) -> bool:
        op = "update_recording"
        values = recording_row(row, operation=op, dialect=DIALECT)
        pool = self._require(op)
        with self._errors(op):
            status = await pool.execute(
                "UPDATE recordings SET channel_id = $2, start_at = $3, end_at = $4, path = $5, "
                "bytes = $6, codec = $7, keyframes = $8, sha256 = $9, state = $10, "
                "security_class = $11 WHERE id = $1",
                *values,
            )
        return int(str(status).rsplit(" ", 1)[-1]) > 0

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
        clause = "start_at < $1 AND (end_at > $2 OR state = 'open')"
        params: list[Any] = [float(end), float(start)]
        if channel_id is not None:
            params.append(channel_id)
            clause += f" AND channel_id = ${len(params)}"
        if state is not None:
            params.append(state)
            clause += f" AND state = ${len(params)}"
        params.append(limit)
        return await self._recordings(
            op, f"WHERE {clause} ORDER BY start_at, id LIMIT ${len(params)}", params
        )

    async def get_recording(self, recording_id: str) -> RecordingRow | None:
        rows = await self._recordings("get_recording", "WHERE id = $1", [recording_id])
        return rows[0] if rows else None

    async def delete_recording(self, recording_id: str) -> bool:
        op = "delete_recording"
        pool = self._require(op)
        with self._errors(op):
            status = await pool.execute("DELETE FROM recordings WHERE id = $1", recording_id)
        return int(str(status).rsplit(" ", 1)[-1]) > 0

    async def oldest_recordings(self, limit: int) -> list[RecordingRow]:
        op = "oldest_recordings"
        check_limit(limit, operation=op, dialect=DIALECT)
        return await self._recordings(
            op, "WHERE state != 'open' ORDER BY start_at, id LIMIT $1", [limit]
        )

    async def recordings_total_bytes(self) -> int:
        op = "recordings_total_bytes"
        pool = self._require(op)
        with self._errors(op):
            total = await pool.fetchval("SELECT coalesce(sum(bytes), 0) FROM recordings")
        return int(total)

    # -- on-demand recording requests (migration 0009) --------------------------------------

    async def put_recording_request(self, request: RecordingRequest) -> None:
        op = "put_recording_request"
        pool = self._require(op)
        with self._errors(op):
            await pool.execute(
                f"INSERT INTO recording_requests ({REQUEST_COLUMNS}) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (channel_id) DO UPDATE SET until_at = EXCLUDED.until_at,"
                " requested_by = EXCLUDED.requested_by, requested_at = EXCLUDED.requested_at",
                *request_row(request),
            )

    async def delete_recording_request(self, channel_id: str) -> bool:
        op = "delete_recording_request"
        pool = self._require(op)
        with self._errors(op):
            status = await pool.execute(
                "DELETE FROM recording_requests WHERE channel_id = $1", channel_id
            )
        return int(str(status).rsplit(" ", 1)[-1]) > 0

    async def list_recording_requests(self) -> list[RecordingRequest]:
        op = "list_recording_requests"
        pool = self._require(op)
        with self._errors(op):
            rows = await pool.fetch(
                f"SELECT {REQUEST_COLUMNS} FROM recording_requests ORDER BY channel_id"
            )
        return [request_from_row(tuple(r)) for r in rows]

    async def _recordings(self, op: str, tail: str, params: list[Any]) -> list[RecordingRow]:
        pool = self._require(op)
        with self._errors(op):
            rows = await pool.fetch(f"SELECT {RECORDING_COLUMNS} FROM recordings {tail}", *params)
        return [recording_from_row(tuple(r)) for r in rows]

    # -- plumbing --------------------------------------------------------------------------

    def _require(self, operation: str) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreClosedError(
                f"store {self._display} is not open", operation=operation, dialect=DIALECT
            )
        return self._pool

    @contextlib.contextmanager
    def _errors(self, operation: str, *, connect: bool = False) -> Iterator[None]:
        """Re-raise driver exceptions as typed store errors carrying the operation."""
        try:
            yield
        except StoreError:
            raise
        except (
            _ArgumentError,  # client side: a value asyncpg cannot encode for its column type
            asyncpg.DataError,  # server side, SQLSTATE class 22
            asyncpg.IntegrityConstraintViolationError,
        ) as exc:
            raise StoreDataError(
                f"{self._display}: {exc}", operation=operation, dialect=DIALECT
            ) from exc
        except _CONNECTION_ERRORS as exc:
            raise StoreConnectionError(
                f"{self._display}: {type(exc).__name__}: {exc}",
                operation=operation,
                dialect=DIALECT,
            ) from exc
        except asyncpg.PostgresError as exc:
            kind = StoreConnectionError if connect else StoreError
            raise kind(
                f"{self._display}: {type(exc).__name__}: {exc}",
                operation=operation,
                dialect=DIALECT,
            ) from exc


def _device_columns(records: Sequence[DeviceRecord], operation: str) -> list[list[Any]]:
    """Transpose records into one list per column, in :data:`DEVICE_COLUMNS` order."""
    return [
        [r.device_id for r in records],
        [r.kind for r in records],
        [r.name for r in records],
        [r.password for r in records],
        [r.transport for r in records],
        [r.contact for r in records],
        [r.host for r in records],
        [r.port for r in records],
        [r.expires for r in records],
        [r.registered_at for r in records],
        [r.last_keepalive for r in records],
        [r.online for r in records],
        [r.user_agent for r in records],
        [r.gb_version for r in records],
        [r.charset for r in records],
        [encode_extra(r, operation=operation, dialect=DIALECT) for r in records],
    ]
