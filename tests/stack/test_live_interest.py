"""The live tail costs nothing while nobody watches (#14): ingestion publishes live copies only while a
live-tail hub announces clients, and a hub holds its NATS subscription only while it has clients - without a
connected client ever missing an entry accepted after its upgrade. Separate ingest and query apps on one real
nats-server (and one chDB store), so every announcement crosses NATS as between real processes. The apps'
brokers follow announcements with SHORT_TIMEOUT instead of the 30 s default, so "ingestion stopped" is reached
in seconds; what is tested is relative to the timeout, not its value."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import nats
import pytest
from oglogstream.stack.broker.broker import LIVE_INTEREST_INTERVAL, Broker
from oglogstream.stack.broker.natsd import free_port
from oglogstream.stack.config import LIVE_INTEREST_SUBJECT, LIVE_SUBJECT, StackConfig
from oglogstream.stack.http.resources import BROKER
from oglogstream.stack.query.live import LIVE

from .query_helpers import running

pytestmark = pytest.mark.timeout(110)

#: The apps' live_interest_timeout in these tests: three announcement intervals.
SHORT_TIMEOUT = 3 * LIVE_INTEREST_INTERVAL
#: Bound on waiting for a state that follows from SHORT_TIMEOUT (no timing is asserted).
SETTLE = SHORT_TIMEOUT + 10.0


class Counter:
    """A NATS connection of the test's own, counting the messages on one subject."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.count = 0
        self.nc: Any = None

    async def start(self, url: str) -> Counter:
        self.nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)

        async def seen(_msg: Any) -> None:
            self.count += 1

        await self.nc.subscribe(self.subject, cb=seen)
        await self.nc.flush()
        return self

    async def settled(self, *publishers: Any) -> int:
        """The count once everything the publishers' brokers sent so far has arrived (flush round trips on
        the same server: their messages reach our connection before our own PONG)."""
        for app in publishers:
            await app[BROKER].nc.flush()
        await self.nc.flush()
        return self.count

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()


@contextlib.asynccontextmanager
async def counting(url: str, subject: str = LIVE_SUBJECT) -> AsyncIterator[Counter]:
    counter = Counter(subject)
    try:
        yield await counter.start(url)
    finally:
        await counter.close()


async def until(condition: Callable[[], bool], timeout: float = SETTLE) -> None:
    """Wait (bounded) until `condition()` holds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


def config(nats_url: str, role: str, chdb_dsn: str) -> StackConfig:
    extra = {"clickhouse_dsn": chdb_dsn} if role == "query" else {}
    return StackConfig(roles=(role,), nats_url=nats_url, **extra)


async def post(session: aiohttp.ClientSession, base: str, ids: list[str], service: str = "svc") -> None:
    body = "\n".join(json.dumps({"id": i, "level": "info", "message": i, "service": service}) for i in ids)
    async with session.post(
        f"{base}/logs", data=body.encode(), headers={"Content-Type": "application/x-ndjson"}
    ) as response:
        assert response.status == 202, await response.text()


async def receive_ids(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < n:
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        ids.append(json.loads(msg.data)["id"])
    return ids


@pytest.fixture
def short_interest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Apps started from here on build their Broker with live_interest_timeout=SHORT_TIMEOUT."""
    monkeypatch.setattr(
        "oglogstream.stack.http.resources.Broker",
        functools.partial(Broker, live_interest_timeout=SHORT_TIMEOUT),
    )


@pytest.fixture
async def stack(
    nats_server: Any, chdb_dsn: str, short_interest: None
) -> AsyncIterator[tuple[Any, Any, aiohttp.ClientSession]]:
    """(ingest (base, app), query (base, app), session): two apps sharing only the NATS server."""
    async with (
        running(config(nats_server.url, "ingest", chdb_dsn)) as ingest,
        running(config(nats_server.url, "query", chdb_dsn)) as query,
        aiohttp.ClientSession() as session,
    ):
        yield ingest, query, session


# -- nobody watching -------------------------------------------------------------------------------------
async def test_no_live_copy_and_no_subscription_while_nobody_watches(nats_server: Any, stack: Any) -> None:
    """Once a new connection's assumed interest has run out, accepted entries cross NATS only durably: no
    message on the live subject, and the query app holds no live subscription."""
    (ingest_base, ingest_app), (_, query_app), session = stack
    await until(lambda: not ingest_app[BROKER].live_interest)
    async with counting(nats_server.url) as live:
        for k in range(5):
            await post(session, ingest_base, [f"quiet-{k}-{i}" for i in range(20)])
        assert await live.settled(ingest_app) == 0
    assert query_app[LIVE].feed.subscription is None


