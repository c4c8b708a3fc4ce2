"""Playback and download of recordings: ours, or the device's own (notes §6.9, §7, §4.12).

One :class:`PlaybackService` serves the HTTP API and inbound SIP calls alike. A session plays
``start..end`` (Unix seconds, the INVITE's ``t=``) of one channel to one output, from one of two
sources:

* ``platform``: our recordings (the index rows of ``store.list_recordings``, files under the
  recordings root), paced by :class:`media.playback_worker.PlaybackWorker` in real time times
  the scale, or at the download speed;
* ``device``: the device's own storage, through :meth:`gb28181.calls.CallService.history`
  (an INVITE ``s=Playback``/``s=Download`` to the device, its stream relayed to the output).
  MANSRTSP control is forwarded to the device in that dialog; the device's MediaStatus 121
  (or BYE) ends the session.

``auto`` picks ``platform`` when the index holds a segment overlapping the range, else
``device``. Whatever the source, the end of the file is announced to :attr:`on_end` listeners
as ``(session_id, "end of file")``; the owner of the caller's dialog then sends MediaStatus 121
(:func:`media_status_message`) and BYE, as a device would (notes §4.12).

Control (notes §7): ``PLAY`` with ``Scale`` sets the speed (0.25..8), with ``Range: npt=<s>-``
seeks (seconds from the range start, to the keyframe at or before), without either resumes;
``PAUSE`` pauses; ``TEARDOWN`` ends the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from media.playback import PlaybackError, PlaybackSegment, PlaybackStream
from media.playback_worker import PlaybackWorker, PlaybackWorkerError
from media.segments import SegmentFrame, read_frames
from media.worker import WorkerError

from . import manscdp
from .calls import CallError, CallService
from .mansrtsp import MansrtspError, MansrtspRequest, Method, parse_request
from .sip import make_ssrc, ssrc_to_int
from .store import RecordingRow, Store

__all__ = [
    "SOURCES",
    "PlaybackControlError",
    "PlaybackService",
    "PlaybackSession",
    "media_status_message",
]

log = logging.getLogger(__name__)

SOURCES = ("auto", "platform", "device")
#: Seconds between polls of the worker's end events.
EVENT_POLL = 0.2
#: Device download speeds are integers (``a=downloadspeed``, Catalog ``DownloadSpeed``).
MAX_DOWNLOAD_SPEED = 64


class PlaybackControlError(ValueError):
    """A control request that cannot be applied (bad MANSRTSP, scale or seek): answer 400."""


@dataclass(eq=False)
class PlaybackSession:
    """One playback or download to one output."""

    session_id: str
    channel_id: str
    source: str
    start: float
    end: float
    download: bool
    speed: float
    output: tuple[str, int, str]
    ssrc: int
    local_port: int = 0
    created_at: float = 0.0
    state: str = "playing"
    end_reason: str | None = None
    stream_id: int | None = None  # platform: the worker's stream
    call_session: str | None = None  # device: the CallService session
    rtsp_cseq: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def media_status_message(device_id: str, sn: int, notify_type: str = "121") -> bytes:
    """The MANSCDP body of MESSAGE Notify/MediaStatus (notes §4.12): 121 = end of file.

    ``device_id`` is the channel that was played back (the sender of the history stream).
    """
    return manscdp.encode(
        manscdp.MediaStatusNotify(device_id=device_id, sn=sn, notify_type=notify_type)
    )


def _frames(path: Path) -> Callable[[int], Iterator[SegmentFrame]]:
    """A segment reader that turns a missing or unreadable file into an empty segment (logged):
    a recording deleted by retention while it is played back ends the playback, it does not
    stop the worker."""

    def read(offset: int) -> Iterator[SegmentFrame]:
        try:
            yield from read_frames(path, offset)
        except OSError as exc:
            log.warning("segment unreadable path=%s: %s", path, exc)

    return read


class PlaybackService:
    """Plays back recordings to outputs; see the module docstring.

    :param worker: the playback worker (running its thread).
    :param store: the index (``list_recordings``).
    :param root: the recordings root directory (index paths are relative to it).
    :param calls: live/history calls to devices (None: no device source).
    :param domain: the SIP domain, for history SSRCs (``y=`` with a leading 1, notes §6.3).
    """

    def __init__(
        self,
        worker: PlaybackWorker,
        store: Store,
        root: str | os.PathLike[str],
        *,
        calls: CallService | None = None,
        domain: str = "3402000000",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.worker = worker
        self.store = store
        self.root = Path(root)
        self.calls = calls
        self.domain = domain
        self.clock = clock
        self.sessions: dict[str, PlaybackSession] = {}
        #: Told ``(session_id, reason)`` when a session ends by itself: ``"end of file"``, or
        #: ``"failed: ..."`` (consumer gone), or the device's reason. Not called for
        #: :meth:`close`.
        self.on_end: list[Callable[[str, str], None]] = []
        self._by_stream: dict[int, PlaybackSession] = {}
        self._by_call: dict[str, PlaybackSession] = {}
        self._seq = itertools.count(1)
        if calls is not None:
            calls.on_end.append(self._call_ended)

    # -- public API -------------------------------------------------------------------------

    async def open(
        self,
        channel_id: str,
        start: float,
        end: float,
        *,
        download: bool = False,
        speed: float = 1.0,
        output: tuple[str, int, str],
        ssrc: int = 0,
        source: str = "auto",
    ) -> PlaybackSession:
        """Start playing ``start..end`` of ``channel_id`` to ``output``.

        :param output: ``(host, port, transport)``, transport ``udp``, ``tcp-active`` (we
            connect) or ``tcp-passive`` (we listen: the session's ``local_port``).
        :param ssrc: RTP SSRC to send with (the caller's ``y=``); 0 allocates a history SSRC.
        :param source: ``platform``, ``device`` or ``auto``.
        :raises CallError: 400 bad arguments, 404 nothing recorded / unknown channel, 503 no
            device source, or the device leg's error.
        """
        if source not in SOURCES:
            raise CallError(400, "bad_parameter", f"source must be one of {', '.join(SOURCES)}")
        if not end > start:
            raise CallError(400, "bad_parameter", "end must be after start")
        if not 0.25 <= speed <= MAX_DOWNLOAD_SPEED:
            raise CallError(400, "bad_parameter", "speed must be 0.25..64")
        if ssrc == 0:
            ssrc = ssrc_to_int(make_ssrc(self.domain, next(self._seq) % 10000, history=True))
        rows: list[RecordingRow] = []
        if source != "device":
            rows = await self.store.list_recordings(channel_id, start, end)
            if not rows and source == "platform":
                raise CallError(404, "no_recording", f"no recording of {channel_id} in range")
        session = PlaybackSession(
            session_id=uuid.uuid4().hex[:16],
            channel_id=channel_id,
            source="platform" if rows else "device",
            start=start,
            end=end,
            download=download,
            speed=speed,
            output=output,
            ssrc=ssrc,
            created_at=self.clock(),
        )
        if rows:
            self._open_platform(session, rows)
        else:
            await self._open_device(session)
        self.sessions[session.session_id] = session
        log.info(
            "%s channel=%s source=%s range=%d-%d output=%s:%d/%s session=%s",
            "download" if download else "playback",
            channel_id,
            session.source,
            start,
            end,
            *output,
            session.session_id,
        )
        return session

    async def control(self, session_id: str, mansrtsp: bytes) -> None:
        """Apply a MANSRTSP body (an INFO from the caller, notes §7).

        :raises PlaybackControlError: the body is malformed, or the scale or seek is out of
            range (answer 400).
        :raises CallError: no such session (404), or the device refused or did not answer.
        """
        try:
            request = parse_request(mansrtsp)
        except MansrtspError as exc:
            raise PlaybackControlError(str(exc)) from None
        await self.apply(session_id, request)

    async def apply(self, session_id: str, request: MansrtspRequest) -> None:
        """Apply one decoded control request (the HTTP API builds them)."""
        session = self._get(session_id)
        session.rtsp_cseq = request.cseq
        if request.method is Method.TEARDOWN:
            await self.close(session_id, "teardown")
            return
        if session.source == "device":
            await self._forward(session, request)
            return
        assert session.stream_id is not None
        stream_id = session.stream_id

        def act(stream: PlaybackStream, now: float) -> None:
            if request.method is Method.PAUSE:
                stream.pause(now)
                return
            if request.scale is not None:
                stream.set_scale(request.scale, now)
            if request.range_start is not None:
                stream.seek(request.range_start, now)
            stream.resume(now)

        try:
            self.worker.call(lambda: self.worker.control(stream_id, act))
        except PlaybackError as exc:
            raise PlaybackControlError(str(exc)) from None
        except PlaybackWorkerError as exc:
            raise CallError(404, "not_found", str(exc)) from None

    async def close(self, session_id: str, reason: str) -> None:
        """End a session (the caller's BYE, TEARDOWN, the API's DELETE)."""
        session = self._get(session_id)
        await self._finish(session, reason, tell=False)

    async def shutdown(self) -> None:
        """End every session (platform shutdown)."""
        for session in list(self.sessions.values()):
            await self._finish(session, "shutdown", tell=False)

    def describe(self, session: PlaybackSession) -> dict[str, Any]:
        """The public view of a session (the HTTP API's JSON)."""
        stats: dict[str, Any] | None = None
        if session.stream_id is not None:
            stream_id = session.stream_id
            with contextlib.suppress(PlaybackWorkerError):
                stats = self.worker.call(lambda: self.worker.stats(stream_id))
        return {
            "id": session.session_id,
            "channel": session.channel_id,
            "source": session.source,
            "download": session.download,
            "start": session.start,
            "end": session.end,
            "speed": session.speed,
            "state": session.state,
            "ssrc": f"{session.ssrc:010d}",
            "output": {
                "addr": session.output[0],
                "port": session.output[1],
                "transport": session.output[2],
            },
            "local_port": session.local_port,
            "device_session": session.call_session,
            "stats": stats,
        }

    async def run(self) -> None:
        """Poll the worker's end events (end of file, consumer gone)."""
        while True:
            await self.poll_events()
            await asyncio.sleep(EVENT_POLL)

    async def poll_events(self) -> None:
        """Handle every end event the worker has queued."""
        while True:
            try:
                stream_id, reason = self.worker.events.get_nowait()
            except queue.Empty:
                return
            session = self._by_stream.get(stream_id)
            if session is None:
                continue
            await self._finish(session, "end of file" if reason == "finished" else reason)

    # -- internals ----------------------------------------------------------------------------

    def _get(self, session_id: str) -> PlaybackSession:
        session = self.sessions.get(session_id)
        if session is None:
            raise CallError(404, "not_found", f"no playback session {session_id}")
        return session

    def _open_platform(self, session: PlaybackSession, rows: list[RecordingRow]) -> None:
        now = self.clock()
        segments = [
            PlaybackSegment(
                row.start,
                max(row.end, now) if row.state == "open" else row.end,
                row.keyframes,
                _frames(self.root / row.path),
            )
            for row in rows
        ]

        def make(at: float) -> PlaybackStream:
            return PlaybackStream(
                segments,
                session.start,
                session.end,
                session.ssrc,
                at,
                rate=session.speed,
                download=session.download,
            )

        try:
            opened = self.worker.call(lambda: self.worker.open_stream(make, session.output))
        except PlaybackError as exc:
            raise CallError(
                404 if "no recording" in str(exc) else 400, "bad_range", str(exc)
            ) from None
        except PlaybackWorkerError as exc:
            raise CallError(400, "bad_output", str(exc)) from None
        session.stream_id = int(opened["stream"])
        session.local_port = int(opened["local_port"])
        self._by_stream[session.stream_id] = session

    async def _open_device(self, session: PlaybackSession) -> None:
        if self.calls is None:
            raise CallError(503, "no_device_source", "live media is disabled")
        calls = self.calls
        call, consumer = await calls.history(
            session.channel_id,
            int(session.start),
            int(session.end),
            download=session.download,
            speed=max(int(session.speed), 1),
            output=session.output,
            ssrc=session.ssrc,
        )
        session.call_session = call.session_id
        self._by_call[call.session_id] = session
        output_id = consumer.output_id
        if session.output[2] == "tcp-passive" and output_id is not None:
            # The relay listens for the consumer: its port is the one to announce.
            try:
                info = calls.worker.call(lambda: calls.worker.output_info(call.media_id, output_id))
                session.local_port = int(info.get("port") or 0)
            except WorkerError as exc:
                log.warning("no listening port for session=%s: %s", session.session_id, exc)

    async def _forward(self, session: PlaybackSession, request: MansrtspRequest) -> None:
        """Send the control to the device; keep the relay's no-media clock stopped from an
        accepted ``PAUSE`` to the next ``PLAY`` (a paused device sends nothing). A ``PLAY``
        the device did not answer restarts the clock too: if it is gone, the silence says so."""
        calls, call_session = self.calls, session.call_session
        assert calls is not None and call_session is not None
        try:
            response = await calls.info(call_session, bytes(request))
        except CallError:
            if request.method is Method.PLAY:
                self._set_paused(session, False)
            raise
        if response.status >= 300:
            raise CallError(
                502, "control_refused", f"device answered {response.status} {response.reason}"
            )
        if request.method is Method.PAUSE:
            self._set_paused(session, True)
        elif request.method is Method.PLAY:
            self._set_paused(session, False)

    def _set_paused(self, session: PlaybackSession, paused: bool) -> None:
        assert self.calls is not None and session.call_session is not None
        try:
            self.calls.set_paused(session.call_session, paused)
        except CallError as exc:  # the device leg ended meanwhile
            log.info("device leg of session=%s: %s", session.session_id, exc.reason)

    def _call_ended(self, call: Any, reason: str) -> None:
        """The device leg ended (MediaStatus 121, BYE, no media): end our session."""
        session = self._by_call.get(getattr(call, "session_id", ""))
        if session is None or session.state == "ended":
            return
        asyncio.get_running_loop().create_task(self._finish(session, reason, bye_device=False))

    async def _finish(
        self, session: PlaybackSession, reason: str, *, tell: bool = True, bye_device: bool = True
    ) -> None:
        if session.state == "ended":
            return
        session.state = "ended"
        session.end_reason = reason
        self.sessions.pop(session.session_id, None)
        if session.stream_id is not None:
            self._by_stream.pop(session.stream_id, None)
            stream_id = session.stream_id
            with contextlib.suppress(PlaybackWorkerError):
                self.worker.call(lambda: self.worker.close(stream_id))
        if session.call_session is not None:
            self._by_call.pop(session.call_session, None)
            if bye_device and self.calls is not None:
                with contextlib.suppress(CallError):
                    await self.calls.stop(session.call_session, reason)
        log.info("playback ended session=%s reason=%s", session.session_id, reason)
        if tell:
            for listener in self.on_end:
                try:
                    listener(session.session_id, reason)
                except Exception:
                    log.exception("playback end listener failed session=%s", session.session_id)
