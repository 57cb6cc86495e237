"""GET /api/dead-letters with 300 dead letters of ~1 MB (the attacker review's case), stack defaults: the
largest answer, the time to page through all of them at `limit=500`, and the slowest `GET /health` of the same
process meanwhile, against the slowest `/health` of the idle process measured in the same run (baseline).

Run from the project root: `.venv/bin/python -m benchmarks.deadletter_page_bench` (about 30 s;
`--dead-letters N` publishes N instead of DEAD_LETTERS).

Every role in this process with StackConfig defaults (nats-server from the wheel and chDB in a temp dir);
dead letters are published as the processor does (`publish_dead_letter`); one client pages on `next_after`
while a second probes `/health` back to back. Target: a page within PAGE_BYTES and `/health` lag under a
second while listing (was one 324 MB answer and ~11 s of stalled `/health`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path

import aiohttp
from oglogstream.stack.broker.natsd import NatsServer
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http.app import create_app
from oglogstream.stack.processing.deadletter import MAX_PAGE, PAGE_BYTES, publish_dead_letter
from oglogstream.stack.processing.process import PROCESSOR

from tests.stack.helpers import running_app, slowest_health

DEAD_LETTERS = 300
BLOB_BYTES = 1_000_000
IDLE_SECONDS = 3.0
DEADLINE = 240.0


async def _page_all(session: aiohttp.ClientSession, url: str) -> tuple[int, int, int]:
    """(pages, dead letters listed, bytes of the largest answer) paging from the start at MAX_PAGE."""
    after, pages, listed, largest = 0, 0, 0, 0
    while True:
        async with session.get(f"{url}/api/dead-letters?after={after}&limit={MAX_PAGE}") as resp:
            body = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET /api/dead-letters: {resp.status} {body[:200]!r}")
        page = json.loads(body)
        pages, listed, largest = pages + 1, listed + len(page["dead_letters"]), max(largest, len(body))
        if page["next_after"] is None:
            return pages, listed, largest
        after = page["next_after"]


async def main(tmp: str, dead_letters: int = DEAD_LETTERS) -> None:
    server = NatsServer(Path(tmp) / "nats").start()
    try:
        config = StackConfig(nats_url=server.url, clickhouse_dsn=f"chdb://{tmp}/clickhouse")
        app = create_app(config)
        async with running_app(config, app=app) as url:
            payload = json.dumps([{"id": "b", "attributes": {"blob": "x" * BLOB_BYTES}}]).encode()
            for k in range(dead_letters):
                await publish_dead_letter(
                    app[PROCESSOR].broker, seq=k + 1, headers={"Nats-Msg-Id": f"m{k}"}, payload=payload,
                    rows=1, reason="unstorable", error="bench",
                )
            async with aiohttp.ClientSession() as lister, aiohttp.ClientSession() as prober:
                stop = asyncio.Event()
                probe = asyncio.create_task(slowest_health(prober, url, stop))
                await asyncio.sleep(IDLE_SECONDS)
                stop.set()
                idle = await probe
                stop.clear()
                probe = asyncio.create_task(slowest_health(prober, url, stop))
                started = time.perf_counter()
                pages, listed, largest = await _page_all(lister, url)
                elapsed = time.perf_counter() - started
                stop.set()
                busy = await probe
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"dead letters: {dead_letters} x {len(payload) / 1e6:.1f} MB, limit={MAX_PAGE}, "
              f"PAGE_BYTES={PAGE_BYTES}")
        print(f"listed {listed} in {pages} pages, {elapsed:.1f} s; largest answer {largest / 1e6:.1f} MB")
        print(f"slowest /health: idle {idle * 1000:.0f} ms (baseline), while listing {busy * 1000:.0f} ms "
              f"(x{busy / idle:.1f}); process max RSS {rss_mb:.0f} MB")
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dead-letters", type=int, default=DEAD_LETTERS,
                        help=f"dead letters of ~1 MB to publish (default {DEAD_LETTERS})")
    count = parser.parse_args().dead_letters
    if count < 1:
        parser.error("--dead-letters must be >= 1")
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(asyncio.wait_for(main(directory, count), DEADLINE))
