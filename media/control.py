"""The control interface of a media worker: commands as values, JSON lines on the wire.

The platform drives a worker with a handful of commands (architecture "Processes"): open a
receiver, connect it (TCP active) or re-key it (the device's own ``y=``), add outputs ("udp",
"tcp-active", "tcp-passive": the reply then carries the local ``port`` the consumer connects
to) and remove them, close, read stats, and take a snapshot (the latest keyframe as JPEG, or
the GOP cache's PS payloads, base64 in the reply; decoding runs in the caller's thread, not
on the worker's loop). Each command is a frozen dataclass; :func:`encode_command` and
:func:`decode_command` turn it into one line of JSON and back, so the same values work
in-process (:class:`LocalControl`) and across processes or machines (:class:`ControlServer` on
one end of a socket, :class:`ControlClient` on the other; a ``socketpair`` or TCP).

Every request line carries an ``id`` echoed in its reply: ``{"id", "ok": true, "result"}`` or
``{"id", "ok": false, "error"}``. Lines are bounded (:data:`MAX_LINE`); a malformed line gets
an error reply, never an exception in the server. Replies are bounded separately
(:data:`MAX_REPLY`): a snapshot is larger than any request.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

from media.relay import Addr
from media.snapshot import DEFAULT_QUALITY, SnapshotError, keyframe_jpeg
from media.worker import RelayWorker, WorkerError

__all__ = [
    "AddOutput",
    "Close",
    "Command",
    "Connect",
    "ControlClient",
    "ControlError",
    "ControlServer",
    "LocalControl",
    "OpenReceiver",
    "Rekey",
    "RemoveOutput",
    "Snapshot",
    "Stats",
    "decode_command",
    "encode_command",
    "execute",
]

MAX_LINE = 64 * 1024
#: Bound of a reply line: a snapshot's payloads are the GOP cache (8 MiB), base64.
MAX_REPLY = 16 * 1024 * 1024
SNAPSHOT_FORMATS = ("jpeg", "payloads")


class ControlError(RuntimeError):
    """A command failed or could not be decoded; the message says why."""


@dataclass(frozen=True, slots=True)
class Command:
    """Base of the control commands."""


@dataclass(frozen=True, slots=True)
class OpenReceiver(Command):
    """Open a receiving session; ``mode`` is "udp", "tcp_passive" or "tcp_active"."""

    mode: str
    port: int | None = None
    ssrc: int | None = None
    peer: Addr | None = None


@dataclass(frozen=True, slots=True)
class Connect(Command):
    """TCP active: connect to the address in the device's SDP answer."""

    session: int
    peer: Addr


@dataclass(frozen=True, slots=True)
class Rekey(Command):
    """Expect the SSRC of the device's answer (``y=``) instead of ours."""

    session: int
    ssrc: int


@dataclass(frozen=True, slots=True)
class AddOutput(Command):
    """Forward to ``addr``; ``transport`` "udp", "tcp-active" or "tcp-passive"."""

    session: int
    addr: Addr
    transport: str = "udp"
    ssrc: int = 0


@dataclass(frozen=True, slots=True)
class RemoveOutput(Command):
    session: int
    output: int


@dataclass(frozen=True, slots=True)
class Close(Command):
    session: int


@dataclass(frozen=True, slots=True)
class Stats(Command):
    session: int | None = None


@dataclass(frozen=True, slots=True)
class Snapshot(Command):
    """The session's latest keyframe: ``format`` "jpeg" or "payloads" (PS, for the caller to
    decode or store); ``quality`` 1..100 for JPEG."""

    session: int
    format: str = "jpeg"
    quality: int = DEFAULT_QUALITY


_OPS: dict[str, type[Command]] = {
    "open_receiver": OpenReceiver,
    "connect": Connect,
    "rekey": Rekey,
    "add_output": AddOutput,
    "remove_output": RemoveOutput,
    "close": Close,
    "stats": Stats,
    "snapshot": Snapshot,
}
_NAMES = {cls: op for op, cls in _OPS.items()}
_ADDR_FIELDS = frozenset(("peer", "addr"))


