"""CatalogTree: classification, parents, full sync, events, platform attributes, rows."""

from __future__ import annotations

import pytest

from gb28181 import manscdp
from gb28181.catalog import (
    CatalogTree,
    CatalogTrees,
    ChangeKind,
    ChannelIndex,
    ChannelStatus,
    NodeKind,
    channel_record,
    classify,
    item_from_record,
    node_parents,
    normalise_status,
    split_parent_ids,
)
from gb28181.manscdp import CatalogInfo, CatalogItem, CatalogResponse
from tests.manscdp.helpers import body
from tests.test_catalog_sync import FakeQueries, done, service

SERVER = "34020000002000000001"
PLATFORM = "34020000002000000009"
NVR = "34020000001180000001"
GROUP = "34020000002150000001"
ORG = "34020000002160000001"
SUB_ORG = "34020000002160000002"
CAM1 = "34020000001310000001"


def cam(n: int, **fields: object) -> CatalogItem:
    values: dict[str, object] = {
        "device_id": f"3402000000131{n:07d}",
        "name": f"camera {n}",
        "parent_id": NVR,
        "status": "ON",
    }
    values.update(fields)
    return CatalogItem(**values)  # type: ignore[arg-type]


def catalog_items(name: str) -> tuple[CatalogItem, ...]:
    message = manscdp.decode(body(name))
    assert isinstance(message, CatalogResponse)
    return message.items


@pytest.mark.parametrize(
    ("node_id", "kind"),
    [
        ("34", NodeKind.REGION),
        ("340200", NodeKind.REGION),
        ("34020001", NodeKind.REGION),
        (GROUP, NodeKind.BUSINESS_GROUP),
        (ORG, NodeKind.VIRTUAL_ORG),
        (NVR, NodeKind.DEVICE),
        ("34020000001110000001", NodeKind.DEVICE),
        ("34020000001300000001", NodeKind.DEVICE),
        (SERVER, NodeKind.PLATFORM),
        ("34020000001310000001", NodeKind.CHANNEL),
        ("34020000001340000001", NodeKind.CHANNEL),
        ("340200000013", NodeKind.CHANNEL),  # too short for a type code: not a region either
        ("abcdefghij", NodeKind.CHANNEL),
    ],
)
def test_classify(node_id: str, kind: NodeKind) -> None:
    assert classify(node_id) is kind


def test_split_parent_ids() -> None:
    own = frozenset({NVR, SERVER})
    assert split_parent_ids(None, own) == ()
    assert split_parent_ids("", own) == ()
    assert split_parent_ids(NVR, own) == ()
    assert split_parent_ids(f" {ORG} ", own) == (ORG,)
    assert split_parent_ids(f"{ORG}/{SERVER}//{SUB_ORG}/{ORG}", own) == (ORG, SUB_ORG)


def test_normalise_status() -> None:
    assert normalise_status("ON") is ChannelStatus.ON
    assert normalise_status(" online ") is ChannelStatus.ON
    assert normalise_status("OFFLINE") is ChannelStatus.OFF
    assert normalise_status("VLOST") is ChannelStatus.VLOST
    assert normalise_status("") is None
    assert normalise_status("??") is None


def test_real_hikvision_catalog_parented_to_server_is_root() -> None:
    tree = CatalogTree("34020000001320000002", server_id=SERVER)
    sync = tree.apply_catalog(catalog_items("hikvision_catalog-response_1"), 1.0)

    assert [c.kind for c in sync.changes] == [ChangeKind.ADDED, ChangeKind.ADDED]
    camera = tree.get("34020000001310000001")
    alarm_in = tree.get("34020000001340000001")
    assert camera is not None and alarm_in is not None
    assert camera.parent_ids == ()  # ParentID is our server ID (Hikvision, WVP #21)
    assert alarm_in.parent_ids == ()  # ParentID is the device itself
    assert camera.status is ChannelStatus.ON
    assert camera.name == "hikangname"
    assert alarm_in.name == ""
    assert [n.channel_id for n in tree.roots()] == sorted([camera.channel_id, alarm_in.channel_id])


