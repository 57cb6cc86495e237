"""Abuse limits with auth on: token buckets per client address and per key answer 429 with Retry-After, the
SDK's default batching gets everything through once a burst has passed, and each key holds a bounded number
of live-tail sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import oglogstream
import pytest
from oglogstream.stack.auth.ratelimit import DEFAULT_CLIENT_BURST, BucketTable, retry_after_seconds

from .auth_helpers import AuthStack, auth_stack
from .helpers import count_rows, wait_for

pytestmark = pytest.mark.timeout(120)

#: How long the abusive client keeps the address's bucket empty while the SDK sends.
HAMMER_SECONDS = 3.0
#: Concurrent abusive posters: enough to outrun the default refill rate on a slow, shared machine.
HAMMER_CONCURRENCY = 16
ENTRY = {"level": "info", "message": "limit test", "service": "auth-limits"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_grants_the_burst_then_the_rate() -> None:
    """A full bucket grants `burst` requests at once, then one per 1/rate s; the refusal says how long to
    wait, rounded up to whole seconds for Retry-After; keys have separate buckets; the table is bounded."""
    clock = FakeClock()
    table = BucketTable(rate=2.0, burst=3, max_tracked=2, clock=clock)
    assert [table.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert table.take("a") == pytest.approx(0.5)
    assert table.take("b") == 0.0
    clock.now = 0.5
    assert table.take("a") == 0.0 and table.take("a") == pytest.approx(0.5)
    assert retry_after_seconds(0.5) == "1" and retry_after_seconds(2.01) == "3"
    table.take("c")  # evicts the least recently used bucket ("b"): a forgotten bucket is a full one
    assert len(table._buckets) == 2
    with pytest.raises(ValueError, match="rate"):
        BucketTable(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        BucketTable(rate=1, burst=0)


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str, tmp_path: Path) -> AsyncIterator[AuthStack]:
    async with auth_stack(nats_server.url, chdb_dsn, tmp_path) as running_stack:
        yield running_stack


async def test_burst_beyond_the_default_limit_then_the_sdk_delivers_everything(stack: AuthStack) -> None:
    """600 POSTs at once from one address (the issue's example) with the default limits: the first
    DEFAULT_CLIENT_BURST are answered, the rest get 429 + Retry-After and a problem body. Then the SDK
    (default settings) logs 100,000 records while the same address keeps the bucket empty for HAMMER_SECONDS:
    it gets 429s, honours Retry-After, and once the burst has passed every record is stored exactly once."""
    async with aiohttp.ClientSession() as session:

        async def post() -> tuple[int, str | None, bytes]:
            async with session.post(stack.base + "/log", json=ENTRY, headers=stack.headers("ingest")) as resp:
                return resp.status, resp.headers.get("Retry-After"), await resp.read()

        answers = await asyncio.gather(*(post() for _ in range(600)))
        statuses = [status for status, _, _ in answers]
        assert statuses.count(202) >= DEFAULT_CLIENT_BURST and statuses.count(429) >= 300, statuses
        refused = next(a for a in answers if a[0] == 429)
        assert refused[1] is not None and int(refused[1]) >= 1
        assert json.loads(refused[2])["type"] == "urn:oglogstream:problem:rate_limited"

        service = f"burst-{uuid.uuid4().hex[:8]}"
        handler = oglogstream.OgLogHandler(stack.base, service, api_key=stack.keys["ingest"])
        logger = logging.getLogger(f"test.auth.burst.{service}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)

        def log_all() -> None:
            for i in range(100_000):
                logger.info("record %d", i)

        async def hammer() -> int:
            # Requests without a key still take the address's tokens: the abuser and the SDK share them.
            # Several posters at once keep the bucket empty even when a loaded machine makes each request
            # slower than the refill interval.
            loop = asyncio.get_running_loop()
            deadline, give_up = loop.time() + HAMMER_SECONDS, loop.time() + 30 * HAMMER_SECONDS
            refused = 0

            async def poster() -> None:
                nonlocal refused
                # Until the SDK itself has met a 429 (its batches may all go after the first seconds).
                while loop.time() < give_up and (
                    loop.time() < deadline
                    or refused == 0
                    or (handler.stats().retried == 0 and handler.stats().sent < 100_000)
                ):
                    async with session.post(stack.base + "/log", json=ENTRY) as resp:
                        refused += resp.status == 429

            await asyncio.gather(*(poster() for _ in range(HAMMER_CONCURRENCY)))
            return refused

        try:
            hammered, _ = await asyncio.gather(hammer(), asyncio.to_thread(log_all))
            assert await asyncio.to_thread(handler.flush, 90.0)
            stats = handler.stats()
        finally:
            logger.removeHandler(handler)
            await asyncio.to_thread(handler.close, 10.0)
    assert hammered > 0
    assert stats.dropped_total == 0 and stats.sent == 100_000 and stats.retried > 0, stats
    where = f"service = '{service}'"
    await wait_for(lambda: _rows_are(stack, where, 100_000), timeout=60, interval=0.5)
    assert await count_rows(stack.app, where) == 100_000


async def _rows_are(stack: AuthStack, where: str, expected: int) -> bool:
    return await count_rows(stack.app, where) >= expected


async def test_per_key_bucket_and_live_socket_cap(nats_server: Any, chdb_dsn: str, tmp_path: Path) -> None:
    """With a key rate of 1/s (burst 3), the fourth request of one key is 429 while another key still
    passes; with 2 live sockets per key, a key's third socket is 429 until one closes."""
    async with auth_stack(
        nats_server.url, chdb_dsn, tmp_path, rate_limit_key=1.0, rate_burst_key=3, live_sockets_per_key=2
    ) as stack, aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(4):
            async with session.get(stack.base + "/api/stats", headers=stack.headers("query")) as resp:
                statuses.append(resp.status)
                retry_after = resp.headers.get("Retry-After")
        assert statuses == [200, 200, 200, 429] and retry_after == "1"
        async with session.get(stack.base + "/api/keys", headers=stack.headers("admin")) as resp:
            assert resp.status == 200

        url = stack.base + "/ws/live"
        stack.keys["live"] = stack.keys_file.create(frozenset({"query"}), "live")[1]
        headers = stack.headers("live")
        await wait_for(lambda: _ws_ok(session, url, headers), timeout=5)
        first = await session.ws_connect(url, headers=headers)
        second = await session.ws_connect(url, headers=headers)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url, headers=headers)
        assert refused.value.status == 429
        await first.close()
        await wait_for(lambda: _ws_ok(session, url, headers), timeout=5)
        await second.close()


async def _ws_ok(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> bool:
    try:
        ws = await session.ws_connect(url, headers=headers)
    except aiohttp.WSServerHandshakeError:
        return False
    await ws.close()
    return True
