"""SIP transactions (RFC 3261 §17), sans-IO, in the aioquic style.

Three drivers move the layer (style.md §1): :meth:`TransactionLayer.receive_message`
(an already parsed message and where it came from), the ``send_*`` API calls
of the transaction user (TU), and :meth:`TransactionLayer.handle_timer`. Every
one takes ``now`` from the caller's clock. Outputs are pulled:
:meth:`~TransactionLayer.messages_to_send` (``Outgoing`` tuples for the glue
to serialise), :meth:`~TransactionLayer.next_event` and one deadline from
:meth:`~TransactionLayer.get_timer`.

All state changes go through ``set_state``, which looks the move up in
``TRANSITIONS`` (``_transaction_state.py``). A missing entry means
"not allowed here": input from the network is then absorbed (a late
retransmission) and a TU call raises :class:`SipLocalError`. The handlers
only decide what to send and which timers to arm.

Choices beyond the letter of RFC 3261, each for a reason:

* **100 Trying** for INVITE is sent by the layer ``trying_delay`` (200 ms)
  after the INVITE unless the TU answered first (§17.2.1 allows exactly
  this); ``0`` sends it at once, ``None`` never.
* **Accepted state** (RFC 6026 §7.1): after a 2xx the INVITE server
  transaction lives on for timer L = 64·T1, answers retransmitted INVITEs
  with the 2xx instead of handing them to the TU as new requests, and on
  unreliable transports retransmits the 2xx itself (T1 doubling to T2, the
  UAS core duty of §13.3.1.4) until an ACK comes. An ACK to the 2xx is
  reported as :class:`AckReceived`; none within timer L gives
  :class:`TransactionTimedOut`, and the TU should send BYE.
* The INVITE *client* transaction ends on the first 2xx (§17.1.1.2); later
  2xx copies come out as :class:`StrayResponseReceived` for the dialog layer
  to ACK again.
* **Guard timers** keep the layer bounded: an INVITE client in Proceeding
  (RFC 3261 timer C, 180 s), an INVITE server the TU never answers (same
  value), and a non-INVITE server the TU never answers (``answer_timeout``,
  64·T1) end with :class:`TransactionTimedOut`.
* Peers whose branch lacks ``z9hG4bK`` (WVP, many cameras) are matched by the
  RFC 2543 fields of §17.2.3: Request-URI, From tag, Call-ID, CSeq number
  and top Via. The To tag is left out, so an ACK for a non-2xx (which
  carries the tag our response added) finds its INVITE.
* Beyond ``max_transactions`` live transactions new requests are dropped
  (and counted; a UDP peer retransmits) and ``send_request`` raises.

Timers live in a :class:`TimerQueue` (one FIFO per duration, lazy
cancellation), so arming and cancelling cost O(1) and nothing is ever
re-heapified per message. On reliable transports no retransmission timer is
armed and timers D, I, J and K are zero: the transaction ends at once.

Non-INVITE server transactions (REGISTER, keepalive MESSAGE: nearly all the
traffic of a GB/T 28181 platform) take a cheaper road. They are
``NonInviteServer`` list records in their own table, their key is read
straight from the raw top Via text, and their two timers (the answer guard
and timer J) are the records themselves, appended to two FIFOs of fixed
duration and never cancelled: a record whose state has moved on is dropped
when it reaches the head. With the caller's clock monotonic (it is, in the
glue) each FIFO is in deadline order; were it ever to go backwards, a FIFO
head would hold back earlier deadlines behind it, so these timers may fire
late but never early (both are lower bounds). Being lower bounds, they are
also reported ``server_timer_slack`` late by :meth:`TransactionLayer.get_timer`:
at a steady 800 keepalives/s, timer J would otherwise wake the event loop
800 times a second (once per message, 32 s after it), each wake-up costing
more than the keepalive itself; with 1 s of slack it wakes once a second.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from ._errors import SipError, SipLocalError, SipParseError, SipRemoteError
from ._ids import new_branch, new_tag
from ._message import SipMessage, SipRequest, SipResponse, make_response, parse_message
from ._timerqueue import TimerQueue
from ._transaction_events import (
    AckReceived,
    CancelReceived,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    StrayResponseReceived,
    TransactionEvent,
    TransactionKey,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)
from ._transaction_match import (
    dialog_cseq_id,
    make_ack,
    make_cancel,
    server_key,
    to_tag,
    via_branch_sent_by,
)
from ._transaction_state import (
    NIST_ADDR,
    NIST_CONN_ID,
    NIST_DEADLINE,
    NIST_KEY,
    NIST_MOVES,
    NIST_RELIABLE,
    NIST_REQUEST,
    NIST_RESPONSE,
    NIST_STATE,
    NonInviteServer,
    Transaction,
    TransactionConfig,
    TransactionInput,
    TransactionKind,
    TransactionState,
    TransactionStats,
    set_state,
)

__all__ = ["TransactionLayer"]

_K = TransactionKind
_S = TransactionState
_I = TransactionInput
_cancel = TimerQueue.cancel
_new = tuple.__new__  # builds NamedTuple events without their Python-level __new__
_NIST = _K.NON_INVITE_SERVER
_UNANSWERED = (_S.TRYING, _S.PROCEEDING)
_DONE = (_S.COMPLETED,)
_deadline = itemgetter(0)


class TransactionLayer:
    """All client and server transactions of one SIP endpoint.

    :param config: timer values and limits; defaults follow RFC 3261.
    """

    def __init__(self, config: TransactionConfig | None = None) -> None:
        self.config = config or TransactionConfig()
        self.stats = TransactionStats()
        cfg = self.config
        self._t1 = cfg.t1
        self._t2 = cfg.t2
        self._t64 = 64 * cfg.t1
        self._answer_timeout = cfg.answer_timeout if cfg.answer_timeout is not None else self._t64
        self._guard_time = self._answer_timeout
        self._slack = max(0.0, cfg.server_timer_slack)
        self._max = cfg.max_transactions
        self._report_terminated = cfg.report_terminated
        self._txns: dict[TransactionKey, Transaction] = {}
        # Non-INVITE server transactions and their two timer FIFOs (module docstring).
        self._nist: dict[TransactionKey, NonInviteServer] = {}
        self._guard: deque[NonInviteServer] = deque()
        self._timer_j: deque[NonInviteServer] = deque()
        self._nist_fifos = (
            (self._guard, _UNANSWERED, _I.TIMER_C),
            (self._timer_j, _DONE, _I.TIMER_J),
        )
        # INVITE server transactions in Accepted, by (Call-ID, From tag, CSeq number),
        # so that the ACK to our 2xx (a new branch) stops the 2xx retransmissions.
        self._accepted: dict[tuple[str, str, int], Transaction] = {}
        self._timers = TimerQueue()
        self._events: deque[TransactionEvent] = deque()
        self._out: list[Outgoing] = []
        self._timer_handlers: dict[int, Callable[[Transaction, TransactionInput, float], None]] = {
            _I.TIMER_A: self._on_timer_a,
            _I.TIMER_E: self._on_timer_e,
            _I.TIMER_G: self._on_timer_g,
            _I.TIMER_TRYING: self._on_timer_trying,
            _I.TIMER_B: self._on_timeout,
            _I.TIMER_C: self._on_timeout,
            _I.TIMER_F: self._on_timeout,
            _I.TIMER_H: self._on_timeout,
            _I.TIMER_L: self._on_timer_l,
            _I.TIMER_D: self._on_timer_end,
            _I.TIMER_I: self._on_timer_end,
            _I.TIMER_J: self._on_timer_end,
            _I.TIMER_K: self._on_timer_end,
        }

    # ------------------------------------------------------------------ inputs
    def receive_message(
        self,
        message: SipMessage,
        addr: object,
        now: float,
        *,
        reliable: bool,
        conn_id: object | None = None,
    ) -> None:
        """Feed one parsed message received from the network.

        :param message: a :class:`SipRequest` or :class:`SipResponse`.
        :param addr: the source address (carried to responses, opaque here).
        :param now: the current time on the caller's clock, in seconds.
        :param reliable: whether it came over a reliable transport (TCP/TLS).
        :param conn_id: the connection it came on, for responses over streams.
        :raises SipRemoteError: the message lacks what matching needs (a usable
            Via, CSeq, From); nothing changed. Answer ``status_hint`` to a request.
        :raises SipLocalError: ``message`` is neither a request nor a response.
        """
        if isinstance(message, SipRequest):
            key = self.receive_request(message, addr, now, reliable=reliable, conn_id=conn_id)
            if key is not None:
                self._events.append(_new(RequestReceived, (message, key, addr, conn_id)))
        elif isinstance(message, SipResponse):
            self._receive_response(message, addr, now, conn_id)
        else:
            raise SipLocalError(f"not a SIP request or response: {message!r}")

    def receive_request(
        self,
        message: SipRequest,
        addr: object,
        now: float,
        *,
        reliable: bool,
        conn_id: object | None = None,
    ) -> TransactionKey | None:
        """Like :meth:`receive_message` for a request, minus the :class:`RequestReceived` event.

        The direct road of the hot path (REGISTER, keepalive MESSAGE): a new
        non-INVITE request opens its server transaction and its key is returned,
        and the caller answers it with :meth:`send_response` right away, as the TU
        would on the event. ``None`` means there is nothing for the TU: a
        retransmission (absorbed, or answered again from the transaction, §17.2.2),
        a request dropped over ``max_transactions``, or an INVITE, ACK or CANCEL,
        which take their usual road (their events are queued).

        :raises SipRemoteError: as :meth:`receive_message`.
        """
        method = message.method
        if method == "INVITE" or method == "ACK" or method == "CANCEL":
            self._receive_request(message, addr, now, reliable, conn_id)
            return None
        key = self.request_key(message)
        nist = self._nist.get(key)
        if nist is not None:
            self._nist_again(nist)
            return None
        if len(self._txns) + len(self._nist) >= self._max:
            self.stats.dropped_over_limit += 1
            return None
        self.stats.server_created += 1
        # A new transaction in Trying (§17.2.2), guarded until the TU answers.
        nist = [key, _S.TRYING, message, addr, conn_id, reliable, None, now + self._guard_time]
        self._nist[key] = nist
        self._guard.append(nist)
        return key

    @staticmethod
    def request_key(message: SipRequest) -> TransactionKey:
        """The server-transaction key of a non-INVITE request, as :meth:`receive_request` finds it.

        Also what a caller answering statelessly (RFC 3261 §8.2.7) runs first, so that a
        request the layer would refuse (no Via, a bad one) is refused the same way.

        :raises SipRemoteError: as :meth:`receive_message`.
        """
        # The hot path: REGISTER, MESSAGE... The key is read from the raw
        # top Via as via_branch_sent_by() would (same result, same text);
        # anything unusual (a list, quotes, no cookie) takes server_key().
        raw = message.headers.get("Via")
        if raw is not None and "," not in raw and '"' not in raw:
            start = raw.find(";branch=")
            if start > 0 and raw.startswith("z9hG4bK", start + 8):
                fields = raw[: raw.find(";")].split()
                end = raw.find(";", start + 8)
                branch = (raw[start + 8 :] if end < 0 else raw[start + 8 : end]).strip()
                if len(fields) > 1 and len(branch) > 7:
                    return _new(TransactionKey, (branch, fields[-1], message.method, True))
        return server_key(message)

    def send_request(
        self,
        request: SipRequest,
        addr: object,
        now: float,
        *,
        reliable: bool,
        conn_id: object | None = None,
    ) -> TransactionKey:
        """Start a client transaction for ``request`` and queue it for sending.

        A top Via without a branch gets a fresh ``z9hG4bK`` one (the request is
        edited in place). Retransmissions follow timers A/E on unreliable
        transports only.

        :returns: the key under which responses and timeouts are reported.
        :raises SipLocalError: ACK (use :meth:`send_stateless`), no Via, a
            CSeq that does not match the method, a branch already in use, or
            the transaction limit reached.
        """
        if not isinstance(request, SipRequest):
            raise SipLocalError("send_request needs a SipRequest")
        method = request.method
        if method == "ACK":
            raise SipLocalError("ACK is not a transaction; send it with send_stateless()")
        try:
            vias = request.headers.get_all("Via")
            branch = via_branch_sent_by(vias[0])[0] if vias else ""
            cseq_method = request.cseq[1]
        except SipError as exc:
            raise SipLocalError(f"cannot send {method}: {exc}") from exc
        if not vias:
            raise SipLocalError(f"cannot send {method}: no Via header")
        if cseq_method != method:
            raise SipLocalError(f"CSeq method {cseq_method!r} does not match {method!r}")
        if not branch:
            branch = new_branch()
            vias[0] = f"{vias[0]};branch={branch}"
            request.headers.set_all("Via", vias)
            request.invalidate()
        key = TransactionKey(branch, "", method, False)
        if key in self._txns:
            raise SipLocalError(f"branch {branch!r} is already in use for {method}")
        if len(self._txns) + len(self._nist) >= self._max:
            self.stats.dropped_over_limit += 1
            raise SipLocalError("transaction limit reached")
        invite = method == "INVITE"
        txn = Transaction(
            key,
            _K.INVITE_CLIENT if invite else _K.NON_INVITE_CLIENT,
            _S.CALLING if invite else _S.TRYING,
            request,
            addr,
            conn_id,
            reliable,
        )
        self._txns[key] = txn
        self.stats.client_created += 1
        self._start_client(txn, now)
        return key

    def send_cancel(self, invite_key: TransactionKey, now: float) -> TransactionKey:
        """CANCEL a pending INVITE we sent (RFC 3261 §9.1).

        The CANCEL is its own non-INVITE client transaction. If no provisional
        response has arrived yet it is held back until one does (§9.1 forbids
        sending it earlier) and dropped if the INVITE ends first.

        :returns: the CANCEL transaction's key.
        :raises SipLocalError: no such INVITE client transaction, it already
            has a final response, or it was already cancelled.
        """
        inv = self._txns.get(invite_key)
        if inv is None or inv.kind is not _K.INVITE_CLIENT:
            raise SipLocalError(f"no INVITE client transaction {invite_key!r}")
        if inv.state not in (_S.CALLING, _S.PROCEEDING):
            raise SipLocalError("the INVITE already has a final response")
        key = invite_key._replace(method="CANCEL")
        if key in self._txns:
            raise SipLocalError("the INVITE was already cancelled")
        if len(self._txns) + len(self._nist) >= self._max:
            self.stats.dropped_over_limit += 1
            raise SipLocalError("transaction limit reached")
        txn = Transaction(
            key,
            _K.NON_INVITE_CLIENT,
            _S.TRYING,
            make_cancel(inv.request),
            inv.addr,
            inv.conn_id,
            inv.reliable,
        )
        self._txns[key] = txn
        self.stats.client_created += 1
        if inv.state is _S.PROCEEDING:
            self._start_client(txn, now)
        else:
            inv.pending_cancel = txn
        return key

    def send_response(
        self, key_or_request: TransactionKey | SipRequest, response: SipResponse, now: float
    ) -> None:
        """Answer a server transaction; the response is queued for sending.

        :param key_or_request: the key from :class:`RequestReceived`, or the request.
        :param response: a 1xx-6xx response (build it with ``make_response``).
        :raises SipLocalError: no such server transaction, or a response not
            allowed in its state (anything after a final response, except a
            repeated 2xx to an INVITE).
        """
        if isinstance(key_or_request, SipRequest):
            try:
                key = server_key(key_or_request)
            except SipError as exc:
                raise SipLocalError(f"cannot match request: {exc}") from exc
        else:
            key = key_or_request
        if not isinstance(response, SipResponse) or not 100 <= response.status <= 699:
            raise SipLocalError(f"not a valid response: {response!r}")
        nist = self._nist.get(key)
        if nist is not None:
            self._respond_nist(nist, response, now)
            return
        txn = self._txns.get(key)
        if txn is None or not key.server:
            raise SipLocalError(f"no server transaction {key!r}")
        self._respond(txn, response, now)

    def send_stateless(
        self,
        message: SipRequest | SipResponse,
        addr: object,
        *,
        reliable: bool,
        conn_id: object | None = None,
    ) -> None:
        """Queue a message outside any transaction: an ACK to a 2xx, or a
        stateless response (a 400 to an unparsable request, a 503 under load)."""
        self._out.append(_new(Outgoing, (message, addr, conn_id, reliable, None)))

    def transport_error(self, key: TransactionKey, now: float) -> None:
        """Report that a message of ``key`` could not be sent (RFC 3261 §17.1.4, §17.2.4).

        The transaction ends with :class:`TransportFailed`. Unknown keys are
        ignored: the transaction may have ended since the message was queued.
        """
        nist = self._nist.get(key)
        if nist is not None:
            if self._nist_move(nist, _I.ABORT):
                self._events.append(TransportFailed(key, nist[NIST_REQUEST]))
                self._finish_nist(nist)
            return
        txn = self._txns.get(key)
        if txn is None or set_state(txn, _I.ABORT) is None:
            return
        self._events.append(TransportFailed(key, txn.request))
        self._finish(txn)

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now`` (call it at :meth:`get_timer`, or later)."""
        due: list[tuple[float, Any, TransactionInput | None]] = []
        for fifo, live, timer in self._nist_fifos:
            while fifo:
                nist = fifo[0]
                if nist[NIST_STATE] in live:
                    if nist[NIST_DEADLINE] > now:
                        break
                    due.append((nist[NIST_DEADLINE], nist, timer))
                fifo.popleft()  # due, or dead: its state has moved on
        if not due:
            for entry in self._timers.pop_due(now):
                self._fire(entry, now)
            return
        due[:0] = [(e[0], e, None) for e in self._timers.pop_due(now)]
        due.sort(key=_deadline)  # stable: ties keep the TimerQueue's arming order
        for _, item, which in due:
            if which is None:
                self._fire(item, now)
            elif self._nist_move(item, which):
                if which is _I.TIMER_C:  # the TU never answered
                    self.stats.timeouts += 1
                    self._events.append(TransactionTimedOut(item[NIST_KEY], item[NIST_REQUEST]))
                self._finish_nist(item)

    def _fire(self, entry: list[Any], now: float) -> None:
        if entry[4]:
            entry[4] = False
            txn: Transaction = entry[2]
            self._timer_handlers[entry[3]](txn, entry[3], now)

    # ----------------------------------------------------------------- outputs
    def get_timer(self) -> float | None:
        """The next deadline at which :meth:`handle_timer` must be called, or ``None``."""
        best = self._timers.next_deadline()
        guard = self._guard
        while guard and guard[0][NIST_STATE] not in _UNANSWERED:
            guard.popleft()
        slack = self._slack
        if guard and (best is None or guard[0][NIST_DEADLINE] + slack < best):
            best = guard[0][NIST_DEADLINE] + slack
        timer_j = self._timer_j
        while timer_j and timer_j[0][NIST_STATE] is not _S.COMPLETED:
            timer_j.popleft()
        if timer_j and (best is None or timer_j[0][NIST_DEADLINE] + slack < best):
            best = timer_j[0][NIST_DEADLINE] + slack
        return best

    def messages_to_send(self) -> list[Outgoing]:
        """Take the queued messages, oldest first."""
        out = self._out
        self._out = []
        return out

    def next_event(self) -> TransactionEvent | None:
        """Pop the oldest event, or ``None`` when there is none."""
        events = self._events
        return events.popleft() if events else None

    def state_of(self, key: TransactionKey) -> TransactionState | None:
        """The state of a live transaction, ``None`` once it has ended."""
        nist = self._nist.get(key)
        if nist is not None:
            state: TransactionState = nist[NIST_STATE]
            return state
        txn = self._txns.get(key)
        return txn.state if txn is not None else None

    def __len__(self) -> int:
        """Live transactions."""
        return len(self._txns) + len(self._nist)

    # --------------------------------------------------------- server side
    def _receive_request(
        self, req: SipRequest, addr: object, now: float, reliable: bool, conn_id: object | None
    ) -> None:
        """INVITE, ACK and CANCEL (the other methods take the path in receive_message)."""
        key = server_key(req)
        method = req.method
        if method == "CANCEL":
            nist = self._nist.get(key)
            if nist is not None:
                self._nist_again(nist)
            elif self._room():
                self.stats.server_created += 1
                self._receive_cancel(req, key, addr, now, reliable, conn_id)
            return
        txn = self._txns.get(key)
        if method == "ACK":
            if txn is not None:
                self._server_ack(txn, req, addr, conn_id, now)
            else:
                self._ack_outside_transaction(req, addr, conn_id)
            return
        if txn is not None:
            self._request_again(txn)
            return
        if not self._room():
            return
        self.stats.server_created += 1
        txn = Transaction(key, _K.INVITE_SERVER, _S.PROCEEDING, req, addr, conn_id, reliable)
        self._txns[key] = txn
        self._events.append(_new(RequestReceived, (req, key, addr, conn_id)))
        txn.end = self._timers.arm(now, self.config.timer_c, txn, _I.TIMER_C)
        delay = self.config.trying_delay
        if delay is not None:
            if delay <= 0:
                self._on_timer_trying(txn, _I.TIMER_TRYING, now)
            else:
                txn.retx = self._timers.arm(now, delay, txn, _I.TIMER_TRYING)

    def _room(self) -> bool:
        """Whether one more transaction fits under ``max_transactions`` (else count a drop)."""
        if len(self._txns) + len(self._nist) < self._max:
            return True
        self.stats.dropped_over_limit += 1
        return False

    def _nist_again(self, nist: NonInviteServer) -> None:
        """A retransmitted non-INVITE request: resend our last response, if any (§17.2.2)."""
        resp = nist[NIST_RESPONSE]
        if not self._nist_move(nist, _I.RECV_REQUEST) or resp is None:
            self.stats.requests_absorbed += 1
            return
        self.stats.responses_resent += 1
        if isinstance(resp, bytes):
            # Kept as sent (see _respond_nist); our own serialisation parses back to the
            # same message, and a retransmitted request is rare enough to pay for it.
            resp = parse_message(resp)
        self._out.append(
            _new(
                Outgoing, (resp, nist[NIST_ADDR], nist[NIST_CONN_ID], nist[NIST_RELIABLE], nist[0])
            )
        )

    @staticmethod
    def _nist_move(nist: NonInviteServer, inp: TransactionInput) -> bool:
        """``set_state`` for the list records: the same table, ``False`` if not allowed."""
        new = NIST_MOVES.get(nist[NIST_STATE] * 32 + inp)
        if new is None:
            return False
        nist[NIST_STATE] = new
        return True

    def _request_again(self, txn: Transaction) -> None:
        """A retransmitted request: resend our last response, if any (§17.2.1, §17.2.2)."""
        resp = txn.last_response
        if set_state(txn, _I.RECV_REQUEST) is None or resp is None:
            self.stats.requests_absorbed += 1
            return
        self.stats.responses_resent += 1
        self._out.append(_new(Outgoing, (resp, txn.addr, txn.conn_id, txn.reliable, txn.key)))

    def _server_ack(
        self, txn: Transaction, ack: SipRequest, addr: object, conn_id: object | None, now: float
    ) -> None:
        old = txn.state
        if set_state(txn, _I.RECV_ACK) is None:
            self.stats.requests_absorbed += 1
            return
        if old is _S.ACCEPTED:
            # An RFC 2543 peer (or a sloppy one) reusing the INVITE's branch for the 2xx ACK.
            self._ack_accepted(txn, ack, addr, conn_id)
            return
        # Completed -> Confirmed: the ACK for our non-2xx is absorbed (§17.2.1).
        self.stats.requests_absorbed += 1
        _cancel(txn.retx)
        _cancel(txn.end)
        if txn.reliable:
            set_state(txn, _I.TIMER_I)
            self._finish(txn)
        else:
            txn.end = self._timers.arm(now, self.config.t4, txn, _I.TIMER_I)

    def _ack_outside_transaction(
        self, ack: SipRequest, addr: object, conn_id: object | None
    ) -> None:
        if self._accepted:
            txn = self._accepted.get(dialog_cseq_id(ack))
            if txn is not None:
                self._ack_accepted(txn, ack, addr, conn_id)
                return
        self._events.append(AckReceived(ack, addr, conn_id))

    def _ack_accepted(
        self, txn: Transaction, ack: SipRequest, addr: object, conn_id: object | None
    ) -> None:
        txn.acked = True
        _cancel(txn.retx)
        txn.retx = None
        self._events.append(AckReceived(ack, addr, conn_id))

    def _receive_cancel(
        self,
        cancel: SipRequest,
        key: TransactionKey,
        addr: object,
        now: float,
        reliable: bool,
        conn_id: object | None,
    ) -> None:
        """Answer a CANCEL ourselves (RFC 3261 §9.2) and tell the TU if it matters."""
        txn = [key, _S.TRYING, cancel, addr, conn_id, reliable, None, now + self._guard_time]
        self._nist[key] = txn
        self._guard.append(txn)
        inv = self._txns.get(key._replace(method="INVITE"))
        if inv is None:
            resp = make_response(cancel, 481, to_tag=new_tag())
        else:
            resp = make_response(cancel, 200, to_tag=to_tag(inv.last_response) or new_tag())
            if inv.state is _S.PROCEEDING:
                self._events.append(CancelReceived(inv.key, cancel))
        self._respond_nist(txn, resp, now)

    def _respond_nist(self, nist: NonInviteServer, resp: SipResponse, now: float) -> None:
        """Trying/Proceeding -> Proceeding or Completed (§17.2.2), by the table."""
        status = resp.status
        final = status >= 200
        state = nist[NIST_STATE]
        new = NIST_MOVES.get(state * 32 + (_I.SEND_FINAL if final else _I.SEND_1XX))
        if new is None:
            raise SipLocalError(f"cannot send {status} in state {state.name} of {_NIST.name}")
        nist[NIST_STATE] = new
        nist[NIST_RESPONSE] = resp
        reliable = nist[NIST_RELIABLE]
        self._out.append(
            _new(Outgoing, (resp, nist[NIST_ADDR], nist[NIST_CONN_ID], reliable, nist[NIST_KEY]))
        )
        if final:
            # Only retransmissions of the response are left to do: let the request
            # go now rather than keep it (and its parsed headers) for timer J's 32 s.
            nist[NIST_REQUEST] = None
            if reliable:  # timer J is zero: the cheap path of a registrar on TCP
                nist[NIST_STATE] = _S.TERMINATED
                self._finish_nist(nist)
            else:
                # Timer J keeps the transaction 32 s for retransmissions alone: keep the
                # response's bytes (~0.5 KB) rather than its parsed headers (~1.5 KB more),
                # so that twice the transactions fit in the same memory (max_transactions).
                # The glue serialises the queued message once more (~1 µs): Outgoing carries
                # messages, not bytes, and this road is the authorised REGISTER's alone now
                # that the challenge and keepalives are answered without a transaction.
                nist[NIST_RESPONSE] = bytes(resp)
                nist[NIST_DEADLINE] = now + self._t64
                self._timer_j.append(nist)

    def _finish_nist(self, nist: NonInviteServer) -> None:
        """Forget a non-INVITE server transaction that has just moved to Terminated."""
        key = nist[NIST_KEY]
        if self._nist.get(key) is nist:
            del self._nist[key]
        if self._report_terminated:
            self._events.append(_new(TransactionTerminated, (key,)))

    def _respond(self, txn: Transaction, resp: SipResponse, now: float) -> None:
        status = resp.status
        inp = _I.SEND_1XX if status < 200 else _I.SEND_2XX if status < 300 else _I.SEND_FINAL
        old = txn.state
        if set_state(txn, inp) is None:
            raise SipLocalError(f"cannot send {status} in state {old.name} of {txn.kind.name}")
        txn.last_response = resp
        self._out.append(_new(Outgoing, (resp, txn.addr, txn.conn_id, txn.reliable, txn.key)))
        if old is _S.PROCEEDING:
            _cancel(txn.retx)  # the pending 100 Trying
            txn.retx = None
        if inp is _I.SEND_1XX or old is _S.ACCEPTED:
            return
        _cancel(txn.end)  # timer C
        timers = self._timers
        if inp is _I.SEND_2XX:
            txn.end = timers.arm(now, self._t64, txn, _I.TIMER_L)
            try:
                txn.accepted_id = dialog_cseq_id(txn.request)
            except SipParseError:  # a From we cannot parse: no ACK matching by dialog
                txn.accepted_id = None
            if txn.accepted_id is not None:
                self._accepted[txn.accepted_id] = txn
        else:
            txn.end = timers.arm(now, self._t64, txn, _I.TIMER_H)
        if not txn.reliable:
            txn.interval = self._t1
            txn.retx = timers.arm(now, self._t1, txn, _I.TIMER_G)

    # --------------------------------------------------------- client side
    def _start_client(self, txn: Transaction, now: float) -> None:
        self._out.append(
            _new(Outgoing, (txn.request, txn.addr, txn.conn_id, txn.reliable, txn.key))
        )
        invite = txn.kind is _K.INVITE_CLIENT
        txn.end = self._timers.arm(now, self._t64, txn, _I.TIMER_B if invite else _I.TIMER_F)
        if not txn.reliable:
            txn.interval = self._t1
            txn.retx = self._timers.arm(now, self._t1, txn, _I.TIMER_A if invite else _I.TIMER_E)

    def _receive_response(
        self, resp: SipResponse, addr: object, now: float, conn_id: object | None
    ) -> None:
        raw = resp.headers.get("Via")
        if raw is None:
            raise SipRemoteError("response without Via")
        key = TransactionKey(via_branch_sent_by(raw)[0], "", resp.cseq[1], False)
        txn = self._txns.get(key)
        if txn is None:
            self.stats.stray_responses += 1
            self._events.append(StrayResponseReceived(resp, addr, conn_id))
            return
        status = resp.status
        inp = _I.RECV_1XX if status < 200 else _I.RECV_2XX if status < 300 else _I.RECV_FINAL
        old = txn.state
        if set_state(txn, inp) is None:
            self.stats.responses_absorbed += 1
            return
        if txn.kind is _K.INVITE_CLIENT:
            self._invite_response(txn, resp, inp, old, now)
            return
        self._events.append(_new(ResponseReceived, (resp, txn.key)))
        if inp is _I.RECV_1XX:
            return  # timer E goes on, at T2 from now on (§17.1.2.2)
        _cancel(txn.retx)
        _cancel(txn.end)
        if txn.reliable:
            set_state(txn, _I.TIMER_K)
            self._finish(txn)
        else:
            txn.end = self._timers.arm(now, self.config.t4, txn, _I.TIMER_K)

    def _invite_response(
        self,
        txn: Transaction,
        resp: SipResponse,
        inp: TransactionInput,
        old: TransactionState,
        now: float,
    ) -> None:
        if old is _S.COMPLETED:  # a retransmitted final response: ACK it again
            self.stats.responses_absorbed += 1
            if txn.ack is not None:
                ack = _new(Outgoing, (txn.ack, txn.addr, txn.conn_id, txn.reliable, txn.key))
                self._out.append(ack)
            return
        self._events.append(_new(ResponseReceived, (resp, txn.key)))
        _cancel(txn.retx)
        txn.retx = None
        _cancel(txn.end)
        if inp is _I.RECV_1XX:
            txn.end = self._timers.arm(now, self.config.timer_c, txn, _I.TIMER_C)
            pending = txn.pending_cancel
            if pending is not None:
                txn.pending_cancel = None
                self._start_client(pending, now)
            return
        if inp is _I.RECV_2XX:
            self._finish(txn)  # the TU ACKs a 2xx itself (§13.2.2.4)
            return
        self._drop_pending_cancel(txn)
        txn.ack = make_ack(txn.request, resp)
        self._out.append(_new(Outgoing, (txn.ack, txn.addr, txn.conn_id, txn.reliable, txn.key)))
        if txn.reliable:
            set_state(txn, _I.TIMER_D)
            self._finish(txn)
        else:
            txn.end = self._timers.arm(now, self.config.timer_d, txn, _I.TIMER_D)

    # ----------------------------------------------------------------- timers
    def _on_timer_a(self, txn: Transaction, timer: TransactionInput, now: float) -> None:
        if set_state(txn, _I.TIMER_A) is not None:
            self._retransmit(txn, txn.request)
            txn.interval *= 2  # no T2 cap for INVITE (§17.1.1.2)
            txn.retx = self._timers.arm(now, txn.interval, txn, _I.TIMER_A)

    def _on_timer_e(self, txn: Transaction, timer: TransactionInput, now: float) -> None:
        old = txn.state
        if set_state(txn, _I.TIMER_E) is not None:
            self._retransmit(txn, txn.request)
            if old is _S.TRYING:
                txn.interval = min(2 * txn.interval, self._t2)
            else:
                txn.interval = self._t2
            txn.retx = self._timers.arm(now, txn.interval, txn, _I.TIMER_E)

    def _on_timer_g(self, txn: Transaction, timer: TransactionInput, now: float) -> None:
        resp = txn.last_response
        if set_state(txn, _I.TIMER_G) is not None and resp is not None:
            self._retransmit(txn, resp)
            txn.interval = min(2 * txn.interval, self._t2)
            txn.retx = self._timers.arm(now, txn.interval, txn, _I.TIMER_G)

    def _on_timer_trying(self, txn: Transaction, timer: TransactionInput, now: float) -> None:
        if set_state(txn, _I.TIMER_TRYING) is not None:
            resp = make_response(txn.request, 100)
            txn.last_response = resp
            txn.retx = None
            self._out.append(_new(Outgoing, (resp, txn.addr, txn.conn_id, txn.reliable, txn.key)))

    def _on_timeout(self, txn: Transaction, timer: TransactionInput, now: float) -> None:
        # Timers B, C, F and H: no final response (or no ACK) in time.
        if set_state(txn, timer) is not None:
            self.stats.timeouts += 1
            self._events.append(TransactionTimedOut(txn.key, txn.request))
            self._finish(txn)

    def _on_timer_l(self, txn: Transaction, timer: TransactionInput, now: float) -> None:
        if set_state(txn, _I.TIMER_L) is not None:
            if not txn.acked:
                self.stats.timeouts += 1
                self._events.append(TransactionTimedOut(txn.key, txn.request))
            self._finish(txn)

    def _on_timer_end(self, txn: Transaction, timer: TransactionInput, now: float) -> None:
        # Timers D, I, J and K: the wait for stray retransmissions is over.
        if set_state(txn, timer) is not None:
            self._finish(txn)

    def _retransmit(self, txn: Transaction, message: SipRequest | SipResponse) -> None:
        self.stats.retransmissions += 1
        self._out.append(_new(Outgoing, (message, txn.addr, txn.conn_id, txn.reliable, txn.key)))

    # ------------------------------------------------------------------ ending
    def _drop_pending_cancel(self, txn: Transaction) -> None:
        pending = txn.pending_cancel
        if pending is not None:
            txn.pending_cancel = None
            set_state(pending, _I.ABORT)
            self._finish(pending)

    def _finish(self, txn: Transaction) -> None:
        """Forget a transaction that has just moved to Terminated."""
        _cancel(txn.retx)
        _cancel(txn.end)
        txn.retx = txn.end = None
        key = txn.key
        if self._txns.get(key) is txn:
            del self._txns[key]
        if txn.accepted_id is not None and self._accepted.get(txn.accepted_id) is txn:
            del self._accepted[txn.accepted_id]
        self._drop_pending_cancel(txn)
        if self._report_terminated:
            self._events.append(_new(TransactionTerminated, (key,)))
