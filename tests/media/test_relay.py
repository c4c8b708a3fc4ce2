"""RelaySession: admission, per-output rewrite, counters, GOP cache, timer (no sockets)."""

from __future__ import annotations

import struct
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from media.frame_assembler import FrameAssembler
from media.ps_demux import PsDemuxer
from media.relay import (
    DropReason,
    KeyframeSent,
    OutputSpec,
    RelaySession,
    SsrcChanged,
    StreamStarted,
    StreamTimedOut,
)
from media.rtp import RtpPacket, peek_ssrc_seq_ts
from tests.media.conftest import Capture, RefPacket

SRC = ("192.0.2.10", 15060)
OUTS = [("127.0.0.1", 30000 + i) for i in range(3)]


def _drain_events(session: RelaySession, keyframes: bool = False) -> list[object]:
    """The queued events; :class:`KeyframeSent` only if ``keyframes``."""
    out = []
    while (event := session.next_event()) is not None:
        if keyframes or not isinstance(event, KeyframeSent):
            out.append(event)
    return out


def _relay(session: RelaySession, packets: list[bytes], now: float = 1.0) -> dict[tuple, list]:
    by_addr: dict[tuple, list] = {}
    for packet in packets:
        for data, addr in session.receive_rtp(packet, SRC, now):
            by_addr.setdefault(addr, []).append(bytes(data))
    return by_addr


def _video_frames(packets: list[bytes]) -> list[bytes]:
    """Reassemble RTP packets into frames, demux, return the video access units."""
    assembler = FrameAssembler(reorder_window=16)
    demuxer = PsDemuxer()
    out: list[bytes] = []
    frames = []
    for data in packets:
        frames.extend(assembler.add(RtpPacket.parse(data)))
    frames.extend(assembler.flush())
    for frame in frames:
        for ps_frame in demuxer.feed(frame.payload) + demuxer.flush():
            if ps_frame.kind == "video":
                out.append(ps_frame.data)
    return out


def test_three_outputs_rewritten_and_identical_frames(
    capture: Capture, reference: Callable[[bytes], list[RefPacket]]
) -> None:
    session = RelaySession(capture.ssrc)
    ids = [
        session.add_output(OutputSpec(addr, ssrc=0x1000 + i, seq_start=65530, ts_offset=i * 7))
        for i, addr in enumerate(OUTS)
    ]
    assert ids == [1, 2, 3]
    got = _relay(session, capture.packets)
    expected_ref = [(p.kind, p.data) for p in reference(capture.ps)]
    for i, addr in enumerate(OUTS):
        packets = got[addr]
        assert len(packets) == len(capture.packets)
        for n, (data, original) in enumerate(zip(packets, capture.packets, strict=True)):
            ssrc, seq, ts = peek_ssrc_seq_ts(data)
            *_, ots = peek_ssrc_seq_ts(original)
            assert ssrc == 0x1000 + i
            assert seq == (65530 + n) & 0xFFFF  # wraps
            assert ts == (ots + i * 7) & 0xFFFFFFFF
            assert data[:2] == original[:2] and data[12:] == original[12:]
        ps = b"".join(p[12:] for p in packets)
        assert [(p.kind, p.data) for p in reference(ps)] == expected_ref
    assert session.packets == len(capture.packets)
    assert session.forwarded == 3 * len(capture.packets)
    assert session.lost == session.reordered == 0


def test_frames_after_relay_decode(
    captures: Callable[[str], Capture], decode_count: Callable[[str, list[bytes]], int]
) -> None:
    capture = captures("ps_rtp_udp")
    session = RelaySession(capture.ssrc)
    session.add_output(OutputSpec(OUTS[0], ssrc=1))
    frames = _video_frames(_relay(session, capture.packets)[OUTS[0]])
    assert decode_count("h264", frames) == capture.decoded_frames


