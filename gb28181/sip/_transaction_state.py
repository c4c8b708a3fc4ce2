"""States, inputs and the one transition table of SIP transactions (RFC 3261 §17).

All transition logic lives here, as in h11 ``_state.py``: :data:`TRANSITIONS`
maps ``(kind, state, input)`` to the next state, and :func:`set_state` is
the only code that changes a transaction's state. A missing entry means the
input is not allowed in that state; the caller decides whether that is a
retransmission to absorb (network input) or a misuse to report (TU call).
What to *send* on each move is decided in :mod:`._transaction`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._message import SipRequest, SipResponse
    from ._timerqueue import TimerEntry
    from ._transaction_events import TransactionKey

__all__ = [
    "NIST_ADDR",
    "NIST_CONN_ID",
    "NIST_DEADLINE",
    "NIST_KEY",
    "NIST_MOVES",
    "NIST_RELIABLE",
    "NIST_REQUEST",
    "NIST_RESPONSE",
    "NIST_STATE",
    "TRANSITIONS",
    "NonInviteServer",
    "Transaction",
    "TransactionConfig",
    "TransactionInput",
    "TransactionKind",
    "TransactionState",
    "TransactionStats",
    "set_state",
]


@dataclass(frozen=True, slots=True)
class TransactionConfig:
    """Timer values (RFC 3261 §17 and table 4) and limits; times in seconds."""

    #: RTT estimate; the base of every retransmission interval.
    t1: float = 0.5
    #: Cap on the retransmission interval of non-INVITE requests and of responses.
    t2: float = 4.0
    #: How long a message may linger in the network (timers I and K).
    t4: float = 5.0
    #: Timer D: wait for response retransmissions after a non-2xx (unreliable only).
    timer_d: float = 32.0
    #: Guard on INVITE transactions without a final response (RFC 3261 timer C).
    timer_c: float = 180.0
    #: Delay before the layer sends 100 Trying to an INVITE; 0 = at once, None = never.
    trying_delay: float | None = 0.2
    #: Guard on non-INVITE requests the TU never answers; None = 64*T1.
    answer_timeout: float | None = None
    #: Live transactions allowed at once; beyond that requests are dropped. An answered UDP
    #: REGISTER lives 32 s (timer J) holding ~1 KB, so 200,000 bound a sustained
    #: 6,250 authorised REGISTERs/s at ~200 MB.
    max_transactions: int = 200_000
    #: Emit :class:`TransactionTerminated` for every transaction that ends.
    report_terminated: bool = True
    #: How late the two lower-bound timers of non-INVITE server transactions (timer J and
    #: the answer guard) may fire, so that one wake-up ends every transaction due within it
    #: instead of one wake-up per message; 0 = exactly on time (the platform uses 1 s).
    server_timer_slack: float = 0.0

    @property
    def timer_b(self) -> float:
        """INVITE client timeout, 64*T1 (also timers F, H, J and L)."""
        return 64 * self.t1


class TransactionKind(IntEnum):
    """The four state machines of RFC 3261 §17."""

    INVITE_CLIENT = 1
    NON_INVITE_CLIENT = 2
    INVITE_SERVER = 3
    NON_INVITE_SERVER = 4


class TransactionState(IntEnum):
    """States of RFC 3261 figures 5-8, plus Accepted from RFC 6026.

    ``IntEnum`` because the members are hashed on every message (the
    transition lookup) and ``Enum.__hash__`` is a Python-level call.
    """

    CALLING = 1
    TRYING = 2
    PROCEEDING = 3
    COMPLETED = 4
    ACCEPTED = 5
    CONFIRMED = 6
    TERMINATED = 7


class TransactionInput(IntEnum):
    """What can happen to a transaction: a message, a TU call, or a timer firing."""

    RECV_1XX = 1
    RECV_2XX = 2
    RECV_FINAL = 3  # 300-699
    RECV_REQUEST = 4  # a retransmission of the request
    RECV_ACK = 5
    SEND_1XX = 6
    SEND_2XX = 7
    SEND_FINAL = 8
    TIMER_A = 10
    TIMER_B = 11
    TIMER_C = 12
    TIMER_D = 13
    TIMER_E = 14
    TIMER_F = 15
    TIMER_G = 16
    TIMER_H = 17
    TIMER_I = 18
    TIMER_J = 19
    TIMER_K = 20
    TIMER_L = 21
    TIMER_TRYING = 22  # send 100 Trying for an INVITE the TU has not answered
    ABORT = 23  # transport error, or a CANCEL that never left


_K = TransactionKind
_S = TransactionState
_I = TransactionInput

#: Every legal move: ``(kind, state, input) -> next state``.
TRANSITIONS: dict[tuple[TransactionKind, TransactionState, TransactionInput], TransactionState] = {
    # INVITE client, §17.1.1 (figure 5)
    (_K.INVITE_CLIENT, _S.CALLING, _I.TIMER_A): _S.CALLING,
    (_K.INVITE_CLIENT, _S.CALLING, _I.TIMER_B): _S.TERMINATED,
    (_K.INVITE_CLIENT, _S.CALLING, _I.RECV_1XX): _S.PROCEEDING,
    (_K.INVITE_CLIENT, _S.CALLING, _I.RECV_2XX): _S.TERMINATED,
    (_K.INVITE_CLIENT, _S.CALLING, _I.RECV_FINAL): _S.COMPLETED,
    (_K.INVITE_CLIENT, _S.PROCEEDING, _I.RECV_1XX): _S.PROCEEDING,
    (_K.INVITE_CLIENT, _S.PROCEEDING, _I.RECV_2XX): _S.TERMINATED,
    (_K.INVITE_CLIENT, _S.PROCEEDING, _I.RECV_FINAL): _S.COMPLETED,
    (_K.INVITE_CLIENT, _S.PROCEEDING, _I.TIMER_C): _S.TERMINATED,
    (_K.INVITE_CLIENT, _S.COMPLETED, _I.RECV_FINAL): _S.COMPLETED,
    (_K.INVITE_CLIENT, _S.COMPLETED, _I.TIMER_D): _S.TERMINATED,
    # non-INVITE client, §17.1.2 (figure 6)
    (_K.NON_INVITE_CLIENT, _S.TRYING, _I.TIMER_E): _S.TRYING,
    (_K.NON_INVITE_CLIENT, _S.TRYING, _I.TIMER_F): _S.TERMINATED,
    (_K.NON_INVITE_CLIENT, _S.TRYING, _I.RECV_1XX): _S.PROCEEDING,
    (_K.NON_INVITE_CLIENT, _S.TRYING, _I.RECV_2XX): _S.COMPLETED,
    (_K.NON_INVITE_CLIENT, _S.TRYING, _I.RECV_FINAL): _S.COMPLETED,
    (_K.NON_INVITE_CLIENT, _S.PROCEEDING, _I.TIMER_E): _S.PROCEEDING,
    (_K.NON_INVITE_CLIENT, _S.PROCEEDING, _I.TIMER_F): _S.TERMINATED,
    (_K.NON_INVITE_CLIENT, _S.PROCEEDING, _I.RECV_1XX): _S.PROCEEDING,
    (_K.NON_INVITE_CLIENT, _S.PROCEEDING, _I.RECV_2XX): _S.COMPLETED,
    (_K.NON_INVITE_CLIENT, _S.PROCEEDING, _I.RECV_FINAL): _S.COMPLETED,
    (_K.NON_INVITE_CLIENT, _S.COMPLETED, _I.TIMER_K): _S.TERMINATED,
    # INVITE server, §17.2.1 (figure 7) with Accepted from RFC 6026 §7.1
    (_K.INVITE_SERVER, _S.PROCEEDING, _I.RECV_REQUEST): _S.PROCEEDING,
    (_K.INVITE_SERVER, _S.PROCEEDING, _I.TIMER_TRYING): _S.PROCEEDING,
    (_K.INVITE_SERVER, _S.PROCEEDING, _I.SEND_1XX): _S.PROCEEDING,
    (_K.INVITE_SERVER, _S.PROCEEDING, _I.SEND_2XX): _S.ACCEPTED,
    (_K.INVITE_SERVER, _S.PROCEEDING, _I.SEND_FINAL): _S.COMPLETED,
    (_K.INVITE_SERVER, _S.PROCEEDING, _I.TIMER_C): _S.TERMINATED,
    (_K.INVITE_SERVER, _S.ACCEPTED, _I.RECV_REQUEST): _S.ACCEPTED,
    (_K.INVITE_SERVER, _S.ACCEPTED, _I.RECV_ACK): _S.ACCEPTED,
    (_K.INVITE_SERVER, _S.ACCEPTED, _I.SEND_2XX): _S.ACCEPTED,
    (_K.INVITE_SERVER, _S.ACCEPTED, _I.TIMER_G): _S.ACCEPTED,
    (_K.INVITE_SERVER, _S.ACCEPTED, _I.TIMER_L): _S.TERMINATED,
    (_K.INVITE_SERVER, _S.COMPLETED, _I.RECV_REQUEST): _S.COMPLETED,
    (_K.INVITE_SERVER, _S.COMPLETED, _I.TIMER_G): _S.COMPLETED,
    (_K.INVITE_SERVER, _S.COMPLETED, _I.RECV_ACK): _S.CONFIRMED,
    (_K.INVITE_SERVER, _S.COMPLETED, _I.TIMER_H): _S.TERMINATED,
    (_K.INVITE_SERVER, _S.CONFIRMED, _I.TIMER_I): _S.TERMINATED,
    # non-INVITE server, §17.2.2 (figure 8)
    (_K.NON_INVITE_SERVER, _S.TRYING, _I.RECV_REQUEST): _S.TRYING,
    (_K.NON_INVITE_SERVER, _S.TRYING, _I.SEND_1XX): _S.PROCEEDING,
    (_K.NON_INVITE_SERVER, _S.TRYING, _I.SEND_2XX): _S.COMPLETED,
    (_K.NON_INVITE_SERVER, _S.TRYING, _I.SEND_FINAL): _S.COMPLETED,
    (_K.NON_INVITE_SERVER, _S.TRYING, _I.TIMER_C): _S.TERMINATED,
    (_K.NON_INVITE_SERVER, _S.PROCEEDING, _I.RECV_REQUEST): _S.PROCEEDING,
    (_K.NON_INVITE_SERVER, _S.PROCEEDING, _I.SEND_1XX): _S.PROCEEDING,
    (_K.NON_INVITE_SERVER, _S.PROCEEDING, _I.SEND_2XX): _S.COMPLETED,
    (_K.NON_INVITE_SERVER, _S.PROCEEDING, _I.SEND_FINAL): _S.COMPLETED,
    (_K.NON_INVITE_SERVER, _S.PROCEEDING, _I.TIMER_C): _S.TERMINATED,
    (_K.NON_INVITE_SERVER, _S.COMPLETED, _I.RECV_REQUEST): _S.COMPLETED,
    (_K.NON_INVITE_SERVER, _S.COMPLETED, _I.TIMER_J): _S.TERMINATED,
}
# A transport error (or an abandoned CANCEL) ends any live transaction.
TRANSITIONS.update({(kind, state, _I.ABORT): _S.TERMINATED for kind, state, _ in list(TRANSITIONS)})


@dataclass(slots=True)
class TransactionStats:
    """Plain counters for metrics; the layer only ever increments them."""

    client_created: int = 0
    server_created: int = 0
    retransmissions: int = 0  # requests or responses resent on a timer
    responses_resent: int = 0  # our response resent because the request came again
    requests_absorbed: int = 0
    responses_absorbed: int = 0
    stray_responses: int = 0
    timeouts: int = 0
    dropped_over_limit: int = 0


class Transaction:
    """One transaction's mutable record (internal; the TU only sees its key)."""

    __slots__ = (
        "accepted_id",
        "ack",
        "acked",
        "addr",
        "conn_id",
        "end",
        "interval",
        "key",
        "kind",
        "last_response",
        "pending_cancel",
        "reliable",
        "request",
        "retx",
        "state",
    )

    def __init__(
        self,
        key: TransactionKey,
        kind: TransactionKind,
        state: TransactionState,
        request: SipRequest,
        addr: object,
        conn_id: object | None,
        reliable: bool,
    ) -> None:
        self.key = key
        self.kind = kind
        self.state = state
        self.request = request
        self.addr = addr
        self.conn_id = conn_id
        self.reliable = reliable
        self.last_response: SipResponse | None = None
        self.ack: SipRequest | None = None
        self.interval = 0.0
        self.retx: TimerEntry | None = None  # A, E, G, or the 100 Trying delay
        self.end: TimerEntry | None = None  # B, C, D, F, H, I, J, K, L
        self.pending_cancel: Transaction | None = None
        self.accepted_id: tuple[str, str, int] | None = None
        self.acked = False


