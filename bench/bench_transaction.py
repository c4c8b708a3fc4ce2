"""Per-message cost of the transaction layer on the registrar's path.

Run on demand (not part of the test suite):

    python bench/bench_transaction.py [--requests 20000]

Feeds pre-parsed REGISTERs (one new server transaction each), answers each
with a pre-built response and drains the outputs, as the glue would. Parsing
and response building are excluded: this is the layer's own overhead, in
CPU-µs per request (a digest registration costs two of them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gb28181.sip import (  # noqa: E402
    SipRequest,
    TransactionConfig,
    TransactionLayer,
    make_response,
    parse_message,
)

VECTOR = ROOT / "tests" / "fixtures" / "sip-wire" / "dahua_register_1.sip"


def run(requests: list[SipRequest], reliable: bool) -> float:
    responses = [make_response(r, 401, to_tag="srv") for r in requests]
    layer = TransactionLayer(TransactionConfig(max_transactions=len(requests) + 1))
    addr = ("192.168.1.64", 5060)
    start = time.process_time()
    now = 0.0
    for req, resp in zip(requests, responses, strict=True):
        now += 0.0001
        layer.receive_message(req, addr, now, reliable=reliable)
        event = layer.next_event()
        layer.send_response(event.key, resp, now)  # type: ignore[union-attr]
        layer.messages_to_send()
        while layer.next_event() is not None:
            pass
        layer.get_timer()
    return (time.process_time() - start) / len(requests) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    data = VECTOR.read_bytes()
    requests = []
    for i in range(args.requests):
        msg = parse_message(data.replace(b"z9hG4bK304023727", b"z9hG4bK%d" % i))
        assert isinstance(msg, SipRequest)
        requests.append(msg)
    for reliable in (False, True):
        best = min(run(requests, reliable) for _ in range(5))
        print(f"{'TCP' if reliable else 'UDP'}: {best:.2f} CPU-µs per request (best of 5)")


if __name__ == "__main__":
    main()
