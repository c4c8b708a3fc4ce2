"""Queries and controls sent to devices, awaited until the device answers (asyncio glue).

A MANSCDP query is two exchanges (GB/T 28181-2016 §9.1, notes §4.1): our MESSAGE, answered
200 OK at SIP level, then the device's own MESSAGE with root ``Response``, the same CmdType and
SN. The :class:`~gb28181.correlator.QueryCorrelator` matches the second to the first (sans-IO);
this module is the glue around it: it allocates the SN, encodes the body in the device's charset,
sends the request over the device's registered transport, arms one timer for the correlator's
deadline, and resolves one future per query.

A query ends in exactly one of: a :class:`~gb28181.correlator.QueryDone` (complete, or partial
with what arrived), :class:`DeviceOffline` (not registered or not online: HTTP 409),
:class:`QueryTimeout` (nothing came back in time: HTTP 504) or :class:`QueryRejected` (the device
refused the request at SIP level or answered ``Result`` ERROR: HTTP 502).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Protocol

from . import manscdp
from .correlator import (
    CorrelatorConfig,
    CorrelatorEvent,
    QueryCorrelator,
    QueryDone,
    ResponseUnmatched,
)
from .deadline_timer import DeadlineTimer
from .registrar import Registrar
from .signalling import DeviceUnreachable, SipRequestTimeout
from .sip import SipRequest, SipResponse

__all__ = [
    "MANSCDP_CONTENT_TYPE",
    "DeviceOffline",
    "QueryError",
    "QueryMetrics",
    "QueryRejected",
    "QueryService",
    "QueryTimeout",
    "RequestSender",
]

log = logging.getLogger(__name__)

#: Content type we send; the spelling most devices send themselves (notes §4.1).
MANSCDP_CONTENT_TYPE = "Application/MANSCDP+xml"


class QueryError(Exception):
    """A query or control did not get an answer; ``status`` is the HTTP status to report."""

    status = 502


class DeviceOffline(QueryError):
    """The device is not registered or not online, or its connection is gone."""

    status = 409


class QueryTimeout(QueryError):
    """Nothing (or no final SIP response) arrived before the deadline."""

    status = 504


class QueryRejected(QueryError):
    """The device refused the request (SIP error status or ``Result`` ERROR)."""

    status = 502


class RequestSender(Protocol):
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


class QueryMetrics(Protocol):
    """What the service reports; :class:`gb28181.metrics.Metrics` implements it."""

    def query(self, cmd_type: str, outcome: str) -> None: ...


_Key = tuple[str, str, int]


class QueryService:
    """Sends MANSCDP queries and controls and awaits their answers.

    :param sender: builds and sends SIP requests (``Signalling``).
    :param registrar: tells whether a device is online.
    :param metrics: counts queries by CmdType and outcome.
    :param clock: the platform clock (``now`` for the correlator).
    :param default_timeout: seconds a query waits for the device's Response.
    """

    def __init__(
        self,
        sender: RequestSender,
        registrar: Registrar,
        metrics: QueryMetrics,
        *,
        clock: Callable[[], float] = time.time,
        default_timeout: float = 10.0,
        correlator_config: CorrelatorConfig | None = None,
    ) -> None:
        self.sender = sender
        self.registrar = registrar
        self.metrics = metrics
        self.clock = clock
        self.default_timeout = default_timeout
        self.correlator = QueryCorrelator(correlator_config)
        #: Charset each device last used; what we send it is encoded the same way.
        self.charsets: dict[str, manscdp.Charset] = {}
        #: Told (device ID, CmdType, error or None, now) after each query (faults).
        self.listeners: list[Callable[[str, str, str | None, float], None]] = []
        #: Round-trip times (seconds) of each device's recent answers (diagnosis view).
        self.round_trips: dict[str, list[float]] = {}
        self._waiting: dict[_Key, asyncio.Future[QueryDone]] = {}
        self._timer = DeadlineTimer(self._on_timer, clock)

    # -- input ------------------------------------------------------------------------------

    def receive(self, message: manscdp.Message, sender_id: str, now: float) -> None:
        """Offer a Response received in a MESSAGE (already answered 200 OK)."""
        if message.charset is not None and sender_id:
            self.charsets[sender_id] = message.charset
        self._dispatch(self.correlator.receive(message, sender_id, now))
        self._rearm()

    def on_response(self, sender_id: str, message: manscdp.Message, now: float) -> None:
        """:meth:`receive` in the argument order of ``Signalling.on_manscdp``."""
        self.receive(message, sender_id, now)

    def remember_charset(self, device_id: str, charset: manscdp.Charset | None) -> None:
        """Note the charset a device used in any message it sent."""
        if charset is not None:
            self.charsets[device_id] = charset

    # -- queries ----------------------------------------------------------------------------

    async def query(
        self,
        device_id: str,
        message: manscdp.Message,
        *,
        timeout: float | None = None,
        expected_parts: int = 1,
    ) -> QueryDone:
        """Send ``message`` (a Query) to ``device_id`` and await its Response(s).

        The SN is allocated here (whatever ``message.sn`` holds is replaced); the body's
        DeviceID (``message.device_id``) may name one of the device's channels, and the request
        is then addressed to that channel through the device.

        :returns: the answer; ``partial`` is set when only part of a multi-part answer came.
        :raises DeviceOffline: the device is not online (or its connection closed).
        :raises QueryTimeout: no Response at all before the deadline.
        :raises QueryRejected: SIP error status, or ``Result`` ERROR.
        """
        self._check_online(device_id)
        target = message.device_id or device_id
        cmd_type = message.cmd_type
        sn = self.correlator.allocate_sn(target, cmd_type)
        message = dataclasses.replace(message, sn=sn, device_id=target)
        request = self._request(device_id, target, message)
        now = self.clock()
        handle = self.correlator.expect(
            target,
            cmd_type,
            sn,
            now,
            timeout=self.default_timeout if timeout is None else timeout,
            expected_parts=expected_parts,
        )
        key = (target, cmd_type.lower(), sn)
        fut: asyncio.Future[QueryDone] = asyncio.get_running_loop().create_future()
        self._waiting[key] = fut
        if handle.done is not None:
            fut.set_result(handle.done)
        self._rearm()
        self.metrics.query(cmd_type, "sent")
        send = asyncio.create_task(self.sender.send_to_device(request, device_id))
        send.add_done_callback(lambda task: self._sent(key, task))
        try:
            done = await fut
            result = self._outcome(device_id, done)
        except QueryError as exc:
            if not isinstance(exc, DeviceOffline):
                self._tell(device_id, cmd_type, str(exc))
            raise
        finally:
            self._waiting.pop(key, None)
            if not send.done():
                # The answer came before our own request's final response (UDP reordering).
                send.add_done_callback(_consume)
        self._tell(device_id, cmd_type, None)
        return result

    def _tell(self, device_id: str, cmd_type: str, error: str | None) -> None:
        now = self.clock()
        for listener in self.listeners:
            try:
                listener(device_id, cmd_type, error, now)
            except Exception:
                log.exception("query listener failed device=%s", device_id)

    async def control(self, device_id: str, message: manscdp.Message) -> SipResponse:
        """Send a Control (or Notify) ``message`` and await the SIP final response only.

        Most controls (PTZ, TeleBoot) have no MANSCDP Response (notes §4.7): the 200 OK is all
        the device says.

        :raises DeviceOffline, QueryTimeout, QueryRejected: as for :meth:`query`.
        """
        self._check_online(device_id)
        target = message.device_id or device_id
        sn = self.correlator.allocate_sn(target, message.cmd_type)
        return await self.send(device_id, dataclasses.replace(message, sn=sn, device_id=target))

    async def send(self, device_id: str, message: manscdp.Message) -> SipResponse:
        """Send ``message`` as it is (SN included: a Response to the device's Notify carries the
        Notify's SN) and await the SIP final response.

        :raises DeviceOffline, QueryTimeout, QueryRejected: as for :meth:`query`.
        """
        target = message.device_id or device_id
        request = self._request(device_id, target, message)
        self.metrics.query(message.cmd_type, "sent")
        try:
            response = await self.sender.send_to_device(request, device_id)
        except QueryError as exc:
            self.metrics.query(message.cmd_type, _outcome_label(exc))
            raise
        except Exception as exc:
            err = self._map_send_error(exc)
            self.metrics.query(message.cmd_type, _outcome_label(err))
            raise err from exc
        if response.status >= 300:
            self.metrics.query(message.cmd_type, "failed")
            raise QueryRejected(f"device answered {response.status} {response.reason}".strip())
        self.metrics.query(message.cmd_type, "answered")
        return response

    def close(self) -> None:
        """Fail every waiting query (shutdown)."""
        self._timer.cancel()
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(QueryTimeout("platform shutting down"))
        self._waiting.clear()

    # -- internals --------------------------------------------------------------------------

    def _check_online(self, device_id: str) -> None:
        st = self.registrar.get(device_id)
        if st is None or not st.registered:
            raise DeviceOffline(f"device {device_id} is not registered")
        if not st.record.online:
            raise DeviceOffline(f"device {device_id} is offline")

    def _request(self, device_id: str, target: str, message: manscdp.Message) -> SipRequest:
        charset = self.charsets.get(device_id, manscdp.Charset.GB2312)
        body = manscdp.encode(message, charset)
        try:
            return self.sender.new_request(
                "MESSAGE", target, device_id, content_type=MANSCDP_CONTENT_TYPE, body=body
            )
        except Exception as exc:
            raise self._map_send_error(exc) from exc

    @staticmethod
    def _map_send_error(exc: BaseException) -> QueryError:
        if isinstance(exc, DeviceUnreachable):
            return DeviceOffline(str(exc))
        if isinstance(exc, SipRequestTimeout):
            return QueryTimeout("no SIP response from the device")
        if isinstance(exc, QueryError):
            return exc
        return QueryRejected(f"request could not be sent: {exc}")

    def _sent(self, key: _Key, task: asyncio.Task[SipResponse]) -> None:
        fut = self._waiting.get(key)
        if task.cancelled():
            return
        exc = task.exception()
        error: QueryError | None = None
        if exc is not None:
            error = self._map_send_error(exc)
        elif task.result().status >= 300:
            response = task.result()
            error = QueryRejected(f"device answered {response.status} {response.reason}".strip())
        if error is None or fut is None or fut.done():
            return
        self.correlator.cancel(key[0], key[1], key[2], self.clock())
        fut.set_exception(error)
        self._rearm()

    def _outcome(self, device_id: str, done: QueryDone) -> QueryDone:
        cmd_type = done.cmd_type
        if not done.messages:
            self.metrics.query(cmd_type, "timeout")
            raise QueryTimeout(f"device {device_id} did not answer {cmd_type}: {done.reason}")
        if done.result is not None and done.result.strip().upper() == "ERROR":
            self.metrics.query(cmd_type, "failed")
            raise QueryRejected(f"device {device_id} answered {cmd_type} with Result ERROR")
        self.metrics.query(cmd_type, "partial" if done.partial else "answered")
        trips = self.round_trips.setdefault(device_id, [])
        trips.append(max(0.0, done.finished - done.started))
        if len(trips) > 8:
            del trips[0]
        return done

    def _dispatch(self, events: list[CorrelatorEvent]) -> None:
        for event in events:
            if isinstance(event, QueryDone):
                fut = self._waiting.get((event.device_id, event.cmd_type.lower(), event.sn))
                if fut is not None and not fut.done():
                    fut.set_result(event)
            elif isinstance(event, ResponseUnmatched):
                msg = event.message
                log.info(
                    "unmatched MANSCDP %s %s SN=%s from %s: %s",
                    msg.root.value,
                    msg.cmd_type,
                    msg.sn,
                    event.sender_id,
                    event.reason,
                )

    def _rearm(self) -> None:
        self._timer.update(self.correlator.get_timer())

    def _on_timer(self, now: float) -> None:
        self._dispatch(self.correlator.handle_timer(now))
        self._rearm()


def _outcome_label(exc: QueryError) -> str:
    if isinstance(exc, QueryTimeout):
        return "timeout"
    if isinstance(exc, DeviceOffline):
        return "offline"
    return "failed"


def _consume(task: asyncio.Task[SipResponse]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved
