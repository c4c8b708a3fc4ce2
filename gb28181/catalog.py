"""The device tree of one registered device or lower platform (sans-IO).

A Catalog answer (GB/T 28181-2016 §9.5.2 / A.2.4.3, notes §4.4) is a flat list of items; the tree
comes from the IDs and ``ParentID``:

- ID of 8 digits or fewer: an administrative region (civil code: province 2, city 4, county 6,
  grassroots unit 8 digits);
- type code (digits 11-13 of the 20-digit ID, Annex D) ``215``: business group, the root of a
  virtual tree; ``216``: virtual organisation (its ``ParentID`` is the parent organisation, its
  ``BusinessGroupID`` the group; 2022 stopped pointing ParentID at the group);
- ``111``-``130``: front-end devices (DVR, NVR...); ``200``-``214``: platform components;
- anything else: a channel (camera 131/132, alarm input 134, ...).

``ParentID`` may hold several IDs separated by ``/``. A ParentID equal to the device itself or to
our own server ID (Hikvision does that, WVP #21) means "root". A node with no ParentID at all is
placed by its BusinessGroupID, CivilCode or enclosing region (:func:`node_parents`): lower
platforms often list channels only by region, and 2022 virtual organisations only by group.

Two inputs change the tree: a full sync (:meth:`CatalogTree.apply_catalog`, from a completed
Catalog query) and change notifications (:meth:`CatalogTree.apply_event`, from a Catalog NOTIFY
or MESSAGE, notes §5: ``ON, OFF, VLOST, DEFECT`` carry only DeviceID + Event, ``ADD, UPDATE``
carry full fields, ``DEL`` only the ID). Each returns :class:`CatalogChange` values, which the
caller persists (store ``upsert_channels`` / ``delete_channels``) and later feeds to fault
recording. A full sync also reports which known nodes the new list lacks; it does not delete
them, since a timed-out (partial) sync would otherwise wipe channels.

Which device carries a channel is answered by :class:`CatalogTrees`, the mapping of all trees:
each tree reports the nodes it gains and loses to the mapping's :class:`ChannelIndex`, so the
answer is one dict lookup and cannot go stale (there is no other path that adds or removes a
node). A channel listed by two devices (a camera moved between NVRs, the old one not yet
re-synced) belongs to the device that reported it most recently.

Platform-side attributes (``security_class``, ``owner_department``, ``shared``) are set by
operators, never sent by devices, and never overwritten by a sync.

Cost matters: a lower platform may list 100,000 channels, so the per-item path is a handful of
dict operations and one dataclass comparison.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .manscdp import CatalogInfo, CatalogItem
from .store import ChannelRecord

__all__ = [
    "CatalogChange",
    "CatalogNode",
    "CatalogSync",
    "CatalogTree",
    "CatalogTrees",
    "ChangeKind",
    "ChannelIndex",
    "ChannelStatus",
    "NodeKind",
    "channel_record",
    "classify",
    "item_from_record",
    "node_parents",
    "normalise_status",
    "split_parent_ids",
]


class NodeKind(StrEnum):
    """What a catalog node is, from its ID (notes §4.4)."""

    REGION = "region"
    BUSINESS_GROUP = "business_group"
    VIRTUAL_ORG = "virtual_org"
    DEVICE = "device"
    PLATFORM = "platform"
    CHANNEL = "channel"


class ChannelStatus(StrEnum):
    """Channel state: Item ``Status`` (ON/OFF) or a status Event (VLOST, DEFECT)."""

    ON = "ON"
    OFF = "OFF"
    VLOST = "VLOST"
    DEFECT = "DEFECT"
    UNKNOWN = "UNKNOWN"


class ChangeKind(StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    REMOVED = "removed"
    STATUS = "status"
    """Only the status changed (ON/OFF/VLOST/DEFECT events)."""
    ATTRIBUTES = "attributes"
    """A platform-side attribute changed (:meth:`CatalogTree.set_attributes`)."""
    IGNORED = "ignored"
    """An event that changed nothing we know (unknown channel or Event): ``reason`` says why;
    an unknown channel usually means the tree is stale and a full Catalog query is due."""


_TYPE_KINDS: dict[str, NodeKind] = {
    **{str(code): NodeKind.DEVICE for code in range(111, 131)},
    **{str(code): NodeKind.PLATFORM for code in range(200, 215)},
    "215": NodeKind.BUSINESS_GROUP,
    "216": NodeKind.VIRTUAL_ORG,
}

_STATUS: dict[str, ChannelStatus] = {
    "ON": ChannelStatus.ON,
    "ONLINE": ChannelStatus.ON,
    "OK": ChannelStatus.ON,
    "OFF": ChannelStatus.OFF,
    "OFFLINE": ChannelStatus.OFF,
    "VLOST": ChannelStatus.VLOST,
    "DEFECT": ChannelStatus.DEFECT,
}


def classify(node_id: str) -> NodeKind:
    """Node kind from the ID alone (≤ 8 digits: region; else the Annex D type code)."""
    if len(node_id) <= 8:
        return NodeKind.REGION
    return _TYPE_KINDS.get(node_id[10:13], NodeKind.CHANNEL)


def normalise_status(text: str | None) -> ChannelStatus | None:
    """``ON``/``ONLINE``/``OK`` -> ON, ``OFF``/``OFFLINE`` -> OFF...; ``None`` if absent or
    unrecognised (the caller keeps the previous status)."""
    if not text:
        return None
    return _STATUS.get(text.strip().upper())


def split_parent_ids(parent_id: str | None, own_ids: frozenset[str]) -> tuple[str, ...]:
    """``ParentID`` split on ``/``, without empties and without IDs that mean root."""
    if not parent_id:
        return ()
    if "/" not in parent_id:
        parent_id = parent_id.strip()
        return () if not parent_id or parent_id in own_ids else (parent_id,)
    parts = (p.strip() for p in parent_id.split("/"))
    return tuple(dict.fromkeys(p for p in parts if p and p not in own_ids))


def node_parents(node_id: str, item: CatalogItem, own_ids: frozenset[str]) -> tuple[str, ...]:
    """Where a node sits: its ``ParentID`` (:func:`split_parent_ids`); without any ParentID,
    the way WVP places such nodes: a virtual organisation or channel under its
    ``BusinessGroupID``, a channel or device under the region of its ``CivilCode``, a region
    under its enclosing region (two digits shorter). A ParentID naming the device or our
    server is an explicit root and stays one. Unknown parents make the node an orphan, shown
    as a root (:meth:`CatalogTree.roots`), so a guess never hides a node."""
    raw = item.parent_id
    if raw is not None and raw.strip():
        return split_parent_ids(raw, own_ids)
    kind = classify(node_id)
    if kind is NodeKind.REGION:
        return (node_id[:-2],) if len(node_id) >= 4 else ()
    if kind in (NodeKind.VIRTUAL_ORG, NodeKind.CHANNEL, NodeKind.DEVICE):
        group = item.group_id
        if group and group != node_id and group not in own_ids:
            return (group.strip(),)
    if kind in (NodeKind.CHANNEL, NodeKind.DEVICE):
        civil = (item.civil_code or "").strip()
        if civil.isdigit() and len(civil) <= 8 and civil not in own_ids:
            return (civil,)
    return ()


class CatalogNode:
    """One node of the tree: the latest full item plus state the platform keeps.

    ``item`` is the device's last full description (ADD/UPDATE/sync); status events change
    ``status`` only. The three platform-side attributes are operator data.
    """

    __slots__ = (
        "channel_id",
        "item",
        "kind",
        "owner_department",
        "parent_ids",
        "security_class",
        "shared",
        "status",
        "updated_at",
    )

    def __init__(
        self,
        channel_id: str,
        item: CatalogItem,
        parent_ids: tuple[str, ...],
        status: ChannelStatus,
        updated_at: float,
        *,
        security_class: int = 0,
        owner_department: str | None = None,
        shared: bool = False,
    ) -> None:
        self.channel_id = channel_id
        self.kind = classify(channel_id)
        self.item = item
        self.parent_ids = parent_ids
        self.status = status
        self.updated_at = updated_at
        self.security_class = security_class
        self.owner_department = owner_department
        self.shared = shared

    @property
    def name(self) -> str:
        return self.item.name or ""

    def __repr__(self) -> str:
        return (
            f"CatalogNode({self.channel_id!r}, {self.kind.value}, {self.name!r}, "
            f"parents={self.parent_ids!r}, {self.status.value})"
        )


@dataclass(frozen=True, slots=True)
class CatalogChange:
    """One change to persist or to record as a fault/status transition.

    ``node`` is the node after the change (``None`` for IGNORED, the removed node for REMOVED).
    """

    kind: ChangeKind
    channel_id: str
    node: CatalogNode | None
    event: str | None = None
    old_status: ChannelStatus | None = None
    new_status: ChannelStatus | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CatalogSync:
    """Result of a full sync: the changes, and the known IDs the new list did not contain."""

    changes: list[CatalogChange]
    missing: tuple[str, ...]
    unchanged: int
    skipped: int
    """Items without a DeviceID (nothing to key them on)."""


class CatalogTree:
    """The catalog of one registered device or lower platform.

    :param device_id: the registered device or platform the catalog belongs to.
    :param server_id: our own SIP server ID (a ParentID equal to it means root).
    """

    def __init__(self, device_id: str, server_id: str | None = None) -> None:
        self.device_id = device_id
        self.server_id = server_id
        self._own = frozenset(i for i in (device_id, server_id) if i)
        self._nodes: dict[str, CatalogNode] = {}
        self._children: dict[str, set[str]] = {}
        self._index: ChannelIndex | None = None

    # -- the channel index -----------------------------------------------------------------

    def attach(self, index: ChannelIndex) -> None:
        """Report every node to ``index`` now and every node gained or lost from now on.

        A node's claim time is its ``updated_at`` when it entered the tree (the sync or event
        time; a restored row's stored time). :raises ValueError: already attached elsewhere
        (a tree in two indexes would leave one stale when it changes)."""
        if self._index is index:
            return
        if self._index is not None:
            raise ValueError(f"the catalog tree of {self.device_id} is already indexed")
        self._index = index
        for node in self._nodes.values():
            index.claim(self.device_id, node.channel_id, node.updated_at)

    @property
    def index(self) -> ChannelIndex | None:
        """The index the tree reports to (:class:`CatalogTrees` attaches it), if any."""
        return self._index

    def detach(self) -> None:
        """Withdraw every node from the index (the tree was dropped or replaced)."""
        index, self._index = self._index, None
        if index is not None:
            for channel_id in self._nodes:
                index.release(self.device_id, channel_id)

    # -- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, channel_id: object) -> bool:
        return channel_id in self._nodes

    def __iter__(self) -> Iterator[CatalogNode]:
        return iter(self._nodes.values())

    def get(self, channel_id: str) -> CatalogNode | None:
        return self._nodes.get(channel_id)

    def children(self, parent_id: str) -> list[CatalogNode]:
        """Nodes naming ``parent_id`` among their parents, ordered by ID."""
        ids = self._children.get(parent_id, ())
        return [self._nodes[i] for i in sorted(ids)]

    def roots(self) -> list[CatalogNode]:
        """Nodes with no parent, or whose parents are all unknown (orphans), ordered by ID."""
        nodes = self._nodes
        return [
            node
            for _id, node in sorted(nodes.items())
            if not any(p in nodes for p in node.parent_ids)
        ]

    def count_by_kind(self) -> dict[NodeKind, int]:
        counts: dict[NodeKind, int] = {}
        for node in self._nodes.values():
            counts[node.kind] = counts.get(node.kind, 0) + 1
        return counts

    # -- full sync -------------------------------------------------------------------------

    def apply_catalog(
        self, items: Iterable[CatalogItem], now: float, *, complete: bool = True
    ) -> CatalogSync:
        """Upsert every item of a Catalog answer.

        :param items: the distinct items (``QueryDone.items``).
        :param complete: the answer had all ``SumNum`` items; only then are known nodes absent
            from it reported in ``missing`` (the caller decides whether to :meth:`remove` them).
        :returns: ADDED / UPDATED changes (unchanged items produce none), ``missing``.
        """
        changes: list[CatalogChange] = []
        seen: set[str] = set()
        unchanged = skipped = 0
        for item in items:
            channel_id = item.device_id
            if not channel_id:
                skipped += 1
                continue
            seen.add(channel_id)
            change = self._upsert(channel_id, item, now, None)
            if change is None:
                unchanged += 1
            else:
                changes.append(change)
        missing: tuple[str, ...] = ()
        if complete:
            missing = tuple(sorted(i for i in self._nodes if i not in seen))
        return CatalogSync(changes, missing, unchanged, skipped)

    def remove(self, channel_ids: Iterable[str]) -> list[CatalogChange]:
        """Delete nodes (e.g. ``CatalogSync.missing``); unknown IDs are skipped."""
        changes = []
        for channel_id in channel_ids:
            node = self._remove(channel_id)
            if node is not None:
                changes.append(CatalogChange(ChangeKind.REMOVED, channel_id, node))
        return changes

    # -- change notifications --------------------------------------------------------------

    def apply_event(self, item: CatalogItem, now: float) -> CatalogChange | None:
        """Apply one item of a Catalog notification (notes §5).

        An item without ``Event`` is treated as UPDATE (some platforms push full items).

        :returns: the change, an IGNORED change (unknown channel or Event), or ``None`` when
            the event changed nothing (same status again, identical UPDATE, DEL of an unknown
            node).
        """
        channel_id = item.device_id
        event = (item.event or "UPDATE").strip().upper()
        if not channel_id:
            return CatalogChange(ChangeKind.IGNORED, "", None, event, reason="no DeviceID")
        if event in ("ADD", "UPDATE"):
            if item.event is not None:
                # Keep the description, not the notification (a later sync compares equal).
                item = dataclasses.replace(item, event=None)
            default = ChannelStatus.ON if event == "ADD" else None
            return self._upsert(channel_id, item, now, event, default)
        if event == "DEL":
            node = self._remove(channel_id)
            if node is None:
                return None
            return CatalogChange(ChangeKind.REMOVED, channel_id, node, event)
        status = _STATUS.get(event)
        if status is None:
            return CatalogChange(
                ChangeKind.IGNORED, channel_id, None, event, reason=f"unknown Event {event!r}"
            )
        node = self._nodes.get(channel_id)
        if node is None:
            return CatalogChange(
                ChangeKind.IGNORED, channel_id, None, event, reason="unknown channel"
            )
        old = node.status
        if old is status:
            return None
        node.status = status
        node.updated_at = now
        return CatalogChange(ChangeKind.STATUS, channel_id, node, event, old, status)

    def apply_events(self, items: Iterable[CatalogItem], now: float) -> list[CatalogChange]:
        """:meth:`apply_event` over a notification's items, dropping the no-ops."""
        changes = []
        for item in items:
            change = self.apply_event(item, now)
            if change is not None:
                changes.append(change)
        return changes

    # -- platform-side attributes ----------------------------------------------------------

    def set_attributes(
        self,
        channel_id: str,
        now: float,
        *,
        security_class: int | None = None,
        owner_department: str | None = None,
        shared: bool | None = None,
    ) -> CatalogChange | None:
        """Set operator attributes; ``None`` leaves one unchanged (``""`` clears the
        department). :returns: the change, or ``None`` for an unknown channel."""
        node = self._nodes.get(channel_id)
        if node is None:
            return None
        if security_class is not None:
            node.security_class = security_class
        if owner_department is not None:
            node.owner_department = owner_department or None
        if shared is not None:
            node.shared = shared
        node.updated_at = now
        return CatalogChange(ChangeKind.ATTRIBUTES, channel_id, node)

    # -- persistence -----------------------------------------------------------------------

    def load(self, records: Iterable[ChannelRecord]) -> None:
        """Rebuild nodes from stored rows (start-up); replaces nodes with the same ID."""
        for record in records:
            item = item_from_record(record)
            self._remove(record.channel_id)
            node = CatalogNode(
                record.channel_id,
                item,
                node_parents(record.channel_id, item, self._own),
                _STATUS.get(record.status, ChannelStatus.UNKNOWN),
                record.updated_at,
                security_class=record.security_class,
                owner_department=record.owner_department,
                shared=record.shared,
            )
            self._insert(node)

    def records(self, changes: Iterable[CatalogChange] | None = None) -> list[ChannelRecord]:
        """Rows to upsert: for the nodes ``changes`` left in the tree (a REMOVED after an ADDED
        cancels it), or for all nodes."""
        if changes is None:
            return [channel_record(self.device_id, n) for n in self._nodes.values()]
        latest: dict[str, CatalogNode] = {}
        for change in changes:
            if change.kind is ChangeKind.REMOVED:
                latest.pop(change.channel_id, None)
            elif change.node is not None and change.kind is not ChangeKind.IGNORED:
                latest[change.channel_id] = change.node
        return [channel_record(self.device_id, n) for n in latest.values()]

    # -- internals -------------------------------------------------------------------------

    def _upsert(
        self,
        channel_id: str,
        item: CatalogItem,
        now: float,
        event: str | None,
        default_status: ChannelStatus | None = None,
    ) -> CatalogChange | None:
        status = _STATUS.get(item.status.strip().upper()) if item.status else None
        node = self._nodes.get(channel_id)
        if node is None:
            parents = node_parents(channel_id, item, self._own)
            new = status or default_status or ChannelStatus.UNKNOWN
            node = CatalogNode(channel_id, item, parents, new, now)
            self._insert(node)
            return CatalogChange(ChangeKind.ADDED, channel_id, node, event, None, new)
        old_status = node.status
        new_status = status or old_status
        if node.item == item and new_status is old_status:
            return None
        parents = node_parents(channel_id, item, self._own)
        if parents != node.parent_ids:
            self._unlink(node)
            node.parent_ids = parents
            self._link(node)
        node.item = item
        node.status = new_status
        node.updated_at = now
        return CatalogChange(ChangeKind.UPDATED, channel_id, node, event, old_status, new_status)

    # Every node enters and leaves the tree through these two: the index hooks live here.

    def _insert(self, node: CatalogNode) -> None:
        self._nodes[node.channel_id] = node
        self._link(node)
        if self._index is not None:
            self._index.claim(self.device_id, node.channel_id, node.updated_at)

    def _remove(self, channel_id: str) -> CatalogNode | None:
        node = self._nodes.pop(channel_id, None)
        if node is not None:
            self._unlink(node)
            if self._index is not None:
                self._index.release(self.device_id, channel_id)
        return node

    def _link(self, node: CatalogNode) -> None:
        children = self._children
        for parent in node.parent_ids:
            bucket = children.get(parent)
            if bucket is None:
                children[parent] = {node.channel_id}
            else:
                bucket.add(node.channel_id)

    def _unlink(self, node: CatalogNode) -> None:
        for parent in node.parent_ids:
            bucket = self._children.get(parent)
            if bucket is not None:
                bucket.discard(node.channel_id)
                if not bucket:
                    del self._children[parent]


