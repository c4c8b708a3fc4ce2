"""CallService: INVITE/ACK/BYE, re-keying, sharing, errors (scripted device, real worker).

The device's answers are scripted in place of the network; the media worker is real but its
loop is not started (commands run directly), so no packet is needed and nothing waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from gb28181 import manscdp
from gb28181.calls import CallError, CallService
from gb28181.metrics import Metrics
from gb28181.registrar import Registrar, RegistrarConfig, Source
from gb28181.signalling import Signalling, SipRequestTimeout
from gb28181.sip import (
    DigestVerifier,
    NonceIssuer,
    SipRequest,
    SipResponse,
    make_response,
    parse_sdp,
)
from gb28181.store import DeviceRecord
from media.relay import StreamStarted, StreamTimedOut
from media.worker import RelayWorker, WorkerConfig

SERVER = "34020000002000000001"
DOMAIN = "3402000000"
DEVICE = "34020000001180000001"
CHANNEL = "34020000001320000001"
T0 = 1_700_000_000.0

Answer = Callable[[SipRequest], SipResponse]


def answer_sdp(ssrc: str | None = "0200000001", port: int = 15060) -> bytes:
    lines = [
        "v=0",
        f"o={CHANNEL} 0 0 IN IP4 192.0.2.1",
        "s=Play",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        f"m=video {port} RTP/AVP 96",
        "a=sendonly",
        "a=rtpmap:96 PS/90000",
    ]
    if ssrc is not None:
        lines.append(f"y={ssrc}")
    return ("\r\n".join(lines) + "\r\n").encode()


def ok(request: SipRequest, body: bytes = b"") -> SipResponse:
    headers = [("Contact", f"<sip:{CHANNEL}@192.0.2.1:5060>")]
    if body:
        headers.append(("Content-Type", "application/sdp"))
    return make_response(request, 200, to_tag="dev1", headers=headers, body=body)


class ScriptedSignalling(Signalling):
    """A Signalling whose requests are answered by ``answer`` instead of the network."""

    def __init__(self, registrar: Registrar) -> None:
        super().__init__(
            registrar, Metrics(), server_id=SERVER, max_size=65536, user_agent="t",
            clock=lambda: T0,
        )  # fmt: skip
        self.sent: list[SipRequest] = []
        self.answer: Answer = lambda r: ok(r, answer_sdp())
        self.transport.flush = lambda: None  # type: ignore[method-assign]

    async def send_to_device(self, request: SipRequest, device_id: str) -> SipResponse:
        self.sent.append(request)
        return self.answer(request)

    def acks(self) -> list[SipRequest]:
        out = [m.message for m in self.layer.messages_to_send()]
        return [m for m in out if isinstance(m, SipRequest) and m.method == "ACK"]


@pytest.fixture
async def env() -> AsyncIterator[tuple[CallService, ScriptedSignalling, RelayWorker]]:
    reg = Registrar(
        RegistrarConfig(server_id=SERVER, domain=DOMAIN),
        DigestVerifier(NonceIssuer(b"s" * 32, 300), DOMAIN),
    )
    reg.restore(
        [
            DeviceRecord(
                device_id=DEVICE, kind="device", host="192.0.2.1", port=5060, expires=3600,
                registered_at=T0, online=True,
            )
        ],
        T0 + 1,
    )  # fmt: skip
    sig = ScriptedSignalling(reg)
    worker = RelayWorker(WorkerConfig(host="127.0.0.1", port_first=42100, port_last=42199))
    calls = CallService(
        sig, worker, lambda ch: DEVICE if ch in (CHANNEL, DEVICE) else None,
        server_id=SERVER, domain=DOMAIN, media_host="198.51.100.7", idle_delay=0.0,
        clock=lambda: T0,
    )  # fmt: skip
    try:
        yield calls, sig, worker
    finally:
        worker.stop()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_play_invites_with_offer_subject_and_acks(
    env: tuple[CallService, ScriptedSignalling, RelayWorker],
) -> None:
    calls, sig, _worker = env
    session, consumer = await calls.play(CHANNEL, ("127.0.0.1", 9, "udp"))
    (invite,) = sig.sent
    assert invite.method == "INVITE"
    assert invite.uri.startswith(f"sip:{CHANNEL}@192.0.2.1")
    assert invite.headers.get("Subject") == f"{CHANNEL}:0200000001,{SERVER}:0"
    offer = parse_sdp(invite.body)
    assert offer.session_name == "Play"
    assert offer.ssrc == "0200000001"
    assert offer.connection_address == "198.51.100.7"
    assert offer.media_port == session.port
    (ack,) = sig.acks()
    assert ack.call_id == invite.call_id and ack.cseq == (invite.cseq[0], "ACK")
    assert session.state == "playing" and session.device_media == ("192.0.2.1", 15060)
    view = calls.describe(session)
    assert view["receive"] == {"host": "198.51.100.7", "port": session.port}
    assert view["outputs"] == [
        {"consumer": consumer.consumer_id, "addr": "127.0.0.1", "port": 9, "transport": "udp"}
    ]
    assert view["stats"]["ssrc"] == 200000001


async def test_answer_with_another_ssrc_rekeys_the_receiver(
    env: tuple[CallService, ScriptedSignalling, RelayWorker],
) -> None:
    calls, sig, worker = env
    sig.answer = lambda r: ok(r, answer_sdp("1100000042"))
    session, _ = await calls.play(CHANNEL)
    assert session.answer_ssrc == "1100000042"
    assert worker.stats(session.media_id)["ssrc"] == 1100000042


async def test_second_play_joins_and_last_leave_sends_bye(
    env: tuple[CallService, ScriptedSignalling, RelayWorker],
) -> None:
    calls, sig, worker = env
    (first, c1), (second, c2) = await asyncio.gather(calls.play(CHANNEL), calls.play(CHANNEL))
    assert first is second and len(first.consumers) == 2
    assert [r.method for r in sig.sent] == ["INVITE"]
    calls.leave(first.session_id, c1.consumer_id)
    await settle()
    assert first.state == "playing"
    calls.leave(first.session_id, c2.consumer_id)
    await settle()
    assert [r.method for r in sig.sent] == ["INVITE", "BYE"]
    assert sig.sent[1].call_id == sig.sent[0].call_id
    assert calls.sessions == {} and worker.stats()["sessions"] == {}
    # A new play after the end invites again, with the next SSRC.
    session, _ = await calls.play(CHANNEL)
    assert session.ssrc == "0200000002"


async def test_refusal_timeout_and_unknown_channel_have_reasons(
    env: tuple[CallService, ScriptedSignalling, RelayWorker],
) -> None:
    calls, sig, worker = env
    sig.answer = lambda r: make_response(r, 486, "Busy Here", to_tag="x")
    with pytest.raises(CallError) as refused:
        await calls.play(CHANNEL)
    assert refused.value.status == 502 and "486" in refused.value.reason

    def timeout(r: SipRequest) -> SipResponse:
        raise SipRequestTimeout("no answer")

    sig.answer = timeout
    with pytest.raises(CallError) as timed_out:
        await calls.play(CHANNEL)
    assert timed_out.value.error == "invite_timeout"
    with pytest.raises(CallError) as unknown:
        await calls.play("34020000001329999999")
    assert unknown.value.status == 404
    assert calls.sessions == {} and worker.stats()["sessions"] == {}
    assert not sig.acks()


async def test_bye_from_device_and_no_media_end_the_session(
    env: tuple[CallService, ScriptedSignalling, RelayWorker],
) -> None:
    calls, sig, worker = env
    session, _ = await calls.play(CHANNEL)
    bye = session.dialog.create_request("BYE") if session.dialog else None
    assert bye is not None
    source = Source("UDP", "192.0.2.1", 5060, None)
    assert calls.on_bye(bye, source, T0).status == 200
    await settle()
    assert session.state == "ended" and calls.sessions == {}
    assert [r.method for r in sig.sent] == ["INVITE"]  # no BYE back
    assert calls.on_bye(bye, source, T0).status == 481

    session, _ = await calls.play(CHANNEL)
    worker.events.put((session.media_id, StreamTimedOut(False, None, T0)))
    calls.poll_events()
    await settle()
    assert session.end_reason == "no media"
    assert [r.method for r in sig.sent] == ["INVITE", "INVITE", "BYE"]


async def test_invite_given_up_is_cancelled_once_the_device_sent_a_1xx(
    env: tuple[CallService, ScriptedSignalling, RelayWorker],
) -> None:
    calls, sig, worker = env

    def pending(r: SipRequest) -> SipResponse:
        sig.layer.send_request(r, ("192.0.2.1", 5060), T0, reliable=False)
        raise TimeoutError  # what wait_for raises when invite_timeout passes

    sig.answer = pending
    with pytest.raises(CallError) as err:
        await calls.play(CHANNEL)
    assert err.value.status == 504
    (invite,) = sig.sent
    assert [m.message.method for m in sig.layer.messages_to_send()] == ["INVITE"]  # type: ignore[union-attr]
    trying = make_response(invite, 100)
    sig.layer.receive_message(trying, ("192.0.2.1", 5060), T0 + 1, reliable=False)
    (cancel,) = [m.message for m in sig.layer.messages_to_send()]
    assert isinstance(cancel, SipRequest) and cancel.method == "CANCEL"
    assert cancel.call_id == invite.call_id and cancel.cseq == (invite.cseq[0], "CANCEL")
    assert worker.stats()["sessions"] == {}


async def test_retransmitted_200_is_acked_again(
    env: tuple[CallService, ScriptedSignalling, RelayWorker],
) -> None:
    calls, sig, _worker = env
    await calls.play(CHANNEL)
    (invite,) = sig.sent
    assert len(sig.acks()) == 1
    # The camera did not get our ACK and sends its 200 again (RFC 3261 §13.3.1.4).
    calls.on_stray_response(ok(invite, answer_sdp()))
    (again,) = sig.acks()
    assert again.call_id == invite.call_id and again.cseq == (invite.cseq[0], "ACK")
    # Another call's 200, and a final response to something else, are not ours to ACK.
    other = ok(invite, answer_sdp())
    other.headers.set("Call-ID", "someone-else")
    other.invalidate()
    calls.on_stray_response(other)
    assert sig.acks() == []


async def test_late_200_to_an_abandoned_invite_is_acked_and_byed(
    env: tuple[CallService, ScriptedSignalling, RelayWorker],
) -> None:
    calls, sig, _worker = env

    def no_answer(r: SipRequest) -> SipResponse:
        raise TimeoutError  # invite_timeout passed

    sig.answer = no_answer
    with pytest.raises(CallError):
        await calls.play(CHANNEL)
    (invite,) = sig.sent
    sig.answer = lambda r: make_response(r, 200, to_tag="dev1")
    calls.on_stray_response(ok(invite, answer_sdp()))  # the camera answers after all
    (ack,) = sig.acks()
    assert ack.call_id == invite.call_id and ack.cseq == (invite.cseq[0], "ACK")
    await settle()
    bye = sig.sent[-1]
    assert bye.method == "BYE" and bye.call_id == invite.call_id
    # Only once: a second copy of the 200 finds nothing left to end.
    calls.on_stray_response(ok(invite, answer_sdp()))
    assert sig.acks() == [] and sig.sent[-1] is bye


async def test_media_metrics_add_worker_deltas_and_time_the_start(
    env: tuple[CallService, ScriptedSignalling, RelayWorker], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, sig, worker = env
    now = [T0]
    calls.clock = lambda: now[0]
    session, _ = await calls.play(CHANNEL)
    now[0] = T0 + 0.4
    worker.events.put((session.media_id, StreamStarted(200000001, ("192.0.2.1", 15060), T0)))
    calls.poll_events()
    counters: dict[str, object] = {"packets": 10, "bytes": 10_000, "lost": 1, "drops": {"ssrc": 2}}
    counters["keyframes"] = 1

    def stats(session_id: int | None = None) -> dict[str, object]:
        return {"sessions": {str(session.media_id): dict(counters)}}

    monkeypatch.setattr(worker, "stats", stats)
    calls.sample_media()
    now[0] += 5.0
    counters.update(packets=30, bytes=20_000, lost=0, drops={"ssrc": 2, "source": 1})
    calls.sample_media()
    text = sig.metrics.render().decode()
    assert "gb28181_media_sessions 1.0" in text
    assert "gb28181_media_consumers 1.0" in text
    assert "gb28181_media_packets_total 30.0" in text
    assert "gb28181_media_bytes_total 20000.0" in text
    assert "gb28181_media_keyframes_total 1.0" in text
    assert "gb28181_media_packets_lost_total 1.0" in text  # a shrinking loss count is no delta
    assert 'gb28181_media_drops_total{reason="ssrc"} 2.0' in text
    assert 'gb28181_media_drops_total{reason="source"} 1.0' in text
    assert f'gb28181_media_stream_bitrate_bits_per_second{{channel="{CHANNEL}"}} 16000.0' in text
    assert 'gb28181_media_start_latency_seconds_bucket{le="0.5"} 1.0' in text
    assert 'gb28181_media_start_latency_seconds_bucket{le="0.25"} 0.0' in text
    # The gap filled, then a new loss: counted from the high-water mark, not twice.
    now[0] += 5.0
    counters.update(packets=40, bytes=30_000, lost=1)
    calls.sample_media()
    assert "gb28181_media_packets_lost_total 1.0" in sig.metrics.render().decode()
    now[0] += 5.0
    counters.update(packets=50, bytes=40_000, lost=2)
    calls.sample_media()
    assert "gb28181_media_packets_lost_total 2.0" in sig.metrics.render().decode()

    (consumer,) = session.consumers
    calls.leave(session.session_id, consumer)
    await settle()
    text = sig.metrics.render().decode()
    assert "gb28181_media_sessions 0.0" in text
    assert "gb28181_media_packets_total 50.0" in text  # totals outlive the session
    assert CHANNEL not in text


# -- playback / download from the device's storage (notes §6.9, §4.12, §7) -----------------------


async def test_history_invites_playback_not_shared_and_forwards_info(
    env: tuple[CallService, ScriptedSignalling, RelayWorker],
) -> None:
    calls, sig, _worker = env
    live, _ = await calls.play(CHANNEL)
    session, _ = await calls.history(
        CHANNEL, 1_700_000_000, 1_700_000_600, output=("127.0.0.1", 9, "udp"), ssrc=1234
    )
    assert session is not live and session.kind == "Playback"
    invite = sig.sent[-1]
    offer = parse_sdp(invite.body)
    assert offer.session_name == "Playback"
    assert b"u=" + CHANNEL.encode() + b":0" in invite.body
    assert b"t=1700000000 1700000600" in invite.body
    assert offer.ssrc is not None and offer.ssrc.startswith("1")  # history SSRC
    assert calls.describe(session)["kind"] == "Playback"
    # A second playback of the same channel is another session (never shared).
    other, _ = await calls.history(CHANNEL, 1_700_000_000, 1_700_000_600)
    assert other.session_id != session.session_id
    response = await calls.info(session.session_id, b"PAUSE RTSP/1.0\r\nCSeq: 1\r\n\r\n")
    assert response.status == 200
    info = sig.sent[-1]
    assert info.method == "INFO" and info.call_id == invite.call_id
    assert info.headers.get("Content-Type") == "Application/MANSRTSP"
    assert info.body == b"PAUSE RTSP/1.0\r\nCSeq: 1\r\n\r\n"


async def test_download_offer_and_media_status_121_ends_with_bye(
    env: tuple[CallService, ScriptedSignalling, RelayWorker],
) -> None:
    calls, sig, _worker = env
    ended: list[tuple[str, str]] = []
    calls.on_end.append(lambda s, reason: ended.append((s.session_id, reason)))
    session, _ = await calls.history(CHANNEL, 100, 200, download=True, speed=4)
    invite = sig.sent[-1]
    assert parse_sdp(invite.body).session_name == "Download"
    assert b"a=downloadspeed:4" in invite.body
    body = (
        '<?xml version="1.0" encoding="GB2312"?>\r\n<Notify><CmdType>MediaStatus</CmdType>'
        f"<SN>5</SN><DeviceID>{CHANNEL}</DeviceID><NotifyType>121</NotifyType></Notify>"
    ).encode()
    # In the INVITE's dialog: only its Call-ID matters (From may name the channel).
    message = SipRequest("MESSAGE", f"sip:{SERVER}@{DOMAIN}", invite.headers, body)
    response = calls.on_media_status(message, manscdp.decode(body), SRC_UNUSED, T0)
    assert response.status == 200
    await settle()
    assert ended == [(session.session_id, "end of file")]
    assert sig.sent[-1].method == "BYE" and sig.sent[-1].call_id == invite.call_id
    assert session.session_id not in calls.sessions
    # MediaStatus for no session of ours is still answered.
    assert calls.on_media_status(message, manscdp.decode(body), SRC_UNUSED, T0).status == 200


async def test_history_errors(env: tuple[CallService, ScriptedSignalling, RelayWorker]) -> None:
    calls, sig, _worker = env
    with pytest.raises(CallError) as err:
        await calls.history("34020000001329999999", 1, 2)
    assert err.value.status == 404
    sig.answer = lambda r: make_response(r, 404, to_tag="x")
    with pytest.raises(CallError) as err:
        await calls.history(CHANNEL, 1, 2)
    assert err.value.status == 502 and not calls.sessions
    with pytest.raises(CallError) as err:
        await calls.info("nope", b"")
    assert err.value.status == 404


SRC_UNUSED = Source("UDP", "192.0.2.1", 5060)


async def test_first_keyframe_latency_and_fps_metrics(
    env: tuple[CallService, ScriptedSignalling, RelayWorker], monkeypatch: pytest.MonkeyPatch
) -> None:
    from media.relay import KeyframeSent

    calls, sig, worker = env
    now = [T0]
    calls.clock = lambda: now[0]
    session, _ = await calls.play(CHANNEL)
    now[0] = T0 + 0.2
    worker.events.put((session.media_id, KeyframeSent(1, T0)))
    calls.poll_events()
    now[0] = T0 + 0.9
    worker.events.put((session.media_id, KeyframeSent(2, T0)))  # a later consumer: not timed
    calls.poll_events()
    assert session.keyframe_at == T0 + 0.2
    stats = {"packets": 10, "frames": 5, "fps": 25.0}
    monkeypatch.setattr(
        worker, "stats", lambda session_id=None: {"sessions": {str(session.media_id): stats}}
    )
    calls.sample_media()
    text = sig.metrics.render().decode()
    assert 'gb28181_media_first_keyframe_latency_seconds_bucket{le="0.25"} 1.0' in text
    assert "gb28181_media_first_keyframe_latency_seconds_count 1.0" in text
    assert "gb28181_media_frames_total 5.0" in text
    assert f'gb28181_media_stream_fps{{channel="{CHANNEL}"}} 25.0' in text


async def test_paused_playback_stops_the_no_media_clock(
    env: tuple[CallService, ScriptedSignalling, RelayWorker],
) -> None:
    calls, _sig, worker = env
    now = [500.0]
    worker.clock = lambda: now[0]  # the loop is not started: timers are checked by hand
    session, _ = await calls.history(CHANNEL, 1_700_000_000, 1_700_000_600)
    calls.poll_events()  # the re-key's event
    calls.set_paused(session.session_id, True)
    assert session.paused
    now[0] += 100.0
    worker._check_timers(now[0])
    assert worker.events.empty()
    calls.set_paused(session.session_id, False)
    now[0] += 14.0  # counted from the resume
    worker._check_timers(now[0])
    assert worker.events.empty()
    now[0] += 1.0
    worker._check_timers(now[0])
    calls.poll_events()
    await settle()
    assert session.state == "ended" and session.end_reason == "no media"
    with pytest.raises(CallError) as err:
        calls.set_paused(session.session_id, True)
    assert err.value.status == 404
