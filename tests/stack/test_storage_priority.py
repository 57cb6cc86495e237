"""Clients' queries never starve the processor's inserts on the shared storage threads (embedded chDB: one):
queued inserts run before queued queries, queries are bounded in number (in all, per client) and in time
(waiting included), served round-robin across clients, and a refused query is a 429/503 problem with
Retry-After, counted by reason. Real chDB; the storage thread is held by a controllable call."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from clickhouse_connect.driver.client import Client
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http.resources import STORAGE
from oglogstream.stack.ingestion import row_codec, schema
from oglogstream.stack.processing.sink import Batch
from oglogstream.stack.query import query_sql
from oglogstream.stack.storage.scheduler import (
    DEFAULT_MAX_CLIENT_QUERIES,
    DEFAULT_MAX_WAITING_QUERIES,
    Busy,
    Scheduler,
)
from oglogstream.stack.storage.storage import Storage

from .helpers import ready_storage
from .query_helpers import running

#: What one client alone may hold: all of the queue but another client's share.
ALONE = DEFAULT_MAX_WAITING_QUERIES - DEFAULT_MAX_CLIENT_QUERIES
#: Bounds every wait in these tests (seconds); none is expected to come near it.
WAIT = 30.0


def _batch(storage: Storage, n: int) -> Batch:
    """A processor batch of n fresh entries, as ingestion writes them."""
    now = schema.format_timestamp(dt.datetime.now(dt.timezone.utc))
    entries = [
        schema.ENTRY.validate_python(
            {"id": f"e{k}", "timestamp": now, "level": "info", "message": "m", "service": "s"}
        )
        for k in range(n)
    ]
    part = row_codec.dumps(schema.make_rows(entries, batch_id="b", received_at=now))
    return Batch([part], [f"e{k}" for k in range(n)], now, now, "token-priority")


class Gate:
    """A call that holds a storage thread until released (`entered` is set once it runs)."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, _client: Any = None) -> None:
        self.entered.set()
        assert self.release.wait(WAIT), "gate never released"


@pytest.fixture
async def storage(chdb_dsn: str) -> AsyncIterator[Storage]:
    async with ready_storage(Storage(chdb_dsn)) as store:
        yield store


async def _held(storage: Storage, gate: Gate) -> asyncio.Task[None]:
    task = asyncio.create_task(storage.run(gate))
    assert await asyncio.to_thread(gate.entered.wait, WAIT)
    return task


async def test_a_queued_insert_runs_before_queued_queries_which_take_turns(storage: Storage) -> None:
    """Queries of clients a, a, b queued before an insert all see its rows, in the order a, b, a."""
    gate, batch = Gate(), _batch(storage, 5)
    seen: list[tuple[str, int]] = []

    def count(client: Client, label: str) -> None:
        seen.append((label, int(client.command("SELECT count() FROM logs"))))

    try:
        held = await _held(storage, gate)
        deadline = time.monotonic() + WAIT
        queries = [
            asyncio.create_task(storage.query(who, deadline, count, label))
            for who, label in (("a", "a1"), ("a", "a2"), ("b", "b1"))
        ]
        await asyncio.sleep(0)  # the queries are queued first
        insert = asyncio.create_task(storage.insert(batch))
        await asyncio.sleep(0)
        gate.release.set()
        assert (await insert)[0] == 5
        await asyncio.gather(held, *queries)
    finally:
        gate.release.set()
    assert seen == [("a1", 5), ("b1", 5), ("a2", 5)]


def test_a_new_client_goes_before_the_backlog_of_a_client_with_a_query_running() -> None:
    """While a's query holds the thread, a2, a3, b1, c1 queue: b1 and c1 run before a's backlog."""
    scheduler = Scheduler(1)
    gate, order = Gate(), []
    try:
        running = scheduler.submit(gate, client="a")
        assert gate.entered.wait(WAIT)
        futures = [
            scheduler.submit(lambda label=label: order.append(label), client=label[0])
            for label in ("a2", "a3", "b1", "c1")
        ]
        gate.release.set()
        for future in (running, *futures):
            future.result(WAIT)
    finally:
        gate.release.set()
        assert scheduler.close(WAIT)
    assert order == ["b1", "c1", "a2", "a3"]