class ChannelIndex:
    """``channel ID -> device ID`` over every tree attached to it (:meth:`CatalogTree.attach`).

    Every node counts, not only channels: an IPC lists its own ID, lower platforms list
    regions and organisations; callers that want channels only filter (e.g. skip the device's
    own node).

    Which device wins when several trees hold the same ID: the one whose tree gained it most
    recently, by claim time (the node's ``updated_at`` on entering the tree: the time of the
    sync or ADD event; for a row restored at start-up its stored time, the last change that
    device reported, so the load order of devices does not matter), ties going to the later
    claim. Status events and updates of a node a tree already
    holds do not move it: an old NVR reporting the moved camera OFF must not take it back.
    When the winner loses the node (DEL, a complete sync without it, its tree dropped), the
    most recent remaining holder takes over.

    Cost: one dict lookup to read; a claim or release of an ID held by one device is a few
    dict operations (the contested IDs keep their other holders on the side).
    """

    __slots__ = ("_others", "_since", "_where")

    def __init__(self) -> None:
        self._where: dict[str, str] = {}
        self._since: dict[str, float] = {}
        #: Contested IDs only: the holders that are not the winner, with their claim times.
        self._others: dict[str, dict[str, float]] = {}

    def __len__(self) -> int:
        return len(self._where)

    def device_of(self, channel_id: str) -> str | None:
        """The device whose tree most recently gained ``channel_id``; ``None``: no tree."""
        return self._where.get(channel_id)

    def devices_of(self, channel_id: str) -> tuple[str, ...]:
        """Every device whose tree holds ``channel_id``, the winner first, then the others by
        claim time, most recent first."""
        winner = self._where.get(channel_id)
        if winner is None:
            return ()
        others = self._others.get(channel_id)
        if not others:
            return (winner,)
        ranked = sorted(reversed(others.items()), key=lambda kv: kv[1], reverse=True)
        return (winner, *(device_id for device_id, _at in ranked))

    def claim(self, device_id: str, channel_id: str, at: float) -> None:
        """``device_id``'s tree gained ``channel_id`` at ``at``."""
        winner = self._where.get(channel_id)
        if winner is None or winner == device_id:
            self._where[channel_id] = device_id
            self._since[channel_id] = at
            return
        others = self._others.setdefault(channel_id, {})
        others.pop(device_id, None)  # re-inserted last: the later claim on a tie
        since = self._since[channel_id]
        if at >= since:
            others[winner] = since
            self._where[channel_id] = device_id
            self._since[channel_id] = at
        else:
            others[device_id] = at

    def release(self, device_id: str, channel_id: str) -> None:
        """``device_id``'s tree lost ``channel_id``."""
        winner = self._where.get(channel_id)
        if winner is None:
            return
        if winner != device_id:
            others = self._others.get(channel_id)
            if others is not None:
                others.pop(device_id, None)
                if not others:
                    del self._others[channel_id]
            return
        others = self._others.pop(channel_id, None)
        if not others:
            del self._where[channel_id]
            del self._since[channel_id]
            return
        # max() keeps the first of equals: scanning newest claim first breaks ties that way.
        heir, at = max(reversed(others.items()), key=lambda kv: kv[1])
        del others[heir]
        self._where[channel_id] = heir
        self._since[channel_id] = at
        if others:
            self._others[channel_id] = others


