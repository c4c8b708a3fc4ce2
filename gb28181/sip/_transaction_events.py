"""What the transaction layer hands back: keys, events and messages to send.

Events are values with no behaviour, one class per thing that happened
(style.md §2). :class:`Outgoing` is a ``NamedTuple`` rather than an event: it
is made for every message sent on the hot path, and tuple construction is
several times cheaper than a frozen dataclass.

For the same reason the three events made once per transaction
(:class:`RequestReceived`, :class:`ResponseReceived`,
:class:`TransactionTerminated`) are immutable ``NamedTuple`` subclasses of
:class:`TransactionEvent` rather than frozen dataclasses: the layer builds
them with ``tuple.__new__`` in a fraction of a dataclass ``__init__``. They
keep the field names, keyword construction, equality, hashing and pattern
matching of the dataclass events; being tuples, they also compare equal to a
plain tuple of the same values, which nothing relies on. The rarer events stay
frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ._message import SipRequest, SipResponse

__all__ = [
    "AckReceived",
    "CancelReceived",
    "Outgoing",
    "RequestReceived",
    "ResponseReceived",
    "StrayResponseReceived",
    "TransactionEvent",
    "TransactionKey",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportFailed",
]


class TransactionKey(NamedTuple):
    """Identifies one transaction (RFC 3261 §17.1.3, §17.2.3).

    Server keys are the top Via branch, its sent-by and the method (ACK and
    CANCEL look up INVITE); client keys leave ``sent_by`` empty because we
    are the sender. For peers without the ``z9hG4bK`` cookie ``branch`` holds
    the RFC 2543 matching fields joined with NUL characters instead.
    """

    branch: str
    sent_by: str
    method: str
    server: bool


class Outgoing(NamedTuple):
    """A message for the glue to serialise and send.

    ``addr``/``conn_id`` are where the request came from (for responses) or
    where the TU asked to send it (for requests); the glue applies RFC 3261
    §18.2.2 and RFC 3581 to pick the exact destination of a response.
    ``key`` names the transaction, so that a failed send can be reported
    with :meth:`TransactionLayer.transport_error`.
    """

    message: SipRequest | SipResponse
    addr: object
    conn_id: object | None
    reliable: bool
    key: TransactionKey | None = None


class TransactionEvent:
    """Base class of transaction-layer events; do not subclass outside this module."""

    __slots__ = ()


class _RequestReceivedFields(NamedTuple):
    request: SipRequest
    key: TransactionKey
    addr: object
    conn_id: object | None


class RequestReceived(_RequestReceivedFields, TransactionEvent):
    """A new request created a server transaction; answer with ``send_response(key, ...)``."""

    __slots__ = ()


class _ResponseReceivedFields(NamedTuple):
    response: SipResponse
    key: TransactionKey


class ResponseReceived(_ResponseReceivedFields, TransactionEvent):
    """A response for one of our client transactions (retransmissions are absorbed)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class StrayResponseReceived(TransactionEvent):
    """A response that matched no transaction.

    Usually a retransmitted 2xx to an INVITE whose client transaction ended
    on the first 2xx (RFC 3261 §17.1.1.2), or a 2xx from another fork: the
    dialog layer must ACK it again (§13.2.2.4).
    """

    response: SipResponse
    addr: object
    conn_id: object | None


@dataclass(frozen=True, slots=True)
class AckReceived(TransactionEvent):
    """An ACK outside any transaction: the ACK to a 2xx (RFC 3261 §13.3.1.4, §17.2.3)."""

    request: SipRequest
    addr: object
    conn_id: object | None = None


@dataclass(frozen=True, slots=True)
class CancelReceived(TransactionEvent):
    """A CANCEL hit a pending INVITE (already answered 200); answer the INVITE with 487.

    ``key`` is the INVITE server transaction's key, ``request`` the CANCEL.
    """

    key: TransactionKey
    request: SipRequest


@dataclass(frozen=True, slots=True)
class TransactionTimedOut(TransactionEvent):
    """No final response in time (timers B, F, C), no ACK to our final response (H),
    no ACK to our 2xx (L), or the TU never answered a request (guard timer)."""

    key: TransactionKey
    request: SipRequest


@dataclass(frozen=True, slots=True)
class TransportFailed(TransactionEvent):
    """The glue reported that a message of this transaction could not be sent (§17.1.4)."""

    key: TransactionKey
    request: SipRequest


class _TransactionTerminatedFields(NamedTuple):
    key: TransactionKey


class TransactionTerminated(_TransactionTerminatedFields, TransactionEvent):
    """The transaction is gone; its key will not be seen again."""

    __slots__ = ()
