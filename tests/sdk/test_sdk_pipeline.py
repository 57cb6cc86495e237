"""The worker's sending thread (`_sender`): a request on its way overlaps encoding the next batch, and every
promise of the single-thread worker still holds (ids, order, exactly once, stats, close deadline).

A real local HTTP server holds each answer until the test releases it: while it holds one, the records logged
meanwhile must become encoded (counted in `stats().buffered_bytes`) - with the request on the worker thread
they stayed in the intake until the answer came. No timing is asserted: every wait is for a condition, with a
deadline that only bounds a failure.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from oglogstream import OgLogHandler, _lifecycle, _wire
from oglogstream._buffer import Batch
from oglogstream._sender import Sender
from oglogstream._settings import Settings
from oglogstream._transport import HttpTransport, Outcome, SendResult

from .conftest import attach

#: Bounds every wait of these tests (a failure, not a measurement).
WAIT = 20.0
BATCH = 100


class HoldingServer:
    """`POST /logs` answered 200 only once `release()` allowed it (one release per request, in order);
    records each request's batch id and entries."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, list[dict[str, Any]]]] = []
        self.arrived = threading.Semaphore(0)
        self._permits = threading.Semaphore(0)
        self._closing = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                lines = gzip.decompress(body).splitlines()
                batch_id = self.headers.get(_wire.BATCH_ID_HEADER, "")
                owner.arrived.release()
                if not owner._permits.acquire(timeout=WAIT) or owner._closing.is_set():
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                owner.requests.append((batch_id, [json.loads(line) for line in lines]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self._permits.release()

    def wait_arrival(self) -> bool:
        return self.arrived.acquire(timeout=WAIT)

    def close(self) -> None:
        self._closing.set()
        self.release(1000)
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def server() -> Iterator[HoldingServer]:
    srv = HoldingServer()
    yield srv
    srv.close()


def wait_until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT
    done = threading.Event()
    while not condition():
        if time.monotonic() >= deadline:
            return False
        done.wait(0.005)
    return True


def log_many(logger: logging.Logger, start: int, count: int) -> None:
    for i in range(start, start + count):
        logger.info("record %d", i)


def test_next_batch_is_encoded_while_the_request_is_on_its_way(
    make_handler: Callable[..., OgLogHandler], logger: logging.Logger, server: HoldingServer
) -> None:
    """While the server holds batch 1's answer, the records logged meanwhile are encoded (the request runs on
    the sending thread, not the worker); then both batches arrive once, in order, with distinct ids."""
    handler = make_handler(server.url, batch_size=BATCH, read_timeout=2 * WAIT)
    attach(logger, handler)
    log_many(logger, 0, BATCH)
    assert server.wait_arrival()  # batch 1 is held by the server
    held = handler.stats()
    assert (held.queued, held.sent) == (BATCH, 0)
    in_flight_bytes = held.buffered_bytes
    assert in_flight_bytes > 0
    # One more than a batch: the record after a batch's worth wakes the worker (as it does between sends).
    log_many(logger, BATCH, BATCH + 1)
    # Encoded while batch 1 waits for its answer: buffered bytes grow beyond the batch in flight.
    assert wait_until(lambda: handler.stats().buffered_bytes > in_flight_bytes)
    stats = handler.stats()
    assert (stats.queued, stats.sent, len(server.requests)) == (2 * BATCH + 1, 0, 0)
    server.release(3)
    assert handler.flush(WAIT)
    stats = handler.stats()
    assert (stats.sent, stats.queued, stats.dropped) == (2 * BATCH + 1, 0, {})
    ids = [batch_id for batch_id, _ in server.requests]
    assert len(ids) == 3 and len(set(ids)) == 3
    messages = [entry["message"] for _, entries in server.requests for entry in entries]
    assert messages == [f"record {i}" for i in range(2 * BATCH + 1)]


def test_callers_stay_on_the_fast_path_while_the_encoded_next_batch_waits_for_an_answer(
    make_handler: Callable[..., OgLogHandler], logger: logging.Logger, server: HoldingServer
) -> None:
    """With batch 2 encoded and batch 1's answer held, the worker has nothing to do: callers are not asked to
    wake it (their slow path starts at the intake's hard limit), so a burst is not turned into one wake-up
    per record; after the answer a batch's worth wakes it again."""
    handler = make_handler(server.url, batch_size=BATCH, read_timeout=2 * WAIT)
    attach(logger, handler)
    pipeline = handler._pipeline
    log_many(logger, 0, BATCH)
    assert server.wait_arrival()
    in_flight_bytes = handler.stats().buffered_bytes
    log_many(logger, BATCH, BATCH + 1)
    assert wait_until(lambda: handler.stats().buffered_bytes > in_flight_bytes)
    assert wait_until(lambda: pipeline.soft_limit == pipeline.intake_limit)
    log_many(logger, 2 * BATCH + 1, 3 * BATCH)
    assert pipeline.soft_limit == pipeline.intake_limit
    server.release(10)
    assert handler.flush(WAIT)
    assert pipeline.soft_limit == BATCH
    stats = handler.stats()
    assert (stats.sent, stats.queued, stats.dropped) == (5 * BATCH + 1, 0, {})


def test_stats_count_each_record_once_while_a_request_is_held(
    make_handler: Callable[..., OgLogHandler], logger: logging.Logger, server: HoldingServer
) -> None:
    """accepted = sent + dropped + queued at every look while requests are held and released one by one."""
    handler = make_handler(server.url, batch_size=BATCH, read_timeout=2 * WAIT)
    attach(logger, handler)
    total = 5 * BATCH
    log_many(logger, 0, total)
    for _ in range(5):
        assert server.wait_arrival()
        stats = handler.stats()
        assert stats.sent + sum(stats.dropped.values()) + stats.queued == total
        server.release()
    assert handler.flush(WAIT)
    stats = handler.stats()
    assert (stats.sent, stats.queued, stats.dropped) == (total, 0, {})
    assert len({batch_id for batch_id, _ in server.requests}) == 5


def test_close_deadline_bounds_a_held_request_and_counts_it_unconfirmed(
    make_handler: Callable[..., OgLogHandler], logger: logging.Logger, server: HoldingServer
) -> None:
    """A request the server never answers: close(timeout) returns False and the written batch counts as
    `unconfirmed` (it may have been stored), the encoded-ahead records as `shutdown` - each record once."""
    handler = make_handler(server.url, batch_size=BATCH, read_timeout=2 * WAIT)
    attach(logger, handler)
    log_many(logger, 0, BATCH)
    assert server.wait_arrival()
    in_flight_bytes = handler.stats().buffered_bytes
    log_many(logger, BATCH, BATCH + 1)
    assert wait_until(lambda: handler.stats().buffered_bytes > in_flight_bytes)
    assert handler.close(timeout=0.5) is False
    stats = handler.stats()
    assert stats.dropped == {"unconfirmed": BATCH, "shutdown": BATCH + 1}
    assert (stats.sent, stats.queued) == (0, 0)


def test_the_sending_thread_is_a_worker_thread_and_ends_with_the_worker(
    make_handler: Callable[..., OgLogHandler], logger: logging.Logger, server: HoldingServer
) -> None:
    """Records created on the sending thread are never shipped (it is in WORKER_THREADS), and close()
    ends it."""
    handler = make_handler(server.url, batch_size=BATCH, read_timeout=2 * WAIT)
    attach(logger, handler)
    logger.info("one")
    assert server.wait_arrival()
    # This handler's sender only: other tests' handlers on this xdist worker may still be closing.
    worker = handler._pipeline._thread
    assert worker is not None
    senders = [t for t in threading.enumerate() if t.name == f"{worker.name}-sender"]
    assert len(senders) == 1 and senders[0].ident in _lifecycle.WORKER_THREADS
    server.release()
    assert handler.flush(WAIT)
    handler.close()
    senders[0].join(WAIT)
    assert not senders[0].is_alive()
    assert senders[0].ident not in _lifecycle.WORKER_THREADS


def test_flush_sends_the_first_batches_while_the_rest_is_encoded(
    make_handler: Callable[..., OgLogHandler], logger: logging.Logger, server: HoldingServer
) -> None:
    """flush() after a backlog: the first batch goes out before the whole backlog is encoded (at most the
    batch in flight and the next one are encoded while the server holds an answer), and flush() returns
    True once every record logged before it is delivered, each batch once, in order."""
    handler = make_handler(server.url, batch_size=BATCH, read_timeout=2 * WAIT)
    attach(logger, handler)
    log_many(logger, 0, BATCH)
    assert server.wait_arrival()  # batch 1 held: the backlog below waits in the intake
    one_batch = handler.stats().buffered_bytes
    backlog = 5 * BATCH
    log_many(logger, BATCH, backlog)
    flushed: list[bool] = []
    flusher = threading.Thread(target=lambda: flushed.append(handler.flush(WAIT)))
    flusher.start()
    server.release()
    assert server.wait_arrival()  # batch 2 held
    assert wait_until(lambda: handler.stats().buffered_bytes > one_batch * 1.5)  # batch 3 encoded meanwhile
    held = handler.stats()
    # Encoding everything first would hold the whole remaining backlog (5 batches) by now.
    assert held.buffered_bytes < one_batch * 2.5
    assert (held.sent, held.queued) == (BATCH, backlog)
    server.release(5)
    flusher.join(WAIT)
    assert flushed == [True]
    stats = handler.stats()
    assert (stats.sent, stats.queued, stats.dropped) == (BATCH + backlog, 0, {})
    assert len({batch_id for batch_id, _ in server.requests}) == 6
    messages = [entry["message"] for _, entries in server.requests for entry in entries]
    assert messages == [f"record {i}" for i in range(BATCH + backlog)]


def batch(batch_id: str) -> Batch:
    return Batch(batch_id, 1, [json.dumps({"message": batch_id}).encode() + b"\n"])


def nothing_to_do() -> float | None:
    return None


class Wake:
    """The worker's side of the contract: `notify` (given to the Sender) ends an `idle` wait."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.notified = 0

    def notify(self) -> None:
        self.notified += 1
        self._event.set()

    def idle(self, seconds: float) -> None:
        self._event.wait(seconds)
        self._event.clear()


def test_sender_stops_waiting_at_its_deadline_and_the_next_request_waits_for_that_answer(
    server: HoldingServer,
) -> None:
    """Past the worker's deadline an attempt is a retryable failure with no answer (it may still be stored);
    the next request is written only after that answer came back, so requests never overlap."""
    transport = HttpTransport(Settings.build(url=server.url, service="sdk-test", read_timeout=2 * WAIT))
    wake = Wake()
    sender = Sender("test-sender", wake.notify)
    try:
        first = sender.send(
            transport, batch("first"), None, deadline=time.monotonic() + 0.2, meanwhile=nothing_to_do,
            idle=wake.idle,
        )
        assert (first.outcome, first.status) == (Outcome.RETRY, None)
        assert server.wait_arrival()
        server.release(2)
        second = sender.send(
            transport, batch("second"), None, deadline=time.monotonic() + WAIT, meanwhile=nothing_to_do,
            idle=wake.idle,
        )
        assert second.outcome is Outcome.OK
        assert [batch_id for batch_id, _ in server.requests] == ["first", "second"]
        assert wait_until(lambda: wake.notified == 2)  # after each answer, the late one included
    finally:
        sender.close()
        transport.close()


class RaisingTransport:
    """A transport that breaks its contract (raises instead of returning a SendResult): a fault injected at
    the client boundary."""

    def send(self, batch: Batch, *, timeout: float | None = None, going_out=None) -> SendResult:
        raise OSError("broken transport")

    def close(self) -> None:
        pass


def test_a_transport_that_raises_gives_a_retry_and_the_sender_keeps_working() -> None:
    """An exception from the transport becomes a retryable result; the sending thread survives it."""
    wake = Wake()
    sender = Sender("test-sender", wake.notify)
    try:
        for _ in range(2):
            result = sender.send(
                RaisingTransport(), batch("x"), None, deadline=time.monotonic() + WAIT,
                meanwhile=nothing_to_do, idle=wake.idle,
            )
            assert result.outcome is Outcome.RETRY and "broken transport" in (result.error or "")
    finally:
        sender.close()
