"""Microseconds per MANSCDP decode/encode (best of several runs; not a test).

Run: ``python bench/bench_manscdp.py``. The Keepalive figure matters most: a busy platform
decodes ~1,000 keepalives a second.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from gb28181.manscdp import Charset, decode, encode

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sip-wire"


def _body(name: str) -> bytes:
    data = (FIXTURES / f"{name}.sip").read_bytes()
    return data[data.index(b"\r\n\r\n") + 4 :]


def _usec(func: object, number: int = 5000) -> float:
    best = min(timeit.repeat(func, number=number, repeat=7))  # type: ignore[arg-type]
    return best / number * 1e6


def main() -> None:
    keepalive = _body("dahua_keepalive_1")
    # Same message, elements in lower case: misses the fast path, takes the full parser.
    slow = keepalive.replace(b"<Status>OK</Status>", b"<status>OK</status>")
    dirty = keepalive.replace(b"</Status>", b"</Statsu>")
    catalog = _body("hikvision_catalog-response_1")
    msg = decode(catalog)
    cases = {
        "keepalive (fast path)": lambda: decode(keepalive),
        "keepalive (full parser)": lambda: decode(slow),
        "keepalive (broken tag, rebalanced)": lambda: decode(dirty),
        "catalog, 2 items": lambda: decode(catalog),
        "encode catalog, GB2312": lambda: encode(msg, Charset.GB2312),
    }
    for label, func in cases.items():
        print(f"{label:40s} {_usec(func):8.1f} us")


if __name__ == "__main__":
    main()