def test_with_several_threads_queries_leave_one_for_inserts() -> None:
    """On a server's pool (3 threads here) queries hold at most 2; work still runs while they are stuck."""
    scheduler = Scheduler(3)
    gates = [Gate() for _ in range(3)]
    try:
        futures = [scheduler.submit(gate, client=f"c{k}") for k, gate in enumerate(gates)]
        assert gates[0].entered.wait(WAIT) and gates[1].entered.wait(WAIT)
        assert scheduler.submit(lambda: "inserted").result(WAIT) == "inserted"
        assert not gates[2].entered.is_set()  # the third query waits for a query thread
        for gate in gates:
            gate.release.set()
        for future in futures:
            future.result(WAIT)
    finally:
        for gate in gates:
            gate.release.set()
        assert scheduler.close(WAIT)


async def test_query_limits_per_client_and_in_all(chdb_dsn: str) -> None:
    """A client over its share is refused ("client_share"), so is any query past the waiting limit
    ("queue_full"); a withdrawn (cancelled) query frees its slot at once."""
    store = Storage(chdb_dsn, max_waiting_queries=3, max_client_queries=2)
    gate = Gate()
    held = await _held(store, gate)
    deadline = time.monotonic() + WAIT
    noop = lambda client: None  # noqa: E731
    try:
        first = asyncio.create_task(store.query("a", deadline, noop))
        await asyncio.sleep(0)
        a2 = asyncio.create_task(store.query("a", deadline, noop))
        await asyncio.sleep(0)
        with pytest.raises(Busy) as share:
            await store.query("a", deadline, noop)
        assert share.value.reason == "client_share"
        b1 = asyncio.create_task(store.query("b", deadline, noop))
        await asyncio.sleep(0)
        with pytest.raises(Busy) as full:
            await store.query("c", deadline, noop)
        assert full.value.reason == "queue_full"
        a2.cancel()
        with pytest.raises(asyncio.CancelledError):
            await a2
        await asyncio.sleep(0)  # the cancellation reaches the scheduler's future
        c1 = asyncio.create_task(store.query("c", deadline, noop))  # the place a2 held, refused before
        gate.release.set()
        await asyncio.gather(held, first, b1, c1)
    finally:
        gate.release.set()
        store.close()


async def test_a_lone_client_may_pass_its_share_while_the_queue_keeps_room_for_another(chdb_dsn: str) -> None:
    """Share 2 of a queue of 6: alone, a client queues 4 (a dashboard's burst is served); the 5th is refused
    ("client_share"); another client queues one, its second is refused too (the last place is kept for a
    client with none), and a third client gets that place."""
    store = Storage(chdb_dsn, max_waiting_queries=6, max_client_queries=2)
    gate = Gate()
    held = await _held(store, gate)
    deadline = time.monotonic() + WAIT
    noop = lambda client: None  # noqa: E731
    try:
        mine = []
        for _ in range(4):
            mine.append(asyncio.create_task(store.query("a", deadline, noop)))
            await asyncio.sleep(0)
        with pytest.raises(Busy) as share:
            await store.query("a", deadline, noop)
        assert share.value.reason == "client_share"
        theirs = [asyncio.create_task(store.query("b", deadline, noop))]
        await asyncio.sleep(0)
        with pytest.raises(Busy) as kept:
            await store.query("b", deadline, noop)
        assert kept.value.reason == "client_share" and "kept for a client with none" in str(kept.value)
        theirs.append(asyncio.create_task(store.query("c", deadline, noop)))
        gate.release.set()
        await asyncio.gather(held, *mine, *theirs)
    finally:
        gate.release.set()
        store.close()