class CatalogTrees(MutableMapping[str, CatalogTree]):
    """``device ID -> CatalogTree`` of every device and lower platform, with the channel index.

    A tree stored here is attached to :attr:`index` (its nodes are indexed, and so is every
    later change); one replaced or deleted is detached. All mutation goes through
    ``__setitem__`` / ``__delitem__`` (``pop``, ``update``, ``clear``... are built on them),
    so the index follows every way a tree can come or go.

    :raises ValueError: on storing a tree under another device's ID, or a tree already held
        by another mapping.
    """

    def __init__(self, trees: Mapping[str, CatalogTree] | None = None) -> None:
        self._trees: dict[str, CatalogTree] = {}
        self.index = ChannelIndex()
        if trees is not None:
            self.update(trees)

    def __getitem__(self, device_id: str) -> CatalogTree:
        return self._trees[device_id]

    def __setitem__(self, device_id: str, tree: CatalogTree) -> None:
        if tree.device_id != device_id:
            raise ValueError(f"the catalog tree of {tree.device_id} stored as {device_id}")
        old = self._trees.get(device_id)
        if old is tree:
            return
        if tree.index is not None:
            raise ValueError(f"the catalog tree of {device_id} is already indexed")
        if old is not None:
            old.detach()  # before attaching: both claim under the same device ID
        tree.attach(self.index)
        self._trees[device_id] = tree

    def __delitem__(self, device_id: str) -> None:
        tree = self._trees.pop(device_id)
        tree.detach()

    def __iter__(self) -> Iterator[str]:
        return iter(self._trees)

    def __len__(self) -> int:
        return len(self._trees)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._trees

    def __repr__(self) -> str:
        return f"CatalogTrees({sorted(self._trees)!r}, indexed={len(self.index)})"

    def device_of(self, channel_id: str) -> str | None:
        """The device whose tree holds ``channel_id`` (:meth:`ChannelIndex.device_of`)."""
        return self.index.device_of(channel_id)

    def devices_of(self, channel_id: str) -> tuple[str, ...]:
        """Every device whose tree holds ``channel_id``, the winner first."""
        return self.index.devices_of(channel_id)


