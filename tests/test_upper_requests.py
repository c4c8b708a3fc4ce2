"""Requests from an upper platform: DeviceInfo/DeviceStatus, catalog and alarm
subscriptions, alarms forwarded up, INVITEs kept to shared channels."""

from __future__ import annotations

from gb28181 import manscdp
from gb28181.sip import SipRequest, SipResponse, make_response
from gb28181.upper_requests import UpperRequests
from tests.uplink_helpers import (
    CAM,
    LOCAL,
    PUBLISHED,
    UPPER,
    make_service,
    source,
    upper_request,
)


async def test_device_info_query_from_the_upper_platform_is_answered_up() -> None:
    import asyncio

    service, sig = make_service()
    answers = UpperRequests(service)
    answers.channels = lambda: [CAM, "34020000001320000002"]
    answers.install()
    handler = sig.manscdp_handlers[("Query", "DeviceInfo")]
    body = manscdp.encode(manscdp.DeviceInfoQuery(device_id=LOCAL, sn=5))
    request = upper_request("MESSAGE", body)
    msg = manscdp.decode(body)
    response = handler(request, msg, source(), 1000.0)  # type: ignore[operator]
    assert response.status == 200
    await asyncio.sleep(0.01)
    ((sent, addr),) = sig.sent
    assert addr == ("192.0.2.10", 5060) and sent.to.uri.user == UPPER
    answer = manscdp.decode(sent.body)
    assert isinstance(answer, manscdp.DeviceInfoResponse)
    assert answer.sn == 5 and answer.device_id == LOCAL and answer.channel == 1
    # The same query from someone else goes where it went before (here: 404, unknown).
    other = handler(request, msg, source("198.51.100.7"), 1000.0)  # type: ignore[operator]
    assert other.status == 404


async def test_alarm_subscription_forwards_shared_alarms_by_notify() -> None:
    import asyncio

    service, sig = make_service()
    answers = UpperRequests(service)
    seen: list[str] = []

    def local_alarm(request: SipRequest, msg: object, src: object, now: float) -> SipResponse:
        seen.append(str(getattr(msg, "device_id", "")))
        return make_response(request, 200, to_tag="a")

    sig.manscdp_handlers[("Notify", "Alarm")] = local_alarm
    answers.install()
    query = manscdp.encode(manscdp.AlarmQuery(device_id=LOCAL, sn=3, start_alarm_priority=1))
    sub = upper_request("SUBSCRIBE", query, Event="presence;id=7", Expires="600")
    response = sig.methods["SUBSCRIBE"](sub, source(), 1000.0)  # type: ignore[operator]
    assert response.status == 200 and response.headers.get("Expires") == "600"
    assert response.to.tag

    def alarm(channel: str) -> tuple[SipRequest, manscdp.Message]:
        body = manscdp.encode(manscdp.AlarmNotify(device_id=channel, sn=9, alarm_priority=1))
        req = SipRequest(
            "MESSAGE",
            f"sip:{LOCAL}@192.0.2.1",
            upper_request("MESSAGE").headers,
            body,
        )
        return req, manscdp.decode(body)

    tap = sig.manscdp_handlers[("Notify", "Alarm")]
    req, msg = alarm(CAM)
    assert tap(req, msg, source("192.0.2.50"), 1001.0).status == 200  # type: ignore[operator]
    req, msg = alarm("34020000001320000002")  # not shared: not forwarded
    tap(req, msg, source("192.0.2.50"), 1001.0)  # type: ignore[operator]
    await asyncio.sleep(0.01)
    assert seen == [CAM, "34020000001320000002"]
    ((notify, addr),) = sig.sent
    assert notify.method == "NOTIFY" and addr == ("192.0.2.10", 5060)
    assert notify.call_id == sub.call_id and notify.headers.get("Event") == "presence;id=7"
    assert (notify.headers.get("Subscription-State") or "").startswith("active;expires=")
    forwarded = manscdp.decode(notify.body)
    assert forwarded.device_id == PUBLISHED and forwarded.cmd_type == "Alarm"

    # Unsubscribe in the dialog: nothing more is forwarded.
    from gb28181.sip import Headers

    lines = [(n, v) for _, n, v in sub.headers._items if n.lower() not in ("to", "cseq", "expires")]
    lines += [("To", f"{sub.headers.get('To')};tag={response.to.tag}"), ("CSeq", "2 SUBSCRIBE")]
    lines += [("Expires", "0")]
    unsub = SipRequest("SUBSCRIBE", sub.uri, Headers(lines), b"")
    assert sig.methods["SUBSCRIBE"](unsub, source(), 1002.0).status == 200  # type: ignore[operator]
    req, msg = alarm(CAM)
    tap(req, msg, source("192.0.2.50"), 1003.0)  # type: ignore[operator]
    await asyncio.sleep(0.01)
    assert len(sig.sent) == 1


def test_other_subscriptions_of_strangers_get_489() -> None:
    service, sig = make_service()
    answers = UpperRequests(service)
    answers.install()
    sub = upper_request("SUBSCRIBE", b"", Event="presence")
    response = sig.methods["SUBSCRIBE"](sub, source("198.51.100.7"), 1000.0)  # type: ignore[operator]
    assert response.status == 489


