"""Errors of the SIP core, split by who is at fault (the h11 model).

* :class:`SipRemoteError` -- the peer sent something we cannot accept. It
  carries ``status_hint``, the status a server answers with (400, 420, 481,
  483, 513...), so the transport glue can reply without guessing.
* :class:`SipLocalError` -- our own caller misused the API (a bug here, not on
  the wire).
"""

from __future__ import annotations

__all__ = ["SipError", "SipLocalError", "SipParseError", "SipRemoteError"]


class SipError(Exception):
    """Base of every error raised by :mod:`gb28181.sip`."""


class SipRemoteError(SipError):
    """The peer broke the protocol; answer with ``status_hint`` if a request."""

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class SipParseError(SipRemoteError):
    """A message (or a header inside it) could not be parsed."""


class SipLocalError(SipError):
    """Our caller asked for something the protocol does not allow."""
