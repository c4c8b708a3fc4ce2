"""Relay cost: CPU-µs per received packet and packets/s, 1→1 and 1→4, on loopback.

Run on demand:  python bench/bench_relay.py [packets] [repeats] [burst] [rate]

Side by side in one run: a plain C relay (blocking ``recvfrom`` + one ``sendto`` per output
with the SSRC/seq rewritten), compiled here with gcc from source written to a temporary
directory, and our :class:`media.worker.RelayWorker` with UDP GRO in and GSO out, GSO only,
and neither (the fallback). Each relay runs in its own process; it measures its own CPU time
(getrusage) from the first packet to the last, so start-up is not counted. Packets dropped
before the relay reads them are simply not counted.

The sender sends 1,400-byte RTP packets in bursts of ``burst`` (default 16, about one frame
of a 4 Mbit/s camera) with one UDP GSO send each: on loopback the kernel only hands a GRO
socket the datagrams of one GSO send glued together, which is what a NIC's GRO does with a
camera's back-to-back packets. Relays without GRO (the C one included) receive the same
datagrams one by one. ``rate`` (packets/s, default 0: as fast as the sender goes, which
overloads the slower relays; their figures are then per packet they did read) paces the
sender. Each configuration runs ``repeats`` times (default 3); the medians are
printed, with the ratio ours / C for CPU per packet (goal: ≤ 1.0) and the load average.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SSRC = 200000001
PAYLOAD = 1400 - 12
IDLE = 1.0

C_SOURCE = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

static double cpu(void) {
    struct rusage ru; getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec
         + ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec;
}
static double wall(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9;
}
int main(int argc, char **argv) {
    int port = atoi(argv[1]); long count = atol(argv[2]); int n = argc - 3;
    int in = socket(AF_INET, SOCK_DGRAM, 0), out = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 4 << 20; setsockopt(in, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(out, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(in, (struct sockaddr *)&a, sizeof a)) { perror("bind"); return 1; }
    struct sockaddr_in dst[8];
    for (int i = 0; i < n; i++) { dst[i] = a; dst[i].sin_port = htons(atoi(argv[3 + i])); }
    printf("ready\n"); fflush(stdout);
    static unsigned char buf[65536], copy[65536];
    long got = 0; double c0 = 0, w0 = 0, c1 = 0, w1 = 0;
    struct timeval tv = {1, 0};
    while (got < count) {
        ssize_t len = recv(in, buf, sizeof buf, 0);
        if (len < 0) break;
        if (got == 0) { c0 = cpu(); w0 = wall();
            setsockopt(in, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv); }
        got++;
        unsigned short seq = (buf[2] << 8) | buf[3];
        for (int i = 0; i < n; i++) {
            memcpy(copy, buf, len);
            unsigned short s = seq + 1000 * i; unsigned int ssrc = htonl(7 + i);
            copy[2] = s >> 8; copy[3] = s & 255; memcpy(copy + 8, &ssrc, 4);
            sendto(out, copy, len, 0, (struct sockaddr *)&dst[i], sizeof dst[i]);
        }
        c1 = cpu(); w1 = wall();
    }
    printf("%ld %.1f %.6f\n", got, c1 - c0, w1 - w0);
    return 0;
}
"""


def _cpu_us() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return (ru.ru_utime + ru.ru_stime) * 1e6


def child(port: int, count: int, dests: list[int], gso: bool, gro: bool) -> None:
    """Run our worker on ``port`` until ``count`` packets (or 1 s idle); print the figures."""
    from media.worker import RelayWorker, WorkerConfig

    worker = RelayWorker(
        WorkerConfig(
            host="127.0.0.1", port_first=port, port_last=port, gso=gso, gro=gro, timeout=60
        )
    )
    info = worker.open_receiver("udp", port, SSRC)
    for i, dest in enumerate(dests):
        worker.add_output(info["session"], ("127.0.0.1", dest), "udp", 7 + i)
    relay = worker._sessions[info["session"]].relay
    marks: list[float] = []
    # Wrap the loop's clock: it is read once per readiness event, which is where we sample.
    base_clock = worker.clock

    def clock() -> float:
        now = base_clock()
        if relay.packets and not marks:
            marks.extend((_cpu_us(), now))
        return now

    worker.clock = clock
    worker.start()
    print("ready", flush=True)
    last, last_change = -1, time.monotonic()
    while relay.packets < count:
        time.sleep(0.02)
        if relay.packets != last:
            last, last_change = relay.packets, time.monotonic()
        elif relay.packets and time.monotonic() - last_change > IDLE:
            break
    cpu, end = _cpu_us(), time.monotonic()
    got = relay.packets
    worker.stop()
    if not marks:
        marks.extend((cpu, end))
    wall = end - marks[1] - (IDLE if got < count else 0.0)
    print(f"{got} {cpu - marks[0]:.1f} {max(wall, 1e-6):.6f}", flush=True)