async def test_upper_platform_invites_only_shared_channels_and_is_identified() -> None:
    from types import SimpleNamespace

    service, sig = make_service()
    answers = UpperRequests(service)
    passed: list[str] = []

    def invite(request: SipRequest, src: object, now: float) -> None:
        passed.append(request.uri)

    async def identify(request: SipRequest, src: object) -> str:
        return "registered caller"

    inbound = SimpleNamespace(identify=identify, _peer_cert=lambda request, src: None)
    sig.methods["INVITE"] = invite
    principal = object()

    async def principal_of(upper_id: str) -> object:
        return principal if upper_id == UPPER else None

    answers.install(inbound=inbound, principal_of=principal_of)  # type: ignore[arg-type]
    handler = sig.methods["INVITE"]
    req = upper_request("INVITE")
    req.uri = "sip:34020000001320000002@192.0.2.1:5060"
    refused = handler(req, source(), 1000.0)  # type: ignore[operator]
    assert refused.status == 403 and "not-shared" in refused.reason
    req = upper_request("INVITE")
    req.uri = f"sip:{PUBLISHED}@192.0.2.1:5060"
    assert handler(req, source(), 1000.0) is None  # type: ignore[operator]
    assert passed == [f"sip:{CAM}@192.0.2.1:5060"]  # mapped back to our ID
    # The inbound side now knows the upper platform by its bound certificate...
    assert await inbound.identify(req, source()) is principal
    # ... and everyone else as before.
    assert await inbound.identify(req, source("198.51.100.7")) == "registered caller"


async def test_catalog_subscription_of_the_upper_platform_waits_for_its_principal() -> None:
    import asyncio

    service, sig = make_service()
    answers = UpperRequests(service)
    peers: list[object] = []

    class Responder:
        def handle_subscribe(self, peer: object, request: SipRequest, now: float) -> SipResponse:
            peers.append(peer)
            return make_response(request, 200, to_tag="s", headers=[("Expires", "3600")])

    principal = object()

    async def principal_of(upper_id: str) -> object:
        return principal

    answers.install(responder=Responder(), principal_of=principal_of)  # type: ignore[arg-type]
    sub = upper_request("SUBSCRIBE", b"", Event="Catalog;id=1", Expires="3600")
    assert sig.methods["SUBSCRIBE"](sub, source(), 1000.0) is None  # type: ignore[operator]
    await asyncio.sleep(0.01)
    ((answered, response),) = sig.responded
    assert answered is sub and response.status == 200
    (peer,) = peers
    assert getattr(peer, "principal", None) is principal
    assert getattr(peer, "share", None) == service.uplinks[UPPER].cfg.share
    assert dict(getattr(peer, "id_map", {})) == {CAM: PUBLISHED}
    # Known now: the next one is answered at once.
    again = upper_request("SUBSCRIBE", b"", Event="Catalog;id=2", Expires="3600")
    response = sig.methods["SUBSCRIBE"](again, source(), 1001.0)  # type: ignore[operator]
    assert response.status == 200 and len(peers) == 2


async def test_device_status_of_a_shared_channel_is_asked_of_its_device_and_relayed() -> None:
    import asyncio
    from types import SimpleNamespace

    service, sig = make_service()
    answers = UpperRequests(service)
    asked: list[tuple[str, manscdp.Message]] = []

    class Queries:
        async def query(self, device_id: str, message: manscdp.Message) -> object:
            asked.append((device_id, message))
            answer = manscdp.DeviceStatusResponse(
                device_id=message.device_id, sn=999, result="OK", online="ONLINE", status="OK"
            )
            return SimpleNamespace(messages=[answer])

    nvr = "34020000001180000001"
    answers.locate = lambda channel_id: nvr if channel_id.startswith("3402") else None
    answers.queries = Queries()  # type: ignore[assignment]
    answers.install()
    handler = sig.manscdp_handlers[("Query", "DeviceStatus")]
    body = manscdp.encode(manscdp.DeviceStatusQuery(device_id=PUBLISHED, sn=5))
    response = handler(upper_request("MESSAGE", body), manscdp.decode(body), source(), 1000.0)  # type: ignore[operator]
    assert response.status == 200
    await asyncio.sleep(0.01)
    ((device_id, query),) = asked
    assert device_id == nvr and query.device_id == CAM
    ((sent, _),) = sig.sent
    relayed = manscdp.decode(sent.body)
    assert isinstance(relayed, manscdp.DeviceStatusResponse)
    assert relayed.sn == 5 and relayed.device_id == PUBLISHED and relayed.online == "ONLINE"
    # A channel that is not shared with it is not found.
    body = manscdp.encode(manscdp.DeviceStatusQuery(device_id="34020000001320000002", sn=6))
    response = handler(upper_request("MESSAGE", body), manscdp.decode(body), source(), 1000.0)  # type: ignore[operator]
    assert response.status == 404
