"""What upper platforms ask of us (cascade, notes §9), and the alarms they subscribe to.

An upper platform is not a registered device of ours:
:meth:`~gb28181.uplink_service.UplinkService.upper_of` recognises it by its ID and the address
it sends from, and :meth:`UpperRequests.install` wraps the handlers in place so that its
requests go:

* Catalog queries and catalog SUBSCRIBEs -> :class:`~gb28181.catalog_responder.
  CatalogResponder` with the upper platform as the peer (its Principal: the certificate bound
  to its account; its ``share`` list and ``id_map``; requests built and sent by its uplink);
* DeviceInfo/DeviceStatus about us -> answered here; about a shared channel -> asked of the
  device carrying it and relayed up with the upper platform's SN and ID;
* alarm SUBSCRIBEs -> a subscription here (we are the notifier); alarms of shared channels
  then go up by NOTIFY in its dialog;
* INVITE, DeviceControl, RecordInfo -> refused 403 ``not-shared`` for a channel not shared
  with it, its published IDs mapped back to ours, then :mod:`gb28181.inbound` /
  :mod:`gb28181.forwarding`, whose ``identify`` is told who the upper platform is.

Requests from anyone else go on to the handlers that were there before.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from authz import Principal

from . import manscdp
from .catalog_responder import CatalogPeer, CatalogResponder
from .inbound import CallerRefused, InboundService
from .queries import QueryError, QueryService
from .registrar import Source
from .signalling import SipRequestTimeout
from .sip import (
    Dialog,
    SipError,
    SipRequest,
    SipResponse,
    make_response,
    new_tag,
    parse_event,
)
from .uplink import Uplink
from .uplink_service import UplinkService, UpperLink

__all__ = ["UpperRequests"]

log = logging.getLogger(__name__)

ManscdpHandler = Callable[[SipRequest, "manscdp.Message", Source, float], SipResponse | None]
UpperHandler = Callable[[Uplink, SipRequest, "manscdp.Message", float], SipResponse | None]


@dataclass(slots=True)
class _AlarmSubscription:
    """An upper platform's alarm subscription: we are the notifier (UAS dialog)."""

    dialog: Dialog
    event: str
    expires_at: float


