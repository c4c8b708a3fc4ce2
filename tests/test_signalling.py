"""Signalling: method and MANSCDP dispatch, answers per gb28181-notes §4.1 (no sockets)."""

from __future__ import annotations

import pytest

from gb28181.metrics import Metrics
from gb28181.registrar import Registrar, RegistrarConfig, Source
from gb28181.signalling import DeviceUnreachable, Signalling
from gb28181.sip import (
    DigestVerifier,
    NonceIssuer,
    RequestReceived,
    SipRequest,
    SipResponse,
    TransactionKey,
    parse_message,
)
from gb28181.store import DeviceRecord

SERVER = "34020000002000000001"
DOMAIN = "3402000000"
DEVICE = "34020000001320000001"
T0 = 1_700_000_000.0


class Capture:
    """Stands in for the transaction layer's send_response."""

    def __init__(self) -> None:
        self.responses: list[SipResponse] = []

    def __call__(self, key: object, response: SipResponse, now: float) -> None:
        self.responses.append(response)


def make_signalling(registered: bool = True) -> tuple[Signalling, Capture]:
    reg = Registrar(
        RegistrarConfig(server_id=SERVER, domain=DOMAIN),
        DigestVerifier(NonceIssuer(b"s" * 32, 300), DOMAIN),
    )
    if registered:
        reg.restore(
            [
                DeviceRecord(
                    device_id=DEVICE,
                    kind="device",
                    host="192.0.2.1",
                    port=5060,
                    expires=3600,
                    registered_at=T0,
                    online=True,
                )
            ],
            T0 + 1,
        )
    sig = Signalling(
        reg, Metrics(), server_id=SERVER, max_size=65536, user_agent="t", clock=lambda: T0 + 2
    )
    capture = Capture()
    sig.layer.send_response = capture  # type: ignore[method-assign]
    return sig, capture


def request(method: str, body: bytes = b"", ctype: str | None = None) -> SipRequest:
    lines = [
        f"{method} sip:{SERVER}@{DOMAIN} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bKsig1",
        f"From: <sip:{DEVICE}@{DOMAIN}>;tag=a",
        f"To: <sip:{SERVER}@{DOMAIN}>",
        "Call-ID: sig-1",
        f"CSeq: 1 {method}",
        "Max-Forwards: 70",
    ]
    if ctype:
        lines.append(f"Content-Type: {ctype}")
    raw = "\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n"
    msg = parse_message(raw.encode() + body)
    assert isinstance(msg, SipRequest)
    return msg


def deliver(sig: Signalling, capture: Capture, req: SipRequest) -> SipResponse:
    key = TransactionKey("z9hG4bKsig1", "192.0.2.1:5060", req.method, True)
    sig._on_request(RequestReceived(req, key, ("192.0.2.1", 5060), None))
    assert capture.responses, "no response"
    return capture.responses[-1]


def keepalive_body(cmd: str = "Keepalive", root: str = "Notify", status: str = "OK") -> bytes:
    return (
        f'<?xml version="1.0" encoding="GB2312"?>\r\n<{root}>\r\n<CmdType>{cmd}</CmdType>\r\n'
        f"<SN>1</SN>\r\n<DeviceID>{DEVICE}</DeviceID>\r\n<Status>{status}</Status>\r\n</{root}>\r\n"
    ).encode()


MANSCDP = "Application/MANSCDP+xml"


def test_keepalive_from_registered_device_is_200_and_refreshes() -> None:
    sig, cap = make_signalling()
    assert deliver(sig, cap, request("MESSAGE", keepalive_body(), MANSCDP)).status == 200
    st = sig.registrar.get(DEVICE)
    assert st is not None and st.record.last_keepalive == T0 + 2


def test_keepalive_with_status_error_is_remembered() -> None:
    sig, cap = make_signalling()
    body = keepalive_body(status="ERROR")
    assert deliver(sig, cap, request("MESSAGE", body, MANSCDP)).status == 200
    st = sig.registrar.get(DEVICE)
    assert st is not None and st.record.extra["last_status"] == "ERROR"


def test_keepalive_from_unknown_sender_is_404() -> None:
    sig, cap = make_signalling(registered=False)
    assert deliver(sig, cap, request("MESSAGE", keepalive_body(), MANSCDP)).status == 404


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (keepalive_body(), "text/plain", 415),
        (b"\x00\x01garbage", MANSCDP, 400),
        (keepalive_body(root="Bogus"), MANSCDP, 415),
        (keepalive_body(cmd="SomethingNew"), MANSCDP, 200),
    ],
)
def test_message_answers(body: bytes, ctype: str, status: int) -> None:
    sig, cap = make_signalling()
    assert deliver(sig, cap, request("MESSAGE", body, ctype)).status == status


