"""Every message the processor holds is kept from ack_wait's redelivery: a batch cut while every insert lane
is taken waits for one (two inserts in flight at most), and that wait may outlast ack_wait (retries, a
slow server). Real nats-server and chDB; the slow insert is injected at the storage boundary."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from oglogstream.stack.broker.broker import Broker
from oglogstream.stack.config import CONSUMER_NAME, STREAM_NAME
from oglogstream.stack.http.metrics import Metrics
from oglogstream.stack.processing.inflight import DEFAULT_INSERTS_IN_FLIGHT
from oglogstream.stack.processing.sink import Batch, Stored
from oglogstream.stack.storage.storage import Storage

from .helpers import broker_and_storage, wait_for
from .test_process_failures import count, processor, publish, stored

#: Short, so the test waits seconds, not the default 30 s; the first inserts (one a lane) take three of them.
ACK_WAIT = 1.5
FIRST_INSERT_SECONDS = 3 * ACK_WAIT


class SlowFirstInsert(Storage):
    """The real chDB storage whose first DEFAULT_INSERTS_IN_FLIGHT inserts take FIRST_INSERT_SECONDS each (a
    slow ClickHouse): every insert lane is taken, so the next batch waits."""

    inserts = 0
    rows_handed = 0  # rows the processor handed to inserts: a redelivered message is handed twice

    async def insert(self, batch: Batch) -> Stored:
        self.inserts += 1
        self.rows_handed += len(batch.ids)
        if self.inserts <= DEFAULT_INSERTS_IN_FLIGHT:
            await asyncio.sleep(FIRST_INSERT_SECONDS)
        return await super().insert(batch)


@pytest.fixture
async def parts(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[Broker, SlowFirstInsert]]:
    async with broker_and_storage(nats_server.url, SlowFirstInsert(chdb_dsn)) as both:
        yield both


async def test_a_batch_waiting_for_a_slow_insert_is_not_redelivered(parts: Any) -> None:
    """Three one-message batches, the first two inserts 3x ack_wait long (the third batch waits for a lane
    that long): no message is delivered twice."""
    broker, storage = parts
    for prefix in ("k1-", "k2-", "k3-"):
        await publish(broker, prefix, 10)
    proc = processor(broker, storage, Metrics(), batch_size=10, ack_wait=ACK_WAIT)
    proc.start()
    try:
        await wait_for(lambda: stored(storage, 30))
    finally:
        await proc.stop()
    await asyncio.sleep(ACK_WAIT)  # a message wrongly left to ack_wait would be redelivered by now
    info = await broker.js.consumer_info(STREAM_NAME, CONSUMER_NAME)
    assert (info.num_ack_pending, info.num_pending) == (0, 0)
    assert storage.rows_handed == 30
    assert await count(storage) == 30
