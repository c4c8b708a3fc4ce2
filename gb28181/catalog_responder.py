"""Our catalog for other platforms: Catalog queries and catalog subscriptions from peers.

A lower platform registered to us, or an upper platform we registered to (cascade, notes §9),
asks for our catalog with a ``Query/Catalog`` MESSAGE and may SUBSCRIBE ``Event: Catalog`` to
its changes (notes §4.4, §5; GB/T 28181-2016 §9.5.2, §9.11; 2022 Appendix N). What it sees
(exactly the channels it may view, the organisations above them, our platform; effective
status; ID map) is :class:`~gb28181.catalog_view.CatalogView`'s business. The answer is
chunked: ``items_per_message`` items per MESSAGE (few over UDP, notes §9: WVP sends 1-8), fewer
when an encoded body would exceed ``max_body``; ``SumNum`` is the total, ``DeviceList Num`` the
chunk's count; at most ``window`` MESSAGEs await their 200 at once.

Subscriptions (RFC 6665 as GB/T 28181 uses it): the SUBSCRIBE is answered 200 with ``Expires``
(clamped to ``min_expires..max_expires``) and a dialog; a bodiless NOTIFY confirms it. Changes
of the catalog (:meth:`CatalogResponder.notify_change`, a
:data:`~gb28181.catalog_sync.CatalogListener`) and of device availability
(:meth:`CatalogResponder.device_availability`) become ``ADD``/``DEL``/``UPDATE``/``ON``/``OFF``
items for each subscriber, judged against what that subscriber was shown: a channel that
becomes visible is ``ADD`` (with its organisations), one that stops being visible ``DEL``.
A channel several trees list (a camera moved between NVRs) is published from one of them, the
channel index's winner (:meth:`CatalogView.carrier`): changes from the other trees are not the
channel's and are not sent; when the carrier changes (the new NVR reports it, or the carrier
drops it while another tree still lists it), the subscriber gets an ``UPDATE`` of the item as
now published.
A refresh in the dialog extends it, ``Expires: 0`` ends it (a final NOTIFY with
``Subscription-State: terminated``), and :meth:`CatalogResponder.sweep` ends expired ones.

API (for the cascade side and the server wiring):

- :class:`CatalogPeer` describes the asking peer: ``peer_id``, ``principal`` (``None``: it may
  view nothing), ``link`` (a :class:`PeerLink`: builds and sends requests to it), ``local_id``,
  ``id_map``, ``share`` (IDs or ID prefixes of channels or of their organisations; ``None``
  = no restriction beyond ``visible``), ``charset``.
- ``await responder.answer_query(peer, query) -> int`` sends the answer; returns items sent.
- ``responder.handle_subscribe(peer, request, now) -> SipResponse`` for a catalog SUBSCRIBE
  (initial, refresh or ``Expires: 0``).
- ``responder.set_principal(peer_id, principal)`` when a peer's Principal is resolved (or
  changes) after it subscribed.
- ``responder.notify_change(device_id, changes, now)`` and
  ``responder.device_availability(device_id, online, now)`` push changes; ``sweep(now)``.
- For registered lower platforms the responder is its own front: :meth:`on_query` is the
  ``("Query", "Catalog")`` MANSCDP handler and :meth:`on_subscribe` the ``SUBSCRIBE`` method
  handler; requests from senders that are not registered go to ``query_fallback`` /
  ``subscribe_fallback`` when set (the upper-platform side plugs in there), else 404. A
  SUBSCRIBE for another event package goes to ``subscribe_fallback`` too (else 489).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from authz import Principal

from . import manscdp
from .catalog import (
    CatalogChange,
    CatalogNode,
    CatalogTree,
    CatalogTrees,
    ChangeKind,
    ChannelStatus,
    NodeKind,
)
from .catalog_view import (
    ORG_KINDS,
    CatalogPeer,
    CatalogView,
    PeerLink,
    VisibilityFilter,
    chunk_items,
    reply_charset,
)
from .registrar import Source
from .sip import (
    Dialog,
    DialogId,
    SipError,
    SipRemoteError,
    SipRequest,
    SipResponse,
    make_response,
    new_tag,
    parse_event,
)

__all__ = [
    "CatalogPeer",
    "CatalogResponder",
    "CatalogSubscription",
    "PeerLink",
    "PrincipalResolver",
    "RegisteredLink",
    "VisibilityFilter",
    "chunk_items",
    "reply_charset",
]

log = logging.getLogger(__name__)

MANSCDP_CONTENT_TYPE = "Application/MANSCDP+xml"
_EVENT_OF_STATUS = {
    ChannelStatus.ON: "ON",
    ChannelStatus.OFF: "OFF",
    ChannelStatus.VLOST: "VLOST",
    ChannelStatus.DEFECT: "DEFECT",
}


class _Own:
    """Marker: a channel change judged as its own tree's (:meth:`CatalogResponder._route`)."""


