"""Server CPU per REGISTER and per keepalive, in process, without sockets.

Feeds prepared datagrams straight into the running platform's UDP input
(``SipTransport._datagram``) and captures what it sends, so the figures are
the platform's own Python cost per message: parse, transaction layer,
registrar, digest, response, metrics. The kernel's share (recv/send) is what
``bench_register.py`` adds on top.

    python bench/bench_register_inproc.py [--devices 20000] [--repeat 3] [--profile]

Each run starts a fresh platform; with ``--repeat`` the median of the runs is
printed, with the load average before and after (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gb28181.config import load_config  # noqa: E402
from gb28181.server import GC_THRESHOLDS, Platform  # noqa: E402
from gb28181.sip import DigestChallenge, build_authorization, parse_message  # noqa: E402

SERVER = "34020000002000000001"
DOMAIN = "3402000000"
PASSWORD = "12345678"
SRC = ("127.0.0.1", 6000)


def register(dev: str, cseq: int, auth: str | None = None) -> bytes:
    lines = [
        f"REGISTER sip:{SERVER}@{DOMAIN} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:6000;rport;branch=z9hG4bK{dev}r{cseq}",
        f"From: <sip:{dev}@{DOMAIN}>;tag=1{dev}",
        f"To: <sip:{dev}@{DOMAIN}>",
        f"Call-ID: {dev}@127.0.0.1",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{dev}@127.0.0.1:6000>",
        "Max-Forwards: 70",
        "User-Agent: IP Camera",
        "Expires: 3600",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def keepalive(dev: str, sn: int) -> bytes:
    body = (
        '<?xml version="1.0" encoding="GB2312"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n'
        f"<SN>{sn}</SN>\r\n<DeviceID>{dev}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n"
    ).encode()
    head = "\r\n".join(
        [
            f"MESSAGE sip:{SERVER}@{DOMAIN} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:6000;rport;branch=z9hG4bK{dev}k{sn}",
            f"From: <sip:{dev}@{DOMAIN}>;tag=2{dev}",
            f"To: <sip:{SERVER}@{DOMAIN}>",
            f"Call-ID: {dev}k{sn}@127.0.0.1",
            "CSeq: 20 MESSAGE",
            "Max-Forwards: 70",
            "User-Agent: IP Camera",
            "Content-Type: Application/MANSCDP+xml",
            f"Content-Length: {len(body)}",
        ]
    )
    return (head + "\r\n\r\n").encode() + body


async def run(devices: int, profile: bool) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "GB28181_SIP_LISTEN": "127.0.0.1",
            "GB28181_SIP_PORT": "0",
            "GB28181_HTTP_PORT": "0",
            "GB28181_SIP_PASSWORD": PASSWORD,
            "GB28181_LOG_LEVEL": "WARNING",
            "GB28181_DEVICES_CATALOG_ON_REGISTER": "false",
            "GB28181_DEVICES_ALARM_SUBSCRIBE": "false",
            "GB28181_STORAGE_URL": f"sqlite:///{tmp}/bench.db",
        }
        platform = Platform(load_config(None, env=env))
        await platform.start()
        assert platform.signalling is not None
        transport = platform.signalling.transport
        sent: list[bytes] = []
        transport._write = lambda data, addr, conn_id: sent.append(data)  # type: ignore[method-assign]
        ids = [f"34020000001320{n:06d}" for n in range(devices)]
        prof = cProfile.Profile() if profile else None

        def feed(datagrams: list[bytes]) -> float:
            sent.clear()
            if prof:
                prof.enable()
            t0 = time.process_time()
            for data in datagrams:
                transport._datagram(data, SRC)
            elapsed = time.process_time() - t0
            if prof:
                prof.disable()
            return elapsed / len(datagrams) * 1e6

        first = feed([register(d, 1) for d in ids])
        seconds = []
        for dev, data in zip(ids, sent, strict=True):
            challenge = DigestChallenge.parse(
                parse_message(data).headers.get("WWW-Authenticate") or ""
            )
            creds = build_authorization(
                challenge, "REGISTER", f"sip:{SERVER}@{DOMAIN}", dev, PASSWORD, cnonce="0a4f113b"
            )
            seconds.append(register(dev, 2, str(creds)))
        second = feed(seconds)
        ok = sum(1 for d in sent if d.startswith(b"SIP/2.0 200"))
        ka = feed([keepalive(d, 1) for d in ids])
        ka_ok = sum(1 for d in sent if d.startswith(b"SIP/2.0 200"))
        await platform.stop()
    if ok != devices or ka_ok != devices:
        raise SystemExit(f"only {ok} registrations and {ka_ok} keepalives answered 200")
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    return first, second, ka


def report(devices: int, runs: list[tuple[float, float, float]]) -> None:
    first = statistics.median(r[0] for r in runs)
    second = statistics.median(r[1] for r in runs)
    ka = statistics.median(r[2] for r in runs)
    per_reg = first + second
    print(f"devices                       {devices}  (median of {len(runs)} runs)")
    print(f"REGISTER without credentials  {first:8.1f} CPU-us  (answered 401)")
    print(f"REGISTER with digest          {second:8.1f} CPU-us  (answered 200)")
    print(
        f"full registration (both)      {per_reg:8.1f} CPU-us  -> {1e6 / per_reg:,.0f}/s per core"
    )
    print(f"Keepalive MESSAGE             {ka:8.1f} CPU-us  (answered 200)")
    share = ka * devices / 60 / 1e6 * 100
    print(f"{devices} devices every 60 s      {share:8.2f} % of one core (keepalives only)")
    if len(runs) > 1:
        print(
            "runs (401, 200, keepalive):", ", ".join(f"{a:.1f}/{b:.1f}/{c:.1f}" for a, b, c in runs)
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=1, help="runs; the median is printed")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    gc.set_threshold(*GC_THRESHOLDS)  # as `gb28181 serve` runs
    load = os.getloadavg()[0]
    runs = [asyncio.run(run(args.devices, args.profile)) for _ in range(args.repeat)]
    report(args.devices, runs)
    print(f"load average (1 min) before/after: {load:.2f} / {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
