"""A bare Python SIP responder: the floor any Python registrar pays on this machine.

Baseline for ``bench_register.py``, run as its own process like the server:

    python bench/bare_responder.py PORT

It answers over UDP, on uvloop when installed (as ``gb28181 serve`` does), exactly what
SIPp's own UAS scenario (``sipp/uas_register.xml``) answers and nothing more: a REGISTER
without ``Authorization`` gets 401 with a fixed challenge, one with it gets 200 (the digest is
not checked), and any other request (the keepalive MESSAGE) gets 200. There are no
transactions, no retransmission handling, no digest, no device state and no storage; the
headers a response copies are found by a split of the header block. The CPU it spends per
registration (datagram in, datagram out, twice) is what Python and the event loop cost
before any protocol work, so the platform's figure is read as a ratio to it.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

_COPIED = (b"via", b"from", b"to", b"call-id", b"cseq")
_CHALLENGE = (
    b'WWW-Authenticate: Digest realm="3402000000", '
    b'nonce="0123456789abcdef0123456789abcdef01234567", algorithm=MD5, qop="auth"\r\n'
)


def answer(data: bytes) -> bytes | None:
    """The response to one request datagram, or None for anything that is not a request."""
    head, _, _ = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if lines[0].startswith(b"SIP/2.0"):
        return None
    method = lines[0].split(b" ", 1)[0]
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    out = []
    if method == b"REGISTER" and b"authorization" not in headers:
        out.append(b"SIP/2.0 401 Unauthorized\r\n")
    else:
        out.append(b"SIP/2.0 200 OK\r\n")
    for name in _COPIED:
        value = headers.get(name, b"")
        if name == b"to":
            value += b";tag=bare1"
        out.append(name + b": " + value + b"\r\n")
    if out[0].startswith(b"SIP/2.0 401"):
        out.append(_CHALLENGE)
    elif method == b"REGISTER":
        out.append(b"Contact: " + headers.get(b"contact", b"") + b"\r\nExpires: 3600\r\n")
    out.append(b"Content-Length: 0\r\n\r\n")
    return b"".join(out)


class Responder(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is not an asyncio.DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        response = answer(data)
        if response is not None:
            self.transport.sendto(response, addr)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Responder, local_addr=("127.0.0.1", port))
    await asyncio.Event().wait()


def main() -> None:
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    runner(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
