"""REGISTER-with-digest throughput and keepalive load, driven by SIPp.

Run on demand (not part of the test suite):

    python bench/bench_register.py [--devices 50000] [--register 40000]

It starts ``gb28181 serve`` pinned to CPU 0 (SIPp runs on CPU 1), then:

1. baselines, each in its own process on CPU 0 like the server: SIPp's own UAS
   (``bench/sipp/uas_register.xml``) and a bare Python responder
   (``bench/bare_responder.py``) answering the same register scenario:
   registrations/s and their CPU-µs per registration; then the bare responder
   answering the keepalive load below (its CPU per keepalive is the floor);
2. our server: full digest registrations (REGISTER, 401, REGISTER, 200) at
   the highest rate SIPp reaches: registrations/s and server CPU-µs per
   registration, with the ratios to the baselines' CPU and the issue's target
   scaled by each baseline;
3. ``--devices`` devices registered, then keeping alive as if every 60 s
   (devices/60 keepalives per second) for ``--seconds``: server CPU share of
   one core, and resident memory per registered device; the server's idle
   share with that population (sweeps, flushes) is printed too.

With ``--repeat N`` the baseline and the registration run N times each (new
device IDs every time) and the medians are printed with every run. The load
average before and after is printed: the machine may be shared.

Figures go to stdout; copy them into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVER_ID = "34020000002000000001"
DOMAIN = "3402000000"
PASSWORD = "12345678"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def injection(path: Path, count: int, start: int = 0) -> Path:
    with path.open("w") as fh:
        fh.write("SEQUENTIAL\n")
        for n in range(start, start + count):
            dev = f"34020000001320{n:06d}"
            fh.write(
                f"{dev};{SERVER_ID};{DOMAIN};[authentication username={dev} password={PASSWORD}]\n"
            )
    return path


def sipp(
    scenario: str, target: str, inf: Path, count: int, rate: int, *, limit: int, cpu: int = 1
) -> tuple[float, int]:
    """Run a SIPp client; return (wall seconds, exit code)."""
    args = [
        "taskset", "-c", str(cpu), shutil.which("sipp") or "sipp",
        "-sf", str(HERE / "sipp" / scenario), "-inf", str(inf),
        "-i", "127.0.0.1", "-p", str(free_port()), "-t", "u1",
        "-m", str(count), "-r", str(rate), "-rp", "1000", "-l", str(limit),
        "-timeout", "120", "-nostdin", "-max_recv_loops", "10000", "-max_sched_loops", "10000",
        target,
    ]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, cwd=inf.parent, timeout=900)
    return time.perf_counter() - started, proc.returncode


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    http = free_port()
    env = {
        **os.environ,
        "GB28181_SIP_LISTEN": "127.0.0.1",
        "GB28181_SIP_PORT": str(port),
        "GB28181_SIP_PASSWORD": PASSWORD,
        "GB28181_HTTP_PORT": str(http),
        "GB28181_LOG_LEVEL": "WARNING",
        # Measure the registrar alone: SIPp devices do not answer Catalog queries.
        "GB28181_DEVICES_CATALOG_ON_REGISTER": "false",
        "GB28181_DEVICES_ALARM_SUBSCRIBE": "false",
        "GB28181_STORAGE_URL": f"sqlite:///{workdir}/bench.db",
    }
    proc = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "gb28181", "serve"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import urllib.request

    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def start_baseline(kind: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start a baseline responder pinned to CPU 0, like the server: SIPp's UAS or bare Python."""
    port = free_port()
    if kind == "sipp":
        cmd = [
            shutil.which("sipp") or "sipp",
            "-sf", str(HERE / "sipp" / "uas_register.xml"),
            "-i", "127.0.0.1", "-p", str(port), "-t", "u1", "-nostdin",
            "-max_recv_loops", "10000", "-max_sched_loops", "10000",
        ]  # fmt: skip
    else:
        cmd = [sys.executable, str(HERE / "bare_responder.py"), str(port)]
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *cmd],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return proc, port


