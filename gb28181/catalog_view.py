"""What another platform sees of our catalog (sans-IO): the items, chunks and charset.

A peer (a lower platform registered to us, or an upper platform we registered to; notes §9)
sees exactly the channels it may view (第十五、十六条: ``VisibilityFilter.visible`` with its
Principal), never its own channels (they came from it), and the nodes needed to place them:

1. our platform (``local_id``: our ID toward that peer, type 200, ``Parental`` 1);
2. the regions, business groups (215) and virtual organisations (216) above a published channel
   in the tree of the device or lower platform that carries it, parents before children;
3. the channels: ``ParentID`` is their nearest published organisation, or our platform (an
   NVR's channel has no organisation to show; a peer treats our own ID as root, WVP #21).
   ``Status`` is the effective one: ``OFF`` while the device or lower platform carrying the
   channel is offline, whatever it reported last. ``Password`` is never published.

Every ID goes through the peer's optional ID map (ours -> published). Bodies are chunked by
:func:`chunk_items` (a count per MESSAGE, fewer when a body would be too large) and encoded in
the charset :func:`reply_charset` picks. :mod:`gb28181.catalog_responder` does the sending.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from authz import Principal

from . import manscdp
from .catalog import CatalogNode, CatalogTree, CatalogTrees, ChannelStatus, NodeKind
from .sip import SipRequest, SipResponse

__all__ = [
    "MAX_DEPTH",
    "ORG_KINDS",
    "CatalogPeer",
    "CatalogView",
    "PeerLink",
    "VisibilityFilter",
    "chunk_items",
    "reply_charset",
]

ORG_KINDS = frozenset({NodeKind.REGION, NodeKind.BUSINESS_GROUP, NodeKind.VIRTUAL_ORG})
#: Ancestors followed above a node (a cycle or an absurd depth in a peer's tree stops here).
MAX_DEPTH = 32


class VisibilityFilter(Protocol):
    """What the responder needs from :class:`gb28181.authorizer.Authorizer`."""

    def visible(self, principal: Principal, channel_ids: Iterable[str]) -> list[str]: ...


class PeerLink(Protocol):
    """How to reach the peer: builds out-of-dialog requests to it and sends requests."""

    def new_request(
        self,
        method: str,
        *,
        content_type: str,
        body: bytes,
        headers: list[tuple[str, str]] | None = None,
    ) -> SipRequest: ...

    async def send(self, request: SipRequest) -> SipResponse: ...

    def via(self) -> str:
        """Via template for our requests in a dialog with it (``SIP/2.0/UDP host:port;rport``)."""
        ...

    def contact(self) -> str: ...


@dataclass(frozen=True, slots=True)
class CatalogPeer:
    """The platform asking for our catalog, and how it is to see it."""

    peer_id: str
    principal: Principal | None
    link: PeerLink
    #: Our ID toward this peer ("" = the platform's own ID).
    local_id: str = ""
    #: Ours -> published IDs (channels, organisations, our platform).
    id_map: Mapping[str, str] = field(default_factory=dict)
    #: IDs or ID prefixes of shared channels or of organisations above them; None = all.
    share: tuple[str, ...] | None = None
    charset: manscdp.Charset = manscdp.Charset.GB2312


_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9_.:-]+)["']""")


def reply_charset(body: bytes, detected: manscdp.Charset | None) -> manscdp.Charset:
    """The charset to answer a peer in: what its body was found to be in, except that a pure
    ASCII body (which decodes as anything) is taken at its declaration, GB2312 by default
    (GB/T 28181-2016 §6.10), and a GB body is answered in GB2312 (escalated to GB18030 only
    for characters GB2312 lacks, :func:`manscdp.encode_document`)."""
    if body.isascii():
        match = _DECLARED.match(body)
        if match is not None:
            try:
                return manscdp.parse_charset(match.group(1).decode("ascii"))
            except manscdp.ManscdpError:
                pass  # an unknown declaration: the default below
        return manscdp.Charset.GB2312
    if detected is None or detected in (manscdp.Charset.GB18030, manscdp.Charset.GBK):
        return manscdp.Charset.GB2312
    return detected


