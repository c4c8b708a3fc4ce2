"""CatalogResponder: what another platform sees of our catalog, chunked, and its subscriptions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from authz import Principal, PrincipalKind
from gb28181 import manscdp
from gb28181.catalog import CatalogTree, CatalogTrees
from gb28181.catalog_responder import CatalogPeer, CatalogResponder
from gb28181.registrar import Source
from gb28181.sip import SipRequest, SipResponse, make_response, parse_message

SERVER = "34020000002000000001"
LOWER = "34020000002000000009"  # a lower platform (type 200)
OTHER = "34020000002000000008"  # another lower platform
NVR = "34020000001180000001"
GROUP = "34020000002150000001"
ORG = "34020000002160000001"
SUB_ORG = "34020000002160000002"
SECRET = "34020000001320000099"  # a specific-area channel

CI = manscdp.CatalogItem


def cam(n: int, parent: str | None = None, **kw: object) -> CI:
    fields: dict[str, object] = {"name": f"摄像机{n}", **kw}
    return CI(device_id=f"3402000000132{n:07d}", parent_id=parent, **fields)  # type: ignore[arg-type]


def cid(n: int) -> str:
    return f"3402000000132{n:07d}"


class FakeAuthorizer:
    """Visible: everything but SECRET, to principals of level <= 3; nothing to level 4."""

    def __init__(self) -> None:
        self.hidden: set[str] = {SECRET}

    def visible(self, principal: Principal, channel_ids: Iterable[str]) -> list[str]:
        if principal.level > 3:
            return []
        return [c for c in channel_ids if c not in self.hidden]


class FakeLink:
    def __init__(self, status: int = 200, via: str = "SIP/2.0/UDP 127.0.0.1:5060;rport") -> None:
        self.sent: list[SipRequest] = []
        self.status = status
        self._via = via

    def new_request(
        self,
        method: str,
        *,
        content_type: str,
        body: bytes,
        headers: list[tuple[str, str]] | None = None,
    ) -> SipRequest:
        raw = (
            f"{method} sip:{LOWER}@127.0.0.1:5070 SIP/2.0\r\n"
            f"Via: {self._via};branch=z9hG4bK{len(self.sent)}\r\n"
            f"From: <sip:{SERVER}@3402000000>;tag=a\r\nTo: <sip:{LOWER}@3402000000>\r\n"
            f"Call-ID: c{len(self.sent)}\r\nCSeq: 1 {method}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        request = parse_message(raw)
        assert isinstance(request, SipRequest)
        return request

    async def send(self, request: SipRequest) -> SipResponse:
        self.sent.append(request)
        await asyncio.sleep(0)
        return make_response(request, self.status, to_tag="t")

    def via(self) -> str:
        return self._via

    def contact(self) -> str:
        return f"<sip:{SERVER}@127.0.0.1:5060>"

    def bodies(self) -> list[manscdp.CatalogResponse]:
        out = []
        for r in self.sent:
            if r.body:
                msg = manscdp.decode(r.body)
                assert isinstance(msg, manscdp.CatalogResponse)
                out.append(msg)
        return out


def principal(level: int = 3, pid: str = LOWER) -> Principal:
    return Principal(pid, PrincipalKind.PLATFORM, "dept-9", level)


def trees() -> CatalogTrees:
    nvr = CatalogTree(NVR, SERVER)
    nvr.apply_catalog([cam(1, NVR, status="ON"), cam(2, NVR, status="OFF", password="pw")], 0.0)
    lower = CatalogTree(OTHER, SERVER)
    lower.apply_catalog(
        [
            CI(device_id="340200", name="合肥市"),
            CI(device_id=GROUP, name="公安", parent_id=OTHER),
            CI(device_id=ORG, name="东区", parent_id=GROUP, business_group_id=GROUP),
            CI(device_id=SUB_ORG, name="门岗", parent_id=ORG, business_group_id=GROUP),
            cam(10, SUB_ORG, status="ON", business_group_id=GROUP),
            cam(11, None, civil_code="340200", status="ON"),
            CI(device_id=SECRET, name="机要", parent_id=ORG, status="ON"),
        ],
        0.0,
    )
    own = CatalogTree(LOWER, SERVER)
    own.apply_catalog([cam(50, LOWER, status="ON")], 0.0)
    return CatalogTrees({NVR: nvr, OTHER: lower, LOWER: own})


def responder(
    online: set[str] | None = None, **kw: object
) -> tuple[CatalogResponder, FakeAuthorizer]:
    authz = FakeAuthorizer()
    up = online if online is not None else {NVR, OTHER, LOWER}
    r = CatalogResponder(trees(), authz, up.__contains__, server_id=SERVER, name="市平台", **kw)  # type: ignore[arg-type]
    return r, authz


def peer(link: FakeLink, **kw: object) -> CatalogPeer:
    return CatalogPeer(LOWER, kw.pop("principal", principal()), link, **kw)  # type: ignore[arg-type]


async def test_answer_query_sends_every_item_with_sumnum_and_sn_in_gb2312() -> None:
    r, _ = responder(items_per_message=3)
    link = FakeLink()
    query = manscdp.CatalogQuery(sn=77, device_id=SERVER)
    total = await r.answer_query(peer(link), query)
    assert total == 9
    bodies = link.bodies()
    assert len(bodies) == 3
    assert all(b.sn == 77 and b.sum_num == 9 and b.device_id == SERVER for b in bodies)
    assert [b.num for b in bodies] == [3, 3, 3]
    assert all(r.body.startswith(b'<?xml version="1.0" encoding="GB2312"?>') for r in link.sent)
    assert "摄像机10".encode("gb2312") in b"".join(r.body for r in link.sent)
    names = [i.name for b in bodies for i in b.items]
    assert "东区" in names
    assert r.answered == 1


async def test_answer_over_tcp_uses_larger_chunks_and_utf8_when_asked() -> None:
    r, _ = responder(items_per_message=2, items_per_message_stream=50)
    link = FakeLink(via="SIP/2.0/TCP 127.0.0.1:5060;rport")
    await r.answer_query(
        peer(link, charset=manscdp.Charset.UTF8), manscdp.CatalogQuery(sn=1, device_id=SERVER)
    )
    assert len(link.sent) == 1
    assert link.sent[0].body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')


async def test_answer_stops_when_the_peer_refuses() -> None:
    r, _ = responder(items_per_message=1, window=1)
    link = FakeLink(status=404)
    await r.answer_query(peer(link), manscdp.CatalogQuery(sn=1, device_id=SERVER))
    assert len(link.sent) == 1
    assert r.answered == 0


def subscribe(expires: int = 600, *, to_tag: str = "", cseq: int = 1) -> SipRequest:
    tag = f";tag={to_tag}" if to_tag else ""
    body = manscdp.encode(manscdp.CatalogQuery(sn=5, device_id=SERVER))
    raw = (
        f"SUBSCRIBE sip:{SERVER}@3402000000 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKs{cseq}\r\n"
        f"From: <sip:{LOWER}@3402000000>;tag=peer\r\nTo: <sip:{SERVER}@3402000000>{tag}\r\n"
        f"Call-ID: sub-1\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:{LOWER}@127.0.0.1:5070>\r\n"
        f"Event: Catalog;id=7\r\nExpires: {expires}\r\n"
        f"Content-Type: Application/MANSCDP+xml\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    request = parse_message(raw)
    assert isinstance(request, SipRequest)
    return request


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def notified(link: FakeLink) -> list[tuple[str | None, str | None]]:
    return [(i.device_id, i.event) for b in link.bodies() for i in b.items]


async def test_subscription_lifecycle_and_change_notifications() -> None:
    r, authz = responder()
    link = FakeLink()
    response = r.handle_subscribe(peer(link), subscribe(), 100.0)
    assert response.status == 200 and response.to.tag
    assert response.headers.get("Expires") == "600"
    await settle()
    # The bodiless NOTIFY that confirms the subscription, in its dialog.
    (first,) = link.sent
    assert first.method == "NOTIFY" and first.body == b""
    assert first.headers.get("Event") == "Catalog;id=7"
    assert first.headers.get("Subscription-State", "").startswith("active")
    assert first.call_id == "sub-1" and first.to.tag == "peer"
    assert first.uri == f"sip:{LOWER}@127.0.0.1:5070"

    tree = r.trees[OTHER]
    # Status events of published channels; an event of a hidden channel is not told.
    changes = tree.apply_events(
        [CI(device_id=cid(10), event="OFF"), CI(device_id=SECRET, event="OFF")], 101.0
    )
    r.notify_change(OTHER, changes, 101.0)
    await settle()
    assert notified(link) == [(cid(10), "OFF")]

    # A new channel under a new organisation: the organisation is added first.
    new_org = "34020000002160000003"
    changes = tree.apply_events(
        [
            CI(device_id=new_org, name="西区", parent_id=GROUP, event="ADD"),
            CI(device_id=cid(12), name="新", parent_id=new_org, event="ADD"),
        ],
        102.0,
    )
    r.notify_change(OTHER, changes, 102.0)
    await settle()
    assert notified(link)[1:] == [(new_org, "ADD"), (cid(12), "ADD")]

    # Becoming hidden is a DEL; becoming visible an ADD; removal a DEL; an UPDATE an UPDATE.
    authz.hidden = {cid(10)}
    change = tree.set_attributes(cid(10), 103.0, security_class=4)
    assert change is not None
    r.notify_change(OTHER, [change], 103.0)
    authz.hidden = set()
    change = tree.set_attributes(SECRET, 103.0, security_class=0)
    assert change is not None
    r.notify_change(OTHER, [change], 103.0)
    r.notify_change(OTHER, tree.remove([cid(11)]), 103.0)
    upd = tree.apply_event(cam(12, new_org, name="改名", event="UPDATE"), 103.0)
    assert upd is not None
    r.notify_change(OTHER, [upd], 103.0)
    await settle()
    assert notified(link)[3:] == [
        (cid(10), "DEL"),
        (SECRET, "ADD"),
        (cid(11), "DEL"),
        (cid(12), "UPDATE"),
    ]

    # Changes of the subscriber's own tree are never sent back to it.
    before = len(link.sent)
    own = r.trees[LOWER]
    r.notify_change(LOWER, own.apply_events([CI(device_id=cid(50), event="OFF")], 104.0), 104.0)
    await settle()
    assert len(link.sent) == before

    # Device availability: the NVR goes offline, then comes back.
    r.device_availability(NVR, False, 105.0)
    await settle()
    assert notified(link)[-2:] == [(cid(1), "OFF"), (cid(2), "OFF")]
    r.device_availability(NVR, True, 106.0)
    await settle()
    assert notified(link)[-2:] == [(cid(1), "ON"), (cid(2), "OFF")]

    # Refresh in the dialog, then unsubscribe: a final NOTIFY says terminated.
    tag = response.to.tag
    assert tag
    refreshed = r.handle_subscribe(None, subscribe(1200, to_tag=tag, cseq=2), 200.0)
    assert refreshed.status == 200 and refreshed.headers.get("Expires") == "1200"
    (sub,) = r.subscriptions.values()
    assert sub.expires_at == 1400.0
    gone = r.handle_subscribe(None, subscribe(0, to_tag=tag, cseq=3), 201.0)
    assert gone.status == 200 and not r.subscriptions
    await settle()
    assert link.sent[-1].headers.get("Subscription-State") == "terminated"
    assert r.handle_subscribe(None, subscribe(0, to_tag=tag, cseq=4), 202.0).status == 481


async def test_subscription_expires_and_is_swept() -> None:
    r, _ = responder(min_expires=30)
    link = FakeLink()
    response = r.handle_subscribe(peer(link), subscribe(5), 0.0)
    assert response.headers.get("Expires") == "30"  # clamped up to the minimum
    await settle()
    assert r.sweep(29.0) == 0
    assert r.sweep(30.0) == 1 and not r.subscriptions
    await settle()
    assert link.sent[-1].headers.get("Subscription-State") == "terminated;reason=timeout"


async def test_a_subscriber_that_refuses_notifies_is_dropped() -> None:
    r, _ = responder()
    link = FakeLink(status=481)
    r.handle_subscribe(peer(link), subscribe(), 0.0)
    await settle()
    assert not r.subscriptions


async def test_on_query_answers_registered_peers_and_hands_others_to_the_fallback() -> None:
    r, _ = responder(items_per_message=100)
    link = FakeLink()
    seen: list[str] = []

    async def principal_of(account: str, source: Source) -> Principal | None:
        seen.append(account)
        return principal()

    r.is_registered = {LOWER}.__contains__
    r.principal_of = principal_of
    r.link_of = lambda device_id, source: link
    query_body = manscdp.encode(manscdp.CatalogQuery(sn=9, device_id=SERVER))
    raw = (
        f"MESSAGE sip:{SERVER}@3402000000 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKq\r\n"
        f"From: <sip:{LOWER}@3402000000>;tag=q\r\nTo: <sip:{SERVER}@3402000000>\r\n"
        "Call-ID: q-1\r\nCSeq: 1 MESSAGE\r\n"
        f"Content-Type: Application/MANSCDP+xml\r\nContent-Length: {len(query_body)}\r\n\r\n"
    ).encode() + query_body
    request = parse_message(raw)
    assert isinstance(request, SipRequest)
    msg = manscdp.decode(request.body)
    source = Source("UDP", "127.0.0.1", 5070)
    answer = r.on_query(request, msg, source, 0.0)
    assert answer is not None and answer.status == 200
    await settle()
    assert seen == [LOWER]
    (body,) = link.bodies()
    assert body.sn == 9 and body.sum_num == 9

    r.is_registered = lambda _id: False
    assert (answer := r.on_query(request, msg, source, 0.0)) is not None and answer.status == 404
    r.query_fallback = lambda req, m, src, now: make_response(req, 202)
    assert (answer := r.on_query(request, msg, source, 0.0)) is not None and answer.status == 202


async def test_on_subscribe_resolves_the_principal_before_publishing() -> None:
    r, _ = responder()
    link = FakeLink()
    resolved = asyncio.Event()

    async def principal_of(account: str, source: Source) -> Principal | None:
        await resolved.wait()
        return principal()

    r.is_registered = {LOWER}.__contains__
    r.principal_of = principal_of
    r.link_of = lambda device_id, source: link
    response = r.on_subscribe(subscribe(), Source("UDP", "127.0.0.1", 5070), 0.0)
    assert response is not None and response.status == 200
    (sub,) = r.subscriptions.values()
    assert not sub.ready and not sub.published
    resolved.set()
    await settle()
    assert sub.ready and cid(10) in sub.published and SECRET not in sub.published
    assert link.sent and link.sent[0].method == "NOTIFY"


async def test_on_subscribe_other_events_go_to_the_fallback_or_489() -> None:
    r, _ = responder()
    alarm = parse_message(
        bytes(subscribe()).replace(b"Event: Catalog;id=7", b"Event: presence;id=1")
    )
    assert isinstance(alarm, SipRequest)
    source = Source("UDP", "127.0.0.1", 5070)
    assert (answer := r.on_subscribe(alarm, source, 0.0)) is not None and answer.status == 489
    r.subscribe_fallback = lambda req, src, now: make_response(req, 200)
    assert (answer := r.on_subscribe(alarm, source, 0.0)) is not None and answer.status == 200


@pytest.mark.parametrize("bad", [0, -1])
def test_constructor_rejects_bad_chunking(bad: int) -> None:
    with pytest.raises(ValueError):
        CatalogResponder(
            CatalogTrees(), None, lambda _id: True, server_id=SERVER, items_per_message=bad
        )


class BrokenLink(FakeLink):
    async def send(self, request: SipRequest) -> SipResponse:
        self.sent.append(request)
        raise TimeoutError("no answer")


async def test_answer_stops_when_the_peer_does_not_answer() -> None:
    r, _ = responder(items_per_message=1, window=2)
    link = BrokenLink()
    assert await r.answer_query(peer(link), manscdp.CatalogQuery(sn=1, device_id=SERVER)) == 9
    assert 1 <= len(link.sent) <= 2  # at most the window's worth, then nothing more
    assert r.answered == 0


async def test_subscribe_edge_cases() -> None:
    r, _ = responder()
    link = FakeLink()
    # A fetch (Expires: 0 on a new subscription) keeps nothing.
    fetch = r.handle_subscribe(peer(link), subscribe(0), 0.0)
    assert fetch.status == 200 and fetch.headers.get("Expires") == "0" and not r.subscriptions
    # A refresh of a subscription we do not hold, or without a peer: 481.
    assert r.handle_subscribe(None, subscribe(60, to_tag="nope"), 0.0).status == 481
    assert r.handle_subscribe(None, subscribe(60), 0.0).status == 481
    # A refresh whose CSeq went backwards is refused by the dialog (500).
    response = r.handle_subscribe(peer(link), subscribe(60, cseq=5), 0.0)
    tag = response.to.tag
    assert tag
    assert r.handle_subscribe(None, subscribe(60, to_tag=tag, cseq=4), 1.0).status == 500
    # A new SUBSCRIBE from the same peer replaces its old subscription.
    again = parse_message(bytes(subscribe(60)).replace(b"Call-ID: sub-1", b"Call-ID: sub-2"))
    assert isinstance(again, SipRequest)
    assert r.handle_subscribe(peer(link), again, 2.0).status == 200
    assert [s.dialog.call_id for s in r.subscriptions.values()] == ["sub-2"]
    await settle()
    await r.stop()


async def test_on_subscribe_from_an_unknown_sender_is_404() -> None:
    r, _ = responder()
    answer = r.on_subscribe(subscribe(), Source("UDP", "127.0.0.1", 5070), 0.0)
    assert answer is not None and answer.status == 404


async def test_set_principal_recomputes_what_a_subscriber_sees() -> None:
    r, _ = responder()
    link = FakeLink()
    r.handle_subscribe(peer(link, principal=None), subscribe(), 0.0)
    (sub,) = r.subscriptions.values()
    assert sub.ready and sub.published == set()
    assert r.set_principal(LOWER, principal()) == 1
    assert cid(10) in sub.published and ORG in sub.published and SECRET not in sub.published
    assert r.set_principal(LOWER, principal()) == 0  # unchanged
    assert r.set_principal(OTHER, principal()) == 0  # no subscription of its own
    tree = r.trees[OTHER]
    r.notify_change(OTHER, tree.apply_events([CI(device_id=cid(10), event="OFF")], 1.0), 1.0)
    await settle()
    assert notified(link) == [(cid(10), "OFF")]


# -- a channel two trees list: changes follow the channel index's winner ----------------------

NVR2 = "34020000001180000002"  # the NVR a camera moved to


def subscribed(r: CatalogResponder, now: float = 100.0) -> FakeLink:
    """A confirmed subscription of LOWER; the link with the confirming NOTIFY cleared."""
    link = FakeLink()
    r.handle_subscribe(peer(link), subscribe(), now)
    link.sent.clear()
    return link


def moved_camera(r: CatalogResponder, at: float = 10.0) -> CatalogTree:
    """cam(1) of NVR now also listed, more recently, by NVR2 (the old NVR not re-synced)."""
    nvr2 = CatalogTree(NVR2, SERVER)
    r.trees[NVR2] = nvr2
    nvr2.apply_catalog([cam(1, NVR2, name="搬来的", status="ON")], at)
    assert r.trees.device_of(cid(1)) == NVR2
    return nvr2


def items(link: FakeLink) -> list[manscdp.CatalogItem]:
    return [i for b in link.bodies() for i in b.items]


async def test_changes_from_a_tree_that_does_not_carry_the_channel_are_not_sent() -> None:
    r, _ = responder()
    nvr2 = moved_camera(r)
    link = subscribed(r)
    (sub,) = r.subscriptions.values()
    assert sub.carriers[cid(1)] == NVR2
    old = r.trees[NVR]
    r.notify_change(NVR, old.apply_events([CI(device_id=cid(1), event="OFF")], 101.0), 101.0)
    upd = old.apply_event(cam(1, NVR, name="旧名", event="UPDATE"), 102.0)
    assert upd is not None
    r.notify_change(NVR, [upd], 102.0)
    r.notify_change(NVR, old.apply_events([CI(device_id=cid(1), event="DEL")], 103.0), 103.0)
    r.device_availability(NVR, False, 104.0)
    await settle()
    # Only the NVR's own channel goes OFF; the moved camera is still published from NVR2.
    assert notified(link) == [(cid(2), "OFF")]
    assert cid(1) in sub.published and sub.carriers[cid(1)] == NVR2
    # The carrier's changes are sent.
    r.notify_change(NVR2, nvr2.apply_events([CI(device_id=cid(1), event="OFF")], 105.0), 105.0)
    await settle()
    assert notified(link)[1:] == [(cid(1), "OFF")]


async def test_a_del_from_the_carrier_while_another_tree_lists_the_channel_is_an_update() -> None:
    r, _ = responder()
    nvr2 = moved_camera(r)
    link = subscribed(r)
    (sub,) = r.subscriptions.values()
    r.notify_change(NVR2, nvr2.apply_events([CI(device_id=cid(1), event="DEL")], 101.0), 101.0)
    await settle()
    (item,) = items(link)
    # Still published, now from the old NVR: its item (name, status), under our platform.
    assert (item.device_id, item.event, item.name) == (cid(1), "UPDATE", "摄像机1")
    assert item.parent_id == SERVER and item.status == "ON" and item.password is None
    assert cid(1) in sub.published and sub.carriers[cid(1)] == NVR
    # Once no other tree lists it, the DEL is a DEL.
    old = r.trees[NVR]
    r.notify_change(NVR, old.apply_events([CI(device_id=cid(1), event="DEL")], 102.0), 102.0)
    await settle()
    assert notified(link)[1:] == [(cid(1), "DEL")]
    assert cid(1) not in sub.published and cid(1) not in sub.carriers


async def test_a_change_of_carrier_is_sent_as_an_update_of_the_item_as_now_published() -> None:
    r, _ = responder()
    link = subscribed(r)
    (sub,) = r.subscriptions.values()
    assert sub.carriers[cid(1)] == NVR
    # The camera moves to the lower platform, under an organisation not published yet.
    new_org = "34020000002160000003"
    lower = r.trees[OTHER]
    changes = lower.apply_events(
        [
            CI(device_id=new_org, name="西区", parent_id=GROUP, event="ADD"),
            cam(1, new_org, name="西门", status="OFF", event="ADD"),
        ],
        101.0,
    )
    r.notify_change(OTHER, changes, 101.0)
    await settle()
    org, item = items(link)
    assert (org.device_id, org.event) == (new_org, "ADD")
    assert (item.device_id, item.event, item.name) == (cid(1), "UPDATE", "西门")
    assert item.parent_id == new_org and item.status == "OFF"
    assert sub.carriers[cid(1)] == OTHER and new_org in sub.published
    # The old NVR's news of it are no longer the channel's.
    old = r.trees[NVR]
    r.notify_change(NVR, old.apply_events([CI(device_id=cid(1), event="OFF")], 102.0), 102.0)
    await settle()
    assert len(items(link)) == 2


async def test_a_subscriber_listing_the_channel_itself_still_gets_it_from_its_carrier() -> None:
    r, _ = responder()
    link = subscribed(r)
    (sub,) = r.subscriptions.values()
    # The subscriber lists the camera too, most recently: what it lists came from it.
    own = r.trees[LOWER]
    r.notify_change(LOWER, own.apply_events([cam(1, LOWER, event="ADD")], 101.0), 101.0)
    assert r.trees.device_of(cid(1)) == LOWER
    old = r.trees[NVR]
    r.notify_change(NVR, old.apply_events([CI(device_id=cid(1), event="OFF")], 102.0), 102.0)
    await settle()
    assert notified(link) == [(cid(1), "OFF")]
    assert sub.carriers[cid(1)] == NVR


async def test_a_channel_one_tree_lists_is_told_as_before() -> None:
    r, _ = responder()
    moved_camera(r)  # a contested channel elsewhere changes nothing for cam(2)
    link = subscribed(r)
    (sub,) = r.subscriptions.values()
    assert sub.carriers[cid(2)] == NVR
    nvr = r.trees[NVR]
    upd = nvr.apply_event(cam(2, NVR, name="改名", status="OFF", event="UPDATE"), 101.0)
    assert upd is not None
    r.notify_change(NVR, [upd], 101.0)
    r.notify_change(NVR, nvr.apply_events([CI(device_id=cid(2), event="ON")], 102.0), 102.0)
    r.device_availability(NVR, False, 103.0)
    r.notify_change(NVR, nvr.apply_events([CI(device_id=cid(2), event="DEL")], 104.0), 104.0)
    r.notify_change(NVR, nvr.apply_events([cam(2, NVR, status="ON", event="ADD")], 105.0), 105.0)
    await settle()
    assert notified(link) == [
        (cid(2), "UPDATE"),
        (cid(2), "ON"),
        (cid(2), "OFF"),
        (cid(2), "DEL"),
        (cid(2), "ADD"),
    ]
    assert sub.carriers[cid(2)] == NVR
