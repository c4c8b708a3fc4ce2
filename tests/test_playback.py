"""PlaybackService: platform recordings to a loopback consumer (byte-exact per frame, judged
by PyAV); the device source with a fake CallService and with a real one (scripted device);
MANSRTSP control; the MediaStatus 121 body."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gb28181 import manscdp
from gb28181.calls import CallError, CallService
from gb28181.mansrtsp import MansrtspRequest, Method
from gb28181.playback import PlaybackControlError, PlaybackService, media_status_message
from gb28181.sip import SipRequest, SipResponse, make_response, parse_message
from gb28181.store import RecordingRow
from media.playback_worker import PlaybackWorker
from media.rtp import RtpPacket
from media.worker import RelayWorker
from tests.clips import demux_video, encode_clip, write_segment
from tests.media.conftest import load_capture
from tests.test_calls import ScriptedSignalling, env

__all__ = ["env"]  # the fixture, re-used

CHANNEL = "34020000001320000001"
T0 = 1_700_000_000.0


class FakeStore:
    def __init__(self, rows: list[RecordingRow]) -> None:
        self.rows = rows

    async def list_recordings(
        self, channel_id: str | None, start: float, end: float, **_: Any
    ) -> list[RecordingRow]:
        return [
            r for r in self.rows if r.channel_id == channel_id and r.end >= start and r.start <= end
        ]


def _row(root: Path, codec: str, start: float, count: int, name: str) -> tuple[RecordingRow, list]:
    frames = encode_clip(codec, count)
    rel = f"{CHANNEL}/{name}.ps"
    size, keyframes, duration = write_segment(root / rel, frames)
    row = RecordingRow(
        name, CHANNEL, start, start + duration, rel, size, codec, keyframes, None, "closed"
    )
    return row, frames


@pytest.fixture
def worker() -> Any:
    w = PlaybackWorker("127.0.0.1", connect_timeout=2.0)
    w.start()
    yield w
    w.stop()


@pytest.fixture
def rx() -> Any:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


async def _receive(
    sock: socket.socket, until: Callable[[list[bytes]], bool], timeout: float = 10.0
) -> list[bytes]:
    packets: list[bytes] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not until(packets):
        if loop.time() > deadline:
            raise AssertionError(f"timed out with {len(packets)} packets")
        try:
            packets.append(sock.recv(2048))
        except BlockingIOError:
            await asyncio.sleep(0.005)
    return packets


def _markers(packets: list[bytes]) -> int:
    return sum(1 for p in packets if RtpPacket.parse(p).marker)


@pytest.mark.parametrize("codec", ["h264", "h265"])
async def test_platform_download_is_byte_exact(
    tmp_path: Path, worker: PlaybackWorker, rx: socket.socket, codec: str
) -> None:
    row1, frames1 = _row(tmp_path, codec, T0, 30, "a")
    row2, frames2 = _row(tmp_path, codec, row1.end, 20, "b")
    service = PlaybackService(worker, FakeStore([row2, row1]), tmp_path)  # type: ignore[arg-type]
    ended: list[tuple[str, str]] = []
    service.on_end.append(lambda sid, reason: ended.append((sid, reason)))
    session = await service.open(
        CHANNEL,
        T0,
        row2.end,
        download=True,
        speed=8,
        output=("127.0.0.1", rx.getsockname()[1], "udp"),
        ssrc=1234,
    )
    assert session.source == "platform" and session.local_port > 0
    packets = await _receive(rx, lambda p: _markers(p) >= 50)
    assert {RtpPacket.parse(p).ssrc for p in packets} == {1234}
    ps = b"".join(RtpPacket.parse(p).payload for p in packets)
    got = demux_video(ps)
    # The second segment restarts its PTS: compare bytes per frame, in order.
    assert [data for _, data in got] == [f.data for f in frames1 + frames2]
    for _ in range(50):
        await service.poll_events()
        if ended:
            break
        await asyncio.sleep(0.05)
    assert ended == [(session.session_id, "end of file")]
    assert session.session_id not in service.sessions


async def test_control_pause_scale_seek_teardown(
    tmp_path: Path, worker: PlaybackWorker, rx: socket.socket
) -> None:
    row, frames = _row(tmp_path, "h264", T0, 100, "a")  # 4 s, keyframe every 0.4 s
    service = PlaybackService(worker, FakeStore([row]), tmp_path)  # type: ignore[arg-type]
    session = await service.open(
        CHANNEL, T0, row.end, output=("127.0.0.1", rx.getsockname()[1], "udp")
    )
    sid = session.session_id
    await _receive(rx, lambda p: _markers(p) >= 2)
    await service.control(sid, b"PAUSE RTSP/1.0\r\nCSeq: 1\r\nPauseTime: now\r\n\r\n")
    stats = service.describe(session)["stats"]
    assert stats["paused"]
    await asyncio.sleep(0.2)
    sent = service.describe(session)["stats"]["frames"]
    await asyncio.sleep(0.2)
    assert service.describe(session)["stats"]["frames"] == sent
    while True:  # drain what was sent before the pause
        try:
            rx.recv(2048)
        except BlockingIOError:
            break
    # Seek to 2.1 s: playback resumes at the keyframe at 2.0 s (frame 50).
    await service.control(sid, b"PLAY RTSP/1.0\r\nCSeq: 2\r\nRange: npt=2.1-\r\nScale: 4\r\n\r\n")
    packets = await _receive(rx, lambda p: _markers(p) >= 5)
    stamps = [RtpPacket.parse(p).timestamp for p in packets if RtpPacket.parse(p).marker]
    assert stamps[0] == frames[50].pts
    assert service.describe(session)["stats"]["scale"] == 4
    with pytest.raises(PlaybackControlError, match="outside"):
        await service.control(sid, b"PLAY RTSP/1.0\r\nCSeq: 3\r\nScale: 16\r\n\r\n")
    with pytest.raises(PlaybackControlError, match="CSeq"):
        await service.control(sid, b"PLAY RTSP/1.0\r\n\r\n")
    await service.control(sid, b"TEARDOWN RTSP/1.0\r\nCSeq: 4\r\n\r\n")
    assert sid not in service.sessions
    with pytest.raises(CallError) as err:
        await service.control(sid, b"PAUSE RTSP/1.0\r\nCSeq: 5\r\n\r\n")
    assert err.value.status == 404


async def test_open_errors(tmp_path: Path, worker: PlaybackWorker) -> None:
    service = PlaybackService(worker, FakeStore([]), tmp_path)  # type: ignore[arg-type]
    out = ("127.0.0.1", 9, "udp")
    cases = [
        ({"source": "platform"}, 404),
        ({"source": "auto"}, 503),  # nothing recorded here and no device source
        ({"source": "nas"}, 400),
        ({"speed": 100}, 400),
    ]
    for kwargs, status in cases:
        with pytest.raises(CallError) as err:
            await service.open(CHANNEL, T0, T0 + 10, output=out, **kwargs)
        assert err.value.status == status
    with pytest.raises(CallError) as err:
        await service.open(CHANNEL, T0, T0, output=out)
    assert err.value.status == 400


async def test_missing_file_ends_the_session(
    tmp_path: Path, worker: PlaybackWorker, rx: socket.socket
) -> None:
    row, _ = _row(tmp_path, "h264", T0, 10, "a")
    (tmp_path / row.path).unlink()
    service = PlaybackService(worker, FakeStore([row]), tmp_path)  # type: ignore[arg-type]
    ended: list[str] = []
    service.on_end.append(lambda sid, reason: ended.append(reason))
    await service.open(CHANNEL, T0, row.end, output=("127.0.0.1", rx.getsockname()[1], "udp"))
    for _ in range(50):
        await service.poll_events()
        if ended:
            break
        await asyncio.sleep(0.05)
    assert ended == ["end of file"]


# -- device source ------------------------------------------------------------------------------


@dataclass
class FakeCall:
    session_id: str


@dataclass
class FakeCalls:
    on_end: list[Callable[[Any, str], None]] = field(default_factory=list)
    opened: list[tuple[Any, ...]] = field(default_factory=list)
    infos: list[bytes] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    paused: list[tuple[str, bool]] = field(default_factory=list)
    answer: int = 200

    async def history(
        self, channel_id: str, start: int, end: int, **kw: Any
    ) -> tuple[FakeCall, Any]:
        self.opened.append((channel_id, start, end, kw))
        return FakeCall(f"call-{len(self.opened)}"), SimpleNamespace(output_id=None)

    async def info(self, session_id: str, body: bytes) -> SipResponse:
        self.infos.append(body)
        request = parse_message(
            b"INFO sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            b"From: <sip:a@b>;tag=1\r\n"
            b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 2 INFO\r\nContent-Length: 0\r\n\r\n"
        )
        assert isinstance(request, SipRequest)
        return make_response(request, self.answer)

    async def stop(self, session_id: str, reason: str = "stopped") -> None:
        self.stopped.append(session_id)

    def set_paused(self, session_id: str, paused: bool) -> None:
        self.paused.append((session_id, paused))


@pytest.fixture
async def device_service(
    tmp_path: Path, worker: PlaybackWorker
) -> AsyncIterator[tuple[PlaybackService, FakeCalls]]:
    calls = FakeCalls()
    service = PlaybackService(worker, FakeStore([]), tmp_path, calls=calls)  # type: ignore[arg-type]
    yield service, calls


async def test_device_source_invites_forwards_and_ends(
    device_service: tuple[PlaybackService, FakeCalls],
) -> None:
    service, calls = device_service
    ended: list[tuple[str, str]] = []
    service.on_end.append(lambda sid, reason: ended.append((sid, reason)))
    session = await service.open(
        CHANNEL,
        T0,
        T0 + 60,
        download=True,
        speed=4,
        output=("127.0.0.1", 40000, "udp"),
        ssrc=1200000001,
    )
    assert session.source == "device"
    assert calls.opened == [
        (
            CHANNEL,
            int(T0),
            int(T0) + 60,
            {
                "download": True,
                "speed": 4,
                "output": ("127.0.0.1", 40000, "udp"),
                "ssrc": 1200000001,
            },
        )
    ]
    await service.apply(session.session_id, MansrtspRequest(Method.PLAY, 3, scale=2.0))
    assert calls.infos == [b"PLAY RTSP/1.0\r\nCSeq: 3\r\nScale: 2\r\n\r\n"]
    assert calls.paused == [("call-1", False)]
    calls.answer = 457
    with pytest.raises(CallError) as err:
        await service.control(session.session_id, b"PAUSE RTSP/1.0\r\nCSeq: 4\r\n\r\n")
    assert err.value.status == 502
    assert calls.paused == [("call-1", False)]  # refused: the device did not pause
    # The device's MediaStatus 121 ends its call session; ours follows.
    for listener in calls.on_end:
        listener(FakeCall("call-1"), "end of file")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert ended == [(session.session_id, "end of file")]
    assert calls.stopped == []


async def test_device_source_close_byes_the_device(
    device_service: tuple[PlaybackService, FakeCalls],
) -> None:
    service, calls = device_service
    session = await service.open(CHANNEL, T0, T0 + 60, output=("127.0.0.1", 40000, "tcp-active"))
    assert calls.opened[0][3]["output"] == ("127.0.0.1", 40000, "tcp-active")
    assert str(calls.opened[0][3]["ssrc"]).startswith("1")  # a history SSRC was allocated
    await service.close(session.session_id, "BYE from caller")
    assert calls.stopped == ["call-1"]


def test_media_status_message() -> None:
    body = media_status_message(CHANNEL, 17)
    msg = manscdp.decode(body)
    assert isinstance(msg, manscdp.MediaStatusNotify)
    assert (msg.device_id, msg.sn, msg.notify_type) == (CHANNEL, 17, "121")


async def test_device_source_through_the_call_service(
    env: tuple[CallService, ScriptedSignalling, RelayWorker], worker: PlaybackWorker, tmp_path: Path
) -> None:
    """PlaybackService over a real CallService (scripted device): the relay listens for a
    tcp-passive consumer, and the device's MediaStatus 121 ends both sessions."""
    calls, sig, _relay = env
    service = PlaybackService(worker, FakeStore([]), tmp_path, calls=calls)  # type: ignore[arg-type]
    ended: list[str] = []
    service.on_end.append(lambda sid, reason: ended.append(reason))
    session = await service.open(
        CHANNEL, T0, T0 + 60, output=("0.0.0.0", 9, "tcp-passive"), ssrc=1020000005
    )
    assert session.source == "device" and session.local_port > 0
    invite = sig.sent[-1]
    assert b"s=Playback" in invite.body
    body = (
        '<?xml version="1.0"?>\r\n<Notify><CmdType>MediaStatus</CmdType><SN>1</SN>'
        f"<DeviceID>{CHANNEL}</DeviceID><NotifyType>121</NotifyType></Notify>"
    ).encode()
    message = SipRequest("MESSAGE", "sip:x@y", invite.headers, body)
    calls.on_media_status(message, manscdp.decode(body), None, T0)
    for _ in range(10):
        await asyncio.sleep(0)
    assert ended == ["end of file"]
    assert not service.sessions and not calls.sessions
    assert sig.sent[-1].method == "BYE"