def test_real_dahua_ipc_lists_itself() -> None:
    items = catalog_items("dahua_catalog-response_1")
    tree = CatalogTree(items[0].device_id or "")
    tree.apply_catalog(items, 0.0)

    (node,) = tree
    assert node.kind is NodeKind.CHANNEL  # type 132, an IPC: its own single channel
    assert node.parent_ids == ()
    assert node.item.info is not None and node.item.info.ptz_type == 3


def test_hierarchy_regions_groups_orgs() -> None:
    tree = CatalogTree(PLATFORM, server_id=SERVER)
    items = [
        CatalogItem(device_id="340200", name="Hefei"),
        CatalogItem(device_id=GROUP, name="Traffic", parent_id=PLATFORM),
        CatalogItem(device_id=ORG, name="East", parent_id=GROUP, business_group_id=GROUP),
        CatalogItem(device_id=SUB_ORG, name="Gate", parent_id=ORG, business_group_id=GROUP),
        cam(1, parent_id=f"{SUB_ORG}/{NVR}"),
        cam(2, parent_id=SUB_ORG),
        cam(3, parent_id="34020000002169999999"),  # unknown organisation: an orphan
    ]
    tree.apply_catalog(items, 0.0)

    kinds = tree.count_by_kind()
    assert kinds == {
        NodeKind.REGION: 1,
        NodeKind.BUSINESS_GROUP: 1,
        NodeKind.VIRTUAL_ORG: 2,
        NodeKind.CHANNEL: 3,
    }
    assert [n.channel_id for n in tree.children(GROUP)] == [ORG]
    assert [n.channel_id for n in tree.children(SUB_ORG)] == [cam(1).device_id, cam(2).device_id]
    assert [n.channel_id for n in tree.children(NVR)] == [cam(1).device_id]
    assert [n.channel_id for n in tree.roots()] == ["340200", cam(3).device_id, GROUP]
    assert tree.children("nobody") == []


def test_full_sync_reports_updates_unchanged_and_missing() -> None:
    tree = CatalogTree(NVR)
    first = tree.apply_catalog([cam(1), cam(2), cam(3)], 1.0)
    assert len(first.changes) == 3
    assert first.missing == ()

    second = tree.apply_catalog([cam(1), cam(2, name="renamed"), CatalogItem(name="x")], 2.0)
    assert second.unchanged == 1
    assert second.skipped == 1
    (change,) = second.changes
    assert (change.kind, change.channel_id) == (ChangeKind.UPDATED, cam(2).device_id)
    assert change.node is not None and change.node.name == "renamed"
    assert change.node.updated_at == 2.0
    assert second.missing == (cam(3).device_id,)
    assert cam(3).device_id in tree  # reported, not deleted

    removed = tree.remove([*second.missing, "unknown"])
    assert [(c.kind, c.channel_id) for c in removed] == [(ChangeKind.REMOVED, cam(3).device_id)]
    assert len(tree) == 2


def test_partial_sync_reports_nothing_missing() -> None:
    tree = CatalogTree(NVR)
    tree.apply_catalog([cam(1), cam(2)], 1.0)

    assert tree.apply_catalog([cam(1)], 2.0, complete=False).missing == ()


def test_sync_status_change_and_reparent() -> None:
    tree = CatalogTree(NVR)
    tree.apply_catalog([cam(1, parent_id=ORG)], 1.0)

    sync = tree.apply_catalog([cam(1, parent_id=SUB_ORG, status="OFF")], 2.0)
    (change,) = sync.changes
    assert (change.old_status, change.new_status) == (ChannelStatus.ON, ChannelStatus.OFF)
    assert tree.children(ORG) == []
    assert [n.channel_id for n in tree.children(SUB_ORG)] == [cam(1).device_id]


