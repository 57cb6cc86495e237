"""Issue #14's 33 s stall: a backlog is consumed without the server dropping the processor's connection.

A pull request asked the server for up to 1,000 messages whatever their size; with a backlog of large
messages the server pushed them all at once, and while the processor's event loop was busy (ingestion, query
and inserts share it in `oglog stack up`) more than the server's max_pending (64 MiB) sat unread: "Slow
Consumer Detected", connection closed, the delivered messages lost in transit until ack_wait (30 s) brought
them back - rows queryable half a minute after their 202s with storage idle. Real nats-server, real chDB; the
busy event loop is injected (the loop is blocked right after the processor's first fetch goes out)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from oglogstream.stack.broker.broker import Broker
from oglogstream.stack.config import STREAM_SUBJECT
from oglogstream.stack.http.metrics import Metrics
from oglogstream.stack.ingestion import row_codec, schema
from oglogstream.stack.processing.process import DEFAULT_ACK_WAIT, DEFAULT_FETCH_BYTES, Processor
from oglogstream.stack.storage.storage import Storage

from .helpers import broker_and_storage, wait_for
from .test_process_failures import TS, count

#: A backlog well past the server's default max_pending (64 MiB): 120 messages of ~850 KB.
MESSAGES = 120
ROWS_PER_MESSAGE = 100
MESSAGE_TEXT = 8_000
#: How long the event loop is kept busy after the first fetch goes out (the server keeps pushing meanwhile).
BUSY_SECONDS = 2.0


@pytest.fixture
async def parts(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[Broker, Storage]]:
    async with broker_and_storage(nats_server.url, Storage(chdb_dsn)) as both:
        yield both


async def publish_backlog(broker: Broker) -> int:
    """MESSAGES messages of ROWS_PER_MESSAGE rows, ~850 KB each (under NATS's default 1 MiB max_payload)."""
    filler = "x" * MESSAGE_TEXT
    for k in range(MESSAGES):
        entries = [
            schema.ENTRY.validate_python(
                {"level": "info", "message": f"m{k}-{i} {filler}", "service": "s", "timestamp": TS}
            )
            for i in range(ROWS_PER_MESSAGE)
        ]
        rows = schema.make_rows(entries, batch_id=f"b{k}", received_at=TS)
        payload = row_codec.dumps(rows)
        assert len(payload) < broker.max_payload
        headers = {"Oglog-Rows": str(ROWS_PER_MESSAGE), "Oglog-Ts-Min": TS, "Oglog-Ts-Max": TS}
        await broker.publish(STREAM_SUBJECT, payload, {"Nats-Msg-Id": f"b{k}", **headers})
    return MESSAGES * ROWS_PER_MESSAGE


class BusyLoopProcessor(Processor):
    """The processor with its event loop blocked for BUSY_SECONDS just after its first fetch is sent."""

    blocked = False

    def _fetch_size(self) -> int:
        if not self.blocked:
            self.blocked = True
            asyncio.get_running_loop().call_later(0.05, time.sleep, BUSY_SECONDS)
        return super()._fetch_size()


async def test_a_large_backlog_read_by_a_busy_loop_is_stored_without_waiting_for_ack_wait(
    parts: Any,
) -> None:
    """Every row of a 100 MB backlog is stored long before ack_wait, on the same connection (no reconnect)."""
    broker, storage = parts
    total = await publish_backlog(broker)
    proc = BusyLoopProcessor(
        broker, storage, Metrics(), batch_size=2_000, flush_timeout=0.3, max_retries=3, shutdown_timeout=10
    )
    started = time.monotonic()
    proc.start()
    try:
        # Well under ack_wait: a message lost in transit would only come back after it.
        await wait_for(lambda: _stored(storage, total), timeout=DEFAULT_ACK_WAIT / 2)
    finally:
        await proc.stop()
    assert proc.blocked
    assert time.monotonic() - started < DEFAULT_ACK_WAIT / 2
    assert broker.nc.stats["reconnects"] == 0
    assert await count(storage) == total


async def test_a_pull_request_asks_for_at_most_fetch_bytes(parts: Any) -> None:
    """A request's max_bytes is DEFAULT_FETCH_BYTES (4 MiB), never less than one max_payload message (see
    test_process_slow_reads.py for one request open at a time)."""
    broker, storage = parts
    settings: dict[str, Any] = dict(batch_size=10, flush_timeout=0.3, max_retries=1, shutdown_timeout=1)
    assert broker.max_payload == 1024 * 1024
    assert DEFAULT_FETCH_BYTES // 2**20 == 4
    assert Processor(broker, storage, Metrics(), **settings)._pull_bytes() == DEFAULT_FETCH_BYTES
    assert Processor(broker, storage, Metrics(), fetch_bytes=1, **settings)._pull_bytes() > 1024 * 1024
    with pytest.raises(ValueError, match="fetch_bytes"):
        Processor(broker, storage, Metrics(), fetch_bytes=0, **settings)


async def _stored(storage: Storage, n: int) -> bool:
    return await count(storage) >= n


async def test_a_lost_connection_is_said_with_the_wait_it_costs(
    parts: Any, nats_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """After NATS comes back, the processor's log says messages in transit return only after ack_wait."""
    broker, storage = parts
    settings: dict[str, Any] = dict(batch_size=10, flush_timeout=0.3, max_retries=1, shutdown_timeout=5)
    proc = Processor(broker, storage, Metrics(), **settings)
    proc.start()
    try:
        await wait_for(lambda: _true(broker.is_connected))
        await asyncio.to_thread(nats_server.stop)
        await asyncio.to_thread(nats_server.start)
        said = "messages delivered on it and not yet read are redelivered after ack_wait (30s)"
        await wait_for(lambda: _true(any(said in r.getMessage() for r in caplog.records)))
    finally:
        await proc.stop()


async def _true(value: bool) -> bool:
    return value


async def test_messages_the_client_drops_are_logged_once_per_interval(
    parts: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A subscription whose queue is full drops messages (nats-py's slow consumer): one ERROR line with the
    count, not one per message."""
    broker, _ = parts
    sub = await broker.nc.subscribe("test.slow-consumer", pending_bytes_limit=10_000)  # read by nobody
    for _ in range(20):
        await broker.nc.publish("test.slow-consumer", b"x" * 4_000)
    await broker.nc.flush()
    said = "dropped by this client (slow consumer: its queue is full); JetStream redelivers them"
    await wait_for(lambda: _true(any(said in r.getMessage() for r in caplog.records)))
    await sub.unsubscribe()
    assert sum(said in r.getMessage() for r in caplog.records) == 1
