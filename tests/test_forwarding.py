"""Forwarded DeviceControl (with control arbitration) and RecordInfo, without sockets.

Uses the inbound test environment (:class:`tests.test_inbound.Env`): a real Signalling with its
transport's flush captured, the real Authorizer, fake certificates and a fake device side.
"""

from __future__ import annotations

from authz import ChannelInfo
from gb28181 import manscdp
from gb28181.sip import SipRequest, SipResponse

from .test_inbound import CHANNEL, CITY, DEPT, DEVICE, DOMAIN, SERVER, Env, env, principal, settle

__all__ = ["env"]


def control_message(caller: str, ptz: str, call_id: str, sn: int = 11) -> tuple[str, bytes]:
    msg = manscdp.DeviceControl(device_id=CHANNEL, sn=sn, ptz_cmd=ptz)
    body = manscdp.encode(msg)
    raw = (
        f"MESSAGE sip:{SERVER}@{DOMAIN} SIP/2.0\n"
        f"Via: SIP/2.0/TLS 10.0.0.9:5061;rport;branch=z9hG4bK{call_id}\n"
        f"From: <sip:{caller}@{DOMAIN}>;tag=m1\n"
        f"To: <sip:{SERVER}@{DOMAIN}>\n"
        f"Call-ID: {call_id}\nCSeq: 1 MESSAGE\n"
        "Content-Type: Application/MANSCDP+xml\nMax-Forwards: 70\n"
        f"Content-Length: {len(body)}\n\n"
    )
    return raw, body


async def test_ptz_preemption_and_control_period_through_two_clients(env: Env) -> None:
    # The channel is not a specific area here, and shared with the district (level 4 may not
    # control at all), so use a level-2 lower platform against the level-1 client.
    facts = {CHANNEL: ChannelInfo(CHANNEL, "police", security_class=0, shared=True)}
    env.authorizer.lookup = facts.get
    dept_conn = env.tls(b"cert-dept", peer=("10.0.0.8", 5061))
    env.identity.certs[b"cert-dept"] = principal(DEPT, 2)
    city_conn = env.tls(b"cert-city")

    raw, body = control_message(DEPT, "A50F010180000036", "c-1")
    env.receive(raw, dept_conn, body)
    await settle()
    assert [r.status for r in env.responses()] == [200]
    assert env.queries.controls[-1][0] == DEVICE
    # The level-1 client takes control (pre-emption) and reserves it for 60 s.
    raw, body = control_message(CITY, "A50F01080080003D", "c-2")
    env.receive(raw, city_conn, body)
    await settle()
    assert [r.status for r in env.responses()] == [200]
    env.authorizer.set_control_period(principal(CITY, 1), CHANNEL, 60.0)
    env.clock.now += 10
    raw, body = control_message(DEPT, "A50F0100000000B5", "c-3")
    env.receive(raw, dept_conn, body)
    await settle()
    refused = env.responses()[-1]
    assert refused.status == 403
    assert "s remaining" in refused.reason and "50 s remaining" in refused.reason
    assert len(env.queries.controls) == 2  # the refused command never reached the device
    outcomes = [r[0] for r in env.audit.records if r[0].startswith("control.")]
    assert "control.preempted" in outcomes and "control.refused" in outcomes


async def test_record_info_is_forwarded_and_relayed_with_the_callers_sn(env: Env) -> None:
    conn = env.tls(b"cert-city")
    query = manscdp.RecordInfoQuery(
        device_id=CHANNEL,
        sn=99,
        start_time="2024-05-01T00:00:00",
        end_time="2024-05-01T23:59:59",
        type="all",
    )
    body = manscdp.encode(query)
    raw = (
        f"MESSAGE sip:{SERVER}@{DOMAIN} SIP/2.0\n"
        "Via: SIP/2.0/TLS 10.0.0.9:5061;rport;branch=z9hG4bKri1\n"
        f"From: <sip:{CITY}@{DOMAIN}>;tag=m1\n"
        f"To: <sip:{SERVER}@{DOMAIN}>\n"
        "Call-ID: ri-1\nCSeq: 1 MESSAGE\n"
        "Content-Type: Application/MANSCDP+xml\nMax-Forwards: 70\n"
        f"Content-Length: {len(body)}\n\n"
    )
    env.receive(raw, conn, body)
    await settle()
    sent = env.take()
    assert [m.status for m in sent if isinstance(m, SipResponse)] == [200]
    relayed = [m for m in sent if isinstance(m, SipRequest) and m.method == "MESSAGE"]
    assert len(relayed) == 1
    decoded = manscdp.decode(relayed[0].body)
    assert isinstance(decoded, manscdp.RecordInfoResponse)
    assert decoded.sn == 99 and decoded.sum_num == 1
    assert env.queries.queries[0][0] == DEVICE


async def test_unknown_caller_unknown_channel_and_an_answered_command(env: Env) -> None:
    facts = {CHANNEL: ChannelInfo(CHANNEL, "police", security_class=0, shared=True)}
    env.authorizer.lookup = facts.get
    # Not registered, no certificate: refused and audited, never forwarded.
    raw, body = control_message("34020000002000000055", "A50F0100000000B5", "u-1")
    env.receive(raw.replace("SIP/2.0/TLS", "SIP/2.0/UDP"), None, body)
    await settle()
    refused = env.responses()[-1]
    assert refused.status == 403 and "unknown-caller" in (refused.headers.get("Warning") or "")
    assert env.audit.records[-1][:3] == ("sip.control", CHANNEL, "deny")
    conn = env.tls(b"cert-city")
    # A channel nobody carries.
    msg = manscdp.DeviceControl(device_id="34020000001320000099", sn=5, ptz_cmd="A50F0100000000B5")
    raw, _ = control_message(CITY, "A50F0100000000B5", "u-2")
    body = manscdp.encode(msg)
    raw = raw.replace(raw.split("Content-Length: ")[1], f"{len(body)}\n\n")
    env.receive(raw, conn, body)
    await settle()
    assert env.responses()[-1].status == 404
    # RecordCmd is decided as RECORD (level 1 may) and the device's Response is relayed.
    msg = manscdp.DeviceControl(device_id=CHANNEL, sn=77, record_cmd="Record")
    body = manscdp.encode(msg)
    raw, _ = control_message(CITY, "x", "u-3")
    raw = raw.replace(raw.split("Content-Length: ")[1], f"{len(body)}\n\n")
    env.receive(raw, conn, body)
    await settle()
    sent = env.take()
    assert [m.status for m in sent if isinstance(m, SipResponse)] == [200]
    relayed = [m for m in sent if isinstance(m, SipRequest) and m.method == "MESSAGE"]
    assert len(relayed) == 1 and manscdp.decode(relayed[0].body).sn == 77
    assert ("authz.record", CHANNEL, "allow") in [r[:3] for r in env.audit.records]
