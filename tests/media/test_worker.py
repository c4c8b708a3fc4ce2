"""RelayWorker over real loopback sockets: UDP, TCP passive/active in, UDP/TCP out.

Receiving loops wait for an expected packet count with a generous deadline; nothing asserts on
elapsed time.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Callable, Iterator

import pytest

from media.relay import KeyframeSent, OutputClosed, StreamStarted, StreamTimedOut
from media.rfc4571 import Rfc4571Splitter
from media.rfc4571 import frame as rfc4571_frame
from media.rtp import peek_ssrc_seq_ts
from media.worker import Mode, RelayWorker, WorkerConfig, gro_supported, gso_supported
from tests.media.conftest import Capture, RefPacket
from tests.media.test_relay import _video_frames

DEADLINE = 10.0


def _config(**kwargs: object) -> WorkerConfig:
    base = random.randrange(20000, 29000, 100)
    return WorkerConfig(host="127.0.0.1", port_first=base, port_last=base + 99, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=[True, False], ids=["gso", "plain"])
def worker(request: pytest.FixtureRequest) -> Iterator[RelayWorker]:
    w = RelayWorker(_config(gso=request.param))
    w.start()
    yield w
    w.stop()


def _udp_consumer() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    return sock


def _collect(sock: socket.socket, count: int) -> list[bytes]:
    out: list[bytes] = []
    end = time.monotonic() + DEADLINE
    while len(out) < count and time.monotonic() < end:
        try:
            out.append(sock.recv(65536))
        except TimeoutError:
            continue
    return out


def _wait(predicate: Callable[[], bool]) -> None:
    end = time.monotonic() + DEADLINE
    while not predicate() and time.monotonic() < end:
        time.sleep(0.01)


def _send_udp(packets: list[bytes], port: int, sock: socket.socket | None = None) -> None:
    sender = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i, packet in enumerate(packets):
        sender.sendto(packet, ("127.0.0.1", port))
        if i % 32 == 31:
            time.sleep(0.001)  # let the worker drain; not part of any assertion


def _check_consumers(
    capture: Capture,
    consumers: list[socket.socket],
    reference: Callable[[bytes], list[RefPacket]],
    count: int | None = None,
) -> None:
    expected = [(p.kind, p.data) for p in reference(capture.ps)]
    for i, consumer in enumerate(consumers):
        got = _collect(consumer, count or len(capture.packets))
        assert len(got) == len(capture.packets)
        assert {peek_ssrc_seq_ts(p)[0] for p in got} == {1000 + i}
        ps = b"".join(p[12:] for p in got)
        assert [(p.kind, p.data) for p in reference(ps)] == expected


def test_udp_to_three_consumers(
    worker: RelayWorker,
    captures: Callable[[str], Capture],
    reference: Callable[[bytes], list[RefPacket]],
    decode_count: Callable[[str, list[bytes]], int],
) -> None:
    capture = captures("ps_rtp_udp")
    info = worker.call(lambda: worker.open_receiver(Mode.UDP, None, capture.ssrc))
    assert info["mode"] == "udp"
    consumers = [_udp_consumer() for _ in range(3)]
    for i, consumer in enumerate(consumers):
        addr = consumer.getsockname()
        worker.call(lambda a=addr, n=i: worker.add_output(info["session"], a, "udp", 1000 + n))
    _send_udp(capture.packets, info["port"])
    _check_consumers(capture, consumers, reference)
    stats = worker.call(lambda: worker.stats(info["session"]))
    assert stats["packets"] == len(capture.packets)
    assert stats["forwarded"] == 3 * len(capture.packets)
    event = worker.events.get(timeout=1)
    assert event[0] == info["session"] and isinstance(event[1], StreamStarted)


def test_udp_frames_decode(
    captures: Callable[[str], Capture], decode_count: Callable[[str, list[bytes]], int]
) -> None:
    capture = captures("ps_rtp_udp_h264_pcma")
    worker = RelayWorker(_config())
    worker.start()
    try:
        info = worker.call(lambda: worker.open_receiver("udp", None, capture.ssrc))
        consumer = _udp_consumer()
        worker.call(lambda: worker.add_output(info["session"], consumer.getsockname(), "udp", 5))
        _send_udp(capture.packets, info["port"])
        got = _collect(consumer, len(capture.packets))
        assert decode_count("h264", _video_frames(got)) == capture.decoded_frames
    finally:
        worker.stop()


def test_foreign_ssrc_and_source_rejected(
    captures: Callable[[str], Capture], reference: Callable[[bytes], list[RefPacket]]
) -> None:
    capture = captures("ps_rtp_udp")
    worker = RelayWorker(_config())
    worker.start()
    try:
        info = worker.call(lambda: worker.open_receiver("udp", None, capture.ssrc))
        consumer = _udp_consumer()
        worker.call(lambda: worker.add_output(info["session"], consumer.getsockname(), "udp", 1000))
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        half = len(capture.packets) // 2
        _send_udp(capture.packets[:half], info["port"], sender)
        # Same port, another SSRC from the locked source, then the right SSRC from elsewhere.
        foreign = [p[:8] + struct.pack("!I", 123456) + p[12:] for p in capture.packets[:5]]
        _send_udp(foreign, info["port"], sender)
        _send_udp(capture.packets[half : half + 3], info["port"], intruder)
        _send_udp(capture.packets[half:], info["port"], sender)
        _check_consumers(capture, [consumer], reference)
        stats = worker.call(lambda: worker.stats(info["session"]))
        assert stats["drops"]["ssrc"] == 5
        assert stats["drops"]["source"] == 3
    finally:
        worker.stop()


def test_injected_loss_and_reorder(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    packets = list(capture.packets)
    lost = {20, 21, 70, 140}
    order = [i for i in range(len(packets)) if i not in lost]
    for a in (40, 100, 150):  # swap neighbours
        ia = order.index(a)
        order[ia], order[ia + 1] = order[ia + 1], order[ia]
    worker = RelayWorker(_config())
    worker.start()
    try:
        info = worker.call(lambda: worker.open_receiver("udp", None, capture.ssrc))
        consumer = _udp_consumer()
        worker.call(lambda: worker.add_output(info["session"], consumer.getsockname(), "udp", 9))
        _send_udp([packets[i] for i in order], info["port"])
        got = _collect(consumer, len(order))
        assert len(got) == len(order)
        stats = worker.call(lambda: worker.stats(info["session"]))
        assert stats["lost"] == len(lost)
        assert stats["reordered"] == 3
        # Frames that arrived whole come out intact; the damaged ones are dropped.
        reference = _video_frames(packets)
        frames = _video_frames(got)
        assert 0 < len(frames) < len(reference)
        assert set(frames) <= set(reference)
    finally:
        worker.stop()


def test_tcp_passive_in_tcp_out(
    captures: Callable[[str], Capture], reference: Callable[[bytes], list[RefPacket]]
) -> None:
    capture = captures("ps_rtp_tcp")
    worker = RelayWorker(_config())
    worker.start()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        info = worker.call(lambda: worker.open_receiver("tcp_passive", None, capture.ssrc))
        consumers = [_udp_consumer(), _udp_consumer()]
        for i, consumer in enumerate(consumers):
            addr = consumer.getsockname()
            worker.call(lambda a=addr, n=i: worker.add_output(info["session"], a, "udp", 1000 + n))
        worker.call(lambda: worker.add_output(info["session"], listener.getsockname(), "tcp", 1002))
        tcp_consumer, _ = listener.accept()
        device = socket.create_connection(("127.0.0.1", info["port"]))
        stream = b"".join(rfc4571_frame(p) for p in capture.packets)
        for i in range(0, len(stream), 1000):  # arbitrary chunking
            device.sendall(stream[i : i + 1000])
        _check_consumers(capture, consumers, reference)
        splitter = Rfc4571Splitter()
        got: list[bytes] = []
        tcp_consumer.settimeout(DEADLINE)
        while len(got) < len(capture.packets):
            data = tcp_consumer.recv(65536)
            assert data
            got += splitter.feed(data)
        assert [p[12:] for p in got] == capture.payloads
        assert {peek_ssrc_seq_ts(p)[0] for p in got} == {1002}
        device.close()
        tcp_consumer.close()
    finally:
        listener.close()
        worker.stop()


def test_tcp_active_connects_with_retry(
    captures: Callable[[str], Capture], reference: Callable[[bytes], list[RefPacket]]
) -> None:
    capture = captures("ps_rtp_tcp_passive")
    worker = RelayWorker(_config(connect_retry=0.05))
    worker.start()
    device = socket.socket()
    device.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    device.bind(("127.0.0.1", 0))  # not listening yet: the first attempts are refused
    try:
        peer = device.getsockname()
        info = worker.call(lambda: worker.open_receiver("tcp_active", None, capture.ssrc, peer))
        consumer = _udp_consumer()
        worker.call(lambda: worker.add_output(info["session"], consumer.getsockname(), "udp", 1000))
        _wait(lambda: worker.call(lambda: worker.stats(info["session"]))["connect_attempts"] >= 2)
        device.listen(1)
        conn, addr = device.accept()
        conn.settimeout(DEADLINE)
        assert addr[1] == info["port"]  # we connect from the port announced in our SDP
        conn.sendall(b"\x13\x37garbage" + b"".join(rfc4571_frame(p) for p in capture.packets))
        _check_consumers(capture, [consumer], reference)
        conn.close()
    finally:
        device.close()
        worker.stop()


def test_late_consumer_starts_at_keyframe(
    captures: Callable[[str], Capture], decode_count: Callable[[str, list[bytes]], int]
) -> None:
    capture = captures("ps_rtp_udp")
    worker = RelayWorker(_config())
    worker.start()
    try:
        info = worker.call(lambda: worker.open_receiver("udp", None, capture.ssrc))
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _send_udp(capture.packets[:120], info["port"], sender)
        _wait(lambda: worker.call(lambda: worker.stats(info["session"]))["packets"] == 120)
        consumer = _udp_consumer()
        worker.call(lambda: worker.add_output(info["session"], consumer.getsockname(), "udp", 3))
        _send_udp(capture.packets[120:], info["port"], sender)
        got = _collect(consumer, 10 + len(capture.packets) - 120)
        assert len(got) == 10 + len(capture.packets) - 120
        assert got[0][12:] == capture.packets[110][12:]  # the last keyframe
        frames = _video_frames(got)
        assert decode_count("h264", frames) == len(frames) > 0
    finally:
        worker.stop()


def test_single_port_mode_routes_by_ssrc(captures: Callable[[str], Capture]) -> None:
    a, b = captures("ps_rtp_udp"), captures("ps_rtp_tcp")
    config = _config()
    shared = config.port_last + 1
    worker = RelayWorker(
        WorkerConfig(
            host="127.0.0.1",
            port_first=config.port_first,
            port_last=config.port_last,
            single_port=shared,
        )
    )
    worker.start()
    try:
        consumers = [_udp_consumer(), _udp_consumer()]
        for capture, consumer in zip((a, b), consumers, strict=True):
            info = worker.call(lambda c=capture: worker.open_receiver("udp", shared, c.ssrc))
            assert info["port"] == shared
            addr = consumer.getsockname()
            worker.call(lambda s=info["session"], d=addr: worker.add_output(s, d, "udp", 1))
        foreign = [p[:8] + struct.pack("!I", 99) + p[12:] for p in a.packets[:4]]
        _send_udp(a.packets[:50] + foreign, shared)
        _send_udp(b.packets[:60], shared)
        assert [p[12:] for p in _collect(consumers[0], 50)] == a.payloads[:50]
        assert [p[12:] for p in _collect(consumers[1], 60)] == b.payloads[:60]
        _wait(lambda: worker.call(lambda: worker.stats())["unrouted"] == 4)
        assert worker.call(lambda: worker.stats())["unrouted"] == 4
    finally:
        worker.stop()


def test_inactivity_timeout_with_injected_clock(captures: Callable[[str], Capture]) -> None:
    now = [1000.0]
    worker = RelayWorker(_config(), clock=lambda: now[0])
    worker.start()
    try:
        info = worker.call(lambda: worker.open_receiver("udp", None, None))
        _send_udp(captures("ps_rtp_udp").packets[:3], info["port"])
        assert isinstance(worker.events.get(timeout=DEADLINE)[1], StreamStarted)
        now[0] = 1014.9
        _check_timers(worker)
        assert worker.events.empty()
        now[0] = 1015.0
        _check_timers(worker)
        session, event = worker.events.get(timeout=DEADLINE)
        assert event == StreamTimedOut(True, 1000.0, 1015.0)
        final = worker.call(lambda: worker.close(session))
        assert final["closed"] is True
        # The port is quarantined, not reused at once.
        assert info["port"] not in worker.ports.in_use
    finally:
        worker.stop()


def _check_timers(worker: RelayWorker) -> None:
    """One timer check on the loop thread, done when this returns (a no-op call may be run
    before the loop turn that checks its timers)."""
    worker.call(lambda: worker._check_timers(worker.clock()))


def test_paused_timeout_with_injected_clock(captures: Callable[[str], Capture]) -> None:
    now = [1000.0]
    worker = RelayWorker(_config(), clock=lambda: now[0])
    worker.start()
    try:
        info = worker.call(lambda: worker.open_receiver("udp", None, None))
        session = info["session"]
        _send_udp(captures("ps_rtp_udp").packets[:3], info["port"])
        assert isinstance(worker.events.get(timeout=DEADLINE)[1], StreamStarted)
        _wait(lambda: worker.call(lambda: worker.stats(session))["packets"] == 3)
        worker.call(lambda: worker.pause_timeout(session))
        now[0] = 1100.0
        _check_timers(worker)
        assert worker.events.empty()
        worker.call(lambda: worker.resume_timeout(session))  # the clock runs from 1100
        now[0] = 1114.9
        _check_timers(worker)
        assert worker.events.empty()
        now[0] = 1115.0
        _check_timers(worker)
        assert worker.events.get_nowait() == (session, StreamTimedOut(True, 1000.0, 1115.0))
    finally:
        worker.stop()


def test_commands_reject_unknown_session() -> None:
    worker = RelayWorker(_config())
    try:
        from media.worker import WorkerError

        with pytest.raises(WorkerError):
            worker.add_output(7, ("127.0.0.1", 1))
        info = worker.open_receiver("udp")
        with pytest.raises(WorkerError):
            worker.remove_output(info["session"], 9)
        with pytest.raises(WorkerError):
            worker.add_output(info["session"], ("127.0.0.1", 1), "sctp")
        with pytest.raises(WorkerError):
            worker.connect(info["session"], ("127.0.0.1", 1))
        out = worker.add_output(info["session"], ("127.0.0.1", 9))
        worker.remove_output(info["session"], out)
        worker.rekey(info["session"], 5)
        assert worker.stats(info["session"])["ssrc"] == 5
    finally:
        worker.stop()


def test_gso_probe() -> None:
    assert isinstance(gso_supported(), bool)


# -- GRO batches, TCP-passive outputs ----------------------------------------------------------


def _send_gso(packets: list[bytes], port: int, sock: socket.socket | None = None) -> None:
    """Send runs of equal-sized packets with UDP GSO, so the worker's GRO socket gets batches
    (on loopback the kernel only glues datagrams a GSO send produced; a NIC glues any)."""
    sender = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    i = 0
    while i < len(packets):
        size = len(packets[i])
        j = i + 1
        while j < len(packets) and j - i < 32 and len(packets[j]) == size:
            j += 1
        if j < len(packets) and j - i < 32 and len(packets[j]) < size:
            j += 1  # a shorter one may end a run
        if j - i == 1:
            sender.sendto(packets[i], ("127.0.0.1", port))
        else:
            cmsg = [(socket.SOL_UDP, 103, struct.pack("=H", size))]
            sender.sendmsg([b"".join(packets[i:j])], cmsg, 0, ("127.0.0.1", port))
        i = j
        time.sleep(0.001)  # let the worker drain; not part of any assertion


@pytest.mark.skipif(not gso_supported(), reason="the kernel has no UDP GSO")
@pytest.mark.parametrize("gro", [True, False], ids=["gro", "no-gro"])
@pytest.mark.parametrize("gso", [True, False], ids=["gso", "plain"])
def test_gso_sender_batches(
    gro: bool,
    gso: bool,
    captures: Callable[[str], Capture],
    reference: Callable[[bytes], list[RefPacket]],
) -> None:
    capture = captures("ps_rtp_udp")
    worker = RelayWorker(_config(gro=gro, gso=gso))
    worker.start()
    try:
        assert worker.gro is (gro and gro_supported())
        info = worker.call(lambda: worker.open_receiver("udp", None, capture.ssrc))
        consumers = [_udp_consumer(), _udp_consumer()]
        for i, consumer in enumerate(consumers):
            addr = consumer.getsockname()
            worker.call(lambda a=addr, n=i: worker.add_output(info["session"], a, "udp", 1000 + n))
        _send_gso(capture.packets, info["port"])
        _check_consumers(capture, consumers, reference)
        stats = worker.call(lambda: worker.stats(info["session"]))
        assert stats["packets"] == len(capture.packets)
        assert stats["forwarded"] == 2 * len(capture.packets)
        assert stats["lost"] == stats["reordered"] == 0
        # With GRO the column path took (nearly) everything after the first packet.
        assert (stats["batches"] > 0) is worker.gro
    finally:
        worker.stop()


def _read_rfc4571(sock: socket.socket, count: int) -> list[bytes]:
    splitter = Rfc4571Splitter()
    got: list[bytes] = []
    sock.settimeout(DEADLINE)
    while len(got) < count:
        data = sock.recv(65536)
        if not data:
            break
        got += splitter.feed(data)
    return got


def test_tcp_passive_output(
    captures: Callable[[str], Capture], decode_count: Callable[[str, list[bytes]], int]
) -> None:
    capture = captures("ps_rtp_udp")
    worker = RelayWorker(_config())
    worker.start()
    try:
        info = worker.call(lambda: worker.open_receiver("udp", None, capture.ssrc))
        session = info["session"]
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _send_udp(capture.packets[:120], info["port"], sender)
        _wait(lambda: worker.call(lambda: worker.stats(session))["packets"] == 120)
        output = worker.call(
            lambda: worker.add_output(session, ("127.0.0.1", 9), "tcp-passive", 0x77)
        )
        port = worker.call(lambda: worker.output_info(session, output))["port"]
        assert worker.config.port_first <= port <= worker.config.port_last
        assert port in worker.ports.in_use
        # Nothing is sent before the consumer connects.
        _send_udp(capture.packets[120:125], info["port"], sender)
        consumer = socket.create_connection(("127.0.0.1", port))
        # Starts at the cached keyframe (packet 110), then live.
        got = _read_rfc4571(consumer, 15)
        assert got[0][12:] == capture.packets[110][12:]
        _send_udp(capture.packets[125:], info["port"], sender)
        got += _read_rfc4571(consumer, len(capture.packets) - 125)
        assert [p[12:] for p in got] == capture.payloads[110:]
        assert {peek_ssrc_seq_ts(p)[0] for p in got} == {0x77}
        frames = _video_frames(got)
        assert decode_count("h264", frames) == len(frames) > 0
        events = []
        while not worker.events.empty():
            events.append(worker.events.get()[1])
        assert [e.output for e in events if isinstance(e, KeyframeSent)] == [output]
        out_stats = worker.call(lambda: worker.output_info(session, output))
        assert out_stats["connected"] and out_stats["keyframe_at"] is not None
        # The consumer leaves: the platform is told, the port goes back after removal.
        consumer.close()
        _send_udp(capture.packets[:60], info["port"], sender)  # writes fail at some point
        _wait(lambda: worker.call(lambda: worker.output_info(session, output))["failed"])
        closed = []
        while not worker.events.empty():
            closed.append(worker.events.get()[1])
        assert [e.output for e in closed if isinstance(e, OutputClosed)] == [output]
        worker.call(lambda: worker.remove_output(session, output))
        assert port not in worker.ports.in_use
    finally:
        worker.stop()


def test_tcp_passive_output_refuses_other_hosts(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    worker = RelayWorker(_config())
    worker.start()
    try:
        info = worker.call(lambda: worker.open_receiver("udp", None, capture.ssrc))
        session = info["session"]
        output = worker.call(lambda: worker.add_output(session, ("127.0.0.2", 0), "tcp-passive"))
        port = worker.call(lambda: worker.output_info(session, output))["port"]
        intruder = socket.create_connection(("127.0.0.1", port))  # from 127.0.0.1
        intruder.settimeout(DEADLINE)
        assert intruder.recv(10) == b""  # closed by the worker
        consumer = socket.socket()
        consumer.bind(("127.0.0.2", 0))
        consumer.connect(("127.0.0.1", port))
        _send_udp(capture.packets[:40], info["port"])
        assert len(_read_rfc4571(consumer, 40)) == 40
        stats = worker.call(lambda: worker.output_info(session, output))
        assert stats["refused"] == 1 and stats["packets"] == 40
        consumer.close()
    finally:
        worker.stop()


def test_timers_of_many_sessions(captures: Callable[[str], Capture]) -> None:
    """Deadlines come from the timer heap: a session that got media times out later."""
    now = [1000.0]
    worker = RelayWorker(_config(), clock=lambda: now[0])
    worker.start()
    try:
        infos = [worker.call(lambda: worker.open_receiver("udp", None, None)) for _ in range(5)]
        now[0] = 1010.0
        _send_udp(captures("ps_rtp_udp").packets[:3], infos[2]["port"])
        assert isinstance(worker.events.get(timeout=DEADLINE)[1], StreamStarted)
        _wait(lambda: worker.call(lambda: worker.stats(infos[2]["session"]))["packets"] == 3)
        now[0] = 1015.0
        worker.call(lambda: None)
        timed_out = {worker.events.get(timeout=DEADLINE)[0] for _ in range(4)}
        assert timed_out == {i["session"] for i in infos} - {infos[2]["session"]}
        now[0] = 1024.9
        worker.call(lambda: None)
        assert worker.events.empty()
        now[0] = 1025.0
        worker.call(lambda: None)
        session, event = worker.events.get(timeout=DEADLINE)
        assert session == infos[2]["session"] and event == StreamTimedOut(True, 1010.0, 1025.0)
        assert len(worker._timers) <= 5  # one live entry per session at most, none once ended
    finally:
        worker.stop()
