"""Records and the one storage interface that SQLite and PostgreSQL both implement.

The registrar keeps hot state in memory and persists through a :class:`Store`; it never sees SQL
or a driver. Times cross this interface as float unix epoch seconds whatever the column type
(SQLite ``REAL``, PostgreSQL ``timestamptz``), so callers and tests are dialect-blind.

Every method may raise a :class:`~gb28181.store.StoreError` subclass; none raises a driver
exception.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

from authz.audit import AuditRecord

from ._recordings import RecordingRequest, RecordingRow

__all__ = [
    "AlarmRecord",
    "ApiToken",
    "BatchWriter",
    "CertBinding",
    "ChannelRecord",
    "DeviceRecord",
    "FaultRecord",
    "IssuedId",
    "PositionRecord",
    "StatusEvent",
    "Store",
]


@dataclass(slots=True)
class DeviceRecord:
    """Persistent state of one registered device or lower platform (GB/T 28181-2022 §9.1)."""

    device_id: str
    """20-digit GB ID (lenient mode may allow others); primary key."""
    kind: str
    """``"device"`` or ``"platform"`` (a lower platform, type code 200)."""
    name: str = ""
    password: str | None = None
    """Per-device digest password; ``None`` means use the platform default."""
    transport: str = "UDP"
    """``UDP`` / ``TCP`` / ``TLS``, as registered."""
    contact: str = ""
    """Contact URI from the REGISTER."""
    host: str = ""
    """Observed source address (behind NAT this differs from the Contact host)."""
    port: int = 0
    expires: int = 0
    """Registration lifetime in seconds; 0 means not registered."""
    registered_at: float | None = None
    """Unix epoch seconds."""
    last_keepalive: float | None = None
    """Unix epoch seconds."""
    online: bool = False
    user_agent: str = ""
    gb_version: str = ""
    """``X-GB-Ver`` header value, if the device sent one."""
    charset: str = "GB2312"
    extra: dict[str, Any] = field(default_factory=dict)
    """JSON-serialisable attributes added later without a schema change."""


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """One online/offline transition of a device, kept for the status history view."""

    device_id: str
    at: float
    """Unix epoch seconds."""
    online: bool
    reason: str
    """``"registered"``, ``"unregistered"``, ``"keepalive timeout"``, ``"expired"``..."""


@dataclass(slots=True)
class ChannelRecord:
    """One catalog node of a device or lower platform (GB/T 28181-2016 A.2.4.3 Item).

    Built from the device tree (``gb28181.catalog.channel_record``). The three platform-side
    attributes at the end are operator data: :meth:`Store.upsert_channels` writes them only
    when it inserts a new row, and :meth:`Store.set_channel_attributes` changes them.
    """

    device_id: str
    """The registered device or lower platform whose catalog lists the node."""
    channel_id: str
    """The node's own ID (channel, device, region, business group or virtual organisation)."""
    parent_ids: tuple[str, ...] = ()
    """Resolved parents (ParentID split on ``/``, root markers removed); empty = root."""
    kind: str = "channel"
    """``region``, ``business_group``, ``virtual_org``, ``device``, ``platform``, ``channel``."""
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    owner: str | None = None
    civil_code: str | None = None
    address: str | None = None
    parental: int | None = None
    status: str = "UNKNOWN"
    """``ON``, ``OFF``, ``VLOST``, ``DEFECT`` or ``UNKNOWN``."""
    longitude: float | None = None
    latitude: float | None = None
    ptz_type: int | None = None
    business_group_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    """Every other field the device sent (JSON object)."""
    security_class: int = 0
    owner_department: str | None = None
    shared: bool = False
    updated_at: float = 0.0
    """Unix epoch seconds of the last change."""


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One fault of a device or channel (regulation art. 10): raised ``at``, ended at
    ``cleared_at`` (``None`` while it lasts)."""

    device_id: str
    channel_id: str
    """The channel's ID, or ``""`` for the device itself."""
    kind: str
    """``offline``, ``keepalive_error``, ``channel_off``, ``vlost``, ``defect``,
    ``query_failed``..."""
    cause: str
    at: float
    cleared_at: float | None = None


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """One alarm as received. ``channel_id`` is the body's DeviceID (the alarming channel)."""

    device_id: str
    channel_id: str
    sn: int
    received_at: float
    priority: int | None
    method: str | None
    alarm_type: str | None
    alarm_time: str | None
    description: str | None
    longitude: float | None
    latitude: float | None


