"""CatalogView: what another platform sees of our catalog; chunking; the reply charset."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gb28181 import manscdp
from gb28181.catalog_view import chunk_items, reply_charset
from tests.test_catalog_responder import (
    CI,
    GROUP,
    LOWER,
    NVR,
    ORG,
    OTHER,
    SECRET,
    SERVER,
    SUB_ORG,
    FakeLink,
    cam,
    cid,
    peer,
    principal,
    responder,
)


def test_catalog_for_lists_platform_then_organisations_then_visible_channels() -> None:
    r, _ = responder()
    items = r.catalog_for(peer(FakeLink()))
    ids = [i.device_id or "" for i in items]
    assert ids[0] == SERVER and items[0].name == "市平台" and items[0].parental == 1
    # The organisations above the published channels, outermost first; then the channels.
    assert ids[1:5] == [GROUP, ORG, SUB_ORG, "340200"]
    channels = ids[5:]
    assert sorted(channels) == sorted([cid(1), cid(2), cid(10),
                                       cid(11)])  # fmt: skip
    assert SECRET not in ids  # not visible
    assert cid(50) not in ids  # the peer's own channel
    by_id = {i.device_id: i for i in items}
    assert by_id[cid(10)].parent_id == SUB_ORG
    assert by_id[cid(11)].parent_id == "340200"  # placed by its CivilCode
    assert by_id[cid(1)].parent_id == SERVER  # an NVR's channel: under our platform
    assert by_id[ORG].parent_id == GROUP and by_id[GROUP].parent_id == SERVER
    assert by_id[cid(2)].password is None
    assert by_id[cid(2)].status == "OFF"
    assert by_id[cid(1)].status == "ON"


def test_channels_of_an_offline_device_are_published_off() -> None:
    r, _ = responder(online={NVR, LOWER})
    by_id = {i.device_id: i for i in r.catalog_for(peer(FakeLink()))}
    assert by_id[cid(10)].status == "OFF"
    assert by_id[cid(1)].status == "ON"


def test_no_principal_or_level_4_sees_only_our_platform() -> None:
    r, _ = responder()
    assert [i.device_id for i in r.catalog_for(peer(FakeLink(), principal=None))] == [SERVER]
    assert len(r.catalog_for(peer(FakeLink(), principal=principal(4)))) == 1


def test_id_map_and_share_restrict_and_rename() -> None:
    r, _ = responder()
    mapped = {cid(10): "44010000001320000010", SUB_ORG: "44010000002160000002"}
    items = r.catalog_for(
        peer(FakeLink(), id_map=mapped, share=(GROUP,), local_id="34020000002000000077")
    )
    by_id = {i.device_id: i for i in items}
    assert items[0].device_id == "34020000002000000077"
    # Only channels under the shared group: cam 10 (renamed); cam 11 is under a region only.
    assert set(by_id) == {"34020000002000000077", GROUP, ORG, "44010000002160000002",
                          "44010000001320000010"}  # fmt: skip
    assert by_id["44010000001320000010"].parent_id == "44010000002160000002"
    assert by_id["44010000002160000002"].parent_id == ORG


def test_a_channel_two_devices_list_is_published_once_from_the_latest_reporter() -> None:
    r, _ = responder(online={NVR, LOWER})  # OTHER offline
    # Camera 1 moved from the NVR to the (offline) lower platform OTHER, under ORG there.
    r.trees[OTHER].apply_catalog([cam(1, ORG, status="ON")], 5.0, complete=False)
    items = r.catalog_for(peer(FakeLink()))
    assert [i.device_id for i in items].count(cid(1)) == 1
    by_id = {i.device_id: i for i in items}
    assert by_id[cid(1)].parent_id == ORG and by_id[cid(1)].status == "OFF"
    # The peer listing it too does not hide it: it is still published from OTHER.
    r.trees[LOWER].apply_catalog([cam(1, LOWER, status="ON")], 9.0, complete=False)
    by_id = {i.device_id: i for i in r.catalog_for(peer(FakeLink()))}
    assert by_id[cid(1)].parent_id == ORG
    # OTHER deletes it: the NVR, which still lists it, publishes it again.
    r.trees[OTHER].apply_event(CI(device_id=cid(1), event="DEL"), 10.0)
    by_id = {i.device_id: i for i in r.catalog_for(peer(FakeLink()))}
    assert by_id[cid(1)].parent_id == SERVER and by_id[cid(1)].status == "ON"


def test_chunk_items_bounds_count_and_size() -> None:
    items = [cam(n, NVR) for n in range(25)]

    def build(chunk: tuple[CI, ...]) -> bytes:
        return manscdp.encode(manscdp.CatalogResponse(sn=1, device_id=SERVER, items=chunk))

    def count(body: bytes) -> int:
        msg = manscdp.decode(body)
        assert isinstance(msg, manscdp.CatalogResponse)
        return len(msg.items)

    bodies = chunk_items(items, build, 10, 100_000)
    assert [count(b) for b in bodies] == [10, 10, 5]
    small = chunk_items(items, build, 10, 600)
    assert all(len(b) <= 600 or count(b) == 1 for b in small)
    assert sum(count(b) for b in small) == 25
    assert chunk_items([], build, 10, 600) == []


def test_reply_charset_follows_the_declaration_of_ascii_bodies() -> None:
    gb = manscdp.Charset.GB2312
    utf8 = manscdp.Charset.UTF8
    assert reply_charset(b'<?xml version="1.0" encoding="GB2312"?><Query/>', utf8) is gb
    assert reply_charset(b'<?xml version="1.0" encoding="UTF-8"?><Query/>', utf8) is utf8
    assert reply_charset(b"<Query/>", utf8) is gb
    assert reply_charset(b'<?xml version="1.0" encoding="latin9"?><Query/>', utf8) is gb
    assert reply_charset("<Query>摄像机</Query>".encode(), utf8) is utf8
    body = "<Query>摄像机</Query>".encode("gb2312")
    assert reply_charset(body, manscdp.Charset.GB18030) is gb


@given(st.binary(max_size=300), st.sampled_from([None, *manscdp.Charset]))
def test_reply_charset_never_fails_on_any_body(
    body: bytes, detected: manscdp.Charset | None
) -> None:
    assert isinstance(reply_charset(body, detected), manscdp.Charset)
