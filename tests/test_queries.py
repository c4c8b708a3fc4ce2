"""QueryService: SN allocation, correlation of answers, timeouts and SIP errors (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from gb28181 import manscdp
from gb28181.queries import DeviceOffline, QueryRejected, QueryService, QueryTimeout
from gb28181.registrar import Registrar, RegistrarConfig
from gb28181.signalling import DeviceUnreachable, SipRequestTimeout
from gb28181.sip import DigestVerifier, Headers, NonceIssuer, SipRequest, SipResponse
from gb28181.store import DeviceRecord

DEVICE = "34020000001320000001"
OFFLINE = "34020000001320000002"
T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Sender:
    """Stands in for Signalling: records requests, answers with a scripted status."""

    def __init__(self, status: int = 200, error: Exception | None = None) -> None:
        self.status = status
        self.error = error
        self.sent: list[SipRequest] = []

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
        hdrs = Headers([("Content-Type", content_type or "")])
        return SipRequest(method, f"sip:{target_id}@192.0.2.1:5060", hdrs, body)

    async def send_to_device(self, request: SipRequest, device_id: str) -> SipResponse:
        self.sent.append(request)
        if self.error is not None:
            raise self.error
        return SipResponse(self.status, "X", Headers([]))


class Counts:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def query(self, cmd_type: str, outcome: str) -> None:
        self.seen.append((cmd_type, outcome))


def registrar() -> Registrar:
    reg = Registrar(
        RegistrarConfig(server_id="34020000002000000001", domain="3402000000"),
        DigestVerifier(NonceIssuer(b"s" * 32, 300), "3402000000"),
    )
    recs = [
        DeviceRecord(device_id=d, kind="device", host="192.0.2.1", port=5060, expires=3600,
                     registered_at=T0, online=online)
        for d, online in ((DEVICE, True), (OFFLINE, False))
    ]  # fmt: skip
    reg.restore(recs, T0 + 1)
    return reg


def service(sender: Sender) -> tuple[QueryService, Counts, Clock]:
    counts, clock = Counts(), Clock()
    return (
        QueryService(sender, registrar(), counts, clock=clock, default_timeout=5.0),
        counts,
        clock,
    )


async def sent_sn(sender: Sender) -> int:
    for _ in range(100):
        if sender.sent:
            break
        await asyncio.sleep(0)
    return manscdp.decode(sender.sent[-1].body).sn


async def test_query_resolves_with_the_matching_response() -> None:
    sender = Sender()
    svc, counts, clock = service(sender)
    task = asyncio.create_task(svc.query(DEVICE, manscdp.DeviceInfoQuery()))
    sn = await sent_sn(sender)
    query = manscdp.decode(sender.sent[0].body)
    assert isinstance(query, manscdp.DeviceInfoQuery) and query.device_id == DEVICE
    # A Response with another SN is not ours; the right one completes the query.
    svc.on_response(DEVICE, manscdp.DeviceInfoResponse(sn=sn + 1, device_id=DEVICE), clock())
    assert not task.done()
    clock.now += 0.25
    answer = manscdp.DeviceInfoResponse(sn=sn, device_id=DEVICE, manufacturer="Hik")
    svc.on_response(DEVICE, answer, clock())
    done = await task
    assert done.message == answer and not done.partial
    assert counts.seen == [("DeviceInfo", "sent"), ("DeviceInfo", "answered")]
    assert svc.round_trips[DEVICE] == [0.25]


async def test_multipart_answer_is_assembled_and_charset_remembered() -> None:
    sender = Sender()
    svc, _counts, clock = service(sender)
    task = asyncio.create_task(svc.query(DEVICE, manscdp.CatalogQuery()))
    sn = await sent_sn(sender)
    for n in (1, 2):
        item = manscdp.CatalogItem(device_id=f"3402000000132000000{n}", name=f"c{n}")
        chunk = manscdp.CatalogResponse(sn=sn, device_id=DEVICE, sum_num=2, items=(item,))
        wire = manscdp.decode(manscdp.encode(chunk, manscdp.Charset.UTF8))
        svc.on_response(DEVICE, wire, clock())
    done = await task
    assert [i.name for i in done.items] == ["c1", "c2"]
    assert svc.charsets[DEVICE] is manscdp.Charset.UTF8


async def test_no_answer_times_out_with_the_reason() -> None:
    sender = Sender()
    svc, counts, clock = service(sender)
    task = asyncio.create_task(svc.query(DEVICE, manscdp.DeviceStatusQuery(), timeout=5.0))
    await sent_sn(sender)
    clock.now += 5.0
    svc._on_timer(clock.now)  # what the armed loop timer does at the deadline
    with pytest.raises(QueryTimeout, match="did not answer DeviceStatus: timeout"):
        await task
    assert ("DeviceStatus", "timeout") in counts.seen


async def test_result_error_is_rejected() -> None:
    sender = Sender()
    svc, _counts, clock = service(sender)
    task = asyncio.create_task(svc.query(DEVICE, manscdp.PresetQuery()))
    sn = await sent_sn(sender)
    svc.on_response(DEVICE, manscdp.PresetQueryResponse(sn=sn, device_id=DEVICE, result="ERROR"),
                    clock())  # fmt: skip
    with pytest.raises(QueryRejected, match="Result ERROR"):
        await task


@pytest.mark.parametrize(
    ("sender", "error"),
    [
        (Sender(status=404), QueryRejected),
        (Sender(error=SipRequestTimeout("x")), QueryTimeout),
        (Sender(error=DeviceUnreachable("gone")), DeviceOffline),
    ],
)
async def test_sip_failure_ends_the_query(sender: Sender, error: type[Exception]) -> None:
    svc, _counts, _clock = service(sender)
    with pytest.raises(error):
        await svc.query(DEVICE, manscdp.DeviceInfoQuery())
    assert svc.correlator.pending_count == 0


async def test_offline_or_unknown_device_is_refused_before_sending() -> None:
    sender = Sender()
    svc, _counts, _clock = service(sender)
    for device in (OFFLINE, "34020000001320000099"):
        with pytest.raises(DeviceOffline):
            await svc.query(device, manscdp.DeviceInfoQuery())
        with pytest.raises(DeviceOffline):
            await svc.control(device, manscdp.DeviceControl(tele_boot="Boot"))
    assert sender.sent == []


async def test_control_waits_for_the_sip_answer_only() -> None:
    sender = Sender()
    svc, counts, _clock = service(sender)
    channel = "34020000001320000009"
    msg = manscdp.DeviceControl(device_id=channel, ptz_cmd=manscdp.ptz_stop())
    response = await svc.control(DEVICE, msg)
    assert response.status == 200
    sent = manscdp.decode(sender.sent[0].body)
    assert isinstance(sent, manscdp.DeviceControl)
    assert sent.device_id == channel and sent.ptz_cmd == "A50F0100000000B5" and sent.sn > 0
    assert str(sender.sent[0].request_uri).startswith(f"sip:{channel}@")
    assert counts.seen[-1] == ("DeviceControl", "answered")
    sender.status = 486
    with pytest.raises(QueryRejected, match="486"):
        await svc.control(DEVICE, msg)
    sender.error = SipRequestTimeout("no answer")
    with pytest.raises(QueryTimeout):
        await svc.control(DEVICE, msg)


async def test_close_fails_waiting_queries() -> None:
    sender = Sender()
    svc, _counts, _clock = service(sender)
    task = asyncio.create_task(svc.query(DEVICE, manscdp.DeviceInfoQuery()))
    await sent_sn(sender)
    svc.close()
    with pytest.raises(QueryTimeout, match="shutting down"):
        await task
