"""Transaction matching keys (RFC 3261 §17.1.3, §17.2.3) and the requests the
transaction layer builds itself (ACK for a non-2xx, CANCEL)."""

from __future__ import annotations

from ._errors import SipLocalError, SipParseError, SipRemoteError
from ._headers import Headers
from ._ids import BRANCH_COOKIE
from ._message import SipRequest, SipResponse
from ._transaction_events import TransactionKey
from ._uri import split_header_list

__all__ = [
    "dialog_cseq_id",
    "make_ack",
    "make_cancel",
    "server_key",
    "to_tag",
    "via_branch_sent_by",
]


def via_branch_sent_by(value: str) -> tuple[str, str]:
    """``(branch, sent-by)`` of the first Via value in one header line.

    A purpose-built scan instead of :meth:`Via.parse`: it runs on every
    message and only needs these two fields, compared as opaque text.
    """
    if "," in value or '"' in value:
        parts = split_header_list(value)
        if not parts:
            raise SipRemoteError("empty Via header")
        value = parts[0]
    semi = value.find(";")
    fields = (value if semi < 0 else value[:semi]).split()
    if len(fields) < 2:
        raise SipRemoteError(f"bad Via {value[:80]!r}")
    branch = ""
    if semi >= 0:
        start = value.find(";branch=", semi)
        if start >= 0:
            start += 8
            end = value.find(";", start)
            branch = (value[start:] if end < 0 else value[start:end]).strip()
        else:  # unusual spelling: ";Branch=", "; branch = "
            for param in value[semi + 1 :].split(";"):
                name, _, val = param.partition("=")
                if name.strip().lower() == "branch":
                    branch = val.strip()
                    break
    return branch, fields[-1]


def server_key(req: SipRequest) -> TransactionKey:
    """The server-transaction key of a request (RFC 3261 §17.2.3); ACK looks up INVITE."""
    raw = req.headers.get("Via")
    if raw is None:
        raise SipRemoteError("request without Via")
    branch, sent_by = via_branch_sent_by(raw)
    method = req.method
    if method == "ACK":
        method = "INVITE"
    if len(branch) > 7 and branch.startswith(BRANCH_COOKIE):
        return TransactionKey(branch, sent_by, method, True)
    # RFC 2543 peer: match on the request's identity instead (To tag left out, see above).
    legacy = "\x00".join(("", branch, req.call_id, req.from_.tag or "", str(req.cseq[0]), req.uri))
    return TransactionKey(legacy, sent_by, method, True)


def dialog_cseq_id(req: SipRequest) -> tuple[str, str, int]:
    """(Call-ID, From tag, CSeq number): what an ACK to a 2xx shares with its INVITE."""
    return req.call_id, req.from_.tag or "", req.cseq[0]


def to_tag(resp: SipResponse | None) -> str | None:
    if resp is None or resp.status == 100:
        return None
    try:
        return resp.to.tag
    except SipParseError:
        return None


# ------------------------------------------------------------- builders
def _top_via(request: SipRequest) -> str:
    vias = request.headers.get_all("Via")
    if not vias:
        raise SipLocalError("request has no Via header")
    return vias[0]


def _copy(request: SipRequest, headers: Headers, name: str) -> None:
    value = request.headers.get(name)
    if value is not None:
        headers.add(name, value)


def make_ack(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK for a non-2xx final response (RFC 3261 §17.1.1.3)."""
    headers = Headers()
    headers.add("Via", _top_via(invite))
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    _copy(invite, headers, "From")
    to = response.headers.get("To")
    headers.add("To", to if to is not None else invite.headers.get("To") or "")
    _copy(invite, headers, "Call-ID")
    headers.add("CSeq", f"{invite.cseq[0]} ACK")
    return SipRequest("ACK", invite.uri, headers)


def make_cancel(request: SipRequest) -> SipRequest:
    """A CANCEL for ``request`` (RFC 3261 §9.1).

    Same Request-URI, Call-ID, From, To, CSeq number and top Via (so the
    same branch) as the request; Route copied; CSeq method CANCEL.

    :raises SipLocalError: ``request`` is an ACK or CANCEL, or has no Via.
    """
    if request.method in ("ACK", "CANCEL"):
        raise SipLocalError(f"cannot cancel {request.method}")
    headers = Headers()
    headers.add("Via", _top_via(request))
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    for name in ("From", "To", "Call-ID"):
        _copy(request, headers, name)
    try:
        number = request.cseq[0]
    except SipParseError as exc:
        raise SipLocalError(f"cannot cancel: {exc}") from exc
    headers.add("CSeq", f"{number} CANCEL")
    return SipRequest("CANCEL", request.uri, headers)
