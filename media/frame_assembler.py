"""Group RTP packets into frames (GB/T 28181-2022 §4.3.6, notes §8.1).

All packets of one frame carry the same RTP timestamp and the last one has the marker bit, but
like ZLMediaKit's ``CommonRtpDecoder`` we rely on the timestamp change (the marker, when
present, only ends a frame sooner). A frame is emitted only if no packet of it was lost: when
the sequence numbers jump, the frame being built is dropped, and so is the frame that resumes
after the gap (its first packets may be the lost ones), so output restarts at a clean frame
boundary, which is what a PS parser needs (notes §8.1).

For UDP, a small reorder window (in packets) lets late packets slot in: packets are held,
sorted by sequence number, until the missing one arrives or the window is full, at which point
the missing one is declared lost. TCP delivers in order: use ``reorder_window=0``.

Sequence numbers wrap at 2**16 and are compared with serial arithmetic. A jump further than
``MAX_DROPOUT`` ahead, or more than ``MAX_MISORDER`` behind, is a sender restart (RFC 3550
Appendix A.1): the state is reset rather than counting thousands of losses.
"""

from __future__ import annotations

from dataclasses import dataclass

from media.rtp import RtpPacket, seq_diff

__all__ = ["AssembledFrame", "FrameAssembler"]

MAX_DROPOUT = 3000
MAX_MISORDER = 100
_DEFAULT_MAX_FRAME_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class AssembledFrame:
    """The payloads of one frame's RTP packets, concatenated in sequence order."""

    timestamp: int
    payload: bytes
    first_seq: int
    last_seq: int
    packets: int
    ssrc: int
    payload_type: int
    #: True when the last packet had the marker bit (else a timestamp change ended it).
    marker: bool


class FrameAssembler:
    """Sans-IO RTP frame assembly with a reorder window and loss accounting.

    :param reorder_window: packets held while waiting for a missing one (0 for TCP).
    :param max_frame_size: a frame growing past this is dropped (bounds memory).

    Counters (plain ints): ``packets`` accepted, ``lost`` (sequence numbers never seen),
    ``duplicates`` (already buffered), ``late`` (behind the delivery point: a duplicate of a
    delivered packet or one that came after it was declared lost), ``resets`` (sender
    restarts), ``frames``, and dropped frames by reason: ``dropped_loss``,
    ``dropped_oversize``.
    """

    def __init__(
        self, reorder_window: int = 0, max_frame_size: int = _DEFAULT_MAX_FRAME_SIZE
    ) -> None:
        if reorder_window < 0 or reorder_window > MAX_MISORDER:
            raise ValueError(f"reorder_window {reorder_window} is out of range 0..{MAX_MISORDER}")
        self.reorder_window = reorder_window
        self.max_frame_size = max_frame_size
        self._expected: int | None = None
        self._held: dict[int, RtpPacket] = {}
        # Frame being built.
        self._parts: list[bytes] = []
        self._size = 0
        self._first: RtpPacket | None = None
        self._last_seq = 0
        self._damaged = False
        # A gap was seen and no frame boundary has followed it yet.
        self._gap = False
        self.packets = 0
        self.lost = 0
        self.duplicates = 0
        self.late = 0
        self.resets = 0
        self.frames = 0
        self.dropped_loss = 0
        self.dropped_oversize = 0

    def add(self, packet: RtpPacket) -> list[AssembledFrame]:
        """Accept one packet; return the frames it completed (oldest first)."""
        out: list[AssembledFrame] = []
        seq = packet.header.sequence_number
        expected = self._expected
        if expected is None:
            self._expected = expected = seq
        delta = seq_diff(seq, expected)
        if delta < 0:
            if delta < -MAX_MISORDER:
                self._restart(seq, out)
            else:
                self.late += 1
                return out
        elif delta > MAX_DROPOUT:
            self._restart(seq, out)
        elif seq in self._held:
            self.duplicates += 1
            return out
        self.packets += 1
        if seq == self._expected and not self._held:
            self._expected = (seq + 1) & 0xFFFF
            self._deliver(packet, out)
            return out
        self._held[seq] = packet
        self._drain(out)
        while len(self._held) > self.reorder_window:
            # Give up on the missing packets: skip to the oldest held one.
            assert self._expected is not None
            base = self._expected
            oldest = min(self._held, key=lambda s: seq_diff(s, base))
            self.lost += seq_diff(oldest, base)
            self._expected = oldest
            self._mark_gap(out)
            self._drain(out)
        return out

    def flush(self) -> list[AssembledFrame]:
        """Deliver everything held (gaps count as loss) and end the current frame.

        For the end of a stream, or when the caller's clock says the missing packets will not
        come.
        """
        out: list[AssembledFrame] = []
        while self._held:
            assert self._expected is not None
            base = self._expected
            oldest = min(self._held, key=lambda s: seq_diff(s, base))
            if oldest != base:
                self.lost += seq_diff(oldest, base)
                self._expected = oldest
                self._mark_gap(out)
            self._drain(out)
        self._finish(out)
        return out

    # -- internals ---------------------------------------------------------------------------

    def _restart(self, seq: int, out: list[AssembledFrame]) -> None:
        self.resets += 1
        held = len(self._held)
        self._held.clear()
        self.lost += held
        if self._first is not None:
            if held:
                self._damaged = True
            self._finish(out)
        self._gap = False
        self._expected = seq

    def _drain(self, out: list[AssembledFrame]) -> None:
        held = self._held
        expected = self._expected
        assert expected is not None
        while expected in held:
            packet = held.pop(expected)
            expected = (expected + 1) & 0xFFFF
            self._expected = expected
            self._deliver(packet, out)

    def _mark_gap(self, out: list[AssembledFrame]) -> None:
        """Packets were lost before the next delivered one.

        The frame being built may have lost its tail, and the next one its head; which of
        them the lost packets belonged to is unknown until the next packet shows its
        timestamp, so both are marked.
        """
        if self._first is not None:
            self._damaged = True
        self._gap = True

    def _deliver(self, packet: RtpPacket, out: list[AssembledFrame]) -> None:
        header = packet.header
        first = self._first
        if first is not None and header.timestamp != first.header.timestamp:
            self._finish(out)
            first = None
        if first is None:
            self._first = packet
            self._damaged = self._gap
        self._gap = False
        payload = packet.payload
        self._parts.append(payload)
        self._size += len(payload)
        self._last_seq = header.sequence_number
        if header.marker:
            self._finish(out, marker=True)

    def _finish(self, out: list[AssembledFrame], marker: bool = False) -> None:
        first = self._first
        if first is None:
            return
        parts = self._parts
        if self._damaged:
            self.dropped_loss += 1
        elif self._size > self.max_frame_size:
            self.dropped_oversize += 1
        else:
            header = first.header
            self.frames += 1
            out.append(
                AssembledFrame(
                    timestamp=header.timestamp,
                    payload=parts[0] if len(parts) == 1 else b"".join(parts),
                    first_seq=header.sequence_number,
                    last_seq=self._last_seq,
                    packets=len(parts),
                    ssrc=header.ssrc,
                    payload_type=header.payload_type,
                    marker=marker,
                )
            )
        self._parts = []
        self._size = 0
        self._first = None
        self._damaged = False
