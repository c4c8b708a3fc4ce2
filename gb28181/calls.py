"""Live play: INVITE a channel, receive its PS/RTP in the media worker, share it (notes §6).

One :class:`PlaySession` per channel being watched. The first :meth:`CallService.play` of a
channel allocates a receive port and an SSRC (``y=``, notes §6.3: ``0`` + domain digits 4-8 +
a per-domain sequence), opens the receiver *before* the INVITE (notes §6.4), sends the INVITE
(``s=Play``, ``Subject``, SDP offer) to the channel through its device, ACKs the 200, re-keys
the receiver when the answer's ``y=`` differs (devices that send their own SSRC), and for TCP
active connects to the address of the answer. Later plays of the same channel join the running
session as further consumers (one camera stream, many viewers); when the last consumer leaves,
BYE follows after an idle delay, so a viewer who reloads the page does not re-invite the camera.
A BYE from the device, or no media for the worker's timeout, ends the session (not while a
Playback is paused: :meth:`CallService.set_paused`).

The media worker (:class:`media.worker.RelayWorker`) runs its own thread; its commands are short
and go through :meth:`RelayWorker.call`. Its events are polled by :meth:`CallService.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from media.relay import KeyframeSent, StreamStarted, StreamTimedOut
from media.snapshot import DEFAULT_QUALITY, SnapshotError, keyframe_jpeg
from media.worker import Mode, RelayWorker, WorkerError

from .metrics import MediaSample, StreamSample
from .signalling import DeviceUnreachable, Signalling, SipRequestTimeout
from .sip import (
    Dialog,
    SdpError,
    SipError,
    SipRequest,
    SipResponse,
    TransactionKey,
    build_offer,
    make_response,
    make_ssrc,
    new_tag,
    parse_sdp,
    ssrc_to_int,
)

__all__ = ["STREAM_MODES", "CallError", "CallService", "Consumer", "PlaySession"]

log = logging.getLogger(__name__)

#: Stream modes (notes §6.4) and the worker's receiver mode for each.
STREAM_MODES = {
    "UDP": Mode.UDP,
    "TCP-PASSIVE": Mode.TCP_PASSIVE,
    "TCP-ACTIVE": Mode.TCP_ACTIVE,
}
#: Seconds a BYE may take before we give up on the device's answer.
BYE_TIMEOUT = 5.0
#: Seconds an INVITE we gave up on is remembered, so that a late 200 is ACKed and BYEd
#: (64*T1 covers its transaction's whole life).
ABANDONED_KEEP = 64.0
#: Seconds between polls of the worker's event queue.
EVENT_POLL = 0.2
#: Seconds between restarts of a receiver's no-media clock while its INVITE is unanswered.
HOLD_INTERVAL = 1.0
# Seconds between samples of the worker's counters for the media metrics.
MEDIA_SAMPLE = 5.0
_MEDIA_COUNTERS = (
    "packets",
    "bytes",
    "forwarded",
    "lost",
    "reordered",
    "duplicates",
    "keyframes",
    "frames",
)


class CallError(Exception):
    """A play could not be done; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


@dataclass(slots=True)
class Consumer:
    """One viewer of a session, with the output it asked for (if any)."""

    consumer_id: int
    output: tuple[str, int, str] | None = None
    output_id: int | None = None
    #: The port we listen on for a ``tcp-passive`` output (the consumer connects to it).
    local_port: int | None = None