async def test_paused_device_playback_outlives_the_no_media_timeout(
    env: tuple[CallService, ScriptedSignalling, RelayWorker],
    worker: PlaybackWorker,
    tmp_path: Path,
    rx: socket.socket,
) -> None:
    """A paused device sends nothing: the relay's no-media clock (15 s) stops from the PAUSE
    to the next PLAY, then silence ends the session again."""
    calls, _sig, relay = env
    now = [1000.0]
    relay.clock = lambda: now[0]
    relay.start()

    def check_timers() -> None:  # done on the worker's thread when this returns
        relay.call(lambda: relay._check_timers(relay.clock()))

    service = PlaybackService(worker, FakeStore([]), tmp_path, calls=calls)  # type: ignore[arg-type]
    ended: list[str] = []
    service.on_end.append(lambda sid, reason: ended.append(reason))
    session = await service.open(
        CHANNEL, T0, T0 + 600, output=("127.0.0.1", rx.getsockname()[1], "udp"), source="device"
    )
    assert session.call_session is not None
    call = calls.sessions[session.call_session]
    # The scripted answer says y=0200000001: the capture's SSRC.
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for packet in load_capture("ps_rtp_udp")[:3]:
            sender.sendto(packet, ("127.0.0.1", call.port))
    finally:
        sender.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while relay.call(lambda: relay.stats(call.media_id))["packets"] < 3:
        assert loop.time() < deadline, "packets not received"
        await asyncio.sleep(0.01)

    async def turn() -> None:
        check_timers()
        calls.poll_events()
        for _ in range(10):
            await asyncio.sleep(0)

    await service.apply(session.session_id, MansrtspRequest(Method.PAUSE, 1))
    assert call.paused
    now[0] += 60.0
    await turn()
    assert call.state == "playing" and session.state == "playing" and ended == []
    await service.apply(session.session_id, MansrtspRequest(Method.PLAY, 2))
    assert not call.paused
    now[0] += 14.9  # the clock runs from the PLAY
    await turn()
    assert call.state == "playing" and ended == []
    now[0] += 0.1
    await turn()
    assert call.end_reason == "media stopped" and ended == ["media stopped"]
    assert not service.sessions and not calls.sessions