def chunk_items(
    items: Sequence[manscdp.CatalogItem],
    build: Callable[[tuple[manscdp.CatalogItem, ...]], bytes],
    per_message: int,
    max_body: int,
) -> list[bytes]:
    """Encoded bodies of ``items`` in order, ``per_message`` at most per body, fewer where a
    body would exceed ``max_body`` bytes (a single item is sent whatever its size)."""
    bodies: list[bytes] = []
    start = 0
    while start < len(items):
        count = min(per_message, len(items) - start)
        while True:
            body = build(tuple(items[start : start + count]))
            if len(body) <= max_body or count == 1:
                break
            count = max(1, count // 2)
        bodies.append(body)
        start += count
    return bodies


class CatalogView:
    """Our catalog as each peer may see it.

    :param trees: the trees of every device and lower platform (``CatalogService.trees``,
        read live); its channel index says which tree a channel listed twice is published from.
    :param authorizer: the listing filter (``visible``); ``None`` publishes nothing.
    :param online: whether a registered device or lower platform is online now.
    :param server_id: our SIP ID (``local_id`` of peers that set none).
    :param name: the Name of our platform's item.
    """

    def __init__(
        self,
        trees: CatalogTrees,
        authorizer: VisibilityFilter | None,
        online: Callable[[str], bool],
        *,
        server_id: str,
        name: str = "",
    ) -> None:
        self.trees = trees
        self.authorizer = authorizer
        self.online = online
        self.server_id = server_id
        self.name = name or "GB28181 platform"

    def catalog_for(self, peer: CatalogPeer) -> list[manscdp.CatalogItem]:
        """The items of our catalog as ``peer`` sees them: platform, organisations, channels."""
        channels = self.visible_channels(peer)
        items = [self.platform_item(peer)]
        published: set[str] = set()
        orgs: list[tuple[str, CatalogNode]] = []
        for device_id, node in channels:
            for org in self.orgs_above(self.trees[device_id], node):
                if org.channel_id not in published:
                    published.add(org.channel_id)
                    orgs.append((device_id, org))
        # Parents before children: an organisation's ancestors were listed before it by the
        # walk (outermost first), so keeping first-seen order is enough.
        for device_id, org in orgs:
            items.append(self.item(peer, self.trees[device_id], org))
        for device_id, node in channels:
            items.append(self.item(peer, self.trees[device_id], node))
        return items

    def visible_channels(self, peer: CatalogPeer) -> list[tuple[str, CatalogNode]]:
        """``(device_id, node)`` of every channel ``peer`` may view (and is shared with it),
        except those of its own tree; nothing without a principal or an authorizer.

        A channel several trees list is published once, from :meth:`carrier`'s tree."""
        candidates: dict[str, tuple[str, CatalogNode]] = {}
        for device_id, tree in self.trees.items():
            if device_id == peer.peer_id:
                continue  # its own channels came from it
            for node in tree:
                if (
                    node.kind is NodeKind.CHANNEL
                    and self.carrier(node.channel_id, peer) == device_id
                    and (peer.share is None or self.shared(peer.share, tree, node))
                ):
                    candidates[node.channel_id] = (device_id, node)
        if peer.principal is None or self.authorizer is None or not candidates:
            return []
        allowed = self.authorizer.visible(peer.principal, sorted(candidates))
        return [candidates[i] for i in allowed]

    def carrier(self, channel_id: str, peer: CatalogPeer) -> str | None:
        """The device ``channel_id`` is published from to ``peer``: the catalog index's most
        recent reporter, skipping the peer itself (what it lists came from it, but another
        device listing the channel too still publishes it)."""
        device_id = self.trees.device_of(channel_id)
        if device_id != peer.peer_id:
            return device_id
        return next((d for d in self.trees.devices_of(channel_id) if d != peer.peer_id), None)

    def shared(self, share: tuple[str, ...], tree: CatalogTree, node: CatalogNode) -> bool:
        """Whether the node's ID or an ancestor's starts with one of ``share`` (IDs or
        prefixes of channels, groups or organisations)."""
        if node.channel_id.startswith(share):
            return True
        return any(a.channel_id.startswith(share) for a in self.ancestors(tree, node))

    def ancestors(self, tree: CatalogTree, node: CatalogNode) -> list[CatalogNode]:
        """Known ancestors, nearest first (first known parent at each step)."""
        out: list[CatalogNode] = []
        seen = {node.channel_id}
        current = node
        for _ in range(MAX_DEPTH):
            parent = next(
                (p for p in (tree.get(i) for i in current.parent_ids) if p is not None), None
            )
            if parent is None or parent.channel_id in seen:
                break
            seen.add(parent.channel_id)
            out.append(parent)
            current = parent
        return out

    def orgs_above(self, tree: CatalogTree, node: CatalogNode) -> list[CatalogNode]:
        """Organisations (regions, groups, virtual orgs) above ``node``, outermost first."""
        return [a for a in reversed(self.ancestors(tree, node)) if a.kind in ORG_KINDS]

    def platform_item(self, peer: CatalogPeer) -> manscdp.CatalogItem:
        local = peer.local_id or self.server_id
        return manscdp.CatalogItem(
            device_id=peer.id_map.get(local, local),
            name=self.name,
            manufacturer="gb28181-platform",
            model="platform",
            owner="0",
            civil_code=local[:6],
            address="",
            parental=1,
            register_way=1,
            secrecy=0,
            status="ON",
        )

    def item(self, peer: CatalogPeer, tree: CatalogTree, node: CatalogNode) -> manscdp.CatalogItem:
        """The item ``peer`` is sent for ``node``: mapped IDs, ParentID its nearest published
        organisation (else our platform), effective status, no password, no Event."""
        mapped = peer.id_map
        local = peer.local_id or self.server_id
        orgs = [a for a in self.ancestors(tree, node) if a.kind in ORG_KINDS]
        parent = orgs[0].channel_id if orgs else local
        item = node.item
        group = item.group_id
        info = item.info
        if info is not None and info.business_group_id:
            info = dataclasses.replace(
                info, business_group_id=mapped.get(info.business_group_id, info.business_group_id)
            )
        status: str | None = None
        if node.kind is NodeKind.CHANNEL:
            status = self.effective(tree, node).value
            if status == ChannelStatus.UNKNOWN.value:
                status = "ON" if self.online(tree.device_id) else "OFF"
        return dataclasses.replace(
            item,
            device_id=mapped.get(node.channel_id, node.channel_id),
            parent_id=mapped.get(parent, parent),
            business_group_id=mapped.get(group, group)
            if item.business_group_id and group
            else None,
            info=info,
            status=status if status is not None else item.status,
            password=None,
            event=None,
        )

    def effective(self, tree: CatalogTree, node: CatalogNode) -> ChannelStatus:
        """OFF while the device carrying the node is offline, else what it reported."""
        return node.status if self.online(tree.device_id) else ChannelStatus.OFF

    def visible_now(
        self, peer: CatalogPeer, tree: CatalogTree, nodes: list[CatalogNode]
    ) -> set[str]:
        """Which of ``nodes`` (still in ``tree``) ``peer`` may view now."""
        if peer.principal is None or self.authorizer is None:
            return set()
        ids = [
            n.channel_id
            for n in nodes
            if tree.get(n.channel_id) is n
            and (peer.share is None or self.shared(peer.share, tree, n))
        ]
        return set(self.authorizer.visible(peer.principal, ids)) if ids else set()
