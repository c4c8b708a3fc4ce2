"""MANSCDP (GB/T 28181 MESSAGE body) codec: sans-IO, bytes in, typed messages out.

``decode(body) -> Message`` and ``encode(message, charset) -> bytes``; PTZ command strings with
``ptz_command`` & co. and ``decode_ptz``. Errors derive from ``ManscdpError``.
"""

from __future__ import annotations

from ._charset import Charset, decode_body, encode_document, parse_charset
from ._codec import DEFAULT_MAX_DEPTH, DEFAULT_MAX_SIZE, MESSAGE_TYPES, decode, encode
from ._errors import (
    ManscdpDepthError,
    ManscdpDtdError,
    ManscdpEncodeError,
    ManscdpError,
    ManscdpHostileError,
    ManscdpLocalError,
    ManscdpRemoteError,
    ManscdpSizeError,
    ManscdpSyntaxError,
    ManscdpUnknownRootError,
    PtzCommandError,
)
from ._messages import *  # noqa: F403
from ._messages import __all__ as _messages_all
from ._ptz import *  # noqa: F403
from ._ptz import __all__ as _ptz_all

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_SIZE",
    "MESSAGE_TYPES",
    "Charset",
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
    "decode",
    "decode_body",
    "encode",
    "encode_document",
    "parse_charset",
    *_messages_all,
    *_ptz_all,
]
