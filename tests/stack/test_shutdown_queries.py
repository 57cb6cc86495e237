"""A shutdown answers the queries still waiting for storage at once (503 problem+json with Retry-After)
instead of holding itself until the whole queue is served (27.7 s under a query flood), while the running
query and the processor's pending insert still finish. Real nats-server and chDB, default settings; chDB's
one storage thread is held by a controllable query."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import aiohttp
from aiohttp import web
from oglogstream.stack.config import CONSUMER_NAME, STREAM_NAME, StackConfig
from oglogstream.stack.http.app import create_app
from oglogstream.stack.http.resources import BROKER, STORAGE
from oglogstream.stack.query.query import BUSY_RETRY_AFTER_SECONDS
from oglogstream.stack.storage.storage import Storage

from .helpers import ready_storage, wait_for
from .test_storage_priority import WAIT, Gate

QUEUED = 6  # within one client's share of the query queue (8 by default)


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any, dict[str, Any]]:
    async with session.get(url) as resp:
        return resp.status, resp.headers, await resp.json(content_type=None)


async def test_waiting_queries_get_503_at_once_on_shutdown_while_inserts_finish(
    nats_server: Any, chdb_dsn: str
) -> None:
    """A query holds chDB and a batch's insert waits behind it; QUEUED queries wait too. On shutdown the
    waiting queries are answered 503 "shutting down" with Retry-After while the running query still holds
    the thread; once it ends, the shutdown completes and the batch is stored, exactly its 5 rows."""
    config = StackConfig(
        roles=("ingest", "process", "query"), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn
    )
    app = create_app(config)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=config.shutdown_timeout
    )
    await runner.setup()
    gate = Gate()
    shutdown: asyncio.Task[None] | None = None
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        storage = app[STORAGE]
        running = asyncio.create_task(storage.query("holder", time.monotonic() + WAIT, gate))
        assert await asyncio.to_thread(gate.entered.wait, WAIT)
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        batch = [
            {"id": f"down-{k}", "timestamp": now, "level": "info", "message": "m", "service": "shutdown"}
            for k in range(5)
        ]
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/logs", json=batch) as resp:
                assert resp.status == 202, await resp.text()

            async def fetched_unacked() -> bool:  # the processor holds the batch: its insert waits
                info = await app[BROKER].js.consumer_info(STREAM_NAME, CONSUMER_NAME)
                return info.num_ack_pending >= 1

            await wait_for(fetched_unacked, timeout=WAIT)
            queued = [
                asyncio.create_task(_get(session, f"{url}/api/logs?service=shutdown")) for _ in range(QUEUED)
            ]

            async def all_waiting() -> bool:
                return storage.queries_waiting == QUEUED

            await wait_for(all_waiting, timeout=WAIT)
            shutdown = asyncio.create_task(runner.cleanup())
            answers = await asyncio.wait_for(asyncio.gather(*queued), WAIT)
            assert not gate.release.is_set() and not running.done()  # answered before the queue moved
            for status, headers, body in answers:
                assert status == 503
                assert headers["Content-Type"].startswith("application/problem+json")
                assert headers["Retry-After"] == str(BUSY_RETRY_AFTER_SECONDS)
                assert body["title"] == "shutting down" and "shutting down" in body["detail"]
            gate.release.set()
            await asyncio.wait_for(running, WAIT)
            await asyncio.wait_for(shutdown, 2 * config.shutdown_timeout)
    finally:
        gate.release.set()
        if shutdown is None:
            await runner.cleanup()
    async with ready_storage(Storage(chdb_dsn)) as store:
        ids = await store.run(lambda c: c.query("SELECT id FROM logs WHERE service = 'shutdown'").result_rows)
    assert sorted(row[0] for row in ids) == sorted(row["id"] for row in batch)
