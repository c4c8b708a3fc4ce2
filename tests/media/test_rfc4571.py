from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media.rfc4571 import Rfc4571Error, Rfc4571Splitter, frame

if TYPE_CHECKING:
    from tests.media.conftest import Capture


def _stream(packets: list[bytes]) -> bytes:
    return b"".join(frame(p) for p in packets)


def _feed_chunks(splitter: Rfc4571Splitter, data: bytes, sizes: list[int]) -> list[bytes]:
    out: list[bytes] = []
    offset = 0
    for size in sizes:
        out += splitter.feed(data[offset : offset + size])
        offset += size
    out += splitter.feed(data[offset:])
    return out


def test_frame() -> None:
    assert frame(b"\x80" * 12) == b"\x00\x0c" + b"\x80" * 12
    assert len(frame(bytes(65535))) == 65537
    with pytest.raises(Rfc4571Error) as info:
        frame(bytes(65536))
    assert str(info.value) == "RTP packet of 65536 bytes does not fit an RFC 4571 frame"


def test_whole(capture: Capture) -> None:
    splitter = Rfc4571Splitter()
    assert splitter.feed(_stream(capture.packets)) == capture.packets
    assert (splitter.packets, splitter.bytes_skipped, splitter.resyncs) == (
        len(capture.packets),
        0,
        0,
    )
    assert splitter.buffered == 0
    assert splitter.ssrc == capture.ssrc


def test_byte_at_a_time(captures: Callable[[str], Capture]) -> None:
    packets = captures("ps_rtp_tcp").packets
    data = _stream(packets)
    splitter = Rfc4571Splitter()
    out: list[bytes] = []
    for i in range(len(data)):
        out += splitter.feed(data[i : i + 1])
    assert out == packets
    assert splitter.bytes_skipped == 0


def test_random_chunks(capture: Capture) -> None:
    rng = random.Random(4571)
    data = _stream(capture.packets)
    sizes = [rng.choice((1, 2, 3, 7, 100, 1401, 1402, 5000)) for _ in range(200)]
    splitter = Rfc4571Splitter(max_packet_size=1400)
    assert _feed_chunks(splitter, data, sizes) == capture.packets


def test_partial_frame_is_kept(captures: Callable[[str], Capture]) -> None:
    packets = captures("ps_rtp_udp").packets
    data = _stream(packets[:2])
    splitter = Rfc4571Splitter()
    assert splitter.feed(data[:-10]) == packets[:1]
    assert splitter.buffered == len(packets[1]) + 2 - 10
    assert splitter.feed(data[-10:]) == packets[1:2]
    assert splitter.buffered == 0


def test_garbage_between_frames_known_ssrc(captures: Callable[[str], Capture]) -> None:
    packets = captures("ps_rtp_tcp").packets
    garbage = b"\xff" * 37
    data = _stream(packets[:10]) + garbage + _stream(packets[10:])
    splitter = Rfc4571Splitter()
    assert splitter.feed(data) == packets
    assert splitter.bytes_skipped == 37
    assert splitter.resyncs == 1


def test_garbage_with_configured_ssrc_byte_at_a_time(captures: Callable[[str], Capture]) -> None:
    capture = captures("ps_rtp_tcp")
    garbage = bytes(range(0x40, 0x70))  # no version-2 byte, no SSRC
    data = garbage + _stream(capture.packets[:20])
    splitter = Rfc4571Splitter(ssrc=capture.ssrc)
    out = _feed_chunks(splitter, data, [1] * len(data))
    assert out == capture.packets[:20]
    assert splitter.bytes_skipped == len(garbage)


def test_stream_starting_mid_packet_unknown_ssrc(captures: Callable[[str], Capture]) -> None:
    """No SSRC known: resync needs two consecutive plausible frames with one SSRC."""
    packets = captures("ps_rtp_udp").packets
    data = _stream(packets[:30])
    cut = 2 + len(packets[0]) - 500  # the last 500 bytes of packet 0
    splitter = Rfc4571Splitter(max_packet_size=1400)
    out = splitter.feed(data[cut:])
    assert out == packets[1:30]
    assert splitter.bytes_skipped == 500
    assert splitter.ssrc == 200000001


def test_stream_starting_mid_packet_chunked(captures: Callable[[str], Capture]) -> None:
    packets = captures("ps_rtp_udp").packets
    data = _stream(packets[:30])
    cut = 2 + len(packets[0]) - 500
    rng = random.Random(1)
    sizes = [rng.randint(1, 300) for _ in range(300)]
    splitter = Rfc4571Splitter()
    assert _feed_chunks(splitter, data[cut:], sizes) == packets[1:30]
    assert splitter.bytes_skipped == 500