def test_sync_without_status_keeps_previous() -> None:
    tree = CatalogTree(NVR)
    tree.apply_catalog([cam(1)], 1.0)
    tree.apply_event(CatalogItem(device_id=cam(1).device_id, event="VLOST"), 2.0)

    tree.apply_catalog([cam(1, status=None, name="n")], 3.0)
    node = tree.get(cam(1).device_id or "")
    assert node is not None and node.status is ChannelStatus.VLOST


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("OFF", ChannelStatus.OFF),
        ("VLOST", ChannelStatus.VLOST),
        ("DEFECT", ChannelStatus.DEFECT),
        ("off", ChannelStatus.OFF),
    ],
)
def test_status_events(event: str, status: ChannelStatus) -> None:
    tree = CatalogTree(NVR)
    tree.apply_catalog([cam(1)], 1.0)
    item = CatalogItem(device_id=cam(1).device_id, event=event)

    change = tree.apply_event(item, 2.0)
    assert change is not None
    assert change.kind is ChangeKind.STATUS
    assert (change.old_status, change.new_status) == (ChannelStatus.ON, status)
    assert change.event == event.upper()
    assert tree.apply_event(item, 3.0) is None  # same status again: nothing to record
    node = tree.get(cam(1).device_id or "")
    assert node is not None and node.name == "camera 1"  # fields untouched


def test_on_event_after_off() -> None:
    tree = CatalogTree(NVR)
    tree.apply_catalog([cam(1, status="OFF")], 1.0)

    change = tree.apply_event(CatalogItem(device_id=cam(1).device_id, event="ON"), 2.0)
    assert change is not None and change.new_status is ChannelStatus.ON


def test_add_update_del_events() -> None:
    tree = CatalogTree(NVR)
    added = tree.apply_event(cam(5, event="ADD", status=None), 1.0)
    assert added is not None and added.kind is ChangeKind.ADDED
    assert added.new_status is ChannelStatus.ON  # ADD without Status: the channel is there
    node = tree.get(cam(5).device_id or "")
    assert node is not None and node.item.event is None

    assert tree.apply_event(cam(5, event="UPDATE", status=None), 1.5) is None  # identical
    updated = tree.apply_event(cam(5, event="UPDATE", name="new"), 2.0)
    assert updated is not None and updated.kind is ChangeKind.UPDATED

    deleted = tree.apply_event(CatalogItem(device_id=cam(5).device_id, event="DEL"), 3.0)
    assert deleted is not None and deleted.kind is ChangeKind.REMOVED
    assert len(tree) == 0
    assert tree.apply_event(CatalogItem(device_id=cam(5).device_id, event="DEL"), 3.0) is None


def test_update_of_unknown_adds_and_missing_event_means_update() -> None:
    tree = CatalogTree(NVR)
    changes = tree.apply_events([cam(1, event="UPDATE"), cam(2)], 1.0)

    assert [c.kind for c in changes] == [ChangeKind.ADDED, ChangeKind.ADDED]


def test_ignored_events() -> None:
    tree = CatalogTree(NVR)
    tree.apply_catalog([cam(1)], 1.0)

    unknown = tree.apply_event(CatalogItem(device_id="nope", event="OFF"), 2.0)
    assert unknown is not None
    assert (unknown.kind, unknown.reason) == (ChangeKind.IGNORED, "unknown channel")
    odd = tree.apply_event(CatalogItem(device_id=cam(1).device_id, event="EXPLODE"), 2.0)
    assert odd is not None and odd.kind is ChangeKind.IGNORED and "EXPLODE" in odd.reason
    no_id = tree.apply_event(CatalogItem(event="OFF"), 2.0)
    assert no_id is not None and no_id.reason == "no DeviceID"


def test_real_catalog_notify_events() -> None:
    tree = CatalogTree("34020000001320000002", server_id=SERVER)
    tree.apply_catalog(catalog_items("hikvision_catalog-response_1"), 1.0)
    notify = (
        b'<?xml version="1.0" encoding="GB2312"?>\r\n<Notify>\r\n<CmdType>Catalog</CmdType>\r\n'
        b"<SN>5</SN>\r\n<DeviceID>34020000001320000002</DeviceID>\r\n<SumNum>2</SumNum>\r\n"
        b'<DeviceList Num="2">\r\n<Item><DeviceID>34020000001310000001</DeviceID>'
        b"<Event>VLOST</Event></Item>\r\n<Item><DeviceID>34020000001340000001</DeviceID>"
        b"<Event>DEL</Event></Item>\r\n</DeviceList>\r\n</Notify>\r\n"
    )
    message = manscdp.decode(notify)
    assert isinstance(message, CatalogResponse)

    changes = tree.apply_events(message.items, 2.0)
    assert [c.kind for c in changes] == [ChangeKind.STATUS, ChangeKind.REMOVED]
    assert len(tree) == 1


