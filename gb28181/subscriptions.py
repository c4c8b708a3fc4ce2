"""Subscriptions the platform holds at devices: Catalog, alarm (presence), MobilePosition.

GB/T 28181-2016 §9.11 / notes §4.4: after the first full Catalog query the platform SUBSCRIBEs
(``Event: Catalog;id=N``, a MANSCDP Catalog query as body) so the device NOTIFYs changes instead
of being polled. The 2xx creates a dialog (RFC 6665 §4.1.2); the subscription is refreshed in
that dialog before it expires (§4.1.2.2). A device that refuses (non-2xx, no answer, or a
refresh that fails) is handed to ``on_refused`` and the platform falls back to periodic queries.

The NOTIFY bodies go through the MANSCDP routes of :class:`~gb28181.signalling.Signalling` like
any MESSAGE (answered 200 at once); :meth:`SubscriptionService.receive_notify` only keeps the
dialog's state (remote CSeq, target, ``Subscription-State: terminated``).

:class:`SubscriptionTable` is the sans-IO part (state and deadlines, ``now`` injected); the
service is the asyncio glue that sends.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from . import manscdp
from .sip import (
    Dialog,
    DialogTable,
    SipError,
    SipRequest,
    SipResponse,
    parse_params,
)

__all__ = [
    "RefusedCallback",
    "Subscription",
    "SubscriptionSender",
    "SubscriptionService",
    "SubscriptionState",
    "SubscriptionTable",
    "refresh_delay",
]

log = logging.getLogger(__name__)

MANSCDP_CONTENT_TYPE = "Application/MANSCDP+xml"

RefusedCallback = Callable[[str, str, str], None]
"""Called with (device ID, event, reason) when a device refuses or drops a subscription."""


class SubscriptionState(Enum):
    PENDING = "pending"
    ACTIVE = "active"
    REFUSED = "refused"
    ENDED = "ended"


@dataclass(slots=True)
class Subscription:
    """One subscription at one device for one event package."""

    device_id: str
    event: str
    """Event type as sent (``Catalog``, ``presence``, ``MobilePosition``)."""
    event_id: int
    body: manscdp.Message
    state: SubscriptionState = SubscriptionState.PENDING
    dialog: Dialog | None = None
    expires: int = 0
    expires_at: float = 0.0
    refresh_at: float = 0.0
    reason: str = ""
    notifies: int = 0
    request: SipRequest | None = None
    """The initial SUBSCRIBE (a NOTIFY may overtake its 200)."""

    @property
    def event_header(self) -> str:
        return f"{self.event};id={self.event_id}"


def refresh_delay(expires: int) -> float:
    """Seconds after a granted subscription at which it is refreshed: a tenth of its lifetime
    (at least 5 s, at most 300 s) before it runs out, never sooner than half-way."""
    margin = min(300.0, max(5.0, expires * 0.1))
    return max(expires / 2, expires - margin)


class SubscriptionTable:
    """Subscriptions by (device, event) with their deadlines; no I/O."""

    def __init__(self) -> None:
        self._subs: dict[tuple[str, str], Subscription] = {}
        self.dialogs = DialogTable()
        self._ids = itertools.count(1)

    def get(self, device_id: str, event: str) -> Subscription | None:
        return self._subs.get((device_id, event.lower()))

    def __iter__(self) -> Iterator[Subscription]:
        return iter(list(self._subs.values()))

    def of_device(self, device_id: str) -> list[Subscription]:
        return [s for (d, _), s in self._subs.items() if d == device_id]

    def start(self, device_id: str, event: str, body: manscdp.Message) -> Subscription:
        """A new pending subscription (replacing an older one of the same event)."""
        self.drop(device_id, event)
        sub = Subscription(device_id, event, next(self._ids), body)
        self._subs[(device_id, event.lower())] = sub
        return sub

    def granted(self, sub: Subscription, response: SipResponse, default: int, now: float) -> None:
        """Account for the 2xx to a SUBSCRIBE (initial or refresh)."""
        expires = _expires(response.headers.get("Expires"), default)
        sub.state = SubscriptionState.ACTIVE
        sub.expires = expires
        sub.expires_at = now + expires
        sub.refresh_at = now + refresh_delay(expires)
        sub.reason = ""

    def refused(self, sub: Subscription, reason: str) -> None:
        sub.state = SubscriptionState.REFUSED
        sub.reason = reason
        self._forget_dialog(sub)

    def ended(self, sub: Subscription, reason: str) -> None:
        sub.state = SubscriptionState.ENDED
        sub.reason = reason
        self._forget_dialog(sub)

    def drop(self, device_id: str, event: str) -> Subscription | None:
        sub = self._subs.pop((device_id, event.lower()), None)
        if sub is not None:
            self._forget_dialog(sub)
        return sub

    def due(self, now: float) -> list[Subscription]:
        """Active subscriptions whose refresh time has come."""
        return [
            s
            for s in self._subs.values()
            if s.state is SubscriptionState.ACTIVE and s.refresh_at <= now
        ]

    def receive_notify(self, request: SipRequest, now: float) -> Subscription | None:
        """Match a NOTIFY to its subscription and update the dialog (RFC 6665 §4.1.3).

        :raises SipError: headers cannot be parsed, or the CSeq went backwards.
        """
        dialog = self.dialogs.match_notify(request)
        if dialog is None:
            return None
        dialog.receive_request(request)
        sub = next((s for s in self._subs.values() if s.dialog is dialog), None)
        if sub is None:
            sub = self._by_call_id(request.call_id)
            if sub is None:
                return None
            sub.dialog = dialog
        sub.notifies += 1
        state = request.headers.get("Subscription-State") or ""
        head, _, params = state.partition(";")
        if head.strip().lower() == "terminated":
            reason = parse_params(params).get("reason") if params else None
            self.ended(sub, f"terminated by device ({reason or 'no reason'})")
        return sub

    def _by_call_id(self, call_id: str) -> Subscription | None:
        for sub in self._subs.values():
            if sub.request is not None and sub.request.call_id == call_id:
                return sub
        return None

    def _forget_dialog(self, sub: Subscription) -> None:
        if sub.dialog is not None:
            self.dialogs.remove(sub.dialog.id)
            sub.dialog = None


def _expires(value: str | None, default: int) -> int:
    try:
        expires = int((value or "").strip())
    except ValueError:
        return default
    return expires if expires > 0 else default


class SubscriptionSender(Protocol):
    """What the service needs from :class:`~gb28181.signalling.Signalling`."""

    def new_request(
        self,
        method: str,
        target_id: str,
        device_id: str,
        *,
        content_type: str | None = None,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> SipRequest: ...

    async def send_to_device(self, request: SipRequest, device_id: str) -> SipResponse: ...

    def contact(self) -> str: ...


class SubscriptionService:
    """Sends SUBSCRIBEs and their refreshes; tells ``on_refused`` when a device will not.

    :param sender: builds and sends SIP requests (``Signalling``).
    :param expires: lifetime asked for, in seconds (the device's Expires wins).
    :param charset: of the bodies (per device when ``charsets`` knows it).
    """

    def __init__(
        self,
        sender: SubscriptionSender,
        *,
        clock: Callable[[], float] = time.time,
        expires: int = 3600,
        charsets: dict[str, manscdp.Charset] | None = None,
    ) -> None:
        self.sender = sender
        self.clock = clock
        self.expires = expires
        self.charsets = charsets if charsets is not None else {}
        self.table = SubscriptionTable()
        self.on_refused: list[RefusedCallback] = []
        self.on_active: list[Callable[[str, str], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # -- input ------------------------------------------------------------------------------

    def receive_notify(self, request: SipRequest, now: float) -> None:
        """A NOTIFY arrived (its body is routed elsewhere): keep the dialog state."""
        try:
            sub = self.table.receive_notify(request, now)
        except SipError as exc:
            log.info("NOTIFY call-id=%s not accepted in its dialog: %s", request.call_id, exc)
            return
        if sub is not None and sub.state is SubscriptionState.ENDED:
            self._refused(sub)

    def device_offline(self, device_id: str) -> None:
        """Forget a device's subscriptions (it will be subscribed again after its next sync)."""
        for sub in self.table.of_device(device_id):
            self.table.drop(device_id, sub.event)

    # -- output -----------------------------------------------------------------------------

    def subscribe(self, device_id: str, event: str, body: manscdp.Message) -> asyncio.Task[None]:
        """Start (or restart) a subscription in the background."""
        sub = self.table.start(device_id, event, body)
        return self._spawn(self._initial(sub), f"subscribe-{event}-{device_id}")

    def refresh_due(self, now: float) -> int:
        """Refresh every subscription whose time has come; the number started."""
        due = self.table.due(now)
        for sub in due:
            sub.refresh_at = sub.expires_at  # not again until this refresh is done
            self._spawn(self._refresh(sub), f"resubscribe-{sub.event}-{sub.device_id}")
        return len(due)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except asyncio.CancelledError:
                pass

    # -- internals --------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _body(self, sub: Subscription) -> bytes:
        charset = self.charsets.get(sub.device_id, manscdp.Charset.GB2312)
        return manscdp.encode(sub.body, charset)

    def _headers(self, sub: Subscription) -> list[tuple[str, str]]:
        return [("Event", sub.event_header), ("Expires", str(self.expires))]

    async def _initial(self, sub: Subscription) -> None:
        try:
            request = self.sender.new_request(
                "SUBSCRIBE",
                sub.device_id,
                sub.device_id,
                content_type=MANSCDP_CONTENT_TYPE,
                body=self._body(sub),
                headers=[*self._headers(sub), ("Contact", self.sender.contact())],
            )
        except Exception as exc:
            self.table.refused(sub, f"not sent: {exc}")
            self._refused(sub)
            return
        sub.request = request
        self.table.dialogs.expect_notify(request)
        try:
            response = await self.sender.send_to_device(request, sub.device_id)
        except Exception as exc:
            self.table.dialogs.forget_subscription(request)
            self._fail(sub, f"no answer: {exc or type(exc).__name__}")
            return
        self.table.dialogs.forget_subscription(request)
        if response.status >= 300:
            self._fail(sub, f"device answered {response.status} {response.reason}".strip())
            return
        if self.table.get(sub.device_id, sub.event) is not sub:
            return  # replaced meanwhile
        try:
            dialog = self.table.dialogs.match_response(response)
            if dialog is None:
                dialog = Dialog.as_uac(request, response)
                self.table.dialogs.add(dialog)
            else:
                dialog.receive_response(response)
        except SipError as exc:
            self._fail(sub, f"unusable 2xx: {exc}")
            return
        sub.dialog = dialog
        self.table.granted(sub, response, self.expires, self.clock())
        log.info(
            "subscribed device=%s event=%s expires=%d", sub.device_id, sub.event_header, sub.expires
        )
        for callback in self.on_active:
            callback(sub.device_id, sub.event)

    async def _refresh(self, sub: Subscription) -> None:
        dialog = sub.dialog
        if dialog is None:
            self._fail(sub, "no dialog to refresh")
            return
        try:
            request = dialog.create_request(
                "SUBSCRIBE",
                headers=[("Content-Type", MANSCDP_CONTENT_TYPE), *self._headers(sub)],
                body=self._body(sub),
            )
            response = await self.sender.send_to_device(request, sub.device_id)
        except Exception as exc:
            self._fail(sub, f"refresh failed: {exc or type(exc).__name__}")
            return
        dialog.receive_response(response)
        if response.status >= 300:
            self._fail(sub, f"refresh answered {response.status} {response.reason}".strip())
            return
        self.table.granted(sub, response, self.expires, self.clock())
        log.info("subscription refreshed device=%s event=%s", sub.device_id, sub.event_header)

    def _fail(self, sub: Subscription, reason: str) -> None:
        if self.table.get(sub.device_id, sub.event) is not sub:
            return
        self.table.refused(sub, reason)
        self._refused(sub)

    def _refused(self, sub: Subscription) -> None:
        log.info(
            "subscription %s device=%s event=%s: %s",
            sub.state.value,
            sub.device_id,
            sub.event,
            sub.reason,
        )
        for callback in self.on_refused:
            try:
                callback(sub.device_id, sub.event, sub.reason)
            except Exception:
                log.exception("subscription listener failed device=%s", sub.device_id)
