"""AlarmService: alarms recorded newest first, counted, acknowledged with their SN."""

from __future__ import annotations

import asyncio

from gb28181 import manscdp
from gb28181.alarms import AlarmService
from gb28181.queries import QueryTimeout
from gb28181.sip import Headers, SipResponse

DEV = "34020000001320000001"
CH = "34020000001340000001"
T0 = 1_700_000_000.0


class FakeQueries:
    def __init__(self) -> None:
        self.sent: list[tuple[str, manscdp.Message]] = []
        self.error: Exception | None = None

    async def send(self, device_id: str, message: manscdp.Message) -> SipResponse:
        self.sent.append((device_id, message))
        if self.error is not None:
            raise self.error
        return SipResponse(200, "OK", Headers([]))


class Counts:
    def __init__(self) -> None:
        self.methods: list[str] = []

    def alarm(self, method: str) -> None:
        self.methods.append(method)


def alarm(sn: int, method: str | None = "5") -> manscdp.AlarmNotify:
    return manscdp.AlarmNotify(
        sn=sn,
        device_id=CH,
        alarm_priority=1,
        alarm_method=method,
        alarm_time="2024-01-01T08:00:00",
        info=manscdp.AlarmInfo(alarm_type="2"),
    )


async def test_alarm_is_recorded_counted_and_acknowledged() -> None:
    queries, counts = FakeQueries(), Counts()
    svc = AlarmService(queries, counts, keep=2)  # type: ignore[arg-type]
    rec = svc.on_alarm(DEV, alarm(17), T0)
    assert (rec.device_id, rec.channel_id, rec.method, rec.alarm_type) == (DEV, CH, "5", "2")
    await asyncio.sleep(0)
    [(device, ack)] = queries.sent
    assert device == DEV
    assert ack == manscdp.ResultResponse(cmd_type="Alarm", sn=17, device_id=CH, result="OK")
    assert manscdp.decode(manscdp.encode(ack)) == ack
    svc.on_alarm(DEV, alarm(18, None), T0 + 1)
    svc.on_alarm("34020000001320000002", alarm(19), T0 + 2)
    assert counts.methods == ["5", "unknown", "5"]
    total, page = svc.page(limit=10)
    assert total == 2 and [a.sn for a in page] == [19, 18]  # bounded by keep, newest first
    total, page = svc.page(limit=10, device_id=DEV)
    assert total == 1 and page[0].sn == 18
    await svc.stop()


async def test_failed_acknowledgement_is_only_logged() -> None:
    queries = FakeQueries()
    queries.error = QueryTimeout("no SIP response")
    svc = AlarmService(queries, Counts())  # type: ignore[arg-type]
    svc.on_alarm(DEV, alarm(1), T0)
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(queries.sent) == 1 and len(svc.alarms) == 1


def test_without_queries_nothing_is_sent() -> None:
    svc = AlarmService(None, Counts())
    assert svc.on_alarm(DEV, alarm(1), T0).sn == 1
