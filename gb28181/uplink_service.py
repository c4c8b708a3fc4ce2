"""The asyncio side of registering to upper platforms: one task per ``[[upstream]]``.

Each task moves the requests of its sans-IO :class:`~gb28181.uplink.Uplink` through
:meth:`Signalling.send_request` (over UDP, or a TCP connection it opens and reopens) and feeds
the answers, or their absence, back; a wake-up event and the machine's next deadline pace it.
Stopping unregisters (``Expires: 0``) within a bounded wait.

The service also knows who the upper platforms are (:meth:`UplinkService.upper_of`: ID and
source address), what each may see (:meth:`~UplinkService.shares`: its ``share`` entries are
IDs or ID prefixes of a channel or of a group or organisation above it) and under which IDs
(:meth:`~UplinkService.publish` / :meth:`~UplinkService.resolve`: ``id_map``). It exposes
``gb28181_upstream_registered{upstream}``. What the upper platforms ask is answered by
:mod:`gb28181.upper_requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import Gauge

from . import manscdp
from .config import UpstreamConfig
from .metrics import Metrics
from .signalling import Signalling, SipRequestTimeout
from .sip import SipRequest, SipResponse
from .uplink import UNREGISTER, Uplink, UplinkState

__all__ = ["UplinkService", "UpperLink"]

log = logging.getLogger(__name__)


class UplinkService:
    """Runs one :class:`Uplink` per ``[[upstream]]``, and recognises the upper platforms.

    :param signalling: sends the requests (:meth:`Signalling.send_request`).
    :param metrics: where ``gb28181_upstream_registered{upstream}`` is registered.
    """

    def __init__(
        self,
        signalling: Signalling,
        configs: Iterable[UpstreamConfig],
        metrics: Metrics,
        *,
        server_id: str,
        local_host: str,
        user_agent: str = "gb28181-platform",
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.signalling = signalling
        self.clock = clock
        self.uplinks: dict[str, Uplink] = {}
        local = signalling.transport.local_addr or ("127.0.0.1", 0)
        for cfg in configs:
            up = Uplink(
                cfg,
                local_id=cfg.local_id or server_id,
                local_host=local_host,
                local_port=local[1],
                user_agent=user_agent,
                answer_timeout=cfg.register_timeout,
                rng=rng,
            )
            up.on_change.append(self._changed)
            self.uplinks[cfg.id] = up
        #: Told (uplink, registered?) on every change, after the metric (catalog re-push...).
        self.on_change: list[Callable[[Uplink, bool], None]] = []
        self._addresses: dict[str, set[str]] = {}
        self._conns: dict[str, int] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._sends: set[asyncio.Task[None]] = set()
        #: The groups/organisations a channel sits under (for ``share`` by group).
        self.ancestors: Callable[[str], Iterable[str]] = lambda channel_id: ()
        self._gauge = Gauge(
            "gb28181_upstream_registered",
            "1 while registered to the upper platform, else 0",
            ["upstream"],
            registry=metrics.registry,
        )
        for upper_id in self.uplinks:
            self._gauge.labels(upper_id).set(0)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Resolve the upper platforms' addresses and start registering."""
        loop = asyncio.get_running_loop()
        for upper_id, up in self.uplinks.items():
            addrs = {up.cfg.host}
            try:
                infos = await loop.getaddrinfo(up.cfg.host, up.cfg.port, type=socket.SOCK_DGRAM)
                addrs.update(str(info[4][0]) for info in infos)
            except OSError as exc:
                log.warning(
                    "upper platform %s: %s does not resolve: %s", upper_id, up.cfg.host, exc
                )
            self._addresses[upper_id] = addrs
            self._wake[upper_id] = asyncio.Event()
            self._tasks.append(loop.create_task(self._run(up), name=f"uplink-{upper_id}"))

    async def stop(self, timeout: float = 2.0) -> None:
        """Unregister from every upper platform (waiting at most ``timeout``), then stop."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        now = self.clock()
        waits = [self._exchange(up, req) for up in self.uplinks.values() for req in up.stop(now)]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), timeout)
        for task in list(self._sends):
            task.cancel()

    # -- recognising an upper platform ----------------------------------------------------

    def upper_of(self, sender_id: str, host: str) -> Uplink | None:
        """The uplink whose upper platform ``sender_id`` at ``host`` is, if any.

        An upper platform is not a registered device of ours; it is recognised by its ID
        together with the address it sends from (any of its host's addresses).
        """
        up = self.uplinks.get(sender_id)
        if up is None:
            return None
        if host not in self._addresses.get(sender_id, {up.cfg.host}):
            log.info("request from %s at %s, not the upper platform's address", sender_id, host)
            return None
        return up

    def share_of(self, upper_id: str) -> tuple[tuple[str, ...], Mapping[str, str]]:
        """What an upper platform may be shown: (shared channel/group IDs, ID mapping)."""
        up = self.uplinks[upper_id]
        return up.cfg.share, dict(up.cfg.id_map)

    # -- sending --------------------------------------------------------------------------

    async def send(self, upper_id: str, request: SipRequest) -> SipResponse:
        """Send ``request`` (e.g. from :meth:`Uplink.message`) to the upper platform.

        :raises SipRequestTimeout: no final response.
        :raises OSError: a TCP upper platform cannot be connected.
        """
        up = self.uplinks[upper_id]
        try:
            conn_id = await self._connection(up)
            response = await self.signalling.send_request(
                request, (up.cfg.host, up.cfg.port), conn_id=conn_id
            )
        except BaseException:
            up.on_no_answer(request, self.clock())
            raise
        up.on_response(request, response, self.clock())
        return response

    async def send_message(self, upper_id: str, message: manscdp.Message) -> SipResponse:
        """Send a MANSCDP message (a Response to its query, an alarm Notify) up."""
        return await self.send(upper_id, self.uplinks[upper_id].message(manscdp.encode(message)))

    async def _connection(self, up: Uplink) -> int | None:
        if up.transport != "TCP":
            return None
        transport = self.signalling.transport
        conn_id = self._conns.get(up.upper_id)
        if conn_id is not None and transport.connection(conn_id) is not None:
            return conn_id
        conn = await transport.connect((up.cfg.host, up.cfg.port))
        self._conns[up.upper_id] = conn.conn_id
        return conn.conn_id

    def _changed(self, up: Uplink, registered: bool) -> None:
        self._gauge.labels(up.upper_id).set(1 if registered else 0)
        for listener in self.on_change:
            try:
                listener(up, registered)
            except Exception:
                log.exception("uplink change listener failed upper=%s", up.upper_id)

    async def _run(self, up: Uplink) -> None:
        wake = self._wake[up.upper_id]
        while True:
            now = self.clock()
            for request in up.poll(now):
                self._spawn(up, request)
            deadline = up.next_deadline()
            delay = 1.0 if deadline is None else min(max(deadline - self.clock(), 0.0), 1.0)
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)

    def _spawn(self, up: Uplink, request: SipRequest) -> None:
        task = asyncio.get_running_loop().create_task(self._exchange(up, request))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _exchange(self, up: Uplink, request: SipRequest) -> None:
        follow: list[SipRequest]
        try:
            conn_id = await self._connection(up)
            response = await self.signalling.send_request(
                request, (up.cfg.host, up.cfg.port), conn_id=conn_id
            )
        except SipRequestTimeout:
            follow = up.on_no_answer(request, self.clock())
        except OSError as exc:
            log.info("upper platform %s unreachable: %s", up.upper_id, exc)
            follow = up.on_no_answer(request, self.clock())
        else:
            follow = up.on_response(request, response, self.clock())
        for nxt in follow:
            if up.state is UplinkState.STOPPED and up.kind_of(nxt) != UNREGISTER:
                continue
            if up.kind_of(nxt) == UNREGISTER:
                await self._exchange(up, nxt)
            else:
                self._spawn(up, nxt)
        wake = self._wake.get(up.upper_id)
        if wake is not None:
            wake.set()

    # -- what an upper platform may see -----------------------------------------------------

    def shares(self, upper_id: str, channel_id: str) -> bool:
        """Whether ``channel_id`` (our ID) is shared with ``upper_id``.

        A ``share`` entry is an ID or ID prefix of the channel itself or of a group or
        organisation it sits under (its ancestors, from :attr:`ancestors`): the same rule as
        the catalog the upper platform is shown (:mod:`gb28181.catalog_responder`).
        """
        up = self.uplinks.get(upper_id)
        if up is None or not up.cfg.share:
            return False
        entries = up.cfg.share
        if channel_id.startswith(entries):
            return True
        return any(a.startswith(entries) for a in self.ancestors(channel_id))

    def publish(self, upper_id: str, our_id: str) -> str:
        """The ID ``our_id`` is published as toward ``upper_id`` (``id_map``)."""
        up = self.uplinks.get(upper_id)
        if up is None:
            return our_id
        return dict(up.cfg.id_map).get(our_id, our_id)

    def resolve(self, upper_id: str, published_id: str) -> str:
        """Our ID for an ID the upper platform uses (the reverse of :meth:`publish`)."""
        up = self.uplinks.get(upper_id)
        if up is None:
            return published_id
        for ours, published in up.cfg.id_map:
            if published == published_id:
                return ours
        return published_id

    def describe(self) -> list[dict[str, Any]]:
        """The public view of every uplink (API, logs)."""
        return [
            {
                "id": up.upper_id,
                "host": up.cfg.host,
                "port": up.cfg.port,
                "transport": up.transport,
                "local_id": up.local_id,
                "state": up.state.value,
                "registered_until": up.registered_until or None,
                "registrations": up.stats.registrations,
                "failures": up.stats.failures,
                "last_error": up.stats.last_error or None,
            }
            for up in self.uplinks.values()
        ]


class UpperLink:
    """A :class:`~gb28181.catalog_responder.PeerLink` to an upper platform: requests built by
    its :class:`Uplink` and sent to its configured address (it is not registered with us)."""

    def __init__(self, service: UplinkService, up: Uplink) -> None:
        self.service = service
        self.up = up

    def new_request(
        self,
        method: str,
        *,
        content_type: str,
        body: bytes,
        headers: list[tuple[str, str]] | None = None,
    ) -> SipRequest:
        return self.up.request(method, body, content_type=content_type, headers=headers)

    async def send(self, request: SipRequest) -> SipResponse:
        return await self.service.send(self.up.upper_id, request)

    def via(self) -> str:
        return f"SIP/2.0/{self.up.transport} {self.up.local_host}:{self.up.local_port};rport"

    def contact(self) -> str:
        return self.up.contact
