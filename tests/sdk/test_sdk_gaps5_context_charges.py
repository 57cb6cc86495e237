"""A bound context counts against `max_buffer_bytes` while ANY record under it waits (attacker review, SDK
findings 1 and 2): not only while its first record does, and a context bound on top of a big one (nested
`bound()`) is charged only for what it adds."""

from __future__ import annotations

import contextvars
import gc
import logging
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest
from oglogstream import OgLogHandler, bind, bound, get_context
from oglogstream._settings import DEFAULT_MAX_BUFFER_BYTES

from .capture_server import BlackHoleServer
from .test_sdk_gaps_context_memory import CONTEXT_SIZE, SLACK, _distinct

#: Requests each binding a distinct 100 KB context and logging twice: ~300 MB if the second records are free.
REQUESTS = 3000
#: How long the stuck worker may take to encode what the first records left in the intake (a deadline only).
ENCODE_DEADLINE = 60.0


@pytest.fixture
def black_hole() -> Iterator[BlackHoleServer]:
    """A server that accepts connections and never answers: the sender is stuck in its first send."""
    server = BlackHoleServer()
    try:
        yield server
    finally:
        server.close()


def _wait_intake_empty(handler: OgLogHandler) -> None:
    """Until the worker took every record out of the intake (encoded or dropped), or the deadline."""
    pause = threading.Event()
    deadline = time.monotonic() + ENCODE_DEADLINE
    while handler._pipeline.intake and time.monotonic() < deadline:
        pause.wait(0.05)
    assert not handler._pipeline.intake


def test_later_records_keep_their_context_charged_after_the_first_one_left(
    black_hole: BlackHoleServer, logger: logging.Logger
) -> None:
    """Each request logs "start", the stuck worker takes those out of the intake, then each logs "end" and
    the app lets go of its context: the "end" records keep the contexts alive, so they are charged for
    them (before: charged 0, 3,000 contexts held ~300 MB against the 64 MiB budget)."""
    # pytest's report capture keeps every record it saw (6,000 here, ~6 MB): not what the SDK holds.
    for capture in [h for h in logger.handlers if type(h).__name__ == "LogCaptureHandler"]:
        logger.removeHandler(capture)
    handler = OgLogHandler(black_hole.url, "ctx-mem")
    logger.addHandler(handler)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        requests = [contextvars.Context() for _ in range(REQUESTS)]
        for i, request in enumerate(requests):
            request.run(lambda i=i: (bind(request_id=i, headers=_distinct(i)), logger.info("start")))
        _wait_intake_empty(handler)
        for request in requests:
            request.run(logger.info, "end")
        del requests
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        stats = handler.stats()
        assert stats.sent + stats.dropped_total + stats.queued == 2 * REQUESTS
        # ~300 MB of contexts against the 128 MiB default: well over half of the 6,000 records overflow.
        assert stats.dropped.get("overflow", 0) > REQUESTS // 2
        assert held <= DEFAULT_MAX_BUFFER_BYTES + SLACK, held - DEFAULT_MAX_BUFFER_BYTES
    finally:
        tracemalloc.stop()
        handler.close(0.5)


def test_nested_bound_over_a_big_context_is_charged_for_the_new_fields_only(
    black_hole: BlackHoleServer, logger: logging.Logger
) -> None:
    """20,000 steps each `bound(step=i)` inside one request's 100 KB context: the big context is charged
    once, so every step waits for the stuck worker (before: each nested bind re-charged 100 KB, 18,433
    overflowed)."""
    handler = OgLogHandler(black_hole.url, "ctx-mem")
    logger.addHandler(handler)
    try:
        with bound(headers=_distinct(0)):
            for i in range(20_000):
                with bound(step=i), bound(sub=i):  # twice nested: still one level over the big context
                    logger.info("step")
        stats = handler.stats()
        assert stats.dropped == {}
        assert stats.queued == 20_000
    finally:
        handler.close(0.5)


def test_nested_bound_records_carry_every_bound_field() -> None:
    """Binding over a big context keeps what is bound: the big field, the outer and the inner ones, and an
    inner value replaces an outer one of the same key."""
    big = "h" * CONTEXT_SIZE
    with bound(headers=big, user="a"):
        with bound(step=1, user="b"):
            with bound(sub=2):
                assert dict(get_context()) == {"headers": big, "user": "b", "step": 1, "sub": 2}
            assert dict(get_context()) == {"headers": big, "user": "b", "step": 1}
        assert dict(get_context()) == {"headers": big, "user": "a"}
