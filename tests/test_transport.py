"""Transport glue on loopback: Via stamping (RFC 3581), bad input, TCP pings, TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gb28181.sip import (
    RequestReceived,
    SipResponse,
    TransactionLayer,
    make_response,
    parse_message,
)
from gb28181.transport import SipTransport


class Echo:
    """A tiny application: answers every request 200 and remembers it."""

    def __init__(self) -> None:
        self.layer = TransactionLayer()
        self.transport = SipTransport(self.layer, self.drain)
        self.requests: list[RequestReceived] = []

    def drain(self) -> None:
        while (ev := self.layer.next_event()) is not None:
            if isinstance(ev, RequestReceived):
                self.requests.append(ev)
                self.layer.send_response(ev.key, make_response(ev.request, 200, to_tag="x"), 0.0)


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    app = Echo()
    await app.transport.start("127.0.0.1", 0)
    try:
        yield app
    finally:
        await app.transport.stop()


def options(via_host: str = "10.9.9.9", port: int = 5060, rport: bool = True) -> bytes:
    rp = ";rport" if rport else ""
    return (
        "OPTIONS sip:34020000002000000001@3402000000 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {via_host}:{port}{rp};branch=z9hG4bKt1\r\n"
        "From: <sip:34020000001320000001@3402000000>;tag=a\r\n"
        "To: <sip:34020000002000000001@3402000000>\r\n"
        "Call-ID: tr-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.inbox.put_nowait(data)


async def udp_client(addr: tuple[str, int]) -> tuple[asyncio.DatagramTransport, Client]:
    loop = asyncio.get_running_loop()
    t, p = await loop.create_datagram_endpoint(Client, remote_addr=addr)
    return t, p


async def test_udp_reply_goes_to_source_with_received_and_rport(echo: Echo) -> None:
    assert echo.transport.local_addr is not None
    t, client = await udp_client(echo.transport.local_addr)
    try:
        t.sendto(options())  # Via claims a private address the reply cannot reach
        resp = parse_message(await asyncio.wait_for(client.inbox.get(), 5))
    finally:
        t.close()
    assert isinstance(resp, SipResponse) and resp.status == 200
    top = resp.top_via
    local_port = t.get_extra_info("sockname")[1]
    assert top.params["received"] == "127.0.0.1"
    assert top.params["rport"] == str(local_port)


async def test_garbage_is_counted_and_a_bad_via_gets_400(echo: Echo) -> None:
    assert echo.transport.local_addr is not None
    t, client = await udp_client(echo.transport.local_addr)
    try:
        t.sendto(b"\x00\xffnot sip at all")
        t.sendto(options().replace(b"SIP/2.0/UDP 10.9.9.9:5060", b"SIP/2.0/UDP bad host"))
        resp = parse_message(await asyncio.wait_for(client.inbox.get(), 5))
    finally:
        t.close()
    assert isinstance(resp, SipResponse) and resp.status == 400
    assert echo.transport.parse_errors == 1
    assert echo.requests == []


async def test_tcp_pings_are_answered_and_messages_framed(echo: Echo) -> None:
    assert echo.transport.local_addr is not None
    reader, writer = await asyncio.open_connection(*echo.transport.local_addr)
    try:
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"
        msg = options().replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
        writer.write(msg[:40])
        await writer.drain()
        writer.write(msg[40:])
        data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
    assert data.startswith(b"SIP/2.0 200")
    assert echo.requests[0].conn_id is not None


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_sip_over_tls_on_its_own_port(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    app = Echo()
    await app.transport.start("127.0.0.1", 0, tls_port=0, tls=server_ctx)
    try:
        assert app.transport.tls_addr is not None
        client_ctx = ssl.create_default_context(cafile=str(cert))
        client_ctx.check_hostname = False
        reader, writer = await asyncio.open_connection(*app.transport.tls_addr, ssl=client_ctx)
        try:
            writer.write(options().replace(b"SIP/2.0/UDP", b"SIP/2.0/TLS"))
            data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        finally:
            writer.close()
        assert data.startswith(b"SIP/2.0 200")
        conn = app.transport.connection(app.requests[0].conn_id)
        assert conn is None or conn.transport == "TLS"
    finally:
        await app.transport.stop()