@dataclass(frozen=True, slots=True)
class PositionRecord:
    """One MobilePosition report of a channel."""

    device_id: str
    channel_id: str
    received_at: float
    capture_time: str | None = None
    longitude: float | None = None
    latitude: float | None = None
    speed: float | None = None
    direction: float | None = None
    altitude: float | None = None


@dataclass(frozen=True, slots=True)
class IssuedId:
    """One 20-digit ID issued to a department (regulation art. 11, migration 0004)."""

    id: str
    department: str
    type_code: str
    """The ID's type code (digits 11-13)."""
    issued_at: float
    note: str = ""


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A bearer token of the HTTP API, bound to the certificate it was issued against
    (migration 0006). The token itself is never stored, only its SHA-256."""

    token_hash: str
    """Hex SHA-256 of the token (``gb28181.tokens.hash_token``)."""
    principal_id: str
    cert_sha256: str
    """Hex SHA-256 fingerprint of the certificate: the token grants what it grants."""
    cert_serial: str
    """Hex serial, to find tokens to revoke with the certificate."""
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class CertBinding:
    """The permission certificate bound to a SIP account that authenticates by digest only
    (migration 0008; ``gb28181 certs bind``)."""

    account_id: str
    cert_pem: str
    cert_sha256: str
    cert_serial: str
    bound_at: float
    note: str = ""


class BatchWriter(Protocol):
    """What :class:`~gb28181.store.WriteBehind` needs from a store."""

    @property
    def dialect(self) -> str: ...

    async def write_batch(
        self, records: Sequence[DeviceRecord], events: Sequence[StatusEvent]
    ) -> None: ...


class Store(abc.ABC):
    """Asynchronous device store; see :func:`~gb28181.store.open_store` to get one.

    Usable as an async context manager (``async with await open_store(url) as store``), which
    closes it on exit.
    """

    @property
    @abc.abstractmethod
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect. Does not migrate; :func:`open_store` calls :meth:`migrate` after this.

        :raises StoreConnectionError: the database cannot be opened or reached.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent."""

    @abc.abstractmethod
    async def migrate(self) -> list[int]:
        """Apply pending migrations in order, each in its own transaction, each exactly once.

        Safe to run concurrently from several processes on one database.

        :returns: the versions applied by this call (empty when already up to date).
        :raises StoreMigrationError: a migration failed; it was rolled back.
        """

    @abc.abstractmethod
    async def applied_versions(self) -> list[int]:
        """Migration versions recorded in ``schema_migrations``, ascending."""

    @abc.abstractmethod
    async def load_devices(self) -> list[DeviceRecord]:
        """Every device, ordered by ``device_id`` (used to warm the registrar at start-up)."""

    @abc.abstractmethod
    async def get_device(self, device_id: str) -> DeviceRecord | None:
        """One device, or ``None`` when unknown."""

    @abc.abstractmethod
    async def upsert_devices(self, records: Sequence[DeviceRecord]) -> None:
        """Insert or fully replace devices in one transaction.

        When ``records`` holds the same ``device_id`` more than once the last one wins.

        :raises StoreDataError: a record cannot be stored (e.g. ``extra`` not JSON-serialisable);
            nothing from the batch was written.
        """

    @abc.abstractmethod
    async def delete_device(self, device_id: str) -> bool:
        """Delete a device; its status history is kept.

        :returns: whether a row was deleted.
        """

    @abc.abstractmethod
    async def append_status_events(self, events: Sequence[StatusEvent]) -> None:
        """Append status events in one transaction."""

    @abc.abstractmethod
    async def status_history(
        self, device_id: str, *, limit: int = 100, before: float | None = None
    ) -> list[StatusEvent]:
        """Status events of one device, newest first.

        :param limit: at most this many events.
        :param before: only events strictly older than this epoch time (for paging, pass the
            ``at`` of the last event of the previous page; events sharing that exact instant
            are on the previous page or skipped).
        """

    @abc.abstractmethod
    async def write_batch(
        self, records: Sequence[DeviceRecord], events: Sequence[StatusEvent]
    ) -> None:
        """Upsert ``records`` and append ``events`` in a single transaction (all or nothing)."""

    # -- channels (catalog) -----------------------------------------------------------------

    @abc.abstractmethod
    async def upsert_channels(self, device_id: str, records: Sequence[ChannelRecord]) -> None:
        """Insert or update the catalog nodes of ``device_id`` in one transaction.

        Existing rows keep their ``security_class``, ``owner_department`` and ``shared``: a
        catalog sync never overwrites operator data. A record's ``device_id`` is ignored in
        favour of the argument. When ``records`` repeats a ``channel_id`` the last one wins.

        :raises StoreDataError: a record cannot be stored (``info`` not JSON-serialisable...);
            nothing from the batch was written.
        """

    @abc.abstractmethod
    async def delete_channels(
        self, device_id: str, channel_ids: Sequence[str] | None = None
    ) -> int:
        """Delete the given nodes of ``device_id``, or all of them when ``channel_ids`` is
        ``None``. :returns: the number of rows deleted."""

    @abc.abstractmethod
    async def load_channels(self, device_id: str) -> list[ChannelRecord]:
        """Every node of ``device_id``, ordered by ``channel_id``."""

    @abc.abstractmethod
    async def search_channels(
        self, text: str, *, limit: int = 50, offset: int = 0
    ) -> list[ChannelRecord]:
        """Nodes whose name contains ``text`` (case-insensitive for ASCII) or whose ID starts
        with it, across all devices, ordered by ``(device_id, channel_id)``.

        ``%`` and ``_`` in ``text`` match themselves. An empty ``text`` matches everything.
        """

    @abc.abstractmethod
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
        """Set platform-side attributes; ``None`` leaves an attribute unchanged, and an empty
        ``owner_department`` clears it. :returns: whether the channel exists."""

    # -- faults, alarms, positions (histories) ----------------------------------------------

    @abc.abstractmethod
    async def add_faults(self, faults: Sequence[FaultRecord]) -> None:
        """Append faults (open when ``cleared_at`` is ``None``) in one transaction."""

    @abc.abstractmethod
    async def clear_faults(self, device_id: str, channel_id: str, kind: str, at: float) -> int:
        """Set ``cleared_at`` on the open faults of that kind. :returns: rows cleared."""

    @abc.abstractmethod
    async def list_faults(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        device_id: str | None = None,
        open_only: bool = False,
    ) -> tuple[int, list[FaultRecord]]:
        """Faults newest first: ``(total matching, page)``."""

    @abc.abstractmethod
    async def add_alarms(self, alarms: Sequence[AlarmRecord]) -> None:
        """Append alarms in one transaction."""

    @abc.abstractmethod
    async def list_alarms(
        self, *, limit: int = 100, offset: int = 0, device_id: str | None = None
    ) -> tuple[int, list[AlarmRecord]]:
        """Alarms newest first: ``(total matching, page)``."""

    @abc.abstractmethod
    async def add_positions(self, positions: Sequence[PositionRecord]) -> None:
        """Append MobilePosition reports in one transaction."""

    @abc.abstractmethod
    async def position_history(self, channel_id: str, *, limit: int = 100) -> list[PositionRecord]:
        """Reports of one channel, newest first."""

    # -- issued IDs (regulation art. 11) ----------------------------------------------------

    @abc.abstractmethod
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
        """Issue the ``count`` IDs that follow the highest ID already issued in ``lo..hi``.

        ``lo`` and ``hi`` are 20-digit IDs bounding one block (same prefix, type and network).
        All or nothing, atomic against concurrent callers in this and other processes sharing
        the database: two calls never issue the same ID.

        :returns: the issued IDs in order, or ``[]`` when fewer than ``count`` remain.
        :raises StoreDataError: ``lo``/``hi`` are not 20 digits or ``count`` is not positive.
        """

    @abc.abstractmethod
    async def list_issued_ids(
        self, *, department: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[IssuedId]]:
        """Issued IDs, newest first (ties by ID): ``(total matching, page)``."""

    @abc.abstractmethod
    async def load_issued_ids(self) -> list[str]:
        """Every issued ID (to check registrations against in memory)."""

    # -- audit trail (migration 0005) --------------------------------------------------------

    @abc.abstractmethod
    async def append_audit(self, records: Sequence[AuditRecord]) -> None:
        """Append sealed audit records (ascending ``seq``) in one transaction.

        :raises StoreDataError: a ``seq`` is already stored (a second writer forked the
            chain) or a record cannot be stored; nothing from the batch was written.
        """

    @abc.abstractmethod
    async def load_audit(self, *, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
        """Records with ``seq > after_seq``, ascending, at most ``limit`` (for paging, pass the
        last ``seq`` of the previous page). Rows are returned as stored, tampered or not."""

    @abc.abstractmethod
    async def audit_tail(self) -> AuditRecord | None:
        """The record with the highest ``seq`` (to resume the chain), or ``None``."""

    # -- API tokens (migration 0006) ---------------------------------------------------------

    @abc.abstractmethod
    async def add_api_token(self, token: ApiToken) -> None:
        """Store a new token. :raises StoreDataError: the hash is already stored."""

    @abc.abstractmethod
    async def get_api_token(self, token_hash: str) -> ApiToken | None:
        """The token with this hash (revoked or expired included), or ``None``."""

    @abc.abstractmethod
    async def revoke_api_tokens(
        self, *, at: float, token_hash: str | None = None, cert_serial: str | None = None
    ) -> int:
        """Set ``revoked_at`` on the unrevoked tokens with this hash and/or certificate serial
        (at least one must be given). :returns: tokens revoked."""

    # -- authorization state (migration 0008) -----------------------------------------------

    @abc.abstractmethod
    async def put_cert_binding(self, binding: CertBinding) -> None:
        """Bind (or rebind) the account's certificate."""

    @abc.abstractmethod
    async def get_cert_binding(self, account_id: str) -> CertBinding | None:
        """The account's binding, or ``None``."""

    @abc.abstractmethod
    async def delete_cert_binding(self, account_id: str) -> bool:
        """Remove the account's binding. :returns: whether there was one."""

    @abc.abstractmethod
    async def save_grant(self, grant_id: str, state: str, body: str, updated_at: float) -> None:
        """Insert or replace a grant document (``body``: JSON text, see
        ``gb28181.authorizer.grant_to_json``)."""

    @abc.abstractmethod
    async def load_grants(self) -> list[str]:
        """Every stored grant document (JSON text), oldest first."""

    @abc.abstractmethod
    async def set_channel_acl(self, channel_id: str, relation: str, parties: Sequence[str]) -> None:
        """Replace the channel's ``relation`` list (``shared_with`` or ``controllable_by``).
        :raises StoreDataError: unknown relation."""

    @abc.abstractmethod
    async def load_channel_acl(self) -> list[tuple[str, str, str]]:
        """Every ``(channel_id, relation, party)``, ordered."""

    # -- recording index (migration 0007) ---------------------------------------------------

    @abc.abstractmethod
    async def add_recording(self, row: RecordingRow) -> None:
        """Insert a segment's row. :raises StoreDataError: the id or path is already stored."""

    @abc.abstractmethod
    async def update_recording(self, row: RecordingRow) -> bool:
        """Replace the row with ``row.id``. :returns: whether it exists."""

    @abc.abstractmethod
    async def list_recordings(
        self,
        channel_id: str | None,
        start: float,
        end: float,
        *,
        state: str | None = None,
        limit: int = 10_000,
    ) -> list[RecordingRow]:
        """Rows overlapping ``[start, end)`` (an open row overlaps from its start on), ordered
        by start; ``channel_id`` None means every channel, ``state`` filters."""

    @abc.abstractmethod
    async def get_recording(self, recording_id: str) -> RecordingRow | None:
        """The row, or ``None``."""

    @abc.abstractmethod
    async def delete_recording(self, recording_id: str) -> bool:
        """Remove the row. :returns: whether it existed."""

    @abc.abstractmethod
    async def oldest_recordings(self, limit: int) -> list[RecordingRow]:
        """The ``limit`` oldest rows that are not open (quota deletion order)."""

    @abc.abstractmethod
    async def recordings_total_bytes(self) -> int:
        """Sum of ``bytes`` over every row."""

    # -- on-demand recording requests (migration 0009) --------------------------------------

    @abc.abstractmethod
    async def put_recording_request(self, request: RecordingRequest) -> None:
        """Insert or replace the channel's on-demand recording request."""

    @abc.abstractmethod
    async def delete_recording_request(self, channel_id: str) -> bool:
        """Remove the channel's request. :returns: whether there was one."""

    @abc.abstractmethod
    async def list_recording_requests(self) -> list[RecordingRequest]:
        """Every stored request, by channel."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
