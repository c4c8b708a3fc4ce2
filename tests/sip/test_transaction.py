"""Transaction layer tests: every timer, retransmission handling, matching, CANCEL.

No sockets and no sleeping: time is a float passed in, as in aioquic's tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gb28181.sip import (
    AckReceived,
    CancelReceived,
    Headers,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    SipLocalError,
    SipRemoteError,
    SipRequest,
    SipResponse,
    StrayResponseReceived,
    TransactionConfig,
    TransactionEvent,
    TransactionKey,
    TransactionLayer,
    TransactionState,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
    make_cancel,
    make_response,
    parse_message,
)
from gb28181.sip._transaction_state import (
    NIST_RESPONSE,
    TRANSITIONS,
    TransactionInput,
    TransactionKind,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sip-wire"
PEER = ("192.168.1.64", 5060)


def load(name: str) -> SipRequest | SipResponse:
    msg = parse_message((FIXTURES / name).read_bytes())
    assert isinstance(msg, SipRequest | SipResponse)
    return msg


def request(
    method: str = "MESSAGE",
    *,
    branch: str | None = "z9hG4bK1",
    cseq: int = 1,
    uri: str = "sip:34020000001320000001@192.168.1.64:5060",
    to_tag: str | None = None,
    call_id: str = "call-1@10.0.0.5",
    sent_by: str = "10.0.0.5:5060",
    cseq_method: str | None = None,
) -> SipRequest:
    via = f"SIP/2.0/UDP {sent_by};rport"
    if branch is not None:
        via += f";branch={branch}"
    to = "<sip:34020000001320000001@3402000000>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "From: <sip:34020000002000000001@3402000000>;tag=ft1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(text.encode())
    assert isinstance(msg, SipRequest)
    return msg


def events(layer: TransactionLayer) -> list[TransactionEvent]:
    out = []
    while (event := layer.next_event()) is not None:
        out.append(event)
    return out


def sent(layer: TransactionLayer) -> list[Outgoing]:
    return layer.messages_to_send()


def statuses(out: list[Outgoing]) -> list[int | str]:
    return [
        m.message.status if isinstance(m.message, SipResponse) else m.message.method for m in out
    ]


def udp(**kw: object) -> TransactionLayer:
    return TransactionLayer(TransactionConfig(**kw))  # type: ignore[arg-type]


# --------------------------------------------------------------- INVITE client
def test_invite_client_timer_a_and_b_over_udp() -> None:
    layer = udp()
    invite = request("INVITE")
    key = layer.send_request(invite, PEER, 0.0, reliable=False)
    assert key == TransactionKey("z9hG4bK1", "", "INVITE", False)
    first = sent(layer)
    assert [o.message for o in first] == [invite]
    assert first[0].addr == PEER and first[0].key == key and not first[0].reliable
    assert layer.get_timer() == 0.5
    layer.handle_timer(0.5)
    assert [o.message for o in sent(layer)] == [invite]
    assert layer.get_timer() == 1.5
    for deadline, following in [(1.5, 3.5), (3.5, 7.5), (7.5, 15.5), (15.5, 31.5), (31.5, 32.0)]:
        layer.handle_timer(deadline)
        assert len(sent(layer)) == 1
        assert layer.get_timer() == following
    assert events(layer) == []
    layer.handle_timer(32.0)
    assert sent(layer) == []
    assert events(layer) == [TransactionTimedOut(key, invite), TransactionTerminated(key)]
    assert layer.get_timer() is None
    assert layer.state_of(key) is None
    assert layer.stats.retransmissions == 6 and layer.stats.timeouts == 1


def test_invite_client_reliable_never_retransmits() -> None:
    layer = udp()
    key = layer.send_request(request("INVITE"), PEER, 0.0, reliable=True, conn_id="c1")
    out = sent(layer)
    assert out[0].reliable and out[0].conn_id == "c1"
    assert layer.get_timer() == 32.0  # only timer B
    layer.handle_timer(32.0)
    assert sent(layer) == []
    assert isinstance(events(layer)[0], TransactionTimedOut)
    assert layer.state_of(key) is None


def test_invite_client_provisional_then_2xx() -> None:
    layer = udp()
    invite = request("INVITE")
    key = layer.send_request(invite, PEER, 0.0, reliable=False)
    sent(layer)
    trying = make_response(invite, 100)
    layer.receive_message(trying, PEER, 0.1, reliable=False)
    assert events(layer) == [ResponseReceived(trying, key)]
    assert layer.state_of(key) is TransactionState.PROCEEDING
    assert layer.get_timer() == pytest.approx(180.1)  # timer C only: no more retransmissions
    ringing = make_response(invite, 180, to_tag="dev")
    layer.receive_message(ringing, PEER, 0.2, reliable=False)
    assert events(layer) == [ResponseReceived(ringing, key)]
    ok = make_response(invite, 200, to_tag="dev")
    layer.receive_message(ok, PEER, 0.3, reliable=False)
    expected: list[TransactionEvent] = [ResponseReceived(ok, key), TransactionTerminated(key)]
    assert events(layer) == expected
    assert sent(layer) == []  # the TU ACKs a 2xx itself
    # The retransmitted 2xx is stray: the dialog layer re-ACKs it.
    layer.receive_message(ok, PEER, 0.8, reliable=False)
    assert events(layer) == [StrayResponseReceived(ok, PEER, None)]
    assert layer.get_timer() is None


def test_invite_client_non_2xx_is_acked_by_the_transaction() -> None:
    layer = udp()
    invite = request("INVITE", cseq=20)
    key = layer.send_request(invite, PEER, 0.0, reliable=False)
    sent(layer)
    busy = make_response(invite, 486, to_tag="dev")
    layer.receive_message(busy, PEER, 0.1, reliable=False)
    assert events(layer) == [ResponseReceived(busy, key)]
    (ack_out,) = sent(layer)
    ack = ack_out.message
    assert isinstance(ack, SipRequest)
    assert ack.method == "ACK" and ack.uri == invite.uri
    assert ack.cseq == (20, "ACK")
    assert ack.to.tag == "dev"
    assert ack.from_.tag == "ft1"
    assert ack.call_id == invite.call_id
    assert ack.headers.get_all("Via") == invite.headers.get_all("Via")[:1]
    assert ack_out.key == key
    assert layer.state_of(key) is TransactionState.COMPLETED
    # A retransmitted 486 is ACKed again and not shown to the TU.
    layer.receive_message(busy, PEER, 1.0, reliable=False)
    assert [o.message for o in sent(layer)] == [ack]
    assert events(layer) == []
    assert layer.get_timer() == pytest.approx(32.1)  # timer D
    layer.handle_timer(32.1)
    assert events(layer) == [TransactionTerminated(key)]


def test_invite_client_non_2xx_over_tcp_ends_at_once() -> None:
    layer = udp()
    invite = request("INVITE")
    key = layer.send_request(invite, PEER, 0.0, reliable=True)
    sent(layer)
    layer.receive_message(make_response(invite, 404, to_tag="x"), PEER, 0.1, reliable=True)
    assert [o.message.method for o in sent(layer)] == ["ACK"]  # type: ignore[union-attr]
    assert isinstance(events(layer)[-1], TransactionTerminated)
    assert layer.state_of(key) is None and layer.get_timer() is None


def test_invite_client_timer_c_guards_proceeding() -> None:
    layer = udp(timer_c=60.0)
    invite = request("INVITE")
    key = layer.send_request(invite, PEER, 0.0, reliable=False)
    layer.receive_message(make_response(invite, 100), PEER, 1.0, reliable=False)
    events(layer)
    assert layer.get_timer() == 61.0
    layer.handle_timer(61.0)
    assert events(layer) == [TransactionTimedOut(key, invite), TransactionTerminated(key)]


def test_invite_client_ignores_provisional_after_final() -> None:
    layer = udp()
    invite = request("INVITE")
    key = layer.send_request(invite, PEER, 0.0, reliable=False)
    layer.receive_message(make_response(invite, 480, to_tag="a"), PEER, 0.1, reliable=False)
    events(layer)
    layer.receive_message(make_response(invite, 180, to_tag="a"), PEER, 0.2, reliable=False)
    assert events(layer) == []
    assert layer.state_of(key) is TransactionState.COMPLETED
    assert layer.stats.responses_absorbed == 1


# ----------------------------------------------------------- non-INVITE client
def test_non_invite_client_timer_e_and_f() -> None:
    layer = udp()
    msg = request("MESSAGE")
    key = layer.send_request(msg, PEER, 0.0, reliable=False)
    sent(layer)
    times = []
    while (deadline := layer.get_timer()) is not None and deadline < 32.0:
        layer.handle_timer(deadline)
        assert len(sent(layer)) == 1
        times.append(deadline)
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]  # capped at T2
    assert layer.get_timer() == 32.0
    layer.handle_timer(32.0)
    assert events(layer) == [TransactionTimedOut(key, msg), TransactionTerminated(key)]


def test_non_invite_client_proceeding_retransmits_at_t2() -> None:
    layer = udp()
    msg = request("MESSAGE")
    key = layer.send_request(msg, PEER, 0.0, reliable=False)
    layer.receive_message(make_response(msg, 100), PEER, 0.1, reliable=False)
    assert layer.state_of(key) is TransactionState.PROCEEDING
    layer.handle_timer(0.5)
    assert layer.get_timer() == 4.5
    layer.handle_timer(4.5)
    assert layer.get_timer() == 8.5


def test_non_invite_client_final_then_timer_k() -> None:
    layer = udp()
    msg = request("MESSAGE")
    key = layer.send_request(msg, PEER, 0.0, reliable=False)
    ok = make_response(msg, 200, to_tag="t")
    layer.receive_message(ok, PEER, 0.2, reliable=False)
    assert events(layer) == [ResponseReceived(ok, key)]
    assert layer.state_of(key) is TransactionState.COMPLETED
    layer.receive_message(ok, PEER, 0.3, reliable=False)  # retransmission absorbed
    assert events(layer) == []
    assert layer.get_timer() == pytest.approx(5.2)  # timer K = T4
    layer.handle_timer(5.2)
    assert events(layer) == [TransactionTerminated(key)]
    assert sent(layer) == [Outgoing(msg, PEER, None, False, key)]  # no retransmission


def test_non_invite_client_over_tcp_ends_on_final() -> None:
    layer = udp(report_terminated=False)
    msg = request("MESSAGE")
    key = layer.send_request(msg, PEER, 0.0, reliable=True)
    assert layer.get_timer() == 32.0  # timer F still guards a reliable request
    layer.receive_message(make_response(msg, 200, to_tag="t"), PEER, 0.2, reliable=True)
    assert [type(e) for e in events(layer)] == [ResponseReceived]
    assert layer.state_of(key) is None and len(layer) == 0
    assert layer.get_timer() is None


def test_send_request_adds_branch() -> None:
    layer = udp()
    msg = request("MESSAGE", branch=None)
    key = layer.send_request(msg, PEER, 0.0, reliable=False)
    assert key.branch.startswith("z9hG4bK") and len(key.branch) > 7
    assert msg.top_via.branch == key.branch
    assert msg.top_via.params["rport"] is None


def test_send_request_misuse() -> None:
    layer = udp(max_transactions=1)
    with pytest.raises(SipLocalError):
        layer.send_request(request("ACK"), PEER, 0.0, reliable=False)
    with pytest.raises(SipLocalError):
        layer.send_request("INVITE", PEER, 0.0, reliable=False)  # type: ignore[arg-type]
    no_via = SipRequest("MESSAGE", "sip:a@b", Headers([("CSeq", "1 MESSAGE")]))
    with pytest.raises(SipLocalError, match="no Via"):
        layer.send_request(no_via, PEER, 0.0, reliable=False)
    bad_cseq = SipRequest(
        "MESSAGE", "sip:a@b", Headers([("Via", "SIP/2.0/UDP h;branch=z9hG4bKx"), ("CSeq", "x")])
    )
    with pytest.raises(SipLocalError, match="CSeq"):
        layer.send_request(bad_cseq, PEER, 0.0, reliable=False)
    mismatch = SipRequest(
        "MESSAGE",
        "sip:a@b",
        Headers([("Via", "SIP/2.0/UDP h;branch=z9hG4bKx"), ("CSeq", "1 INFO")]),
    )
    with pytest.raises(SipLocalError, match="does not match"):
        layer.send_request(mismatch, PEER, 0.0, reliable=False)
    layer.send_request(request("MESSAGE"), PEER, 0.0, reliable=False)
    with pytest.raises(SipLocalError, match="in use"):
        layer.send_request(request("MESSAGE"), PEER, 0.0, reliable=False)
    with pytest.raises(SipLocalError, match="limit"):
        layer.send_request(request("MESSAGE", branch="z9hG4bK2"), PEER, 0.0, reliable=False)
    assert layer.stats.dropped_over_limit == 1


def test_stray_response_and_response_without_via() -> None:
    layer = udp()
    resp = make_response(request("MESSAGE"), 200, to_tag="t")
    layer.receive_message(resp, PEER, 0.0, reliable=False)
    assert events(layer) == [StrayResponseReceived(resp, PEER, None)]
    assert layer.stats.stray_responses == 1
    bare = SipResponse(200, headers=Headers([("CSeq", "1 MESSAGE")]))
    with pytest.raises(SipRemoteError):
        layer.receive_message(bare, PEER, 0.0, reliable=False)
    with pytest.raises(SipLocalError):
        layer.receive_message(object(), PEER, 0.0, reliable=False)  # type: ignore[arg-type]


def test_transport_error() -> None:
    layer = udp()
    msg = request("MESSAGE")
    key = layer.send_request(msg, PEER, 0.0, reliable=True)
    layer.transport_error(key, 0.1)
    assert events(layer) == [TransportFailed(key, msg), TransactionTerminated(key)]
    layer.transport_error(key, 0.2)  # already gone: ignored
    assert events(layer) == [] and layer.get_timer() is None


# --------------------------------------------------------------- INVITE server
def test_invite_server_100_trying_after_200ms_and_retransmissions() -> None:
    layer = udp()
    invite = request("INVITE")
    layer.receive_message(invite, PEER, 0.0, reliable=False, conn_id=None)
    (event,) = events(layer)
    assert isinstance(event, RequestReceived)
    key = event.key
    assert key == TransactionKey("z9hG4bK1", "10.0.0.5:5060", "INVITE", True)
    assert event.request is invite and event.addr == PEER
    assert layer.get_timer() == 0.2
    # A retransmission before the 100 is absorbed silently.
    layer.receive_message(invite, PEER, 0.1, reliable=False)
    assert sent(layer) == [] and events(layer) == []
    layer.handle_timer(0.2)
    (trying,) = sent(layer)
    assert isinstance(trying.message, SipResponse) and trying.message.status == 100
    assert trying.addr == PEER and trying.key == key
    # Later retransmissions get the latest provisional again.
    layer.receive_message(invite, PEER, 0.5, reliable=False)
    assert [o.message for o in sent(layer)] == [trying.message]
    assert layer.stats.responses_resent == 1


def test_invite_server_trying_delay_variants() -> None:
    now_layer = udp(trying_delay=0.0)
    now_layer.receive_message(request("INVITE"), PEER, 0.0, reliable=False)
    assert statuses(sent(now_layer)) == [100]
    never = udp(trying_delay=None)
    never.receive_message(request("INVITE"), PEER, 0.0, reliable=False)
    assert never.get_timer() == 180.0
    quick = udp()
    invite = request("INVITE")
    quick.receive_message(invite, PEER, 0.0, reliable=False)
    key = events(quick)[0].key  # type: ignore[attr-defined]
    quick.send_response(key, make_response(invite, 180, to_tag="me"), 0.1)
    quick.handle_timer(0.2)
    assert statuses(sent(quick)) == [180]  # no 100 once the TU has answered


def test_invite_server_non_2xx_timer_g_ack_and_timer_i() -> None:
    layer = udp()
    invite = request("INVITE")
    layer.receive_message(invite, PEER, 0.0, reliable=False)
    key = events(layer)[0].key  # type: ignore[attr-defined]
    busy = make_response(invite, 486, to_tag="me")
    layer.send_response(key, busy, 0.1)
    assert [o.message for o in sent(layer)] == [busy]
    assert layer.state_of(key) is TransactionState.COMPLETED
    times = []
    for _ in range(5):
        deadline = layer.get_timer()
        assert deadline is not None
        layer.handle_timer(deadline)
        assert [o.message for o in sent(layer)] == [busy]
        times.append(round(deadline, 6))
    assert times == [0.6, 1.6, 3.6, 7.6, 11.6]  # timer G, doubling to T2
    layer.receive_message(invite, PEER, 12.0, reliable=False)  # INVITE again: 486 again
    assert [o.message for o in sent(layer)] == [busy]
    ack = request("ACK", cseq=1, to_tag="me", cseq_method="ACK")
    layer.receive_message(ack, PEER, 12.5, reliable=False)
    assert events(layer) == []  # absorbed by the transaction
    assert layer.state_of(key) is TransactionState.CONFIRMED
    layer.receive_message(ack, PEER, 12.6, reliable=False)
    assert events(layer) == []
    assert layer.get_timer() == pytest.approx(17.5)  # timer I = T4
    layer.handle_timer(17.5)
    assert events(layer) == [TransactionTerminated(key)]
    assert sent(layer) == []


def test_invite_server_timer_h_without_ack() -> None:
    layer = udp()
    invite = request("INVITE")
    layer.receive_message(invite, PEER, 0.0, reliable=True)
    key = events(layer)[0].key  # type: ignore[attr-defined]
    layer.send_response(key, make_response(invite, 603, to_tag="me"), 0.0)
    sent(layer)
    assert layer.get_timer() == 32.0  # timer H, no timer G on TCP
    layer.handle_timer(32.0)
    assert events(layer) == [TransactionTimedOut(key, invite), TransactionTerminated(key)]
    assert sent(layer) == []


def test_invite_server_ack_over_tcp_ends_at_once() -> None:
    layer = udp()
    invite = request("INVITE")
    layer.receive_message(invite, PEER, 0.0, reliable=True)
    key = events(layer)[0].key  # type: ignore[attr-defined]
    layer.send_response(key, make_response(invite, 486, to_tag="me"), 0.0)
    ack = request("ACK", to_tag="me")
    layer.receive_message(ack, PEER, 0.1, reliable=True)
    assert events(layer) == [TransactionTerminated(key)]


def test_invite_server_2xx_accepted_until_ack() -> None:
    layer = udp()
    invite = request("INVITE", cseq=20)
    layer.receive_message(invite, PEER, 0.0, reliable=False)
    key = events(layer)[0].key  # type: ignore[attr-defined]
    ok = make_response(invite, 200, to_tag="me")
    layer.send_response(key, ok, 0.05)
    assert [bytes(o.message) for o in sent(layer)] == [bytes(ok)]  # resent as sent
    assert layer.state_of(key) is TransactionState.ACCEPTED
    layer.handle_timer(0.55)  # the 2xx is retransmitted until an ACK arrives
    assert [bytes(o.message) for o in sent(layer)] == [bytes(ok)]  # resent as sent
    layer.receive_message(invite, PEER, 0.6, reliable=False)  # not a new request
    assert [bytes(o.message) for o in sent(layer)] == [bytes(ok)]  # resent as sent
    assert events(layer) == []
    layer.send_response(key, ok, 0.7)  # the TU may repeat its 2xx
    assert len(sent(layer)) == 1
    ack = request("ACK", branch="z9hG4bKnew", cseq=20, to_tag="me")
    layer.receive_message(ack, PEER, 1.0, reliable=False)
    assert events(layer) == [AckReceived(ack, PEER, None)]
    assert layer.get_timer() == pytest.approx(32.05)  # timer L only
    layer.receive_message(ack, PEER, 2.0, reliable=False)  # a repeated ACK reaches the TU too
    assert events(layer) == [AckReceived(ack, PEER, None)]
    layer.handle_timer(32.05)
    assert events(layer) == [TransactionTerminated(key)]
    assert sent(layer) == []


def test_invite_server_2xx_without_ack_times_out() -> None:
    layer = udp()
    invite = request("INVITE")
    layer.receive_message(invite, PEER, 0.0, reliable=False)
    key = events(layer)[0].key  # type: ignore[attr-defined]
    layer.send_response(key, make_response(invite, 200, to_tag="me"), 0.0)
    while (deadline := layer.get_timer()) is not None and deadline < 32.0:
        layer.handle_timer(deadline)
    assert len(sent(layer)) == 1 + 10  # 2xx plus retransmissions up to timer L
    layer.handle_timer(32.0)
    assert events(layer) == [TransactionTimedOut(key, invite), TransactionTerminated(key)]


def test_invite_server_ack_reusing_the_invite_branch() -> None:
    layer = udp()
    invite = request("INVITE")
    layer.receive_message(invite, PEER, 0.0, reliable=False)
    key = events(layer)[0].key  # type: ignore[attr-defined]
    layer.send_response(key, make_response(invite, 200, to_tag="me"), 0.0)
    ack = request("ACK", to_tag="me")  # same branch as the INVITE
    layer.receive_message(ack, PEER, 0.1, reliable=False)
    assert events(layer) == [AckReceived(ack, PEER, None)]
    assert layer.get_timer() == 32.0


def test_invite_server_guard_when_tu_never_answers() -> None:
    layer = udp(trying_delay=None, timer_c=10.0)
    invite = request("INVITE")
    layer.receive_message(invite, PEER, 0.0, reliable=False)
    key = events(layer)[0].key  # type: ignore[attr-defined]
    layer.handle_timer(10.0)
    assert events(layer) == [TransactionTimedOut(key, invite), TransactionTerminated(key)]
    with pytest.raises(SipLocalError):
        layer.send_response(key, make_response(invite, 200, to_tag="me"), 11.0)


def test_ack_without_transaction() -> None:
    layer = udp()
    ack = load("sdk28181_ack_1.sip")
    layer.receive_message(ack, PEER, 0.0, reliable=False, conn_id=7)
    assert events(layer) == [AckReceived(ack, PEER, 7)]  # type: ignore[arg-type]


# ----------------------------------------------------------- non-INVITE server
def test_non_invite_server_duplicates_and_timer_j() -> None:
    layer = udp()
    register = load("dahua_register_1.sip")
    assert isinstance(register, SipRequest)
    layer.receive_message(register, PEER, 0.0, reliable=False)
    (event,) = events(layer)
    assert isinstance(event, RequestReceived)
    layer.receive_message(register, PEER, 0.1, reliable=False)  # Trying: absorbed
    assert events(layer) == [] and sent(layer) == []
    challenge = make_response(register, 401, to_tag="srv")
    layer.send_response(register, challenge, 0.2)  # by request instead of key
    assert sent(layer) == [Outgoing(challenge, PEER, None, False, event.key)]
    layer.receive_message(register, PEER, 0.3, reliable=False)  # answered from the cache
    assert [bytes(o.message) for o in sent(layer)] == [bytes(challenge)]  # resent as sent
    # While timer J runs the transaction keeps only the response's bytes.
    (nist,) = layer._nist.values()
    assert nist[NIST_RESPONSE] == bytes(challenge)
    assert events(layer) == []
    assert layer.get_timer() == pytest.approx(32.2)  # timer J
    layer.handle_timer(32.2)
    assert events(layer) == [TransactionTerminated(event.key)]
    # After timer J the same request is new again.
    layer.receive_message(register, PEER, 40.0, reliable=False)
    assert isinstance(events(layer)[0], RequestReceived)


def test_non_invite_server_provisional_is_resent() -> None:
    layer = udp()
    msg = request("MESSAGE")
    layer.receive_message(msg, PEER, 0.0, reliable=False)
    key = events(layer)[0].key  # type: ignore[attr-defined]
    trying = make_response(msg, 100)
    layer.send_response(key, trying, 0.1)
    sent(layer)
    layer.receive_message(msg, PEER, 0.5, reliable=False)
    assert [o.message for o in sent(layer)] == [trying]
    assert layer.state_of(key) is TransactionState.PROCEEDING


def test_non_invite_server_cheap_path_over_tcp() -> None:
    layer = udp(report_terminated=False)
    msg = request("REGISTER")
    layer.receive_message(msg, PEER, 0.0, reliable=True, conn_id="tcp-1")
    (event,) = events(layer)
    assert isinstance(event, RequestReceived) and event.conn_id == "tcp-1"
    layer.send_response(event.key, make_response(msg, 200, to_tag="s"), 0.0)
    out = sent(layer)
    assert out[0].conn_id == "tcp-1" and out[0].reliable
    assert len(layer) == 0 and layer.get_timer() is None and events(layer) == []


def test_non_invite_server_guard_timer() -> None:
    layer = udp(answer_timeout=3.0)
    msg = request("MESSAGE")
    layer.receive_message(msg, PEER, 0.0, reliable=True)
    key = events(layer)[0].key  # type: ignore[attr-defined]
    assert layer.get_timer() == 3.0
    layer.handle_timer(3.0)
    assert events(layer) == [TransactionTimedOut(key, msg), TransactionTerminated(key)]


def test_send_response_misuse() -> None:
    layer = udp()
    msg = request("MESSAGE")
    layer.receive_message(msg, PEER, 0.0, reliable=False)
    key = events(layer)[0].key  # type: ignore[attr-defined]
    with pytest.raises(SipLocalError, match="not a valid response"):
        layer.send_response(key, SipResponse(99), 0.0)
    layer.send_response(key, make_response(msg, 200, to_tag="a"), 0.0)
    with pytest.raises(SipLocalError, match="cannot send 200"):
        layer.send_response(key, make_response(msg, 200, to_tag="a"), 0.0)
    with pytest.raises(SipLocalError, match="no server transaction"):
        layer.send_response(key._replace(branch="z9hG4bKzz"), make_response(msg, 200), 0.0)
    with pytest.raises(SipLocalError, match="cannot match"):
        layer.send_response(SipRequest("MESSAGE", "sip:a@b"), make_response(msg, 200), 0.0)


# ------------------------------------------------------------- branch-less peers
def test_wvp_branch_without_cookie_absorbs_retransmissions() -> None:
    layer = udp()
    msg = load("wvp_devicecontrol-guard_1.sip")
    assert isinstance(msg, SipRequest)
    assert not (msg.top_via.branch or "").startswith("z9hG4bK")
    layer.receive_message(msg, ("13.50.108.195", 5060), 0.0, reliable=False)
    (event,) = events(layer)
    assert isinstance(event, RequestReceived)
    assert event.key.sent_by == "0.0.0.0:5060" and event.key.method == "MESSAGE"
    again = load("wvp_devicecontrol-guard_1.sip")  # a fresh parse, as the glue would do
    layer.receive_message(again, ("13.50.108.195", 5060), 0.4, reliable=False)
    assert events(layer) == []
    ok = make_response(msg, 200, to_tag="cam")
    layer.send_response(event.key, ok, 0.5)
    sent(layer)
    layer.receive_message(again, ("13.50.108.195", 5060), 1.0, reliable=False)
    assert [bytes(o.message) for o in sent(layer)] == [bytes(ok)]  # resent as sent


def test_rfc2543_invite_non_2xx_ack_matches_without_branch() -> None:
    layer = udp()
    invite = request("INVITE", branch=None)
    layer.receive_message(invite, PEER, 0.0, reliable=False)
    key = events(layer)[0].key  # type: ignore[attr-defined]
    layer.send_response(key, make_response(invite, 404, to_tag="me"), 0.0)
    sent(layer)
    layer.receive_message(request("INVITE", branch=None), PEER, 0.3, reliable=False)
    assert statuses(sent(layer)) == [404]
    ack = request("ACK", branch=None, to_tag="me")  # same Request-URI, Call-ID, CSeq, Via
    layer.receive_message(ack, PEER, 0.4, reliable=False)
    assert events(layer) == []
    assert layer.state_of(key) is TransactionState.CONFIRMED
    # A different CSeq number is a different request.
    layer.receive_message(request("INVITE", branch=None, cseq=2), PEER, 0.5, reliable=False)
    assert isinstance(events(layer)[0], RequestReceived)


def test_same_branch_from_two_hosts_are_two_transactions() -> None:
    layer = udp()
    layer.receive_message(request("MESSAGE"), PEER, 0.0, reliable=False)
    layer.receive_message(request("MESSAGE", sent_by="10.0.0.6:5060"), PEER, 0.0, reliable=False)
    assert [type(e) for e in events(layer)] == [RequestReceived, RequestReceived]


def test_unusual_via_spellings() -> None:
    layer = udp()
    msg = request("MESSAGE", branch=None)
    msg.headers.set("Via", 'SIP / 2.0 / UDP 10.0.0.5:5060 ; Branch = z9hG4bKcase ;x="a,b"')
    msg.invalidate()
    layer.receive_message(msg, PEER, 0.0, reliable=False)
    key = events(layer)[0].key  # type: ignore[attr-defined]
    assert key.branch == "z9hG4bKcase" and key.sent_by == "10.0.0.5:5060"
    two = request("MESSAGE", branch=None)
    two.headers.set("Via", "SIP/2.0/UDP 10.0.0.7;branch=z9hG4bKtwo, SIP/2.0/UDP 10.0.0.8")
    layer.receive_message(two, PEER, 0.0, reliable=False)
    key = events(layer)[0].key  # type: ignore[attr-defined]
    assert key.branch == "z9hG4bKtwo" and key.sent_by == "10.0.0.7"
    bad = request("MESSAGE", branch=None)
    bad.headers.set("Via", "garbage")
    with pytest.raises(SipRemoteError):
        layer.receive_message(bad, PEER, 0.0, reliable=False)
    empty = request("MESSAGE", branch=None)
    empty.headers.set("Via", ", ,")
    with pytest.raises(SipRemoteError):
        layer.receive_message(empty, PEER, 0.0, reliable=False)
    no_via = SipRequest("MESSAGE", "sip:a@b")
    with pytest.raises(SipRemoteError):
        layer.receive_message(no_via, PEER, 0.0, reliable=False)
    assert len(layer) == 2


# ----------------------------------------------------------------------- CANCEL
def test_cancel_pending_invite() -> None:
    layer = udp()
    invite = request("INVITE")
    layer.receive_message(invite, PEER, 0.0, reliable=False)
    key = events(layer)[0].key  # type: ignore[attr-defined]
    ringing = make_response(invite, 180, to_tag="me")
    layer.send_response(key, ringing, 0.05)
    sent(layer)
    cancel = make_cancel(invite)
    layer.receive_message(cancel, PEER, 0.1, reliable=False)
    (ok,) = sent(layer)
    assert isinstance(ok.message, SipResponse) and ok.message.status == 200
    assert ok.message.cseq == (1, "CANCEL") and ok.message.to.tag == "me"
    assert events(layer) == [CancelReceived(key, cancel)]
    layer.receive_message(cancel, PEER, 0.2, reliable=False)  # CANCEL retransmitted
    assert statuses(sent(layer)) == [200]
    assert events(layer) == []
    layer.send_response(key, make_response(invite, 487, to_tag="me"), 0.3)
    assert statuses(sent(layer)) == [487]
    layer.receive_message(request("ACK", to_tag="me"), PEER, 0.4, reliable=False)
    assert events(layer) == []
    assert layer.state_of(key) is TransactionState.CONFIRMED


def test_cancel_unknown_or_answered() -> None:
    layer = udp()
    layer.receive_message(make_cancel(request("INVITE")), PEER, 0.0, reliable=True)
    (resp,) = sent(layer)
    assert isinstance(resp.message, SipResponse) and resp.message.status == 481
    assert resp.message.to.tag  # a final response carries a To tag
    assert [type(e) for e in events(layer)] == [TransactionTerminated]
    invite = request("INVITE", branch="z9hG4bK9")
    layer.receive_message(invite, PEER, 0.0, reliable=True)
    key = events(layer)[0].key  # type: ignore[attr-defined]
    layer.send_response(key, make_response(invite, 200, to_tag="me"), 0.0)
    sent(layer)
    layer.receive_message(make_cancel(invite), PEER, 0.1, reliable=True)
    assert statuses(sent(layer)) == [200]
    assert not any(isinstance(e, CancelReceived) for e in events(layer))


def test_send_cancel_waits_for_a_provisional() -> None:
    layer = udp()
    invite = request("INVITE")
    key = layer.send_request(invite, PEER, 0.0, reliable=False)
    sent(layer)
    cancel_key = layer.send_cancel(key, 0.1)
    assert cancel_key == key._replace(method="CANCEL")
    assert sent(layer) == []  # held back: no provisional yet (§9.1)
    with pytest.raises(SipLocalError, match="already cancelled"):
        layer.send_cancel(key, 0.1)
    layer.receive_message(make_response(invite, 100), PEER, 0.2, reliable=False)
    (out,) = sent(layer)
    cancel = out.message
    assert isinstance(cancel, SipRequest) and cancel.method == "CANCEL"
    assert cancel.top_via.branch == invite.top_via.branch
    assert cancel.cseq == (1, "CANCEL") and cancel.uri == invite.uri
    ok = make_response(cancel, 200, to_tag="t")
    layer.receive_message(ok, PEER, 0.3, reliable=False)
    terminated = make_response(invite, 487, to_tag="t")
    layer.receive_message(terminated, PEER, 0.4, reliable=False)
    assert events(layer)[-2:] == [
        ResponseReceived(ok, cancel_key),
        ResponseReceived(terminated, key),
    ]
    assert [o.message.method for o in sent(layer)] == ["ACK"]  # type: ignore[union-attr]
    with pytest.raises(SipLocalError, match="final response"):
        layer.send_cancel(key, 0.5)


def test_send_cancel_dropped_when_invite_ends_first() -> None:
    layer = udp()
    invite = request("INVITE")
    key = layer.send_request(invite, PEER, 0.0, reliable=False)
    cancel_key = layer.send_cancel(key, 0.1)
    ok = make_response(invite, 200, to_tag="t")
    layer.receive_message(ok, PEER, 0.2, reliable=False)
    expected: list[TransactionEvent] = [
        ResponseReceived(ok, key),
        TransactionTerminated(cancel_key),
        TransactionTerminated(key),
    ]
    assert events(layer) == expected
    assert len(layer) == 0
    with pytest.raises(SipLocalError, match="no INVITE"):
        layer.send_cancel(key, 0.3)


def test_send_cancel_when_proceeding_goes_out_at_once() -> None:
    layer = udp(max_transactions=3)
    invite = request("INVITE")
    invite.headers.add("Route", "<sip:proxy.example;lr>")
    key = layer.send_request(invite, PEER, 0.0, reliable=False)
    layer.receive_message(make_response(invite, 180, to_tag="t"), PEER, 0.1, reliable=False)
    sent(layer)
    cancel_key = layer.send_cancel(key, 0.2)
    assert [o.key for o in sent(layer)] == [cancel_key]
    assert layer.get_timer() == pytest.approx(0.7)  # timer E of the CANCEL
    other = layer.send_request(request("INVITE", branch=None), PEER, 0.0, reliable=True)
    with pytest.raises(SipLocalError, match="limit"):
        layer.send_cancel(other, 0.3)
    sent(layer)
    layer.receive_message(make_response(invite, 487, to_tag="t"), PEER, 0.4, reliable=False)
    (ack,) = sent(layer)
    assert ack.message.headers.get_all("Route") == ["<sip:proxy.example;lr>"]


def test_cancel_before_any_tagged_response_gets_a_fresh_tag() -> None:
    layer = udp(trying_delay=0.0)
    invite = request("INVITE")
    layer.receive_message(invite, PEER, 0.0, reliable=False)
    sent(layer)
    layer.receive_message(make_cancel(invite), PEER, 0.1, reliable=False)
    (ok,) = sent(layer)
    assert isinstance(ok.message, SipResponse) and ok.message.to.tag
    # A provisional whose To cannot be parsed is no source of a tag either.
    other = request("INVITE", branch="z9hG4bK7")
    layer.receive_message(other, PEER, 0.2, reliable=False)
    key = [e for e in events(layer) if isinstance(e, RequestReceived)][-1].key
    odd = make_response(other, 180)
    odd.headers.set("To", "<broken")
    layer.send_response(key, odd, 0.3)
    layer.receive_message(make_cancel(other), PEER, 0.4, reliable=False)
    assert statuses(sent(layer))[-1] == 200


def test_invite_with_unparsable_from_still_works() -> None:
    layer = udp()
    invite = request("INVITE")
    invite.headers.set("From", "<broken")
    invite.invalidate()
    layer.receive_message(invite, PEER, 0.0, reliable=False)
    key = events(layer)[0].key  # type: ignore[attr-defined]
    layer.send_response(key, make_response(invite, 200, to_tag="me"), 0.1)
    assert layer.state_of(key) is TransactionState.ACCEPTED


def test_make_cancel_rules() -> None:
    invite = request("INVITE")
    invite.headers.add("Route", "<sip:proxy;lr>")
    cancel = make_cancel(invite)
    assert cancel.headers.get_all("Route") == ["<sip:proxy;lr>"]
    assert cancel.headers.get("To") == invite.headers.get("To")
    with pytest.raises(SipLocalError):
        make_cancel(request("ACK"))
    with pytest.raises(SipLocalError):
        make_cancel(SipRequest("INVITE", "sip:a@b"))
    no_cseq = SipRequest("INVITE", "sip:a@b", Headers([("Via", "SIP/2.0/UDP h")]))
    with pytest.raises(SipLocalError):
        make_cancel(no_cseq)


# ------------------------------------------------------------------- limits etc.
def test_transaction_cap_drops_new_requests() -> None:
    layer = udp(max_transactions=2)
    for i in range(3):
        layer.receive_message(request("MESSAGE", branch=f"z9hG4bK{i}x"), PEER, 0.0, reliable=False)
    assert len([e for e in events(layer) if isinstance(e, RequestReceived)]) == 2
    assert layer.stats.dropped_over_limit == 1
    # Retransmissions of live transactions still match.
    layer.receive_message(request("MESSAGE", branch="z9hG4bK0x"), PEER, 0.1, reliable=False)
    assert layer.stats.requests_absorbed == 1


def test_send_stateless() -> None:
    layer = udp()
    ack = request("ACK", to_tag="x")
    layer.send_stateless(ack, PEER, reliable=False)
    assert sent(layer) == [Outgoing(ack, PEER, None, False, None)]


def test_config_defaults() -> None:
    cfg = TransactionConfig()
    assert (cfg.t1, cfg.t2, cfg.t4, cfg.timer_b, cfg.timer_d) == (0.5, 4.0, 5.0, 32.0, 32.0)


def test_transition_table_is_consistent() -> None:
    for (kind, state, inp), new in TRANSITIONS.items():
        assert state is not TransactionState.TERMINATED
        assert isinstance(kind, TransactionKind) and isinstance(new, TransactionState)
        if inp is TransactionInput.ABORT:
            assert new is TransactionState.TERMINATED
    client = {k for k, _, _ in TRANSITIONS if k in (1, 2)}
    assert client == {TransactionKind.INVITE_CLIENT, TransactionKind.NON_INVITE_CLIENT}


# --------------------------------------------------------------------- fuzzing
_METHODS = ["INVITE", "MESSAGE", "ACK", "CANCEL", "BYE"]
_op = st.one_of(
    st.tuples(
        st.just("recv_req"),
        st.sampled_from(_METHODS),
        st.integers(0, 2),
        st.booleans(),
        st.sampled_from([None, "me"]),
    ),
    st.tuples(
        st.just("recv_resp"),
        st.sampled_from(_METHODS[:2] + _METHODS[3:]),
        st.integers(0, 2),
        st.sampled_from([100, 180, 200, 404]),
        st.booleans(),
    ),
    st.tuples(st.just("send_req"), st.sampled_from(_METHODS), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("send_resp"), st.integers(0, 5), st.sampled_from([100, 180, 200, 486, 700])),
    st.tuples(st.just("cancel"), st.integers(0, 5)),
    st.tuples(st.just("timer"), st.floats(0, 40)),
    st.tuples(st.just("error"), st.integers(0, 5)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_op, max_size=40), st.integers(1, 6))
def test_random_interleavings_only_raise_local_errors(ops: list[tuple[Any, ...]], cap: int) -> None:
    layer = udp(max_transactions=cap)
    now = 0.0
    keys: list[TransactionKey] = []
    for op in ops:
        kind = op[0]
        try:
            if kind == "recv_req":
                _, method, b, reliable, tag = op
                branch = None if b == 0 else f"z9hG4bK{b}"
                layer.receive_message(
                    request(method, branch=branch, to_tag=tag), PEER, now, reliable=reliable
                )
            elif kind == "recv_resp":
                _, method, b, status, reliable = op
                req = request(method, branch=f"z9hG4bK{b}")
                layer.receive_message(
                    make_response(req, status, to_tag="t"), PEER, now, reliable=reliable
                )
            elif kind == "send_req":
                _, method, b, reliable = op
                keys.append(
                    layer.send_request(
                        request(method, branch=f"z9hG4bK{b}"), PEER, now, reliable=reliable
                    )
                )
            elif kind == "send_resp":
                _, i, status = op
                if keys or i:
                    key = keys[i % len(keys)] if keys and i else None
                    target = key if key is not None else request("MESSAGE")
                    resp = make_response(request("MESSAGE"), 200, to_tag="x")
                    resp.status = status
                    layer.send_response(target, resp, now)
            elif kind == "cancel":
                if keys:
                    keys.append(layer.send_cancel(keys[op[1] % len(keys)], now))
            elif kind == "timer":
                now = max(now, op[1])
                layer.handle_timer(now)
            else:
                if keys:
                    layer.transport_error(keys[op[1] % len(keys)], now)
        except SipLocalError:
            pass
        for event in events(layer):
            if isinstance(event, RequestReceived):
                keys.append(event.key)
        sent(layer)
        assert len(layer) <= cap
        deadline = layer.get_timer()
        assert deadline is None or deadline >= 0.0
    # Every transaction ends once time runs far enough.
    layer.handle_timer(now + 1000.0)
    events(layer)
    assert len(layer) == 0 and layer.get_timer() is None


def test_non_invite_timers_fire_late_not_early_if_the_clock_goes_back() -> None:
    layer = udp()
    layer.receive_message(request(branch="z9hG4bKa"), PEER, 100.0, reliable=False)
    first = events(layer)[0]
    assert isinstance(first, RequestReceived)
    layer.receive_message(request(branch="z9hG4bKb"), PEER, 50.0, reliable=False)
    second = events(layer)[0]
    assert isinstance(second, RequestReceived)
    assert layer.get_timer() == 132.0  # the head's deadline holds back the earlier one
    layer.handle_timer(131.0)
    assert events(layer) == []
    layer.handle_timer(132.0)
    assert events(layer) == [  # in deadline order once due
        TransactionTimedOut(second.key, second.request),
        TransactionTerminated(second.key),
        TransactionTimedOut(first.key, first.request),
        TransactionTerminated(first.key),
    ]
    assert len(layer) == 0 and layer.get_timer() is None


def test_non_invite_and_invite_timers_due_together_fire_in_deadline_order() -> None:
    layer = udp(trying_delay=None)
    layer.receive_message(request("INVITE", branch="z9hG4bKi"), PEER, 0.0, reliable=False)
    invite = events(layer)[0]
    assert isinstance(invite, RequestReceived)
    layer.send_response(invite.key, make_response(invite.request, 486, to_tag="t"), 0.0)
    layer.receive_message(request(branch="z9hG4bKm"), PEER, 1.0, reliable=False)
    msg = events(layer)[0]
    assert isinstance(msg, RequestReceived)
    layer.send_response(msg.key, make_response(msg.request, 200, to_tag="t"), 1.0)
    layer.messages_to_send()
    layer.handle_timer(100.0)  # timer H (32 s) of the INVITE, then timer J (33 s)
    assert [type(e) for e in events(layer)] == [
        TransactionTimedOut,
        TransactionTerminated,
        TransactionTerminated,
    ]
    assert len(layer) == 0


# ------------------------------------------------------- the direct road (receive_request)
def test_receive_request_opens_the_transaction_without_an_event() -> None:
    layer = udp()
    msg = request("REGISTER")
    key = layer.receive_request(msg, PEER, 0.0, reliable=False)
    assert key is not None and layer.state_of(key) is TransactionState.TRYING
    assert events(layer) == []  # the caller answers at once instead
    resp = make_response(msg, 200, to_tag="s")
    layer.send_response(key, resp, 0.1)
    assert sent(layer) == [Outgoing(resp, PEER, None, False, key)]
    # §17.2.2: the retransmission gets the same response and nothing for the TU.
    assert layer.receive_request(msg, PEER, 0.5, reliable=False) is None
    assert [bytes(o.message) for o in sent(layer)] == [bytes(resp)]  # resent as sent
    assert events(layer) == []


def test_request_key_is_the_key_receive_request_opens_without_opening_one() -> None:
    """What a stateless answer (RFC 3261 §8.2.7) checks first: same key, no transaction."""
    layer = udp()
    msg = request("REGISTER")
    key = TransactionLayer.request_key(msg)
    assert len(layer) == 0
    assert layer.receive_request(msg, PEER, 0.0, reliable=False) == key


def test_receive_request_leaves_invite_ack_and_cancel_to_the_events() -> None:
    layer = udp(trying_delay=None)
    invite = request("INVITE")
    assert layer.receive_request(invite, PEER, 0.0, reliable=False) is None
    (event,) = events(layer)
    assert isinstance(event, RequestReceived) and event.request is invite


def test_receive_request_drops_over_the_limit() -> None:
    layer = udp(max_transactions=1)
    assert layer.receive_request(request("MESSAGE"), PEER, 0.0, reliable=False) is not None
    other = request("MESSAGE", branch="z9hG4bKother")
    assert layer.receive_request(other, PEER, 0.0, reliable=False) is None
    assert layer.stats.dropped_over_limit == 1


def test_an_answered_request_is_not_kept_for_timer_j() -> None:
    layer = udp()
    msg = request("MESSAGE")
    key = layer.receive_request(msg, PEER, 0.0, reliable=False)
    assert key is not None
    layer.send_response(key, make_response(msg, 200, to_tag="s"), 0.0)
    sent(layer)
    assert layer._nist[key][2] is None  # NIST_REQUEST: only the response is resent now
    layer.receive_request(msg, PEER, 1.0, reliable=False)
    assert statuses(sent(layer)) == [200]


def test_server_timer_slack_batches_timer_j() -> None:
    layer = udp(server_timer_slack=1.0)
    keys = []
    for n in range(3):
        msg = request("MESSAGE", branch=f"z9hG4bKslack{n}")
        key = layer.receive_request(msg, PEER, n * 0.3, reliable=False)
        assert key is not None
        layer.send_response(key, make_response(msg, 200, to_tag="s"), n * 0.3)
        keys.append(key)
    assert layer.get_timer() == pytest.approx(33.0)  # the first timer J (32.0) plus slack
    layer.handle_timer(33.0)  # ends the three at once: all were due by then
    assert len(layer) == 0 and layer.get_timer() is None
    assert events(layer) == [TransactionTerminated(k) for k in keys]


def test_server_timer_slack_never_delays_the_exact_timers() -> None:
    layer = udp(server_timer_slack=1.0)
    layer.send_request(request("MESSAGE", branch="z9hG4bKcli"), PEER, 0.0, reliable=False)
    assert layer.get_timer() == 0.5  # timer E, exact