# -- node <-> store row ----------------------------------------------------------------------

# Item fields with their own column; everything else the device sent goes to the ``info`` JSON
# under the codec's field names, so nothing is lost between a sync and a restart.
_COLUMN_FIELDS = frozenset(
    {
        "device_id",
        "event",
        "name",
        "manufacturer",
        "model",
        "owner",
        "civil_code",
        "address",
        "parental",
        "parent_id",
        "status",
        "longitude",
        "latitude",
        "info",
        "extra",
        "extra_nodes",
    }
)
_ITEM_INFO_FIELDS = tuple(
    f.name for f in dataclasses.fields(CatalogItem) if f.name not in _COLUMN_FIELDS
)
_INFO_FIELDS = tuple(
    f.name for f in dataclasses.fields(CatalogInfo) if f.name not in ("extra", "extra_nodes")
)
_INFO_FIELD_SET = frozenset(_INFO_FIELDS)
_ITEM_INFO_FIELD_SET = frozenset(_ITEM_INFO_FIELDS)


def channel_record(device_id: str, node: CatalogNode) -> ChannelRecord:
    """The store row for ``node``. Elements kept only as XML trees (``extra_nodes``) are not
    persisted."""
    item = node.item
    info: dict[str, Any] = {}
    for name in _ITEM_INFO_FIELDS:
        value = getattr(item, name)
        if value is not None:
            info[name] = value
    # The raw texts, so that a reloaded item equals the one the device sent (the columns hold
    # the resolved parents and the normalised status).
    if item.parent_id is not None:
        info["parent_id"] = item.parent_id
    if item.status is not None:
        info["status"] = item.status
    if item.extra:
        info["extra"] = dict(item.extra)
    sub = item.info
    ptz_type = None
    if sub is not None:
        ptz_type = sub.ptz_type
        fields = {n: v for n in _INFO_FIELDS if (v := getattr(sub, n)) is not None}
        if sub.extra:
            fields["extra"] = dict(sub.extra)
        info["info"] = fields
    return ChannelRecord(
        device_id=device_id,
        channel_id=node.channel_id,
        parent_ids=node.parent_ids,
        kind=node.kind.value,
        name=item.name,
        manufacturer=item.manufacturer,
        model=item.model,
        owner=item.owner,
        civil_code=item.civil_code,
        address=item.address,
        parental=item.parental,
        status=node.status.value,
        longitude=item.longitude,
        latitude=item.latitude,
        ptz_type=ptz_type,
        business_group_id=item.group_id,
        info=info,
        security_class=node.security_class,
        owner_department=node.owner_department,
        shared=node.shared,
        updated_at=node.updated_at,
    )


