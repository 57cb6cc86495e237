"""Issue #14, a 202 is a promise: a publish stored by JetStream whose ack was lost is not answered 503.

In the flood reproduction nats-server cut the shared connection as a slow consumer while publish acks were
queued behind the pull deliveries; ingestion answered 503 for 24 bodies already stored, and the clients'
retries (without X-Oglog-Batch-Id) stored them twice. Broker.publish now re-sends a message whose outcome is
unknown with the same Nats-Msg-Id, which the stream's duplicate window keeps once. Real nats-server; the
lost ack is produced for real (reads held at the client boundary, the server cuts the connection) or, for
the unit case, injected at the client boundary (the real publish done, its answer dropped)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from oglogstream.stack.broker.broker import Broker, BrokerUnavailable
from oglogstream.stack.config import STREAM_NAME, STREAM_SUBJECT

from .helpers import hold_reads, started_broker, wait_for

#: Bytes pushed at the held connection: past nats-server's max_pending (64 MiB) with the ack queued inside.
FLOOD_BEFORE = 30 * 2**20
FLOOD_AFTER = 60 * 2**20
CHUNK = 900_000
#: Socket reads held this long: long enough for the server to cut, short of the publish timeout (5 s).
HOLD_SECONDS = 2.0


@pytest.fixture
async def broker(nats_server: Any) -> AsyncIterator[Broker]:
    async with started_broker(nats_server.url) as b:
        yield b


async def _stream_messages(b: Broker) -> int:
    info = await b.js.stream_info(STREAM_NAME)
    return int(info.state.messages)


async def test_a_publish_whose_ack_was_lost_with_the_connection_is_acknowledged_once(
    broker: Broker, nats_server: Any
) -> None:
    """The server cuts the connection with the ack unread: the publish still succeeds (a duplicate ack on
    the re-send), the stream holds the message once, one re-send counted."""
    flooder = await nats.connect(nats_server.url)
    await broker.nc.subscribe("test.flood")
    try:
        resume = hold_reads(broker)
        for _ in range(FLOOD_BEFORE // CHUNK):
            await flooder.publish("test.flood", b"x" * CHUNK)
        await flooder.flush()
        publish = asyncio.create_task(
            broker.publish(STREAM_SUBJECT, b"[]", {"Nats-Msg-Id": "s:lost-ack", "Oglog-Rows": "0"})
        )
        await asyncio.sleep(0.3)  # the request is out; its ack waits behind the flood
        for _ in range(FLOOD_AFTER // CHUNK):
            await flooder.publish("test.flood", b"x" * CHUNK)
        await flooder.flush()
        await asyncio.sleep(HOLD_SECONDS)
        resume.set()
        ack = await publish
    finally:
        await flooder.close()
    assert broker.nc.stats["reconnects"] >= 1  # the server did cut the connection
    assert ack.duplicate
    assert broker.resends == 1
    await wait_for(lambda: broker.wait_ready(1))
    assert await _stream_messages(broker) == 1


class LostAnswer:
    """The JetStream context's publish, with the first call's answer dropped after the server stored it."""

    def __init__(self, publish: Any) -> None:
        self.publish_for_real = publish
        self.calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        ack = await self.publish_for_real(*args, **kwargs)
        if self.calls == 1:
            raise asyncio.TimeoutError("injected: the ack did not arrive in time")
        return ack


async def test_a_timed_out_publish_with_an_id_is_resent_and_kept_once(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ack in time for a stored message: re-sent with the same id, answered duplicate, stored once."""
    lost = LostAnswer(broker.js.publish)
    monkeypatch.setattr(broker.js, "publish", lost)
    ack = await broker.publish(STREAM_SUBJECT, b"[]", {"Nats-Msg-Id": "s:timed-out", "Oglog-Rows": "0"})
    assert (lost.calls, ack.duplicate, broker.resends) == (2, True, 1)
    assert await _stream_messages(broker) == 1
    assert broker.publish_failure is None


async def test_a_timed_out_publish_without_an_id_is_not_resent(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a Nats-Msg-Id a re-send could store a second copy: BrokerUnavailable, one attempt only."""
    lost = LostAnswer(broker.js.publish)
    monkeypatch.setattr(broker.js, "publish", lost)
    with pytest.raises(BrokerUnavailable, match="TimeoutError"):
        await broker.publish(STREAM_SUBJECT, b"[]", {"Oglog-Rows": "0"})
    assert (lost.calls, broker.resends) == (1, 0)
    assert broker.publish_failure is not None