def register_run(
    pid: int, target: str, inf: Path, count: int, inflight: int
) -> tuple[float, float, int]:
    """SIPp registers ``count`` devices at ``target``: (registrations/s, CPU-µs of ``pid``
    per registration, SIPp's exit code)."""
    cpu0 = cpu_seconds(pid)
    wall, rc = sipp("register.xml", target, inf, count, 100000, limit=inflight)
    return count / wall, (cpu_seconds(pid) - cpu0) / count * 1e6, rc


def baseline(kind: str, workdir: Path, count: int, inflight: int) -> tuple[float, float]:
    """(registrations/s, responder CPU-µs per registration) of one baseline run."""
    proc, port = start_baseline(kind, workdir)
    try:
        inf = injection(workdir / f"baseline-{kind}.csv", count)
        rate, cpu, rc = register_run(proc.pid, f"127.0.0.1:{port}", inf, count, inflight)
    finally:
        proc.terminate()
        proc.wait(10)
    return (rate, cpu) if rc == 0 else (float("nan"), float("nan"))


def keepalive_run(
    pid: int, target: str, inf: Path, devices: int, seconds: float
) -> dict[str, float]:
    """Keepalives of ``devices`` devices every 60 s for ``seconds``: CPU of ``pid``."""
    rate = max(1, round(devices / 60))
    n = int(rate * seconds)
    cpu0 = cpu_seconds(pid)
    wall, rc = sipp("keepalive.xml", target, inf, n, rate, limit=2000)
    cpu = cpu_seconds(pid) - cpu0
    return {
        "exit_code": rc,
        "per_s": n / wall,
        "core_share_percent": cpu / wall * 100,
        "cpu_us_per_keepalive": cpu / n * 1e6,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--register", type=int, default=40000, help="registrations for throughput")
    ap.add_argument("--devices", type=int, default=50000, help="devices for the keepalive load")
    ap.add_argument("--seconds", type=float, default=30.0, help="keepalive load duration")
    ap.add_argument(
        "--inflight",
        type=int,
        default=64,
        help="registrations in flight at once (closed loop: SIPp starts a new one as one ends)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs of the throughput phases")
    ap.add_argument(
        "--baseline-inflight",
        type=int,
        default=64,
        help="registrations in flight against SIPp's own UAS (it drops beyond ~100 here)",
    )
    args = ap.parse_args()
    if not shutil.which("sipp"):
        print("sipp not installed (Debian package sip-tester)", file=sys.stderr)
        return 2
    results: dict[str, object] = {"load_average_before": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        # Baselines first, each in its own process on CPU 0 like the server.
        base: dict[str, list[tuple[float, float]]] = {
            kind: [
                baseline(kind, workdir, args.register, args.inflight) for _ in range(args.repeat)
            ]
            for kind in ("sipp", "bare")
        }
        for kind, runs in base.items():
            name = "sipp_uas" if kind == "sipp" else "bare_python"
            results[f"baseline_{name}_registrations_per_s"] = statistics.median(r for r, _ in runs)
            results[f"baseline_{name}_cpu_us_per_registration"] = statistics.median(
                c for _, c in runs
            )
        # Keepalive floor: the bare responder answering the same keepalive load.
        proc, port = start_baseline("bare", workdir)
        try:
            inf = injection(workdir / "pop.csv", args.devices)
            floor = keepalive_run(proc.pid, f"127.0.0.1:{port}", inf, args.devices, args.seconds)
        finally:
            proc.terminate()
            proc.wait(10)
        results["baseline_bare_python_keepalive_core_share_percent"] = floor["core_share_percent"]
        results["baseline_bare_python_cpu_us_per_keepalive"] = floor["cpu_us_per_keepalive"]

        proc, port = start_server(workdir)
        try:
            target = f"127.0.0.1:{port}"
            rss0 = rss_bytes(proc.pid)
            rates, cpus, codes = [], [], []
            for n in range(args.repeat):
                if n:
                    # Let the previous run's transactions end (timer J, 32 s): each run
                    # starts from the same state, well under max_transactions.
                    time.sleep(35)
                start = 100000 + n * args.register
                inf = injection(workdir / f"reg{n}.csv", args.register, start=start)
                rate, cpu, rc = register_run(proc.pid, target, inf, args.register, args.inflight)
                rates.append(rate)
                cpus.append(cpu)
                codes.append(rc)
            results["register_exit_code"] = max(codes)
            results["registrations_per_s"] = statistics.median(rates)
            results["server_cpu_us_per_registration"] = ours = statistics.median(cpus)
            sipp_cpu = statistics.median(c for _, c in base["sipp"])
            bare_cpu = statistics.median(c for _, c in base["bare"])
            results["ratio_to_sipp_uas_registrations_per_s"] = statistics.median(
                r / b for r, (b, _) in zip(rates, base["sipp"], strict=True)
            )
            # The target against its own baselines: 10,000/s where SIPp's UAS does
            # 55,000/s and a bare Python responder 26,000/s, i.e. CPU per registration at most
            # 5.5x SIPp's UAS and 2.6x the bare responder's, whatever the machine's speed.
            results["cpu_ratio_to_sipp_uas"] = ours / sipp_cpu
            results["cpu_ratio_to_bare_python"] = ours / bare_cpu
            results["cpu_ratio_targets"] = {"sipp_uas": 55000 / 10000, "bare_python": 26000 / 10000}
            results["per_core_registrations_per_s"] = 1e6 / ours
            results["target_per_core_scaled_to_this_machine"] = {
                "by_sipp_uas": 10000 * (1e6 / sipp_cpu) / 55000,
                "by_bare_python": 10000 * (1e6 / bare_cpu) / 26000,
            }
            if args.repeat > 1:
                for kind, runs in base.items():
                    results[f"runs_baseline_{kind}"] = [f"{r:.0f}/s {c:.1f}us" for r, c in runs]
                results["runs_registrations_per_s"] = [round(r) for r in rates]
                results["runs_cpu_us_per_registration"] = [round(c, 1) for c in cpus]

            # Keepalive load: register the device population, then keep it alive.
            inf = injection(workdir / "pop.csv", args.devices)
            _, rc = sipp("register.xml", target, inf, args.devices, 100000, limit=args.inflight)
            results["population_register_exit_code"] = rc
            # Steady state: the write-behind queue has flushed and the completed
            # REGISTER transactions have left the transaction layer (Timer J, 32 s).
            time.sleep(35)
            rss1 = rss_bytes(proc.pid)
            registered = args.devices + args.register * args.repeat
            results["rss_bytes_per_device"] = (rss1 - rss0) / registered
            cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            time.sleep(10)
            idle = (cpu_seconds(proc.pid) - cpu0) / (time.perf_counter() - t0)
            results["idle_core_share_percent"] = idle * 100
            ka = keepalive_run(proc.pid, target, inf, args.devices, args.seconds)
            results["keepalive_exit_code"] = ka["exit_code"]
            results["keepalives_per_s"] = ka["per_s"]
            results["keepalive_core_share_percent"] = ka["core_share_percent"]
            results["server_cpu_us_per_keepalive"] = ka["cpu_us_per_keepalive"]
            results["keepalive_cpu_ratio_to_bare_python"] = (
                ka["cpu_us_per_keepalive"] / floor["cpu_us_per_keepalive"]
            )
            # The 10 % of a core, scaled by this machine's speed at the bare responder's
            # registrations against the 26,000/s.
            results["keepalive_target_percent_scaled_to_this_machine"] = (
                10 * 26000 / (1e6 / bare_cpu)
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    results["load_average_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