def test_foreign_ssrc_and_source_rejected(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    session = RelaySession(capture.ssrc)
    session.add_output(OutputSpec(OUTS[0], ssrc=1))
    first, second = capture.packets[:2]
    assert len(session.receive_rtp(first, SRC, 1.0)) == 1
    assert _drain_events(session) == [StreamStarted(capture.ssrc, SRC, 1.0)]
    foreign = first[:8] + struct.pack("!I", 12345) + first[12:]
    assert session.receive_rtp(foreign, SRC, 1.1) == []
    # The first source is locked: the right SSRC from elsewhere is a hijack attempt.
    assert session.receive_rtp(second, ("192.0.2.99", 15060), 1.2) == []
    assert session.receive_rtp(second, (SRC[0], SRC[1] + 1), 1.2) == []
    assert session.receive_rtp(b"\x80\x60", SRC, 1.3) == []
    assert session.receive_rtp(b"\x00" * 20, SRC, 1.3) == []
    assert session.drops == {
        DropReason.MALFORMED: 2,
        DropReason.SSRC: 1,
        DropReason.SOURCE: 2,
        DropReason.CLOSED: 0,
    }
    assert len(session.receive_rtp(second, SRC, 1.4)) == 1
    assert session.packets == 2


def test_given_source_and_learned_ssrc(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_tcp")
    session = RelaySession(None, SRC)
    assert session.receive_rtp(capture.packets[0], ("192.0.2.1", 1), 0.0) == []
    assert session.drops[DropReason.SOURCE] == 1
    session.receive_rtp(capture.packets[0], SRC, 0.0)
    assert session.ssrc == capture.ssrc
    other = capture.packets[1][:8] + struct.pack("!I", 7) + capture.packets[1][12:]
    session.receive_rtp(other, SRC, 0.1)
    assert session.drops[DropReason.SSRC] == 1


def test_rekey_to_the_devices_own_ssrc(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    session = RelaySession(111)
    session.add_output(OutputSpec(OUTS[0], ssrc=5))
    assert session.receive_rtp(capture.packets[0], SRC, 0.0) == []
    session.rekey(capture.ssrc, 0.5)
    session.rekey(capture.ssrc, 0.6)  # no change, no event
    assert _drain_events(session) == [SsrcChanged(111, capture.ssrc, "rekey", 0.5)]
    assert len(session.receive_rtp(capture.packets[0], SRC, 1.0)) == 1
    assert session.drops[DropReason.SSRC] == 1


def test_ssrc_change_after_silence(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    session = RelaySession(capture.ssrc, ssrc_change_after=3.0)
    session.add_output(OutputSpec(OUTS[0], ssrc=5, seq_start=100))
    session.receive_rtp(capture.packets[0], SRC, 0.0)
    restarted = capture.packets[1][:2] + struct.pack("!HII", 9000, 1, 42) + capture.packets[1][12:]
    assert session.receive_rtp(restarted, SRC, 2.9) == []  # old SSRC silent only 2.9 s
    out = session.receive_rtp(restarted, SRC, 3.0)
    assert [peek_ssrc_seq_ts(d)[:2] for d, _ in out] == [(5, 101)]  # contiguous for consumers
    events = _drain_events(session)
    assert events[-1] == SsrcChanged(capture.ssrc, 42, "restart", 3.0)


def test_loss_reorder_duplicates_and_restart(captures: Callable[[str], Capture]) -> None:
    packets = captures("ps_rtp_udp").packets
    session = RelaySession(None)
    session.add_output(OutputSpec(OUTS[0], ssrc=9, seq_start=0))
    order = [0, 1, 3, 2, 4, 4, 7, 8]  # 2 late, 4 duplicated, 5 and 6 lost
    out = []
    for i in order:
        out.extend(session.receive_rtp(packets[i], SRC, 0.0))
    assert session.reordered == 1
    assert session.duplicates == 1
    assert session.lost == 2
    # Gaps and order are passed through: consumers do their own loss handling.
    assert [peek_ssrc_seq_ts(d)[1] for d, _ in out] == order
    jump = packets[9][:2] + struct.pack("!H", 40000) + packets[9][4:]
    out = session.receive_rtp(jump, SRC, 0.0)
    assert session.restarts == 1
    assert peek_ssrc_seq_ts(out[0][0])[1] == 9  # continues after the last one sent (8)
    assert session.lost == 0  # counts restart with the sender


def test_sequence_wrap_is_not_a_restart(captures: Callable[[str], Capture]) -> None:
    packets = captures("ps_rtp_udp").packets
    session = RelaySession(None)
    for i, seq in enumerate((65534, 65535, 0, 2)):
        data = packets[i][:2] + struct.pack("!H", seq) + packets[i][4:]
        session.receive_rtp(data, SRC, 0.0)
    assert session.restarts == 0
    assert session.lost == 1


def test_remove_output(captures: Callable[[str], Capture]) -> None:
    packets = captures("ps_rtp_udp").packets
    session = RelaySession(None)
    a = session.add_output(OutputSpec(OUTS[0], ssrc=1))
    b = session.add_output(OutputSpec(OUTS[1], ssrc=2))
    assert session.remove_output(a) == OutputSpec(OUTS[0], ssrc=1)
    assert [addr for _, addr in session.receive_rtp(packets[0], SRC, 0.0)] == [OUTS[1]]
    assert list(session.outputs) == [b]


def test_late_consumer_starts_at_keyframe(
    captures: Callable[[str], Capture], decode_count: Callable[[str, list[bytes]], int]
) -> None:
    capture = captures("ps_rtp_udp")
    session = RelaySession(capture.ssrc)
    _relay(session, capture.packets[:120])  # keyframes at packets 0, 35, 55, 90, 110
    cached, _ = session.gop_cache_size
    assert cached == 10
    session.add_output(OutputSpec(OUTS[0], ssrc=77, seq_start=1000))
    backlog = session.datagrams_to_send()
    assert session.datagrams_to_send() == []
    assert len(backlog) == cached
    live = _relay(session, capture.packets[120:])[OUTS[0]]
    packets = [bytes(d) for d, _ in backlog] + live
    assert [peek_ssrc_seq_ts(p)[1] for p in packets] == list(range(1000, 1000 + len(packets)))
    assert packets[0][12:] == capture.packets[110][12:]
    frames = _video_frames(packets)
    # Every access unit decodes, the first one included: the consumer started at an IDR.
    assert decode_count("h264", frames) == len(frames) > 0


def test_gop_cache_bounded_and_disabled(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    session = RelaySession(capture.ssrc, gop_cache_bytes=2000)
    _relay(session, capture.packets[:20])
    assert session.gop_cache_size == (0, 0)
    session.add_output(OutputSpec(OUTS[0], ssrc=1))
    assert session.datagrams_to_send() == []
    off = RelaySession(capture.ssrc, gop_cache_bytes=0)
    _relay(off, capture.packets[:20])
    assert off.gop_cache_size == (0, 0)
    assert off.keyframes == 1  # counted even with the cache off


def test_inactivity_timeout_with_injected_time(captures: Callable[[str], Capture]) -> None:
    packet = captures("ps_rtp_udp").packets[0]
    session = RelaySession(None, now=100.0)
    assert session.get_timer() == 115.0
    session.receive_rtp(packet, SRC, 101.0)
    assert session.get_timer() == 116.0
    session.handle_timer(115.9)
    assert _drain_events(session) == [StreamStarted(200000001, SRC, 101.0)]
    session.handle_timer(116.0)
    assert _drain_events(session) == [StreamTimedOut(True, 101.0, 116.0)]
    assert session.get_timer() is None
    assert session.receive_rtp(packet, SRC, 117.0) == []
    assert session.drops[DropReason.CLOSED] == 1


def test_no_media_timeout() -> None:
    session = RelaySession(1, now=0.0, timeout=5.0)
    session.handle_timer(5.0)
    assert session.next_event() == StreamTimedOut(False, None, 5.0)


def test_no_media_clock_restarts_until_the_first_packet(
    captures: Callable[[str], Capture],
) -> None:
    # A slow answer (a lower platform): the caller restarts the clock while it waits.
    session = RelaySession(None, now=0.0, timeout=5.0)
    session.restart_timer(4.0)
    assert session.get_timer() == 9.0
    session.restart_timer(3.0)  # never earlier
    assert session.get_timer() == 9.0
    session.receive_rtp(captures("ps_rtp_udp").packets[0], SRC, 6.0)
    session.restart_timer(8.0)  # media flows: the packets rule
    assert session.get_timer() == 11.0
    session.close()
    session.restart_timer(20.0)
    assert session.get_timer() is None


def test_no_media_clock_stops_while_paused(captures: Callable[[str], Capture]) -> None:
    # A paused playback: the device sends nothing until PLAY, and that is not a dead stream.
    session = RelaySession(None, now=0.0, timeout=5.0)
    session.receive_rtp(captures("ps_rtp_udp").packets[0], SRC, 1.0)
    assert isinstance(session.next_event(), StreamStarted)
    session.pause_timer()
    assert session.get_timer() is None
    session.handle_timer(100.0)
    assert session.next_event() is None and not session.closed
    session.resume_timer(100.0)  # counted from the PLAY, not from the last packet
    assert session.get_timer() == 105.0
    session.resume_timer(200.0)  # not paused: nothing moves
    assert session.get_timer() == 105.0
    session.handle_timer(105.0)
    assert session.next_event() == StreamTimedOut(True, 1.0, 105.0)


def test_stats_and_close(captures: Callable[[str], Capture]) -> None:
    session = RelaySession(None)
    session.receive_rtp(captures("ps_rtp_udp").packets[0], SRC, 0.0)
    stats = session.stats()
    assert stats["packets"] == 1 and stats["source"] == list(SRC)
    session.close()
    assert session.get_timer() is None and session.gop_cache_size == (0, 0)


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_fuzz_never_raises(first: bytes, second: bytes) -> None:
    session = RelaySession(None)
    session.add_output(OutputSpec(OUTS[0], ssrc=1))
    for data in (first, second, b"\x80" + first):
        for out, _ in session.receive_rtp(data, SRC, 0.0):
            assert len(out) == len(data)


# -- batches (UDP GRO) -----------------------------------------------------------------------


def _gro_batches(packets: list[bytes], limit: int = 64) -> list[tuple[bytes, int]]:
    """Glue packets the way UDP GRO does: equal sizes, the last of a batch may be shorter."""
    out: list[tuple[bytes, int]] = []
    run: list[bytes] = []
    for packet in packets:
        if run and (len(packet) > len(run[0]) or len(run[-1]) < len(run[0]) or len(run) == limit):
            out.append((b"".join(run), len(run[0])))
            run = []
        run.append(packet)
    if run:
        out.append((b"".join(run), len(run[0])))
    return out


def _split(chunks: list[tuple[int, object, int]]) -> dict[int, list[bytes]]:
    by_output: dict[int, list[bytes]] = {}
    for output_id, data, segment in chunks:
        raw = bytes(data)  # type: ignore[call-overload]
        by_output.setdefault(output_id, []).extend(
            raw[i : i + segment] for i in range(0, len(raw), segment)
        )
    return by_output


def _twin_sessions(ssrc: int | None) -> tuple[RelaySession, RelaySession]:
    a, b = RelaySession(ssrc), RelaySession(ssrc)
    for session in (a, b):
        session.add_output(OutputSpec(OUTS[0], ssrc=0x1000, seq_start=65530))
        session.add_output(OutputSpec(OUTS[1], ssrc=0x2000, seq_start=7, ts_offset=90))
    return a, b


def _comparable(session: RelaySession) -> dict[str, object]:
    stats = session.stats()
    del stats["batches"]
    return stats


def test_batches_match_packet_by_packet(capture: Capture) -> None:
    packets = capture.packets
    single, batched = _twin_sessions(capture.ssrc)
    expected: dict[int, list[bytes]] = {}
    for packet in packets:
        for output_id, data in _split(single._receive_one(packet, SRC, 1.0)).items():
            expected.setdefault(output_id, []).extend(data)
    got: dict[int, list[bytes]] = {}
    for data, segment in _gro_batches(packets):
        for output_id, out in _split(batched.receive_batch(data, segment, SRC, 1.0)).items():
            got.setdefault(output_id, []).extend(out)
    assert got == expected
    assert batched.batches > 0
    assert _comparable(batched) == _comparable(single)
    assert batched.gop_payloads() == single.gop_payloads()


_IMPAIR = st.lists(st.sampled_from(["keep", "drop", "swap", "dup", "foreign"]), max_size=200)


@given(_IMPAIR, st.integers(1, 64))
def test_impaired_batches_match_packet_by_packet(actions: list[str], limit: int) -> None:
    """Loss, reordering, duplicates and foreign packets: both paths count and forward alike."""
    from tests.media.conftest import get_capture

    packets = list(get_capture("ps_rtp_udp").packets)
    stream: list[bytes] = []
    for i, packet in enumerate(packets[: len(actions)]):
        action = actions[i]
        if action == "keep":
            stream.append(packet)
        elif action == "dup":
            stream += [packet, packet]
        elif action == "swap" and stream:
            stream.insert(len(stream) - 1, packet)
        elif action == "foreign":
            stream += [packet[:8] + b"\xde\xad\xbe\xef" + packet[12:], packet]
    single, batched = _twin_sessions(None)
    expected: dict[int, list[bytes]] = {}
    for packet in stream:
        for output_id, data in _split(single._receive_one(packet, SRC, 1.0)).items():
            expected.setdefault(output_id, []).extend(data)
    got: dict[int, list[bytes]] = {}
    for data, segment in _gro_batches(stream, limit):
        for output_id, out in _split(batched.receive_batch(data, segment, SRC, 1.0)).items():
            got.setdefault(output_id, []).extend(out)
    assert got == expected
    assert _comparable(batched) == _comparable(single)


def test_batch_from_another_source_is_dropped(captures: Callable[[str], Capture]) -> None:
    packets = captures("ps_rtp_udp").packets
    session, _ = _twin_sessions(None)
    session.receive_rtp(packets[0], SRC, 0.0)
    data, segment = _gro_batches(packets[1:5])[0]
    assert session.receive_batch(data, segment, ("192.0.2.99", 1), 0.1) == []
    assert session.drops[DropReason.SOURCE] == 4


def test_frames_fps_and_keyframe_sent(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    session = RelaySession(capture.ssrc)
    # 25 frames a second of arrival time: one packet every 1/25 s per frame start.
    for data, segment in _gro_batches(capture.packets[:30]):
        session.receive_batch(data, segment, SRC, 0.0)
    frames = session.frames
    assert frames > 0 and session.keyframes >= 1
    now = 1.0
    first_output = session.add_output(OutputSpec(OUTS[0], ssrc=5), now=now)
    # The cached keyframe went out at once: the consumer's start latency ends here.
    assert _drain_events(session, keyframes=True)[-1] == KeyframeSent(first_output, now)
    session.chunks_to_send()
    for i, packet in enumerate(capture.packets[30:]):
        session.receive_rtp(packet, SRC, now + i / 25)
    assert session.frames > frames
    assert 0 < session.stats()["fps"] < 100  # type: ignore[operator]
    assert session.output_stats(first_output)["keyframe_at"] == now


def test_inactive_output_waits_then_starts_at_keyframe(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_udp")
    session = RelaySession(capture.ssrc, gop_cache_bytes=0)
    output = session.add_output(OutputSpec(OUTS[0], ssrc=5, transport="tcp-passive"), active=False)
    assert _relay(session, capture.packets[:40]) == {}
    session.activate(output, 2.0)
    assert session.chunks_to_send() == []  # no cache: the next live keyframe starts it
    sent = _relay(session, capture.packets[40:60], now=3.0)[OUTS[0]]
    assert len(sent) == 20
    events = _drain_events(session, keyframes=True)
    assert KeyframeSent(output, 3.0) in events


@given(st.binary(min_size=1, max_size=600), st.integers(1, 200), st.booleans())
def test_fuzz_batches_never_raise_and_match(data: bytes, segment: int, lock: bool) -> None:
    """Random bytes as a GRO batch: no exception, same outcome as packet by packet."""
    from tests.media.conftest import get_capture

    first = get_capture("ps_rtp_udp").packets[0]
    single, batched = _twin_sessions(None)
    if lock:
        # A locked stream, and packets carrying its version byte and SSRC: the column
        # checks pass on some batches and the sequence numbers decide.
        for session in (single, batched):
            session.receive_rtp(first, SRC, 0.0)
        parts = []
        for i in range(0, len(data), segment):
            part = bytearray(data[i : i + segment])
            if len(part) >= 12:
                part[0] = 0x80
                part[8:12] = first[8:12]
            parts.append(bytes(part))
        data = b"".join(parts)
    expected: dict[int, list[bytes]] = {}
    for i in range(0, len(data), segment):
        for output_id, out in _split(single._receive_one(data[i : i + segment], SRC, 1.0)).items():
            expected.setdefault(output_id, []).extend(out)
    assert _split(batched.receive_batch(data, segment, SRC, 1.0)) == expected
    assert _comparable(batched) == _comparable(single)