def test_spliced_packet_recovers(captures: Callable[[str], Capture]) -> None:
    """A sender overrun: packet 3 is cut short and packet 4 follows right after it."""
    packets = captures("ps_rtp_tcp").packets
    assert len(packets[3]) == 1400
    data = _stream(packets[:3]) + frame(packets[3])[:700] + _stream(packets[4:])
    splitter = Rfc4571Splitter(max_packet_size=1400)
    out = splitter.feed(data)
    # Packet 3 swallows the start of packet 4 (a corrupt packet the RTP layer will judge);
    # the rest of packet 4 is skipped and everything after it comes back.
    assert out[:3] == packets[:3]
    assert out[3] == packets[3][:698] + frame(packets[4])[:702]
    assert out[4:] == packets[5:]
    assert splitter.resyncs == 1
    assert splitter.bytes_skipped == len(packets[4]) + 2 - 702


def test_length_above_limit_triggers_resync(captures: Callable[[str], Capture]) -> None:
    packets = captures("ps_rtp_tcp").packets
    bogus = b"\x30\x00\x80" + bytes(20)  # length 12288 with a version-2 byte
    data = _stream(packets[:3]) + bogus + _stream(packets[3:10])
    splitter = Rfc4571Splitter(max_packet_size=10240)
    assert splitter.feed(data) == packets[:10]
    assert splitter.bytes_skipped == len(bogus)


def test_too_short_length_triggers_resync(captures: Callable[[str], Capture]) -> None:
    packets = captures("ps_rtp_tcp").packets
    data = _stream(packets[:3]) + b"\x00\x05\x80\x60\x00" + _stream(packets[3:10])
    splitter = Rfc4571Splitter()
    assert splitter.feed(data) == packets[:10]
    assert splitter.bytes_skipped == 5


@pytest.mark.parametrize("size", [11, 65536])
def test_bad_max_packet_size(size: int) -> None:
    with pytest.raises(Rfc4571Error, match="out of range"):
        Rfc4571Splitter(max_packet_size=size)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20), st.none() | st.integers(0, 2**32 - 1))
def test_fuzz_never_raises(chunks: list[bytes], ssrc: int | None) -> None:
    splitter = Rfc4571Splitter(max_packet_size=200, ssrc=ssrc)
    fed = sum(len(c) for c in chunks)
    out = []
    for chunk in chunks:
        out += splitter.feed(chunk)
    assert all(12 <= len(p) <= 200 and p[0] >> 6 == 2 for p in out)
    # Every byte is accounted for: returned, skipped or buffered.
    assert sum(len(p) + 2 for p in out) + splitter.bytes_skipped + splitter.buffered == fed


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=40))
def test_fuzz_chunking_is_transparent(captures: Callable[[str], Capture], sizes: list[int]) -> None:
    packets = captures("ps_rtp_udp").packets[:40]
    splitter = Rfc4571Splitter()
    assert _feed_chunks(splitter, _stream(packets), sizes) == packets


def test_device_ignoring_the_configured_ssrc(captures: Callable[[str], Capture]) -> None:
    """The SDP said one SSRC, the device uses its own (notes §12 item 1): accept it."""
    packets = captures("ps_rtp_tcp").packets[:20]
    splitter = Rfc4571Splitter(ssrc=12345)
    assert splitter.feed(_stream(packets)) == packets
    assert splitter.ssrc == 200000002
    assert splitter.bytes_skipped == 0


def test_ssrc_change_mid_stream(captures: Callable[[str], Capture]) -> None:
    first = captures("ps_rtp_tcp").packets[:10]
    second = captures("ps_rtp_udp").packets[:10]
    splitter = Rfc4571Splitter()
    assert splitter.feed(_stream(first) + _stream(second)) == first + second
    assert splitter.ssrc == 200000001
    assert splitter.bytes_skipped == 0


def test_random_garbage_then_stream(captures: Callable[[str], Capture]) -> None:
    """Long random garbage (many plausible-looking lengths) in small chunks, then packets."""
    packets = captures("ps_rtp_udp").packets[:60]
    garbage = random.Random(7).randbytes(30000)
    data = garbage + _stream(packets)
    splitter = Rfc4571Splitter()
    out = _feed_chunks(splitter, data, [97] * (len(data) // 97))
    # The first packet may be lost to the search; all later ones come back in order.
    assert out[-59:] == packets[1:]
    assert splitter.bytes_skipped + sum(len(p) + 2 for p in out) == len(data)