@dataclass(eq=False)
class PlaySession:
    """One live stream of one channel."""

    session_id: str
    channel_id: str
    device_id: str
    ssrc: str
    stream_mode: str
    port: int
    media_id: int
    created_at: float
    state: str = "inviting"
    dialog: Dialog | None = None
    answer_ssrc: str | None = None
    device_media: tuple[str, int] | None = None
    started_at: float | None = None
    #: When the first keyframe went out to a consumer (the end of the start latency).
    keyframe_at: float | None = None
    consumers: dict[int, Consumer] = field(default_factory=dict)
    ready: asyncio.Future[None] | None = None
    idle: asyncio.TimerHandle | None = None
    end_reason: str | None = None
    #: ``Play`` (shared live stream) or ``Playback``/``Download`` of the device's own storage
    #: (one viewer, not shared; ``time_range`` is the ``t=`` line, notes §6.9).
    kind: str = "Play"
    time_range: tuple[int, int] | None = None
    download_speed: int | None = None
    #: A Playback the viewer paused (MANSRTSP ``PAUSE`` forwarded): the no-media clock stops.
    paused: bool = False


class CallService:
    """Plays channels, shares their streams, and hangs up when nobody watches.

    :param locate: the device that carries a channel (None: unknown channel).
    :param stream_mode: the stream mode of a device (``UDP``, ``TCP-PASSIVE``, ``TCP-ACTIVE``).
    :param media_host: the address devices send media to (``c=`` of our offer).
    """

    def __init__(
        self,
        signalling: Signalling,
        worker: RelayWorker,
        locate: Callable[[str], str | None],
        *,
        server_id: str,
        domain: str,
        media_host: str,
        stream_mode: Callable[[str], str] = lambda device_id: "UDP",
        invite_timeout: float = 15.0,
        platform_invite_timeout: float | None = None,
        idle_delay: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signalling = signalling
        self.worker = worker
        self.locate = locate
        self.server_id = server_id
        self.domain = domain
        self.media_host = media_host
        self.stream_mode = stream_mode
        self.invite_timeout = invite_timeout
        #: For lower platforms (type 200): they invite their own device before answering and
        #: often take tens of seconds (notes §9).
        self.platform_invite_timeout = platform_invite_timeout
        self.idle_delay = idle_delay
        self.clock = clock
        self.sessions: dict[str, PlaySession] = {}
        self._by_channel: dict[str, PlaySession] = {}
        self._by_call_id: dict[str, PlaySession] = {}
        self._by_media: dict[int, PlaySession] = {}
        # INVITEs we gave up on (call-id -> request, device, when): a 200 that
        # still arrives is ACKed and then BYEd (RFC 3261 §15, notes §6.2).
        self._abandoned: dict[str, tuple[SipRequest, str, float]] = {}
        self._seq = itertools.count(1)
        self._consumer_ids = itertools.count(1)
        # Media metrics: totals grow by the deltas of each session's worker counters, so
        # they survive the session (its final counters are taken when it is closed).
        self.media = MediaSample()
        self._media_last: dict[int, tuple[float, dict[str, Any]]] = {}
        self._bitrates: dict[int, float] = {}
        self._sampled_at: float | None = None
        signalling.metrics.bind_media(self.media_sample)
        #: Told (session, reason) when a session ends, whatever ended it (inbound calls BYE
        #: their callers).
        self.on_end: list[Callable[[PlaySession, str], None]] = []

    # -- public API -------------------------------------------------------------------------

    async def play(
        self, channel_id: str, output: tuple[str, int, str] | None = None, *, ssrc: int = 0
    ) -> tuple[PlaySession, Consumer]:
        """Start (or join) the live stream of ``channel_id``; return it and the new consumer.

        :param output: ``(host, port, transport)`` to forward the stream to (``udp``/``tcp``).
        :param ssrc: the RTP SSRC the output carries (the ``y=`` a SIP caller asked for).
        :raises CallError: unknown channel, device unreachable, refused, no answer in time.
        """
        session = self._by_channel.get(channel_id)
        if session is None:
            session = self._open(channel_id)
            session.ready = asyncio.get_running_loop().create_future()
            try:
                await self._invite(session)
            except BaseException as exc:
                # Joiners waiting on ``ready`` see the session ended (below), not our error.
                session.ready.set_result(None)
                await self._end(session, str(exc) or type(exc).__name__, bye=False)
                raise
            session.ready.set_result(None)
        elif session.ready is not None and not session.ready.done():
            await asyncio.wait([session.ready])
        if session.state != "playing":
            raise CallError(409, "ended", f"session of {channel_id} ended: {session.end_reason}")
        return session, self.join(session, output, ssrc=ssrc)

    async def history(
        self,
        channel_id: str,
        start: int,
        end: int,
        *,
        download: bool = False,
        speed: int = 1,
        output: tuple[str, int, str] | None = None,
        ssrc: int = 0,
    ) -> tuple[PlaySession, Consumer]:
        """Play back (or download) ``start..end`` (Unix seconds) from the device's own storage.

        The INVITE says ``s=Playback`` or ``s=Download``, ``u=<channel>:0``, ``t=start end``,
        a history SSRC (leading 1) and, for a download, ``a=downloadspeed`` (notes §6.9). Unlike
        live play the session is never shared: it has one consumer, ends when the device sends
        MediaStatus 121 (:meth:`on_media_status`) or BYE, or when :meth:`stop` is called.

        :raises CallError: as :meth:`play`.
        """
        session = self._open(channel_id, kind="Download" if download else "Playback")
        session.time_range = (int(start), int(end))
        session.download_speed = max(int(speed), 1) if download else None
        try:
            await self._invite(session)
            return session, self.join(session, output, ssrc=ssrc)
        except BaseException as exc:
            await self._end(session, str(exc) or type(exc).__name__, bye=session.dialog is not None)
            raise

    async def info(self, session_id: str, body: bytes) -> SipResponse:
        """Send a MANSRTSP control body (notes §7) in the session's dialog; return the answer.

        :raises CallError: no such session, no dialog, or no answer in time.
        """
        session = self._get(session_id)
        if session.dialog is None:
            raise CallError(409, "no_dialog", f"session {session_id} has no dialog")
        try:
            request = session.dialog.create_request(
                "INFO", headers=[("Content-Type", "Application/MANSRTSP")], body=body
            )
            return await asyncio.wait_for(
                self.signalling.send_to_device(request, session.device_id), BYE_TIMEOUT
            )
        except DeviceUnreachable as exc:
            raise CallError(503, "device_unreachable", str(exc)) from None
        except (TimeoutError, SipRequestTimeout):
            raise CallError(504, "info_timeout", "no answer to INFO") from None
        except SipError as exc:
            raise CallError(409, "no_dialog", str(exc)) from None

    def set_paused(self, session_id: str, paused: bool) -> None:
        """Stop (``paused``) or restart the no-media clock of a Playback session.

        A device told to pause (MANSRTSP ``PAUSE`` in the session's dialog, notes §7) sends
        nothing until the next ``PLAY``; that silence must not end the session as a dead
        stream. Restarted, the clock counts from now.

        :raises CallError: no such session (404).
        """
        session = self._get(session_id)
        if session.paused == paused:
            return
        session.paused = paused
        media_id = session.media_id
        worker = self.worker
        command = worker.pause_timeout if paused else worker.resume_timeout
        what = "paused" if paused else "resumed"
        try:
            worker.call(lambda: command(media_id))
        except WorkerError as exc:
            log.info("no-media clock not %s session=%s: %s", what, session_id, exc)
            return
        log.info("no-media clock %s channel=%s session=%s", what, session.channel_id, session_id)

    def on_media_status(
        self, request: SipRequest, msg: object, source: object, now: float
    ) -> SipResponse:
        """MESSAGE Notify/MediaStatus from a device (notes §4.12): NotifyType 121 ends the
        Playback/Download session of the same Call-ID (From may name the channel, not the
        device, so the Call-ID is what routes it), with a BYE. Other types are logged."""
        session = self._by_call_id.get(request.call_id)
        notify_type = str(getattr(msg, "notify_type", "") or "")
        if session is None:
            log.info("MediaStatus %s for no session call-id=%s", notify_type, request.call_id)
            return make_response(request, 200, to_tag=request.to.tag or new_tag())
        if notify_type == "121":
            log.info("end of file channel=%s session=%s", session.channel_id, session.session_id)
            asyncio.get_running_loop().create_task(self._end(session, "end of file", bye=True))
        else:
            log.info("MediaStatus %s ignored channel=%s", notify_type, session.channel_id)
        return make_response(request, 200, to_tag=request.to.tag or new_tag())

    def join(
        self, session: PlaySession, output: tuple[str, int, str] | None, *, ssrc: int = 0
    ) -> Consumer:
        """Add a consumer (and its output) to a playing session; cancels a pending BYE."""
        consumer = Consumer(next(self._consumer_ids), output)
        if output is not None:
            host, port, transport = output
            try:
                output_id = consumer.output_id = self.worker.call(
                    lambda: self.worker.add_output(session.media_id, (host, port), transport, ssrc)
                )
                if transport in ("tcp-passive", "tcp_passive"):
                    info = self.worker.call(
                        lambda: self.worker.output_info(session.media_id, output_id)
                    )
                    consumer.local_port = int(info["port"])
            except WorkerError as exc:
                raise CallError(400, "bad_output", str(exc)) from None
        if session.idle is not None:
            session.idle.cancel()
            session.idle = None
        session.consumers[consumer.consumer_id] = consumer
        return consumer

    def leave(self, session_id: str, consumer_id: int) -> None:
        """Remove one consumer; the last one leaving schedules BYE after the idle delay."""
        session = self._get(session_id)
        consumer = session.consumers.pop(consumer_id, None)
        if consumer is None:
            raise CallError(404, "not_found", f"session {session_id} has no consumer {consumer_id}")
        if consumer.output_id is not None:
            output_id = consumer.output_id
            with contextlib.suppress(WorkerError):
                self.worker.call(lambda: self.worker.remove_output(session.media_id, output_id))
        if not session.consumers and session.idle is None:
            loop = asyncio.get_running_loop()
            session.idle = loop.call_later(
                self.idle_delay,
                lambda: loop.create_task(self._end(session, "no consumers", bye=True)),
            )

    async def stop(self, session_id: str, reason: str = "stopped") -> None:
        """End a session now: BYE to the device, receiver closed, consumers dropped."""
        await self._end(self._get(session_id), reason, bye=True)

    async def close(self) -> None:
        """End every session (platform shutdown)."""
        for session in list(self.sessions.values()):
            await self._end(session, "shutdown", bye=True)

    def describe(self, session: PlaySession) -> dict[str, Any]:
        """The public view of a session (the HTTP API's JSON)."""
        try:
            stats: dict[str, Any] | None = self.worker.call(
                lambda: self.worker.stats(session.media_id)
            )
        except WorkerError:
            stats = None
        return {
            "id": session.session_id,
            "channel": session.channel_id,
            "device": session.device_id,
            "kind": session.kind,
            "state": session.state,
            "ssrc": session.ssrc,
            "answer_ssrc": session.answer_ssrc,
            "stream_mode": session.stream_mode,
            "receive": {"host": self.media_host, "port": session.port},
            "device_media": list(session.device_media) if session.device_media else None,
            "outputs": [
                {
                    "consumer": c.consumer_id,
                    "addr": c.output[0],
                    "port": c.output[1],
                    "transport": c.output[2],
                }
                for c in session.consumers.values()
                if c.output is not None
            ],
            "consumers": len(session.consumers),
            "stats": stats,
        }

    async def snapshot(self, session_id: str, quality: int = DEFAULT_QUALITY) -> bytes:
        """A JPEG of the session's latest keyframe (its GOP cache), decoded off the loop.

        :raises CallError: 404 no such session, 409 no keyframe received yet (or none that
            decodes).
        """
        session = self._get(session_id)
        try:
            payloads = self.worker.call(lambda: self.worker.gop_payloads(session.media_id))
        except WorkerError:
            payloads = []
        if not payloads:
            raise CallError(409, "no_keyframe", "no keyframe yet")
        try:
            return await asyncio.to_thread(keyframe_jpeg, payloads, quality=quality)
        except SnapshotError as exc:
            raise CallError(409, "no_keyframe", f"no keyframe yet: {exc}") from None

    # -- SIP: BYE from the device -----------------------------------------------------------

    def on_bye(self, request: SipRequest, source: object, now: float) -> SipResponse:
        """A BYE from the device ends its session (the Signalling's ``BYE`` handler)."""
        session = self._by_call_id.get(request.call_id)
        if session is None:
            return make_response(request, 481, to_tag=request.to.tag or new_tag())
        asyncio.get_running_loop().create_task(self._end(session, "BYE from device", bye=False))
        return make_response(request, 200)

    # -- media events -----------------------------------------------------------------------

    async def run(self) -> None:
        """Poll the worker's events: first packet, no-media timeout (ends the session)."""
        while True:
            self.poll_events()
            now = self.clock()
            if self._sampled_at is None or now - self._sampled_at >= MEDIA_SAMPLE:
                self.sample_media()
            await asyncio.sleep(EVENT_POLL)

    def sample_media(self) -> None:
        """Add the worker's counters since the last sample to the media totals."""
        now = self.clock()
        self._sampled_at = now
        if not self._by_media:
            return
        try:
            stats: dict[str, Any] = self.worker.call(lambda: self.worker.stats())
        except WorkerError:
            return
        for key, session_stats in stats.get("sessions", {}).items():
            media_id = int(key)
            if media_id in self._by_media:
                self._account(media_id, session_stats, now)

    def media_sample(self) -> MediaSample:
        """The media metrics as last sampled, with live session and consumer counts."""
        m = self.media
        live = list(self._by_media.items())
        m.sessions = len(live)
        m.consumers = sum(len(s.consumers) for _, s in live)
        m.streams = [
            StreamSample(
                s.channel_id,
                self._bitrates.get(mid, 0.0),
                len(s.consumers),
                float(self._media_last.get(mid, (0.0, {}))[1].get("fps") or 0.0),
            )
            for mid, s in live
        ]
        return m

    def _account(self, media_id: int, stats: dict[str, Any], now: float) -> None:
        last = self._media_last.get(media_id)
        prev = last[1] if last is not None else {}
        m = self.media
        # Totals grow from each counter's high-water mark: loss can shrink when a late packet
        # fills a gap, and counting from the lower value would count that gap twice when the
        # next real loss brings it back up.
        seen = dict(stats)
        for name in _MEDIA_COUNTERS:
            current, before = int(stats.get(name) or 0), int(prev.get(name) or 0)
            if current > before:
                setattr(m, name, getattr(m, name) + current - before)
            else:
                seen[name] = before
        prev_drops: dict[str, int] = prev.get("drops") or {}
        for reason, count in (stats.get("drops") or {}).items():
            delta = int(count) - int(prev_drops.get(reason, 0))
            if delta > 0:
                m.drops[str(reason)] = m.drops.get(str(reason), 0) + delta
        if last is not None and now > last[0]:
            sent = int(stats.get("bytes") or 0) - int(prev.get("bytes") or 0)
            self._bitrates[media_id] = max(sent, 0) * 8 / (now - last[0])
        self._media_last[media_id] = (now, seen)

    def poll_events(self) -> None:
        """Handle every event the worker has queued."""
        while True:
            try:
                media_id, event = self.worker.events.get_nowait()
            except queue.Empty:
                return
            session = self._by_media.get(media_id)
            if session is None:
                continue
            if isinstance(event, StreamStarted):
                session.started_at = self.clock()
                # created_at is taken as the INVITE is built and sent.
                self.signalling.metrics.media_start_seconds.observe(
                    max(session.started_at - session.created_at, 0.0)
                )
                log.info("media started channel=%s ssrc=%d", session.channel_id, event.ssrc)
            elif isinstance(event, KeyframeSent) and session.keyframe_at is None:
                session.keyframe_at = self.clock()
                self.signalling.metrics.media_keyframe_seconds.observe(
                    max(session.keyframe_at - session.created_at, 0.0)
                )
            elif isinstance(event, StreamTimedOut):
                reason = "media stopped" if event.started else "no media"
                log.warning(
                    "%s channel=%s session=%s", reason, session.channel_id, session.session_id
                )
                asyncio.get_running_loop().create_task(self._end(session, reason, bye=True))

    # -- internals --------------------------------------------------------------------------

    def _get(self, session_id: str) -> PlaySession:
        session = self.sessions.get(session_id)
        if session is None:
            raise CallError(404, "not_found", f"no session {session_id}")
        return session

    def _next_ssrc(self, history: bool = False) -> str:
        in_use = {s.ssrc for s in self.sessions.values()}
        for _ in range(10000):
            ssrc = make_ssrc(self.domain, next(self._seq) % 10000, history=history)
            if ssrc not in in_use:
                return ssrc
        kind = "history" if history else "live"
        raise CallError(503, "no_ssrc", f"all 10000 {kind} SSRCs of the domain are in use")

    def _open(self, channel_id: str, kind: str = "Play") -> PlaySession:
        device_id = self.locate(channel_id)
        if device_id is None:
            raise CallError(404, "not_found", f"channel {channel_id} is not known")
        mode_name = self.stream_mode(device_id).upper()
        mode = STREAM_MODES.get(mode_name)
        if mode is None:
            raise CallError(500, "bad_config", f"unknown stream mode {mode_name!r}")
        ssrc = self._next_ssrc(history=kind != "Play")
        try:
            opened = self.worker.call(
                lambda: self.worker.open_receiver(mode, None, ssrc_to_int(ssrc), None)
            )
        except (WorkerError, RuntimeError) as exc:
            raise CallError(503, "no_port", f"no receive port: {exc}") from None
        session = PlaySession(
            session_id=f"{channel_id}-{ssrc}",
            channel_id=channel_id,
            device_id=device_id,
            ssrc=ssrc,
            stream_mode=mode_name,
            port=int(opened["port"]),
            media_id=int(opened["session"]),
            created_at=self.clock(),
            kind=kind,
        )
        self.sessions[session.session_id] = session
        if kind == "Play":
            self._by_channel[channel_id] = session
        self._by_media[session.media_id] = session
        return session

    async def _invite(self, session: PlaySession) -> None:
        sig = self.signalling
        start, stop = session.time_range or (0, 0)
        offer = build_offer(
            session.kind,
            self.server_id,
            self.media_host,
            session.port,
            session.stream_mode,
            session.ssrc,
            start,
            stop,
            channel_id=None if session.kind == "Play" else session.channel_id,
            download_speed=session.download_speed,
        )
        try:
            request = sig.new_request(
                "INVITE",
                session.channel_id,
                session.device_id,
                content_type="APPLICATION/SDP",
                body=offer.serialize(),
                headers=[
                    ("Contact", sig.contact()),
                    ("Subject", f"{session.channel_id}:{session.ssrc},{self.server_id}:0"),
                ],
            )
            self._by_call_id[request.call_id] = session
            timeout = self.invite_timeout_of(session.device_id)
            holding = asyncio.get_running_loop().create_task(self._hold_receiver(session))
            try:
                response = await asyncio.wait_for(
                    sig.send_to_device(request, session.device_id), timeout
                )
            finally:
                holding.cancel()
            self._expect_media(session)  # the no-media clock runs from the answer
        except DeviceUnreachable as exc:
            raise CallError(503, "device_unreachable", str(exc)) from None
        except (TimeoutError, SipRequestTimeout):
            self._cancel(request)
            self._abandon(request, session.device_id)
            raise CallError(
                504,
                "invite_timeout",
                f"no final answer to INVITE in {self.invite_timeout_of(session.device_id):g} s",
            ) from None
        if response.status >= 300:
            raise CallError(
                502, "invite_refused", f"device answered {response.status} {response.reason}"
            )
        try:
            session.dialog = Dialog.as_uac(request, response)
        except SipError as exc:
            raise CallError(502, "bad_answer", f"200 OK unusable: {exc}") from None
        self._ack(session.dialog, session.device_id)
        try:
            self._apply_answer(session, response)
        except (SdpError, CallError) as exc:
            await self._bye(session)
            raise CallError(502, "bad_answer", f"SDP answer unusable: {exc}") from None
        session.state = "playing"
        log.info(
            "playing channel=%s device=%s ssrc=%s port=%d mode=%s",
            session.channel_id,
            session.device_id,
            session.ssrc,
            session.port,
            session.stream_mode,
        )

    async def _hold_receiver(self, session: PlaySession) -> None:
        """Keep the receiver's no-media clock from running out while the INVITE is being
        answered (a lower platform may take longer than the no-media timeout)."""
        while True:
            await asyncio.sleep(HOLD_INTERVAL)
            self._expect_media(session)

    def _expect_media(self, session: PlaySession) -> None:
        media_id = session.media_id
        try:
            self.worker.call(lambda: self.worker.expect_media(media_id))
        except WorkerError as exc:
            log.debug("no-media clock not restarted session=%s: %s", session.session_id, exc)

    def invite_timeout_of(self, device_id: str) -> float:
        """Seconds an INVITE through ``device_id`` may take: longer for a lower platform (ID
        type 200, GB/T 28181 Annex D), which bridges its own device first."""
        if self.platform_invite_timeout is not None and device_id[10:13] == "200":
            return self.platform_invite_timeout
        return self.invite_timeout

    def _cancel(self, invite: SipRequest) -> None:
        """CANCEL an INVITE we gave up on (RFC 3261 §9.1), so that a late 200 does not leave
        the device streaming to a closed port. The layer holds it until a 1xx has come and
        drops it if the INVITE has ended."""
        sig = self.signalling
        vias = invite.headers.get_all("Via")
        branch = vias[0].partition(";branch=")[2].partition(";")[0] if vias else ""
        try:
            sig.layer.send_cancel(TransactionKey(branch, "", "INVITE", False), self.clock())
        except SipError as exc:
            log.debug("INVITE not cancelled: %s", exc)
            return
        sig.metrics.message("CANCEL", "out")
        sig.transport.flush()

    def on_stray_response(self, response: SipResponse) -> None:
        """A 2xx to an INVITE that nobody waits for any more.

        Either the camera retransmitted its 200 because our ACK was lost (ACK
        again), or it answered an INVITE we had already given up on (ACK, then
        BYE, so that it does not stream to a closed port).
        """
        if not 200 <= response.status < 300 or response.cseq[1] != "INVITE":
            return
        call_id = response.call_id
        for session in self.sessions.values():
            if session.dialog is not None and session.dialog.id.call_id == call_id:
                self._ack(session.dialog, session.device_id)
                return
        entry = self._abandoned.pop(call_id, None)
        if entry is None:
            return
        invite, device_id, _ = entry
        try:
            dialog = Dialog.as_uac(invite, response)
        except SipError as exc:
            log.info("late 200 to an abandoned INVITE unusable call-id=%s: %s", call_id, exc)
            return
        log.info("late 200 to an abandoned INVITE: ACK and BYE call-id=%s", call_id)
        self._ack(dialog, device_id)
        asyncio.get_running_loop().create_task(self._bye_dialog(dialog, device_id, call_id))

    def _abandon(self, invite: SipRequest, device_id: str) -> None:
        now = self.clock()
        for call_id, (_, _, at) in list(self._abandoned.items()):
            if now - at > ABANDONED_KEEP:
                del self._abandoned[call_id]
        self._abandoned[invite.call_id] = (invite, device_id, now)

    def _ack(self, dialog: Dialog, device_id: str) -> None:
        """ACK the 2xx ourselves (RFC 3261 §13.2.2.4: the transaction ended on the 2xx)."""
        ack = dialog.create_ack()
        sig = self.signalling
        st = sig.registrar.get(device_id)
        if st is None:
            return
        conn_id: int | None = None
        if st.record.transport in ("TCP", "TLS"):
            conn = sig.transport.connection(st.conn_id)
            if conn is None:
                return
            conn_id = conn.conn_id
        sig.layer.send_stateless(
            ack, (st.record.host, st.record.port), reliable=conn_id is not None, conn_id=conn_id
        )
        sig.metrics.message("ACK", "out")
        sig.transport.flush()

    def _apply_answer(self, session: PlaySession, response: SipResponse) -> None:
        if not response.body:
            return  # no SDP: assume our offer was taken as is
        answer = parse_sdp(response.body)
        if answer.ssrc is not None and answer.ssrc.strip():
            theirs = answer.ssrc.strip()
            session.answer_ssrc = theirs
            value = ssrc_to_int(theirs)
            if value != ssrc_to_int(session.ssrc):
                log.info("device answered y=%s for our %s: re-keying", theirs, session.ssrc)
                self.worker.call(lambda: self.worker.rekey(session.media_id, value))
        address = answer.connection_address
        port = answer.media_port
        if address and port:
            session.device_media = (address, port)
        if session.stream_mode == "TCP-ACTIVE":
            if session.device_media is None:
                raise CallError(502, "bad_answer", "TCP active answer without c= and m= port")
            peer = session.device_media
            self.worker.call(lambda: self.worker.connect(session.media_id, peer))

    async def _bye(self, session: PlaySession) -> None:
        dialog = session.dialog
        if dialog is None:
            return
        session.dialog = None
        await self._bye_dialog(dialog, session.device_id, session.channel_id)

    async def _bye_dialog(self, dialog: Dialog, device_id: str, what: str) -> None:
        try:
            bye = dialog.create_request("BYE")
            response = await asyncio.wait_for(
                self.signalling.send_to_device(bye, device_id), BYE_TIMEOUT
            )
            if response.status >= 300:
                log.info("BYE answered %d for %s", response.status, what)
        except (DeviceUnreachable, SipRequestTimeout, TimeoutError, SipError) as exc:
            log.info("BYE not answered for %s: %s", what, exc)

    async def _end(self, session: PlaySession, reason: str, *, bye: bool) -> None:
        if session.state == "ended":
            return
        session.state = "ended"
        session.end_reason = reason
        if session.idle is not None:
            session.idle.cancel()
            session.idle = None
        self.sessions.pop(session.session_id, None)
        if self._by_channel.get(session.channel_id) is session:
            del self._by_channel[session.channel_id]
        self._by_media.pop(session.media_id, None)
        for call_id in [k for k, v in self._by_call_id.items() if v is session]:
            del self._by_call_id[call_id]
        with contextlib.suppress(WorkerError):
            final = self.worker.call(lambda: self.worker.close(session.media_id))
            self._account(session.media_id, final, self.clock())
        self._media_last.pop(session.media_id, None)
        self._bitrates.pop(session.media_id, None)
        session.consumers.clear()
        log.info("session ended channel=%s reason=%s", session.channel_id, reason)
        for listener in self.on_end:
            try:
                listener(session, reason)
            except Exception:
                log.exception("session end listener failed channel=%s", session.channel_id)
        if bye:
            await self._bye(session)
        else:
            session.dialog = None