def test_unknown_method_is_501_with_allow_and_options_is_200() -> None:
    sig, cap = make_signalling()
    resp = deliver(sig, cap, request("FROBNICATE"))
    assert resp.status == 501
    assert "REGISTER" in (resp.headers.get("Allow") or "")
    assert deliver(sig, cap, request("OPTIONS")).status == 200


def test_handler_crash_becomes_500_not_silence() -> None:
    sig, cap = make_signalling()

    def boom(req: SipRequest, source: Source, now: float) -> SipResponse:
        raise RuntimeError("bug")

    sig.methods["OPTIONS"] = boom
    assert deliver(sig, cap, request("OPTIONS")).status == 500


def test_new_request_targets_observed_address_and_needs_registration() -> None:
    sig, _ = make_signalling()
    req = sig.new_request("MESSAGE", DEVICE, DEVICE, content_type=MANSCDP, body=b"<x/>")
    assert req.uri == f"sip:{DEVICE}@192.0.2.1:5060"
    assert req.cseq[1] == "MESSAGE"
    assert req.from_.uri.user == SERVER and req.from_.tag
    assert req.top_via.branch and req.top_via.branch.startswith("z9hG4bK")
    with pytest.raises(DeviceUnreachable):
        sig.new_request("MESSAGE", "34020000001320000099", "34020000001320000099")


def catalog_notify_body() -> bytes:
    return (
        '<?xml version="1.0" encoding="GB2312"?>\r\n<Notify>\r\n<CmdType>Catalog</CmdType>\r\n'
        f"<SN>5</SN>\r\n<DeviceID>{DEVICE}</DeviceID>\r\n<SumNum>1</SumNum>\r\n"
        '<DeviceList Num="1">\r\n<Item><DeviceID>34020000001320000009</DeviceID>'
        "<Event>OFF</Event></Item>\r\n</DeviceList>\r\n</Notify>\r\n"
    ).encode()


@pytest.mark.parametrize("method", ["MESSAGE", "NOTIFY"])
def test_on_manscdp_routes_to_the_callback_and_answers_200(method: str) -> None:
    sig, cap = make_signalling()
    seen: list[tuple[str, str, float]] = []
    sig.on_manscdp("Notify", "Catalog", lambda dev, msg, now: seen.append((dev, msg.cmd_type, now)))
    assert deliver(sig, cap, request(method, catalog_notify_body(), MANSCDP)).status == 200
    assert seen == [(DEVICE, "Catalog", T0 + 2)]


def test_on_manscdp_answers_200_even_when_the_callback_fails_and_404_to_strangers() -> None:
    sig, cap = make_signalling()

    def broken(dev: str, msg: object, now: float) -> None:
        raise RuntimeError("bug")

    sig.on_manscdp("Notify", "Catalog", broken)
    assert deliver(sig, cap, request("MESSAGE", catalog_notify_body(), MANSCDP)).status == 200
    sig, cap = make_signalling(registered=False)
    sig.on_manscdp("Notify", "Catalog", broken)
    assert deliver(sig, cap, request("MESSAGE", catalog_notify_body(), MANSCDP)).status == 404


def test_bodiless_notify_is_acknowledged() -> None:
    sig, cap = make_signalling()
    assert deliver(sig, cap, request("NOTIFY")).status == 200


def test_on_registered_fires_only_when_the_device_was_not_online() -> None:
    sig, cap = make_signalling(registered=False)
    fired: list[str] = []
    sig.on_registered.append(lambda dev, now: fired.append(dev))
    registrar = sig.registrar
    real = registrar.restore

    def accept(req: SipRequest, source: Source, now: float) -> SipResponse:
        real(
            [
                DeviceRecord(device_id=DEVICE, kind="device", host="192.0.2.1", port=5060,
                             expires=3600, registered_at=now, online=True)
            ],
            now,
        )  # fmt: skip
        return SipResponse(200, "OK", req.headers)

    registrar.handle_register = accept  # type: ignore[method-assign]
    deliver(sig, cap, request("REGISTER"))
    assert fired == [DEVICE]
    deliver(sig, cap, request("REGISTER"))  # a refresh while online
    assert fired == [DEVICE]
