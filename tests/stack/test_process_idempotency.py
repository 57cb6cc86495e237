"""Processing stores every accepted entry exactly once: counts, client retries, crashes and redelivery."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from oglogstream import _wire
from oglogstream.stack.broker.broker import Broker
from oglogstream.stack.config import CONSUMER_NAME, STREAM_NAME, StackConfig
from oglogstream.stack.http.app import create_app
from oglogstream.stack.http.metrics import Metrics
from oglogstream.stack.ingestion import dedup
from oglogstream.stack.processing.process import Processor
from oglogstream.stack.storage.storage import Storage

from .helpers import count_rows, query_rows, running_app, wait_for

#: A client timestamp the door accepts on any day the suite runs (fixed within one run).
NOW = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000000Z")

GZIP_NDJSON = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}


def batch(n: int, *, prefix: str = "m", ids: bool = False, **fields: Any) -> bytes:
    """A gzip NDJSON body of n entries; with `ids`, entry i carries the explicit id `{prefix}{i}`."""
    body = b"".join(
        json.dumps(
            {"level": "info", "message": f"{prefix}{i}", "service": "svc", **fields}
            | ({"id": f"{prefix}{i}"} if ids else {})
        ).encode()
        + b"\n"
        for i in range(n)
    )
    return gzip.compress(body)


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, Any, aiohttp.ClientSession]]:
    config = StackConfig(
        roles=("ingest", "process"),
        nats_url=nats_server.url,
        clickhouse_dsn=chdb_dsn,
        flush_timeout=0.1,
        batch_size=500,
    )
    app = create_app(config)
    async with running_app(config, app=app) as url, aiohttp.ClientSession() as session:
        yield url, app, session


async def stream_drained(broker: Broker) -> bool:
    info = await broker.js.consumer_info(STREAM_NAME, CONSUMER_NAME)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_exact_count_after_many_concurrent_requests(stack: Any) -> None:
    """N concurrent batch requests and single posts are stored exactly once each, no more, no less."""
    url, app, session = stack

    async def post_batch(k: int) -> None:
        async with session.post(f"{url}/logs", data=batch(100, prefix=f"b{k}-"), headers=GZIP_NDJSON) as resp:
            assert resp.status == 202

    async def post_one(k: int) -> None:
        async with session.post(
            f"{url}/log", json={"level": "warn", "message": f"one{k}", "service": "svc"}
        ) as r:
            assert r.status == 202

    await asyncio.gather(*(post_batch(k) for k in range(20)), *(post_one(k) for k in range(50)))
    await wait_for(lambda: _ge(app, 2050))
    await asyncio.sleep(0.3)  # nothing more may arrive
    assert await count_rows(app) == 2050
    assert await count_rows(app, "level = 'warn'") == 50


async def _ge(app: Any, n: int) -> bool:
    return await count_rows(app) >= n


async def test_all_five_levels_are_stored(stack: Any) -> None:
    """debug, info, warn, error and fatal all round-trip to storage."""
    url, app, session = stack
    for level in _wire.LEVELS:
        async with session.post(
            f"{url}/log", json={"level": level, "message": level, "service": "lv"}
        ) as resp:
            assert resp.status == 202
    await wait_for(lambda: _ge(app, 5))
    rows = await query_rows(app, "SELECT level, message FROM logs")
    assert sorted(r["level"] for r in rows) == sorted(_wire.LEVELS)
    assert all(r["level"] == r["message"] for r in rows)


async def test_client_retry_with_same_batch_id_is_stored_once(stack: Any) -> None:
    """A client re-sending a batch with the same X-Oglog-Batch-Id (a lost 202) gets 202 and one copy."""
    url, app, session = stack
    body = batch(50)
    for _ in range(3):
        async with session.post(
            f"{url}/logs", data=body, headers={**GZIP_NDJSON, _wire.BATCH_ID_HEADER: "retry-1"}
        ) as resp:
            assert resp.status == 202
    await wait_for(lambda: _ge(app, 50))
    await asyncio.sleep(0.5)
    assert await count_rows(app) == 50
    stem = dedup.client_identity("retry-1", gzip.decompress(body)).stem  # the batch id bound to the body
    assert await count_rows(app, f"id LIKE '{stem}-%'") == 50


async def test_single_entry_retry_with_same_batch_id_is_stored_once(stack: Any) -> None:
    """POST /log retried with the same X-Oglog-Batch-Id and body (entry id `{stem}-0`) is stored once."""
    url, app, session = stack
    for _ in range(3):
        async with session.post(
            f"{url}/log",
            json={"level": "info", "message": "once", "service": "svc"},
            headers={_wire.BATCH_ID_HEADER: "single-1"},
        ) as resp:
            assert resp.status == 202
            assert (await resp.json())["id"].startswith("single-1.")
        await wait_for(lambda: _ge(app, 1))
    await asyncio.sleep(0.3)
    assert await count_rows(app) == 1


async def test_retry_after_broker_window_is_deduplicated_by_id(stack: Any) -> None:
    """Entries with client ids re-sent under a new batch id (past the broker's window) are stored once."""
    url, app, session = stack
    entries = b"".join(
        json.dumps(
            {
                "level": "info",
                "message": f"x{i}",
                "service": "svc",
                "id": f"client-{i}",
                "timestamp": NOW,  # inside the accepted window whatever the date
            }
        ).encode()
        + b"\n"
        for i in range(30)
    )
    for batch_id in ("first", "second"):
        async with session.post(
            f"{url}/logs",
            data=gzip.compress(entries),
            headers={**GZIP_NDJSON, _wire.BATCH_ID_HEADER: batch_id},
        ) as resp:
            assert resp.status == 202
        await wait_for(lambda: _ge(app, 30))
    await asyncio.sleep(0.5)
    assert await count_rows(app) == 30
    assert 'oglog_duplicates_skipped_total{stage="storage"} 30.0' in await _metrics(session, url)


async def _metrics(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(f"{url}/metrics") as resp:
        return await resp.text()


async def test_large_request_is_split_under_max_payload_and_stored_once(stack: Any) -> None:
    """A batch bigger than NATS max_payload (1 MiB) is split into several messages, all stored."""
    url, app, session = stack
    body = batch(3000, prefix="p" * 600)
    async with session.post(
        f"{url}/logs", data=body, headers={**GZIP_NDJSON, _wire.BATCH_ID_HEADER: "big"}
    ) as r:
        assert r.status == 202
        assert (await r.json())["accepted"] == 3000
    await wait_for(lambda: _ge(app, 3000))
    await asyncio.sleep(0.3)
    assert await count_rows(app) == 3000


class CrashBeforeAck(Processor):
    """Inserts like the real one, then "dies" before acking: the messages stay unacked in JetStream."""

    inserted = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

        async def no_ack(items: Any) -> None:
            type(self).inserted += len(items)

        self._flusher._ack = no_ack  # type: ignore[method-assign]


async def test_redelivery_after_crash_between_insert_and_ack_adds_no_duplicates(
    nats_server: Any, chdb_dsn: str
) -> None:
    """Insert done, ack never sent, processor restarted: JetStream redelivers and no row is stored twice;
    entries sharing an id at two timestamps (two requests) stay two rows."""
    config = StackConfig(roles=("ingest",), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn)
    storage = Storage(chdb_dsn)
    broker = Broker(nats_server.url)
    metrics = Metrics()
    settings = dict(batch_size=10_000, flush_timeout=0.1, max_retries=2, shutdown_timeout=5.0, ack_wait=1.0)
    try:
        await storage.run(storage.ensure_schema)
        await broker.start(wait=10)
        async with running_app(config) as url, aiohttp.ClientSession() as session:
            for k in range(5):
                async with session.post(
                    f"{url}/logs", data=batch(40, prefix=f"c{k}-"), headers=GZIP_NDJSON
                ) as r:
                    assert r.status == 202
            for day in (1, 2):
                stamp = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=day)).isoformat()
                twins = batch(10, prefix="twin", timestamp=stamp, ids=True)
                async with session.post(f"{url}/logs", data=twins, headers=GZIP_NDJSON) as r:
                    assert r.status == 202
        crashing = CrashBeforeAck(broker, storage, metrics, **settings)  # type: ignore[arg-type]
        crashing.start()
        await wait_for(lambda: _stored(storage, 220))
        await wait_for(lambda: _true(CrashBeforeAck.inserted == 7))
        await crashing.stop()

        restarted = Processor(broker, storage, metrics, **settings)  # type: ignore[arg-type]
        restarted.start()
        await wait_for(lambda: stream_drained(broker))  # redelivered after ack_wait, then acked
        await restarted.stop()
        assert await storage.run(lambda c: c.command("SELECT count() FROM logs")) == 220
        assert (
            await storage.run(lambda c: c.command("SELECT uniqExact(id) FROM logs WHERE id LIKE 'twin%'"))
            == 10
        )
        assert metrics.duplicates_skipped.labels("storage")._value.get() == 220
    finally:
        await broker.close()
        storage.close()


async def _stored(storage: Storage, n: int) -> bool:
    return int(await storage.run(lambda c: c.command("SELECT count() FROM logs"))) >= n


async def _true(value: bool) -> bool:
    return value


async def test_shutdown_flushes_the_in_flight_batch(nats_server: Any, chdb_dsn: str) -> None:
    """With a long FLUSH_TIMEOUT, stopping the app still inserts and acks what the processor holds."""
    config = StackConfig(
        roles=("ingest", "process"), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn, flush_timeout=60.0
    )
    app = create_app(config)
    async with running_app(config, app=app) as url, aiohttp.ClientSession() as session:
        async with session.post(f"{url}/logs", data=batch(25), headers=GZIP_NDJSON) as resp:
            assert resp.status == 202
        await asyncio.sleep(0.5)  # fetched by the processor, held until the flush timeout
        assert await count_rows(app) == 0
    storage = Storage(chdb_dsn)
    broker = Broker(nats_server.url)
    try:
        assert await storage.run(lambda c: c.command("SELECT count() FROM logs")) == 25
        await broker.start(wait=10)
        assert await stream_drained(broker)
    finally:
        await broker.close()
        storage.close()
