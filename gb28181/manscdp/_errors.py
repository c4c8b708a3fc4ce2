"""Error types of the MANSCDP codec.

Split by who is at fault (see docs/style.md §2): ``ManscdpRemoteError`` means the peer sent a
body we cannot use, and carries the SIP status a MESSAGE handler should answer with;
``ManscdpLocalError`` means our own caller asked for something that cannot be encoded. Both
derive from ``ManscdpError`` (itself a ``ValueError``), the only exception type a decoder of
network input may raise.
"""

from __future__ import annotations

__all__ = [
    "ManscdpDepthError",
    "ManscdpDtdError",
    "ManscdpEncodeError",
    "ManscdpError",
    "ManscdpHostileError",
    "ManscdpLocalError",
    "ManscdpRemoteError",
    "ManscdpSizeError",
    "ManscdpSyntaxError",
    "ManscdpUnknownRootError",
    "PtzCommandError",
]


class ManscdpError(ValueError):
    """Base class of every error raised by ``gb28181.manscdp``."""


class ManscdpRemoteError(ManscdpError):
    """The peer's body is unusable.

    ``status_hint`` is the SIP status to answer the carrying MESSAGE with (WVP answers 400 to
    unparsable XML and 415 to an unknown root element, notes §4.1).
    """

    status_hint: int = 400


class ManscdpSyntaxError(ManscdpRemoteError):
    """Not MANSCDP even after repair and salvage (no root, no CmdType, bad SN, bad PTZCmd)."""


class ManscdpUnknownRootError(ManscdpRemoteError):
    """The root element is none of Query, Control, Notify, Response."""

    status_hint = 415


class ManscdpHostileError(ManscdpRemoteError):
    """The body looks like an attack on the parser; it is refused before any parsing."""


class ManscdpDtdError(ManscdpHostileError):
    """``<!DOCTYPE``/``<!ENTITY`` (or any other markup declaration): entity expansion attacks."""


class ManscdpSizeError(ManscdpHostileError):
    """The body exceeds the configured size limit (SIP 513 Message Too Large)."""

    status_hint = 513


class ManscdpDepthError(ManscdpHostileError):
    """Elements nest deeper than the configured limit."""


class ManscdpLocalError(ManscdpError):
    """Our caller asked for something that cannot be expressed."""


class ManscdpEncodeError(ManscdpLocalError):
    """A message cannot be encoded (bad element name, character not allowed in XML 1.0,
    character not representable in the requested charset with ``strict=True``)."""


class PtzCommandError(ManscdpLocalError):
    """A PTZ/FI/preset/cruise/scan/aux command was asked for with out-of-range arguments."""
