"""Fakes for the cascade unit tests: a Signalling that records what is sent, an
UplinkService over it, and requests as an upper platform sends them."""

from __future__ import annotations

import random
from types import SimpleNamespace

from gb28181.config import UpstreamConfig
from gb28181.metrics import Metrics
from gb28181.registrar import Source
from gb28181.sip import Headers, SipRequest, SipResponse, make_response
from gb28181.uplink_service import UplinkService

UPPER = "44010000002000000001"
LOCAL = "34020000002000000001"
PASSWORD = "upper-secret"


class FakeSignalling:
    """What UplinkService uses of Signalling; records what is sent."""

    def __init__(self) -> None:
        self.transport = SimpleNamespace(local_addr=("192.0.2.1", 5060), connection=lambda c: None)
        self.methods: dict[str, object] = {}
        self.manscdp_handlers: dict[tuple[str, str], object] = {}
        self.registrar = SimpleNamespace(get=lambda device_id: None)
        self.sent: list[tuple[SipRequest, tuple[str, int]]] = []
        self.responded: list[tuple[SipRequest, SipResponse]] = []

    def respond(self, request: SipRequest, response: SipResponse) -> bool:
        self.responded.append((request, response))
        return True

    async def send_request(
        self, request: SipRequest, addr: tuple[str, int], *, conn_id: object = None
    ) -> SipResponse:
        self.sent.append((request, addr))
        return make_response(request, 200, to_tag="up")


CAM = "34020000001320000001"
PUBLISHED = "44010000001320000001"


def make_service(**overrides: object) -> tuple[UplinkService, FakeSignalling]:

    values: dict[str, object] = {
        "id": UPPER,
        "host": "192.0.2.10",
        "password": PASSWORD,
        "share": (CAM, "3402000000131", "34020000002150000001"),
        "id_map": ((CAM, PUBLISHED),),
    }
    values.update(overrides)
    sig = FakeSignalling()
    service = UplinkService(
        sig,  # type: ignore[arg-type]
        [UpstreamConfig(**values)],  # type: ignore[arg-type]
        Metrics(),
        server_id=LOCAL,
        local_host="192.0.2.1",
        clock=lambda: 1000.0,
        rng=random.Random(1),
    )
    service._addresses[UPPER] = {"192.0.2.10"}
    return service, sig


def source(host: str = "192.0.2.10") -> Source:
    return Source("UDP", host, 5060)


def upper_request(method: str, body: bytes = b"", **headers: str) -> SipRequest:
    lines = [
        ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKu1"),
        ("From", f"<sip:{UPPER}@4401000000>;tag=f1"),
        ("To", f"<sip:{LOCAL}@4401000000>"),
        ("Call-ID", "c1@192.0.2.10"),
        ("CSeq", f"1 {method}"),
        ("Contact", f"<sip:{UPPER}@192.0.2.10:5060>"),
        *headers.items(),
    ]
    if body:
        lines.append(("Content-Type", "Application/MANSCDP+xml"))
    return SipRequest(method, f"sip:{LOCAL}@192.0.2.1:5060", Headers(lines), body)