def _bursts(count: int, burst: int) -> list[bytes]:
    """The stream, prebuilt: ``burst`` packets (one frame: same timestamp) glued per send."""
    payload = bytes(PAYLOAD)
    out = []
    for first in range(0, count, burst):
        packets = []
        for seq in range(first, min(count, first + burst)):
            header = bytes((0x80, 96)) + (seq & 0xFFFF).to_bytes(2, "big")
            header += (first // burst * 3600).to_bytes(4, "big") + SSRC.to_bytes(4, "big")
            packets.append(header + payload)
        out.append(b"".join(packets))
    return out


def _run(cmd: list[str], port: int, bursts: list[bytes], rate: float) -> tuple[int, float, float]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.1)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    cmsg = [(socket.SOL_UDP, 103, struct.pack("=H", PAYLOAD + 12))]
    dest = ("127.0.0.1", port)
    start = time.monotonic()
    per_burst = len(bursts[0]) / (PAYLOAD + 12) / rate if rate else 0.0
    for i, data in enumerate(bursts):
        try:
            sender.sendmsg([data], cmsg, 0, dest)
        except OSError:
            pass
        if per_burst:
            delay = start + (i + 1) * per_burst - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elif i % 4 == 3:
            time.sleep(0)  # yield the core now and then
    out = proc.communicate(timeout=60)[0].split()
    sender.close()
    got, cpu, wall = int(out[0]), float(out[1]), float(out[2])
    return got, cpu, wall


def _free_ports(n: int) -> tuple[list[socket.socket], list[int]]:
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    return socks, [s.getsockname()[1] for s in socks]


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    burst = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    gcc = shutil.which("gcc")
    if gcc is None:
        sys.exit("gcc is needed for the C baseline")
    bursts = _bursts(count, burst)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "relay.c"
        binary = Path(tmp) / "relay"
        source.write_text(C_SOURCE)
        subprocess.run([gcc, "-O2", "-o", str(binary), str(source)], check=True)
        pace = f"paced at {rate:.0f} packets/s" if rate else "as fast as the sender goes"
        print(
            f"{count} packets of 1400 bytes in GSO bursts of {burst} ({pace}), loopback; "
            f"CPU-µs per packet received, median of {repeats}; load {os.getloadavg()[0]:.2f}"
        )
        print(f"{'fan-out':8} {'relay':16} {'pkts':>8} {'µs/pkt':>8} {'pkt/s':>10} {'ratio':>6}")
        for fanout in (1, 4):
            sinks, dests = _free_ports(fanout)
            figures: dict[str, list[tuple[int, float, float]]] = {}
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            probe.close()
            ours = [sys.executable, __file__, "--child", str(port), str(count)]
            runs = {
                "C recv/sendto": [str(binary), str(port), str(count), *map(str, dests)],
                "ours GRO+GSO": [*ours, "1", "1", *map(str, dests)],
                "ours GSO": [*ours, "1", "0", *map(str, dests)],
                "ours plain": [*ours, "0", "0", *map(str, dests)],
            }
            for _ in range(repeats):  # interleaved, so load changes hit every relay alike
                for name, cmd in runs.items():
                    figures.setdefault(name, []).append(_run(cmd, port, bursts, rate))
            base = 0.0
            for name, results in figures.items():
                per_packet = statistics.median(cpu / max(got, 1) for got, cpu, _ in results)
                rate = statistics.median(got / wall for got, _, wall in results)
                got = int(statistics.median(got for got, _, _ in results))
                base = base or per_packet
                print(
                    f"1→{fanout:<6} {name:16} {got:8d} {per_packet:8.2f} "
                    f"{rate:10.0f} {per_packet / base:6.2f}"
                )
            for s in sinks:
                s.close()
    print(
        f"(pid {os.getpid()}; load {os.getloadavg()[0]:.2f} at the end; the ratio column is "
        "CPU per packet against the C relay)"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        port, count = int(sys.argv[2]), int(sys.argv[3])
        gso, gro = sys.argv[4] == "1", sys.argv[5] == "1"
        child(port, count, [int(p) for p in sys.argv[6:]], gso, gro)
    else:
        main()
