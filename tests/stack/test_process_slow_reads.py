"""Issue #14, slow consumer under an HTTP flood: the processor's connection survives an event loop that reads
the NATS socket slowly.

Under a flood the shared event loop of `oglog stack up` reads the socket about 256 KiB per iteration while the
processor's fetches keep timing out. nats-py's fetch left each timed-out pull request alive on the server and
asked again, so the bytes the server had to write grew past its limits and it closed the connection ("Slow
Consumer Detected"): deliveries and publish acks in transit lost, rows late by ack_wait, 503s for stored
bodies. Real nats-server and chDB; the slowness is injected at the client boundary: the client's socket
reads are held for STALL_SECONDS while the processor keeps running (and fetching)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from oglogstream.stack.broker.broker import Broker
from oglogstream.stack.config import CONSUMER_NAME, STREAM_NAME
from oglogstream.stack.http.metrics import Metrics
from oglogstream.stack.processing.process import DEFAULT_ACK_WAIT, DEFAULT_FETCH_BYTES, Processor
from oglogstream.stack.processing.pull import Puller
from oglogstream.stack.storage.storage import Storage

from .helpers import broker_and_storage, hold_reads, wait_for
from .test_process_failures import count, processor, publish, stored
from .test_process_fetch_bound import publish_backlog

#: Socket reads held this long: about a dozen of the processor's fetch waits, well under the client's stale
#: connection check (2 PINGs unanswered, 5 s apart) and the server's 10 s write deadline.
STALL_SECONDS = 4.0


@pytest.fixture
async def parts(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[Broker, Storage]]:
    async with broker_and_storage(nats_server.url, Storage(chdb_dsn)) as both:
        yield both


class SlowReadingProcessor(Processor):
    """The processor whose connection stops reading its socket for STALL_SECONDS when it first fetches,
    while its event loop (and so its fetch loop) keeps running."""

    stalled = False

    def _fetch_size(self) -> int:
        if not self.stalled:
            self.stalled = True
            resume = hold_reads(self.broker)
            asyncio.get_running_loop().call_later(STALL_SECONDS, resume.set)
        return super()._fetch_size()


async def _stored(storage: Storage, n: int) -> bool:
    return await count(storage) >= n


async def test_a_backlog_read_slowly_is_stored_once_on_the_same_connection(parts: Any) -> None:
    """A 100 MB backlog, socket reads held 4 s at the first fetch: every row stored exactly once, well before
    ack_wait, with no reconnect (the old fetch had ~13 timed-out requests open and the server cut it)."""
    broker, storage = parts
    total = await publish_backlog(broker)
    proc = SlowReadingProcessor(
        broker, storage, Metrics(), batch_size=2_000, flush_timeout=0.3, max_retries=3, shutdown_timeout=10
    )
    proc.start()
    try:
        await wait_for(lambda: _stored(storage, total), timeout=DEFAULT_ACK_WAIT / 2)
        await asyncio.sleep(1.0)  # a duplicate insert would land now
    finally:
        await proc.stop()
    assert proc.stalled
    assert broker.nc.stats["reconnects"] == 0
    assert await count(storage) == total
    distinct = await storage.run(lambda c: c.command("SELECT uniqExact(id) FROM logs"))
    assert int(distinct) == total


async def test_one_pull_request_is_open_at_a_time_whatever_the_timeouts(parts: Any) -> None:
    """Fetches that time out while the socket is not read send no further request: the server owes the
    connection at most one request's max_bytes."""
    broker, storage = parts
    await publish_backlog(broker)
    settings: dict[str, Any] = dict(batch_size=10, flush_timeout=0.3, max_retries=1, shutdown_timeout=1)
    await broker.js.add_consumer(
        STREAM_NAME, Processor(broker, storage, Metrics(), **settings).consumer_config()
    )
    requests: list[dict[str, Any]] = []
    spy = await broker.nc.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.{STREAM_NAME}.{CONSUMER_NAME}")
    puller = Puller(broker.nc, stream=STREAM_NAME, consumer=CONSUMER_NAME, max_bytes=DEFAULT_FETCH_BYTES)
    await puller.start()
    try:
        first = await puller.fetch(1_000, timeout=5)
        assert first
        for _ in range(10):  # all of the first request may already be read: the rest times out or ends it
            await puller.fetch(1_000, timeout=0.01)
        while True:
            try:
                msg = await spy.next_msg(timeout=0.5)
            except asyncio.TimeoutError:
                break
            requests.append(json.loads(msg.data))
    finally:
        await puller.close()
        await spy.unsubscribe()
    assert puller.requests == len(requests)
    assert puller.requests <= puller.ends + 1  # never two open
    assert all(r["max_bytes"] == DEFAULT_FETCH_BYTES for r in requests)


async def test_a_request_never_asks_for_less_than_one_message(parts: Any) -> None:
    """max_bytes below one max_payload message would make the server refuse every message: it is raised."""
    broker, storage = parts
    settings: dict[str, Any] = dict(batch_size=10, flush_timeout=0.3, max_retries=1, shutdown_timeout=1)
    proc = Processor(broker, storage, Metrics(), fetch_bytes=1, **settings)
    assert proc._pull_bytes() > broker.max_payload
    assert Processor(broker, storage, Metrics(), **settings)._pull_bytes() == DEFAULT_FETCH_BYTES
    with pytest.raises(ValueError, match="max_bytes"):
        Puller(broker.nc, stream=STREAM_NAME, consumer=CONSUMER_NAME, max_bytes=0)


async def test_a_deleted_consumer_is_created_again_and_consumption_goes_on(parts: Any) -> None:
    """The server ends the open request with 409 Consumer Deleted (or 503, no consumer): the processor binds
    again and stores what comes after, once."""
    broker, storage = parts
    proc = processor(broker, storage, Metrics())
    proc.start()
    try:
        await publish(broker, "before-", 5)
        await wait_for(lambda: stored(storage, 5))
        await broker.js.delete_consumer(STREAM_NAME, CONSUMER_NAME)
        await publish(broker, "after-", 5)
        await wait_for(lambda: stored(storage, 10))
    finally:
        await proc.stop()
    assert await count(storage) == 10
