"""`oglog tail` against a real stack (r8 findings 2, 8): a 503/429 at the upgrade is waited out (Retry-After,
jittered) before the first connection and after, and a reconnect says which span was not replayed."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from oglogstream.cli.tail import RETRY_AFTER_MAX, reconnect_delay, retry_delay
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http.share import SharePolicy
from oglogstream.stack.query.live import LIVE

from ..cli.helpers import start_oglog
from .query_helpers import ingest_and_query, running

pytestmark = pytest.mark.timeout(90)


def test_retry_delay_honours_retry_after_with_jitter_and_a_cap() -> None:
    """Retry-After is the least wait, spread by up to half again; capped; a past HTTP-date: the backoff."""
    assert retry_delay(0.5, "5", draw=0.0) == 5.0
    assert retry_delay(0.5, "5", draw=0.999) == 7.5
    assert retry_delay(8.0, "1", draw=0.0) == reconnect_delay(8.0, 0.0) == 4.0
    assert retry_delay(0.5, "86400", draw=0.0) == RETRY_AFTER_MAX
    assert retry_delay(2.0, "Wed, 21 Oct 2026 07:28:00 GMT", draw=0.0) == 1.0
    assert retry_delay(2.0, None, draw=0.0) == 1.0


@pytest.fixture
async def live_app(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, Any, aiohttp.ClientSession]]:
    """Ingest + query roles on real NATS and chDB, plus a client session."""
    async with ingest_and_query(nats_server.url, chdb_dsn) as parts:
        yield parts


async def _line(stream: asyncio.StreamReader, pattern: str, timeout: float = 30) -> str:
    """The first line of `stream` matching `pattern` (read within `timeout` seconds)."""
    while True:
        line = (await asyncio.wait_for(stream.readline(), timeout)).decode()
        assert line, f"stream ended before a line matching {pattern!r}"
        if re.search(pattern, line):
            return line


async def _send_until_printed(session: aiohttp.ClientSession, base: str, tail: Any, service: str) -> dict:
    """POST entries to `service` until tail prints one (it only sees those accepted after it connected)."""
    assert tail.stdout is not None
    for i in range(100):
        entry = {"id": f"{service}-{i}", "level": "info", "message": "hello", "service": service}
        async with session.post(f"{base}/logs", json=[entry]) as response:
            assert response.status == 202
        try:
            line = await asyncio.wait_for(tail.stdout.readline(), 0.5)
        except asyncio.TimeoutError:
            continue
        return dict(json.loads(line))
    raise AssertionError("tail printed nothing")


async def _stop(tail: Any) -> None:
    if tail.returncode is None:
        tail.kill()
        await tail.wait()


async def test_tail_waits_out_a_503_before_its_first_connection(live_app: Any) -> None:
    """The hub answers 503 + Retry-After (here: shutting down): tail says so and retries instead of exiting,
    and prints entries once the hub takes clients again."""
    base, app, session = live_app
    app[LIVE]._stopping.set()
    tail = await start_oglog("tail", "--service", "later", "--json", "--count", "1", url=base)
    try:
        assert tail.stderr is not None
        line = await _line(tail.stderr, "HTTP 503")
        assert "shutting down" in line and "retrying in" in line
        app[LIVE]._stopping.clear()
        assert (await _send_until_printed(session, base, tail, "later"))["service"] == "later"
        assert await asyncio.wait_for(tail.wait(), 30) == 0
    finally:
        await _stop(tail)


async def test_tail_waits_out_a_429_for_its_share(live_app: Any) -> None:
    """Past this client's share (429 + Retry-After; the reviewer's case of 1000 sockets from one process):
    tail retries rather than exits, and gets in once a socket of that client closes."""
    base, app, session = live_app
    app[LIVE].admission.policy = SharePolicy(2, 1)
    holder = await session.ws_connect(f"{base}/ws/live")
    tail = await start_oglog("tail", "--service", "share", "--json", "--count", "1", url=base)
    try:
        assert tail.stderr is not None
        assert "retrying in" in await _line(tail.stderr, "HTTP 429")
        await holder.close()
        assert (await _send_until_printed(session, base, tail, "share"))["service"] == "share"
    finally:
        await _stop(tail)


async def test_a_reconnect_names_the_span_not_replayed(live_app: Any) -> None:
    """Clients interrupted (as after a NATS reconnect, 1013): tail reconnects and says on stderr which span of
    entries was not replayed and how to query it."""
    base, app, session = live_app
    tail = await start_oglog("tail", "--service", "gap", "--json", url=base)
    try:
        assert tail.stderr is not None
        await _send_until_printed(session, base, tail, "gap")
        app[LIVE].feed.on_reconnected()  # what the broker calls after a NATS reconnect
        assert "entries may be missing" in await _line(tail.stderr, "the server said")
        notice = await _line(tail.stderr, "reconnected")
        assert "were not replayed" in notice
        span = re.search(r"oglog query --service gap --from (\S+Z) --to (\S+Z)\)", notice)
        assert span is not None and span.group(1) < span.group(2)
        assert (await _send_until_printed(session, base, tail, "gap"))["service"] == "gap"
    finally:
        await _stop(tail)


async def test_backfill_prints_the_gap_once(nats_server: Any, chdb_dsn: str) -> None:
    """`--backfill`: entries stored while tail was away are printed after the reconnect, oldest first, and no
    entry is printed twice (the last one before the gap comes back from the query; it is skipped)."""
    config = StackConfig(roles=("ingest", "process", "query"), nats_url=nats_server.url,
                         clickhouse_dsn=chdb_dsn, flush_timeout=0.1)
    async with running(config) as (base, app), aiohttp.ClientSession() as session:
        tail = await start_oglog("tail", "--service", "bf", "--json", "--backfill", url=base)
        try:
            assert tail.stdout is not None and tail.stderr is not None
            printed = [(await _send_until_printed(session, base, tail, "bf"))["id"]]
            hub = app[LIVE]
            hub._stopping.set()  # the reconnect is refused (503) while the gap's entries arrive
            hub.feed.on_reconnected()  # tail's socket closed with 1013
            await _line(tail.stderr, "HTTP 503")
            gap = [{"id": f"gap-{i}", "level": "info", "message": "in the gap", "service": "bf"}
                   for i in range(5)]
            async with session.post(f"{base}/logs", json=gap) as response:
                assert response.status == 202
            for _ in range(400):  # stored before tail comes back, so the backfill can find them
                async with session.get(f"{base}/api/logs", params={"q": "gap", "service": "bf"}) as response:
                    if len(await response.json()) == len(gap):
                        break
                await asyncio.sleep(0.05)
            hub._stopping.clear()
            assert "backfilled 5 entries" in await _line(tail.stderr, "backfilled")
            after_sent = False
            while not {"gap-4", "after"} <= set(printed):
                if "gap-4" in printed and not after_sent:  # one live entry after the backfill
                    async with session.post(f"{base}/logs", json=[{"id": "after", "level": "info",
                                                                    "message": "m", "service": "bf"}]) as r:
                        assert r.status == 202
                    after_sent = True
                line = await asyncio.wait_for(tail.stdout.readline(), 30)
                printed.append(json.loads(line)["id"])
            assert len(printed) == len(set(printed))
            gap_ids = [i for i in printed if i.startswith("gap-")]
            assert gap_ids == [f"gap-{i}" for i in range(5)]
        finally:
            await _stop(tail)
