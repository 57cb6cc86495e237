"""AsyncOgLogClient: delivery from asyncio code, retries, the aclose() deadline, and loop shutdown."""

from __future__ import annotations

import asyncio
import collections
import threading
import time

import oglogstream
import pytest
from oglogstream import AsyncOgLogClient

from .capture_server import BlackHoleServer, CaptureServer, Reply
from .conftest import FAST


@pytest.fixture(autouse=True)
def _clean_context() -> None:
    oglogstream.clear_context()


async def test_events_arrive_once_with_levels_attributes_context_and_traceback(server: CaptureServer) -> None:
    """Each event arrives once; levels map to the wire, keywords become attributes, bind() applies."""
    oglogstream.bind(request_id="r-9")
    async with AsyncOgLogClient(server.url, "async-svc", **FAST) as client:
        for i in range(1000):
            client.info(f"event {i}", n=i)
        client.warning("careful", user="ann")
        client.critical("down")
        client.log(10, "numeric debug")
        try:
            raise ValueError("boom")
        except ValueError:
            client.exception("failed", order=7)
    assert client.stats().sent == 1004 and client.stats().dropped == {}
    counts = collections.Counter(str(e["message"]) for e in server.entries)
    assert all(count == 1 for count in counts.values()) and len(counts) == 1004
    assert not server.problems
    by_message = {str(e["message"]): e for e in server.entries}
    assert by_message["event 7"]["attributes"] == {"request_id": "r-9", "n": 7}
    assert by_message["event 7"]["level"] == "info" and by_message["event 7"]["service"] == "async-svc"
    assert by_message["careful"]["level"] == "warn"
    assert by_message["down"]["level"] == "fatal"
    assert by_message["numeric debug"]["level"] == "debug"
    failed = by_message["failed"]
    assert failed["level"] == "error" and "ValueError: boom" in failed["exception"]
    assert failed["attributes"]["order"] == 7


async def test_retryable_answers_are_retried_with_the_same_batch_id(server: CaptureServer) -> None:
    """503, 429 + Retry-After and 500 are retried (same batch id each time) until the batch is accepted."""
    server.script(503, Reply(429, headers={"Retry-After": "0"}), 500)
    client = AsyncOgLogClient(server.url, "async-svc", **FAST)
    for i in range(10):
        client.info(f"retry {i}")
    assert await client.flush(10)
    stats = client.stats()
    assert stats.sent == 10 and stats.retried == 3
    assert {r.batch_id for r in server.requests} == {server.requests[0].batch_id}
    assert [r.status for r in server.requests] == [503, 429, 500, 202]
    assert await client.aclose(5)


async def test_aclose_keeps_its_deadline_against_a_hanging_server() -> None:
    """A server that never answers cannot hold aclose() past its timeout; the request it never answered is
    counted `unconfirmed` (as the handler counts it: it may have been stored)."""
    hole = BlackHoleServer()
    try:
        client = AsyncOgLogClient(hole.url, "async-svc", **{**FAST, "read_timeout": 30.0})
        for i in range(100):
            client.info(f"stuck {i}")
        await asyncio.sleep(0.2)  # the batch is in flight now
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert not await client.aclose(timeout=1.0)
        assert loop.time() - started < 2.0
        assert client.stats().dropped == {"unconfirmed": 100}
        assert client.stats().queued == 0  # counted once: lost, not also queued
    finally:
        hole.close()


def test_events_still_arrive_when_asyncio_run_ends_without_aclose(server: CaptureServer) -> None:
    """asyncio.run() cancels the sender at the end; it then delivers what it holds (shutdown_timeout)."""
    client = AsyncOgLogClient(server.url, "async-svc", **{**FAST, "flush_interval": 10.0})

    async def main() -> None:
        for i in range(50):
            client.info(f"unflushed {i}")
        await asyncio.sleep(0)

    asyncio.run(main())
    assert server.wait_entries(50, 5)
    assert client.stats().sent == 50


async def test_log_is_synchronous_and_callable_from_other_threads(server: CaptureServer) -> None:
    """log() returns without awaiting (a plain call, also from a thread); the loop's task sends it all."""
    client = AsyncOgLogClient(server.url, "async-svc", **FAST)
    assert not asyncio.iscoroutinefunction(client.log)
    client.info("from the loop")

    def worker(n: int) -> None:
        for i in range(100):
            client.info(f"thread {n} event {i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert await client.flush(10)
    assert server.entry_count == 401 and len(server.ids) == 401
    assert await client.aclose(5)


async def test_overflow_is_bounded_and_counted(server: CaptureServer) -> None:
    """While the loop is busy, at most max_buffer_records wait; the rest is dropped (oldest) and counted."""
    client = AsyncOgLogClient(server.url, "async-svc", **{**FAST, "max_buffer_records": 100})
    for i in range(250):  # no await in between: the sender cannot run
        client.info(f"burst {i}")
    assert await client.aclose(5)
    stats = client.stats()
    assert stats.dropped == {"overflow": 150} and stats.sent == 100
    assert {str(e["message"]) for e in server.entries} == {f"burst {i}" for i in range(150, 250)}


def test_async_client_settings_are_validated() -> None:
    """Bad settings fail at construction with the setting's name, as for the handler."""
    with pytest.raises(ValueError, match="batch_size"):
        AsyncOgLogClient("http://127.0.0.1:9", "svc", batch_size=0)
    with pytest.raises(ValueError, match="url"):
        AsyncOgLogClient("ftp://x", "svc")
    time.sleep(0)


def test_one_client_delivers_on_a_second_event_loop(server: CaptureServer) -> None:
    """asyncio.run(first()) then asyncio.run(second()) with one client: a new sending task on the new loop."""
    client = AsyncOgLogClient(server.url, "async-svc", **FAST)

    async def first() -> None:
        for i in range(10):
            client.info(f"first {i}")

    async def second() -> None:
        for i in range(10):
            client.info(f"second {i}")
        assert await client.flush(5)

    asyncio.run(first())
    asyncio.run(second())
    messages = sorted(e["message"] for e in server.entries)
    assert messages == sorted([f"first {i}" for i in range(10)] + [f"second {i}" for i in range(10)])
    assert client.stats().dropped == {} and client.stats().sent == 20


async def test_events_after_aclose_are_delivered(server: CaptureServer) -> None:
    """No dead end after aclose(): a later event starts a new sending task on the running loop."""
    client = AsyncOgLogClient(server.url, "async-svc", **FAST)
    client.info("before")
    assert await client.aclose(5)
    client.info("after")
    assert await client.aclose(5)
    assert [e["message"] for e in server.entries] == ["before", "after"]
    assert client.stats().dropped == {}
