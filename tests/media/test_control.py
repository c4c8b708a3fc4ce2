"""Control commands: JSON line round trips, in-process and over a socket pair."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.control import (
    AddOutput,
    Close,
    Command,
    Connect,
    ControlClient,
    ControlError,
    ControlServer,
    LocalControl,
    OpenReceiver,
    Rekey,
    RemoveOutput,
    Snapshot,
    Stats,
    decode_command,
    encode_command,
)
from media.worker import RelayWorker, WorkerConfig
from tests.media.conftest import Capture
from tests.media.test_worker import _collect, _udp_consumer

COMMANDS: list[Command] = [
    OpenReceiver("udp"),
    OpenReceiver("tcp_active", 30000, 200000001, ("192.0.2.1", 15060)),
    Connect(1, ("192.0.2.1", 9000)),
    Rekey(1, 1234),
    AddOutput(1, ("127.0.0.1", 5000), "tcp", 7),
    RemoveOutput(1, 2),
    Close(3),
    Stats(),
    Stats(4),
    AddOutput(1, ("192.0.2.7", 9), "tcp-passive", 7),
    Snapshot(1),
    Snapshot(2, "payloads", 50),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_round_trip(command: Command) -> None:
    line = encode_command(command, 42)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_command(line) == (42, command)


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[1]",
        b'{"op":"fly"}',
        b'{"op":["close"],"session":1}',
        b'{"op":"close","id":"x","session":1}',
        b'{"op":"close","session":1,"extra":2}',
        b'{"op":"close"}',
        b'{"op":"connect","session":1,"peer":["h"]}',
        b'{"op":"stats","pad":"' + b"x" * 70000 + b'"}',
    ],
)
def test_bad_lines(line: bytes) -> None:
    with pytest.raises(ControlError):
        decode_command(line)


@given(st.binary(max_size=200))
def test_fuzz_decode(line: bytes) -> None:
    try:
        decode_command(line)
    except ControlError:
        pass


@pytest.fixture
def worker() -> Iterator[RelayWorker]:
    base = random.randrange(20000, 29000, 100)
    w = RelayWorker(WorkerConfig(host="127.0.0.1", port_first=base, port_last=base + 99))
    w.start()
    yield w
    w.stop()


def _scenario(request: Callable[[Command], dict], capture: Capture) -> None:
    opened = request(OpenReceiver("udp", None, 111))
    session, port = opened["session"], opened["port"]
    request(Rekey(session, capture.ssrc))
    consumer = _udp_consumer()
    host, cport = consumer.getsockname()
    output = request(AddOutput(session, (host, cport), "udp", 9))["output"]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for packet in capture.packets[:20]:
        sender.sendto(packet, ("127.0.0.1", port))
    assert [p[12:] for p in _collect(consumer, 20)] == capture.payloads[:20]
    assert request(Stats(session))["packets"] == 20
    assert str(session) in request(Stats())["sessions"]
    request(RemoveOutput(session, output))
    with pytest.raises(ControlError, match="no output"):
        request(RemoveOutput(session, output))
    assert request(Close(session))["packets"] == 20
    with pytest.raises(ControlError, match="no session"):
        request(Close(session))
    consumer.close()
    sender.close()


def test_local_control(worker: RelayWorker, captures: Callable[[str], Capture]) -> None:
    _scenario(LocalControl(worker).request, captures("ps_rtp_udp"))


def test_over_a_socket_pair(worker: RelayWorker, captures: Callable[[str], Capture]) -> None:
    ours, theirs = socket.socketpair()
    thread = ControlServer(worker).serve_connection(theirs)
    client = ControlClient(ours)
    _scenario(client.request, captures("ps_rtp_udp"))
    client.close()
    thread.join(5)
    assert not thread.is_alive()


def test_server_answers_garbage_with_an_error(worker: RelayWorker) -> None:
    reply = ControlServer(worker).handle_line(b"{bad\n")
    assert reply.startswith(b'{"id":0,"ok":false,"error":"control line is not JSON')


def test_snapshot_and_tcp_passive_output(
    worker: RelayWorker, captures: Callable[[str], Capture]
) -> None:
    """Through a socket pair: what a platform in another process would do."""
    import base64

    from tests.media.test_worker import _read_rfc4571, _send_udp

    capture = captures("ps_rtp_udp")
    ours, theirs = socket.socketpair()
    ControlServer(worker).serve_connection(theirs)
    client = ControlClient(ours)
    try:
        opened = client.request(OpenReceiver("udp", None, capture.ssrc))
        session = opened["session"]
        with pytest.raises(ControlError, match="no keyframe"):
            client.request(Snapshot(session))
        added = client.request(AddOutput(session, ("127.0.0.1", 9), "tcp-passive", 5))
        assert isinstance(added["port"], int)
        consumer = socket.create_connection(("127.0.0.1", added["port"]))
        _send_udp(capture.packets[:85], opened["port"])  # keyframes at 0, 35 and 55
        assert len(_read_rfc4571(consumer, 85)) == 85
        jpeg = base64.b64decode(client.request(Snapshot(session))["jpeg"])
        assert jpeg.startswith(b"\xff\xd8") and jpeg.endswith(b"\xff\xd9")
        payloads = client.request(Snapshot(session, "payloads"))["payloads"]
        assert [base64.b64decode(p) for p in payloads] == worker.call(
            lambda: worker.gop_payloads(session)
        )
        with pytest.raises(ControlError, match="format"):
            client.request(Snapshot(session, "png"))
        stats = client.request(Stats(session))
        assert stats["output_stats"][str(added["output"])]["connected"] is True
        consumer.close()
    finally:
        client.close()
