"""Query/response correlation for MANSCDP (sans-IO).

Every MESSAGE is answered at SIP level at once with a bodiless 200 OK; the real answer is a
*separate* MESSAGE with root ``<Response>``, the same CmdType and the same SN, usually on a new
Call-ID (GB/T 28181-2016 §9.1 / notes §4.1). So answers are matched here on
``(DeviceID in the body, CmdType, SN)``, never on Call-ID and not on the From header: a device
asked about one of its channels answers from its own ID but names the channel in the body.

Multi-part answers (Catalog, RecordInfo, PresetQuery, SDCardStatus, the 2022 cruise queries,
ConfigDownload) arrive as several MESSAGEs sharing one SN. Items are collected and de-duplicated
(a retransmitted chunk must not count twice) until the number of distinct items reaches
``SumNum`` (``SumNum`` 0 completes at once: no channels). Senders that lose chunks exist (WVP
#853, #858), so each query has a deadline at which whatever arrived is returned, marked
``partial``. ConfigDownload has no ``SumNum``: it sends one Response per requested config type,
so the caller says how many parts to expect.

UDP may deliver the answer before our own request's 200 OK, and the glue may register a query
a moment after sending it; a Response that matches nothing is therefore held for
``hold_time`` seconds and replayed when :meth:`QueryCorrelator.expect` registers its key (WVP
PR #655: the first chunk must not be dropped). Whatever is still unmatched after that is
reported as :class:`ResponseUnmatched` so the caller can log it.

Everything is bounded: pending queries, held responses, items per query.

Drivers (aioquic style, see docs/style.md §1): :meth:`~QueryCorrelator.expect`,
:meth:`~QueryCorrelator.receive` and :meth:`~QueryCorrelator.handle_timer`, each taking ``now``;
:meth:`~QueryCorrelator.get_timer` gives the next deadline.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from . import manscdp

__all__ = [
    "MULTIPART_CMD_TYPES",
    "CorrelatorConfig",
    "CorrelatorError",
    "CorrelatorEvent",
    "QueryCorrelator",
    "QueryDone",
    "QueryHandle",
    "ResponseUnmatched",
]

SN_MAX = 999_999_999
"""SNs wrap below this (WVP sends 6-digit SNs; some devices store SN in a signed 32-bit int)."""


def _record_key(item: Any) -> Hashable:
    # A recording is one file: the same (channel, start, end, path, type, stream) twice is a
    # retransmitted chunk, not two recordings.
    return (
        item.device_id,
        item.start_time,
        item.end_time,
        item.file_path,
        item.type,
        item.stream_number,
    )


def _cruise_point_key(item: Any) -> Hashable:
    return (item.preset_index, item.stay_time, item.speed)


_ITEM_KEYS: dict[str, Callable[[Any], Hashable]] = {
    # Catalog: one node per DeviceID (notes §4.4: "Dedupe by DeviceID").
    "catalog": lambda item: item.device_id,
    "recordinfo": _record_key,
    "presetquery": lambda item: item.preset_id,
    "sdcardstatus": lambda item: item.id,
    "cruisetracklistquery": lambda item: item.number,
    "cruisetrackquery": _cruise_point_key,
}

MULTIPART_CMD_TYPES = frozenset({*_ITEM_KEYS, "configdownload"})
"""Lower-case CmdTypes whose Response may span several MESSAGEs."""


class CorrelatorError(Exception):
    """The caller misused the correlator (e.g. registered the same key twice)."""


@dataclass(frozen=True, slots=True)
class CorrelatorConfig:
    """Limits and defaults.

    :param hold_time: seconds an unmatched Response is kept waiting for its ``expect``.
    :param max_pending: queries in flight at once; ``expect`` beyond it raises.
    :param max_held: unmatched Responses kept; beyond it they are reported unmatched at once.
    :param max_items: distinct items kept per query; more are dropped and the result is partial.
    :param first_sn: first SN handed out by ``allocate_sn`` (tests pin it; the glue may seed it
        randomly so SNs do not repeat across restarts).
    """

    hold_time: float = 2.0
    max_pending: int = 10_000
    max_held: int = 1_000
    max_items: int = 200_000
    first_sn: int = 1


@dataclass(frozen=True, slots=True)
class CorrelatorEvent:
    """Base of what the correlator reports."""


@dataclass(frozen=True, slots=True)
class QueryDone(CorrelatorEvent):
    """A query finished: complete, or ``partial`` with what arrived (``reason`` says why).

    ``items`` are the distinct items in arrival order (multi-part kinds; empty otherwise);
    ``messages`` every matched Response in arrival order, duplicates included;
    ``result`` the last ``<Result>`` seen (``None`` when no Response carried one).
    """

    device_id: str
    cmd_type: str
    sn: int
    messages: tuple[manscdp.Message, ...]
    items: tuple[Any, ...]
    sum_num: int | None
    partial: bool
    reason: str
    result: str | None
    started: float
    finished: float

    @property
    def message(self) -> manscdp.Message | None:
        """The first Response (the whole answer for single-part kinds)."""
        return self.messages[0] if self.messages else None


@dataclass(frozen=True, slots=True)
class ResponseUnmatched(CorrelatorEvent):
    """A Response no query claimed (late, unknown SN, not a Response...): log it."""

    message: manscdp.Message
    sender_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class QueryHandle:
    """What :meth:`QueryCorrelator.expect` registered.

    ``done`` is set when Responses held before the registration already completed the query.
    """

    device_id: str
    cmd_type: str
    sn: int
    deadline: float
    done: QueryDone | None = None


_Key = tuple[str, str, int]


class _Pending:
    """One query in flight (internal, mutable)."""

    __slots__ = (
        "cmd_type",
        "deadline",
        "device_id",
        "dropped",
        "expected_parts",
        "item_key",
        "items",
        "messages",
        "multipart",
        "result",
        "sn",
        "started",
        "sum_num",
    )

    def __init__(
        self,
        device_id: str,
        cmd_type: str,
        sn: int,
        now: float,
        deadline: float,
        multipart: bool,
        expected_parts: int,
    ) -> None:
        self.device_id = device_id
        self.cmd_type = cmd_type
        self.sn = sn
        self.started = now
        self.deadline = deadline
        self.multipart = multipart
        self.expected_parts = expected_parts
        self.item_key: Callable[[Any], Hashable] | None = _ITEM_KEYS.get(cmd_type.lower())
        self.items: dict[Hashable, Any] = {}
        self.messages: list[manscdp.Message] = []
        self.sum_num: int | None = None
        self.result: str | None = None
        self.dropped = 0


def _norm(device_id: str, cmd_type: str, sn: int) -> _Key:
    return (device_id, cmd_type.lower(), sn)


class QueryCorrelator:
    """Matches MANSCDP Responses to the queries we sent (see the module docstring).

    Not thread-safe; one per signalling process. ``now`` is any monotonic clock in seconds.
    """

    def __init__(self, config: CorrelatorConfig | None = None) -> None:
        self.config = config or CorrelatorConfig()
        self._pending: dict[_Key, _Pending] = {}
        # (deadline, seq, kind, key): kind 0 = query deadline, 1 = held response expiry.
        self._timers: list[tuple[float, int, int, _Key]] = []
        self._seq = 0
        self._held: dict[_Key, list[tuple[manscdp.Message, str, float]]] = {}
        self._held_count = 0
        self._next_sn = max(1, self.config.first_sn)

    # -- queries ---------------------------------------------------------------------------

    @property
    def pending_count(self) -> int:
        """Queries in flight."""
        return len(self._pending)

    @property
    def held_count(self) -> int:
        """Unmatched Responses waiting for their ``expect``."""
        return self._held_count

    def allocate_sn(self, device_id: str, cmd_type: str) -> int:
        """An SN not in use by a pending query of the same device and CmdType.

        Concurrent identical queries (two users searching the same channel's recordings) must
        carry distinct SNs or their answers cannot be told apart (WVP #768).
        """
        lower = cmd_type.lower()
        while True:
            sn = self._next_sn
            self._next_sn = sn + 1 if sn < SN_MAX else 1
            key = (device_id, lower, sn)
            if key not in self._pending and key not in self._held:
                return sn

    def expect(
        self,
        device_id: str,
        cmd_type: str,
        sn: int,
        now: float,
        *,
        timeout: float,
        multipart: bool | None = None,
        expected_parts: int = 1,
    ) -> QueryHandle:
        """Register a query just sent (or about to be sent).

        :param device_id: the DeviceID put in the query body (device, platform or channel).
        :param cmd_type: the query's CmdType (matched case-insensitively).
        :param sn: the query's SN, usually from :meth:`allocate_sn`.
        :param timeout: seconds until the query ends with what arrived (``partial``).
        :param multipart: collect several Responses; by default true for
            :data:`MULTIPART_CMD_TYPES`.
        :param expected_parts: for multi-part kinds without ``SumNum`` (ConfigDownload), how
            many Responses complete the query (one per requested config type).
        :returns: the handle; ``handle.done`` is set if held Responses already completed it.
        :raises CorrelatorError: the key is already pending, or ``max_pending`` is reached.
        """
        key = _norm(device_id, cmd_type, sn)
        if key in self._pending:
            raise CorrelatorError(f"query {device_id} {cmd_type} SN={sn} is already pending")
        if len(self._pending) >= self.config.max_pending:
            raise CorrelatorError(f"too many pending queries ({self.config.max_pending})")
        if multipart is None:
            multipart = key[1] in MULTIPART_CMD_TYPES
        deadline = now + timeout
        pending = _Pending(
            device_id, cmd_type, sn, now, deadline, multipart, max(1, expected_parts)
        )
        self._pending[key] = pending
        self._arm(deadline, 0, key)
        done: QueryDone | None = None
        held = self._held.pop(key, None)
        if held is not None:
            self._held_count -= len(held)
            for message, _sender, _at in held:
                done = self._feed(key, pending, message, now)
                if done is not None:
                    break
        return QueryHandle(device_id, cmd_type, sn, deadline, done)

    def cancel(self, device_id: str, cmd_type: str, sn: int, now: float) -> QueryDone | None:
        """Stop waiting (device unregistered, caller gave up): what arrived, ``partial``.

        :returns: ``None`` when no such query is pending.
        """
        key = _norm(device_id, cmd_type, sn)
        pending = self._pending.pop(key, None)
        if pending is None:
            return None
        return self._done(
            pending, now, partial=True, reason=f"cancelled: {self._progress(pending)}"
        )

    # -- input -----------------------------------------------------------------------------

    def receive(
        self, message: manscdp.Message, sender_id: str, now: float
    ) -> list[CorrelatorEvent]:
        """Offer a decoded MANSCDP message received in a MESSAGE (after answering it 200 OK).

        :param message: the decoded body; only root ``Response`` can match.
        :param sender_id: the user part of the From URI, used only when the body names
            no pending query (some devices answer with their own ID in the body).
        :returns: :class:`QueryDone` when this completed a query, :class:`ResponseUnmatched`
            when it cannot match anything (not a Response, hold buffer full); empty while a
            multi-part answer is still incomplete or the message is held for a late ``expect``.
        """
        if message.root is not manscdp.Root.RESPONSE:
            return [
                ResponseUnmatched(
                    message, sender_id, f"root {message.root.value} is not a Response"
                )
            ]
        key = _norm(message.device_id, message.cmd_type, message.sn)
        pending = self._pending.get(key)
        if pending is None and sender_id and sender_id != message.device_id:
            alt = (sender_id, key[1], key[2])
            pending = self._pending.get(alt)
            if pending is not None:
                key = alt
        if pending is not None:
            done = self._feed(key, pending, message, now)
            return [] if done is None else [done]
        if self._held_count >= self.config.max_held:
            return [ResponseUnmatched(message, sender_id, "no pending query (hold buffer full)")]
        self._held.setdefault(key, []).append((message, sender_id, now))
        self._held_count += 1
        self._arm(now + self.config.hold_time, 1, key)
        return []

    # -- timers ----------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest deadline (query timeout or held-response expiry), or ``None``."""
        timers = self._timers
        while timers and not self._live(timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def handle_timer(self, now: float) -> list[CorrelatorEvent]:
        """Expire due queries (``QueryDone(partial=True)``) and held responses
        (``ResponseUnmatched``)."""
        events: list[CorrelatorEvent] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, _seq, kind, key = heapq.heappop(timers)
            if kind == 0:
                pending = self._pending.get(key)
                if pending is None or pending.deadline != deadline:
                    continue
                del self._pending[key]
                reason = f"timeout: {self._progress(pending)}"
                events.append(self._done(pending, now, partial=True, reason=reason))
            else:
                held = self._held.get(key)
                if not held:
                    continue
                keep = [h for h in held if h[2] + self.config.hold_time > now]
                for message, sender, at in held:
                    if at + self.config.hold_time <= now:
                        events.append(ResponseUnmatched(message, sender, "no pending query"))
                self._held_count -= len(held) - len(keep)
                if keep:
                    self._held[key] = keep
                else:
                    del self._held[key]
        return events

    # -- internals -------------------------------------------------------------------------

    def _arm(self, deadline: float, kind: int, key: _Key) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (deadline, self._seq, kind, key))

    def _live(self, timer: tuple[float, int, int, _Key]) -> bool:
        deadline, _seq, kind, key = timer
        if kind == 0:
            pending = self._pending.get(key)
            return pending is not None and pending.deadline == deadline
        return key in self._held

    def _feed(
        self, key: _Key, pending: _Pending, message: manscdp.Message, now: float
    ) -> QueryDone | None:
        """Add one Response to a pending query; complete and remove it when done."""
        pending.messages.append(message)
        result: str | None = getattr(message, "result", None)
        if result is not None:
            pending.result = result
        if not pending.multipart:
            return self._finish(key, pending, now)
        if pending.item_key is None:
            # ConfigDownload: parts, not items; each Response is one part.
            if len(pending.messages) >= pending.expected_parts:
                return self._finish(key, pending, now)
            return None
        sum_num: int | None = getattr(message, "sum_num", None)
        if sum_num is not None and sum_num >= 0:
            pending.sum_num = sum_num
        items = pending.items
        item_key = pending.item_key
        limit = self.config.max_items
        for item in getattr(message, "items", ()):
            ident = item_key(item)
            if ident is None:
                pending.dropped += 1  # no identity (a catalog item without DeviceID)
            elif ident not in items:
                if len(items) >= limit:
                    pending.dropped += 1
                else:
                    items[ident] = item
        if result is not None and result.upper() == "ERROR":
            # The device refused the query: a complete (failed) answer, not a partial one.
            return self._finish(key, pending, now)
        target = pending.sum_num
        if target is None:
            # PresetQuery may omit SumNum: then a Response is the whole answer.
            return self._finish(key, pending, now)
        if len(items) >= target:
            return self._finish(key, pending, now)
        if len(items) >= limit:
            reason = f"truncated: kept {limit} of {target} items"
            del self._pending[key]
            return self._done(pending, now, partial=True, reason=reason)
        return None

    def _finish(self, key: _Key, pending: _Pending, now: float) -> QueryDone:
        del self._pending[key]
        return self._done(pending, now, partial=False, reason=self._progress(pending))

    @staticmethod
    def _progress(pending: _Pending) -> str:
        if not pending.multipart:
            return "answered" if pending.messages else "no response"
        if pending.item_key is None:
            return f"{len(pending.messages)} of {pending.expected_parts} parts"
        total = "?" if pending.sum_num is None else str(pending.sum_num)
        text = f"{len(pending.items)} of {total} items"
        if pending.dropped:
            text += f", {pending.dropped} dropped"
        return text

    @staticmethod
    def _done(pending: _Pending, now: float, *, partial: bool, reason: str) -> QueryDone:
        return QueryDone(
            device_id=pending.device_id,
            cmd_type=pending.cmd_type,
            sn=pending.sn,
            messages=tuple(pending.messages),
            items=tuple(pending.items.values()),
            sum_num=pending.sum_num,
            partial=partial,
            reason=reason,
            result=pending.result,
            started=pending.started,
            finished=now,
        )
