"""A structlog or AsyncOgLogClient event carrying an exception keeps its traceback's text, formatted at the
capture, and is charged it (`_value_charge.exc_info_bytes`): waiting events hold at most their charge at
1, 11 and 31 frames, and the charge taken at the capture is what leaves the intake, however the exception
travels afterwards (a re-raise). Before, an event's traceback was not charged: 30 frames held 16.3 KB
against an 800 B charge, and a 503ing server let 60,000 `exception()` calls take 135 MB against a 16 MiB
budget; then it was charged by frame count, but what the frames' locals held was not counted."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc
from collections.abc import Callable

import pytest
from oglogstream import AsyncOgLogClient, OgLogProcessor
from oglogstream._intake_charge import item_chars
from oglogstream._value_charge import exc_info_bytes

from .capture_server import CaptureServer
from .charge_helpers import MEASURE_SLACK, charge_of

#: Events per depth (per-event averages; tracemalloc slows every allocation).
PER_DEPTH = 200
#: Frames below the `except` block's own: 1, 11, 31 frames in all.
DEPTHS = (0, 10, 30)
#: `exception()` events of 31 frames logged against a 16 MiB budget: past it by their text alone.
EVENTS = 12_000


def _deep(depth: int, i: int) -> None:
    local_payload = "p" * 200 + str(i)  # what a frame's locals keep alive with it
    if depth == 0:
        raise ValueError(f"boom {i} {local_payload[:4]}")
    _deep(depth - 1, i)


def _held_by_events(depth: int, log: Callable[[int], object]) -> int:
    """Bytes (tracemalloc) still held after PER_DEPTH events, each logged by `log(i)` while handling
    the ValueError raised `depth` frames below."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(PER_DEPTH):
            try:
                _deep(depth, i)
            except ValueError:
                log(i)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


async def _async_held(depth: int) -> tuple[float, float]:
    """(bytes held, bytes charged) per `exception()` event waiting in an AsyncOgLogClient's intake."""
    client = AsyncOgLogClient("http://127.0.0.1:9", "tb")
    client.info("starts the task")  # it does not run: the loop never yields below
    client._intake.clear()
    client.intake_weights.clear()
    try:
        held = _held_by_events(depth, lambda i: client.exception("failed", i=i))
        items = list(client._intake)
        assert len(items) == PER_DEPTH
        books = client.intake_charged(len(items))
        assert books == charge_of(items)  # the room is checked against exactly the rule's charges
        client._intake.clear()
        client.intake_weights.clear()
        client.intake_large = 0
        return held / PER_DEPTH, books / PER_DEPTH
    finally:
        await client.aclose(0.5)


@pytest.mark.parametrize("depth", DEPTHS)
async def test_a_waiting_async_exception_event_holds_at_most_its_charge(depth: int) -> None:
    """`client.exception()` events hold their traceback's frames; each is charged at least what it holds."""
    held, charged = await _async_held(depth)
    assert held <= charged * MEASURE_SLACK, (depth, round(held), round(charged))


@pytest.mark.parametrize("depth", DEPTHS)
def test_a_waiting_structlog_exception_event_holds_at_most_its_charge(depth: int) -> None:
    """The structlog processor's `log.exception()` events (exc_info=True), captured into an intake no
    worker empties, hold at most their charge."""
    processor = OgLogProcessor("http://127.0.0.1:9", "tb")
    pipeline = processor._pipeline
    pipeline.soft_limit = 10**9
    pipeline.submit_slow = pipeline.intake.append  # type: ignore[method-assign]  # no worker
    try:
        held = _held_by_events(
            depth, lambda i: processor(None, "error", {"event": "failed", "i": i, "exc_info": True})
        )
        items = list(pipeline.intake)
        assert len(items) == PER_DEPTH
        charged = charge_of(items)
        assert held <= charged * MEASURE_SLACK, (depth, round(held / PER_DEPTH), round(charged / PER_DEPTH))
        pipeline.intake.clear()
        pipeline.intake_weights.clear()
    finally:
        processor.close(0.5)


async def test_an_event_carries_the_charge_taken_at_its_capture() -> None:
    """The text and its charge are taken once (`exc_charge`): a re-raise that adds frames later changes
    neither the event's text, its charge nor what leaves the intake, so the books return to 0."""
    with CaptureServer() as server:
        client = AsyncOgLogClient(server.url, "tb")
        try:
            exc = ValueError("late")
            try:
                raise exc
            except ValueError:
                client.error("failed", exc_info=exc)
            item = client._intake[-1]
            charge = item_chars(item)
            text = item.event.exc_info
            assert type(text) is str and text.endswith("ValueError: late")
            assert item.event.exc_charge == exc_info_bytes(text) > len(text)
            with contextlib.suppress(ValueError):  # it travels through more frames after its capture
                _deep_raise(exc, 20)
            assert item_chars(item) == charge and item.event.exc_info is text
            assert await client.flush(timeout=10)
            assert client.intake_large == 0 and not client.intake_weights
        finally:
            await client.aclose(2)


def _deep_raise(exc: BaseException, depth: int) -> None:
    if depth == 0:
        raise exc
    _deep_raise(exc, depth - 1)


async def test_exception_events_behind_a_failing_server_stay_within_the_budget() -> None:
    """Default settings but a 16 MiB budget, a server answering 503, EVENTS `exception()` events of 31
    frames from the loop (~1.6 KB of text each, ~19 MB in all): what the intake's books hold stays within
    the budget (every event charged at least what it holds, tests above) and the rest is refused as
    `overflow`, each call accounted for."""
    budget = 16 * 1024 * 1024
    with CaptureServer() as server:
        server.fail_status = 503
        client = AsyncOgLogClient(server.url, "tb", max_buffer_bytes=budget)
        try:
            for i in range(EVENTS):
                try:
                    _deep(30, i)
                except ValueError:
                    client.exception("failed", i=i)
                if i % 200 == 0:
                    await asyncio.sleep(0)
            books = client.intake_charged(len(client._intake))
            assert books <= budget
            stats = client.stats()
            assert stats.dropped.get("overflow", 0) > 0
            assert stats.sent + stats.dropped_total + stats.queued == EVENTS
        finally:
            await client.aclose(0.3)
