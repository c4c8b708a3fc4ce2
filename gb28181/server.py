"""The ``gb28181 serve`` process: storage, registrar, SIP, HTTP, wired together.

Services receive their collaborators at construction (store, clock,
metrics), so tests run a whole :class:`Platform` on loopback with a real
SQLite file and injected time, without patching.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import logging
import os
import signal
import ssl
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import uvicorn

from authz import (
    ArbiterConfig,
    ControlArbiter,
    Grant,
    GrantBook,
    GrantError,
    Policy,
    PolicyConfig,
    Principal,
)
from media.playback_worker import PlaybackWorker
from media.recorder import Recorder
from media.worker import RelayWorker, WorkerConfig

from . import __version__, manscdp
from .alarms import AlarmService
from .api import build_app
from .api_auth import ApiAuthMiddleware
from .api_authz import authz_routes, save_grant
from .api_calls import call_routes
from .api_devices import device_routes
from .api_ids import id_routes
from .api_playback import playback_routes
from .api_recordings import recording_routes
from .api_uplinks import uplink_routes
from .audit import AuditLog, load_key
from .authorizer import Authorizer, CatalogFacts, grant_from_json
from .calls import CallService
from .catalog_responder import CatalogResponder, RegisteredLink
from .catalog_sync import CatalogService
from .channel_writer import ChannelWriter
from .config import Config
from .faults import FaultService
from .forwarding import ForwardingService
from .id_registry import IdRegistry
from .identity import Identity
from .ids import IdAllocator
from .inbound import InboundService
from .metrics import Metrics
from .playback import PlaybackService
from .positions import PositionService
from .queries import QueryService
from .recordings import RecordingPolicy, RecordingService
from .registrar import Registrar, RegistrarConfig, Source
from .signalling import Signalling
from .sip import DigestVerifier, NonceIssuer
from .store import DeviceRecord, StatusEvent, Store, WriteBehind, open_store, parse_store_url
from .subscriptions import SubscriptionService
from .uplink_service import UplinkService
from .upper_requests import UpperRequests
from .webhook import Webhook

__all__ = ["Platform", "run"]

log = logging.getLogger(__name__)

#: Seconds between liveness sweeps (deadlines are exact; detection lags by at most this).
SWEEP_INTERVAL = 2.0
#: Seconds between reloads of the issued IDs (learns IDs issued by other nodes).
IDS_RELOAD_INTERVAL = 30.0
#: Seconds between expiries of control sessions and grants (both also end exactly when
#: checked: this only moves their state and writes the audit record).
AUTHZ_TICK = 1.0
#: Lifetime of digest nonces.
NONCE_LIFETIME = 300.0
#: Response CmdTypes routed to the query correlator (answers to what we send).
RESPONSE_CMD_TYPES = (
    "Catalog",
    "DeviceInfo",
    "DeviceStatus",
    "RecordInfo",
    "ConfigDownload",
    "PresetQuery",
    "HomePositionQuery",
    "PTZPosition",
    "SDCardStatus",
    "CruiseTrackListQuery",
    "CruiseTrackQuery",
    "DeviceControl",
    "DeviceConfig",
)
#: Garbage-collector thresholds for the signalling process. Every SIP message
#: allocates a few hundred short-lived objects while tens of thousands of
#: devices and transactions stay alive; CPython's default (700, 10, 10)
#: rescans that live set so often that collection costs as much as the SIP
#: work itself. Raising generation 0 and freezing the start-up state (below)
#: keeps the collector's cost per message small; cycles are still collected.
GC_THRESHOLDS = (20000, 20, 100)


def _load_secret(store_url: str) -> bytes:
    """The nonce secret: ``GB28181_SECRET`` if set, else a per-installation file.

    Nonces must stay valid across processes that share it (several nodes)
    and across a restart within their lifetime, so it is not random per run.
    """
    env = os.environ.get("GB28181_SECRET")
    if env:
        return hashlib.sha256(env.encode()).digest()
    # Next to the SQLite file; ./var for PostgreSQL or an in-memory database.
    url = parse_store_url(store_url)
    if url.dialect == "sqlite" and url.target != ":memory:":
        path = Path(url.target).parent / "secret"
    else:
        path = Path("var") / "secret"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secret)
        return secret


class Platform:
    """One signalling server: call :meth:`start`, then :meth:`stop`."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.metrics = Metrics()
        self.store: Store | None = None
        self.writer: WriteBehind | None = None
        self.audit: AuditLog | None = None
        self.signalling: Signalling | None = None
        self.queries: QueryService | None = None
        self.catalogs: CatalogService | None = None
        self.alarms: AlarmService | None = None
        self.channel_writer: ChannelWriter | None = None
        self.subscriptions: SubscriptionService | None = None
        self.faults: FaultService | None = None
        self.positions: PositionService | None = None
        self.webhook: Webhook | None = None
        self.ids: IdRegistry | None = None
        self.media: RelayWorker | None = None
        self.calls: CallService | None = None
        self.playback_worker: PlaybackWorker | None = None
        self.playback: PlaybackService | None = None
        self.recordings: RecordingService | None = None
        self.authorizer: Authorizer | None = None
        self.identity: Identity | None = None
        self.channel_facts: CatalogFacts | None = None
        self.catalog_responder: CatalogResponder | None = None
        self.inbound: InboundService | None = None
        self.forwarding: ForwardingService | None = None
        self.uplinks: UplinkService | None = None
        self.upper_requests: UpperRequests | None = None
        self.http: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        sip = config.sip
        self.registrar_config = RegistrarConfig(
            server_id=sip.id,
            domain=sip.domain,
            default_password=sip.password,
            keepalive_interval=sip.keepalive_interval,
            keepalive_misses=sip.keepalive_misses,
            strict_ids=sip.strict_ids,
            min_expires=sip.min_expires,
            max_expires=sip.max_expires,
            lockout_failures=sip.lockout_failures,
            lockout_seconds=sip.lockout_seconds,
            date_header=sip.date_header,
            user_agent=sip.user_agent,
        )
        self.registrar: Registrar | None = None

    def locate_channel(self, channel_id: str) -> str | None:
        """The device (or lower platform) that carries ``channel_id``; None when unknown.

        The catalog's channel index answers (the most recent reporter when several devices
        list the channel); a device's own node does not count, so a channel an IPC lists as
        itself and an NVR lists too goes through the NVR. An IPC registers with its channel's
        ID, or the device itself is asked for: a registered ID then stands for itself."""
        assert self.catalogs is not None and self.registrar is not None
        for device_id in self.catalogs.trees.devices_of(channel_id):
            if device_id != channel_id:
                return device_id
        return channel_id if self.registrar.get(channel_id) is not None else None

    @property
    def sip_addr(self) -> tuple[str, int]:
        """The bound SIP address (useful when the port was 0)."""
        assert self.signalling is not None and self.signalling.transport.local_addr is not None
        return self.signalling.transport.local_addr

    @property
    def http_port(self) -> int:
        """The bound HTTP port."""
        assert self.http is not None and self.http.servers
        sock = self.http.servers[0].sockets[0]
        return int(sock.getsockname()[1])

    async def start(self) -> None:
        """Open storage, restore registrations, bind SIP and HTTP."""
        cfg = self.config
        self.store = await open_store(cfg.storage.url)
        self.writer = WriteBehind(self.store, interval=cfg.storage.flush_interval)
        # The audit trail resumes its hash chain before anything is recorded; a
        # platform that cannot read its audit trail does not start.
        key = load_key(cfg.audit.key_file) if cfg.audit.key_file else None
        self.audit = AuditLog(self.store, key=key, interval=cfg.audit.flush_interval)
        await self.audit.start()
        self.audit.record_startup(
            __version__,
            {
                "sip.id": cfg.sip.id,
                "sip.port": cfg.sip.port,
                "sip.tls_port": cfg.sip.tls_port,
                "storage": self.store.dialect,
                "audit.hmac": key is not None,
            },
        )
        verifier = DigestVerifier(
            NonceIssuer(_load_secret(cfg.storage.url), NONCE_LIFETIME), cfg.sip.domain
        )
        self._status_listeners: list[Callable[[StatusEvent], None]] = []
        self.registrar = Registrar(
            self.registrar_config,
            verifier,
            sink=_StatusTap(self.writer, self._status_listeners),
            metrics=self.metrics,
        )
        records = await self.store.load_devices()
        online = self.registrar.restore(records, self.clock())
        log.info(
            "restored %d devices (%d online) from %s", len(records), online, self.store.dialect
        )
        self.metrics.bind_device_counts(
            lambda: self.registrar.registered_count if self.registrar else 0,
            lambda: self.registrar.online_count if self.registrar else 0,
        )
        self.writer.start()
        self.signalling = Signalling(
            self.registrar,
            self.metrics,
            server_id=cfg.sip.id,
            max_size=cfg.sip.max_message_size,
            user_agent=cfg.sip.user_agent,
            advertised_host=cfg.sip.advertised_host,
            clock=self.clock,
        )
        await self._start_device_management()
        await self._start_authz()
        await self._start_ids()
        self._start_calls()
        self._start_playback()
        await self._start_recordings()
        self._start_catalog_responder()
        self._start_inbound()
        tls = self._tls_context()
        await self.signalling.transport.start(
            cfg.sip.listen, cfg.sip.port, tls_port=cfg.sip.tls_port, tls=tls
        )
        self._tasks.append(asyncio.create_task(self._sweeper(), name="liveness-sweep"))
        await self._start_uplinks()
        if cfg.http.port >= 0:
            await self._start_http()
        if cfg.sip.password == "12345678":
            log.warning("the default device password is in use: set [sip] password")
        log.info(
            "SIP listening on %s:%d (UDP+TCP), advertised as %s; HTTP on %s:%d",
            *self.sip_addr,
            cfg.sip.advertised_host,
            cfg.http.listen,
            self.http_port if self.http else -1,
        )

    async def _start_device_management(self) -> None:
        """Queries, catalogs (trees loaded from storage) and their MANSCDP routes."""
        assert self.signalling is not None and self.registrar is not None
        assert self.store is not None
        cfg = self.config
        sig = self.signalling
        self.queries = QueryService(
            sig,
            self.registrar,
            self.metrics,
            clock=self.clock,
            default_timeout=cfg.devices.query_timeout,
        )
        self.channel_writer = ChannelWriter(self.store, interval=cfg.storage.flush_interval)
        self.catalogs = CatalogService(
            self.queries,
            self.channel_writer,
            self.metrics,
            server_id=cfg.sip.id,
            clock=self.clock,
            timeout=cfg.devices.catalog_timeout,
            platform_timeout=cfg.devices.platform_catalog_timeout,
            refresh_interval=cfg.devices.catalog_refresh_interval,
            concurrency=cfg.devices.catalog_concurrency,
            poll_interval=cfg.devices.catalog_poll_interval,
        )
        loaded = 0
        for device_id in list(self.registrar.devices):
            records = await self.store.load_channels(device_id)
            self.catalogs.load(device_id, records)
            loaded += len(records)
        if loaded:
            log.info("loaded %d catalog nodes", loaded)
        self.channel_writer.start()
        queries, catalogs = self.queries, self.catalogs
        for cmd_type in RESPONSE_CMD_TYPES:
            sig.on_manscdp("Response", cmd_type, queries.on_response)
        sig.on_manscdp("Notify", "Catalog", catalogs.apply_notify)
        self._start_faults()
        self.alarms = AlarmService(queries, self.metrics, store=self.store)
        sig.on_manscdp("Notify", "Alarm", self.alarms.on_alarm)
        self.positions = PositionService(self.store)
        sig.on_manscdp("Notify", "MobilePosition", self.positions.on_position)
        if cfg.devices.catalog_on_register:
            sig.on_registered.append(catalogs.device_online)
        self._start_subscriptions()
        if cfg.devices.catalog_refresh_interval > 0 or cfg.devices.catalog_poll_interval > 0:
            self._tasks.append(asyncio.create_task(self._catalog_refresher(), name="catalog"))

    def _start_calls(self) -> None:
        """The media worker (its own thread) and live play, if ``[media] enabled``."""
        assert self.signalling is not None and self.catalogs is not None
        assert self.registrar is not None
        media = self.config.media
        if not media.enabled:
            return
        self.media = RelayWorker(
            WorkerConfig(
                host=media.listen,
                port_first=media.port_first,
                port_last=media.port_last,
                timeout=media.no_media_timeout,
                gro=media.gro,
                gso=media.gso,
            )
        )
        self.media.start()
        sip = self.config.sip
        self.calls = CallService(
            self.signalling,
            self.media,
            self.locate_channel,
            server_id=sip.id,
            domain=sip.domain,
            media_host=media.advertised_host or sip.advertised_host,
            stream_mode=media.mode_of,
            invite_timeout=media.invite_timeout,
            platform_invite_timeout=self.config.devices.platform_invite_timeout,
            idle_delay=media.idle_delay,
            clock=self.clock,
        )
        self.signalling.methods["BYE"] = self.calls.on_bye
        self.signalling.on_stray_response.append(self.calls.on_stray_response)
        # MediaStatus 121 ends a device playback by Call-ID (notes §4.12), so it takes the
        # request, not just the sender and message.
        self.signalling.manscdp_handlers[("Notify", "MediaStatus")] = self.calls.on_media_status
        self._tasks.append(asyncio.create_task(self.calls.run(), name="media-events"))

    def _start_playback(self) -> None:
        """Playback and download of our recordings and the devices' (with ``[media]``)."""
        assert self.store is not None
        if self.media is None:
            return
        self.playback_worker = PlaybackWorker(self.config.media.listen)
        self.playback_worker.start()
        self.playback = PlaybackService(
            self.playback_worker,
            self.store,
            self.config.recording.root,
            calls=self.calls,
            domain=self.config.sip.domain,
            clock=self.clock,
        )
        self._tasks.append(asyncio.create_task(self.playback.run(), name="playback-events"))

    async def _start_recordings(self) -> None:
        """Recording (``[recording]``, needs ``[media]``): the index is reconciled with the
        disk before any recording starts."""
        assert self.store is not None and self.catalogs is not None
        rec = self.config.recording
        if self.calls is None or not rec.enabled:
            return
        catalogs = self.catalogs

        def security_class(channel_id: str) -> int:
            device_id = catalogs.device_of(channel_id)
            node = catalogs.trees[device_id].get(channel_id) if device_id is not None else None
            return int(node.security_class) if node is not None else 0

        recorder = Recorder(
            rec.root, segment_seconds=rec.segment_seconds, flush_interval=rec.flush_interval
        )
        self.recordings = RecordingService(
            self.store,
            self.calls,
            recorder,
            RecordingPolicy(
                segment_seconds=rec.segment_seconds,
                retention_days=rec.retention_days,
                retention_by_class=rec.retention_classes(),
                quota_bytes=rec.quota_bytes,
                always=rec.always_channels(),
                schedules=rec.schedule_windows(),
                utc_offset=rec.utc_offset,
                check_interval=rec.check_interval,
            ),
            security_class=security_class,
            audit=self.audit,
            faults=self.faults,
            alarm_device=self.config.sip.id,
            clock=self.clock,
        )
        await self.recordings.start()

    async def _start_uplinks(self) -> None:
        """Register to the ``[[upstream]]`` platforms and answer what they ask (cascade)."""
        assert self.signalling is not None and self.catalogs is not None
        if not self.config.upstream:
            return
        sip = self.config.sip
        catalogs = self.catalogs
        uplinks = self.uplinks = UplinkService(
            self.signalling,
            self.config.upstream,
            self.metrics,
            server_id=sip.id,
            local_host=sip.advertised_host,
            user_agent=sip.user_agent,
            clock=self.clock,
        )
        answers = self.upper_requests = UpperRequests(uplinks, version=__version__)

        def channels() -> list[str]:
            return [
                node.channel_id
                for d, tree in catalogs.trees.items()
                for node in tree
                if node.channel_id != d
            ]

        def ancestors(channel_id: str) -> list[str]:
            device_id = catalogs.device_of(channel_id)
            if device_id is None:
                return []
            tree = catalogs.trees[device_id]
            node = tree.get(channel_id)
            if node is None:
                return []
            seen: list[str] = [device_id]
            todo = list(node.parent_ids)
            while todo and len(seen) < 64:
                parent = todo.pop()
                if parent in seen:
                    continue
                seen.append(parent)
                above = tree.get(parent)
                if above is not None:
                    todo.extend(above.parent_ids)
            return seen

        uplinks.ancestors = ancestors
        answers.channels = channels
        answers.queries = self.queries
        if self.calls is not None:
            answers.locate = self.calls.locate
        # An upper platform is who the certificate bound to its account says (H3's identity).
        identity = self.identity
        principal_of = None
        if identity is not None:

            async def principal_of(upper_id: str) -> Principal | None:
                return await identity.for_sip_account(upper_id, None)

        answers.install(
            responder=self.catalog_responder, inbound=self.inbound, principal_of=principal_of
        )
        await uplinks.start()

    def _start_inbound(self) -> None:
        """INVITEs, DeviceControl and RecordInfo from other parties (issues 5, 6): needs the
        authorizer and the identities; without them INVITE stays unanswered by design (501)."""
        assert self.signalling is not None and self.registrar is not None
        assert self.catalogs is not None
        authorizer, identity = self.authorizer, self.identity
        if authorizer is None or identity is None:
            log.info("inbound calls off: no authorizer or identity configured")
            return
        sip = self.config.sip
        self.inbound = InboundService(
            self.signalling,
            self.registrar,
            authorizer,
            identity,
            calls=self.calls,
            playback=self.playback,
            server_id=sip.id,
            domain=sip.domain,
            media_host=self.config.media.advertised_host or sip.advertised_host,
            audit=self.audit,
            clock=self.clock,
        )
        self.inbound.install()
        self.forwarding = ForwardingService(
            self.inbound,
            authorizer,
            self.queries,
            self.locate_channel,
        )
        self.forwarding.install()

    def _start_catalog_responder(self) -> None:
        """Our catalog for registered lower platforms (their Catalog queries and catalog
        SUBSCRIBEs), filtered by what each may view; the upper-platform side plugs into the
        same responder (``query_fallback`` / ``subscribe_fallback``, :meth:`CatalogResponder.
        answer_query`). The authorizer and identities are looked up when used, so the
        responder works whenever they are configured (until then it publishes nothing)."""
        assert self.signalling is not None and self.registrar is not None
        assert self.catalogs is not None and self.queries is not None
        sig, registrar, queries = self.signalling, self.registrar, self.queries
        dev = self.config.devices
        platform = self

        class _Visible:
            def visible(self, principal: Principal, channel_ids: Iterable[str]) -> list[str]:
                authorizer = getattr(platform, "authorizer", None)
                if authorizer is None:
                    return []
                return list(authorizer.visible(principal, channel_ids))

        def online(device_id: str) -> bool:
            st = registrar.get(device_id)
            return st is not None and st.registered and st.record.online

        def registered(device_id: str) -> bool:
            st = registrar.get(device_id)
            return st is not None and st.registered

        def link_of(device_id: str, source: Source) -> RegisteredLink:
            local = sig.transport.local_addr or ("127.0.0.1", 0)
            host = self.config.sip.advertised_host or local[0]
            st = registrar.get(device_id)
            transport = st.record.transport if st is not None else source.transport
            transport = transport if transport in ("TCP", "TLS") else "UDP"
            return RegisteredLink(sig, device_id, f"SIP/2.0/{transport} {host}:{local[1]};rport")

        async def principal_of(device_id: str, source: Source) -> Principal | None:
            identity = getattr(platform, "identity", None)
            if identity is None:
                return None
            conn = sig.transport.connection(source.conn_id) if source.conn_id else None
            cert = conn.peer_cert if conn is not None else None
            principal: Principal | None = await identity.for_sip_account(device_id, cert)
            return principal

        responder = self.catalog_responder = CatalogResponder(
            self.catalogs.trees,
            _Visible(),
            online,
            server_id=self.config.sip.id,
            items_per_message=dev.catalog_answer_items,
            items_per_message_stream=dev.catalog_answer_items_tcp,
            max_body=dev.catalog_answer_max_bytes,
            clock=self.clock,
        )
        responder.is_registered = registered
        responder.link_of = link_of
        responder.principal_of = principal_of
        responder.charset_of = queries.charsets.get
        previous = sig.manscdp_handlers.get(("Query", "Catalog"))
        if previous is not None:
            responder.query_fallback = previous
        sig.manscdp_handlers[("Query", "Catalog")] = responder.on_query
        if "SUBSCRIBE" in sig.methods:
            responder.subscribe_fallback = sig.methods["SUBSCRIBE"]
        sig.methods["SUBSCRIBE"] = responder.on_subscribe
        self.catalogs.listeners.append(responder.notify_change)

        def availability(event: StatusEvent) -> None:
            responder.device_availability(event.device_id, event.online, event.at)

        self._status_listeners.append(availability)

        async def sweeper() -> None:
            while True:
                await asyncio.sleep(SWEEP_INTERVAL)
                responder.sweep(self.clock())

        self._tasks.append(asyncio.create_task(sweeper(), name="catalog-subscribers"))

    async def _start_authz(self) -> None:
        """Identities (CA in ``[certs] ca_dir``), the authorizer over the catalog's channel
        facts, grants and access lists restored from storage, and the timer that expires
        control sessions and grants."""
        assert self.store is not None and self.catalogs is not None
        assert self.registrar is not None and self.audit is not None
        cfg, store, registrar = self.config, self.store, self.registrar
        self.identity = Identity(store, cfg.certs.ca_dir, clock=self.clock)
        az = cfg.authz
        policy = Policy(
            PolicyConfig(
                specific_area_threshold=az.specific_area_threshold,
                utc_offset=az.utc_offset,
                level1_views_unshared=az.level1_views_unshared,
                own_department_overrides_specific_area=az.own_department_overrides_specific_area,
                level3_control_excludes_specific_areas=az.level3_control_excludes_specific_areas,
                level3_extraction=az.level3_extraction,
                level4_extraction=az.level4_extraction,
                level4_views_own_department=az.level4_views_own_department,
                snapshot_is_extraction=az.snapshot_is_extraction,
            )
        )
        facts = self.channel_facts = CatalogFacts(
            self.catalogs.trees, lambda i: registrar.get(i) is not None
        )
        acl: dict[str, tuple[set[str], set[str]]] = {}
        for channel_id, relation, party in await store.load_channel_acl():
            entry = acl.setdefault(channel_id, (set(), set()))
            entry[0 if relation == "shared_with" else 1].add(party)
        for channel_id, (shared_with, controllable_by) in acl.items():
            facts.set_acl(channel_id, shared_with, controllable_by)
        grants = GrantBook(max_valid_for=az.max_grant_seconds)
        for body in await store.load_grants():
            try:
                grants.restore(grant_from_json(json.loads(body)))
            except (ValueError, GrantError) as exc:
                log.error("stored grant not restored: %s: %.200s", exc, body)
        authorizer = self.authorizer = Authorizer(
            policy,
            facts,
            audit=self.audit,
            grants=grants,
            arbiter=ControlArbiter(
                ArbiterConfig(
                    inactivity_timeout=az.control_inactivity,
                    max_control_period=az.max_control_period,
                )
            ),
            flags=frozenset(f.strip() for f in az.flags.split(",") if f.strip()),
            clock=self.clock,
            channels_of=facts.channels_of,
        )

        def grant_changed(grant: Grant) -> None:
            task = asyncio.create_task(save_grant(store, grant, self.clock()))
            task.add_done_callback(_log_failure)

        authorizer.on_grant_changed.append(grant_changed)
        authorizer.tick(self.clock())  # grants that expired while the platform was down

        async def ticker() -> None:
            while True:
                await asyncio.sleep(AUTHZ_TICK)
                authorizer.tick(self.clock())

        self._tasks.append(asyncio.create_task(ticker(), name="authz-timers"))

    async def _start_ids(self) -> None:
        """Central ID allocation; with ``refuse_unissued`` a guard on every REGISTER."""
        assert self.signalling is not None and self.store is not None
        cfg = self.config.ids
        ids = self.ids = IdRegistry(
            IdAllocator(cfg.ranges), self.store, refuse_unissued=cfg.refuse_unissued
        )
        if cfg.refuse_unissued:
            count = await ids.reload()
            log.info("registrations limited to the %d issued IDs", count)
            self.signalling.register_guards.append(ids.register_guard)
            self._tasks.append(asyncio.create_task(self._ids_reloader(), name="ids"))

    async def _ids_reloader(self) -> None:
        assert self.ids is not None
        while True:
            await asyncio.sleep(IDS_RELOAD_INTERVAL)
            try:
                await self.ids.reload()
            except Exception as exc:
                log.warning("issued IDs not reloaded: %s", exc)

    def _start_faults(self) -> None:
        """Faults from status events, keepalives, catalog changes and failed queries."""
        assert self.signalling is not None and self.store is not None
        assert self.catalogs is not None and self.queries is not None
        cfg = self.config
        if cfg.faults.webhook_url:
            self.webhook = Webhook(
                cfg.faults.webhook_url,
                queue=cfg.faults.webhook_queue,
                timeout=cfg.faults.webhook_timeout,
            )
            self.webhook.start()
        faults = self.faults = FaultService(
            self.store, self.metrics, sink=self.webhook, interval=cfg.storage.flush_interval
        )
        self._status_listeners.append(faults.status_event)
        self.signalling.on_keepalive.append(faults.keepalive)
        self.catalogs.listeners.append(faults.catalog_changes)
        self.queries.listeners.append(faults.query_result)
        faults.start()

    def _start_subscriptions(self) -> None:
        """Catalog SUBSCRIBE after the first sync; refused ones fall back to polling."""
        assert self.signalling is not None and self.catalogs is not None
        assert self.queries is not None
        sig, catalogs, queries = self.signalling, self.catalogs, self.queries
        subs = self.subscriptions = SubscriptionService(
            sig,
            clock=self.clock,
            expires=self.config.devices.subscribe_expires,
            charsets=queries.charsets,
        )
        sig.on_notify.append(subs.receive_notify)

        dev = self.config.devices

        def wanted(device_id: str, event: str) -> bool:
            current = subs.table.get(device_id, event)
            return current is None or current.state.value not in ("pending", "active")

        def subscribe_events(device_id: str) -> None:
            """Alarm and MobilePosition subscriptions (GB/T 28181-2016 §9.11), if configured."""
            if dev.alarm_subscribe and wanted(device_id, "presence"):
                sn = queries.correlator.allocate_sn(device_id, "Alarm")
                subs.subscribe(device_id, "presence", alarm_subscription(device_id, sn))
            if dev.position_interval > 0 and wanted(device_id, "MobilePosition"):
                sn = queries.correlator.allocate_sn(device_id, "MobilePosition")
                body = manscdp.MobilePositionQuery(
                    device_id=device_id, sn=sn, interval=dev.position_interval
                )
                subs.subscribe(device_id, "MobilePosition", body)

        def synced(device_id: str, result: object, now: float) -> None:
            if result is None:
                return
            subscribe_events(device_id)
            if not dev.catalog_subscribe or not wanted(device_id, "Catalog"):
                return
            sn = queries.correlator.allocate_sn(device_id, "Catalog")
            subs.subscribe(device_id, "Catalog", manscdp.CatalogQuery(device_id=device_id, sn=sn))

        def registered(device_id: str, now: float) -> None:
            subscribe_events(device_id)

        def refused(device_id: str, event: str, reason: str) -> None:
            # The device keeps working without it: alarms still come by MESSAGE.
            self.metrics.subscription_refused(event.lower())
            if event == "Catalog":
                catalogs.polled.add(device_id)

        def active(device_id: str, event: str) -> None:
            if event == "Catalog":
                catalogs.polled.discard(device_id)

        def status(event: StatusEvent) -> None:
            if not event.online:
                subs.device_offline(event.device_id)

        self._status_listeners.append(status)
        catalogs.sync_listeners.append(synced)
        if not dev.catalog_on_register:
            sig.on_registered.append(registered)
        subs.on_refused.append(refused)
        subs.on_active.append(active)
        self._tasks.append(asyncio.create_task(self._resubscriber(), name="subscriptions"))

    async def _resubscriber(self) -> None:
        assert self.subscriptions is not None
        while True:
            await asyncio.sleep(SWEEP_INTERVAL / 2)
            self.subscriptions.refresh_due(self.clock())

    async def _catalog_refresher(self) -> None:
        assert self.catalogs is not None and self.registrar is not None
        registrar = self.registrar

        def online(device_id: str) -> bool:
            st = registrar.get(device_id)
            return st is not None and st.registered and st.record.online

        dev = self.config.devices
        interval = min(
            i for i in (dev.catalog_refresh_interval, dev.catalog_poll_interval) if i > 0
        )
        while True:
            await asyncio.sleep(min(SWEEP_INTERVAL * 5, interval))
            for device_id in self.catalogs.due(online, self.clock()):
                self.catalogs.request_sync(device_id)

    def _tls_context(self) -> ssl.SSLContext | None:
        sip = self.config.sip
        if not sip.tls_port:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(sip.tls_cert, sip.tls_key)
        if sip.tls_client_ca:
            ctx.load_verify_locations(sip.tls_client_ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    async def _start_http(self) -> None:
        assert self.registrar is not None and self.store is not None
        assert self.catalogs is not None and self.queries is not None
        routes = device_routes(
            self.registrar,
            self.catalogs,
            self.queries,
            self.store,
            alarms=self.alarms,
            faults=self.faults,
            subscriptions=self.subscriptions,
            authorizer=self.authorizer,
        )
        if self.ids is not None:
            routes.extend(id_routes(self.ids, self.store, clock=self.clock))
        if self.calls is not None:
            routes.extend(call_routes(self.calls, self.authorizer))
        if self.playback is not None:
            routes.extend(
                playback_routes(self.playback, queries=self.queries, authorizer=self.authorizer)
            )
        if self.recordings is not None:
            routes.extend(recording_routes(self.recordings, self.authorizer))
        if self.uplinks is not None:
            routes.extend(uplink_routes(self.uplinks))
        assert self.authorizer is not None and self.identity is not None
        routes.extend(
            authz_routes(
                self.authorizer,
                self.store,
                catalogs=self.catalogs,
                facts=self.channel_facts,
                max_grant_seconds=self.config.authz.max_grant_seconds,
                flush_channels=(
                    self.channel_writer.flush if self.channel_writer is not None else None
                ),
            )
        )
        app = build_app(
            self.registrar,
            self.metrics,
            self.store,
            self._ready,
            routes,
            device_visible=self.authorizer.device_visible,
        )
        # Every /api/ call runs as a principal (bearer token or client certificate).
        secured = ApiAuthMiddleware(app, self.identity, audit=self.audit, clock=self.clock)
        http = self.config.http
        tls: dict[str, Any] = {}
        if http.tls_cert:
            tls = {"ssl_certfile": http.tls_cert, "ssl_keyfile": http.tls_key}
            if http.tls_client_ca:
                tls.update(ssl_ca_certs=http.tls_client_ca, ssl_cert_reqs=ssl.CERT_OPTIONAL)
        config = uvicorn.Config(
            secured,
            host=http.listen,
            port=http.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            **tls,
        )
        self.http = uvicorn.Server(config)
        self._tasks.append(asyncio.create_task(self.http.serve(), name="http"))
        while not self.http.started:
            if self._tasks[-1].done():
                self._tasks[-1].result()  # raises the bind error
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.01)

    async def _ready(self) -> bool:
        if self.store is None or self.signalling is None:
            return False
        try:
            await self.store.status_history("0", limit=1)
        except Exception:
            log.exception("readiness check: storage unreachable")
            return False
        return True

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            if self.registrar is not None:
                self.registrar.sweep(self.clock())

    async def stop(self) -> None:
        """Stop listeners, flush pending writes, close storage."""
        if self.http is not None:
            self.http.should_exit = True
        if self.uplinks is not None:
            await self.uplinks.stop()  # unregisters while the transport still runs
        if self.upper_requests is not None:
            await self.upper_requests.stop()
        for task in self._tasks:
            if task.get_name() != "http":
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.forwarding is not None:
            await self.forwarding.close()
        if self.inbound is not None:
            await self.inbound.close()
        if self.playback is not None:
            await self.playback.shutdown()
        if self.playback_worker is not None:
            self.playback_worker.stop()
        if self.recordings is not None:
            await self.recordings.stop()
        if self.calls is not None:
            await self.calls.close()
        if self.media is not None:
            self.media.stop()
        if self.catalog_responder is not None:
            await self.catalog_responder.stop()
        if self.catalogs is not None:
            await self.catalogs.stop()
        if self.alarms is not None:
            await self.alarms.stop()
        if self.subscriptions is not None:
            await self.subscriptions.stop()
        if self.positions is not None:
            await self.positions.stop()
        if self.faults is not None:
            await self.faults.stop()
        if self.webhook is not None:
            await self.webhook.stop()
        if self.queries is not None:
            self.queries.close()
        if self.signalling is not None:
            await self.signalling.transport.stop()
        if self.channel_writer is not None:
            await self.channel_writer.stop()
        if self.writer is not None:
            await self.writer.stop()
        if self.audit is not None:
            await self.audit.stop()
        if self.store is not None:
            await self.store.close()