_OWN = _Own()


PrincipalResolver = Callable[[str, Source], Awaitable[Principal | None]]
"""(registered account ID, where its request came from) -> its Principal, or None."""

QueryFallback = Callable[[SipRequest, "manscdp.Message", Source, float], SipResponse | None]
SubscribeFallback = Callable[[SipRequest, Source, float], SipResponse | None]


class _Sender(Protocol):
    """The part of :class:`~gb28181.signalling.Signalling` a :class:`RegisteredLink` uses."""

    def new_request(
        self,
        method: str,
        target_id: str,
        device_id: str,
        *,
        content_type: str | None = None,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> SipRequest: ...

    async def send_to_device(self, request: SipRequest, device_id: str) -> SipResponse: ...

    def contact(self) -> str: ...


class RegisteredLink:
    """A :class:`PeerLink` to a registered device or lower platform (its registered address
    and connection, as every request the platform sends it)."""

    def __init__(self, sender: _Sender, device_id: str, via: str) -> None:
        self.sender = sender
        self.device_id = device_id
        self._via = via

    def new_request(
        self,
        method: str,
        *,
        content_type: str,
        body: bytes,
        headers: list[tuple[str, str]] | None = None,
    ) -> SipRequest:
        return self.sender.new_request(
            method,
            self.device_id,
            self.device_id,
            content_type=content_type,
            body=body,
            headers=headers,
        )

    async def send(self, request: SipRequest) -> SipResponse:
        return await self.sender.send_to_device(request, self.device_id)

    def via(self) -> str:
        return self._via

    def contact(self) -> str:
        return self.sender.contact()


@dataclass(eq=False)
class CatalogSubscription:
    """One catalog subscription a peer holds at us."""

    peer: CatalogPeer
    dialog: Dialog
    event: str
    expires_at: float
    #: IDs (ours, unmapped) of the channels and organisations this subscriber was shown.
    published: set[str] = field(default_factory=set)
    #: Published channel ID -> the device it was published from: a change of carrier is
    #: told as an UPDATE, and a drop by a tree that was not the carrier is told as nothing.
    carriers: dict[str, str] = field(default_factory=dict)
    ready: bool = False
    pending: list[manscdp.CatalogItem] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    notifies: int = 0


class CatalogResponder:
    """Answers other platforms' catalog queries and subscriptions with what they may view.

    :param trees: the trees of every device and lower platform (``CatalogService.trees``, read
        live, with the channel index).
    :param authorizer: the listing filter (``visible``); ``None`` publishes nothing.
    :param online: whether a registered device or lower platform is online now.
    :param server_id: our SIP ID (``local_id`` of peers that set none).
    :param name: the Name of our platform's item.
    :param items_per_message: catalog items per MESSAGE/NOTIFY over UDP.
    :param items_per_message_stream: the same over TCP/TLS.
    :param max_body: bytes of one encoded body at most (UDP: keep under the path MTU budget).
    :param window: MESSAGEs awaiting their 200 at once while answering one query.
    """

    def __init__(
        self,
        trees: CatalogTrees,
        authorizer: VisibilityFilter | None,
        online: Callable[[str], bool],
        *,
        server_id: str,
        name: str = "",
        items_per_message: int = 10,
        items_per_message_stream: int = 50,
        max_body: int = 8000,
        window: int = 4,
        min_expires: int = 30,
        max_expires: int = 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if items_per_message < 1 or items_per_message_stream < 1:
            raise ValueError("items per message must be >= 1")
        if window < 1:
            raise ValueError("window must be >= 1")
        self.view = CatalogView(trees, authorizer, online, server_id=server_id, name=name)
        self.trees = trees
        self.server_id = server_id
        self.items_per_message = items_per_message
        self.items_per_message_stream = items_per_message_stream
        self.max_body = max_body
        self.window = window
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.clock = clock
        self.subscriptions: dict[DialogId, CatalogSubscription] = {}
        #: Requests from senders that are not registered devices (upper platforms).
        self.query_fallback: QueryFallback | None = None
        self.subscribe_fallback: SubscribeFallback | None = None
        #: Wired by the server for registered senders (see :meth:`on_query`).
        self.principal_of: PrincipalResolver | None = None
        self.link_of: Callable[[str, Source], PeerLink] | None = None
        self.is_registered: Callable[[str], bool] = lambda _id: False
        self.charset_of: Callable[[str], manscdp.Charset | None] = lambda _id: None
        self.answered = 0
        self._sn = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()

    def catalog_for(self, peer: CatalogPeer) -> list[manscdp.CatalogItem]:
        """The items of our catalog as ``peer`` sees them (:meth:`CatalogView.catalog_for`)."""
        return self.view.catalog_for(peer)

    # -- queries ------------------------------------------------------------------------------

    async def answer_query(self, peer: CatalogPeer, query: manscdp.Message) -> int:
        """Send ``peer`` our catalog as it may see it, in answer to its Catalog ``query``.

        :returns: the number of items (``SumNum``).
        :raises Exception: whatever building or sending raised (logged by the callers here).
        """
        items = self.catalog_for(peer)
        local = peer.local_id or self.server_id
        device_id = query.device_id or peer.id_map.get(local, local)
        total = len(items)

        def build(chunk: tuple[manscdp.CatalogItem, ...]) -> bytes:
            message = manscdp.CatalogResponse(
                sn=query.sn, device_id=device_id, sum_num=total, num=len(chunk), items=chunk
            )
            return manscdp.encode(message, peer.charset)

        bodies = chunk_items(items, build, self._per_message(peer), self.max_body)
        limit = asyncio.Semaphore(self.window)
        failures: list[str] = []

        async def send(body: bytes) -> None:
            async with limit:
                if failures:
                    return  # the peer is gone: do not send the rest
                request = peer.link.new_request(
                    "MESSAGE", content_type=MANSCDP_CONTENT_TYPE, body=body
                )
                try:
                    response = await peer.link.send(request)
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    return
                if response.status >= 300:
                    failures.append(f"{response.status} {response.reason}")

        # Chunks are started in order; with window 1 they are also answered in order.
        await asyncio.gather(*(send(b) for b in bodies))
        if failures:
            log.warning(
                "catalog answer to %s incomplete (SN %d, %d items in %d MESSAGEs): %s",
                peer.peer_id,
                query.sn,
                total,
                len(bodies),
                failures[0],
            )
        else:
            self.answered += 1
            log.info(
                "catalog answered peer=%s sn=%d items=%d messages=%d",
                peer.peer_id,
                query.sn,
                total,
                len(bodies),
            )
        return total

    def _per_message(self, peer: CatalogPeer) -> int:
        via = peer.link.via().upper()
        stream = "/TCP " in via or "/TLS " in via
        return self.items_per_message_stream if stream else self.items_per_message

    # -- front for registered lower platforms -----------------------------------------------

    def on_query(
        self, request: SipRequest, msg: manscdp.Message, source: Source, now: float
    ) -> SipResponse | None:
        """``("Query", "Catalog")`` MANSCDP handler: 200 at once, the answer follows."""
        sender = request.from_.uri.user or msg.device_id
        if not self.is_registered(sender):
            if self.query_fallback is not None:
                return self.query_fallback(request, msg, source, now)
            return make_response(request, 404, to_tag=new_tag())
        charset = reply_charset(request.body, msg.charset)
        self._spawn(
            self._answer_registered(sender, msg, source, charset), f"catalog-answer-{sender}"
        )
        return make_response(request, 200, to_tag=new_tag())

    async def _peer(
        self, sender: str, source: Source, charset: manscdp.Charset | None
    ) -> CatalogPeer:
        principal: Principal | None = None
        if self.principal_of is not None:
            try:
                principal = await self.principal_of(sender, source)
            except Exception as exc:
                # An unusable identity sees nothing; the reason is worth an operator's look.
                log.warning("catalog peer %s has no usable identity: %s", sender, exc)
        if principal is None:
            log.info("catalog peer %s has no certificate binding: it sees no channel", sender)
        assert self.link_of is not None
        return CatalogPeer(
            peer_id=sender,
            principal=principal,
            link=self.link_of(sender, source),
            charset=charset or self.charset_of(sender) or manscdp.Charset.GB2312,
        )

    async def _answer_registered(
        self, sender: str, msg: manscdp.Message, source: Source, charset: manscdp.Charset
    ) -> None:
        try:
            peer = await self._peer(sender, source, charset)
            await self.answer_query(peer, msg)
        except Exception:
            log.exception("catalog answer to %s failed", sender)

    def on_subscribe(self, request: SipRequest, source: Source, now: float) -> SipResponse | None:
        """``SUBSCRIBE`` method handler: catalog subscriptions of registered senders (and
        refreshes of any subscription we hold); the rest goes to ``subscribe_fallback``."""
        event, _ = parse_event(request.headers.get("Event") or "")
        is_catalog = event.lower() == "catalog"
        if is_catalog and request.to.tag:
            return self.handle_subscribe(None, request, now)
        sender = request.from_.uri.user or ""
        if is_catalog and self.is_registered(sender) and self.link_of is not None:
            peer = CatalogPeer(
                peer_id=sender,
                principal=None,  # resolved below, before anything is published
                link=self.link_of(sender, source),
                charset=reply_charset(request.body, self.charset_of(sender)),
            )
            response = self.handle_subscribe(peer, request, now, defer=True)
            sub = self._by_request(request)
            if sub is not None:
                self._spawn(self._resolve(sub, source), f"catalog-subscriber-{sender}")
            return response
        if self.subscribe_fallback is not None:
            return self.subscribe_fallback(request, source, now)
        if not is_catalog:
            return make_response(
                request, 489, to_tag=new_tag(), headers=[("Allow-Events", "Catalog")]
            )
        return make_response(request, 404, to_tag=new_tag())

    async def _resolve(self, sub: CatalogSubscription, source: Source) -> None:
        peer = await self._peer(sub.peer.peer_id, source, sub.peer.charset)
        sub.peer = dataclasses.replace(sub.peer, principal=peer.principal)
        self._start(sub)

    # -- subscriptions --------------------------------------------------------------------------

    def handle_subscribe(
        self, peer: CatalogPeer | None, request: SipRequest, now: float, *, defer: bool = False
    ) -> SipResponse:
        """Answer a catalog SUBSCRIBE from ``peer``: a new subscription, a refresh
        (in its dialog: ``peer`` may be None) or an unsubscription (``Expires: 0``).

        :param defer: the caller completes ``peer.principal`` later and then publishes
            (:meth:`on_subscribe`); otherwise the first NOTIFY is sent at once.
        """
        expires = self._expires(request)
        if request.to.tag:
            sub = self.subscriptions.get(
                DialogId(request.call_id, request.to.tag, request.from_.tag or "")
            )
            if sub is None:
                return make_response(request, 481)
            try:
                sub.dialog.receive_request(request)
            except SipRemoteError as exc:
                return make_response(request, exc.status_hint, str(exc)[:80])
            except SipError:
                return make_response(request, 481)
            if expires == 0:
                self._end(sub, "unsubscribed")
                return make_response(request, 200, headers=[("Expires", "0")])
            sub.expires_at = now + expires
            return make_response(request, 200, headers=[("Expires", str(expires))])
        if peer is None:
            return make_response(request, 481)
        if expires == 0:
            # A fetch (RFC 6665 §4.4.3) of a catalog: nothing to keep; answer it as a query.
            return make_response(request, 200, to_tag=new_tag(), headers=[("Expires", "0")])
        for old in [s for s in self.subscriptions.values() if s.peer.peer_id == peer.peer_id]:
            self._end(old, "replaced", notify=False)
        response = make_response(
            request,
            200,
            to_tag=new_tag(),
            headers=[("Expires", str(expires)), ("Contact", peer.link.contact())],
        )
        try:
            dialog = Dialog.as_uas(request, response, via=peer.link.via())
        except SipError as exc:
            return make_response(request, 400, str(exc)[:80], to_tag=new_tag())
        sub = CatalogSubscription(
            peer, dialog, request.headers.get("Event") or "Catalog", now + expires
        )
        self.subscriptions[dialog.id] = sub
        log.info("catalog subscription from %s expires=%d", peer.peer_id, expires)
        if not defer:
            self._start(sub)
        return response

    def _by_request(self, request: SipRequest) -> CatalogSubscription | None:
        for sub in self.subscriptions.values():
            if sub.dialog.call_id == request.call_id:
                return sub
        return None

    def _expires(self, request: SipRequest) -> int:
        raw = (request.headers.get("Expires") or "").strip()
        try:
            value = int(raw) if raw else 3600
        except ValueError:
            value = 3600
        if value <= 0:
            return 0
        return max(self.min_expires, min(self.max_expires, value))

    def _start(self, sub: CatalogSubscription) -> None:
        """Record what the subscriber may see now and confirm with a bodiless NOTIFY."""
        if self.subscriptions.get(sub.dialog.id) is not sub:
            return
        sub.published, sub.carriers = self._published(sub.peer)
        sub.ready = True
        self._send_notify(sub, b"")

    def set_principal(self, peer_id: str, principal: Principal | None) -> int:
        """A peer's Principal became known or changed (its certificate binding was resolved
        after it subscribed, or changed): what its subscriptions were shown is recomputed
        (silently: the peer queries the catalog to catch up). Returns how many changed."""
        changed = 0
        for sub in self.subscriptions.values():
            if sub.peer.peer_id != peer_id or sub.peer.principal == principal:
                continue
            sub.peer = dataclasses.replace(sub.peer, principal=principal)
            if sub.ready:
                sub.published, sub.carriers = self._published(sub.peer)
            changed += 1
        return changed

    def _published(self, peer: CatalogPeer) -> tuple[set[str], dict[str, str]]:
        """What ``peer`` sees now: the published IDs, and each channel's carrier."""
        published: set[str] = set()
        carriers: dict[str, str] = {}
        for device_id, node in self.view.visible_channels(peer):
            published.add(node.channel_id)
            carriers[node.channel_id] = device_id
            for org in self.view.orgs_above(self.trees[device_id], node):
                published.add(org.channel_id)
        return published, carriers

    def sweep(self, now: float) -> int:
        """End expired subscriptions (a final NOTIFY, reason timeout); their number."""
        expired = [s for s in self.subscriptions.values() if s.expires_at <= now]
        for sub in expired:
            self._end(sub, "timeout")
        return len(expired)

    def _end(self, sub: CatalogSubscription, reason: str, *, notify: bool = True) -> None:
        if self.subscriptions.pop(sub.dialog.id, None) is None:
            return
        sub.pending.clear()
        log.info("catalog subscription of %s ended: %s", sub.peer.peer_id, reason)
        if notify:
            state = f"terminated;reason={'timeout' if reason == 'timeout' else 'noresource'}"
            if reason == "unsubscribed":
                state = "terminated"
            self._spawn(self._notify(sub, b"", state), f"catalog-notify-end-{sub.peer.peer_id}")
        else:
            sub.dialog.terminate()

    # -- changes ------------------------------------------------------------------------------

    def notify_change(self, device_id: str, changes: list[CatalogChange], now: float) -> None:
        """A :data:`~gb28181.catalog_sync.CatalogListener`: tell subscribers what changed."""
        if not self.subscriptions or not changes:
            return
        tree = self.trees.get(device_id)
        if tree is None:
            return
        for sub in list(self.subscriptions.values()):
            if not sub.ready or sub.peer.peer_id == device_id:
                continue
            items = self._events_for(sub, tree, changes)
            if items:
                sub.pending.extend(items)
                self._kick(sub)

    def device_availability(self, device_id: str, online: bool, now: float) -> None:
        """A device or lower platform went offline (its published channels are ``OFF``) or
        came back (their last reported status)."""
        tree = self.trees.get(device_id)
        if tree is None or not self.subscriptions:
            return
        for sub in list(self.subscriptions.values()):
            if not sub.ready or sub.peer.peer_id == device_id:
                continue
            mapped = sub.peer.id_map
            items = []
            for node in tree:
                if node.kind is NodeKind.CHANNEL and node.channel_id in sub.published:
                    if not self._carries(sub.peer, device_id, node.channel_id):
                        continue  # published from another device: its status is that one's
                    status = node.status if online else ChannelStatus.OFF
                    event = _EVENT_OF_STATUS.get(status)
                    if event is not None:
                        cid = mapped.get(node.channel_id, node.channel_id)
                        items.append(manscdp.CatalogItem(device_id=cid, event=event))
            if items:
                sub.pending.extend(items)
                self._kick(sub)

    def _events_for(
        self, sub: CatalogSubscription, tree: CatalogTree, changes: list[CatalogChange]
    ) -> list[manscdp.CatalogItem]:
        peer = sub.peer
        mapped = peer.id_map
        out: list[manscdp.CatalogItem] = []
        judged: list[tuple[CatalogChange, CatalogNode]] = []
        #: Channels whose carrier is another tree than the subscriber was shown: re-judged
        #: as that tree publishes them (grouped by carrier for one visibility call each).
        moved: dict[str, dict[str, CatalogNode]] = {}
        for change in changes:
            node = change.node
            if node is None or change.kind is ChangeKind.IGNORED:
                continue
            if node.kind is NodeKind.CHANNEL:
                route = self._route(sub, tree.device_id, change)
                if route is None:
                    continue
                if not isinstance(route, _Own):
                    carrier, carried = route
                    moved.setdefault(carrier, {})[change.channel_id] = carried
                    continue
            if change.kind is ChangeKind.REMOVED:
                if change.channel_id in sub.published:
                    sub.published.discard(change.channel_id)
                    sub.carriers.pop(change.channel_id, None)
                    cid = mapped.get(change.channel_id, change.channel_id)
                    out.append(manscdp.CatalogItem(device_id=cid, event="DEL"))
                continue
            if node.kind is NodeKind.CHANNEL:
                judged.append((change, node))
            elif (
                node.kind in ORG_KINDS
                and change.channel_id in sub.published
                and change.kind is ChangeKind.UPDATED
            ):
                out.append(dataclasses.replace(self.view.item(peer, tree, node), event="UPDATE"))
        if judged:
            out.extend(self._judge(sub, tree, judged))
        for carrier, nodes in moved.items():
            out.extend(self._carried_by(sub, self.trees[carrier], list(nodes.values())))
        return out

    def _route(
        self, sub: CatalogSubscription, device_id: str, change: CatalogChange
    ) -> tuple[str, CatalogNode] | _Own | None:
        """Whose change a channel change of ``device_id``'s tree is, for this subscriber.

        :returns: :data:`_OWN` when the tree carries the channel as the subscriber was shown
            it (or no other tree holds it): judged as before; ``(carrier, node)`` when the
            channel is now published from another tree than the subscriber was shown (or the
            carrier dropped it and another tree holds it); ``None`` for a change of a tree
            that does not carry the channel (the subscriber is not told).
        """
        channel_id = change.channel_id
        carrier = self.view.carrier(channel_id, sub.peer)
        if carrier is None:
            return _OWN  # no other tree lists it: a DEL (or a batch that added and removed it)
        shown = sub.carriers.get(channel_id)
        published = channel_id in sub.published
        if carrier == device_id and (not published or shown in (None, device_id)):
            return _OWN
        carried = self._node_of(carrier, channel_id)
        if carried is not None and (
            (published and shown != carrier)
            or (not published and change.kind is ChangeKind.REMOVED)
        ):
            return carrier, carried
        log.debug(
            "catalog change %s of %s from %s not sent to %s: the channel is published from %s",
            change.kind.value,
            channel_id,
            device_id,
            sub.peer.peer_id,
            carrier,
        )
        return None

    def _node_of(self, device_id: str, channel_id: str) -> CatalogNode | None:
        tree = self.trees.get(device_id)
        node = tree.get(channel_id) if tree is not None else None
        if node is None:
            log.warning(
                "catalog index names %s as carrier of %s but its tree lacks it",
                device_id,
                channel_id,
            )
        return node

    def _carries(self, peer: CatalogPeer, device_id: str, channel_id: str) -> bool:
        """Whether ``channel_id`` is published to ``peer`` from ``device_id``'s tree."""
        carrier = self.view.carrier(channel_id, peer)
        if carrier is None or carrier == device_id:
            return True
        log.debug(
            "catalog status of %s from %s not sent to %s: the channel is published from %s",
            channel_id,
            device_id,
            peer.peer_id,
            carrier,
        )
        return False

    def _judge(
        self,
        sub: CatalogSubscription,
        tree: CatalogTree,
        judged: list[tuple[CatalogChange, CatalogNode]],
    ) -> list[manscdp.CatalogItem]:
        """Events for channel changes of the tree that carries them (visibility judged)."""
        peer = sub.peer
        mapped = peer.id_map
        out: list[manscdp.CatalogItem] = []
        visible = self.view.visible_now(peer, tree, [n for _, n in judged])
        for change, node in judged:
            cid = node.channel_id
            was = cid in sub.published
            now_visible = cid in visible
            if now_visible and not was:
                out.extend(self._add_orgs(sub, tree, node))
                sub.published.add(cid)
                sub.carriers[cid] = tree.device_id
                out.append(dataclasses.replace(self.view.item(peer, tree, node), event="ADD"))
            elif was and not now_visible:
                sub.published.discard(cid)
                sub.carriers.pop(cid, None)
                out.append(manscdp.CatalogItem(device_id=mapped.get(cid, cid), event="DEL"))
            elif was and change.kind is ChangeKind.STATUS:
                event = _EVENT_OF_STATUS.get(self.view.effective(tree, node))
                if event is not None:
                    out.append(manscdp.CatalogItem(device_id=mapped.get(cid, cid), event=event))
            elif was and change.kind in (ChangeKind.ADDED, ChangeKind.UPDATED):
                out.append(dataclasses.replace(self.view.item(peer, tree, node), event="UPDATE"))
        return out

    def _carried_by(
        self, sub: CatalogSubscription, tree: CatalogTree, nodes: list[CatalogNode]
    ) -> list[manscdp.CatalogItem]:
        """Events for channels now published from ``tree`` (their carrier changed): the item
        as now published, ``UPDATE`` if the subscriber had it (``ADD`` if not), after the
        organisations above it it lacks; ``DEL`` if it may not view it from there."""
        peer = sub.peer
        out: list[manscdp.CatalogItem] = []
        visible = self.view.visible_now(peer, tree, nodes)
        for node in nodes:
            cid = node.channel_id
            was = cid in sub.published
            if cid in visible:
                out.extend(self._add_orgs(sub, tree, node))
                sub.published.add(cid)
                sub.carriers[cid] = tree.device_id
                event = "UPDATE" if was else "ADD"
                out.append(dataclasses.replace(self.view.item(peer, tree, node), event=event))
            elif was:
                sub.published.discard(cid)
                sub.carriers.pop(cid, None)
                out.append(manscdp.CatalogItem(device_id=peer.id_map.get(cid, cid), event="DEL"))
        return out

    def _add_orgs(
        self, sub: CatalogSubscription, tree: CatalogTree, node: CatalogNode
    ) -> list[manscdp.CatalogItem]:
        """``ADD`` of the organisations above ``node`` the subscriber was not shown yet."""
        out: list[manscdp.CatalogItem] = []
        for org in self.view.orgs_above(tree, node):
            if org.channel_id not in sub.published:
                sub.published.add(org.channel_id)
                out.append(dataclasses.replace(self.view.item(sub.peer, tree, org), event="ADD"))
        return out

    # -- sending NOTIFYs ----------------------------------------------------------------------

    def _kick(self, sub: CatalogSubscription) -> None:
        if sub.task is None or sub.task.done():
            sub.task = self._spawn(self._drain(sub), f"catalog-notify-{sub.peer.peer_id}")

    async def _drain(self, sub: CatalogSubscription) -> None:
        per = self._per_message(sub.peer)
        local = sub.peer.local_id or self.server_id
        device_id = sub.peer.id_map.get(local, local)
        while sub.pending and self.subscriptions.get(sub.dialog.id) is sub:
            items, sub.pending = sub.pending, []

            def build(chunk: tuple[manscdp.CatalogItem, ...]) -> bytes:
                message = manscdp.CatalogResponse(
                    root=manscdp.Root.NOTIFY,
                    sn=next(self._sn),
                    device_id=device_id,
                    sum_num=len(chunk),
                    num=len(chunk),
                    items=chunk,
                )
                return manscdp.encode(message, sub.peer.charset)

            for body in chunk_items(items, build, per, self.max_body):
                if not await self._notify(sub, body, self._state(sub)):
                    return

    def _state(self, sub: CatalogSubscription) -> str:
        left = max(0, round(sub.expires_at - self.clock()))
        return f"active;expires={left}"

    def _send_notify(self, sub: CatalogSubscription, body: bytes) -> None:
        self._spawn(self._notify(sub, body, self._state(sub)), f"catalog-notify-{sub.peer.peer_id}")

    async def _notify(self, sub: CatalogSubscription, body: bytes, state: str) -> bool:
        """Send one NOTIFY in the subscription's dialog; False (and the subscription ended)
        when the subscriber does not take it."""
        headers = [("Event", sub.event), ("Subscription-State", state)]
        if body:
            headers.append(("Content-Type", MANSCDP_CONTENT_TYPE))
        try:
            request = sub.dialog.create_request("NOTIFY", headers=headers, body=body)
            response = await sub.peer.link.send(request)
        except Exception as exc:
            log.info("catalog NOTIFY to %s not delivered: %s", sub.peer.peer_id, exc)
            self._end(sub, "no answer", notify=False)
            return False
        sub.notifies += 1
        if response.status >= 300:
            log.info("catalog NOTIFY to %s answered %d", sub.peer.peer_id, response.status)
            if response.status in (481, 404, 403, 489):
                self._end(sub, f"refused {response.status}", notify=False)
                return False
        if state.startswith("terminated"):
            sub.dialog.terminate()
        return True

    # -- shutdown -----------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        """Cancel answers and NOTIFYs in flight."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("catalog responder task failed during shutdown")
