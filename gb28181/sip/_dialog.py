"""SIP dialogs (RFC 3261 §12) for INVITE and SUBSCRIBE (RFC 6665), sans-IO.

A :class:`Dialog` is the state two user agents share after a dialog-creating
request: Call-ID and both tags (the id), both URIs, the remote target (from
Contact), the route set (from Record-Route) and both CSeq counters. It builds
in-dialog requests (:meth:`Dialog.create_request`, :meth:`Dialog.create_ack`)
and checks incoming ones (:meth:`Dialog.receive_request`). It never sends:
requests go to :class:`~gb28181.sip.TransactionLayer` like any other.

The Via of an in-dialog request names *our* transport, which the dialog
cannot know; it keeps a template (``"SIP/2.0/UDP host:port;rport"``), taken
from the creating request when we are the UAC and given by the caller when
we are the UAS, and adds a fresh branch to each request.

:class:`DialogTable` finds the dialog of an incoming request or response by
its id, and creates the subscriber's dialog from a NOTIFY that overtakes the
200 to our SUBSCRIBE (RFC 6665 §4.1.2.4), which GB/T 28181 devices do since
they send the first catalog NOTIFY right after accepting.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from typing import NamedTuple

from ._errors import SipLocalError, SipRemoteError
from ._headers import Headers
from ._ids import new_branch
from ._message import SipRequest, SipResponse
from ._uri import NameAddr, Via, parse_params

__all__ = [
    "TARGET_REFRESH_METHODS",
    "Dialog",
    "DialogId",
    "DialogState",
    "DialogTable",
    "parse_event",
    "via_template",
]

#: Methods whose Contact replaces the remote target (RFC 3261 §12.2, RFC 6665 §4.1.2.4).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
_MAX_FORWARDS = "70"


class DialogState(Enum):
    """RFC 3261 §12: early after a 1xx with a To tag, confirmed after a 2xx."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogId(NamedTuple):
    """Call-ID plus local and remote tag, as seen from our side (RFC 3261 §12)."""

    call_id: str
    local_tag: str
    remote_tag: str


def parse_event(value: str) -> tuple[str, str | None]:
    """``(event type, id)`` of an Event header (RFC 6665 §8.2.1), type lower-cased.

    GB/T 28181 peers differ in case (``Catalog``, ``catalog``), so the type is
    compared case-insensitively; the id is kept as sent.
    """
    head, _, params = value.partition(";")
    return head.strip().lower(), parse_params(params).get("id") if params else None


def via_template(via: str) -> str:
    """A Via value without ``branch`` and ``received``, ``rport`` left empty: ours again."""
    parsed = Via.parse(via)
    params: dict[str, str | None] = {}
    for name, value in parsed.params.items():
        if name in ("branch", "received"):
            continue
        params[name] = None if name == "rport" else value
    return str(Via(parsed.transport, parsed.host, parsed.port, params))


def _without_tag(addr: NameAddr) -> NameAddr:
    params = {k: v for k, v in addr.params.items() if k != "tag"}
    return NameAddr(addr.uri, addr.display_name, params)


def _with_tag(addr: NameAddr, tag: str) -> NameAddr:
    out = _without_tag(addr)
    if tag:
        out.params["tag"] = tag
    return out


def _top_via(request: SipRequest) -> str:
    vias = request.headers.get_all("Via")
    if not vias:
        raise SipLocalError("request has no Via header")
    return vias[0]


def _contact_uri(message: SipRequest | SipResponse) -> str | None:
    contacts = message.contacts
    if not contacts or contacts[0].wildcard:
        return None
    return str(contacts[0].uri)