class UpperRequests:
    """Answers our upper platforms (module docstring).

    :param service: the uplinks (who the upper platforms are, what they may see, sending).
    :param device_name: our name in DeviceInfo answers; ``version`` our firmware.
    """

    def __init__(
        self, service: UplinkService, *, device_name: str = "gb28181-platform", version: str = ""
    ) -> None:
        self.service = service
        self.signalling = service.signalling
        self.clock = service.clock
        self.device_name = device_name
        self.version = version
        self.responder: CatalogResponder | None = None
        #: Our channel IDs (for DeviceInfo's channel count); set by the platform.
        self.channels: Callable[[], Iterable[str]] = lambda: ()
        #: The device carrying a channel, and the queries that reach it (DeviceInfo and
        #: DeviceStatus about a shared channel are asked of it); set by the platform.
        self.locate: Callable[[str], str | None] = lambda channel_id: None
        self.queries: QueryService | None = None
        self._alarm_subs: dict[str, _AlarmSubscription] = {}
        self._principals: dict[str, Principal] = {}
        self._principal_of: Callable[[str], Awaitable[Principal | None]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        """Cancel answers and NOTIFYs in flight."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def install(
        self,
        *,
        responder: CatalogResponder | None = None,
        inbound: InboundService | None = None,
        principal_of: Callable[[str], Awaitable[Principal | None]] | None = None,
    ) -> None:
        """Route what upper platforms send us (they are not registered devices of ours).

        Wraps the handlers already in place: a request whose sender is not one of our upper
        platforms goes on to them unchanged, so call this after every other service is wired.

        :param responder: answers their Catalog queries and catalog subscriptions.
        :param inbound: takes their INVITEs and DeviceControl; it is told who they are.
        :param principal_of: an upper platform's Principal (the certificate bound to its
            account, ``Identity.for_sip_account``); without it they may view nothing.
        """
        sig = self.signalling
        self.responder = responder
        self._principal_of = principal_of
        for key, handler in (
            (("Query", "DeviceInfo"), self._device_info),
            (("Query", "DeviceStatus"), self._device_status),
            (("Response", "Alarm"), self._ok),
            (("Query", "Catalog"), self._catalog_query),
        ):
            self._wrap_manscdp(key, handler)
        prev_alarm = sig.manscdp_handlers.get(("Notify", "Alarm"))
        if prev_alarm is not None:
            sig.manscdp_handlers[("Notify", "Alarm")] = self._alarm_tap(prev_alarm)
        prev_sub = sig.methods.get("SUBSCRIBE")

        def subscribe(request: SipRequest, source: Source, now: float) -> SipResponse | None:
            up = self.service.upper_of(request.from_.uri.user or "", source.host)
            if up is not None and self._is_alarm_subscription(request):
                return self._alarm_subscribe(up, request, source, now)
            if up is not None and responder is not None and not request.to.tag:
                event, _ = parse_event(request.headers.get("Event") or "")
                if event == "catalog":
                    return self._catalog_subscribe(responder, up, request, now)
            if prev_sub is not None:
                return prev_sub(request, source, now)
            if responder is not None and request.to.tag:
                return responder.handle_subscribe(None, request, now)
            return make_response(
                request, 489, "Bad Event", to_tag=new_tag(), headers=[("Allow-Events", "presence")]
            )

        sig.methods["SUBSCRIBE"] = subscribe
        if inbound is not None:
            self._guard_inbound(inbound)
        self.service.on_change.append(self._registered_again)

    def _registered_again(self, up: Uplink, registered: bool) -> None:
        if not registered:
            return

        async def refresh() -> None:
            await self._refresh_principal(up.upper_id)

        self._spawn_task(refresh())

    # -- catalog: H8's responder, with the upper platform as the peer ---------------------

    def _catalog_peer(self, up: Uplink, request: SipRequest | None = None) -> CatalogPeer:
        charset = manscdp.Charset.GB2312
        if request is not None and request.body:
            with contextlib.suppress(manscdp.ManscdpError):
                _, charset = manscdp.decode_body(request.body)
        return CatalogPeer(
            peer_id=up.upper_id,
            principal=self._principals.get(up.upper_id),
            link=UpperLink(self.service, up),
            local_id=up.local_id,
            id_map=dict(up.cfg.id_map),
            share=up.cfg.share,
            charset=charset,
        )

    def _catalog_subscribe(
        self, responder: CatalogResponder, up: Uplink, request: SipRequest, now: float
    ) -> SipResponse | None:
        """A catalog SUBSCRIBE from an upper platform: answered at once when its Principal is
        known, else once it has been looked up (the subscription publishes what it may view
        from the start)."""
        if up.upper_id in self._principals or self._principal_of is None:
            return responder.handle_subscribe(self._catalog_peer(up, request), request, now)

        async def later() -> None:
            await self._refresh_principal(up.upper_id)
            peer = self._catalog_peer(up, request)
            self.signalling.respond(request, responder.handle_subscribe(peer, request, now))

        self._spawn_task(later())
        return None

    def _catalog_query(
        self, up: Uplink, request: SipRequest, msg: manscdp.Message, now: float
    ) -> SipResponse:
        responder = self.responder
        if responder is None:
            return make_response(request, 501, "No catalog to share", to_tag=new_tag())
        peer = self._catalog_peer(up, request)

        async def answer() -> None:
            try:
                principal = await self._refresh_principal(up.upper_id)
                await responder.answer_query(dataclasses.replace(peer, principal=principal), msg)
            except Exception:
                log.exception("catalog answer to upper platform %s failed", up.upper_id)

        self._spawn_task(answer())
        return make_response(request, 200, to_tag=new_tag())

    async def _refresh_principal(self, upper_id: str) -> Principal | None:
        """Look the upper platform's Principal up again (bindings change at run time)."""
        if self._principal_of is None:
            return None
        try:
            principal = await self._principal_of(upper_id)
        except Exception as exc:
            log.warning("upper platform %s has no usable identity: %s", upper_id, exc)
            principal = None
        if principal is None:
            self._principals.pop(upper_id, None)
            log.info("upper platform %s has no certificate binding: it sees nothing", upper_id)
        else:
            self._principals[upper_id] = principal
        return principal

    def _spawn_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- INVITE and DeviceControl: H4's inbound service, told who the upper platform is ---

    def _guard_inbound(self, inbound: InboundService) -> None:
        """Let ``inbound`` identify our upper platforms, and keep them to shared channels.

        The inbound service identifies registered callers; an upper platform is not one, so
        its identity (the certificate bound to its account) is given here. Its requests for
        channels not shared with it are refused with 403 before they reach ``inbound``, and
        the IDs it uses are mapped back to ours (``id_map``).
        """
        original = inbound.identify

        async def identify(request: SipRequest, source: Source) -> Principal:
            up = self.service.upper_of(request.from_.uri.user or "", source.host)
            if up is None or inbound._peer_cert(request, source) is not None:
                return await original(request, source)
            principal = await self._refresh_principal(up.upper_id)
            if principal is None:
                raise CallerRefused(
                    f"upper platform {up.upper_id}: no certificate bound to the account",
                    "unknown-caller",
                )
            return principal

        inbound.identify = identify  # type: ignore[method-assign]
        sig = self.signalling
        prev_invite = sig.methods.get("INVITE")
        if prev_invite is not None:

            def invite(request: SipRequest, source: Source, now: float) -> SipResponse | None:
                up = self.service.upper_of(request.from_.uri.user or "", source.host)
                if up is not None and not request.to.tag:
                    refused = self._unshared_invite(up, request)
                    if refused is not None:
                        return refused
                return prev_invite(request, source, now)

            sig.methods["INVITE"] = invite
        for key in (("Control", "DeviceControl"), ("Query", "RecordInfo")):
            prev = sig.manscdp_handlers.get(key)
            if prev is not None:
                sig.manscdp_handlers[key] = self._shared_only(prev)

    def _unshared_invite(self, up: Uplink, request: SipRequest) -> SipResponse | None:
        try:
            published = request.request_uri.user or ""
        except SipError:
            return None  # inbound answers what it cannot parse
        ours = self.service.resolve(up.upper_id, published)
        if ours != published:
            request.uri = request.uri.replace(published, ours, 1)
        if (
            published.isdigit()
            and len(published) == 20
            and not self.service.shares(up.upper_id, ours)
        ):
            log.info("INVITE from upper platform %s for %s: not shared", up.upper_id, ours)
            return make_response(
                request, 403, "Forbidden (not-shared: channel not shared)", to_tag=new_tag()
            )
        return None

    def _shared_only(self, prev: ManscdpHandler) -> ManscdpHandler:
        def handler(
            request: SipRequest, msg: manscdp.Message, source: Source, now: float
        ) -> SipResponse | None:
            up = self.service.upper_of(request.from_.uri.user or msg.device_id, source.host)
            if up is None:
                return prev(request, msg, source, now)
            ours = self.service.resolve(up.upper_id, msg.device_id)
            if not self.service.shares(up.upper_id, ours):
                return make_response(
                    request, 403, "Forbidden (not-shared: channel not shared)", to_tag=new_tag()
                )
            if ours != msg.device_id:
                msg = dataclasses.replace(msg, device_id=ours)
            return prev(request, msg, source, now)

        return handler

    def _wrap_manscdp(self, key: tuple[str, str], mine: UpperHandler) -> None:
        sig = self.signalling
        prev = sig.manscdp_handlers.get(key)

        def handler(
            request: SipRequest, msg: manscdp.Message, source: Source, now: float
        ) -> SipResponse | None:
            sender = request.from_.uri.user or msg.device_id
            up = self.service.upper_of(sender, source.host)
            if up is not None:
                return mine(up, request, msg, now)
            if prev is not None:
                return prev(request, msg, source, now)
            st = sig.registrar.get(sender)
            status = 200 if st is not None and st.registered else 404
            return make_response(request, status, to_tag=new_tag())

        sig.manscdp_handlers[key] = handler

    def _ok(self, up: Uplink, request: SipRequest, msg: manscdp.Message, now: float) -> SipResponse:
        return make_response(request, 200, to_tag=new_tag())

    def _reply(self, up: Uplink, message: manscdp.Message) -> None:
        """Send a MANSCDP answer up in the background (the MESSAGE was answered 200 already)."""
        self._spawn_task(self._send_up(up, message))

    async def _send_up(self, up: Uplink, message: manscdp.Message) -> None:
        try:
            await self.service.send_message(up.upper_id, message)
        except (SipRequestTimeout, OSError) as exc:
            log.info("answer to upper platform %s not delivered: %s", up.upper_id, exc)

    def _device_info(
        self, up: Uplink, request: SipRequest, msg: manscdp.Message, now: float
    ) -> SipResponse:
        if msg.device_id not in ("", up.local_id):
            return self._about_channel(up, request, msg)
        self._reply(
            up,
            manscdp.DeviceInfoResponse(
                device_id=up.local_id,
                sn=msg.sn,
                device_name=self.device_name,
                result="OK",
                device_type="Platform",
                manufacturer="gb28181-platform",
                model="platform",
                firmware=self.version,
                channel=sum(1 for _ in self.shared_channels(up.upper_id)),
            ),
        )
        return make_response(request, 200, to_tag=new_tag())

    def _device_status(
        self, up: Uplink, request: SipRequest, msg: manscdp.Message, now: float
    ) -> SipResponse:
        if msg.device_id not in ("", up.local_id):
            return self._about_channel(up, request, msg)
        self._reply(
            up,
            manscdp.DeviceStatusResponse(
                device_id=up.local_id,
                sn=msg.sn,
                result="OK",
                online="ONLINE",
                status="OK",
                device_time=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.clock())),
            ),
        )
        return make_response(request, 200, to_tag=new_tag())

    def _about_channel(self, up: Uplink, request: SipRequest, msg: manscdp.Message) -> SipResponse:
        """DeviceInfo/DeviceStatus about one of our shared channels: asked of the device that
        carries it, its answer relayed up with the upper platform's SN and published ID."""
        ours = self.service.resolve(up.upper_id, msg.device_id)
        device_id = self.locate(ours) if self.queries is not None else None
        if device_id is None or not self.service.shares(up.upper_id, ours):
            return make_response(request, 404, to_tag=new_tag())
        queries = self.queries
        assert queries is not None

        async def relay() -> None:
            try:
                done = await queries.query(device_id, dataclasses.replace(msg, device_id=ours))
            except QueryError as exc:
                log.info("%s of %s for upper platform %s: %s", msg.cmd_type, ours, up.upper_id, exc)
                return
            for answer in done.messages:
                await self._send_up(
                    up, dataclasses.replace(answer, sn=msg.sn, device_id=msg.device_id)
                )

        self._spawn_task(relay())
        return make_response(request, 200, to_tag=new_tag())

    def shared_channels(self, upper_id: str) -> Iterable[str]:
        """Our channel IDs shared with ``upper_id`` (from :attr:`channels`)."""
        return (c for c in self.channels() if self.service.shares(upper_id, c))

    # -- alarm subscriptions of upper platforms -------------------------------------------

    @staticmethod
    def _is_alarm_subscription(request: SipRequest) -> bool:
        if not request.body:
            event, _ = parse_event(request.headers.get("Event") or "")
            return event in ("presence", "alarm")
        try:
            msg = manscdp.decode(request.body)
        except manscdp.ManscdpError:
            return False
        return msg.cmd_type == "Alarm"

    def _alarm_subscribe(
        self, up: Uplink, request: SipRequest, source: Source, now: float
    ) -> SipResponse:
        expires = request.expires
        if expires is None:
            expires = 3600
        existing = self._alarm_subs.get(up.upper_id)
        to_tag = request.to.tag
        if to_tag:
            # A refresh (or an unsubscribe) in the dialog we made.
            if existing is None or existing.dialog.call_id != request.call_id:
                return make_response(request, 481, to_tag=to_tag)
            try:
                existing.dialog.receive_request(request)
            except SipError as exc:
                return make_response(request, 400, str(exc)[:80], to_tag=to_tag)
            if expires == 0:
                del self._alarm_subs[up.upper_id]
                log.info("upper platform %s ended its alarm subscription", up.upper_id)
            else:
                existing.expires_at = now + expires
            return make_response(request, 200, to_tag=to_tag, headers=[("Expires", str(expires))])
        local = self.signalling.transport.local_addr or ("127.0.0.1", 0)
        contact = up.contact
        response = make_response(
            request,
            200,
            to_tag=new_tag(),
            headers=[("Expires", str(expires)), ("Contact", contact)],
        )
        if expires == 0:
            self._alarm_subs.pop(up.upper_id, None)
            return response
        try:
            dialog = Dialog.as_uas(
                request,
                response,
                via=f"SIP/2.0/{up.transport} {up.local_host}:{local[1]};rport",
            )
        except SipError as exc:
            return make_response(request, 400, str(exc)[:80], to_tag=new_tag())
        self._alarm_subs[up.upper_id] = _AlarmSubscription(
            dialog, request.headers.get("Event") or "presence", now + expires
        )
        log.info("upper platform %s subscribed to alarms for %d s", up.upper_id, expires)
        return response

    def _alarm_tap(self, prev: ManscdpHandler) -> ManscdpHandler:
        def handler(
            request: SipRequest, msg: manscdp.Message, source: Source, now: float
        ) -> SipResponse | None:
            response = prev(request, msg, source, now)
            if response is not None and response.status == 200 and self._alarm_subs:
                self.forward_alarm(msg, now)
            return response

        return handler

    def forward_alarm(self, msg: manscdp.Message, now: float) -> None:
        """Send an alarm of one of our channels to every upper platform subscribed to alarms
        that the channel is shared with (NOTIFY in its subscription dialog)."""
        if not isinstance(msg, manscdp.AlarmNotify):
            return
        for upper_id, sub in list(self._alarm_subs.items()):
            if now >= sub.expires_at:
                del self._alarm_subs[upper_id]
                continue
            if not self.service.shares(upper_id, msg.device_id):
                continue
            up = self.service.uplinks[upper_id]
            body = manscdp.encode(
                dataclasses.replace(
                    msg, device_id=self.service.publish(upper_id, msg.device_id), sn=up.next_sn()
                )
            )
            try:
                notify = sub.dialog.create_request(
                    "NOTIFY",
                    headers=[
                        ("Event", sub.event),
                        (
                            "Subscription-State",
                            f"active;expires={max(int(sub.expires_at - now), 1)}",
                        ),
                        ("Content-Type", "Application/MANSCDP+xml"),
                    ],
                    body=body,
                )
            except SipError as exc:
                log.info("alarm NOTIFY to %s not built: %s", upper_id, exc)
                continue
            self._spawn_send(upper_id, notify)

    def _spawn_send(self, upper_id: str, request: SipRequest) -> None:
        async def go() -> None:
            try:
                response = await self.service.send(upper_id, request)
                if response.status >= 300:
                    log.info(
                        "upper platform %s answered %d to our %s",
                        upper_id,
                        response.status,
                        request.method,
                    )
            except (SipRequestTimeout, OSError) as exc:
                log.info("%s to upper platform %s not delivered: %s", request.method, upper_id, exc)

        task = asyncio.get_running_loop().create_task(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
