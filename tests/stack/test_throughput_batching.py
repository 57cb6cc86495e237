"""Processor batching (#14): a burst's last partial batch goes out early, a trickle waits the whole
FLUSH_TIMEOUT, a backlog goes out in full batches; real nats-server and chDB."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from oglogstream.stack.broker.broker import Broker
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http.app import create_app
from oglogstream.stack.http.metrics import Metrics
from oglogstream.stack.http.resources import BROKER, METRICS
from oglogstream.stack.ingestion import ingest, schema

from .helpers import count_rows, running_app, wait_for

#: Long enough that a batch held for the whole timeout cannot be mistaken for one flushed early (after
#: CAUGHT_UP_SHARE of it, 6 s): the waits below give up at 80 % of it.
LONG_FLUSH_TIMEOUT = 30.0


def _rows(n: int, prefix: str) -> list[dict[str, Any]]:
    received = schema.format_timestamp(dt.datetime.now(dt.timezone.utc))
    entries = [
        schema.ENTRY.validate_json(
            json.dumps({"id": f"{prefix}{i}", "level": "info", "message": "m", "service": "tp"})
        )
        for i in range(n)
    ]
    return schema.make_rows(entries, batch_id=prefix, received_at=received)


def _inserts(metrics: Metrics) -> float:
    return float(metrics.batches_inserted._value.get())


async def test_burst_tail_is_flushed_before_the_flush_timeout(nats_server: Any, chdb_dsn: str) -> None:
    """After a batch cut full (a burst), the partial batch behind it is stored after CAUGHT_UP_SHARE of
    FLUSH_TIMEOUT once nothing is left in the stream, instead of sitting out the whole timeout."""
    config = StackConfig(
        roles=("ingest", "process"),
        nats_url=nats_server.url,
        clickhouse_dsn=chdb_dsn,
        flush_timeout=LONG_FLUSH_TIMEOUT,
        batch_size=20,
    )
    app = create_app(config)
    async with running_app(config, app=app):
        await ingest.publish_rows(app[BROKER], app[METRICS], _rows(20, "full-"), "full-1")
        await ingest.publish_rows(app[BROKER], app[METRICS], _rows(5, "tail-"), "tail-1")

        async def stored() -> bool:
            return await count_rows(app) == 25

        await wait_for(stored, timeout=LONG_FLUSH_TIMEOUT * 0.8)
        assert _inserts(app[METRICS]) == 2


async def test_trickle_waits_the_whole_flush_timeout(nats_server: Any, chdb_dsn: str) -> None:
    """A partial batch with no full batch before it (a quiet stream) waits all of FLUSH_TIMEOUT, so a
    trickle makes about one insert per FLUSH_TIMEOUT, as ClickHouse advises for synchronous inserts."""
    flush_timeout = 3.0
    config = StackConfig(
        roles=("ingest", "process"),
        nats_url=nats_server.url,
        clickhouse_dsn=chdb_dsn,
        flush_timeout=flush_timeout,
    )
    app = create_app(config)
    async with running_app(config, app=app):
        await ingest.publish_rows(app[BROKER], app[METRICS], _rows(5, "trickle-"), "trickle-1")
        # Well past CAUGHT_UP_SHARE of the timeout (0.6 s) and short of all of it: load can only delay.
        await asyncio.sleep(flush_timeout * 0.5)
        assert await count_rows(app) == 0

        async def stored() -> bool:
            return await count_rows(app) == 5

        await wait_for(stored, timeout=30)
        assert _inserts(app[METRICS]) == 1


async def test_backlog_is_inserted_in_full_batches(nats_server: Any, chdb_dsn: str) -> None:
    """1,500 messages waiting in the stream when the processor starts (more than one fetch's worth) become
    ONE insert: a batch is not cut after each fetch."""
    broker = Broker(nats_server.url)
    await broker.start(wait=10)
    try:
        for k in range(1_500):
            await ingest.publish_rows(broker, Metrics(), _rows(1, f"backlog{k}-"), f"backlog-{k}")
    finally:
        await broker.close()
    config = StackConfig(
        roles=("process",),
        nats_url=nats_server.url,
        clickhouse_dsn=chdb_dsn,
        flush_timeout=6.0,
        batch_size=10_000,  # never reached: only the timeout ends this batch
    )
    app = create_app(config)
    async with running_app(config, app=app):

        async def stored() -> bool:
            return await count_rows(app) == 1_500

        await wait_for(stored, timeout=40)
        await asyncio.sleep(0.2)  # nothing more may be inserted
        assert _inserts(app[METRICS]) == 1
        assert await count_rows(app) == 1_500