class Dialog:
    """One dialog, from our side. Build with :meth:`as_uac`, :meth:`as_uas` or
    :meth:`from_notify`; attributes are public for the TU to read."""

    __slots__ = (
        "call_id",
        "event",
        "invite_cseq",
        "local",
        "local_contact",
        "local_cseq",
        "remote",
        "remote_cseq",
        "remote_target",
        "route_set",
        "secure",
        "state",
        "via",
    )

    def __init__(
        self,
        *,
        call_id: str,
        local: NameAddr,
        remote: NameAddr,
        remote_target: str,
        route_set: list[str],
        local_cseq: int | None,
        remote_cseq: int | None,
        state: DialogState,
        secure: bool = False,
        local_contact: str | None = None,
        via: str | None = None,
        event: str | None = None,
        invite_cseq: int | None = None,
    ) -> None:
        self.call_id = call_id
        #: Our From (UAC) / To (UAS) value, with our tag.
        self.local = local
        #: The peer's value, with its tag (empty for an RFC 2543 peer).
        self.remote = remote
        #: Where in-dialog requests go (the peer's Contact URI).
        self.remote_target = remote_target
        #: Route header values, in the order they are sent.
        self.route_set = route_set
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.state = state
        self.secure = secure
        #: Our Contact, sent with target-refresh requests.
        self.local_contact = local_contact
        #: Template for the Via of our requests (no branch).
        self.via = via
        #: The Event header of a subscription dialog.
        self.event = event
        #: CSeq number of the last INVITE we sent, for the ACK to its 2xx.
        self.invite_cseq = invite_cseq

    # ------------------------------------------------------------ creation
    @classmethod
    def as_uac(
        cls, request: SipRequest, response: SipResponse, *, via: str | None = None
    ) -> Dialog:
        """The dialog a 1xx (with To tag) or 2xx creates for our ``request`` (§12.1.2).

        :param via: template for our Via; default: the request's top Via.
        :raises SipRemoteError: the response lacks what a dialog needs.
        :raises SipLocalError: ``response`` is a failure, or not for ``request``.
        """
        if not 101 <= response.status < 300:
            raise SipLocalError(f"a {response.status} response creates no dialog")
        if response.call_id != request.call_id or response.cseq != request.cseq:
            raise SipLocalError("the response does not answer this request")
        local = request.from_
        if not local.tag:
            raise SipLocalError("our request has no From tag")
        rr = response.headers.get_all("Record-Route")
        target = _contact_uri(response)
        if target is None:
            # A SUBSCRIBE 200 may omit Contact; fall back to where we sent the request.
            if response.status < 200 or request.method == "INVITE":
                raise SipRemoteError("dialog-creating response without Contact", 400)
            target = request.uri
        num, method = request.cseq
        return cls(
            call_id=request.call_id,
            local=local,
            remote=_with_tag(request.to, response.to.tag or ""),
            remote_target=target,
            route_set=list(reversed(rr)),
            local_cseq=num,
            remote_cseq=None,
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
            secure=request.uri.lower().startswith("sips:"),
            local_contact=request.headers.get("Contact"),
            via=via if via is not None else via_template(_top_via(request)),
            event=request.headers.get("Event"),
            invite_cseq=num if method == "INVITE" else None,
        )

    @classmethod
    def as_uas(
        cls, request: SipRequest, response: SipResponse, *, via: str | None = None
    ) -> Dialog:
        """The dialog our ``response`` (1xx with To tag, or 2xx) creates (§12.1.1).

        :param via: template for the Via of our own in-dialog requests
            (``"SIP/2.0/UDP <our host>:<port>;rport"``); without it,
            :meth:`create_request` refuses.
        :raises SipRemoteError: the request lacks a Contact.
        :raises SipLocalError: the response has no To tag or is a failure.
        """
        if not 101 <= response.status < 300:
            raise SipLocalError(f"a {response.status} response creates no dialog")
        local_tag = response.to.tag
        if not local_tag:
            raise SipLocalError("our response has no To tag")
        target = _contact_uri(request)
        if target is None:
            raise SipRemoteError("dialog-creating request without Contact", 400)
        return cls(
            call_id=request.call_id,
            local=_with_tag(request.to, local_tag),
            remote=request.from_,
            remote_target=target,
            route_set=request.headers.get_all("Record-Route"),
            local_cseq=None,
            remote_cseq=request.cseq[0],
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
            secure=request.uri.lower().startswith("sips:"),
            local_contact=response.headers.get("Contact"),
            via=via,
            event=request.headers.get("Event"),
        )

    @classmethod
    def from_notify(
        cls, subscribe: SipRequest, notify: SipRequest, *, via: str | None = None
    ) -> Dialog:
        """The subscriber's dialog made by a NOTIFY that came before the 200 (RFC 6665 §4.1.2.4).

        :raises SipRemoteError: the NOTIFY lacks a From tag or a Contact.
        """
        remote_tag = notify.from_.tag
        target = _contact_uri(notify)
        if not remote_tag or target is None:
            raise SipRemoteError("NOTIFY without From tag or Contact", 400)
        return cls(
            call_id=subscribe.call_id,
            local=subscribe.from_,
            remote=_with_tag(subscribe.to, remote_tag),
            remote_target=target,
            route_set=notify.headers.get_all("Record-Route"),
            local_cseq=subscribe.cseq[0],
            remote_cseq=notify.cseq[0],
            state=DialogState.CONFIRMED,
            secure=subscribe.uri.lower().startswith("sips:"),
            local_contact=subscribe.headers.get("Contact"),
            via=via if via is not None else via_template(_top_via(subscribe)),
            event=subscribe.headers.get("Event"),
        )

    # ------------------------------------------------------------ accessors
    @property
    def local_tag(self) -> str:
        """Our tag."""
        return self.local.tag or ""

    @property
    def remote_tag(self) -> str:
        """The peer's tag (empty for an RFC 2543 peer that sent none)."""
        return self.remote.tag or ""

    @property
    def id(self) -> DialogId:
        """The dialog id from our side."""
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @property
    def local_uri(self) -> str:
        """Our URI (From of our requests)."""
        return str(self.local.uri)

    @property
    def remote_uri(self) -> str:
        """The peer's URI (To of our requests)."""
        return str(self.remote.uri)

    # ------------------------------------------------------------ requests
    def create_request(
        self,
        method: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> SipRequest:
        """Build the next in-dialog request (BYE, INFO, NOTIFY, re-SUBSCRIBE, MESSAGE...).

        Takes the next local CSeq (§12.2.1.1), sets Request-URI and Route
        from the remote target and route set (loose or strict routing), and
        adds a fresh branch and, for target-refresh methods, our Contact.

        :raises SipLocalError: ACK/CANCEL (see :meth:`create_ack`;
            CANCEL is not in-dialog), a terminated dialog, or no Via template.
        """
        if method in ("ACK", "CANCEL"):
            raise SipLocalError(f"{method} is not built with create_request")
        if self.state is DialogState.TERMINATED:
            raise SipLocalError("the dialog is terminated")
        self.local_cseq = (self.local_cseq or 0) + 1
        if method == "INVITE":
            self.invite_cseq = self.local_cseq
        return self._build(method, self.local_cseq, headers, body)

    def create_ack(
        self,
        cseq: int | None = None,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> SipRequest:
        """The ACK for a 2xx to our INVITE (RFC 3261 §13.2.2.4): same CSeq number,
        method ACK, built like any in-dialog request. Send it statelessly.

        :param cseq: the INVITE's CSeq number; default: the last INVITE we sent.
        :raises SipLocalError: no INVITE to acknowledge, or no Via template.
        """
        number = cseq if cseq is not None else self.invite_cseq
        if number is None:
            raise SipLocalError("no INVITE to acknowledge")
        return self._build("ACK", number, headers, body)

    def _build(
        self, method: str, number: int, extra: list[tuple[str, str]] | None, body: bytes
    ) -> SipRequest:
        if self.via is None:
            raise SipLocalError("no Via template for this dialog; pass via= when creating it")
        uri, routes = self._request_target()
        h = Headers()
        h.add("Via", f"{self.via};branch={new_branch()}")
        for route in routes:
            h.add("Route", route)
        h.add("Max-Forwards", _MAX_FORWARDS)
        h.add("From", str(self.local))
        h.add("To", str(self.remote))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{number} {method}")
        if self.local_contact is not None and method in TARGET_REFRESH_METHODS:
            h.add("Contact", self.local_contact)
        if extra:
            for name, value in extra:
                h.add(name, value)
        return SipRequest(method, uri, h, body)

    def _request_target(self) -> tuple[str, list[str]]:
        """Request-URI and Route values (RFC 3261 §12.2.1.1)."""
        if not self.route_set:
            return self.remote_target, []
        first = NameAddr.parse(self.route_set[0])
        if "lr" in first.uri.params:
            return self.remote_target, list(self.route_set)
        # Strict routing (RFC 2543 proxy): first route becomes the Request-URI.
        return str(first.uri), [*self.route_set[1:], f"<{self.remote_target}>"]

    # ------------------------------------------------------------ incoming
    def receive_request(self, request: SipRequest) -> None:
        """Account for an in-dialog request from the peer (RFC 3261 §12.2.2).

        Updates the remote CSeq and, for target-refresh requests, the remote
        target; a BYE terminates the dialog.

        :raises SipRemoteError: CSeq lower than the last one (status 500), or
            a malformed header.
        :raises SipLocalError: the request is not for this dialog.
        """
        if request.call_id != self.call_id or (request.from_.tag or "") != self.remote_tag:
            raise SipLocalError("the request is not for this dialog")
        if request.method == "ACK":
            return  # carries the INVITE's number (§13.2.2.4), not a new one
        number = request.cseq[0]
        if self.remote_cseq is not None and number < self.remote_cseq:
            raise SipRemoteError(
                f"CSeq {number} is lower than {self.remote_cseq}: out of order", 500
            )
        self.remote_cseq = number
        if request.method in TARGET_REFRESH_METHODS:
            target = _contact_uri(request)
            if target is not None:
                self.remote_target = target
        if request.method == "BYE":
            self.state = DialogState.TERMINATED

    def receive_response(self, response: SipResponse) -> None:
        """Account for a response to a request we sent in (or to create) this dialog.

        A 2xx confirms an early dialog and recomputes its route set
        (§13.2.2.4); a 2xx to a target-refresh request updates the remote
        target; 481 and 408 end the dialog (§12.2.1.2), and so does a failure
        of the request that created an early dialog.
        """
        status = response.status
        method = response.cseq[1]
        if status < 200:
            return
        if status < 300:
            if self.state is DialogState.EARLY:
                self.state = DialogState.CONFIRMED
                self.route_set = list(reversed(response.headers.get_all("Record-Route")))
            if method in TARGET_REFRESH_METHODS:
                target = _contact_uri(response)
                if target is not None:
                    self.remote_target = target
            return
        if status in (408, 481) or self.state is DialogState.EARLY:
            self.state = DialogState.TERMINATED

    def terminate(self) -> None:
        """Mark the dialog ended (after BYE/200, or a final NOTIFY)."""
        self.state = DialogState.TERMINATED

    def __repr__(self) -> str:
        return f"<Dialog {self.call_id} {self.local_tag}/{self.remote_tag} {self.state.value}>"


class DialogTable:
    """Dialogs by id, with lookup for incoming messages; bounded.

    :param max_dialogs: :meth:`add` refuses more than this many dialogs.
    :param max_pending: SUBSCRIBEs awaiting their first NOTIFY kept at once;
        the oldest is forgotten beyond it.
    """

    def __init__(self, max_dialogs: int = 100_000, max_pending: int = 10_000) -> None:
        self.max_dialogs = max_dialogs
        self.max_pending = max_pending
        self._dialogs: dict[DialogId, Dialog] = {}
        self._pending: dict[tuple[str, str], SipRequest] = {}

    def add(self, dialog: Dialog) -> None:
        """Add a dialog.

        :raises SipLocalError: the table is full or already holds this id.
        """
        key = dialog.id
        if key in self._dialogs:
            raise SipLocalError(f"dialog {key} already exists")
        if len(self._dialogs) >= self.max_dialogs:
            raise SipLocalError("dialog limit reached")
        self._dialogs[key] = dialog

    def get(self, dialog_id: DialogId) -> Dialog | None:
        """The dialog with this id, if any."""
        return self._dialogs.get(dialog_id)

    def remove(self, dialog_id: DialogId) -> Dialog | None:
        """Forget a dialog; returns it, or ``None`` if it was not there."""
        return self._dialogs.pop(dialog_id, None)

    def match_request(self, request: SipRequest) -> Dialog | None:
        """The dialog an incoming request belongs to (its To tag is our tag).

        :raises SipRemoteError: From or To cannot be parsed.
        """
        local_tag = request.to.tag
        if not local_tag:
            return None
        return self._dialogs.get(DialogId(request.call_id, local_tag, request.from_.tag or ""))

    def match_response(self, response: SipResponse) -> Dialog | None:
        """The dialog a response to our request belongs to (its From tag is ours).

        :raises SipRemoteError: From or To cannot be parsed.
        """
        local_tag = response.from_.tag or ""
        return self._dialogs.get(DialogId(response.call_id, local_tag, response.to.tag or ""))

    # -------------------------------------------------------- subscriptions
    def expect_notify(self, subscribe: SipRequest) -> None:
        """Remember a SUBSCRIBE we sent, so that a NOTIFY overtaking its 200 can
        create the dialog (:meth:`match_notify`). Call :meth:`forget_subscription`
        when the SUBSCRIBE fails or the subscription ends."""
        key = (subscribe.call_id, subscribe.from_.tag or "")
        self._pending.pop(key, None)
        while len(self._pending) >= self.max_pending:
            del self._pending[next(iter(self._pending))]
        self._pending[key] = subscribe

    def forget_subscription(self, subscribe: SipRequest) -> None:
        """Stop matching NOTIFYs against this SUBSCRIBE."""
        self._pending.pop((subscribe.call_id, subscribe.from_.tag or ""), None)

    def match_notify(self, notify: SipRequest) -> Dialog | None:
        """The dialog of an incoming NOTIFY, created if it answers a pending SUBSCRIBE.

        The NOTIFY matches when its Call-ID and To tag are those of the
        SUBSCRIBE and its Event has the same type and id (RFC 6665 §4.4.1).

        :raises SipRemoteError: a header cannot be parsed, or the NOTIFY that
            would create the dialog lacks a From tag or Contact.
        :raises SipLocalError: the dialog limit is reached.
        """
        dialog = self.match_request(notify)
        if dialog is not None:
            return dialog
        subscribe = self._pending.get((notify.call_id, notify.to.tag or ""))
        if subscribe is None:
            return None
        want = parse_event(subscribe.headers.get("Event") or "")
        got = parse_event(notify.headers.get("Event") or "")
        if want != got:
            return None
        via = via_template(_top_via(subscribe))
        dialog = Dialog.from_notify(subscribe, notify, via=via)
        self.add(dialog)
        return dialog

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))