def test_platform_attributes_survive_sync_and_events() -> None:
    tree = CatalogTree(NVR)
    tree.apply_catalog([cam(1)], 1.0)
    change = tree.set_attributes(
        cam(1).device_id or "", 2.0, security_class=3, owner_department="刑侦", shared=True
    )
    assert change is not None and change.kind is ChangeKind.ATTRIBUTES

    tree.apply_catalog([cam(1, name="renamed", status="OFF")], 3.0)
    tree.apply_event(cam(1, event="UPDATE", name="again"), 4.0)
    node = tree.get(cam(1).device_id or "")
    assert node is not None
    assert (node.security_class, node.owner_department, node.shared) == (3, "刑侦", True)
    assert node.name == "again"

    tree.set_attributes(node.channel_id, 5.0, owner_department="")
    assert node.owner_department is None
    assert node.security_class == 3
    assert tree.set_attributes("nope", 5.0, shared=True) is None


def test_new_node_defaults() -> None:
    tree = CatalogTree(NVR)
    tree.apply_catalog([CatalogItem(device_id="340200")], 0.0)
    node = tree.get("340200")

    assert node is not None
    assert (node.security_class, node.owner_department, node.shared) == (0, None, False)
    assert node.status is ChannelStatus.UNKNOWN
    assert "region" in repr(node)


def test_record_round_trip_is_exact() -> None:
    info = CatalogInfo(ptz_type=1, resolution="6/4", business_group_id=GROUP, extra={"X": "1"})
    item = cam(
        1,
        parent_id=f"{ORG}/{NVR}",
        status="ONLINE",
        longitude=117.25,
        latitude=31.8,
        safety_way=0,
        register_way=1,
        secrecy=0,
        ip_address="10.0.0.2",
        port=5060,
        info=info,
        extra={"StreamNum": "2"},
        manufacturer="Hikvision",
        parental=0,
    )
    tree = CatalogTree(NVR)
    tree.apply_catalog([item], 5.0)
    node = tree.get(item.device_id or "")
    assert node is not None
    node.security_class = 2

    record = channel_record(NVR, node)
    assert record.parent_ids == (ORG,)
    assert (record.status, record.kind, record.ptz_type) == ("ON", "channel", 1)
    assert record.business_group_id == GROUP
    assert record.security_class == 2
    assert item_from_record(record) == item

    restored = CatalogTree(NVR)
    restored.load([record])
    again = restored.get(node.channel_id)
    assert again is not None
    assert again.parent_ids == (ORG,)
    assert again.security_class == 2
    assert again.status is ChannelStatus.ON
    # A sync with the same item after a restart writes nothing.
    assert restored.apply_catalog([item], 6.0).changes == []


def test_item_level_business_group_round_trip() -> None:
    item = CatalogItem(device_id=ORG, parent_id=GROUP, business_group_id=GROUP)
    tree = CatalogTree(NVR)
    tree.apply_catalog([item], 0.0)
    node = tree.get(ORG)
    assert node is not None

    assert item_from_record(channel_record(NVR, node)) == item


def test_records_for_changes() -> None:
    tree = CatalogTree(NVR)
    sync = tree.apply_catalog([cam(1), cam(2)], 1.0)
    removed = tree.remove([cam(2).device_id or ""])

    rows = tree.records([*sync.changes, *removed])
    assert [r.channel_id for r in rows] == [cam(1).device_id]
    assert len(tree.records()) == 1


def test_load_replaces_existing_node() -> None:
    tree = CatalogTree(NVR)
    tree.apply_catalog([cam(1, parent_id=ORG)], 1.0)
    record = channel_record(NVR, tree.get(cam(1).device_id or "") or pytest.fail())
    record.info["parent_id"] = SUB_ORG

    tree.load([record])
    assert tree.children(ORG) == []
    assert len(tree.children(SUB_ORG)) == 1