async def test_a_query_waiting_past_its_deadline_fails_and_close_fails_the_rest(chdb_dsn: str) -> None:
    """The deadline covers the wait ("wait_timeout"); queries still waiting at close fail with "closed"."""
    store = Storage(chdb_dsn)
    gate = Gate()
    held = await _held(store, gate)
    try:
        with pytest.raises(Busy) as late:
            await store.query("a", time.monotonic() + 0.2, lambda client: None)
        assert late.value.reason == "wait_timeout"
        waiting = asyncio.create_task(store.query("b", time.monotonic() + WAIT, lambda client: None))
        await asyncio.sleep(0)
        closing = asyncio.create_task(asyncio.to_thread(store.close))
        with pytest.raises(Busy) as closed:
            await waiting
        assert closed.value.reason == "closed"
        gate.release.set()
        await asyncio.gather(held, closing)
    finally:
        gate.release.set()


async def test_max_execution_time_is_what_is_left_of_the_deadline_on_chdb(storage: Storage) -> None:
    """A statement that would run for minutes stops when its query's deadline passes (TIMEOUT_EXCEEDED)."""
    slow = "SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) = 1"

    def run(client: Client) -> Any:
        return client.command(slow, settings=query_sql.statement_settings())

    with pytest.raises(Exception) as exc:
        await storage.query("a", time.monotonic() + 0.5, run)
    assert query_sql.is_timeout(exc.value)
    assert query_sql.statement_settings() == {"max_execution_time": query_sql.QUERY_TIMEOUT}


@pytest.fixture
def quick_queries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(query_sql, "QUERY_TIMEOUT", 1)
    yield


async def test_refused_queries_are_429_or_503_problems_with_retry_after(
    nats_server: Any, chdb_dsn: str, quick_queries: None
) -> None:
    """While the storage is held: a lone client's queries past all but another's share get 429, the rest 503
    at the deadline
    (1 s here); both problem+json with Retry-After, counted in oglog_query_refused_total by reason."""
    config = StackConfig(roles=("query",), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn)
    gate = Gate()
    async with running(config) as (base, app), aiohttp.ClientSession() as session:
        held = await _held(app[STORAGE], gate)

        async def get() -> tuple[int, str, dict[str, Any], str | None]:
            async with session.get(f"{base}/api/logs?limit=1") as resp:
                return resp.status, resp.content_type, await resp.json(), resp.headers.get("Retry-After")

        answers = await asyncio.gather(*(get() for _ in range(ALONE + 2)))
        gate.release.set()
        await held
        statuses = sorted(status for status, *_ in answers)
        assert statuses == [429] * 2 + [503] * ALONE
        for status, content_type, body, retry_after in answers:
            assert content_type == "application/problem+json" and retry_after == "1"
            assert body["field"] == ("query" if status == 429 else "storage")
        async with session.get(f"{base}/metrics") as resp:
            metrics = await resp.text()
        assert 'oglog_query_refused_total{reason="client_share"} 2.0' in metrics
        assert f'oglog_query_refused_total{{reason="wait_timeout"}} {ALONE}.0' in metrics
        async with session.get(f"{base}/api/logs?limit=1") as resp:
            assert resp.status == 200


async def test_health_checks_share_one_ping(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """200 concurrent /health checks (open to anyone) cost one `SELECT 1` on the storage thread, and a
    check within PING_MAX_AGE reuses the answer: a /health flood cannot queue work ahead of every query."""
    from oglogstream.stack.storage import storage as storage_module

    pings = 0
    ping = Storage.ping

    def counted(self: Storage, client: Client | None = None) -> bool:
        nonlocal pings
        pings += 1
        return ping(self, client)

    monkeypatch.setattr(Storage, "ping", counted)
    assert await asyncio.gather(*(storage.checked() for _ in range(200))) == [True] * 200
    assert await storage.checked() and pings == 1
    monkeypatch.setattr(storage_module, "PING_MAX_AGE", 0.0)
    assert await storage.checked() and pings == 2
