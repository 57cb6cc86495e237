"""Review finding 8: large messages are bounded by max_buffer_bytes on the caller side, not only by count."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from oglogstream import OgLogHandler
from oglogstream._settings import DEFAULT_BATCH_BYTES, DEFAULT_MAX_BUFFER_BYTES

from .capture_server import BlackHoleServer


@pytest.mark.parametrize(
    ("count", "size", "as_argument"),
    [(40_000, 8 * 1024, False), (300, 10 * 1024 * 1024, True)],
    ids=["40k distinct 8 KB messages", "300 x 10 MB arguments"],
)
def test_large_messages_stop_at_the_byte_budget_while_the_worker_is_stuck(
    stuck_handler: OgLogHandler, logger: logging.Logger, count: int, size: int, as_argument: bool
) -> None:
    """What waits for a stuck worker (caller-side intake plus encoded buffer) stays within the byte budget
    (plus the record in flight); the rest is refused as `overflow` and every call stays accounted for."""
    body = "q" * size
    for i in range(count):
        if as_argument:
            logger.info("%d %s", i, body)  # one shared string: the SDK cannot know, so it counts each
        else:
            logger.info(f"{i} {body}")  # distinct text per record, like request payloads
    stats = stuck_handler.stats()
    assert stats.sent + stats.dropped_total + stats.queued == count
    assert stats.dropped.get("overflow", 0) > 0
    # Before: 40k x 8 KB were all kept (~330 MB) and 300 x 10 MB (~3 GB) against a 64 MiB budget. Encoded
    # entries are measured (`buffered_bytes`; messages are clipped to the wire limit); captured records
    # still waiting in the intake hold their whole text.
    captured = len(stuck_handler._pipeline.intake)
    assert captured * size + stats.buffered_bytes <= DEFAULT_MAX_BUFFER_BYTES + size


def test_a_typical_message_is_not_slowed_or_refused(
    stuck_handler: OgLogHandler, logger: logging.Logger
) -> None:
    """Short messages keep the count bound (the fast path): 50,000 of them all wait for the stuck worker."""
    for i in range(50_000):
        logger.info("request %d done in %s ms", i, "12.5")
    stats = stuck_handler.stats()
    assert stats.dropped == {}
    assert stats.queued == 50_000


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: list(range(10_000, 20_000)), id="list of ints"),
        pytest.param(lambda: [f"value-{i}" for i in range(10_000)], id="list of str"),
        pytest.param(lambda: {f"key-{i}": f"value-{i}" for i in range(10_000)}, id="dict of str"),
        pytest.param(lambda: {i: i for i in range(10_000, 20_000)}, id="dict of ints"),
        pytest.param(lambda: {f"v{i}" for i in range(10_000)}, id="set of str"),
        pytest.param(lambda: tuple(float(i) for i in range(10_000)), id="tuple of floats"),
        pytest.param(lambda: bytes(1_000_000), id="bytes"),
    ],
)
def test_a_big_container_in_extra_is_charged_at_least_what_it_keeps_alive(make: Callable[[], object]) -> None:
    """An `extra=` list/dict/set/tuple/bytes is charged at least the memory tracemalloc measures for it (the
    captured record keeps it alive; before: 96 B whatever its size), so the intake's byte room holds."""
    import tracemalloc

    from oglogstream._capture import capture
    from oglogstream._intake_charge import large_bytes

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        value = make()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    record = logging.getLogger("charge").makeRecord(
        "charge", logging.INFO, "f", 1, "m", None, None, extra={"payload": value}
    )
    charged = large_bytes(capture(record, None))
    assert kept > 100_000
    assert charged >= kept, (charged, kept)
    assert charged <= 2.5 * kept, (charged, kept)  # and not absurdly more


EVENT_COUNT, EVENT_SIZE = 3000, 100_000  # ~300 MB: past the 128 MiB default with a batch in flight


def _distinct(i: int) -> str:
    return f"{i:08d}" * (EVENT_SIZE // 8)  # a distinct string per event: nothing shared to discount


def test_structlog_events_stop_at_the_byte_budget_while_the_worker_is_stuck() -> None:
    """Events with a distinct 100 KB attribute are charged by their size as records are (before: bounded
    only by count, 4,000 of them held +383 MiB), the rest refused as `overflow` and every call accounted."""
    from oglogstream import OgLogProcessor

    server = BlackHoleServer()
    processor = OgLogProcessor(server.url, "mem")
    try:
        for i in range(EVENT_COUNT):
            processor(None, "info", {"event": "big", "blob": _distinct(i)})
        stats = processor.stats()
        captured = len(processor._pipeline.intake)
        assert stats.sent + stats.dropped_total + stats.queued == EVENT_COUNT
        assert stats.dropped.get("overflow", 0) > 0
        # The intake's room follows each encoded chunk (docs/sdk.md "Overflow"); one batch kept as margin.
        bound = DEFAULT_MAX_BUFFER_BYTES + DEFAULT_BATCH_BYTES + EVENT_SIZE
        assert captured * EVENT_SIZE + stats.buffered_bytes <= bound
    finally:
        processor.close(0.5)
        server.close()


def test_asyncio_events_stop_at_the_byte_budget_while_the_sender_is_stuck() -> None:
    """The asyncio client charges large events by size too: its intake stays within max_buffer_bytes."""
    import asyncio

    from oglogstream import AsyncOgLogClient

    server = BlackHoleServer()

    async def main() -> None:
        client = AsyncOgLogClient(server.url, "mem", drain_on_sigterm=False)
        try:
            for i in range(EVENT_COUNT):  # no await: the sending task cannot run meanwhile
                client.info("big", blob=_distinct(i))
            stats = client.stats()
            assert stats.sent + stats.dropped_total + stats.queued == EVENT_COUNT
            assert stats.dropped.get("overflow", 0) > 0
            assert len(client._intake) * EVENT_SIZE <= DEFAULT_MAX_BUFFER_BYTES + EVENT_SIZE
        finally:
            await client.aclose(timeout=0.5)

    try:
        asyncio.run(main())
    finally:
        server.close()


def test_typical_structlog_events_keep_the_count_bound() -> None:
    """Events of a few short keys stay on the fast path: 50,000 of them all wait for a stuck worker."""
    from oglogstream import OgLogProcessor

    server = BlackHoleServer()
    processor = OgLogProcessor(server.url, "mem")
    try:
        for i in range(50_000):
            event = {"event": "request done", "level": "info", "timestamp": "2026-11-29T18:00:00Z",
                     "logger": "app.web", "path": "/api/items", "status": 200, "ms": 12.5, "n": i}
            processor(None, "info", event)
        stats = processor.stats()
        assert stats.dropped == {}
        assert stats.queued == 50_000
    finally:
        processor.close(0.5)
        server.close()


def test_event_charge_counts_every_value_like_extra_fields() -> None:
    """`event_bytes` charges an event dict as `extras_bytes` charges the same fields of a record."""
    from oglogstream._value_charge import EXTRA_ATTR_BYTES, event_bytes, extras_bytes

    fields = {"blob": "x" * 5000, "items": list(range(100)), "raw": b"y" * 300}
    make = logging.getLogger("charge").makeRecord
    record = make("charge", logging.INFO, "f", 1, "m", None, None, extra=fields)
    assert event_bytes({"event": "m", **fields}) == extras_bytes(record.__dict__) + EXTRA_ATTR_BYTES + 1
