"""SIPp as a GB/T 28181 device for integration tests: one way to start it.

A test writes two scenarios — the device's own call (REGISTER, then what the
device sends) and the out-of-call scenario (``-oocsf``) that answers the
requests the platform sends it (Catalog queries, SUBSCRIBE, DeviceInfo...)
— and starts SIPp here against a running platform.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from gb28181.server import Platform
from tests.helpers import sipp_path

from .conftest import DOMAIN, PASSWORD, SERVER_ID, free_port

__all__ = [
    "register_scenario",
    "send_manscdp",
    "sipp_errors",
    "start_sipp_device",
    "wait_until",
]


def register_scenario(
    device_id: str,
    registrar_id: str,
    domain: str,
    *,
    hold_ms: int = 30000,
    encoding: str = "ISO-8859-1",
) -> str:
    """The device's own call: REGISTER, answer the digest challenge, then stay registered
    for ``hold_ms`` while the out-of-call scenario answers the platform's requests."""
    register = """
      REGISTER sip:{registrar}@{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{device}@{domain}>;tag=[pid]R[call_number]
      To: <sip:{device}@{domain}>
      Call-ID: [call_id]
      CSeq: {cseq} REGISTER
      Contact: <sip:{device}@[local_ip]:[local_port]>{auth}
      Max-Forwards: 70
      Expires: 3600
      Content-Length: 0
"""

    def send(cseq: int, auth: str) -> str:
        text = register.format(
            registrar=registrar_id, domain=domain, device=device_id, cseq=cseq, auth=auth
        )
        return f'  <send retrans="500">\n    <![CDATA[\n{text}\n    ]]>\n  </send>\n'

    return (
        f'<?xml version="1.0" encoding="{encoding}" ?>\n<scenario name="device registers">\n'
        + send(1, "")
        + '  <recv response="401" auth="true" />\n'
        + send(2, "\n      [authentication]")
        + '  <recv response="200" />\n'
        + f'  <pause milliseconds="{hold_ms}" />\n</scenario>\n'
    )


async def start_sipp_device(
    platform: Platform,
    tmp_path: Path,
    device_id: str,
    main_scenario: str,
    ooc_scenario: str,
    *,
    timeout: int = 40,
) -> asyncio.subprocess.Process:
    """Write both scenarios (GB2312, as devices send) and start SIPp as ``device_id``."""
    main = tmp_path / "device.xml"
    main.write_bytes(main_scenario.encode("gb2312"))
    ooc = tmp_path / "device_ooc.xml"
    ooc.write_bytes(ooc_scenario.encode("gb2312"))
    host, port = platform.sip_addr
    return await asyncio.create_subprocess_exec(
        sipp_path(),
        "-sf", str(main),
        "-oocsf", str(ooc),
        "-t", "u1",
        "-i", "127.0.0.1",
        "-p", str(free_port()),
        "-au", device_id,
        "-ap", PASSWORD,
        "-m", "1",
        "-timeout", str(timeout),
        "-nostdin",
        "-trace_err",
        "-error_file", str(tmp_path / "sipp_errors.log"),
        f"{host}:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=tmp_path,
    )  # fmt: skip


def sipp_errors(tmp_path: Path) -> str:
    """The tail of SIPp's error log, for assertion messages."""
    errors = tmp_path / "sipp_errors.log"
    return errors.read_text(errors="replace")[-2000:] if errors.exists() else ""


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], steps: int = 600, interval: float = 0.02
) -> bool:
    """Poll ``predicate`` until it holds (True) or ``steps`` polls pass (False)."""
    for _ in range(steps):
        if await predicate():
            return True
        await asyncio.sleep(interval)
    return False


def send_manscdp(device_id: str, body: str, *, tag: str = "C1") -> str:
    """A scenario ``<send>`` of a MANSCDP MESSAGE from ``device_id`` to the platform.

    Each one is its own transaction (new branch); ``[len]`` lets SIPp count
    the body in bytes of the file's encoding.
    """
    return f"""
  <send retrans="500">
    <![CDATA[

      MESSAGE sip:{SERVER_ID}@{DOMAIN} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{device_id}@{DOMAIN}>;tag=[pid]{tag}
      To: <sip:{SERVER_ID}@{DOMAIN}>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Max-Forwards: 70
      Content-Type: Application/MANSCDP+xml
      Content-Length: [len]

      {body}
    ]]>
  </send>
"""
