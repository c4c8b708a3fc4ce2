"""SubscriptionTable (sans-IO) and SubscriptionService against a fake sender."""

from __future__ import annotations

import asyncio

import pytest

from gb28181 import manscdp
from gb28181.signalling import SipRequestTimeout
from gb28181.sip import Headers, SipRequest, SipResponse, make_response
from gb28181.subscriptions import (
    SubscriptionService,
    SubscriptionState,
    SubscriptionTable,
    refresh_delay,
)

DEV = "34020000001320000001"
SERVER = "34020000002000000001"


class FakeSender:
    def __init__(self, answers: list[int | Exception]) -> None:
        self.answers = answers
        self.sent: list[SipRequest] = []
        self.n = 0

    def contact(self) -> str:
        return f"<sip:{SERVER}@127.0.0.1:5060>"

    def new_request(
        self,
        method: str,
        target_id: str,
        device_id: str,
        *,
        content_type: str | None = None,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> SipRequest:
        self.n += 1
        h = Headers(
            [
                ("Via", "SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bKx" + str(self.n)),
                ("From", f"<sip:{SERVER}@3402000000>;tag=ours{self.n}"),
                ("To", f"<sip:{target_id}@3402000000>"),
                ("Call-ID", f"call{self.n}"),
                ("CSeq", f"{self.n} {method}"),
                *([("Content-Type", content_type)] if content_type else []),
                *(headers or []),
            ]
        )
        return SipRequest(method, f"sip:{target_id}@10.0.0.2:5060", h, body)

    async def send_to_device(self, request: SipRequest, device_id: str) -> SipResponse:
        self.sent.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return make_response(
            request,
            answer,
            to_tag="theirs",
            headers=[("Contact", f"<sip:{DEV}@10.0.0.2:5060>"), ("Expires", "60")],
        )


def _notify(sub_request: SipRequest, cseq: int, state: str = "active") -> SipRequest:
    h = Headers(
        [
            ("Via", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKn" + str(cseq)),
            ("From", f"<sip:{DEV}@3402000000>;tag=theirs"),
            ("To", str(sub_request.headers.get("From"))),
            ("Call-ID", sub_request.call_id),
            ("CSeq", f"{cseq} NOTIFY"),
            ("Contact", f"<sip:{DEV}@10.0.0.2:5060>"),
            ("Event", str(sub_request.headers.get("Event"))),
            ("Subscription-State", state),
        ]
    )
    return SipRequest("NOTIFY", f"sip:{SERVER}@127.0.0.1:5060", h, b"")


def _service(answers: list[int | Exception]) -> tuple[SubscriptionService, FakeSender, list[str]]:
    sender = FakeSender(answers)
    now = [1000.0]
    service = SubscriptionService(sender, clock=lambda: now[0], expires=3600)
    refused: list[str] = []
    service.on_refused.append(lambda dev, event, reason: refused.append(reason))
    return service, sender, refused


def _body() -> manscdp.Message:
    return manscdp.CatalogQuery(device_id=DEV, sn=7)


def test_refresh_delay_leaves_a_margin() -> None:
    assert refresh_delay(3600) == 3300
    assert refresh_delay(60) == 54
    assert refresh_delay(10) == 5


def test_table_due_only_after_refresh_time() -> None:
    table = SubscriptionTable()
    sub = table.start(DEV, "Catalog", _body())
    assert table.due(0.0) == []
    request = FakeSender([]).new_request("SUBSCRIBE", DEV, DEV)
    table.granted(sub, make_response(request, 200, headers=[("Expires", "100")]), 3600, 0.0)
    assert sub.expires == 100 and sub.expires_at == 100.0
    assert table.due(89.0) == [] and table.due(90.0) == [sub]
    assert table.get(DEV, "catalog") is sub
    assert table.drop(DEV, "Catalog") is sub and list(table) == []


async def test_accepted_subscribe_becomes_active_and_refreshes_in_dialog() -> None:
    service, sender, refused = _service([200, 200])
    await service.subscribe(DEV, "Catalog", _body())
    sub = service.table.get(DEV, "Catalog")
    assert sub is not None and sub.state is SubscriptionState.ACTIVE
    first = sender.sent[0]
    assert first.headers.get("Event") == f"Catalog;id={sub.event_id}"
    assert first.headers.get("Expires") == "3600"
    assert first.headers.get("Contact") == sender.contact()
    assert b"<CmdType>Catalog</CmdType>" in first.body
    assert sub.expires_at == 1060.0
    assert service.refresh_due(1050.0) == 0
    assert service.refresh_due(1054.0) == 1
    await asyncio.gather(*service._tasks)
    refresh = sender.sent[1]
    assert refresh.call_id == first.call_id and refresh.cseq == (2, "SUBSCRIBE")
    assert refresh.uri == f"sip:{DEV}@10.0.0.2:5060"
    assert refresh.to.tag == "theirs" and refresh.from_.tag == first.from_.tag
    assert sub.state is SubscriptionState.ACTIVE and refused == []


@pytest.mark.parametrize("answer", [489, SipRequestTimeout("no answer")])
async def test_refused_or_unanswered_subscribe_is_reported(answer: int | Exception) -> None:
    service, _, refused = _service([answer])
    await service.subscribe(DEV, "Catalog", _body())
    sub = service.table.get(DEV, "Catalog")
    assert sub is not None and sub.state is SubscriptionState.REFUSED
    assert len(refused) == 1


async def test_failed_refresh_is_reported() -> None:
    service, _, refused = _service([200, 481])
    await service.subscribe(DEV, "Catalog", _body())
    service.refresh_due(5000.0)
    await asyncio.gather(*service._tasks)
    assert refused and "481" in refused[0]


async def test_notify_in_dialog_is_counted_and_terminated_ends_it() -> None:
    service, sender, refused = _service([200])
    await service.subscribe(DEV, "Catalog", _body())
    sub = service.table.get(DEV, "Catalog")
    assert sub is not None
    service.receive_notify(_notify(sender.sent[0], 1), 1001.0)
    assert sub.notifies == 1
    service.receive_notify(_notify(sender.sent[0], 2, "terminated;reason=timeout"), 1002.0)
    assert sub.state is SubscriptionState.ENDED and "timeout" in refused[0]
    assert sub.dialog is None


async def test_notify_before_the_200_creates_the_dialog() -> None:
    service, sender, _ = _service([])
    gate: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()

    async def slow(request: SipRequest, device_id: str) -> SipResponse:
        sender.sent.append(request)
        return await gate

    sender.send_to_device = slow  # type: ignore[method-assign]
    task = service.subscribe(DEV, "Catalog", _body())
    await asyncio.sleep(0)
    request = sender.sent[0]
    service.receive_notify(_notify(request, 1), 1000.5)
    sub = service.table.get(DEV, "Catalog")
    assert sub is not None and sub.notifies == 1
    gate.set_result(make_response(request, 200, to_tag="theirs"))
    await task
    assert sub.state is SubscriptionState.ACTIVE and sub.dialog is not None
    assert len(service.table.dialogs) == 1


async def test_unknown_notify_and_device_offline() -> None:
    service, _sender, _ = _service([200])
    service.receive_notify(_notify(FakeSender([]).new_request("SUBSCRIBE", DEV, DEV), 1), 1.0)
    await service.subscribe(DEV, "Catalog", _body())
    service.device_offline(DEV)
    assert service.table.get(DEV, "Catalog") is None and len(service.table.dialogs) == 0
    await service.stop()
