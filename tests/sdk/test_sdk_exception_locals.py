"""A record or event logged with an exception holds its traceback's text, not the traceback: the frames'
locals (a request body, a big buffer) are freed when the call returns, so what waits for a stuck server
stays within `max_buffer_bytes` (default settings). Before, every waiting `logger.exception` kept its
frames alive, charged ~2 KB: 2,000 failures holding a distinct 100 KB local each took ~200 MB against the
128 MiB budget (the stdlib's `QueueHandler.prepare` drops `exc_info` for the same reason)."""

from __future__ import annotations

import asyncio
import gc
import logging
import tracemalloc
from collections.abc import Callable

from oglogstream import AsyncOgLogClient, OgLogHandler, OgLogProcessor
from oglogstream._settings import DEFAULT_BATCH_BYTES, DEFAULT_MAX_BUFFER_BYTES

from .capture_server import BlackHoleServer

#: Failures logged, each in a function holding a distinct LOCAL_BYTES local: 2x the default budget in all.
FAILURES = 2_000
LOCAL_BYTES = 128 * 1024
#: What the measured window may hold besides the budget: a batch in flight and one local being built.
MARGIN = DEFAULT_BATCH_BYTES + LOCAL_BYTES


def _handle_request(i: int) -> None:
    body = f"{i:08d}" * (LOCAL_BYTES // 8)  # a distinct request body per failure: nothing shared
    raise ValueError(f"request {i} failed ({len(body)} bytes)")


def _held_after_failures(log: Callable[[int], object]) -> int:
    """Bytes (tracemalloc) still held after FAILURES calls of `log(i)`, each in the `except` block of a
    failed `_handle_request(i)`."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(FAILURES):
            try:
                _handle_request(i)
            except ValueError:
                log(i)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_logged_exceptions_behind_a_stuck_server_stay_within_the_budget(
    stuck_handler: OgLogHandler, logger: logging.Logger
) -> None:
    """`logger.exception` with default settings: what the waiting records hold stays within the budget,
    and each waiting record holds its traceback's text (the last line names the error)."""
    logger.handlers[:] = [stuck_handler]  # pytest's capturing handlers keep every record (and traceback)
    held = _held_after_failures(lambda i: logger.exception("request %d failed", i))
    assert held <= DEFAULT_MAX_BUFFER_BYTES + MARGIN, held
    stats = stuck_handler.stats()
    assert stats.sent + stats.dropped_total + stats.queued == FAILURES
    waiting = list(stuck_handler._pipeline.intake)
    assert waiting and all(type(item[0]["exc_info"]) is str for item in waiting)
    last_line = f"ValueError: request {FAILURES - 1} failed ({LOCAL_BYTES} bytes)"
    assert waiting[-1][0]["exc_info"].endswith(last_line)


def test_structlog_exception_events_behind_a_stuck_server_stay_within_the_budget() -> None:
    """The structlog processor's `log.exception()` events (exc_info=True) with default settings."""
    server = BlackHoleServer()
    processor = OgLogProcessor(server.url, "locals")
    try:
        held = _held_after_failures(
            lambda i: processor(None, "error", {"event": "failed", "i": i, "exc_info": True})
        )
        assert held <= DEFAULT_MAX_BUFFER_BYTES + MARGIN, held
        stats = processor.stats()
        assert stats.sent + stats.dropped_total + stats.queued == FAILURES
    finally:
        processor.close(0.5)
        server.close()


def test_async_exception_events_behind_a_stuck_server_stay_within_the_budget() -> None:
    """`AsyncOgLogClient.exception()` from the loop (no await: the sending task cannot run meanwhile)."""
    server = BlackHoleServer()

    async def main() -> None:
        client = AsyncOgLogClient(server.url, "locals", drain_on_sigterm=False)
        try:
            held = _held_after_failures(lambda i: client.exception("failed", i=i))
            assert held <= DEFAULT_MAX_BUFFER_BYTES + MARGIN, held
            stats = client.stats()
            assert stats.sent + stats.dropped_total + stats.queued == FAILURES
        finally:
            await client.aclose(timeout=0.5)

    try:
        asyncio.run(main())
    finally:
        server.close()
