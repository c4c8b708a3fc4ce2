"""Catalog sync of a 20,000-item lower platform, end to end, and our catalog answered back.

Run: ``python bench/bench_catalog_sync.py [--per-message 20] [--postgres postgresql://...]``
(with ``--postgres``, a database of its own is created on that server and dropped after).

Part 1 (ingest): a whole platform (``Platform``, SQLite by default) on loopback and SIPp as
the lower platform (a separate process; the scenario and the injection file of
``tests/integration/test_lower_platform_peers.py``): it registers with digest, our Catalog
query goes out, and it answers with 20,000 items (3 regions, a business group, 10 virtual
organisations, 19,986 cameras, GB2312 Chinese names) in MESSAGEs of ``--per-message`` items,
each sent after the 200 to the previous one (as WVP does, notes §9), over UDP. Timed: from
the registration's 200 (the query is sent at once) to (a) every item decoded, correlated and
applied to the tree in memory, (b) every row written to the store. The platform's own CPU time
over (a) is reported too (SIPp runs in its own process).

Part 2 (answer): the same 20,000 nodes as our catalog, answered to another platform's Catalog
query through :class:`~gb28181.catalog_responder.CatalogResponder` with an in-process link
that answers 200 at once: the cost of filtering (a visibility filter allowing everything),
building the items and encoding GB2312 bodies of 10 items.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from authz import Principal, PrincipalKind
from gb28181 import manscdp
from gb28181.catalog_responder import CatalogPeer, CatalogResponder
from gb28181.server import Platform
from gb28181.sip import SipRequest, SipResponse, make_response, parse_message
from tests.integration import test_lower_platform_peers as lower
from tests.integration.conftest import platform_env, start_platform
from tests.integration.sipp_device import sipp_errors


async def ingest(per_message: int, store: str | None) -> Platform:
    lower.PER_MESSAGE = per_message
    tmp = Path(tempfile.mkdtemp(prefix="bench-catalog-sync-"))
    env = platform_env(
        tmp,
        GB28181_SIP_KEEPALIVE_INTERVAL="5",
        GB28181_DEVICES_CATALOG_SUBSCRIBE="false",
    )
    if store:
        env["GB28181_STORAGE_URL"] = store
    platform = await start_platform(env)
    assert platform.signalling is not None and platform.catalogs is not None
    assert platform.channel_writer is not None and platform.store is not None
    marks: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def registered(device_id: str, now: float) -> None:
        marks.setdefault("registered", time.perf_counter())
        cpu.setdefault("registered", time.process_time())

    def synced(device_id: str, result: object, now: float) -> None:
        marks["memory"] = time.perf_counter()
        cpu["memory"] = time.process_time()

    platform.signalling.on_registered.insert(0, registered)
    platform.catalogs.sync_listeners.append(synced)
    proc = await lower.start_lower_platform(platform, tmp, timeout=600)
    try:
        while "memory" not in marks:
            if proc.returncode is not None:
                raise RuntimeError(f"SIPp ended: {sipp_errors(tmp)}")
            await asyncio.sleep(0.01)
        result = platform.catalogs.last_result.get(lower.LOWER)
        await platform.channel_writer.flush()
        rows = await platform.store.load_channels(lower.LOWER)
        marks["store"] = time.perf_counter()
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
    messages = -(-lower.TOTAL // per_message)
    to_memory = marks["memory"] - marks["registered"]
    to_store = marks["store"] - marks["registered"]
    busy = cpu["memory"] - cpu["registered"]
    print(
        f"ingest  {lower.TOTAL} items in {messages} MESSAGEs of {per_message} over UDP "
        f"(SIPp, one in flight), store {platform.store.dialect}: sync {result}, "
        f"{len(rows)} rows"
    )
    print(
        f"  in memory {to_memory:6.2f} s ({lower.TOTAL / to_memory:8.0f} items/s, "
        f"{messages / to_memory:6.0f} MESSAGEs/s); platform CPU {busy:5.2f} s "
        f"({busy / lower.TOTAL * 1e6:5.1f} us/item)"
    )
    print(f"  in store  {to_store:6.2f} s")
    return platform


class _Link:
    def __init__(self) -> None:
        self.bodies = 0
        self.bytes = 0
        self._n = 0

    def new_request(
        self,
        method: str,
        *,
        content_type: str,
        body: bytes,
        headers: list[tuple[str, str]] | None = None,
    ) -> SipRequest:
        self._n += 1
        raw = (
            f"{method} sip:{lower.LOWER}@127.0.0.1:5070 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKb{self._n}\r\n"
            f"From: <sip:x@d>;tag=a\r\nTo: <sip:y@d>\r\nCall-ID: b{self._n}\r\n"
            f"CSeq: 1 {method}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        request = parse_message(raw)
        assert isinstance(request, SipRequest)
        return request

    async def send(self, request: SipRequest) -> SipResponse:
        self.bodies += 1
        self.bytes += len(request.body)
        return make_response(request, 200, to_tag="t")

    def via(self) -> str:
        return "SIP/2.0/UDP 127.0.0.1:5060;rport"

    def contact(self) -> str:
        return "<sip:x@127.0.0.1:5060>"


class _Everything:
    def visible(self, principal: Principal, channel_ids: Iterable[str]) -> list[str]:
        return list(channel_ids)


async def answer(platform: Platform) -> None:
    assert platform.catalogs is not None
    responder = CatalogResponder(
        platform.catalogs.trees,
        _Everything(),
        lambda _id: True,
        server_id="34020000002000000001",
        items_per_message=10,
    )
    link = _Link()
    peer = CatalogPeer("34020000002000000077", Principal("x", PrincipalKind.PLATFORM, "d", 1), link)
    query = manscdp.CatalogQuery(sn=1, device_id="34020000002000000001")
    started, cpu = time.perf_counter(), time.process_time()
    total = await responder.answer_query(peer, query)
    wall, busy = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"answer  {total} items ({total - 1 - 14} channels + platform + organisations) in "
        f"{link.bodies} GB2312 MESSAGEs of 10 ({link.bytes / 1e6:.1f} MB): {wall:5.2f} s wall, "
        f"{busy:5.2f} s CPU ({busy / total * 1e6:5.1f} us/item; link answers at once)"
    )


@contextlib.asynccontextmanager
async def scratch_database(server: str) -> AsyncIterator[str]:
    """A fresh database on ``server`` (a PostgreSQL URL), dropped afterwards."""
    import asyncpg  # type: ignore[import-untyped]

    name = f"bench_catalog_sync_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = server.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(server)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def run(per_message: int, store: str | None) -> None:
    platform = await ingest(per_message, store)
    try:
        await answer(platform)
    finally:
        with contextlib.suppress(Exception):
            await platform.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-message", type=int, default=20)
    parser.add_argument(
        "--postgres", default=None, metavar="URL", help="PostgreSQL server (default: SQLite)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.postgres:
        async with scratch_database(args.postgres) as url:
            await run(args.per_message, url)
    else:
        await run(args.per_message, None)


if __name__ == "__main__":
    asyncio.run(main())