#: A non-INVITE server transaction (§17.2.2, figure 8) is a plain list indexed
#: by the ``NIST_*`` constants below, not an object: nearly every message a
#: registrar sees (REGISTER, keepalive MESSAGE) makes one, and a list costs a
#: fifth of a slotted instance to build. It carries only what figure 8 needs.
#: ``NIST_DEADLINE`` is the answer guard's deadline until the final response,
#: then timer J's; the layer's timer FIFOs hold the records themselves and
#: read ``NIST_STATE`` to tell which deadline (if any) is live.
NonInviteServer = list[Any]
NIST_KEY = 0  # TransactionKey
NIST_STATE = 1  # TransactionState: TRYING, PROCEEDING, COMPLETED or TERMINATED
NIST_REQUEST = 2  # SipRequest; None once a final response is sent (nothing reads it then)
NIST_ADDR = 3  # object
NIST_CONN_ID = 4  # object | None
NIST_RELIABLE = 5  # bool
NIST_RESPONSE = 6  # SipResponse | bytes | None: the last response sent (bytes once final, UDP)
NIST_DEADLINE = 7  # float

#: The non-INVITE server rows of :data:`TRANSITIONS`, keyed ``state * 32 + input``
#: (one int hash instead of a 3-tuple per lookup on the hot path).
NIST_MOVES: dict[int, TransactionState] = {
    state * 32 + inp: new
    for (kind, state, inp), new in TRANSITIONS.items()
    if kind is TransactionKind.NON_INVITE_SERVER
}


def set_state(txn: Transaction, inp: TransactionInput) -> TransactionState | None:
    """The one place a transaction changes state; ``None`` if ``inp`` is not allowed."""
    new = TRANSITIONS.get((txn.kind, txn.state, inp))
    if new is not None:
        txn.state = new
    return new