def alarm_subscription(device_id: str, sn: int) -> manscdp.AlarmQuery:
    """The body of an alarm SUBSCRIBE: every priority (1-4) and every method (0 = all,
    GB/T 28181-2016 A.2.4.5)."""
    return manscdp.AlarmQuery(
        device_id=device_id,
        sn=sn,
        start_alarm_priority=1,
        end_alarm_priority=4,
        alarm_method="0",
    )


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background write failed: %s", task.exception())


class _StatusTap:
    """The registrar's sink, wrapped: writes go on to the write-behind, and status events
    (online/offline) are also told to ``listeners`` (faults, subscriptions)."""

    def __init__(self, inner: WriteBehind, listeners: list[Callable[[StatusEvent], None]]) -> None:
        self.inner = inner
        self.listeners = listeners

    def mark_dirty(self, record: DeviceRecord) -> None:
        self.inner.mark_dirty(record)

    def add_event(self, event: StatusEvent) -> None:
        self.inner.add_event(event)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("status listener failed device=%s", event.device_id)


async def _serve(config: Config) -> None:
    platform = Platform(config)
    await platform.start()
    # What exists after start-up (restored devices, modules, config) lives as
    # long as the process: move it out of the collector's way (GC_THRESHOLDS).
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await platform.stop()


def run(config: Config) -> None:
    """Run the server until SIGINT/SIGTERM, on uvloop where available."""
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        asyncio.run(_serve(config))
    else:
        uvloop.run(_serve(config))
