"""Relay cost: CPU-µs per received packet and packets/s, 1→1 and 1→4, on loopback.

Run on demand:  python bench/bench_relay.py [packets]

Side by side in one run: a plain C relay (blocking ``recvfrom`` + one ``sendto`` per output
with the SSRC/seq rewritten), compiled here with gcc from source written to a temporary
directory, and our :class:`media.worker.RelayWorker` (with UDP GSO if the kernel has it, and
without). Each relay runs in its own process; it measures its own CPU time (getrusage) from
the first packet to the last, so start-up is not counted. The sender blasts 1,400-byte RTP
packets; packets dropped before the relay reads them are simply not counted.
The ratio printed is ours / C for CPU per packet (goal: ≤ 1.0).
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
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


def child(port: int, count: int, dests: list[int], gso: bool) -> None:
    """Run our worker on ``port`` until ``count`` packets (or 1 s idle); print the figures."""
    from media.worker import RelayWorker, WorkerConfig

    worker = RelayWorker(
        WorkerConfig(host="127.0.0.1", port_first=port, port_last=port, gso=gso, timeout=60)
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


def _run(cmd: list[str], port: int, count: int) -> tuple[int, float, float]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.1)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    payload = bytes(PAYLOAD)
    for seq in range(count):
        header = bytes((0x80, 96)) + (seq & 0xFFFF).to_bytes(2, "big")
        header += (seq // 10 * 3600).to_bytes(4, "big") + SSRC.to_bytes(4, "big")
        try:
            sender.sendto(header + payload, ("127.0.0.1", port))
        except OSError:
            pass
        if seq % 64 == 63:
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
    gcc = shutil.which("gcc")
    if gcc is None:
        sys.exit("gcc is needed for the C baseline")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "relay.c"
        binary = Path(tmp) / "relay"
        source.write_text(C_SOURCE)
        subprocess.run([gcc, "-O2", "-o", str(binary), str(source)], check=True)
        print(f"{count} packets of 1400 bytes, loopback; CPU-µs per packet received")
        print(f"{'fan-out':8} {'relay':14} {'pkts':>8} {'µs/pkt':>8} {'pkt/s':>10} {'ratio':>6}")
        for fanout in (1, 4):
            sinks, dests = _free_ports(fanout)
            results = {}
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            probe.close()
            runs = {
                "C recv/sendto": [str(binary), str(port), str(count), *map(str, dests)],
                "ours (GSO)": [
                    sys.executable, __file__, "--child", str(port), str(count), "1",
                    *map(str, dests),
                ],
                "ours (no GSO)": [
                    sys.executable, __file__, "--child", str(port), str(count), "0",
                    *map(str, dests),
                ],
            }  # fmt: skip
            for name, cmd in runs.items():
                got, cpu, wall = _run(cmd, port, count)
                results[name] = cpu / max(got, 1)
                ratio = results[name] / results["C recv/sendto"]
                print(
                    f"1→{fanout:<6} {name:14} {got:8d} {results[name]:8.2f} "
                    f"{got / wall:10.0f} {ratio:6.2f}"
                )
            for s in sinks:
                s.close()
    print(f"(pid {os.getpid()}; the ratio column is CPU per packet against the C relay)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        port, count, gso = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
        child(port, count, [int(p) for p in sys.argv[5:]], gso)
    else:
        main()
