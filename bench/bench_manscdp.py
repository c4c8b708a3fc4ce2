"""Microseconds per MANSCDP decode/encode (best of several runs; not a test).

Run: ``python bench/bench_manscdp.py``. Two figures matter most: Keepalive (a busy platform
decodes ~1,000 a second; budget 5 us) and a WVP-style catalog chunk of 8 GB2312 items (a city
platform ingests 100,000 channels at once; budget 25 us per item, 200 us per chunk).
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from gb28181.manscdp import CatalogInfo, CatalogItem, CatalogResponse, Charset, decode, encode

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sip-wire"


def _body(name: str) -> bytes:
    data = (FIXTURES / f"{name}.sip").read_bytes()
    return data[data.index(b"\r\n\r\n") + 4 :]


def _usec(func: object, number: int = 5000) -> float:
    best = min(timeit.repeat(func, number=number, repeat=7))  # type: ignore[arg-type]
    return best / number * 1e6


def _chunk() -> bytes:
    """8 catalog items as a lower platform sends them (same shape as ``bench_catalog.py``)."""
    items = tuple(
        CatalogItem(
            device_id=f"34010000001310{c:06d}",
            name=f"人民路与长江西路交口{c}号枪机",
            manufacturer="Hikvision",
            model="DS-2CD3T46WDV3-I3",
            owner="Owner",
            civil_code="340100",
            address=f"合肥市人民路{c}号",
            parental=0,
            parent_id="34010000002160000001",
            safety_way=0,
            register_way=1,
            secrecy=0,
            status="ON",
            longitude=117.2 + c * 1e-5,
            latitude=31.8 + c * 1e-5,
            info=CatalogInfo(ptz_type=1 + c % 3, download_speed="1/2/4"),
        )
        for c in range(8)
    )
    message = CatalogResponse(sn=1, device_id="34010000002000000001", sum_num=8, num=8, items=items)
    return encode(message, Charset.GB2312)


def main() -> None:
    keepalive = _body("dahua_keepalive_1")
    # Same message, elements in lower case: misses the fast path, takes the full parser.
    slow = keepalive.replace(b"<Status>OK</Status>", b"<status>OK</status>")
    dirty = keepalive.replace(b"</Status>", b"</Statsu>")
    catalog = _body("hikvision_catalog-response_1")
    msg = decode(catalog)
    chunk = _chunk()
    cases = {
        "keepalive (fast path)": lambda: decode(keepalive),
        "keepalive (full parser)": lambda: decode(slow),
        "keepalive (broken tag, rebalanced)": lambda: decode(dirty),
        "catalog, 2 items": lambda: decode(catalog),
        "catalog chunk, 8 items GB2312": lambda: decode(chunk),
        "encode catalog, GB2312": lambda: encode(msg, Charset.GB2312),
    }
    for label, func in cases.items():
        usec = _usec(func, number=1000 if "chunk" in label else 5000)
        per_item = f"  ({usec / 8:.1f} us/item)" if "8 items" in label else ""
        print(f"{label:40s} {usec:8.1f} us{per_item}")


if __name__ == "__main__":
    main()
