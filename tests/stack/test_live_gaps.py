"""A live-tail client never loses entries silently: when the hub cannot vouch for the stream (its own interest
announcements lapsed, or NATS reconnected), it closes its clients with CLOSE_INTERRUPTED and a reason, so they
reconnect knowing entries may be missing; a broker deaf to announcements keeps publishing every live copy,
across reconnects. Real nats-server, separate ingest and query apps as in test_live_interest.py."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import nats.errors
import pytest
from oglogstream.stack.broker.broker import Broker, BrokerUnavailable
from oglogstream.stack.broker.natsd import NatsServer
from oglogstream.stack.config import LIVE_INTEREST_SUBJECT
from oglogstream.stack.http.resources import BROKER
from oglogstream.stack.query.live import CLOSE_INTERRUPTED, INTERRUPTED_REASON, LAPSE_MARGIN, LIVE

from .query_helpers import running
from .test_live_interest import SETTLE, SHORT_TIMEOUT, config, counting, post, receive_ids, until

pytestmark = pytest.mark.timeout(110)


@pytest.fixture
async def stack(
    nats_server: Any, chdb_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Any, Any, aiohttp.ClientSession]]:
    """(ingest (base, app), query (base, app), session), brokers with live_interest_timeout=SHORT_TIMEOUT."""
    monkeypatch.setattr(
        "oglogstream.stack.http.resources.Broker",
        functools.partial(Broker, live_interest_timeout=SHORT_TIMEOUT),
    )
    async with (
        running(config(nats_server.url, "ingest", chdb_dsn)) as ingest,
        running(config(nats_server.url, "query", chdb_dsn)) as query,
        aiohttp.ClientSession() as session,
    ):
        yield ingest, query, session


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str]:
    """Read (skipping entries) until the server's close frame; its (code, reason)."""
    while True:
        msg = await ws.receive(timeout=SETTLE)
        if msg.type == aiohttp.WSMsgType.TEXT:
            continue
        assert msg.type == aiohttp.WSMsgType.CLOSE, msg
        return msg.data, msg.extra


def interrupted(app: Any, reason: str) -> float:
    return float(app[LIVE].interrupted.labels(reason)._value.get())


async def test_a_stalled_hub_closes_its_clients_with_a_reason(stack: Any) -> None:
    """The hub's event loop blocked past the timeout (ingestion stopped publishing live copies meanwhile):
    its client is closed with 1013 and the reason instead of silently missing entries, the loss is counted,
    and a client that reconnects gets entries again."""
    (ingest_base, ingest_app), (query_base, query_app), session = stack
    ws = await session.ws_connect(f"{query_base}/ws/live")
    await post(session, ingest_base, ["before"])
    assert await receive_ids(ws, 1) == ["before"]
    time.sleep(SHORT_TIMEOUT + LAPSE_MARGIN)  # the stall: blocks the hub's loop (and all)
    assert not ingest_app[BROKER].live_interest  # the gap is real: live copies were not being published
    assert await closed_with(ws) == (CLOSE_INTERRUPTED, INTERRUPTED_REASON)
    assert interrupted(query_app, "announcement_lapse") == 1
    again = await session.ws_connect(f"{query_base}/ws/live")
    await post(session, ingest_base, ["after"])
    assert await receive_ids(again, 1) == ["after"]
    await again.close()


async def test_announcements_failing_for_long_close_the_clients_without_waiting_for_a_success(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every announcement refused at the NATS client boundary (NATS itself stays up): once the last success is
    older than the timeout less LAPSE_MARGIN, the client is closed with 1013 while announcing still fails."""
    _, (query_base, query_app), session = stack
    ws = await session.ws_connect(f"{query_base}/ws/live")

    async def refused(**_: Any) -> None:
        raise BrokerUnavailable("refused by the test")

    monkeypatch.setattr(query_app[BROKER], "announce_live_interest", refused)
    assert await closed_with(ws) == (CLOSE_INTERRUPTED, INTERRUPTED_REASON)
    assert interrupted(query_app, "announcement_lapse") == 1


async def test_a_client_arriving_right_after_a_stall_is_announced_afresh(stack: Any) -> None:
    """A new client upgraded while the announcer has not yet run after a stall does not rely on the lapsed
    interest: its upgrade re-announces, so its first entry arrives (and only the older client is closed)."""
    (ingest_base, _), (query_base, query_app), session = stack
    old = await session.ws_connect(f"{query_base}/ws/live")
    time.sleep(SHORT_TIMEOUT + LAPSE_MARGIN)  # the stall
    new = await session.ws_connect(f"{query_base}/ws/live")
    await post(session, ingest_base, ["fresh"])
    assert await receive_ids(new, 1) == ["fresh"]
    assert await closed_with(old) == (CLOSE_INTERRUPTED, INTERRUPTED_REASON)
    assert len(query_app[LIVE].clients) == 1
    await new.close()


async def test_a_nats_restart_closes_clients_then_the_live_tail_works_again(
    nats_server: Any, stack: Any
) -> None:
    """When NATS goes away, the connected client is closed with 1013 (entries published while the hub was
    disconnected are not replayed); a client that reconnects gets entries, also past the timeout."""
    (ingest_base, ingest_app), (query_base, query_app), session = stack
    ws = await session.ws_connect(f"{query_base}/ws/live")
    await post(session, ingest_base, ["before"])
    assert await receive_ids(ws, 1) == ["before"]
    nats_server.stop()
    restarted = NatsServer(nats_server.store_dir, port=nats_server.port).start()
    try:
        assert await closed_with(ws) == (CLOSE_INTERRUPTED, INTERRUPTED_REASON)
        # The live tail's own NATS connection closes its clients when it is lost, not only once it is back.
        assert interrupted(query_app, "nats_disconnect") == 1
        await until(lambda: ingest_app[BROKER].is_connected and query_app[BROKER].is_connected)
        again = await session.ws_connect(f"{query_base}/ws/live")
        async with counting(restarted.url, LIVE_INTEREST_SUBJECT) as announcements:
            await until(lambda: announcements.count >= 4)  # past the reconnect's assumed interest
        await post(session, ingest_base, ["after"])
        assert await receive_ids(again, 1) == ["after"]
        await again.close()
    finally:
        restarted.stop()


async def test_a_broker_deaf_to_announcements_publishes_every_live_copy_across_reconnects(
    nats_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the interest subscription cannot be made, the broker publishes every live copy, and neither a
    reconnect nor an announcement lowers that back to the timeout."""
    broker = Broker(nats_server.url, live_interest_timeout=SHORT_TIMEOUT)
    subscribe = broker.nc.subscribe

    async def refusing(subject: str, *args: Any, **kwargs: Any) -> Any:
        if subject == LIVE_INTEREST_SUBJECT:
            raise nats.errors.Error("refused by the test")
        return await subscribe(subject, *args, **kwargs)

    monkeypatch.setattr(broker.nc, "subscribe", refusing)
    await broker.start(wait=SETTLE)
    try:
        assert broker.is_connected and broker._live_until == float("inf")
        reconnected = asyncio.Event()
        broker.on_reconnected(reconnected.set)
        nats_server.stop()
        restarted = NatsServer(nats_server.store_dir, port=nats_server.port).start()
        try:
            await asyncio.wait_for(reconnected.wait(), SETTLE)
            assert await broker.wait_ready(SETTLE)
            await broker.announce_live_interest(timeout=SETTLE)
            assert broker._live_until == float("inf")
            assert await broker.publish_live(b"[]")
        finally:
            restarted.stop()
    finally:
        await broker.close()
