"""Sans-IO SIP core: message codec, transactions, dialogs, digest auth, SDP.

Knows nothing of GB/T 28181; the platform builds on these names only.
"""

from ._digest import (
    SUPPORTED_ALGORITHMS,
    AuthResult,
    DigestChallenge,
    DigestCredentials,
    DigestError,
    DigestVerifier,
    NonceIssuer,
    NonceStatus,
    build_authorization,
    compute_response,
)
from ._errors import SipError, SipLocalError, SipParseError, SipRemoteError
from ._headers import COMPACT_FORMS, Headers, canonical_name
from ._message import (
    DEFAULT_MAX_SIZE,
    REASON_PHRASES,
    SipMessage,
    SipRequest,
    SipResponse,
    StreamParser,
    make_response,
    parse_message,
)
from ._uri import NameAddr, SipUri, Via, format_params, parse_params, split_header_list

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "AuthResult",
    "DigestChallenge",
    "DigestCredentials",
    "DigestError",
    "DigestVerifier",
    "NonceIssuer",
    "NonceStatus",
    "build_authorization",
    "compute_response",
    "COMPACT_FORMS",
    "DEFAULT_MAX_SIZE",
    "REASON_PHRASES",
    "Headers",
    "NameAddr",
    "SipError",
    "SipLocalError",
    "SipMessage",
    "SipParseError",
    "SipRemoteError",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "StreamParser",
    "Via",
    "canonical_name",
    "format_params",
    "make_response",
    "parse_message",
    "parse_params",
    "split_header_list",
]