def encode_command(command: Command, request_id: int = 0) -> bytes:
    """Return ``command`` as one JSON line (newline included)."""
    body = asdict(command)
    body["op"] = _NAMES[type(command)]
    body["id"] = request_id
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def decode_command(line: bytes) -> tuple[int, Command]:
    """Parse one request line; return ``(request_id, command)``.

    :raises ControlError: too long, not JSON, unknown op, missing or mistyped fields.
    """
    if len(line) > MAX_LINE:
        raise ControlError(f"control line longer than {MAX_LINE} bytes")
    try:
        body = json.loads(line)
    except ValueError as exc:
        raise ControlError(f"control line is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ControlError("control line is not a JSON object")
    request_id = body.pop("id", 0)
    op = body.pop("op", None)
    cls = _OPS.get(op) if isinstance(op, str) else None
    if cls is None or not isinstance(request_id, int):
        raise ControlError("control line has no known op or a bad id")
    names = {f.name for f in fields(cls)}
    if set(body) - names:
        raise ControlError(f"unknown fields {sorted(set(body) - names)} for {_NAMES[cls]}")
    for name in _ADDR_FIELDS & set(body):
        value = body[name]
        if value is not None:
            if not (
                isinstance(value, list)
                and len(value) == 2
                and isinstance(value[0], str)
                and isinstance(value[1], int)
            ):
                raise ControlError(f"{name} must be [host, port]")
            body[name] = (value[0], value[1])
    try:
        return request_id, cls(**body)
    except TypeError as exc:
        raise ControlError(str(exc)) from None


def execute(worker: RelayWorker, command: Command) -> dict[str, Any]:
    """Run ``command`` on ``worker`` (on its loop thread); return the JSON-able result.

    :raises ControlError: the worker refused it (unknown session, no port, no keyframe...).
    """
    try:
        if isinstance(command, Snapshot):
            return _snapshot(worker, command)
        return worker.call(lambda: _dispatch(worker, command))
    except (WorkerError, ValueError, OSError) as exc:
        raise ControlError(str(exc)) from exc


def _snapshot(worker: RelayWorker, command: Snapshot) -> dict[str, Any]:
    """Copy the payloads on the loop thread; decode (milliseconds) in the caller's thread."""
    if command.format not in SNAPSHOT_FORMATS:
        raise ControlError(f"snapshot format must be one of {', '.join(SNAPSHOT_FORMATS)}")
    payloads = worker.call(lambda: worker.gop_payloads(command.session))
    if command.format == "payloads":
        return {"payloads": [base64.b64encode(p).decode() for p in payloads]}
    if not payloads:
        raise ControlError(f"session {command.session} has no keyframe yet")
    try:
        jpeg = keyframe_jpeg(payloads, quality=command.quality)
    except SnapshotError as exc:
        raise ControlError(f"session {command.session}: {exc}") from exc
    return {"jpeg": base64.b64encode(jpeg).decode()}


def _dispatch(worker: RelayWorker, command: Command) -> dict[str, Any]:
    if isinstance(command, OpenReceiver):
        return worker.open_receiver(command.mode, command.port, command.ssrc, command.peer)
    if isinstance(command, Connect):
        worker.connect(command.session, command.peer)
        return {}
    if isinstance(command, Rekey):
        worker.rekey(command.session, command.ssrc)
        return {}
    if isinstance(command, AddOutput):
        output = worker.add_output(command.session, command.addr, command.transport, command.ssrc)
        return {"output": output, "port": worker.output_info(command.session, output)["port"]}
    if isinstance(command, RemoveOutput):
        worker.remove_output(command.session, command.output)
        return {}
    if isinstance(command, Close):
        return worker.close(command.session)
    if isinstance(command, Stats):
        return worker.stats(command.session)
    raise ControlError(f"unknown command {command!r}")


class LocalControl:
    """The in-process implementation: commands go straight to a worker in this process."""

    def __init__(self, worker: RelayWorker) -> None:
        self.worker = worker

    def request(self, command: Command) -> dict[str, Any]:
        return execute(self.worker, command)


class ControlServer:
    """Serve JSON-line commands from connected sockets, one thread per connection."""

    def __init__(self, worker: RelayWorker) -> None:
        self.worker = worker

    def serve_connection(self, sock: socket.socket) -> threading.Thread:
        """Answer commands on ``sock`` in a daemon thread until it closes."""
        thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
        thread.start()
        return thread

    def handle_line(self, line: bytes) -> bytes:
        """Decode one request, run it, and return the reply line."""
        request_id = 0
        try:
            request_id, command = decode_command(line)
            reply: dict[str, Any] = {
                "id": request_id,
                "ok": True,
                "result": execute(self.worker, command),
            }
        except ControlError as exc:
            reply = {"id": request_id, "ok": False, "error": str(exc)}
        return json.dumps(reply, separators=(",", ":")).encode() + b"\n"

    def _serve(self, sock: socket.socket) -> None:
        with sock, sock.makefile("rb") as reader:
            while line := reader.readline(MAX_LINE + 1):
                sock.sendall(self.handle_line(line))


class ControlClient:
    """Send commands over a socket to a :class:`ControlServer`; one request at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader = sock.makefile("rb")
        self._next_id = 1
        self._lock = threading.Lock()

    def request(self, command: Command) -> dict[str, Any]:
        """Send ``command`` and return its result.

        :raises ControlError: the worker refused it, or the connection closed.
        """
        with self._lock:
            request_id = self._next_id
            self._next_id += 1
            self.sock.sendall(encode_command(command, request_id))
            line = self._reader.readline(MAX_REPLY + 1)
        if not line:
            raise ControlError("control connection closed")
        if not line.endswith(b"\n"):
            raise ControlError(f"control reply longer than {MAX_REPLY} bytes")
        reply = json.loads(line)
        if reply.get("id") != request_id:
            raise ControlError("control reply does not match the request")
        if not reply.get("ok"):
            raise ControlError(str(reply.get("error")))
        result: dict[str, Any] = reply["result"]
        return result

    def close(self) -> None:
        self._reader.close()
        self.sock.close()