def test_nodes_without_parent_id_are_placed_by_group_civil_code_or_region() -> None:
    own = frozenset({PLATFORM, SERVER})
    camera = "34020200001320000001"
    # An explicit ParentID wins, even when it names the platform (an explicit root).
    assert node_parents(camera, CatalogItem(parent_id=ORG, civil_code="340202"), own) == (ORG,)
    assert node_parents(camera, CatalogItem(parent_id=PLATFORM, civil_code="340202"), own) == ()
    # No ParentID: the business group, else the CivilCode's region.
    item = CatalogItem(business_group_id=GROUP, civil_code="340202")
    assert node_parents(camera, item, own) == (GROUP,)
    assert node_parents(camera, CatalogItem(civil_code="340202"), own) == ("340202",)
    assert node_parents(camera, CatalogItem(civil_code=" "), own) == ()
    # A 2022 virtual organisation lists only its group; a region sits in the enclosing one.
    assert node_parents(ORG, CatalogItem(business_group_id=GROUP), own) == (GROUP,)
    assert node_parents("340202", CatalogItem(), own) == ("3402",)
    assert node_parents("34", CatalogItem(), own) == ()
    assert node_parents(GROUP, CatalogItem(civil_code="340202"), own) == ()


def test_lower_platform_tree_by_civil_code_and_group() -> None:
    tree = CatalogTree(PLATFORM, server_id=SERVER)
    camera = "34020200001320000001"
    tree.apply_catalog(
        [
            CatalogItem(device_id="34", name="Anhui"),
            CatalogItem(device_id="3402", name="Hefei"),
            CatalogItem(device_id=GROUP, name="Police", parent_id=PLATFORM),
            CatalogItem(device_id=ORG, name="East", business_group_id=GROUP),
            CatalogItem(device_id=camera, name="Gate", civil_code="3402"),
        ],
        0.0,
    )
    assert [n.channel_id for n in tree.roots()] == ["34", GROUP]
    assert [n.channel_id for n in tree.children("3402")] == [camera]
    assert [n.channel_id for n in tree.children(GROUP)] == [ORG]
    # An update that gives the camera a ParentID moves it.
    tree.apply_catalog([CatalogItem(device_id=camera, name="Gate", parent_id=ORG)], 1.0,
                       complete=False)  # fmt: skip
    assert tree.children("3402") == [] and [n.channel_id for n in tree.children(ORG)] == [camera]


# -- the channel index ------------------------------------------------------------------------

NVR2 = "34020000001180000002"


def indexed(*device_ids: str) -> CatalogTrees:
    return CatalogTrees({d: CatalogTree(d, SERVER) for d in device_ids})


def test_index_follows_the_first_catalog() -> None:
    trees = indexed(NVR)
    assert trees.device_of(CAM1) is None
    trees[NVR].apply_catalog([CatalogItem(device_id=NVR, name="nvr"), cam(1), cam(2)], 1.0)
    assert trees.device_of(CAM1) == NVR and trees.device_of(cam(2).device_id or "") == NVR
    assert trees.device_of(NVR) == NVR  # every node counts; callers skip the device's own
    assert trees.devices_of(CAM1) == (NVR,) and trees.devices_of("nothing") == ()
    assert len(trees.index) == 3


def test_index_a_channel_moved_to_another_device_goes_to_the_latest_reporter() -> None:
    trees = indexed(NVR, NVR2)
    trees[NVR].apply_catalog([cam(1)], 1.0)
    trees[NVR2].apply_catalog([cam(1, parent_id=NVR2)], 2.0)
    assert trees.device_of(CAM1) == NVR2 and trees.devices_of(CAM1) == (NVR2, NVR)
    # The old NVR's status events and updates about it do not take it back...
    trees[NVR].apply_event(CatalogItem(device_id=CAM1, event="OFF"), 3.0)
    trees[NVR].apply_event(cam(1, name="renamed", event="UPDATE"), 4.0)
    assert trees.device_of(CAM1) == NVR2
    # ...but the new one losing it hands it back to the one still listing it.
    sync = trees[NVR2].apply_catalog([], 5.0)  # a complete answer without it
    trees[NVR2].remove(sync.missing)
    assert trees.device_of(CAM1) == NVR and trees.devices_of(CAM1) == (NVR,)
    # Listing it again makes NVR2 the latest reporter once more.
    trees[NVR2].apply_event(cam(1, event="ADD"), 6.0)
    assert trees.device_of(CAM1) == NVR2