def item_from_record(record: ChannelRecord) -> CatalogItem:
    """Rebuild the catalog item a row was made from (unknown JSON keys are ignored)."""
    info = record.info
    kwargs: dict[str, Any] = {k: v for k, v in info.items() if k in _ITEM_INFO_FIELD_SET}
    extra = info.get("extra")
    sub = info.get("info")
    catalog_info = None
    if isinstance(sub, dict):
        sub_kwargs = {k: v for k, v in sub.items() if k in _INFO_FIELD_SET}
        sub_extra = sub.get("extra")
        if isinstance(sub_extra, dict):
            sub_kwargs["extra"] = {str(k): str(v) for k, v in sub_extra.items()}
        catalog_info = CatalogInfo(**sub_kwargs)
    parent_id = info.get("parent_id")
    status = info.get("status")
    return CatalogItem(
        device_id=record.channel_id,
        name=record.name,
        manufacturer=record.manufacturer,
        model=record.model,
        owner=record.owner,
        civil_code=record.civil_code,
        address=record.address,
        parental=record.parental,
        parent_id=parent_id if isinstance(parent_id, str) else None,
        status=status if isinstance(status, str) else None,
        longitude=record.longitude,
        latitude=record.latitude,
        info=catalog_info,
        extra={str(k): str(v) for k, v in extra.items()} if isinstance(extra, dict) else {},
        **kwargs,
    )
