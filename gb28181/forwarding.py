"""DeviceControl and RecordInfo from other parties, decided, forwarded and relayed (issue 6).

A registered lower platform, a department's client on SIP-TLS or an upper platform sends us a
``Control``/``DeviceControl`` or a ``Query``/``RecordInfo`` for a channel that another device
carries. Each goes the way of an inbound INVITE (:mod:`gb28181.inbound`): the caller becomes a
principal (:meth:`InboundService.identify`), the authorizer decides and audits, a refusal is
``403`` with the rule in the reason phrase and a ``Warning`` header. Then:

* **DeviceControl.** Commands that move the camera (PTZ, drag zoom, precise PTZ, home position)
  go through control arbitration (第十六条: a higher level pre-empts, a level-1 control period
  refuses lower levels, with the remaining time in the refusal); other commands are decided as
  CONTROL, ``RecordCmd`` as RECORD. Allowed: the caller's MESSAGE is answered 200 at once (notes
  §4.1), the command is sent to the device carrying the channel, and for the commands a device
  answers with a ``Response`` (notes §4.7) that Response is relayed to the caller with the
  caller's SN.
* **RecordInfo.** Decided as PLAYBACK; the device's Response(s) are relayed with the caller's SN;
  a device that fails gets the caller a Response with ``Result`` ERROR.

The MESSAGE handlers answer later (they return None; :meth:`Signalling.respond`), since the
caller's identity may need the store (a certificate bound to its account).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from authz import Action

from . import manscdp
from .authorizer import AuthorizationDenied
from .calls import CallError
from .inbound import Authorization, CallerRefused, InboundService
from .queries import QueryError
from .registrar import Source
from .sip import SipRequest, SipResponse, make_response, new_tag

__all__ = ["Forwarder", "ForwardingService"]

log = logging.getLogger(__name__)

#: DeviceControl fields that move the camera: they go through control arbitration (第十六条).
_STEERING = ("ptz_cmd", "drag_zoom_in", "drag_zoom_out", "ptz_precise_ctrl", "home_position")
#: DeviceControl fields the device answers with a Response (notes §4.7) that we relay back.
_ANSWERED = ("record_cmd", "guard_cmd", "alarm_cmd", "home_position", "format_sd_card")


class Forwarder(Protocol):
    """What the service needs from :class:`gb28181.queries.QueryService`."""

    charsets: dict[str, manscdp.Charset]

    async def query(
        self,
        device_id: str,
        message: manscdp.Message,
        *,
        timeout: float | None = None,
        expected_parts: int = 1,
    ) -> Any: ...

    async def control(self, device_id: str, message: manscdp.Message) -> SipResponse: ...


class ForwardingService:
    """Forwards DeviceControl and RecordInfo from callers to the devices carrying the channels.

    :param inbound: who callers are, how they are refused and how to reach them.
    :param authorizer: decisions and control arbitration (audited).
    :param queries: sends to devices and awaits their answers (``QueryService``).
    :param locate: the device carrying a channel (None: unknown channel).
    """

    def __init__(
        self,
        inbound: InboundService,
        authorizer: Authorization,
        queries: Forwarder | None,
        locate: Callable[[str], str | None],
    ) -> None:
        self.inbound = inbound
        self.authorizer = authorizer
        self.queries = queries
        self.locate = locate
        self._tasks: set[asyncio.Task[Any]] = set()

    def install(self) -> None:
        """Take ``Control``/``DeviceControl`` and ``Query``/``RecordInfo`` MESSAGEs."""
        handlers = self.inbound.signalling.manscdp_handlers
        handlers[("Control", "DeviceControl")] = self.on_device_control
        handlers[("Query", "RecordInfo")] = self.on_record_info

    async def close(self) -> None:
        """Stop forwarding (platform shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def on_device_control(
        self, request: SipRequest, msg: manscdp.Message, source: Source, now: float
    ) -> SipResponse | None:
        """``Control``/``DeviceControl`` from a caller: decided, answered, forwarded."""
        if not isinstance(msg, manscdp.DeviceControl):
            return make_response(request, 400, "Not a DeviceControl", to_tag=new_tag())
        self._spawn(self._forward_control(request, msg, source))
        return None

    def on_record_info(
        self, request: SipRequest, msg: manscdp.Message, source: Source, now: float
    ) -> SipResponse | None:
        """``Query``/``RecordInfo`` from a caller: PLAYBACK decided, forwarded, relayed."""
        if not isinstance(msg, manscdp.RecordInfoQuery):
            return make_response(request, 400, "Not a RecordInfo query", to_tag=new_tag())
        self._spawn(self._forward_record_info(request, msg, source))
        return None

    async def _forward_control(
        self, request: SipRequest, msg: manscdp.DeviceControl, source: Source
    ) -> None:
        where = self.inbound.source_label(source)
        channel_id = msg.device_id
        try:
            principal = await self.inbound.identify(request, source)
            device_id = self._device_for(channel_id)
            if any(getattr(msg, name) is not None for name in _STEERING):
                result = self.authorizer.control(principal, channel_id, source=where)
                if not result.granted:
                    remaining = math.ceil(result.remaining)
                    raise AuthorizationDenied(
                        f"{remaining} s remaining: {result.reason}", result.rule
                    )
            else:
                action = Action.RECORD if msg.record_cmd is not None else Action.CONTROL
                decision = self.authorizer.decide(principal, action, channel_id, source=where)
                if not decision.allow:
                    raise AuthorizationDenied.from_decision(decision)
        except CallerRefused as exc:
            self.inbound.audit_refused(request, source, "sip.control", channel_id, exc)
            self.inbound.signalling.respond(request, self.inbound.refusal(request, exc))
            return
        except AuthorizationDenied as exc:
            self.inbound.signalling.respond(request, self.inbound.refusal(request, exc))
            return
        except CallError as exc:
            self.inbound.signalling.respond(request, make_response(request, 404, exc.reason[:80]))
            return
        self.inbound.signalling.respond(request, make_response(request, 200, to_tag=new_tag()))
        await self._forward(request, msg, device_id, source, answered=self._answered(msg))

    @staticmethod
    def _answered(msg: manscdp.DeviceControl) -> bool:
        return any(getattr(msg, name) is not None for name in _ANSWERED)

    async def _forward_record_info(
        self, request: SipRequest, msg: manscdp.RecordInfoQuery, source: Source
    ) -> None:
        channel_id = msg.device_id
        try:
            principal = await self.inbound.identify(request, source)
            device_id = self._device_for(channel_id)
            decision = self.authorizer.decide(
                principal, Action.PLAYBACK, channel_id, source=self.inbound.source_label(source)
            )
            if not decision.allow:
                raise AuthorizationDenied.from_decision(decision)
        except CallerRefused as exc:
            self.inbound.audit_refused(request, source, "sip.record-info", channel_id, exc)
            self.inbound.signalling.respond(request, self.inbound.refusal(request, exc))
            return
        except AuthorizationDenied as exc:
            self.inbound.signalling.respond(request, self.inbound.refusal(request, exc))
            return
        except CallError as exc:
            self.inbound.signalling.respond(request, make_response(request, 404, exc.reason[:80]))
            return
        self.inbound.signalling.respond(request, make_response(request, 200, to_tag=new_tag()))
        await self._forward(request, msg, device_id, source, answered=True)

    def _device_for(self, channel_id: str) -> str:
        device_id = self.locate(channel_id) if channel_id else None
        if device_id is None:
            raise CallError(404, "not_found", f"channel {channel_id or '?'} is not known")
        return device_id

    async def _forward(
        self,
        request: SipRequest,
        msg: manscdp.Message,
        device_id: str,
        source: Source,
        *,
        answered: bool,
    ) -> None:
        """Send ``msg`` to the device; relay its Response(s) with the caller's SN."""
        if self.queries is None:
            log.warning("no query service: %s from %s not forwarded", msg.cmd_type, source)
            return
        caller_id = request.from_.uri.user or ""
        try:
            if not answered:
                await self.queries.control(device_id, msg)
                return
            done = await self.queries.query(device_id, msg)
            replies: list[manscdp.Message] = list(done.messages)
        except QueryError as exc:
            log.info("forwarded %s to %s failed: %s", msg.cmd_type, device_id, exc)
            if not answered:
                return
            replies = [self._error_reply(msg)]
        for reply in replies:
            relayed = dataclasses.replace(reply, sn=msg.sn, device_id=msg.device_id)
            body = manscdp.encode(relayed, self._charset(caller_id))
            out = self.inbound.message_to(caller_id, source, body)
            await self.inbound.send_to_caller(source, out, f"relayed {msg.cmd_type}")

    @staticmethod
    def _error_reply(msg: manscdp.Message) -> manscdp.Message:
        if isinstance(msg, manscdp.RecordInfoQuery):
            return manscdp.RecordInfoResponse(
                device_id=msg.device_id, sn=msg.sn, sum_num=0, result="ERROR"
            )
        return manscdp.ResultResponse(
            cmd_type=msg.cmd_type, device_id=msg.device_id, sn=msg.sn, result="ERROR"
        )

    def _charset(self, caller_id: str) -> manscdp.Charset:
        if self.queries is not None:
            return self.queries.charsets.get(caller_id, manscdp.Charset.GB2312)
        return manscdp.Charset.GB2312

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("forwarding task failed", exc_info=task.exception())
