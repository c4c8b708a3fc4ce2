"""Many cameras in one relay worker: CPU share of a core at a camera-like load, on loopback.

Run on demand:  python bench/bench_relay_streams.py [streams] [seconds] [gro]

One :class:`media.worker.RelayWorker` in a child process receives ``streams`` streams (one
port each, as the platform runs them), each like a 4 Mbit/s, 25 fps camera: a frame of 14
packets of 1,400 bytes every 40 ms (357 packets/s), sent as one UDP GSO burst (what a NIC's
GRO makes of a camera's back-to-back packets; on loopback only a GSO send gives a GRO socket
a batch). Streams are spread over the 40 ms tick. Each stream goes 1→1 to a sink. The child
measures its own CPU (getrusage: user + system, the kernel's UDP work included) over the
steady part of the run and prints the share of one core, CPU-µs per packet and the cameras
per core that share implies. ``gro`` 0 runs the no-GRO fallback for comparison.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PACKETS_PER_FRAME = 14
FRAME_INTERVAL = 0.04
SIZE = 1400
SSRC_BASE = 300000000
WARMUP = 1.0


def _cpu_us() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return (ru.ru_utime + ru.ru_stime) * 1e6


def child(streams: int, seconds: float, gro: bool) -> None:
    from media.worker import RelayWorker, WorkerConfig

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    base = 20000 + probe.getsockname()[1] % 20000
    probe.close()
    worker = RelayWorker(
        WorkerConfig(
            host="127.0.0.1",
            port_first=base,
            port_last=base + streams + 200,
            gro=gro,
            timeout=120,
            socket_buffer=1 << 20,
        )
    )
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    ports = []
    for i in range(streams):
        info = worker.open_receiver("udp", None, SSRC_BASE + i)
        worker.add_output(info["session"], sink.getsockname(), "udp", 7 + i)
        ports.append(info["port"])
    worker.start()
    print(json.dumps(ports), flush=True)
    time.sleep(WARMUP)
    cpu0, wall0 = _cpu_us(), time.monotonic()
    packets0 = sum(s["packets"] for s in worker.call(worker.stats)["sessions"].values())
    time.sleep(seconds)
    cpu1, wall1 = _cpu_us(), time.monotonic()
    stats = worker.call(worker.stats)["sessions"].values()
    packets1 = sum(s["packets"] for s in stats)
    lost = sum(s["lost"] for s in stats)
    worker.stop()
    sink.close()
    print(f"{packets1 - packets0} {cpu1 - cpu0:.1f} {wall1 - wall0:.6f} {lost}", flush=True)


def main() -> None:
    streams = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    gro = (sys.argv[3] if len(sys.argv) > 3 else "1") == "1"
    load = os.getloadavg()[0]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", str(streams), str(seconds), "1" if gro else "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ports = json.loads(proc.stdout.readline())
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    cmsg = [(socket.SOL_UDP, 103, struct.pack("=H", SIZE))]
    payload = bytes(SIZE - 12)
    start = time.monotonic()
    end = start + WARMUP + seconds + 0.5
    frame = 0
    behind = 0
    while time.monotonic() < end:
        tick = start + frame * FRAME_INTERVAL
        for i, port in enumerate(ports):
            # Spread the streams over the tick, as independent cameras are.
            at = tick + FRAME_INTERVAL * i / len(ports)
            delay = at - time.monotonic()
            if delay > 0.0005:
                time.sleep(delay)
            first = frame * PACKETS_PER_FRAME
            head = (0x80, 96)
            ts = (frame * 3600) & 0xFFFFFFFF
            data = b"".join(
                bytes(head)
                + ((first + k) & 0xFFFF).to_bytes(2, "big")
                + ts.to_bytes(4, "big")
                + (SSRC_BASE + i).to_bytes(4, "big")
                + payload
                for k in range(PACKETS_PER_FRAME)
            )
            try:
                sender.sendmsg([data], cmsg, 0, ("127.0.0.1", port))
            except OSError:
                pass
        frame += 1
        if time.monotonic() > start + frame * FRAME_INTERVAL + FRAME_INTERVAL:
            behind += 1
    out = proc.communicate(timeout=60)[0].split()
    got, cpu, wall, lost = int(out[0]), float(out[1]), float(out[2]), int(out[3])
    share = cpu / 1e6 / wall
    offered = len(ports) * PACKETS_PER_FRAME / FRAME_INTERVAL
    print(
        f"{streams} streams of 4 Mbit/s (357 packets/s each, GSO bursts of {PACKETS_PER_FRAME}), "
        f"1→1, {'GRO+GSO' if gro else 'no GRO (fallback), GSO'}; load {load:.2f}"
    )
    print(f"offered {offered:,.0f} packets/s, relayed {got / wall:,.0f} packets/s, lost {lost}")
    if behind:
        print(f"(the sender fell behind its schedule in {behind} ticks)")
    per_packet = cpu / max(got, 1)
    print(
        f"worker CPU {share * 100:.1f} % of a core, {per_packet:.2f} µs per packet: "
        f"about {1e6 / per_packet / 357:,.0f} such cameras per core"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1")
    else:
        main()
