"""Cross-department sharing through the city platform (issue 6), against real peers.

A SIPp NVR of the traffic department registers to the city platform (SIP over TLS on, CA and
certificates from the real CLI) with two cameras. An operator (the level-1 administrator,
through ``PATCH /api/v1/channels/{id}``, once the platform has stored them) makes both the
traffic department's and shared, one ordinary (security class 0) and one a specific area
(class 3, the default threshold); the store keeps what it set.

A district client (department ``district-a``, a level-3 user certificate) connects over TLS.
Level 3 views every shared camera except specific areas (第十六条, regulation.md §4), with no
need for a per-department share (that is level 4's ``shared_with``):

* its INVITE for the ordinary camera is answered ``200``: the NVR is invited (the source leg),
  and the fixture capture sent by "the camera" arrives at the client's SDP address with its
  ``y=`` and decodes to every frame;
* its INVITE for the specific-area camera, during that call, is refused ``403`` with the rule
  ``L3-specific-area`` in the reason phrase and the ``Warning`` header; the NVR is never
  invited for it;
* its BYE ends the source leg (our BYE to the NVR, answered 200);
* the audit trail, read back with ``gb28181 audit export``, holds both decisions (principal,
  department, level 3, action view, channel, outcome, rule) and the operator's attribute
  changes; ``gb28181 audit verify`` passes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gb28181.server import Platform
from gb28181.sip import SipResponse, parse_sdp

from .conftest import DOMAIN, SERVER_ID, api_client, free_port
from .sipp_device import sipp_errors, wait_until
from .test_calls_peers import FRAMES, decoded_frames, load_capture, with_ssrc
from .tls_peers import (
    ANSWER_SSRC,
    CALLER_SSRC,
    NVR,
    TlsCaller,
    Viewer,
    cert_files,
    offer,
    start_nvr,
    start_tls_platform,
)

pytestmark = pytest.mark.peer

ORDINARY = "34020000001320000001"
SPECIFIC = "34020000001320000002"
USER = "34020000004000000031"  # a district-a user's client, level 3
OWNER = "traffic"
DEPARTMENT = "district-a"


@pytest.fixture
async def city(tmp_path: Path) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    """The city platform and the operator's API client.

    The client is made here, while the platform is idle: :func:`api_client` makes the
    administrator's token on first use with ``gb28181 admin create``'s code on a second
    SQLite connection, blocking the event loop meanwhile; had one of the platform's writers
    (audit, channels) opened its ``BEGIN IMMEDIATE`` transaction just before, that
    connection would wait for a lock no one can release until it times out.
    """
    platform = await start_tls_platform(tmp_path, [(USER, 3, DEPARTMENT, "user")])
    try:
        assert platform.audit is not None
        await platform.audit.flush()
        async with api_client(platform) as operator:
            yield platform, operator
    finally:
        await platform.stop()


async def classify(operator: httpx.AsyncClient, channel: str, security_class: int) -> None:
    """Set the channel's attributes as an operator does; check what the platform made of them.

    Only once the channel's row is stored: ``PATCH`` sets the catalog node and updates the
    stored row, and when the channel writer has not written that row yet (write-behind),
    the update finds nothing and the writer later inserts the row it queued when the
    catalog arrived, with the default attributes; the decisions (in memory) are right, the
    database is not.
    """
    body = {"security_class": security_class, "owner_department": OWNER, "shared": True}
    r = await operator.patch(f"/api/v1/channels/{channel}", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["specific_area"] is (security_class >= 3), r.json()
    assert r.json()["owner_department"] == OWNER and r.json()["shared"] is True


def invite(client: TlsCaller, channel: str, call_id: str, body: bytes) -> None:
    client.send(
        f"INVITE sip:{channel}@{DOMAIN} SIP/2.0\n"
        + client.headers("INVITE", 1, f"i-{call_id}", channel=channel, call_id=call_id)
        + "Content-Type: APPLICATION/SDP\n"
        + f"Content-Length: {len(body)}\n\n",
        body,
    )


def in_dialog(
    client: TlsCaller,
    method: str,
    cseq: int,
    branch: str,
    channel: str,
    call_id: str,
    to_tag: str,
) -> None:
    client.send(
        f"{method} sip:{SERVER_ID}@127.0.0.1 SIP/2.0\n"
        + client.headers(method, cseq, branch, to_tag, channel=channel, call_id=call_id)
        + "Content-Length: 0\n\n"
    )


async def gb28181(*args: str) -> tuple[int, str, str]:
    """The real CLI, as an operator runs it on the platform's host (without blocking the
    platform, which runs in this event loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gb28181", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def sip_count(platform: Platform, family: str, labels: dict[str, str]) -> float:
    value = platform.metrics.registry.get_sample_value(family, labels)
    return value or 0.0


