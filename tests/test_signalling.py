"""Signalling: method and MANSCDP dispatch, answers per gb28181-notes §4.1 (no sockets)."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gb28181.metrics import Metrics
from gb28181.registrar import Registrar, RegistrarConfig, Source
from gb28181.signalling import DeviceUnreachable, Signalling
from gb28181.sip import (
    DigestChallenge,
    DigestVerifier,
    NonceIssuer,
    RequestReceived,
    SipRequest,
    SipResponse,
    TransactionKey,
    build_authorization,
    make_response,
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


# -- answers given later, and requests routed to the owner of a dialog -----------------------


def _wire(sig: Signalling) -> list[SipResponse]:
    """The real transaction layer (not the capture): what it queues for sending."""
    sent: list[SipResponse] = []

    def flush() -> None:
        for out in sig.layer.messages_to_send():
            if isinstance(out.message, SipResponse):
                sent.append(out.message)

    sig.transport.flush = flush  # type: ignore[method-assign]
    return sent


def _feed(sig: Signalling, raw: str) -> None:
    msg = parse_message(raw.replace("\n", "\r\n").encode())
    sig.layer.receive_message(msg, ("192.0.2.1", 5060), T0 + 2, reliable=False)
    sig._drain()
    sig.transport.flush()


def _invite(method: str = "INVITE", branch: str = "z9hG4bKinv1", to_tag: str = "") -> str:
    tag = f";tag={to_tag}" if to_tag else ""
    return (
        f"{method} sip:{DEVICE}@{DOMAIN} SIP/2.0\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\n"
        f"From: <sip:{DEVICE}@{DOMAIN}>;tag=a\nTo: <sip:{SERVER}@{DOMAIN}>{tag}\n"
        f"Call-ID: inv-1\nCSeq: {2 if method == 'BYE' else 1} {method}\n"
        "Max-Forwards: 70\nContent-Length: 0\n\n"
    )


def test_a_handler_answers_later_and_its_dialog_takes_ack_bye_and_cancel() -> None:
    sig = Signalling(
        Registrar(
            RegistrarConfig(server_id=SERVER, domain=DOMAIN),
            DigestVerifier(NonceIssuer(b"s" * 32, 300), DOMAIN),
        ),
        Metrics(),
        server_id=SERVER,
        max_size=65536,
        user_agent="t",
        clock=lambda: T0 + 2,
    )
    sent = _wire(sig)
    pending: list[SipRequest] = []
    seen: list[str] = []

    def on_invite(req: SipRequest, source: Source, now: float) -> None:
        pending.append(req)
        sig.in_dialog[req.call_id] = owner

    def owner(req: SipRequest, source: Source, now: float) -> SipResponse | None:
        seen.append(req.method)
        return SipResponse(200, "OK", req.headers) if req.method == "BYE" else None

    sig.methods["INVITE"] = on_invite  # type: ignore[assignment]
    _feed(sig, _invite())
    assert sent == []  # nothing yet: the handler answers later
    assert sig.respond(pending[0], make_response(pending[0], 100))
    assert sig.respond(pending[0], make_response(pending[0], 200, to_tag="t"))
    assert [r.status for r in sent] == [100, 200]
    assert not sig.respond(pending[0], make_response(pending[0], 486))  # already answered
    _feed(sig, _invite("ACK", "z9hG4bKack1", "t"))
    _feed(sig, _invite("BYE", "z9hG4bKbye1", "t"))
    assert seen == ["ACK", "BYE"] and sent[-1].status == 200
    # A second INVITE is cancelled while pending: the layer answers the CANCEL, the owner
    # is told (and answers the INVITE 487 itself).
    _feed(sig, _invite(branch="z9hG4bKinv2").replace("inv-1", "inv-2"))
    sig.in_dialog["inv-2"] = owner
    _feed(sig, _invite("CANCEL", "z9hG4bKinv2").replace("inv-1", "inv-2"))
    assert seen[-1] == "CANCEL" and sent[-1].status == 200 and sent[-1].cseq[1] == "CANCEL"


# -- the direct road: new non-INVITE requests straight from the transport --------------------


def _road(direct: bool) -> tuple[Signalling, list[bytes]]:
    """A signalling stack fed by datagrams, answering on the direct road or through events.

    Nonces are deterministic (fixed entropy, fixed clock) so that both roads can be compared
    byte for byte once the random To tags are masked.
    """
    reg = Registrar(
        RegistrarConfig(server_id=SERVER, domain=DOMAIN, default_password="secret123"),
        DigestVerifier(NonceIssuer(b"s" * 32, 300, entropy=lambda n: b"\x01" * n), DOMAIN),
    )
    sig = Signalling(
        reg, Metrics(), server_id=SERVER, max_size=65536, user_agent="t", clock=lambda: T0 + 2
    )
    if not direct:
        sig.transport.on_request = None
    wire: list[bytes] = []
    sig.transport._write = lambda data, addr, conn_id: wire.append(data)  # type: ignore[method-assign]
    return sig, wire


def _register_datagram(branch: str, cseq: int, auth: str = "", expires: int = 3600) -> bytes:
    lines = [
        f"REGISTER sip:{SERVER}@{DOMAIN} SIP/2.0",
        f"Via: SIP/2.0/UDP 10.0.0.9:5060;rport;branch={branch}",
        f"From: <sip:{DEVICE}@{DOMAIN}>;tag=reg1",
        f"To: <sip:{DEVICE}@{DOMAIN}>",
        "Call-ID: road-reg@10.0.0.9",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{DEVICE}@10.0.0.9:5060>",
        "Max-Forwards: 70",
        "User-Agent: IP Camera",
        f"Expires: {expires}",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def _keepalive_datagram(branch: str, sn: int, device: str = DEVICE) -> bytes:
    body = keepalive_body().replace(DEVICE.encode(), device.encode())
    head = (
        f"MESSAGE sip:{SERVER}@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.9:5060;rport;branch={branch}\r\n"
        f"From: <sip:{device}@{DOMAIN}>;tag=ka{sn}\r\nTo: <sip:{SERVER}@{DOMAIN}>\r\n"
        f"Call-ID: road-ka-{sn}\r\nCSeq: {sn} MESSAGE\r\nMax-Forwards: 70\r\n"
        f"Content-Type: Application/MANSCDP+xml\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


_TAG = re.compile(rb"(\r\nTo: [^\r]*;tag=)[^;\r]+")


def _masked(data: bytes) -> bytes:
    return _TAG.sub(rb"\1*", data)


def _session(sig: Signalling, wire: list[bytes]) -> list[bytes]:
    """A device's life on one road: challenge, register, keepalives, retransmissions, errors."""
    src = ("10.0.0.9", 40000)
    feed = sig.transport._datagram
    feed(_register_datagram("z9hG4bKr1", 1), src)
    challenge = parse_message(wire[-1]).headers.get("WWW-Authenticate") or ""
    auth = build_authorization(
        DigestChallenge.parse(challenge),
        "REGISTER",
        f"sip:{SERVER}@{DOMAIN}",
        DEVICE,
        "secret123",
        cnonce="c0ffee",
    )
    feed(_register_datagram("z9hG4bKr2", 2, str(auth)), src)
    feed(_register_datagram("z9hG4bKr2", 2, str(auth)), src)  # retransmitted: same 200
    feed(_keepalive_datagram("z9hG4bKk1", 1), src)
    feed(_keepalive_datagram("z9hG4bKk1", 1), src)  # retransmitted
    feed(_keepalive_datagram("z9hG4bKk2", 2, "34020000001320000999"), src)  # unknown: 404
    feed(_register_datagram("z9hG4bKr3", 3, str(auth)), src)  # replayed nc: challenged again
    feed(_register_datagram("z9hG4bKr4", 4, "Digest nonsense"), src)  # 400
    feed(b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKo1\r\n", src)
    return [_masked(d) for d in wire]


def test_direct_road_answers_byte_for_byte_like_the_event_road() -> None:
    direct, direct_wire = _road(True)
    events, events_wire = _road(False)
    got = _session(direct, direct_wire)
    assert got == _session(events, events_wire)
    statuses = [d.split(b" ", 2)[1] for d in got]
    assert statuses == [b"401", b"200", b"200", b"200", b"200", b"404", b"401", b"400"]
    # Each road counted the same requests; retransmissions absorbed by a transaction are not
    # new requests. The direct road answers keepalives statelessly, so the retransmitted one
    # counts again there (and only there).
    counts = dict(direct.metrics._msg_counts)
    assert counts.pop(("MESSAGE", "in")) == 3
    expected = dict(events.metrics._msg_counts)
    assert expected.pop(("MESSAGE", "in")) == 2
    assert counts == expected
    assert direct.metrics._msg_counts[("REGISTER", "in")] == 4


def test_direct_road_absorbs_retransmissions_with_the_same_response() -> None:
    """RFC 3261 §17.2.2: a retransmitted request gets the last response again, not a new one.

    Shown with a MESSAGE that keeps its transaction: the stateless keepalive answer is off.
    """
    sig, wire = _road(True)
    sig.transport.on_stateless = None
    calls: list[str] = []
    handle = sig.registrar.handle_keepalive

    def counting(device_id: str, source: Source, now: float, ok: bool = True) -> bool:
        calls.append(device_id)
        return handle(device_id, source, now, ok)

    sig.registrar.handle_keepalive = counting  # type: ignore[method-assign]
    sig.registrar.restore(
        [DeviceRecord(device_id=DEVICE, kind="device", expires=3600, registered_at=T0)], T0 + 1
    )
    datagram = _keepalive_datagram("z9hG4bKkeep", 7)
    for _ in range(3):
        sig.transport._datagram(datagram, ("10.0.0.9", 40000))
    assert len(wire) == 3 and wire[0] == wire[1] == wire[2]  # same bytes, same To tag
    assert wire[0].startswith(b"SIP/2.0 200 OK\r\n")
    assert calls == [DEVICE]  # the registrar saw it once
    assert b"received=10.0.0.9;" not in wire[0]  # same host: only rport is stamped
    assert b"rport=40000" in wire[0]
    stats = sig.layer.stats
    assert stats.server_created == 1 and stats.responses_resent == 2


def test_transaction_timers_are_coalesced_by_the_platform() -> None:
    """Timer J of every answered request is reported up to a second late (one wake-up)."""
    sig, _ = _road(True)
    sig.transport.on_stateless = None  # a keepalive that keeps its transaction
    sig.registrar.restore(
        [DeviceRecord(device_id=DEVICE, kind="device", expires=3600, registered_at=T0)], T0 + 1
    )
    sig.transport._datagram(_keepalive_datagram("z9hG4bKt1", 1), ("10.0.0.9", 40000))
    assert sig.layer.get_timer() == pytest.approx(T0 + 2 + 32 + 1)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(
    which=st.sampled_from(["register", "keepalive"]),
    start=st.integers(min_value=0, max_value=700),
    length=st.integers(min_value=0, max_value=8),
    junk=st.binary(max_size=8),
)
def test_direct_road_fuzz_matches_the_event_road(
    which: str, start: int, length: int, junk: bytes
) -> None:
    """Mangled hot-path datagrams: both roads answer (or drop) them identically, never raise."""
    base = (
        _register_datagram("z9hG4bKfz", 1)
        if which == "register"
        else _keepalive_datagram("z9hG4bKfz", 1)
    )
    datagram = base[:start] + junk + base[start + length :]
    outputs = []
    for direct in (True, False):
        sig, wire = _road(direct)
        sig.registrar.restore(
            [DeviceRecord(device_id=DEVICE, kind="device", expires=3600, registered_at=T0)],
            T0 + 1,
        )
        sig.transport._datagram(datagram, ("10.0.0.9", 40000))
        sig.transport._datagram(datagram, ("10.0.0.9", 40000))
        outputs.append(([_masked(d) for d in wire], sig.transport.parse_errors))
    assert outputs[0] == outputs[1]


# -- the stateless challenge: a UDP REGISTER without credentials gets its 401 without a
# -- server transaction (RFC 3261 §8.2.7) --------------------------------------------------


def _stateless_road(
    stateless: bool, *, strict_ids: bool = True, entropy: bool = False
) -> tuple[Signalling, list[bytes]]:
    """The direct road with (or without: the former path) the stateless challenge.

    The registrar reports to the signalling's metrics, so auth failures are compared too.
    """
    metrics = Metrics()
    issuer = (
        NonceIssuer(b"s" * 32, 300)
        if entropy
        else NonceIssuer(b"s" * 32, 300, entropy=lambda n: b"\x01" * n)
    )
    reg = Registrar(
        RegistrarConfig(
            server_id=SERVER, domain=DOMAIN, default_password="secret123", strict_ids=strict_ids
        ),
        DigestVerifier(issuer, DOMAIN),
        metrics=metrics,
    )
    sig = Signalling(
        reg, metrics, server_id=SERVER, max_size=65536, user_agent="t", clock=lambda: T0 + 2
    )
    if not stateless:
        sig.transport.on_stateless = None
    wire: list[bytes] = []
    sig.transport._write = lambda data, addr, conn_id: wire.append(data)  # type: ignore[method-assign]
    return sig, wire


def _authorize(challenge_response: bytes, device: str = DEVICE) -> str:
    challenge = parse_message(challenge_response).headers.get("WWW-Authenticate") or ""
    auth = build_authorization(
        DigestChallenge.parse(challenge),
        "REGISTER",
        f"sip:{SERVER}@{DOMAIN}",
        device,
        "secret123",
        cnonce="c0ffee",
    )
    return str(auth)


def test_challenge_is_stateless_and_a_retransmission_gets_a_fresh_valid_one() -> None:
    sig, wire = _stateless_road(True, entropy=True)
    src = ("10.0.0.9", 40000)
    datagram = _register_datagram("z9hG4bKs1", 1)
    sig.transport._datagram(datagram, src)
    sig.transport._datagram(datagram, src)  # retransmitted: challenged again
    assert [d.split(b" ", 2)[1] for d in wire] == [b"401", b"401"]
    first, again = (parse_message(d) for d in wire)
    assert first.headers.get("WWW-Authenticate") != again.headers.get("WWW-Authenticate")
    assert first.headers.get("To") == again.headers.get("To")  # same request, same tag
    other_branch = _register_datagram("z9hG4bKs9", 1)
    sig.transport._datagram(other_branch, src)
    assert parse_message(wire.pop()).headers.get("To") != first.headers.get("To")
    # No transaction was opened, none is left behind, no timer is armed for one.
    assert sig.layer.stats.server_created == 0
    assert not sig.layer._nist and sig.layer.get_timer() is None
    # Either nonce completes the registration (they are stateless: nothing was stored).
    sig.transport._datagram(_register_datagram("z9hG4bKs2", 2, _authorize(wire[1])), src)
    assert wire[-1].startswith(b"SIP/2.0 200 OK\r\n")
    st = sig.registrar.get(DEVICE)
    assert st is not None and st.registered
    other, wire_other = _stateless_road(True, entropy=True)
    other.transport._datagram(_register_datagram("z9hG4bKs3", 3, _authorize(wire[0])), src)
    assert wire_other[-1].startswith(b"SIP/2.0 200 OK\r\n")
    # The authorised round keeps its transaction: its retransmission gets the same 200.
    assert sig.layer.stats.server_created == 1
    sig.transport._datagram(_register_datagram("z9hG4bKs2", 2, _authorize(wire[1])), src)
    assert wire[-1] == wire[-2] and sig.layer.stats.responses_resent == 1


def test_stateless_challenge_copies_via_from_to_callid_cseq_like_the_former_path() -> None:
    sig, wire = _stateless_road(True)
    sig.transport._datagram(_register_datagram("z9hG4bKh1", 7), ("192.0.2.7", 40001))
    resp = parse_message(wire[0])
    assert isinstance(resp, SipResponse) and resp.status == 401
    h = resp.headers
    assert h.get("Via") == (
        "SIP/2.0/UDP 10.0.0.9:5060;rport=40001;branch=z9hG4bKh1;received=192.0.2.7"
    )
    assert h.get("From") == f"<sip:{DEVICE}@{DOMAIN}>;tag=reg1"
    assert (h.get("To") or "").startswith(f"<sip:{DEVICE}@{DOMAIN}>;tag=")
    assert h.get("Call-ID") == "road-reg@10.0.0.9"
    assert h.get("CSeq") == "7 REGISTER"
    assert h.get("Server") == "gb28181-platform"  # the registrar's user agent


def _refusals(sig: Signalling, wire: list[bytes]) -> list[bytes]:
    """Unauthenticated REGISTERs of every kind the registrar or a guard refuses or challenges.

    Each is a new request (its own branch): on the former path the same branch again would be
    a retransmission, absorbed by its transaction.
    """
    src = ("10.0.0.9", 40000)
    feed = sig.transport._datagram
    branches = itertools.count(1)

    def base() -> bytes:
        return _register_datagram(f"z9hG4bKq{next(branches)}", 1)

    feed(base(), src)  # 401
    feed(base().replace(b"Expires: 3600\r\n", b""), src)  # 400 Missing Expires
    feed(base().replace(DEVICE.encode(), b"3402abc"), src)  # 403 invalid ID (strict)
    feed(base().replace(f"sip:{SERVER}@".encode(), b"sip:34020000002000000999@"), src)  # 404
    feed(base().replace(b"From: <sip:", b"From: <sip:@"), src)  # odd user
    feed(base().replace(b";rport;", b';rport;x="a,b";'), src)  # Via the slow road parses
    feed(base().replace(b";branch=z9hG4bK", b";branch=zz"), src)  # no cookie: RFC 2543 key
    feed(base().replace(b"Via: SIP/2.0/UDP", b"Via: SIP/2.0/UDPX"), src)  # odd transport
    feed(base().replace(b"CSeq: 1 REGISTER", b"CSeq: x REGISTER"), src)  # bad CSeq
    feed(base().replace(b"From:", b"f:").replace(b"Call-ID:", b"i:"), src)  # compact forms
    # A wrong password five times locks the device out; its unauthenticated REGISTER then
    # gets 403 Locked Out (and an auth failure) instead of a challenge.
    challenge = DigestChallenge.parse(parse_message(wire[0]).headers.get("WWW-Authenticate") or "")
    for n in range(5):
        wrong = build_authorization(
            challenge, "REGISTER", f"sip:{SERVER}@{DOMAIN}", DEVICE, "wrong", cnonce=f"c{n}"
        )
        feed(_register_datagram(f"z9hG4bKq{next(branches)}", 2, str(wrong)), src)
    feed(base(), src)
    # A guard's refusal answers instead of the registrar, exactly as before.
    sig.register_guards.append(
        lambda request, device_id: make_response(request, 403, "ID Not Issued", to_tag="g")
    )
    feed(base(), src)
    return [_masked(d) for d in wire]


@pytest.mark.parametrize("strict_ids", [True, False])
def test_stateless_challenge_answers_and_counts_like_the_former_path(strict_ids: bool) -> None:
    outputs = []
    for stateless in (True, False):
        sig, wire = _stateless_road(stateless, strict_ids=strict_ids)
        got = _refusals(sig, wire)
        m = sig.metrics
        outputs.append(
            (
                got,
                dict(m._msg_counts),
                dict(m._resp_counts),
                sum(m.register_seconds.counts),
                sorted((k, c._value.get()) for k, c in m._auth_children.items()),
                sig.transport.parse_errors,
            )
        )
        if stateless:
            # Only the wrong-password REGISTERs (they carry credentials) opened transactions.
            assert sig.layer.stats.server_created == 5
    assert outputs[0] == outputs[1]
    statuses = [d.split(b" ", 2)[1] for d in outputs[0][0]]
    assert statuses[0] == b"401" and statuses[-1] == b"403"
    assert b"Locked Out" in outputs[0][0][-2]


def test_stateless_challenge_is_not_taken_for_a_handler_that_answers_later() -> None:
    sig, wire = _stateless_road(True)
    calls: list[str] = []

    def later(request: SipRequest, source: Source, now: float) -> SipResponse | None:
        calls.append(request.method)
        return None  # answers later through respond(): needs its transaction

    sig.methods["REGISTER"] = later
    sig.transport._datagram(_register_datagram("z9hG4bKl1", 1), ("10.0.0.9", 40000))
    assert calls == ["REGISTER"] and not wire
    assert sig.layer.stats.server_created == 1


# -- the stateless keepalive: a UDP Keepalive MESSAGE is answered without a server
# -- transaction (idempotent: a retransmission refreshes the same liveness) ----------------


def _registered_road() -> tuple[Signalling, list[bytes], list[str]]:
    sig, wire = _stateless_road(True)
    sig.registrar.restore(
        [DeviceRecord(device_id=DEVICE, kind="device", expires=3600, registered_at=T0)], T0 + 1
    )
    calls: list[str] = []
    handle = sig.registrar.handle_keepalive

    def counting(device_id: str, source: Source, now: float, ok: bool = True) -> bool:
        calls.append(device_id)
        return handle(device_id, source, now, ok)

    sig.registrar.handle_keepalive = counting  # type: ignore[method-assign]
    return sig, wire, calls


def test_keepalive_is_answered_without_a_transaction_and_a_retransmission_again() -> None:
    sig, wire, calls = _registered_road()
    datagram = _keepalive_datagram("z9hG4bKsk", 4)
    sig.transport._datagram(datagram, ("10.0.0.9", 40000))
    sig.transport._datagram(datagram, ("10.0.0.9", 40000))
    assert [d.split(b"\r\n", 1)[0] for d in wire] == [b"SIP/2.0 200 OK"] * 2
    # RFC 3261 §8.2.7: the same request gets the same To tag: the same bytes, which a strict
    # client (SIPp) takes as a retransmitted response rather than a second one.
    assert wire[0] == wire[1]
    assert calls == [DEVICE, DEVICE]
    assert sig.layer.stats.server_created == 0
    assert not sig.layer._nist and sig.layer.get_timer() is None
    assert sig.metrics._msg_counts[("MESSAGE", "in")] == 2
    assert sig.metrics._resp_counts[(200, "MESSAGE", "out")] == 2
    resp = parse_message(wire[0])
    assert resp.headers.get("Via") == (
        "SIP/2.0/UDP 10.0.0.9:5060;rport=40000;branch=z9hG4bKsk;received=10.0.0.9"
    )
    assert resp.headers.get("CSeq") == "4 MESSAGE"
    # An unknown device is told statelessly too (404: register again).
    sig.transport._datagram(
        _keepalive_datagram("z9hG4bKsu", 5, "34020000001320000999"), ("10.0.0.9", 40000)
    )
    assert wire[-1].startswith(b"SIP/2.0 404 ")
    assert sig.layer.stats.server_created == 0


def test_stateless_keepalive_answers_like_the_transaction_road() -> None:
    outputs = []
    for stateless in (True, False):
        sig, wire, calls = _registered_road()
        if not stateless:
            sig.transport.on_stateless = None
        for n, body_edit in enumerate(
            [
                b"",  # the usual keepalive
                b"<Status>ERROR</Status>",  # a faulty device
                b"<SN>x</SN>",  # a bad SN: 400
            ]
        ):
            datagram = _keepalive_datagram(f"z9hG4bKe{n}", n + 1)
            if body_edit:
                tag = body_edit.split(b">", 1)[0] + b">"
                start = datagram.index(tag)
                end = datagram.index(b"</", start) + len(tag) + 1
                datagram = datagram[:start] + body_edit + datagram[end:]
                head, body = datagram.split(b"\r\n\r\n", 1)
                head = re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % len(body), head)
                datagram = head + b"\r\n\r\n" + body
            sig.transport._datagram(datagram, ("10.0.0.9", 40000))
        outputs.append(([_masked(d) for d in wire], calls, dict(sig.metrics._msg_counts)))
    assert outputs[0] == outputs[1]
    assert [d.split(b" ", 2)[1] for d in outputs[0][0]] == [b"200", b"200", b"400"]


@pytest.mark.parametrize("case", ["in_dialog", "handler_replaced", "other_message"])
def test_keepalive_keeps_its_transaction_when_not_ours_to_answer_at_once(case: str) -> None:
    sig, wire, _ = _registered_road()
    datagram = _keepalive_datagram("z9hG4bKkt", 6)
    if case == "in_dialog":
        sig.in_dialog["road-ka-6"] = sig._on_message
    elif case == "handler_replaced":
        later: list[str] = []

        def answers_later(
            request: SipRequest, msg: object, source: Source, now: float
        ) -> SipResponse | None:
            later.append(request.call_id)
            return None

        sig.manscdp_handlers[("Notify", "Keepalive")] = answers_later  # type: ignore[assignment]
    else:
        datagram = datagram.replace(
            b"<CmdType>Keepalive</CmdType>", b"<CmdType>Broadcast</CmdType>"
        )
    sig.transport._datagram(datagram, ("10.0.0.9", 40000))
    assert sig.layer.stats.server_created == 1
    if case == "handler_replaced":
        assert not wire
    else:
        assert wire and wire[0].startswith(b"SIP/2.0 200 OK")
