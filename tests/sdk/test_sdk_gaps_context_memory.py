"""The bound context (`oglogstream.bind`/`bound`, set by the Django and Flask integrations for every request)
counts against `max_buffer_bytes` (issue #10): charged once per context object, so a stuck worker cannot hold
more than the memory bound through big contexts, and records sharing one context are not charged for it
again and again."""

from __future__ import annotations

import asyncio
import logging
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
from oglogstream import AsyncOgLogClient, OgLogHandler, OgLogProcessor, Stats, bound
from oglogstream._settings import DEFAULT_BATCH_BYTES, DEFAULT_MAX_BUFFER_BYTES

from .capture_server import BlackHoleServer

#: 2,000 requests each binding a distinct 100 KB context: ~200 MB unbounded (budget 128 MiB).
REQUESTS, CONTEXT_SIZE = 2000, 100_000
#: The structlog processor's worker takes more of them into its batch in flight before it is stuck: 2,000
#: fitted the 128 MiB budget there (no overflow to check), 3,000 do not.
STRUCTLOG_REQUESTS = 3000
#: What may be held besides the budget (docs/sdk.md "Overflow"): the stuck request's body, which the
#: transport builds from the batch in flight (counted) and keeps while it waits (not counted), and the
#: encoder's copies of the last context's text, and records refilled while the worker encodes a chunk (docs:
#: up to one chunk). Measured: +1.8 MB for the handler at 64 MiB, +2.4-2.6 MB at the 128 MiB default (CI).
SLACK = 2 * DEFAULT_BATCH_BYTES + 8 * CONTEXT_SIZE


def _distinct(i: int) -> str:
    return f"{i:08d}" * (CONTEXT_SIZE // 8)  # distinct text per request: nothing shared to discount


@pytest.fixture
def black_hole() -> Iterator[BlackHoleServer]:
    """A server that accepts connections and never answers: the sender is stuck in its first send."""
    server = BlackHoleServer()
    try:
        yield server
    finally:
        server.close()


def _assert_overflowed_if_stuck_throughout(stats: Stats) -> None:
    """While the worker's first attempt is still waiting, the budget must have turned records away. Under
    heavy load the logging can outlast the attempt deadline (connect + read timeout, 15 s): the worker then
    keeps the batch as its compressed body, which frees the contexts' memory, and nothing needs to overflow;
    the memory bound is still checked by the caller."""
    if stats.last_error_at is None:
        assert stats.dropped.get("overflow", 0) > 0, stats


def _held_while(log_requests: Callable[[], None]) -> int:
    """Bytes still allocated (tracemalloc) after `log_requests` ran: what the SDK kept of them."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        log_requests()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_distinct_big_contexts_stop_at_the_byte_budget_while_the_worker_is_stuck(
    black_hole: BlackHoleServer, logger: logging.Logger
) -> None:
    """One record per request, each under its own 100 KB context: what the SDK keeps stays within the budget
    (before: every context was charged as a typical record, 2,000 held ~200 MB), the rest is `overflow`, and
    every call stays accounted for."""
    handler = OgLogHandler(black_hole.url, "ctx-mem")
    logger.addHandler(handler)

    def log_requests() -> None:
        for i in range(REQUESTS):
            with bound(request_id=i, headers=_distinct(i)):
                logger.info("request done")

    try:
        held = _held_while(log_requests)
        stats = handler.stats()
        assert stats.sent + stats.dropped_total + stats.queued == REQUESTS
        _assert_overflowed_if_stuck_throughout(stats)
        assert held <= DEFAULT_MAX_BUFFER_BYTES + SLACK, held - DEFAULT_MAX_BUFFER_BYTES
    finally:
        handler.close(0.5)


def test_records_sharing_one_big_context_are_charged_for_it_once(
    black_hole: BlackHoleServer, logger: logging.Logger
) -> None:
    """50,000 records under one 100 KB context (a long request, a worker thread's bound fields): the context
    is charged once, so all of them wait for the stuck worker (charged per record they would overflow)."""
    handler = OgLogHandler(black_hole.url, "ctx-mem")
    logger.addHandler(handler)
    try:
        with bound(headers=_distinct(0)):
            for i in range(50_000):
                logger.info("step %d", i)
        stats = handler.stats()
        assert stats.dropped == {}
        assert stats.queued == 50_000
    finally:
        handler.close(0.5)


def test_structlog_events_with_distinct_big_contexts_stop_at_the_byte_budget(
    black_hole: BlackHoleServer,
) -> None:
    """The structlog processor charges the bound context as the handler does."""
    processor = OgLogProcessor(black_hole.url, "ctx-mem")

    def log_requests() -> None:
        for i in range(STRUCTLOG_REQUESTS):
            with bound(headers=_distinct(i)):
                processor(None, "info", {"event": "request done", "level": "info"})

    try:
        held = _held_while(log_requests)
        stats = processor.stats()
        assert stats.sent + stats.dropped_total + stats.queued == STRUCTLOG_REQUESTS
        _assert_overflowed_if_stuck_throughout(stats)
        assert held <= DEFAULT_MAX_BUFFER_BYTES + SLACK, held - DEFAULT_MAX_BUFFER_BYTES
    finally:
        processor.close(0.5)


def test_asyncio_events_with_distinct_big_contexts_stop_at_the_byte_budget(
    black_hole: BlackHoleServer,
) -> None:
    """The asyncio client charges the bound context too: its intake stays within max_buffer_bytes."""

    async def main() -> int:
        client = AsyncOgLogClient(black_hole.url, "ctx-mem", drain_on_sigterm=False)
        try:

            def log_requests() -> None:
                for i in range(REQUESTS):  # no await: the sending task cannot run meanwhile
                    with bound(headers=_distinct(i)):
                        client.info("request done")

            held = _held_while(log_requests)
            stats = client.stats()
            assert stats.sent + stats.dropped_total + stats.queued == REQUESTS
            _assert_overflowed_if_stuck_throughout(stats)
            return held
        finally:
            await client.aclose(timeout=0.5)

    held = asyncio.run(main())
    assert held <= DEFAULT_MAX_BUFFER_BYTES + SLACK, held - DEFAULT_MAX_BUFFER_BYTES


def test_structlog_contextvars_on_top_of_one_big_context_charge_it_once(black_hole: BlackHoleServer) -> None:
    """structlog's contextvars merged over one 100 KB bound context (a new mapping per event, sharing its
    values): the bound context is still charged once, so 20,000 events all wait for the stuck worker
    (charged per event, ~650 fit and the rest overflowed)."""
    import structlog.contextvars as contextvars  # a test dependency, as in test_sdk_structlog.py

    processor = OgLogProcessor(black_hole.url, "ctx-mem")
    contextvars.bind_contextvars(user="u-1")
    try:
        with bound(headers=_distinct(0)):
            for i in range(20_000):
                processor(None, "info", {"event": "step", "level": "info", "n": i})
        stats = processor.stats()
        assert stats.dropped == {}
        assert stats.queued == 20_000
    finally:
        contextvars.clear_contextvars()
        processor.close(0.5)
