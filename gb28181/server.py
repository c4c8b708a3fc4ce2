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
import logging
import os
import signal
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn

from media.worker import RelayWorker, WorkerConfig

from . import __version__, manscdp
from .alarms import AlarmService
from .api import build_app
from .api_calls import call_routes
from .api_devices import device_routes
from .api_ids import id_routes
from .audit import AuditLog, load_key
from .calls import CallService
from .catalog_sync import CatalogService
from .channel_writer import ChannelWriter
from .config import Config
from .faults import FaultService
from .id_registry import IdRegistry
from .ids import IdAllocator
from .metrics import Metrics
from .positions import PositionService
from .queries import QueryService
from .registrar import Registrar, RegistrarConfig
from .signalling import Signalling
from .sip import DigestVerifier, NonceIssuer
from .store import DeviceRecord, StatusEvent, Store, WriteBehind, open_store, parse_store_url
from .subscriptions import SubscriptionService
from .webhook import Webhook

__all__ = ["Platform", "run"]

log = logging.getLogger(__name__)

#: Seconds between liveness sweeps (deadlines are exact; detection lags by at most this).
SWEEP_INTERVAL = 2.0
#: Seconds between reloads of the issued IDs (learns IDs issued by other nodes).
IDS_RELOAD_INTERVAL = 30.0
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
        await self._start_ids()
        self._start_calls()
        tls = self._tls_context()
        await self.signalling.transport.start(
            cfg.sip.listen, cfg.sip.port, tls_port=cfg.sip.tls_port, tls=tls
        )
        self._tasks.append(asyncio.create_task(self._sweeper(), name="liveness-sweep"))
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
            )
        )
        self.media.start()
        catalogs, registrar = self.catalogs, self.registrar

        def locate(channel_id: str) -> str | None:
            for device_id, tree in catalogs.trees.items():
                if channel_id in tree and channel_id != device_id:
                    return device_id
            # An IPC registers with its channel's ID, or the device itself is asked for.
            return channel_id if registrar.get(channel_id) is not None else None

        sip = self.config.sip
        self.calls = CallService(
            self.signalling,
            self.media,
            locate,
            server_id=sip.id,
            domain=sip.domain,
            media_host=media.advertised_host or sip.advertised_host,
            stream_mode=media.mode_of,
            invite_timeout=media.invite_timeout,
            idle_delay=media.idle_delay,
            clock=self.clock,
        )
        self.signalling.methods["BYE"] = self.calls.on_bye
        self.signalling.on_stray_response.append(self.calls.on_stray_response)
        self._tasks.append(asyncio.create_task(self.calls.run(), name="media-events"))

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
        )
        if self.ids is not None:
            routes.extend(id_routes(self.ids, self.store, clock=self.clock))
        if self.calls is not None:
            routes.extend(call_routes(self.calls))
        app = build_app(self.registrar, self.metrics, self.store, self._ready, routes)
        config = uvicorn.Config(
            app,
            host=self.config.http.listen,
            port=self.config.http.port,
            log_config=None,
            access_log=False,
            lifespan="off",
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
        for task in self._tasks:
            if task.get_name() != "http":
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.calls is not None:
            await self.calls.close()
        if self.media is not None:
            self.media.stop()
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
