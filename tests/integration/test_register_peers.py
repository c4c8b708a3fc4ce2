"""Registration against peers we did not write: SIPp (load) and pjsua2 (PJSIP).

SIPp plays 1,000 distinct devices, each registering with digest auth, sending
a Keepalive MESSAGE and unregistering, over UDP and over TCP (one connection
per device, as GB/T 28181-2022 §9.1.1 devices behind NAT do). pjsua2 plays one
device through its own SIP stack: register, Keepalive MESSAGE with
``Application/MANSCDP+xml``, re-register.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from gb28181.server import Platform
from tests.helpers import need, sipp_path

from .conftest import DOMAIN, PASSWORD, SERVER_ID, free_port

pytestmark = pytest.mark.peer

HERE = Path(__file__).parent
SCENARIO = HERE / "sipp" / "device_lifecycle.xml"
PJSUA_DEVICE = HERE / "peers" / "pjsua_device.py"


def device_id(n: int) -> str:
    return f"3402000000132{n:07d}"


def write_injection(path: Path, count: int, start: int = 1) -> Path:
    lines = ["SEQUENTIAL"]
    for n in range(start, start + count):
        dev = device_id(n)
        lines.append(
            f"{dev};{SERVER_ID};{DOMAIN};[authentication username={dev} password={PASSWORD}]"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


async def run_sipp(
    platform: Platform, tmp_path: Path, transport: str, count: int, rate: int = 200
) -> tuple[int, str]:
    host, port = platform.sip_addr
    inf = write_injection(tmp_path / "devices.csv", count)
    args = [
        sipp_path(),
        "-sf", str(SCENARIO),
        "-inf", str(inf),
        "-t", transport,
        "-i", "127.0.0.1",
        "-p", str(free_port()),
        "-m", str(count),
        "-r", str(rate),
        "-l", str(min(count, 500)),
        "-max_socket", str(count + 64),
        "-timeout", "120",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-error_file", str(tmp_path / "sipp_errors.log"),
        f"{host}:{port}",
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    errors = tmp_path / "sipp_errors.log"
    text = out.decode(errors="replace")[-3000:]
    if errors.exists():
        text += "\n--- SIPp error log ---\n" + errors.read_text(errors="replace")[-3000:]
    assert proc.returncode is not None
    return proc.returncode, text


def sample(platform: Platform, name: str, labels: dict[str, str] | None = None) -> float:
    value = platform.metrics.registry.get_sample_value(name, labels or {})
    return value or 0.0


@pytest.mark.parametrize("transport", ["u1", "tn"], ids=["udp", "tcp"])
async def test_sipp_thousand_devices_register_keepalive_unregister(
    platform: Platform, tmp_path: Path, transport: str
) -> None:
    count = 1000
    rc, output = await run_sipp(platform, tmp_path, transport, count)
    assert rc == 0, output
    registrar = platform.registrar
    assert registrar is not None
    # Every device registered once, kept alive once, and is gone again.
    registered = sample(
        platform, "gb28181_device_status_changes_total", {"online": "true", "reason": "registered"}
    )
    assert registered == count
    keepalives = sample(
        platform,
        "gb28181_sip_responses_total",
        {"code": "200", "method": "MESSAGE", "direction": "out"},
    )
    assert keepalives == count
    assert registrar.registered_count == 0
    assert registrar.online_count == 0
    assert len([s for s in registrar.devices.values() if s.record.registered_at]) == count
    # History is persisted: registered then unregistered, for every device.
    assert platform.writer is not None and platform.store is not None
    await platform.writer.flush()
    history = await platform.store.status_history(device_id(1))
    assert [e.reason for e in history] == ["unregistered", "registered"]
    stored = await platform.store.load_devices()
    assert len(stored) == count


async def run_pjsua(platform: Platform, transport: str, *extra: str) -> dict[str, object]:
    try:
        import pjsua2  # noqa: F401
    except ImportError:
        need(False, "pjsua2 not installed (pip install pjsua2-python): pjsua2 tests skipped")
    host, port = platform.sip_addr
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PJSUA_DEVICE),
        "--server", f"{host}:{port}",
        "--server-id", SERVER_ID,
        "--domain", DOMAIN,
        "--device", "34020000001320000777",
        "--password", PASSWORD,
        "--transport", transport,
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, f"pjsua2 device printed nothing; stderr: {err.decode()[-2000:]}"
    result: dict[str, object] = json.loads(lines[-1])
    result["returncode"] = proc.returncode
    return result


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_pjsua2_registers_keeps_alive_and_reregisters(
    platform: Platform, transport: str
) -> None:
    result = await run_pjsua(platform, transport)
    assert result["register"] == 200, result
    assert result["keepalive"] == 200, result
    assert result["reregister"] == 200, result
    assert result["returncode"] == 0
    registrar = platform.registrar
    assert registrar is not None
    # The pjsua2 process unregisters when it shuts down; what it did stays.
    st = registrar.get("34020000001320000777")
    assert st is not None and st.record.registered_at is not None
    assert st.record.transport == transport.upper()
    assert st.record.last_keepalive is not None


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_platform_request_reaches_pjsua2_device_where_it_registered(
    platform: Platform, transport: str
) -> None:
    """A MESSAGE from the platform goes over the device's registered transport."""
    task = asyncio.create_task(
        run_pjsua(platform, transport, "--expect-message", "15", "--expect-cmd", "DeviceInfo")
    )
    registrar, signalling = platform.registrar, platform.signalling
    assert registrar is not None and signalling is not None
    dev = "34020000001320000777"
    for _ in range(500):
        st = registrar.get(dev)
        if st is not None and st.registered and st.record.last_keepalive:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail(f"pjsua2 device did not register: {await task}")
    body = (
        '<?xml version="1.0" encoding="GB2312"?>\r\n<Query>\r\n<CmdType>DeviceInfo</CmdType>\r\n'
        f"<SN>7</SN>\r\n<DeviceID>{dev}</DeviceID>\r\n</Query>\r\n"
    ).encode()
    request = signalling.new_request(
        "MESSAGE", dev, dev, content_type="Application/MANSCDP+xml", body=body
    )
    response = await signalling.send_to_device(request, dev)
    assert response.status == 200
    result = await task
    received = result.get("received")
    assert isinstance(received, list) and received, result
    # The platform's own Catalog query after registration may come first.
    info = [m for m in received if "<CmdType>DeviceInfo</CmdType>" in m["body"]]
    assert info, received
    assert info[0]["content_type"].lower() == "application/manscdp+xml"
