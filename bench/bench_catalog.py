"""Catalog ingest: 100 lower platforms x 1,000 channels through decode, correlator and tree.

Run: ``python bench/bench_catalog.py [--platforms 100] [--channels 1000] [--per-message 8]
[--tracemalloc] [--store sqlite:///tmp/bench.db]``.

Each platform answers one Catalog query with real MANSCDP Response bodies (8 items per MESSAGE
as WVP sends, GB2312 with Chinese names, one business group, ten virtual organisations), and the
chunks of all platforms arrive interleaved, so 100 queries are pending at once. Body generation
is not timed; the timed path is ``manscdp.decode`` -> ``QueryCorrelator.receive`` ->
``CatalogTree.apply_catalog`` on completion. Target (issue): under 10 s and under 500 MB.
Peak memory is the process's ``ru_maxrss`` (whole process, bodies included); ``--tracemalloc``
also reports the Python-heap peak of the timed phase, at the cost of a slower run.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from gb28181.catalog import CatalogTree
from gb28181.correlator import QueryCorrelator, QueryDone
from gb28181.manscdp import (
    CatalogInfo,
    CatalogItem,
    CatalogResponse,
    Charset,
    Message,
    decode,
    encode,
)

SERVER_ID = "34020000002000000001"
_STREETS = ("人民路", "长江西路", "黄山路", "金寨路", "望江东路", "徽州大道", "南二环", "潜山路")


def platform_id(p: int) -> str:
    return f"3401{p:06d}2000000001"[:20]


def platform_items(p: int, channels: int) -> list[CatalogItem]:
    """A lower platform's catalog: one business group, ten organisations, the cameras."""
    pid = platform_id(p)
    prefix = pid[:10]
    group = f"{prefix}2150000001"
    items = [CatalogItem(device_id=group, name=f"平台{p}业务分组", parent_id=pid)]
    orgs = [f"{prefix}216{o:07d}" for o in range(1, 11)]
    items += [
        CatalogItem(
            device_id=org,
            name=f"第{o}派出所",
            parent_id=group,
            business_group_id=group,
        )
        for o, org in enumerate(orgs, 1)
    ]
    for c in range(channels - len(items)):
        street = _STREETS[c % len(_STREETS)]
        items.append(
            CatalogItem(
                device_id=f"{prefix}131{c:07d}",
                name=f"{street}与{_STREETS[(c // 8) % 8]}交口{c}号枪机",
                manufacturer="Hikvision",
                model="DS-2CD3T46WDV3-I3",
                owner="Owner",
                civil_code=prefix[:6],
                address=f"合肥市{street}{c}号",
                parental=0,
                parent_id=orgs[c % len(orgs)],
                safety_way=0,
                register_way=1,
                secrecy=0,
                status="ON" if c % 17 else "OFF",
                longitude=117.2 + c * 1e-5,
                latitude=31.8 + c * 1e-5,
                info=CatalogInfo(ptz_type=1 + c % 3, download_speed="1/2/4"),
            )
        )
    return items


def build_bodies(platforms: int, channels: int, per_message: int) -> list[tuple[str, bytes]]:
    """(sender, body) pairs, interleaved round-robin across platforms."""
    streams: list[list[tuple[str, bytes]]] = []
    for p in range(platforms):
        pid = platform_id(p)
        items = platform_items(p, channels)
        stream = []
        for start in range(0, len(items), per_message):
            chunk = tuple(items[start : start + per_message])
            message = CatalogResponse(
                sn=p + 1, device_id=pid, sum_num=len(items), num=len(chunk), items=chunk
            )
            stream.append((pid, encode(message, Charset.GB2312)))
        streams.append(stream)
    interleaved = []
    for i in range(max(len(s) for s in streams)):
        interleaved += [s[i] for s in streams if i < len(s)]
    return interleaved


def ingest(
    bodies: list[tuple[str, bytes]], platforms: int, *, predecoded: list[Message] | None = None
) -> tuple[dict[str, CatalogTree], float, int]:
    """The timed path; returns the trees, seconds spent decoding, and changes produced.

    With ``predecoded`` the messages are taken from there (correlator + tree cost alone).
    """
    correlator = QueryCorrelator()
    trees: dict[str, CatalogTree] = {}
    now = 0.0
    for p in range(platforms):
        pid = platform_id(p)
        trees[pid] = CatalogTree(pid, server_id=SERVER_ID)
        correlator.expect(pid, "Catalog", p + 1, now, timeout=60.0)
    decode_time = 0.0
    changes = 0
    clock = time.perf_counter
    for index, (sender, body) in enumerate(bodies):
        if predecoded is None:
            t0 = clock()
            message = decode(body)
            decode_time += clock() - t0
        else:
            message = predecoded[index]
        for event in correlator.receive(message, sender, now):
            assert isinstance(event, QueryDone) and not event.partial, event
            sync = trees[event.device_id].apply_catalog(event.items, now)
            changes += len(sync.changes)
    assert correlator.pending_count == 0
    return trees, decode_time, changes


async def persist(url: str, trees: dict[str, CatalogTree]) -> float:
    from gb28181.store import open_store

    async with await open_store(url) as store:
        t0 = time.perf_counter()
        for device_id, tree in trees.items():
            await store.upsert_channels(device_id, tree.records())
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platforms", type=int, default=100)
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--per-message", type=int, default=8)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--store", help="also upsert every channel into this store URL")
    args = parser.parse_args()

    t0 = time.perf_counter()
    bodies = build_bodies(args.platforms, args.channels, args.per_message)
    body_bytes = sum(len(b) for _, b in bodies)
    print(
        f"built {len(bodies):,} MESSAGE bodies ({body_bytes / 1e6:.1f} MB) "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.tracemalloc:
        tracemalloc.start()
    t0 = time.perf_counter()
    trees, decode_time, changes = ingest(bodies, args.platforms)
    elapsed = time.perf_counter() - t0
    items = sum(len(t) for t in trees.values())
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ingested {items:,} items ({changes:,} changes) in {elapsed:.2f} s")
    print(f"  {items / elapsed:,.0f} items/s end to end")
    print(
        f"  decode {decode_time:.2f} s ({decode_time / items * 1e6:.1f} us/item), "
        f"correlator + tree {elapsed - decode_time:.2f} s "
        f"({(elapsed - decode_time) / items * 1e6:.1f} us/item)"
    )
    print(f"  peak RSS {rss_after:.0f} MB (before ingest {rss_before:.0f} MB)")
    if args.tracemalloc:
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"  tracemalloc peak during ingest {peak / 1e6:.0f} MB")
    messages = [decode(body) for _, body in bodies]
    t0 = time.perf_counter()
    ingest(bodies, args.platforms, predecoded=messages)
    alone = time.perf_counter() - t0
    print(f"  correlator + tree alone (pre-decoded): {alone / items * 1e6:.1f} us/item")
    if args.store:
        seconds = asyncio.run(persist(args.store, trees))
        print(f"persisted {items:,} channels in {seconds:.2f} s ({items / seconds:,.0f}/s)")


if __name__ == "__main__":
    main()
