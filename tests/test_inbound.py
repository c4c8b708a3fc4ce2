"""Inbound INVITE (UAS + relay), SIP-TLS identity and forwarded control, without sockets.

A real Signalling (transaction layer included) whose transport's flush is captured, the real
Authorizer over a pure Policy, and fakes for what would need a network: the caller's
certificates (identity), live play (calls), playback and the device side (queries).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz import ChannelInfo, Policy, Principal, PrincipalKind
from gb28181 import manscdp
from gb28181.authorizer import Authorizer
from gb28181.calls import Consumer, PlaySession
from gb28181.forwarding import ForwardingService
from gb28181.identity import IdentityError
from gb28181.inbound import InboundService
from gb28181.metrics import Metrics
from gb28181.registrar import Registrar, RegistrarConfig
from gb28181.signalling import Signalling
from gb28181.sip import (
    DigestVerifier,
    NonceIssuer,
    SipRequest,
    SipResponse,
    StreamParser,
    parse_message,
    parse_sdp,
)
from gb28181.store import DeviceRecord
from gb28181.transport import Connection

SERVER = "34020000002000000001"
DOMAIN = "3402000000"
CHANNEL = "34020000001320000001"  # a specific area (security class 3), carried by DEVICE
DEVICE = "34020000001180000001"
CITY = "34020000002000000009"  # a level-1 client
DISTRICT = "34020000002000000008"  # a level-4 client
DEPT = "34020000002000000007"  # a level-2 lower platform on UDP
T0 = 1_700_000_000.0
CALLER = ("10.0.0.9", 5061)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Audit:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, str, dict[str, Any]]] = []

    def record(self, action: str, target: str, outcome: str, **kw: Any) -> None:
        self.records.append((action, target, outcome, kw))


def principal(pid: str, level: int, department: str = "other") -> Principal:
    return Principal(pid, PrincipalKind.DEPARTMENT_CLIENT, department, level)


class FakeIdentity:
    """Certificates are bytes naming a principal; bindings map accounts to principals."""

    def __init__(self) -> None:
        self.certs = {
            b"cert-city": principal(CITY, 1),
            b"cert-district": principal(DISTRICT, 4),
        }
        self.bound: dict[str, Principal] = {DEPT: principal(DEPT, 2)}

    def from_certificate(self, der: bytes, *, now: float | None = None) -> Principal:
        found = self.certs.get(der)
        if found is None:
            raise IdentityError("certificate refused: not issued by a trusted CA")
        return found

    async def for_sip_account(
        self, account_id: str, tls_cert: bytes | None, *, now: float | None = None
    ) -> Principal | None:
        if tls_cert is not None:
            found = self.from_certificate(tls_cert)
            if found.id != account_id:
                raise IdentityError(f"certificate is for {found.id}", status=403)
            return found
        return self.bound.get(account_id)


class FakeCalls:
    def __init__(self) -> None:
        self.on_end: list[Any] = []
        self.plays: list[tuple[str, Any, int]] = []
        self.left: list[tuple[str, int]] = []
        self.gate: asyncio.Event | None = None
        self.session = PlaySession(
            session_id=f"{CHANNEL}-0200000001",
            channel_id=CHANNEL,
            device_id=DEVICE,
            ssrc="0200000001",
            stream_mode="UDP",
            port=30000,
            media_id=1,
            created_at=T0,
            state="playing",
        )

    async def play(
        self, channel_id: str, output: tuple[str, int, str] | None = None, *, ssrc: int = 0
    ) -> tuple[PlaySession, Consumer]:
        if self.gate is not None:
            await self.gate.wait()
        self.plays.append((channel_id, output, ssrc))
        listening = 35000 if output is not None and output[2] == "tcp-passive" else None
        return self.session, Consumer(len(self.plays), output, local_port=listening)

    def leave(self, session_id: str, consumer_id: int) -> None:
        self.left.append((session_id, consumer_id))


class FakePlayback:
    def __init__(self) -> None:
        self.on_end: list[Any] = []
        self.opened: list[dict[str, Any]] = []
        self.controls: list[bytes] = []
        self.closed: list[str] = []

    async def open(self, channel_id: str, start: float, end: float, **kw: Any) -> Any:
        self.opened.append({"channel": channel_id, "start": start, "end": end, **kw})

        class Session:
            session_id = "pb-1"
            local_port = 0
            ssrc = kw["ssrc"]

        return Session()

    async def control(self, session_id: str, mansrtsp: bytes) -> None:
        if b"RTSP/1.0" not in mansrtsp:
            raise ValueError("not MANSRTSP")
        self.controls.append(mansrtsp)

    async def close(self, session_id: str, reason: str) -> None:
        self.closed.append(session_id)


class Done:
    def __init__(self, messages: tuple[manscdp.Message, ...]) -> None:
        self.messages = messages


class FakeQueries:
    def __init__(self) -> None:
        self.charsets: dict[str, manscdp.Charset] = {}
        self.controls: list[tuple[str, manscdp.Message]] = []
        self.queries: list[tuple[str, manscdp.Message]] = []

    async def control(self, device_id: str, message: manscdp.Message) -> SipResponse:
        self.controls.append((device_id, message))
        return SipResponse(200, "OK")

    async def query(self, device_id: str, message: manscdp.Message, **kw: Any) -> Done:
        self.queries.append((device_id, message))
        item = manscdp.RecordItem(device_id=CHANNEL, name="cam", start_time="2024-05-01T00:00:00")
        reply = manscdp.RecordInfoResponse(
            device_id=CHANNEL, sn=4711, sum_num=1, num=1, items=(item,)
        )
        return Done((reply,))


class Env:
    """The service under test, the captured wire and its collaborators."""

    def __init__(self) -> None:
        self.clock = Clock()
        reg = Registrar(
            RegistrarConfig(server_id=SERVER, domain=DOMAIN),
            DigestVerifier(NonceIssuer(b"s" * 32, 300), DOMAIN),
        )
        records = [
            DeviceRecord(
                device_id=d,
                kind="platform",
                host=CALLER[0] if d == DEPT else "192.0.2.1",
                port=CALLER[1] if d == DEPT else 5060,
                expires=3600,
                registered_at=T0,
                online=True,
            )
            for d in (DEPT, DEVICE)
        ]
        reg.restore(records, T0)
        self.sig = Signalling(
            reg,
            Metrics(),
            server_id=SERVER,
            max_size=65536,
            user_agent="t",
            advertised_host="10.0.0.1",
            clock=self.clock,
        )
        self.sent: list[tuple[SipRequest | SipResponse, Any, Any]] = []
        self.sig.transport.flush = self._flush  # type: ignore[method-assign]
        self.audit = Audit()
        facts = {
            CHANNEL: ChannelInfo(CHANNEL, "police", security_class=3, shared=True),
        }
        self.authorizer = Authorizer(Policy(), facts.get, audit=self.audit, clock=self.clock)
        self.calls = FakeCalls()
        self.playback = FakePlayback()
        self.queries = FakeQueries()
        self.identity = FakeIdentity()
        self.service = InboundService(
            self.sig,
            reg,
            self.authorizer,
            self.identity,
            calls=self.calls,
            playback=self.playback,
            server_id=SERVER,
            domain=DOMAIN,
            media_host="10.0.0.2",
            media_status_grace=0.05,
            request_timeout=0.2,
            audit=self.audit,
            clock=self.clock,
        )
        self.service.install()
        self.forwarding = ForwardingService(
            self.service,
            self.authorizer,
            self.queries,
            lambda channel: DEVICE if channel == CHANNEL else None,
        )
        self.forwarding.install()
        self._conns = 0

    def _flush(self) -> None:
        for out in self.sig.layer.messages_to_send():
            self.sent.append((out.message, out.addr, out.conn_id))

    def tls(self, cert: bytes, peer: tuple[str, int] = CALLER) -> Connection:
        self._conns += 1
        conn = Connection(self._conns, "TLS", None, peer, StreamParser(65536), cert)  # type: ignore[arg-type]
        self.sig.transport.connections[conn.conn_id] = conn
        return conn

    def receive(self, raw: str, conn: Connection | None = None, body: bytes = b"") -> None:
        msg = parse_message(raw.replace("\n", "\r\n").encode() + body)
        kind = conn.transport if conn is not None else "UDP"
        addr = conn.peer if conn is not None else CALLER
        self.sig.transport._receive(msg, addr, conn, kind)

    def take(self) -> list[SipRequest | SipResponse]:
        out = [m for m, _, _ in self.sent]
        self.sent.clear()
        return out

    def responses(self) -> list[SipResponse]:
        return [m for m in self.take() if isinstance(m, SipResponse)]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = Env()
    yield e
    await e.forwarding.close()
    await e.service.close()


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def offer(
    kind: str = "Play",
    *,
    proto: str = "RTP/AVP",
    setup: str = "",
    times: str = "0 0",
    ssrc: str = "0200000777",
) -> bytes:
    lines = [
        "v=0",
        f"o={CITY} 0 0 IN IP4 10.0.0.9",
        f"s={kind}",
        f"u={CHANNEL}:0",
        "c=IN IP4 10.0.0.9",
        f"t={times}",
        f"m=video 40000 {proto} 96",
        "a=recvonly",
        "a=rtpmap:96 PS/90000",
    ]
    if setup:
        lines += [f"a=setup:{setup}", "a=connection:new"]
    lines.append(f"y={ssrc}")
    return ("\r\n".join(lines) + "\r\n").encode()


def invite(
    caller: str,
    body: bytes,
    *,
    call_id: str = "in-1",
    transport: str = "TLS",
    method: str = "INVITE",
    cseq: int = 1,
    to_tag: str = "",
) -> str:
    tag = f";tag={to_tag}" if to_tag else ""
    return (
        f"{method} sip:{CHANNEL}@{DOMAIN} SIP/2.0\n"
        f"Via: SIP/2.0/{transport} 10.0.0.9:5061;rport;branch=z9hG4bK{call_id}{method}{cseq}\n"
        f"From: <sip:{caller}@{DOMAIN}>;tag=c1\n"
        f"To: <sip:{CHANNEL}@{DOMAIN}>{tag}\n"
        f"Call-ID: {call_id}\n"
        f"CSeq: {cseq} {method}\n"
        f"Contact: <sip:{caller}@10.0.0.9:5061>\n"
        "Max-Forwards: 70\n"
        + ("Content-Type: application/sdp\n" if body else "")
        + f"Content-Length: {len(body)}\n\n"
    )


def in_dialog(method: str, response: SipResponse, cseq: int, body: bytes = b"", **kw: str) -> str:
    """An in-dialog request from the caller, after our 200 OK (its To tag)."""
    extra = "".join(f"{k}: {v}\n" for k, v in kw.items())
    return (
        f"{method} sip:{SERVER}@10.0.0.1:5060 SIP/2.0\n"
        f"Via: SIP/2.0/TLS 10.0.0.9:5061;rport;branch=z9hG4bKd{method}{cseq}\n"
        f"From: <sip:{response.from_.uri.user}@{DOMAIN}>;tag=c1\n"
        f"To: <sip:{CHANNEL}@{DOMAIN}>;tag={response.to.tag}\n"
        f"Call-ID: {response.call_id}\n"
        f"CSeq: {cseq} {method}\n"
        "Max-Forwards: 70\n" + extra + f"Content-Length: {len(body)}\n\n"
    )


async def answered_call(env: Env, cert: bytes = b"cert-city") -> tuple[Connection, SipResponse]:
    conn = env.tls(cert)
    body = offer()
    env.receive(invite(CITY, body), conn, body)
    await settle()
    responses = env.responses()
    assert [r.status for r in responses] == [100, 200]
    return conn, responses[1]


async def test_level1_client_over_tls_is_answered_with_our_sdp(env: Env) -> None:
    conn, ok = await answered_call(env)
    # The caller's SDP address and y= become the output of the live session.
    assert env.calls.plays == [(CHANNEL, ("10.0.0.9", 40000, "udp"), 200000777)]
    sdp = parse_sdp(ok.body)
    assert sdp.connection_address == "10.0.0.2"
    assert sdp.media_port == 30000
    assert sdp.ssrc == "0200000777"
    assert sdp.direction == "sendonly"
    assert ok.to.tag and ok.headers.get("Contact", "").endswith(";transport=tls>")
    assert ("authz.view", CHANNEL, "allow") in [r[:3] for r in env.audit.records]
    # ACK confirms; BYE from the caller leaves the consumer (the source leg idles out).
    env.receive(in_dialog("ACK", ok, 1), conn)
    assert env.service.active["in-1"].state == "confirmed"
    env.receive(in_dialog("BYE", ok, 2), conn)
    await settle()
    assert [r.status for r in env.responses()] == [200]
    assert env.calls.left == [(env.calls.session.session_id, 1)]
    assert env.service.active == {} and env.sig.in_dialog == {}


async def test_level4_client_is_refused_403_naming_the_rule(env: Env) -> None:
    conn = env.tls(b"cert-district")
    body = offer()
    env.receive(invite(DISTRICT, body), conn, body)
    await settle()
    responses = env.responses()
    assert [r.status for r in responses] == [100, 403]
    refused = responses[1]
    warning = refused.headers.get("Warning") or ""
    assert warning.startswith('399 10.0.0.1 "') and "specific" in warning.lower()
    assert "specific" in refused.reason.lower()
    assert env.calls.plays == []
    denied = [r for r in env.audit.records if r[2] == "deny"]
    assert denied and denied[0][3]["principal_id"] == DISTRICT
    assert env.sig.in_dialog == {}


async def test_unknown_and_mismatched_callers_are_refused(env: Env) -> None:
    # Not registered, no certificate: unknown caller.
    body = offer()
    env.receive(invite("34020000002000000055", body, transport="UDP"), None, body)
    await settle()
    refused = env.responses()[-1]
    assert refused.status == 403 and "unknown-caller" in (refused.headers.get("Warning") or "")
    action, target, outcome, kw = env.audit.records[-1]
    assert (action, target, outcome) == ("sip.view", CHANNEL, "deny")
    assert kw["rule"] == "unknown-caller" and kw["principal_id"] == "34020000002000000055"
    # A certificate for another ID than the From user.
    conn = env.tls(b"cert-city")
    env.receive(invite(DISTRICT, body, call_id="in-2"), conn, body)
    await settle()
    refused = env.responses()[-1]
    assert refused.status == 403 and f"certificate is for {CITY}" in refused.reason


async def test_registered_platform_on_udp_runs_as_its_bound_certificate(env: Env) -> None:
    body = offer()
    env.receive(invite(DEPT, body, transport="UDP"), None, body)
    await settle()
    # Level 2 may not view a specific area: refused, but identified as the bound principal.
    assert env.responses()[-1].status == 403
    assert any(r[3].get("principal_id") == DEPT for r in env.audit.records)


async def test_source_leg_ending_byes_the_caller(env: Env) -> None:
    conn, ok = await answered_call(env)
    env.receive(in_dialog("ACK", ok, 1), conn)
    for listener in env.calls.on_end:
        listener(env.calls.session, "BYE from device")
    await settle()
    sent = env.take()
    bye = [m for m in sent if isinstance(m, SipRequest) and m.method == "BYE"]
    assert len(bye) == 1 and bye[0].call_id == "in-1"
    assert bye[0].to.tag == "c1" and bye[0].from_.tag == ok.to.tag
    assert env.calls.left == []  # the session is gone: nothing to leave
    assert env.service.active == {}


async def test_cancel_while_the_source_is_invited_gets_487(env: Env) -> None:
    env.calls.gate = asyncio.Event()
    conn = env.tls(b"cert-city")
    body = offer()
    env.receive(invite(CITY, body), conn, body)
    await settle()
    assert [r.status for r in env.responses()] == [100]
    cancel = invite(CITY, b"", method="CANCEL").replace("CANCEL1", "INVITE1")
    env.receive(cancel, conn)
    await settle()
    statuses = sorted((r.cseq[1], r.status) for r in env.responses())
    assert statuses == [("CANCEL", 200), ("INVITE", 487)]
    env.calls.gate.set()  # the source answers late: the consumer is released at once
    await settle()
    assert env.calls.left == [(env.calls.session.session_id, 1)]
    assert env.responses() == []


async def test_tcp_offers(env: Env) -> None:
    conn = env.tls(b"cert-city")
    # The caller connects (a=setup:active): we listen, on the port of our answer.
    body = offer(proto="TCP/RTP/AVP", setup="active")
    env.receive(invite(CITY, body), conn, body)
    await settle()
    ok = env.responses()[-1]
    assert ok.status == 200
    assert env.calls.plays[-1][1] == ("10.0.0.9", 40000, "tcp-passive")
    answer = parse_sdp(ok.body)
    assert answer.setup == "passive" and answer.media_port == 35000
    assert answer.primary is not None and answer.primary.is_tcp
    # The caller listens (a=setup:passive): we connect to its address.
    body = offer(proto="TCP/RTP/AVP", setup="passive")
    env.receive(invite(CITY, body, call_id="in-2"), conn, body)
    await settle()
    ok = env.responses()[-1]
    assert ok.status == 200
    assert env.calls.plays[-1][1] == ("10.0.0.9", 40000, "tcp-active")
    assert parse_sdp(ok.body).setup == "active"


async def test_no_offer_and_unknown_kind_are_488(env: Env) -> None:
    conn = env.tls(b"cert-city")
    env.receive(invite(CITY, b""), conn)
    body = offer("Talk")
    env.receive(invite(CITY, body, call_id="in-2"), conn, body)
    await settle()
    assert [r.status for r in env.responses() if r.status >= 200] == [488, 488]


async def test_playback_info_and_media_status(env: Env) -> None:
    conn = env.tls(b"cert-city")
    body = offer("Playback", times="1714500000 1714503600", ssrc="1200000001")
    env.receive(invite(CITY, body), conn, body)
    await settle()
    ok = env.responses()[-1]
    assert ok.status == 200
    opened = env.playback.opened[0]
    assert opened["start"] == 1714500000 and opened["end"] == 1714503600
    assert opened["output"] == ("10.0.0.9", 40000, "udp") and not opened["download"]
    assert parse_sdp(ok.body).session_name == "Playback"
    env.receive(in_dialog("ACK", ok, 1), conn)
    rtsp = b"PLAY RTSP/1.0\r\nCSeq: 2\r\nScale: 2.0\r\n\r\n"
    env.receive(
        in_dialog("INFO", ok, 2, rtsp, **{"Content-Type": "Application/MANSRTSP"}), conn, rtsp
    )
    await settle()
    assert env.playback.controls == [rtsp]
    assert [r.status for r in env.responses()] == [200]
    # End of the recording: MediaStatus 121 in the dialog, then BYE when the caller is silent.
    for listener in env.playback.on_end:
        listener("pb-1", "end of file")
    await settle()
    sent = env.take()
    message = next(m for m in sent if isinstance(m, SipRequest) and m.method == "MESSAGE")
    assert message.call_id == "in-1" and b"<NotifyType>121</NotifyType>" in message.body
    await asyncio.sleep(0.1)
    assert any(isinstance(m, SipRequest) and m.method == "BYE" for m in env.take())


async def test_register_over_tls_must_match_the_certificate(env: Env) -> None:
    conn = env.tls(b"cert-city", peer=("10.0.0.9", 40001))
    register = (
        f"REGISTER sip:{SERVER}@{DOMAIN} SIP/2.0\n"
        "Via: SIP/2.0/TLS 10.0.0.9:5061;rport;branch=z9hG4bKreg1\n"
        f"From: <sip:{DISTRICT}@{DOMAIN}>;tag=r1\n"
        f"To: <sip:{DISTRICT}@{DOMAIN}>\n"
        "Call-ID: reg-1\nCSeq: 1 REGISTER\n"
        f"Contact: <sip:{DISTRICT}@10.0.0.9:5061;transport=tls>\n"
        "Expires: 3600\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )
    env.receive(register, conn)
    refused = env.responses()[-1]
    assert refused.status == 403 and f"certificate is for {CITY}" in refused.reason
    assert env.audit.records[-1][:3] == ("sip.register", DISTRICT, "deny")
    again = register.replace(DISTRICT, CITY).replace("reg-1", "reg-2").replace("reg1", "reg2")
    env.receive(again, conn)
    assert env.responses()[-1].status == 401  # the ID matches: on to digest


async def test_refresh_info_on_live_and_a_200_never_acked(env: Env) -> None:
    conn, ok = await answered_call(env)
    env.receive(in_dialog("ACK", ok, 1), conn)
    env.receive(in_dialog("INFO", ok, 2, b"PLAY RTSP/1.0\r\n\r\n"), conn, b"PLAY RTSP/1.0\r\n\r\n")
    env.receive(in_dialog("INVITE", ok, 3), conn)
    await settle()
    info, refresh = env.responses()
    assert info.status == 488 and refresh.status == 200 and refresh.body == ok.body
    # Another caller's 200 is never ACKed: after timer L (64*T1) it is hung up.
    body = offer()
    env.receive(invite(CITY, body, call_id="in-2"), conn, body)
    await settle()
    assert env.responses()[-1].status == 200
    env.sig.layer.handle_timer(T0 + 64)
    env.sig._drain()
    await settle()
    sent = env.take()
    assert [m.call_id for m in sent if isinstance(m, SipRequest) and m.method == "BYE"] == ["in-2"]
    assert "in-2" not in env.service.active and "in-1" in env.service.active


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=1024),
        st.lists(
            st.sampled_from(
                [
                    b"v=0",
                    b"s=Play",
                    b"s=Download",
                    b"c=IN IP4 10.0.0.9",
                    b"m=video 40000 RTP/AVP 96",
                    b"m=video 0 TCP/RTP/AVP 96",
                    b"a=setup:active",
                    b"t=1 0",
                    b"y=99999999999",
                    b"y=abc",
                    b"u=x:0",
                ]
            ),
            max_size=12,
        ).map(b"\r\n".join),
    )
)
def test_any_invite_body_gets_a_final_answer_and_no_server_error(body: bytes) -> None:
    async def run() -> list[int]:
        e = Env()
        conn = e.tls(b"cert-city")
        e.receive(invite(CITY, body), conn, body)
        await settle()
        await e.service.close()
        return [r.status for r in e.responses()]

    statuses = asyncio.run(run())
    finals = [s for s in statuses if s >= 200]
    assert len(finals) == 1 and finals[0] != 500, statuses


async def test_the_callers_connection_closing_ends_its_calls(env: Env) -> None:
    conn, _ = await answered_call(env)
    env.sig.transport.connections.pop(conn.conn_id)
    env.sig._connection_lost(conn)
    await settle()
    assert env.service.active == {} and env.sig.in_dialog == {}
    assert env.calls.left == [(env.calls.session.session_id, 1)]
    assert not any(isinstance(m, SipRequest) and m.method == "BYE" for m in env.take())
