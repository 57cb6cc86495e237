"""The live tail's liveness (query/live_client.py): a reader that reads slowly is never cut while it reads
(aiohttp's heartbeat cut such a browser with 1006: its pong deadline ran while the ping sat behind megabytes
of unsent entries), and a client that answers nothing is still removed - directly and through an ingest
worker's relay (server/worker_proxy.py), which passes pings and pongs through rather than answering them.

The hub's tick is shortened from HEARTBEAT (20 s) to TICK, and the reads scaled with it, so that a slow read
spans several ticks within a test's time; the rule (silent for DEAD_TICKS ticks) is the default one."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from oglogstream.stack.query import live
from oglogstream.stack.query.live import LIVE

from .helpers import relayed_supervisor, wait_for
from .query_helpers import ingest_and_query

pytestmark = pytest.mark.timeout(110)

#: The hub's heartbeat tick in these tests (seconds).
TICK = 1.5
#: Entries of ~300 bytes read slowly: 2.4 MB, under the client queue's bounds (no drops are expected).
ENTRIES, BATCH = 8000, 4000
#: The slow reader pauses PAUSE seconds every EVERY entries: ~8 s in all (~300 KB/s), over five ticks.
EVERY, PAUSE = 40, 0.04
#: Entries (~9.6 MB) for a client that never reads: past the socket buffers, so the relay is stuck sending.
BACKLOG = 4 * ENTRIES

Stack = Callable[[], AbstractAsyncContextManager[tuple[str, web.Application]]]


@pytest.fixture
def short_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "HEARTBEAT", TICK)


@pytest.fixture
def direct(short_ticks: None, nats_server: Any, chdb_dsn: str) -> Stack:
    """Ingest + query roles on one port: yields (base URL, the hub's app)."""

    @contextlib.asynccontextmanager
    async def stack() -> AsyncIterator[tuple[str, web.Application]]:
        async with ingest_and_query(nats_server.url, chdb_dsn) as (base, app, _session):
            yield base, app

    return stack


@pytest.fixture
def relayed(short_ticks: None, tmp_path: Path) -> Stack:
    """The supervisor's app on a Unix socket, reached through an ingest worker's relay: yields (the worker's
    base URL, the supervisor's app)."""

    @contextlib.asynccontextmanager
    async def stack() -> AsyncIterator[tuple[str, web.Application]]:
        async with relayed_supervisor(tmp_path) as (base, sup_app, _nats):
            yield base, sup_app

    return stack


async def post(session: aiohttp.ClientSession, base: str, ids: list[str]) -> None:
    pad = "x" * 200
    for start in range(0, len(ids), BATCH):
        chunk = ids[start:start + BATCH]
        entries = ({"id": i, "level": "info", "service": "slow", "message": f"{i} {pad}"} for i in chunk)
        body = "\n".join(map(json.dumps, entries))
        async with session.post(
            f"{base}/logs", data=body.encode(), headers={"Content-Type": "application/x-ndjson"}
        ) as answer:
            assert answer.status == 202, await answer.text()


def clients(hub: live.LiveHub, n: int) -> Callable[[], Any]:
    async def probe() -> bool:
        return len(hub.clients) == n

    return probe


async def read_slowly(ws: aiohttp.ClientWebSocketResponse, n: int, pause: float = PAUSE) -> list[str]:
    """The ids of the next n messages, pausing `pause` s every EVERY (pings answered as they are reached);
    fails on a close or a dropped notice."""
    ids: list[str] = []
    while len(ids) < n:
        msg = await ws.receive(timeout=30)
        assert msg.type == aiohttp.WSMsgType.TEXT, (len(ids), msg, ws.close_code)
        entry = json.loads(msg.data)
        assert "type" not in entry, entry  # no {"type": "dropped"}: the queue never overflowed
        ids.append(entry["id"])
        if len(ids) % EVERY == 0:
            await asyncio.sleep(pause)
    return ids


async def slow_reader_gets_everything(stack: Stack, pause: float = PAUSE) -> None:
    async with stack() as (base, app), aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{base}/ws/live?service=slow")
        await wait_for(clients(app[LIVE], 1), timeout=10)
        ids = [f"s{i}" for i in range(ENTRIES)]
        reading = asyncio.create_task(read_slowly(ws, ENTRIES, pause))
        await post(session, base, ids)
        assert await reading == ids
        await post(session, base, ["after"])  # still connected once done
        assert await read_slowly(ws, 1) == ["after"]
        assert app[LIVE].dropped._value.get() == 0
        await ws.close()


async def silent_client_goes_and_idle_one_stays(stack: Stack) -> None:
    async with stack() as (base, app), aiohttp.ClientSession() as session:
        hub = app[LIVE]
        idle = await session.ws_connect(f"{base}/ws/live")  # waits in receive(): answers each ping
        waiting = asyncio.create_task(idle.receive(timeout=60))
        silent = await session.ws_connect(f"{base}/ws/live", autoping=False)  # never reads, never answers
        await wait_for(clients(hub, 2), timeout=10)
        await wait_for(clients(hub, 1), timeout=(live.DEAD_TICKS + 3) * TICK + 10)
        msg = await silent.receive(timeout=10)
        while msg.type == aiohttp.WSMsgType.PING:  # the pings it never answered, then the abort
            msg = await silent.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR), msg
        assert not waiting.done()  # idle for two ticks and more, yet still there
        await post(session, base, ["later"])
        msg = await waiting
        assert msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["id"] == "later", msg
        await idle.close()


