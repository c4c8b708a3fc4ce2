"""SIP codec cost: µs per parse, per parse+access of the headers a handler reads,
and per serialise, for real captured messages.

Run on demand:  python bench/bench_sip_codec.py
The baseline in the same run is ``bytes.split`` of the same message into
lines, the least any text codec must do.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gb28181.sip import parse_message  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "sip-wire"
MESSAGES = [
    "hikvision_register-auth_1.sip",
    "dahua_keepalive_1.sip",
    "hikvision_catalog-response_1.sip",
    "sdk28181_invite-play_1.sip",
    "wvp_200ok-register_1.sip",
]


def per_call_us(fn: object, number: int) -> float:
    timer = timeit.Timer(fn)  # type: ignore[arg-type]
    best = min(timer.repeat(repeat=5, number=number))
    return best / number * 1e6


def main() -> None:
    print(f"{'message':38} {'bytes':>6} {'split':>7} {'parse':>7} {'p+hdrs':>7} {'serial':>7}  µs")
    for name in MESSAGES:
        data = (FIXTURES / name).read_bytes()
        msg = parse_message(data)

        def parse_access(data: bytes = data) -> None:
            m = parse_message(data)
            m.from_, m.to, m.cseq, m.top_via, m.call_id  # noqa: B018

        n = 20000
        base = per_call_us(lambda data=data: data.split(b"\r\n"), n)
        parse = per_call_us(lambda data=data: parse_message(data), n)
        access = per_call_us(parse_access, n)
        ser = per_call_us(lambda msg=msg: bytes(msg), n)
        print(
            f"{name:38} {len(data):6d} {base:7.2f} {parse:7.2f} {access:7.2f} {ser:7.2f}"
            f"  (parse = {parse / base:.0f}x split)"
        )


if __name__ == "__main__":
    main()