async def test_level3_district_views_shared_ordinary_camera_not_specific_area(
    city: tuple[Platform, httpx.AsyncClient], tmp_path: Path
) -> None:
    platform, operator = city
    proc = await start_nvr(platform, tmp_path, [ORDINARY, SPECIFIC])
    viewer = Viewer(tcp=False)
    camera = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client: TlsCaller | None = None
    try:
        # The operator classifies cameras the platform has stored: PATCH updates the stored
        # row, and a row the channel writer has not written yet would be written later from
        # the catalog's snapshot, with the defaults (see classify()).
        assert platform.store is not None
        store = platform.store

        async def stored() -> bool:
            rows = await store.load_channels(NVR)
            return {ORDINARY, SPECIFIC} <= {r.channel_id for r in rows}

        assert await wait_until(stored, steps=500)
        await classify(operator, ORDINARY, 0)
        await classify(operator, SPECIFIC, 3)
        rows = {r.channel_id: r for r in await store.load_channels(NVR)}
        assert (rows[SPECIFIC].security_class, rows[SPECIFIC].shared) == (3, True)
        assert rows[SPECIFIC].owner_department == OWNER
        assert (rows[ORDINARY].security_class, rows[ORDINARY].shared) == (0, True)

        assert platform.signalling is not None and platform.signalling.transport.tls_addr
        client = TlsCaller(USER, *cert_files(tmp_path, USER))
        await client.connect(platform.signalling.transport.tls_addr)

        # Another department's ordinary shared camera: answered, the NVR invited.
        invite(client, ORDINARY, "x-ordinary", offer(USER, viewer.port, tcp=False))
        trying = await client.next()
        assert isinstance(trying, SipResponse) and trying.status == 100
        ok = await client.next(30)
        assert isinstance(ok, SipResponse) and ok.status == 200, ok
        answer = parse_sdp(ok.body)
        assert answer.ssrc == CALLER_SSRC and answer.direction == "sendonly"
        ok_tag = ok.to.tag or ""
        in_dialog(client, "ACK", 1, "a-ordinary", ORDINARY, "x-ordinary", ok_tag)
        assert platform.calls is not None
        [session] = platform.calls.sessions.values()
        assert session.channel_id == ORDINARY and session.answer_ssrc == ANSWER_SSRC
        camera.connect(("127.0.0.1", session.port))
        packets = load_capture()
        for n, packet in enumerate(packets):
            camera.send(with_ssrc(packet, int(ANSWER_SSRC)))
            if n % 8 == 7:
                await asyncio.sleep(0.002)
        received = await viewer.receive(len(packets))
        assert len(received) == len(packets)
        assert {struct.unpack_from(">I", p, 8)[0] for p in received} == {int(CALLER_SSRC)}
        assert decoded_frames(received) == FRAMES

        # The specific-area camera of the same department, during that call: refused.
        invite(client, SPECIFIC, "x-specific", offer(USER, free_port(), tcp=False))
        trying = await client.next()
        assert isinstance(trying, SipResponse) and trying.status == 100
        refused = await client.next(30)
        assert isinstance(refused, SipResponse) and refused.status == 403, refused
        assert refused.call_id == "x-specific"
        assert "L3-specific-area" in refused.reason, refused.reason
        warning = refused.headers.get("Warning") or ""
        assert warning.startswith("399 "), warning
        assert '"L3-specific-area: level 3 excludes specific areas"' in warning, warning
        # A non-2xx final answer is ACKed in its transaction (RFC 3261 §17.1.1.3).
        client.send(
            f"ACK sip:{SPECIFIC}@{DOMAIN} SIP/2.0\n"
            + client.headers(
                "ACK",
                1,
                "i-x-specific",
                refused.to.tag or "",
                channel=SPECIFIC,
                call_id="x-specific",
            )
            + "Content-Length: 0\n\n"
        )
        invites = {"method": "INVITE", "direction": "out"}
        assert sip_count(platform, "gb28181_sip_messages_total", invites) == 1.0
        assert [s.channel_id for s in platform.calls.sessions.values()] == [ORDINARY]
        assert platform.inbound is not None and list(platform.inbound.active) == ["x-ordinary"]

        # The client hangs up: the source leg ends (our BYE, answered by the NVR).
        in_dialog(client, "BYE", 2, "b-ordinary", ORDINARY, "x-ordinary", ok_tag)
        bye_ok = await client.next()
        assert isinstance(bye_ok, SipResponse) and bye_ok.status == 200, bye_ok
        assert bye_ok.call_id == "x-ordinary"
        bye_answered = {"code": "200", "method": "BYE", "direction": "in"}

        async def source_ended() -> bool:
            return not platform.calls.sessions if platform.calls else False

        async def nvr_answered_bye() -> bool:
            return sip_count(platform, "gb28181_sip_responses_total", bye_answered) == 1.0

        assert await wait_until(source_ended, steps=500)
        assert await wait_until(nvr_answered_bye, steps=500), sipp_errors(tmp_path)
        assert platform.inbound.active == {}
    finally:
        if client is not None:
            client.writer.close()
        viewer.close()
        camera.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "unexpected" not in sipp_errors(tmp_path).lower(), sipp_errors(tmp_path)

    # The audit trail, as an auditor reads it: exported by the CLI, then verified.
    assert platform.audit is not None
    await platform.audit.flush()
    url = platform.config.storage.url
    exported = tmp_path / "audit.jsonl"
    code, _, err = await gb28181("audit", "export", "--store-url", url, "--out", str(exported))
    assert code == 0, err
    trail: list[dict[str, Any]] = [json.loads(line) for line in exported.read_text().splitlines()]
    decisions = [
        r for r in trail if r["principal_id"] == USER and r["target"] in (ORDINARY, SPECIFIC)
    ]
    assert [
        (r["action"], r["target"], r["outcome"], r["rule"], r["department"], r["level"])
        for r in decisions
    ] == [
        ("authz.view", ORDINARY, "allow", "L3-shared", DEPARTMENT, 3),
        ("authz.view", SPECIFIC, "deny", "L3-specific-area", DEPARTMENT, 3),
    ]
    assert decisions[1]["reason"] == "level 3 excludes specific areas"
    assert all(r["source"].startswith("sip:tls:") for r in decisions)  # from where (art. 21)
    # The operator's changes that made the cameras so are in the same trail.
    changes = {r["target"]: r for r in trail if r["action"] == "config.channel"}
    assert changes[SPECIFIC]["outcome"] == "ok" and changes[SPECIFIC]["level"] == 1
    assert changes[SPECIFIC]["extra"]["security_class"] == 3
    assert changes[ORDINARY]["extra"] == {
        "security_class": 0,
        "owner_department": OWNER,
        "shared": True,
    }
    code, out, err = await gb28181("audit", "verify", "--store-url", url)
    assert code == 0 and out.startswith("audit trail OK: "), (out, err)
    # Every exported record is in the verified chain (the platform may have added more since).
    assert int(out.split()[3]) >= len(trail) == trail[-1]["seq"], out
