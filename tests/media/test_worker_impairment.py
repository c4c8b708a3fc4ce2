"""Acceptance (issue 4): loss, reordering and duplicates injected on UDP into a relay worker.

A sender streams a fixture through an impaired path (packets dropped, swapped with a later
one, duplicated; a seeded random generator decides) into the worker, which relays it to two
UDP consumers, with UDP GRO batches (the sender glues runs of equal-sized packets with GSO,
which on loopback is what makes the kernel hand the worker batches) and without. Checked:

- the worker counts exactly the loss, reordering and duplicates injected;
- every frame a consumer assembles whole is byte-identical to the source frame with the same
  timestamp, and FFmpeg (PyAV) demuxes from them only elementary-stream packets of the source;
  frames hit by the loss are dropped by the consumer's assembler, never delivered corrupted.

Nothing asserts on elapsed time; receiving loops have a generous deadline.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from media.frame_assembler import AssembledFrame, FrameAssembler
from media.rtp import RtpPacket
from media.worker import RelayWorker, gso_supported
from tests.media.conftest import Capture, RefPacket
from tests.media.test_worker import _collect, _config, _udp_consumer

_GSO_RUN = 16


@dataclass
class Impairment:
    """What the path did to the stream: the packets sent, in order, and the counts."""

    sent: list[bytes]
    lost: int
    reordered: int
    duplicates: int


def impair(packets: list[bytes], seed: int, loss: float, swap: float, dup: float) -> Impairment:
    """Drop, swap with the next kept packet (it then arrives late), and duplicate packets.

    The first packet always passes (it locks the stream) and the last one too (a loss at the
    very end is invisible to sequence numbers).
    """
    rng = random.Random(seed)
    kept: list[bytes] = []
    lost = 0
    for i, packet in enumerate(packets):
        if 0 < i < len(packets) - 1 and rng.random() < loss:
            lost += 1
            continue
        kept.append(packet)
    sent: list[bytes] = []
    reordered = duplicates = 0
    i = 0
    while i < len(kept):
        if 0 < i < len(kept) - 1 and rng.random() < swap:
            sent += [kept[i + 1], kept[i]]  # kept[i] arrives one packet late
            reordered += 1
            i += 2
            continue
        sent.append(kept[i])
        if 0 < i < len(kept) - 1 and rng.random() < dup:
            sent.append(kept[i])
            duplicates += 1
        i += 1
    return Impairment(sent, lost, reordered, duplicates)


def _send(packets: list[bytes], port: int, gso: bool) -> None:
    """Send, gluing runs of equal-sized packets into one GSO send when ``gso``."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dest = ("127.0.0.1", port)
    i = 0
    while i < len(packets):
        j = i + 1
        if gso:
            while j < len(packets) and j - i < _GSO_RUN and len(packets[j]) == len(packets[i]):
                j += 1
        if j - i == 1:
            sender.sendto(packets[i], dest)
        else:
            cmsg = [(socket.SOL_UDP, 103, struct.pack("=H", len(packets[i])))]
            sender.sendmsg([b"".join(packets[i:j])], cmsg, 0, dest)
        i = j
        time.sleep(0.0005)  # let the worker drain; not part of any assertion
    sender.close()


def _frames(packets: list[bytes]) -> list[AssembledFrame]:
    assembler = FrameAssembler(reorder_window=16)
    out: list[AssembledFrame] = []
    for data in packets:
        out += assembler.add(RtpPacket.parse(data))
    return out + assembler.flush()


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("gro", [True, False], ids=["gro", "no-gro"])
@pytest.mark.parametrize("name", ["ps_rtp_udp", "ps_rtp_udp_h264_pcma"])
def test_loss_and_reorder_counted_and_whole_frames_intact(
    name: str,
    gro: bool,
    seed: int,
    captures: Callable[[str], Capture],
    reference: Callable[[bytes], list[RefPacket]],
) -> None:
    if gro and not gso_supported():
        pytest.skip("the kernel has no UDP GSO to make loopback batches")
    capture = captures(name)
    path = impair(capture.packets, seed, loss=0.03, swap=0.03, dup=0.01)
    assert path.lost and path.reordered  # the seeds do impair the stream
    source_frames = _frames(capture.packets)
    # Audio and video frames may share a timestamp: key by timestamp and payload.
    source = {(f.timestamp, f.payload): f for f in source_frames}
    worker = RelayWorker(_config(gro=gro))
    worker.start()
    try:
        info = worker.call(lambda: worker.open_receiver("udp", None, capture.ssrc))
        consumers = [_udp_consumer(), _udp_consumer()]
        for i, consumer in enumerate(consumers):
            addr = consumer.getsockname()
            worker.call(lambda a=addr, n=i: worker.add_output(info["session"], a, "udp", 50 + n))
        _send(path.sent, info["port"], gso=gro)
        received = [_collect(consumer, len(path.sent)) for consumer in consumers]
        stats = worker.call(lambda: worker.stats(info["session"]))
    finally:
        worker.stop()
    assert stats["packets"] == len(path.sent)  # duplicates are admitted (and counted)
    assert stats["lost"] == path.lost
    assert stats["reordered"] == path.reordered
    assert stats["duplicates"] == path.duplicates
    if name == "ps_rtp_udp":  # equal-sized packets: batches (the other one has few runs)
        assert (stats["gro_batches"] > 0) is gro
    whole = len(source_frames)
    expected = {p.data for p in reference(capture.ps)}
    for got in received:
        assert len(got) == len(path.sent)  # the relay forwards what it admits, loss and all
        frames = _frames(got)
        # The consumer loses at most the frame before and the frame after each gap.
        assert whole - 2 * path.lost <= len(frames) < whole
        for frame in frames:
            original = source.get((frame.timestamp, frame.payload))
            assert original is not None, f"frame at {frame.timestamp} differs from the source"
            assert frame.packets == original.packets
        # FFmpeg, fed what the consumer kept, finds only elementary-stream packets of the source.
        judged = reference(b"".join(f.payload for f in frames))
        assert judged and {p.data for p in judged} <= expected
