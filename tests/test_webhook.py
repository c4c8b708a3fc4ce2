"""Webhook: bounded queue, POSTs JSON in order, failures logged and skipped."""

from __future__ import annotations

import json

import httpx

from gb28181.webhook import Webhook


async def test_posts_events_and_survives_failures() -> None:
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        return httpx.Response(500 if body["n"] == 2 else 204)

    hook = Webhook("http://hooks.invalid/x", queue=10, transport=httpx.MockTransport(handler))
    hook.start()
    for n in (1, 2, 3):
        hook.publish({"n": n})
    await hook.drain()
    await hook.stop()
    assert [e["n"] for e in seen] == [1, 2, 3]
    assert hook.sent == 2 and hook.failed == 1 and hook.dropped == 0


async def test_full_queue_drops() -> None:
    hook = Webhook("http://hooks.invalid/x", queue=1)
    hook.publish({"n": 1})
    hook.publish({"n": 2})
    assert hook.dropped == 1
    await hook.stop()
