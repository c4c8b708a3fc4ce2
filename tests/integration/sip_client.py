"""A minimal SIP device for driving the platform from tests over real sockets.

Real-peer acceptance is SIPp's and pjsua2's job; this client exists to poke
at our own behaviour (restart persistence, rport, connection reuse) with full
control over every header. It uses our codec, so it proves nothing about
interoperability on its own.
"""

from __future__ import annotations

import asyncio
import itertools
import os

from gb28181.sip import (
    DigestChallenge,
    SipMessage,
    SipRequest,
    SipResponse,
    StreamParser,
    build_authorization,
    parse_message,
)

_counter = itertools.count(1)


class TestDevice:
    """One device on UDP (default) or TCP, talking to ``server``."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        device_id: str,
        password: str,
        server: tuple[str, int],
        *,
        server_id: str,
        domain: str,
        transport: str = "UDP",
        rport: bool = True,
    ) -> None:
        self.device_id = device_id
        self.password = password
        self.server = server
        self.server_id = server_id
        self.domain = domain
        self.transport = transport
        self.rport = rport
        self.call_id = f"{os.urandom(6).hex()}@test"
        self.cseq = 0
        self.inbox: asyncio.Queue[SipMessage] = asyncio.Queue()
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self.local: tuple[str, int] = ("127.0.0.1", 0)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if self.transport == "UDP":
            inbox = self.inbox

            class Proto(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                    inbox.put_nowait(parse_message(data))

            transport, _ = await loop.create_datagram_endpoint(
                Proto, local_addr=("127.0.0.1", 0), remote_addr=self.server
            )
            self._udp = transport
            self.local = transport.get_extra_info("sockname")[:2]
        else:
            reader, writer = await asyncio.open_connection(*self.server)
            self._writer = writer
            self.local = writer.get_extra_info("sockname")[:2]
            self._reader_task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = StreamParser()
        while data := await reader.read(65536):
            for item in parser.feed(data):
                if isinstance(item, SipMessage):
                    self.inbox.put_nowait(item)

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()

    def send(self, message: SipMessage) -> None:
        data = bytes(message)
        if self._udp is not None:
            self._udp.sendto(data)
        else:
            assert self._writer is not None
            self._writer.write(data)

    def request(
        self, method: str, *, headers: list[tuple[str, str]] | None = None, body: bytes = b""
    ) -> SipRequest:
        self.cseq += 1
        via = f"SIP/2.0/{self.transport} {self.local[0]}:{self.local[1]}"
        via += (
            f";{'rport;' if self.rport else ''}branch=z9hG4bK{next(_counter)}x{os.urandom(3).hex()}"
        )
        to = self.device_id if method == "REGISTER" else self.server_id
        lines = [
            f"{method} sip:{self.server_id}@{self.domain} SIP/2.0",
            f"Via: {via}",
            f"From: <sip:{self.device_id}@{self.domain}>;tag=t{self.device_id[-4:]}",
            f"To: <sip:{to}@{self.domain}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} {method}",
            f"Contact: <sip:{self.device_id}@{self.local[0]}:{self.local[1]}>",
            "Max-Forwards: 70",
        ]
        lines += [f"{k}: {v}" for k, v in headers or []]
        raw = "\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n"
        msg = parse_message(raw.encode() + body)
        assert isinstance(msg, SipRequest)
        return msg

    async def response(self, timeout: float = 5.0) -> SipResponse:
        while True:
            msg = await asyncio.wait_for(self.inbox.get(), timeout)
            if isinstance(msg, SipResponse) and msg.status >= 200:
                return msg

    async def register(self, expires: int = 3600) -> SipResponse:
        """REGISTER, answer the challenge, return the final response."""
        self.send(self.request("REGISTER", headers=[("Expires", str(expires))]))
        first = await self.response()
        if first.status != 401:
            return first
        challenge = DigestChallenge.parse(first.headers.get("WWW-Authenticate") or "")
        creds = build_authorization(
            challenge,
            "REGISTER",
            f"sip:{self.server_id}@{self.domain}",
            self.device_id,
            self.password,
            cnonce=os.urandom(4).hex(),
        )
        self.send(
            self.request(
                "REGISTER", headers=[("Expires", str(expires)), ("Authorization", str(creds))]
            )
        )
        return await self.response()

    async def keepalive(self, status: str = "OK") -> SipResponse:
        body = (
            '<?xml version="1.0" encoding="GB2312"?>\r\n<Notify>\r\n'
            "<CmdType>Keepalive</CmdType>\r\n<SN>1</SN>\r\n"
            f"<DeviceID>{self.device_id}</DeviceID>\r\n<Status>{status}</Status>\r\n</Notify>\r\n"
        ).encode()
        self.send(
            self.request(
                "MESSAGE", headers=[("Content-Type", "Application/MANSCDP+xml")], body=body
            )
        )
        return await self.response()
