"""The intake's charge follows what a record takes (issue #10): records of FLAT_CHARS to LARGE_MESSAGE
characters, which the flat INTAKE_ITEM_BYTES charge let take up to 2.5x the byte budget behind a stuck
worker, are charged their size too (`_intake_charge.weight_units`), on the caller's fast path."""

from __future__ import annotations

import logging
import tracemalloc

import pytest
from oglogstream import OgLogHandler, OgLogProcessor
from oglogstream._ingest import INGEST_CHUNK
from oglogstream._intake_charge import (
    FLAT_CHARS,
    FREE_EXTRAS,
    INTAKE_ITEM_BYTES,
    LARGE_MESSAGE,
    RECORD_BYTES,
    WEIGHT_BYTES,
    WEIGHT_SHIFT,
    weight_units,
)
from oglogstream._settings import DEFAULT_MAX_BUFFER_BYTES
from oglogstream._value_charge import EXTRA_ATTR_BYTES

from .capture_server import CaptureServer


def _calls(chars: int) -> int:
    """At most 3x as many records of `chars` characters as the default budget holds at RECORD_BYTES + their
    characters each: more than it holds even when the worker encoded most of them (an encoded line is
    ~250 B + its characters) - the tests stop once the bound dropped OVERFLOWED records."""
    return 3 * DEFAULT_MAX_BUFFER_BYTES // (RECORD_BYTES + chars)


#: Records the bound must have dropped before a test stops logging (looked at every LOOK_EVERY calls).
OVERFLOWED = 1000
LOOK_EVERY = 1000

#: What an encoded line takes beyond its length: a bytes object's header (33 B) and its slot, rounded up.
ENCODED_LINE_OVERHEAD = 48



# Fills the default 128 MiB budget under tracemalloc: ~30 s alone, 116 s in CI with 3 workers on 2 busy cores.
@pytest.mark.timeout(300)
@pytest.mark.parametrize("chars", [200, 300, 1000])
def test_what_waits_for_a_stuck_worker_stays_within_the_budget(
    stuck_handler: OgLogHandler, logger: logging.Logger, chars: int
) -> None:
    """Distinct messages of `chars` characters, default settings, a stuck worker: the memory the waiting
    records take (tracemalloc) stays within max_buffer_bytes, the rest is refused as `overflow`, every call
    is accounted for. Before: 1.23x / 1.38x / 2.44x the budget at 200 / 300 / 1,000 characters."""
    pad = "x" * (chars - 8)
    calls = _calls(chars)
    # pytest's log capture handlers would keep every record alive: only ours during the measure.
    others = [handler for handler in logger.handlers if handler is not stuck_handler]
    for handler in others:
        logger.removeHandler(handler)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(calls):
            logger.info(f"{i:08d}{pad}")  # a distinct str per record, as request payloads are
            if i % LOOK_EVERY == 0 and stuck_handler.stats().dropped.get("overflow", 0) >= OVERFLOWED:
                calls = i + 1
                break
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        for handler in others:
            logger.addHandler(handler)
    stats = stuck_handler.stats()
    assert stats.sent + stats.dropped_total + stats.queued == calls
    assert stats.dropped.get("overflow", 0) > 0  # the bound, not the number of calls, stopped it
    # The encoded store counts its lines by their length: their bytes objects' headers and slots are not.
    pipeline = stuck_handler._pipeline
    encoded_overhead = (len(pipeline._pending) + pipeline._inflight.records) * ENCODED_LINE_OVERHEAD
    ratio = held / DEFAULT_MAX_BUFFER_BYTES
    assert held <= DEFAULT_MAX_BUFFER_BYTES + encoded_overhead, f"{ratio:.3f}x the budget"


def test_a_typical_record_keeps_the_flat_charge(
    stuck_handler: OgLogHandler, logger: logging.Logger
) -> None:
    """A short message with two `extra=` fields (the benchmark's record) takes no weights: its fast path
    is as before, and 50,000 of them all wait for the stuck worker."""
    for i in range(50_000):
        logger.info("request served %d", i, extra={"user_id": i, "path": "/api/items"})
    stats = stuck_handler.stats()
    assert stats.dropped == {}
    assert stats.queued == 50_000
    assert len(stuck_handler._pipeline.intake_weights) == 0


def test_the_weights_cover_the_record_they_charge() -> None:
    """From FLAT_CHARS (after up to FREE_EXTRAS fields; none free when a record has more) to LARGE_MESSAGE
    the flat charge plus the weights cover RECORD_BYTES + the basis, the units' own deque slots included;
    outside that range there are none."""
    assert weight_units(FLAT_CHARS - 1, 0) == 0
    assert weight_units(LARGE_MESSAGE, 0) == 0
    assert weight_units(FLAT_CHARS + FREE_EXTRAS * EXTRA_ATTR_BYTES - 1, FREE_EXTRAS) == 0
    assert weight_units(FLAT_CHARS - 1 + (FREE_EXTRAS + 1) * EXTRA_ATTR_BYTES, FREE_EXTRAS + 1) > 0
    for size in range(FLAT_CHARS, LARGE_MESSAGE):
        units = weight_units(size, 0)
        assert INTAKE_ITEM_BYTES + units * (WEIGHT_BYTES - 8) >= RECORD_BYTES + size, size


def test_the_worker_takes_the_weights_back(server: CaptureServer, logger: logging.Logger) -> None:
    """Once a healthy server has every record, the weights are all taken back: none left over that would
    shrink the intake's room for the next burst."""
    handler = OgLogHandler(server.url, "weight")
    logger.addHandler(handler)
    try:
        for i in range(5_000):
            logger.info(f"{i:08d}" + "y" * (200 + i % 700))
        assert handler.flush(30)
        assert handler.stats().sent == 5_000
        assert len(handler._pipeline.intake_weights) == 0
    finally:
        handler.close(5)


def test_events_of_a_shared_pipeline_respect_the_records_weights(
    stuck_handler: OgLogHandler, logger: logging.Logger
) -> None:
    """A structlog processor sharing the handler's pipeline sees the room its records' weights took: once
    1,000-character records filled it, 5,000 more events do not push the intake's charge past its bound
    (before, their count check ignored the weights and let them all in)."""
    pad = "z" * 992
    for i in range(_calls(1000)):
        logger.info(f"{i:08d}{pad}")
        if stuck_handler.stats().dropped.get("overflow", 0):
            break
    records = i + 1
    pipeline = stuck_handler._pipeline
    assert len(pipeline.intake) < pipeline.intake_limit // 2  # the weights, not the count, filled it
    processor = OgLogProcessor(handler=stuck_handler)
    for n in range(5_000):
        processor(None, "info", {"event": "after the records", "n": n})
    charged = len(pipeline.intake) + (len(pipeline.intake_weights) >> WEIGHT_SHIFT)
    # Tolerance: the chunk the worker may be encoding (its records left the count before their lines came).
    assert charged <= pipeline.intake_limit + INGEST_CHUNK, charged - pipeline.intake_limit
    stats = stuck_handler.stats()
    assert stats.sent + stats.dropped_total + stats.queued == records + 5_000