def test_index_follows_a_del_notify_and_a_complete_sync() -> None:
    trees = indexed(NVR)
    trees[NVR].apply_catalog([cam(1), cam(2)], 1.0)
    trees[NVR].apply_events([CatalogItem(device_id=CAM1, event="DEL")], 2.0)
    assert trees.device_of(CAM1) is None
    sync = trees[NVR].apply_catalog([], 3.0)
    trees[NVR].remove(sync.missing)
    assert len(trees.index) == 0


def test_index_follows_a_dropped_or_replaced_tree() -> None:
    trees = indexed(NVR, NVR2)
    trees[NVR].apply_catalog([cam(1), cam(2)], 1.0)
    trees[NVR2].apply_catalog([cam(1, parent_id=NVR2)], 2.0)
    old = trees[NVR2]
    del trees[NVR2]
    assert trees.device_of(CAM1) == NVR and old.index is None
    old.apply_catalog([cam(3)], 3.0)  # a detached tree no longer reports
    assert trees.device_of(cam(3).device_id or "") is None
    replacement = CatalogTree(NVR, SERVER)
    replacement.apply_catalog([cam(3)], 4.0)
    trees[NVR] = replacement  # indexed as it is, the old tree's nodes withdrawn
    assert trees.device_of(CAM1) is None and trees.device_of(cam(3).device_id or "") == NVR
    trees.pop(NVR)
    assert len(trees.index) == 0 and len(trees) == 0


def test_index_restore_after_restart_keeps_the_latest_reporter() -> None:
    before = indexed(NVR, NVR2)
    before[NVR2].apply_catalog([cam(1, parent_id=NVR2), cam(2, parent_id=NVR2)], 1.0)
    before[NVR].apply_catalog([cam(1)], 2.0)  # moved to NVR later
    assert before.device_of(CAM1) == NVR
    rows = {d: before[d].records() for d in (NVR, NVR2)}
    for order in ((NVR, NVR2), (NVR2, NVR)):  # the start-up order does not matter
        after = CatalogTrees()
        for device_id in order:
            after[device_id] = CatalogTree(device_id, SERVER)
            after[device_id].load(rows[device_id])
        assert after.device_of(CAM1) == NVR and after.devices_of(CAM1) == (NVR, NVR2)
        assert after.device_of(cam(2).device_id or "") == NVR2


def test_index_ties_go_to_the_later_claim_and_older_claims_queue_behind() -> None:
    index = ChannelIndex()
    index.claim("a", "x", 5.0)
    index.claim("b", "x", 5.0)
    assert index.devices_of("x") == ("b", "a")
    index.claim("c", "x", 1.0)  # e.g. a restored row older than the live report
    assert index.devices_of("x") == ("b", "a", "c")
    index.release("b", "x")
    assert index.device_of("x") == "a"
    index.release("c", "x")
    index.release("nobody", "x")
    assert index.devices_of("x") == ("a",)
    index.release("a", "x")
    assert index.device_of("x") is None and len(index) == 0


def test_trees_refuse_a_tree_under_another_id_or_already_indexed() -> None:
    trees = indexed(NVR)
    with pytest.raises(ValueError, match="stored as"):
        trees[NVR2] = CatalogTree(NVR)
    with pytest.raises(ValueError, match="already indexed"):
        CatalogTrees({NVR: trees[NVR]})
    trees[NVR] = trees[NVR]  # the same tree again: nothing changes
    trees[NVR].apply_catalog([cam(1)], 1.0)
    assert trees.device_of(CAM1) == NVR


async def test_catalog_service_device_of_follows_answers_notifies_and_restore() -> None:
    svc, _store, _writer, _counts = service(FakeQueries([]))
    svc.apply_answer(NVR, done([cam(1)]), 1.0)
    svc.apply_answer(NVR2, done([cam(1, parent_id=NVR2)]), 2.0)
    assert svc.device_of(CAM1) == NVR2
    svc.apply_notify(NVR2, CatalogResponse(items=(CatalogItem(device_id=CAM1, event="DEL"),)), 3.0)
    assert svc.device_of(CAM1) == NVR
    restarted, _store, _writer, _counts = service(FakeQueries([]))
    restarted.load(NVR, svc.trees[NVR].records())
    assert restarted.device_of(CAM1) == NVR
