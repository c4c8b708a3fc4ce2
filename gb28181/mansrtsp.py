"""MANSRTSP: the RTSP 1.0 subset carried in SIP INFO to control playback (notes §7).

GB/T 28181 controls a Playback dialog with an in-dialog ``INFO`` whose body
(``Content-Type: Application/MANSRTSP``) is an RTSP 1.0 request without a URL::

    PLAY RTSP/1.0          PLAY RTSP/1.0       PAUSE RTSP/1.0     TEARDOWN RTSP/1.0
    CSeq: 7                CSeq: 9             CSeq: 10           CSeq: 11
    Scale: 2.0             Range: npt=600-     PauseTime: now

``Scale`` changes the speed, ``Range: npt=<s>-`` seeks to seconds from the start of the
INVITE's ``t=`` range (``npt=now-`` resumes where it is), ``PauseTime: now`` pauses.
Devices answer ``RTSP/1.0 200 OK`` with the CSeq (Hikvision adds ``RTP-Info``).

The parser is bounded (:data:`MAX_SIZE`, :data:`MAX_HEADERS`) and raises only
:class:`MansrtspError` (a ``ValueError``) on bad input, which the SIP layer answers with 400.
Header names are matched case-insensitively and lines may end in CRLF or LF: peers vary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "MAX_SIZE",
    "MansrtspError",
    "MansrtspRequest",
    "MansrtspResponse",
    "Method",
    "parse_request",
    "parse_response",
]

#: Largest body accepted; real ones are under 100 bytes.
MAX_SIZE = 2048
MAX_HEADERS = 16
_VERSION = "RTSP/1.0"


class MansrtspError(ValueError):
    """A MANSRTSP body that cannot be understood (answer 400)."""


class Method(StrEnum):
    PLAY = "PLAY"
    PAUSE = "PAUSE"
    TEARDOWN = "TEARDOWN"


@dataclass(frozen=True, slots=True)
class MansrtspRequest:
    """One control request.

    ``scale`` is None when absent; ``range_start`` is the npt start in seconds, or None for
    ``npt=now-`` / no Range (resume where paused); ``pause_time`` the PauseTime value as sent.
    """

    method: Method
    cseq: int
    scale: float | None = None
    range_start: float | None = None
    pause_time: str | None = None

    def __bytes__(self) -> bytes:
        lines = [f"{self.method} {_VERSION}", f"CSeq: {self.cseq}"]
        if self.scale is not None:
            lines.append(f"Scale: {self.scale:.6f}".rstrip("0").rstrip("."))
        if self.method is Method.PLAY and self.range_start is not None:
            lines.append(f"Range: npt={_fmt(self.range_start)}-")
        if self.pause_time is not None:
            lines.append(f"PauseTime: {self.pause_time}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


@dataclass(frozen=True, slots=True)
class MansrtspResponse:
    """The RTSP answer carried in the 200 to the INFO."""

    status: int
    reason: str
    cseq: int
    rtp_info: str | None = None

    def __bytes__(self) -> bytes:
        lines = [f"{_VERSION} {self.status} {self.reason}", f"CSeq: {self.cseq}"]
        if self.rtp_info is not None:
            lines.append(f"RTP-Info: {self.rtp_info}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _fmt(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _lines(data: bytes) -> tuple[str, dict[str, str]]:
    if len(data) > MAX_SIZE:
        raise MansrtspError(f"MANSRTSP body of {len(data)} bytes exceeds {MAX_SIZE}")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise MansrtspError("MANSRTSP body is not ASCII") from None
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    if not lines:
        raise MansrtspError("empty MANSRTSP body")
    headers: dict[str, str] = {}
    for count, line in enumerate(lines[1:]):
        if not line:
            break
        if count >= MAX_HEADERS:
            raise MansrtspError("too many MANSRTSP headers")
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise MansrtspError(f"bad MANSRTSP header line {line[:40]!r}")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def _cseq(headers: dict[str, str]) -> int:
    raw = headers.get("cseq")
    if raw is None:
        raise MansrtspError("MANSRTSP without CSeq")
    if not raw.isdigit() or len(raw) > 10:
        raise MansrtspError(f"bad CSeq {raw[:20]!r}")
    return int(raw)


def _number(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise MansrtspError(f"bad {name} {raw[:20]!r}") from None
    if not math.isfinite(value):
        raise MansrtspError(f"bad {name} {raw[:20]!r}")
    return value


def _range_start(raw: str) -> float | None:
    """``npt=<start>-[<end>]`` -> start seconds, None for ``now``."""
    spec = raw.strip()
    if not spec.lower().startswith("npt="):
        raise MansrtspError(f"Range {raw[:30]!r} is not npt=")
    start = spec[4:].partition("-")[0].strip()
    if start.lower() in ("now", ""):
        return None
    value = _number("Range", start)
    if value < 0:
        raise MansrtspError(f"negative Range {start!r}")
    return value


def parse_request(data: bytes) -> MansrtspRequest:
    """Parse an INFO body.

    :raises MansrtspError: too large, not ASCII, unknown method, no/bad CSeq, bad Scale or
        Range.
    """
    first, headers = _lines(data)
    parts = first.split()
    if len(parts) != 2 or parts[1].upper() != _VERSION:
        raise MansrtspError(f"bad MANSRTSP request line {first[:40]!r}")
    try:
        method = Method(parts[0].upper())
    except ValueError:
        raise MansrtspError(f"unsupported MANSRTSP method {parts[0][:20]!r}") from None
    cseq = _cseq(headers)
    scale = None
    if "scale" in headers:
        scale = _number("Scale", headers["scale"])
    range_start = _range_start(headers["range"]) if "range" in headers else None
    return MansrtspRequest(method, cseq, scale, range_start, headers.get("pausetime"))


def parse_response(data: bytes) -> MansrtspResponse:
    """Parse a device's answer (``RTSP/1.0 200 OK``).

    :raises MansrtspError: as :func:`parse_request`.
    """
    first, headers = _lines(data)
    version, _, rest = first.partition(" ")
    code, _, reason = rest.partition(" ")
    if version.upper() != _VERSION or len(code) != 3 or not code.isdigit():
        raise MansrtspError(f"bad MANSRTSP status line {first[:40]!r}")
    return MansrtspResponse(int(code), reason.strip(), _cseq(headers), headers.get("rtp-info"))