async def test_a_slow_reader_gets_every_entry_and_stays_connected(direct: Stack) -> None:
    """A client reading 8,000 entries over ~5 ticks gets all of them in order, no drop notice, no close."""
    await slow_reader_gets_everything(direct)


async def test_a_client_answering_nothing_is_aborted_an_idle_one_stays(direct: Stack) -> None:
    """A client that answers no ping is removed after DEAD_TICKS silent ticks; an idle one that answers stays
    and still gets entries."""
    await silent_client_goes_and_idle_one_stays(direct)


async def test_through_a_worker_a_slow_reader_gets_every_entry(relayed: Stack) -> None:
    """The same slow reader through an ingest worker's relay."""
    await slow_reader_gets_everything(relayed)


async def test_through_a_worker_a_client_answering_nothing_is_aborted(relayed: Stack) -> None:
    """Through the relay too (it relays pongs rather than answering pings for the client)."""
    await silent_client_goes_and_idle_one_stays(relayed)


async def test_through_a_worker_a_silent_client_with_a_backlog_is_cut(
    relayed: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that neither reads nor answers while entries wait for it: the supervisor drops its side and
    the relay, stuck sending to it, cuts it as well (DEAD_TICKS + 1 silent ticks) instead of holding it."""
    caplog.set_level("INFO", logger="oglogstream.stack.server.worker_proxy")
    async with relayed() as (base, app), aiohttp.ClientSession() as session:
        silent = await session.ws_connect(f"{base}/ws/live?service=slow", autoping=False)
        await wait_for(clients(app[LIVE], 1), timeout=10)
        await post(session, base, [f"b{i}" for i in range(BACKLOG)])
        await wait_for(clients(app[LIVE], 0), timeout=(live.DEAD_TICKS + 3) * TICK + 10)

        async def relay_cut() -> bool:
            return "answered nothing" in caplog.text

        await wait_for(relay_cut, timeout=(live.DEAD_TICKS + 3) * TICK + 10)
        await silent.close()


async def test_at_the_defaults_a_reader_slower_than_aiohttps_heartbeat_gets_everything(
    nats_server: Any, chdb_dsn: str
) -> None:
    """The finding at the default HEARTBEAT (20 s): a reader taking ~35 s for 8,000 entries (~70 KB/s;
    aiohttp's heartbeat cut it after ~30 s) gets all of them and stays connected."""

    @contextlib.asynccontextmanager
    async def stack() -> AsyncIterator[tuple[str, web.Application]]:
        async with ingest_and_query(nats_server.url, chdb_dsn) as (base, app, _session):
            assert app[LIVE].heartbeat == live.HEARTBEAT == 20.0
            yield base, app

    await slow_reader_gets_everything(stack, pause=35 / (ENTRIES / EVERY))