async def test_a_client_that_connects_later_gets_every_entry_accepted_after_its_upgrade(
    nats_server: Any, stack: Any
) -> None:
    """No sleep between the upgrade and the POST: the upgrade is answered only once the subscription and the
    announcement reached NATS, so the very next entry is published live and delivered."""
    (ingest_base, ingest_app), (query_base, _), session = stack
    await until(lambda: not ingest_app[BROKER].live_interest)
    async with counting(nats_server.url) as live:
        ws = await session.ws_connect(f"{query_base}/ws/live")
        await post(session, ingest_base, ["late-1", "late-2", "late-3"])
        assert await receive_ids(ws, 3) == ["late-1", "late-2", "late-3"]
        assert await live.settled(ingest_app) == 1
        await ws.close()


# -- clients come and go ---------------------------------------------------------------------------------
async def test_two_clients_then_the_last_one_leaves(nats_server: Any, stack: Any) -> None:
    """The subscription outlives the first client to leave; after the last one, the hub unsubscribes and
    ingestion stops publishing live copies (within its live_interest_timeout)."""
    (ingest_base, ingest_app), (query_base, query_app), session = stack
    hub = query_app[LIVE]
    first = await session.ws_connect(f"{query_base}/ws/live")
    second = await session.ws_connect(f"{query_base}/ws/live")
    await post(session, ingest_base, ["both"])
    assert await receive_ids(first, 1) == ["both"] and await receive_ids(second, 1) == ["both"]
    await first.close()
    await until(lambda: len(hub.clients) == 1)
    assert hub.feed.subscription is not None
    await post(session, ingest_base, ["second-only"])
    assert await receive_ids(second, 1) == ["second-only"]
    await second.close()
    await until(lambda: hub.feed.subscription is None and hub.feed.announcer is None)
    await until(lambda: not ingest_app[BROKER].live_interest)
    async with counting(nats_server.url) as live:
        await post(session, ingest_base, ["nobody"])
        assert await live.settled(ingest_app) == 0
    again = await session.ws_connect(f"{query_base}/ws/live")  # and a new first client works again
    await post(session, ingest_base, ["again"])
    assert await receive_ids(again, 1) == ["again"]
    await again.close()


async def test_many_clients_arriving_and_leaving_at_once_leave_no_subscription(stack: Any) -> None:
    """Concurrent first arrivals and last departures are serialised: every client gets its entries, and
    when all are gone no subscription or announcer is left behind."""
    (ingest_base, _), (query_base, query_app), session = stack
    hub = query_app[LIVE]
    for _round in range(3):
        sockets = await asyncio.gather(*(session.ws_connect(f"{query_base}/ws/live") for _ in range(8)))
        await post(session, ingest_base, [f"round-{_round}"])
        for ws in sockets:
            assert await receive_ids(ws, 1) == [f"round-{_round}"]
        await asyncio.gather(*(ws.close() for ws in sockets))
        await until(lambda: not hub.clients and hub.feed.subscription is None and hub.feed.announcer is None)


# -- several processes -----------------------------------------------------------------------------------
async def test_a_second_hub_keeps_interest_alive_and_a_late_worker_publishes_at_once(
    nats_server: Any, chdb_dsn: str, stack: Any
) -> None:
    """Two query apps on one NATS: when one loses its last client the other's announcements keep ingestion
    publishing past its live_interest_timeout; an ingest app started while a client watches publishes its very
    first entry live."""
    (ingest_base, ingest_app), (query_base, query_app), session = stack
    async with running(config(nats_server.url, "query", chdb_dsn)) as (other_base, other_app):
        here = await session.ws_connect(f"{query_base}/ws/live")
        there = await session.ws_connect(f"{other_base}/ws/live")
        await here.close()
        await until(lambda: query_app[LIVE].feed.announcer is None)
        async with counting(nats_server.url, LIVE_INTEREST_SUBJECT) as announcements:
            # Five intervals, longer than SHORT_TIMEOUT: only the other hub's can keep ingestion on.
            await until(lambda: announcements.count >= 5)
        assert ingest_app[BROKER].live_interest
        await post(session, ingest_base, ["kept"])
        assert await receive_ids(there, 1) == ["kept"]
        async with running(config(nats_server.url, "ingest", chdb_dsn)) as (late_base, _):
            await post(session, late_base, ["late-worker"])
            assert await receive_ids(there, 1) == ["late-worker"]
        await there.close()
        await until(lambda: other_app[LIVE].feed.subscription is None)


async def test_without_nats_the_upgrade_is_refused_with_503(chdb_dsn: str) -> None:
    """A socket that could not receive anything is refused (503 + Retry-After) within READY_TIMEOUT, not
    opened silently; the hub is left without clients or subscription."""
    async with (
        running(config(f"nats://127.0.0.1:{free_port()}", "query", chdb_dsn)) as (base, app),
        aiohttp.ClientSession() as session,
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{base}/ws/live")
        assert refused.value.status == 503
        assert refused.value.headers is not None and refused.value.headers["Retry-After"] == "1"
        hub = app[LIVE]
        assert not hub.clients and hub.feed.subscription is None and hub.feed.announcer is None
