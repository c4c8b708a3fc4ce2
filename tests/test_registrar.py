"""Registrar: digest REGISTER flow, lockout, keepalive liveness, restart (injected time)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gb28181.registrar import (
    Registrar,
    RegistrarConfig,
    Source,
    device_kind,
    format_gb_date,
)
from gb28181.sip import (
    DigestChallenge,
    DigestVerifier,
    NonceIssuer,
    SipRequest,
    SipResponse,
    build_authorization,
    parse_message,
)
from gb28181.store import DeviceRecord, StatusEvent

SERVER = "34020000002000000001"
DOMAIN = "3402000000"
DEVICE = "34020000001320000001"
PLATFORM = "34020100002000000001"
T0 = 1_700_000_000.0
SRC = Source("UDP", "192.0.2.10", 5060)
FIXTURES = Path(__file__).parent / "fixtures" / "sip-wire"


class ListSink:
    def __init__(self) -> None:
        self.dirty: list[DeviceRecord] = []
        self.events: list[StatusEvent] = []

    def mark_dirty(self, record: DeviceRecord) -> None:
        self.dirty.append(record)

    def add_event(self, event: StatusEvent) -> None:
        self.events.append(event)


def make_registrar(**overrides: object) -> tuple[Registrar, ListSink]:
    cfg = dataclasses.replace(
        RegistrarConfig(server_id=SERVER, domain=DOMAIN, default_password="12345678"),
        **overrides,  # type: ignore[arg-type]
    )
    verifier = DigestVerifier(NonceIssuer(b"k" * 32, 300.0), DOMAIN)
    sink = ListSink()
    return Registrar(cfg, verifier, sink=sink), sink


def register_request(
    device: str = DEVICE,
    *,
    expires: int | None = 3600,
    cseq: int = 1,
    authorization: str | None = None,
    call_id: str = "reg-1",
) -> SipRequest:
    lines = [
        f"REGISTER sip:{SERVER}@{DOMAIN} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK" + f"{cseq}abc",
        f"From: <sip:{device}@{DOMAIN}>;tag=f1",
        f"To: <sip:{device}@{DOMAIN}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{device}@192.0.2.10:5060>",
        "Max-Forwards: 70",
        "User-Agent: IP Camera",
    ]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    msg = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(msg, SipRequest)
    return msg


def authorize(
    reg: Registrar,
    device: str = DEVICE,
    password: str = "12345678",
    now: float = T0,
    expires: int | None = 3600,
    source: Source = SRC,
) -> SipResponse:
    """Do the two-step digest registration and return the final response."""
    first = reg.handle_register(register_request(device, expires=expires), source, now)
    assert first.status == 401, first
    challenge = DigestChallenge.parse(first.headers.get("WWW-Authenticate") or "")
    creds = build_authorization(
        challenge, "REGISTER", f"sip:{SERVER}@{DOMAIN}", device, password, cnonce="c0ffee"
    )
    req = register_request(device, expires=expires, cseq=2, authorization=str(creds))
    return reg.handle_register(req, source, now)


def test_device_kind_from_type_code() -> None:
    assert device_kind(DEVICE) == "device"
    assert device_kind(PLATFORM) == "platform"
    assert device_kind("abc") == "device"


def test_gb_date_format_is_local_time_with_millis() -> None:
    value = format_gb_date(T0 + 0.25)
    assert len(value) == 23 and value[10] == "T" and value.endswith(".250")


def test_challenge_then_200_with_contact_expires_and_date() -> None:
    reg, sink = make_registrar()
    resp = authorize(reg)
    assert resp.status == 200
    assert resp.headers.get("Expires") == "3600"
    assert resp.headers.get("Contact") == f"<sip:{DEVICE}@192.0.2.10:5060>"
    assert (resp.headers.get("Date") or "").count("T") == 1
    assert resp.to.tag
    st = reg.get(DEVICE)
    assert st is not None and st.registered and st.record.online
    assert reg.registered_count == 1 and reg.online_count == 1
    assert sink.events[-1] == StatusEvent(DEVICE, T0, True, "registered")
    assert sink.dirty[-1].host == "192.0.2.10"


def test_challenge_carries_realm_nonce_qop() -> None:
    reg, _ = make_registrar()
    resp = reg.handle_register(register_request(), SRC, T0)
    challenge = DigestChallenge.parse(resp.headers.get("WWW-Authenticate") or "")
    assert challenge.realm == DOMAIN
    assert challenge.nonce
    assert "auth" in challenge.qop


def test_date_header_can_be_disabled() -> None:
    reg, _ = make_registrar(date_header=False)
    assert authorize(reg).headers.get("Date") is None


def test_platform_registers_as_platform() -> None:
    reg, _ = make_registrar()
    assert authorize(reg, PLATFORM).status == 200
    st = reg.get(PLATFORM)
    assert st is not None and st.record.kind == "platform"


def test_per_device_password_overrides_default() -> None:
    reg, _ = make_registrar()
    reg.restore([DeviceRecord(device_id=DEVICE, kind="device", password="s3cret")], T0)
    assert authorize(reg, password="12345678").status == 403
    assert authorize(reg, password="s3cret").status == 200


def test_no_password_anywhere_is_refused() -> None:
    reg, _ = make_registrar(default_password="")
    assert authorize(reg).status == 403


def test_wrong_password_403_and_lockout_after_repeated_failures() -> None:
    reg, _ = make_registrar(lockout_failures=3, lockout_seconds=60.0)
    for _ in range(3):
        assert authorize(reg, password="wrong").status == 403
    # Locked out now, even with the right password, without a challenge.
    locked = reg.handle_register(register_request(), SRC, T0 + 1)
    assert locked.status == 403 and locked.reason == "Locked Out"
    # After the lockout period the device can register again.
    assert authorize(reg, now=T0 + 61).status == 200


def test_invalid_ids_strict_and_lenient() -> None:
    reg, _ = make_registrar()
    resp = reg.handle_register(register_request("1234"), SRC, T0)
    assert resp.status == 403
    lenient, _ = make_registrar(strict_ids=False)
    assert authorize(lenient, "1234").status == 200


def test_request_uri_for_another_server_is_refused_in_strict_mode() -> None:
    reg, _ = make_registrar()
    req = register_request()
    req.uri = f"sip:34020000002000000099@{DOMAIN}"
    assert reg.handle_register(req, SRC, T0).status == 404


def test_missing_expires_is_400_but_contact_expires_is_accepted() -> None:
    reg, _ = make_registrar()
    assert reg.handle_register(register_request(expires=None), SRC, T0).status == 400
    req = register_request(expires=None)
    req.headers.set("Contact", f"<sip:{DEVICE}@192.0.2.10:5060>;expires=600")
    assert reg.handle_register(req, SRC, T0).status == 401


def test_short_expires_423_long_expires_clamped() -> None:
    reg, _ = make_registrar()
    too_short = authorize(reg, expires=10)
    assert too_short.status == 423 and too_short.headers.get("Min-Expires") == "60"
    clamped = authorize(reg, expires=10**6)
    assert clamped.status == 200 and clamped.headers.get("Expires") == "86400"


def test_stale_nonce_gets_stale_challenge() -> None:
    reg, _ = make_registrar()
    first = reg.handle_register(register_request(), SRC, T0)
    challenge = DigestChallenge.parse(first.headers.get("WWW-Authenticate") or "")
    creds = build_authorization(
        challenge, "REGISTER", f"sip:{SERVER}@{DOMAIN}", DEVICE, "12345678", cnonce="x"
    )
    late = reg.handle_register(register_request(cseq=2, authorization=str(creds)), SRC, T0 + 301)
    assert late.status == 401
    assert DigestChallenge.parse(late.headers.get("WWW-Authenticate") or "").stale


def test_malformed_authorization_is_400() -> None:
    reg, _ = make_registrar()
    resp = reg.handle_register(register_request(authorization='Digest username="x'), SRC, T0)
    assert resp.status == 400


def test_unregister_with_expires_zero() -> None:
    reg, sink = make_registrar()
    authorize(reg)
    resp = authorize(reg, expires=0, now=T0 + 5)
    assert resp.status == 200 and resp.headers.get("Expires") == "0"
    st = reg.get(DEVICE)
    assert st is not None and not st.registered and not st.record.online
    assert reg.registered_count == 0 and reg.online_count == 0
    assert sink.events[-1].reason == "unregistered"


def test_reregistration_refreshes_without_new_online_event() -> None:
    reg, sink = make_registrar()
    authorize(reg)
    n = len(sink.events)
    assert authorize(reg, now=T0 + 1800).status == 200
    assert len(sink.events) == n
    st = reg.get(DEVICE)
    assert st is not None and st.registered_until == T0 + 1800 + 3600


def test_keepalive_refreshes_liveness_and_observed_address() -> None:
    reg, _ = make_registrar()
    authorize(reg)
    moved = Source("UDP", "198.51.100.7", 40000)
    assert reg.handle_keepalive(DEVICE, moved, T0 + 60)
    st = reg.get(DEVICE)
    assert st is not None
    assert (st.record.host, st.record.port) == ("198.51.100.7", 40000)
    assert st.record.last_keepalive == T0 + 60


def test_keepalive_from_unregistered_device_is_refused() -> None:
    reg, _ = make_registrar()
    assert not reg.handle_keepalive(DEVICE, SRC, T0)


def test_offline_after_missed_keepalives_then_back_online() -> None:
    reg, sink = make_registrar(keepalive_interval=60.0, keepalive_misses=3)
    authorize(reg)
    reg.handle_keepalive(DEVICE, SRC, T0 + 60)
    assert reg.sweep(T0 + 60 + 179) == []
    assert reg.sweep(T0 + 60 + 180) == [DEVICE]
    assert reg.online_count == 0 and reg.registered_count == 1
    assert sink.events[-1] == StatusEvent(DEVICE, T0 + 240, False, "keepalive timeout")
    assert reg.handle_keepalive(DEVICE, SRC, T0 + 300)
    assert reg.online_count == 1
    assert sink.events[-1].reason == "keepalive resumed"
    assert reg.next_deadline() == T0 + 300 + 180


def test_offline_when_registration_expires_first() -> None:
    reg, sink = make_registrar(keepalive_interval=60.0, keepalive_misses=3)
    authorize(reg, expires=100)
    reg.handle_keepalive(DEVICE, SRC, T0 + 90)
    assert reg.sweep(T0 + 100) == [DEVICE]
    assert sink.events[-1].reason == "registration expired"
    assert reg.registered_count == 0


def test_registration_lapse_while_offline_stops_counting() -> None:
    reg, _ = make_registrar(keepalive_interval=10.0, keepalive_misses=1)
    authorize(reg, expires=100)
    reg.sweep(T0 + 10)
    assert reg.online_count == 0 and reg.registered_count == 1
    reg.sweep(T0 + 100)
    assert reg.registered_count == 0


def test_connection_lost_takes_tcp_devices_offline() -> None:
    reg, sink = make_registrar()
    conn = object()
    authorize(reg, source=Source("TCP", "192.0.2.10", 50000, conn))
    reg.connection_lost(conn, T0 + 5)
    assert reg.online_count == 0
    assert sink.events[-1].reason == "connection closed"


def test_restore_after_restart_keeps_registered_devices_online() -> None:
    reg, sink = make_registrar()
    authorize(reg)
    saved = [dataclasses.replace(sink.dirty[-1])]
    fresh, _ = make_registrar()
    assert fresh.restore(saved, T0 + 1000) == 1
    assert fresh.registered_count == 1 and fresh.online_count == 1
    # Liveness resumes from the restart, not from before the downtime.
    assert fresh.sweep(T0 + 1000 + 179) == []
    assert fresh.handle_keepalive(DEVICE, SRC, T0 + 1060)
    # A registration that expired while we were down comes back offline.
    late, late_sink = make_registrar()
    assert late.restore(saved, T0 + 3601) == 0
    assert late.registered_count == 0
    assert late_sink.events[-1].reason == "registration expired while down"


@pytest.mark.parametrize(
    "name", ["hikvision_register_1.sip", "dahua_register_1.sip", "dahua_register_2.sip"]
)
def test_real_device_registers_get_a_challenge(name: str) -> None:
    reg, _ = make_registrar(strict_ids=False)
    msg = parse_message((FIXTURES / name).read_bytes())
    assert isinstance(msg, SipRequest)
    resp = reg.handle_register(msg, SRC, T0)
    assert resp.status in (401, 404), resp


def test_plain_keepalives_are_not_written_every_time() -> None:
    reg, sink = make_registrar()
    authorize(reg)
    n = len(sink.dirty)
    for k in range(1, 6):
        assert reg.handle_keepalive(DEVICE, SRC, T0 + 60 * k)
    assert len(sink.dirty) == n  # nothing changed but the time
    assert reg.handle_keepalive(DEVICE, SRC, T0 + 600)
    assert len(sink.dirty) == n + 1  # the keepalive time, now and then
    assert sink.dirty[-1].last_keepalive == T0 + 600


def test_keepalive_changes_are_written_at_once() -> None:
    reg, sink = make_registrar()
    authorize(reg)
    n = len(sink.dirty)
    assert reg.handle_keepalive(DEVICE, SRC, T0 + 60, ok=False)
    assert len(sink.dirty) == n + 1 and sink.dirty[-1].extra["last_status"] == "ERROR"
    assert reg.handle_keepalive(DEVICE, SRC, T0 + 120, ok=True)
    assert len(sink.dirty) == n + 2 and sink.dirty[-1].extra["last_status"] == "OK"
    assert reg.handle_keepalive(DEVICE, Source("UDP", "198.51.100.9", 5061), T0 + 180)
    assert len(sink.dirty) == n + 3 and sink.dirty[-1].port == 5061


def test_sweeps_skip_the_walk_yet_miss_nothing() -> None:
    """The sweep's lower bounds: a shorter re-registration still goes offline on time."""
    reg, sink = make_registrar(keepalive_interval=60.0, keepalive_misses=3)
    authorize(reg, device=DEVICE, expires=3600)
    authorize(reg, device="34020000001320000002", expires=3600)
    assert reg.sweep(T0 + 10) == []
    # A re-registration with a much shorter lifetime moves a deadline earlier than any seen.
    authorize(reg, device="34020000001320000002", now=T0 + 20, expires=60)
    assert reg.sweep(T0 + 79) == []
    assert reg.sweep(T0 + 80) == ["34020000001320000002"]
    assert reg.registered_count == 1
    assert reg.sweep(T0 + 179) == []
    assert reg.sweep(T0 + 180) == [DEVICE]  # no keepalive: three intervals
    assert [e.reason for e in sink.events if not e.online] == [
        "registration expired",
        "keepalive timeout",
    ]


def test_gb_date_follows_the_clock_across_seconds() -> None:
    first = format_gb_date(T0 + 0.999)
    second = format_gb_date(T0 + 1.0)
    assert first.endswith(".999") and second.endswith(".000")
    assert first[:19] != second[:19]
    assert format_gb_date(T0 + 0.999) == first  # the cached second comes back the same
