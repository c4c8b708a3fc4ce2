"""The playback worker on loopback sockets: UDP, TCP active, TCP passive (RFC 4571)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from media.playback import PlaybackSegment, PlaybackStream
from media.playback_worker import PlaybackWorker, PlaybackWorkerError
from media.rfc4571 import Rfc4571Splitter
from media.rtp import RtpPacket

FRAMES = 20


@dataclass(frozen=True)
class Frame:
    offset: int
    pts: int
    keyframe: bool
    data: bytes


def _segment(frames: int = FRAMES) -> PlaybackSegment:
    items = [Frame(i * 2000, i * 3600, i % 10 == 0, bytes([i % 256]) * 2000) for i in range(frames)]

    def read(at: int) -> Iterator[Frame]:
        return (f for f in items if f.offset >= at)

    keys = tuple((f.pts / 90000, f.offset) for f in items if f.keyframe)
    return PlaybackSegment(0.0, frames / 25, keys, read)  # type: ignore[arg-type]


def _make(rate: float = 8.0, frames: int = FRAMES):  # type: ignore[no-untyped-def]
    def make(now: float) -> PlaybackStream:
        return PlaybackStream(
            [_segment(frames)], 0.0, frames / 25, 77, now, rate=rate, download=True
        )

    return make


@pytest.fixture
def worker() -> Iterator[PlaybackWorker]:
    w = PlaybackWorker("127.0.0.1", connect_timeout=2.0)
    w.start()
    yield w
    w.stop()


def _frames_of(packets: list[bytes]) -> list[int]:
    out = []
    for raw in packets:
        pkt = RtpPacket.parse(raw)
        assert pkt.ssrc == 77 and pkt.payload_type == 96
        if pkt.marker:
            out.append(pkt.payload[-1])
    return out


def _wait_event(worker: PlaybackWorker, timeout: float = 5.0) -> tuple[int, str]:
    return worker.events.get(timeout=timeout)


def test_udp_output(worker: PlaybackWorker) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(3.0)
    opened = worker.call(
        lambda: worker.open_stream(_make(), ("127.0.0.1", rx.getsockname()[1], "udp"))
    )
    assert opened["local_port"] > 0
    packets = []
    while len(_frames_of(packets)) < FRAMES:
        packets.append(rx.recv(2048))
    assert _frames_of(packets) == list(range(FRAMES))
    assert _wait_event(worker) == (opened["stream"], "finished")
    stats = worker.call(lambda: worker.close(opened["stream"]))
    assert stats["frames"] == FRAMES and stats["finished"]
    rx.close()


def _read_tcp(conn: socket.socket) -> list[bytes]:
    splitter = Rfc4571Splitter()
    packets: list[bytes] = []
    conn.settimeout(3.0)
    while len(_frames_of(packets)) < FRAMES:
        data = conn.recv(65536)
        assert data
        packets += splitter.feed(data)
    return packets


def test_tcp_active_output(worker: PlaybackWorker) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(3.0)
    opened = worker.call(
        lambda: worker.open_stream(_make(), ("127.0.0.1", server.getsockname()[1], "tcp-active"))
    )
    time.sleep(0.3)  # held until connected: nothing is lost meanwhile
    conn, _ = server.accept()
    assert _frames_of(_read_tcp(conn)) == list(range(FRAMES))
    assert _wait_event(worker) == (opened["stream"], "finished")
    worker.call(lambda: worker.close(opened["stream"]))
    conn.close()
    server.close()


def test_tcp_passive_output_and_control(worker: PlaybackWorker) -> None:
    opened = worker.call(lambda: worker.open_stream(_make(rate=1.0), ("0.0.0.0", 0, "tcp-passive")))
    stream_id = opened["stream"]
    # A pause before the consumer connects holds the stream after the connection too.
    worker.call(lambda: worker.control(stream_id, lambda s, now: s.pause(now)))
    conn = socket.create_connection(("127.0.0.1", opened["local_port"]), timeout=3.0)
    time.sleep(0.3)
    assert worker.call(lambda: worker.stats(stream_id))["frames"] == 0
    worker.call(lambda: worker.control(stream_id, lambda s, now: s.set_scale(8, now)))
    worker.call(lambda: worker.control(stream_id, lambda s, now: s.resume(now)))
    assert _frames_of(_read_tcp(conn)) == list(range(FRAMES))
    assert _wait_event(worker) == (stream_id, "finished")
    worker.call(lambda: worker.close(stream_id))
    conn.close()


def test_passive_consumer_that_never_connects_fails(worker: PlaybackWorker) -> None:
    opened = worker.call(lambda: worker.open_stream(_make(), ("0.0.0.0", 0, "tcp-passive")))
    stream_id, reason = _wait_event(worker, timeout=5.0)
    assert stream_id == opened["stream"] and reason == "failed: consumer did not connect"
    worker.call(lambda: worker.close(stream_id))


def test_consumer_closing_ends_the_stream(worker: PlaybackWorker) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    opened = worker.call(
        lambda: worker.open_stream(
            _make(rate=1.0, frames=500), ("127.0.0.1", server.getsockname()[1], "tcp-active")
        )
    )
    conn, _ = server.accept()
    conn.recv(100)
    conn.close()
    server.close()
    assert _wait_event(worker) == (opened["stream"], "failed: consumer closed the connection")
    worker.call(lambda: worker.close(opened["stream"]))


def test_bad_commands(worker: PlaybackWorker) -> None:
    with pytest.raises(PlaybackWorkerError, match="unknown transport"):
        worker.call(lambda: worker.open_stream(_make(), ("127.0.0.1", 9, "sctp")))
    with pytest.raises(PlaybackWorkerError, match="no playback stream"):
        worker.call(lambda: worker.close(999))
    # A refused connection is reported as an event, not as an error of the command.
    opened = worker.call(lambda: worker.open_stream(_make(), ("127.0.0.1", 1, "tcp-active")))
    assert _wait_event(worker) == (opened["stream"], "failed: connect: ECONNREFUSED")
