"""Failure handling: outages, retries, Retry-After, client errors, 413 splits, partial accepts, overflow."""

from __future__ import annotations

import time

import pytest
from oglogstream import OgLogHandler
from oglogstream._delivery import RetryPolicy
from oglogstream._settings import DEFAULT_BACKOFF_INITIAL, MAX_RETRY_AFTER, Settings
from oglogstream._transport import Outcome, SendResult

from .capture_server import CaptureServer, Reply


def test_server_down_then_up_delivers_everything(server: CaptureServer, make_handler, logger) -> None:
    """Records logged while the server is away are all delivered once it returns."""
    handler = make_handler(server.url, batch_size=200)
    logger.addHandler(handler)
    for i in range(300):
        logger.info("before %d", i)
    assert handler.flush(5)
    server.stop()
    for i in range(1000):
        logger.info("during %d", i)
    time.sleep(0.3)  # several failed attempts while down
    assert handler.stats().retried >= 1
    server.restart()
    assert handler.flush(10)
    assert server.entry_count == 1300
    assert len(server.ids) == 1300
    stats = handler.stats()
    assert stats.sent == 1300 and stats.dropped_total == 0 and stats.queued == 0


def test_5xx_is_retried_with_the_same_batch_id(server: CaptureServer, make_handler, logger) -> None:
    """A 503 and a 500 are retried; every attempt of the batch carries the same batch id and entry ids."""
    server.script(503, 500)
    handler = make_handler(server.url)
    logger.addHandler(handler)
    for i in range(10):
        logger.info("r%d", i)
    assert handler.flush(5)
    assert [r.status for r in server.requests] == [503, 500, 202]
    assert len({r.batch_id for r in server.requests}) == 1
    assert server.entry_count == 10 and handler.stats().retried == 2


def test_408_and_429_are_retried(server: CaptureServer, make_handler, logger) -> None:
    """408 and 429 without Retry-After are retried like 5xx."""
    server.script(408, 429)
    handler = make_handler(server.url)
    logger.addHandler(handler)
    logger.info("once")
    assert handler.flush(5)
    assert [r.status for r in server.requests] == [408, 429, 202]
    assert server.entry_count == 1


def test_retry_after_is_honoured(server: CaptureServer, make_handler, logger) -> None:
    """After 429 with Retry-After: 1 the next attempt waits at least a second (backoff alone is 50 ms)."""
    server.script(Reply(429, {"Retry-After": "1"}))
    handler = make_handler(server.url)
    logger.addHandler(handler)
    logger.info("patience")
    assert handler.flush(5)
    first, second = server.requests
    assert (first.status, second.status) == (429, 202)
    assert second.at - first.at >= 0.95


def test_retry_after_http_date_is_understood() -> None:
    """Retry-After as an HTTP date gives the seconds until then; garbage gives None."""
    from email.utils import formatdate

    from oglogstream._transport import parse_retry_after

    now = time.time()
    assert 9 <= parse_retry_after(formatdate(now + 10, usegmt=True), now=now) <= 10  # type: ignore[operator]
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_400_drops_the_batch_counts_and_reports_once(
    server: CaptureServer, make_handler, logger, capsys
) -> None:
    """A 400 drops the batch (not retried), counts it as client_error and says so once on stderr."""
    server.script(400, 400)
    handler = make_handler(server.url, batch_size=5)
    logger.addHandler(handler)
    for i in range(15):
        logger.info("m%d", i)
    assert handler.flush(5)
    stats = handler.stats()
    assert stats.dropped == {"client_error": 10}
    assert stats.sent == 5 and server.entry_count == 5
    assert "400" in (stats.last_error or "")
    assert [r.status for r in server.requests] == [400, 400, 202]
    assert capsys.readouterr().err.count("dropped 5 records") == 1


def test_413_splits_until_batches_fit(server: CaptureServer, make_handler, logger) -> None:
    """A 413 splits the batch in halves (recursively) and everything still arrives, in order."""
    server.max_entries_per_request = 30
    handler = make_handler(server.url, batch_size=200)
    logger.addHandler(handler)
    for i in range(200):
        logger.info("%d", i)
    assert handler.flush(10)
    assert server.entry_count == 200
    assert [int(e["message"]) for e in server.entries] == list(range(200))
    assert handler.stats().dropped_total == 0
    assert any(r.status == 413 for r in server.requests)


def test_413_for_a_single_entry_drops_it(server: CaptureServer, make_handler, logger) -> None:
    """An entry that is still 413 on its own is dropped and counted as too_large."""
    server.script(413, 413, 413)
    handler = make_handler(server.url)
    logger.addHandler(handler)
    logger.info("a")
    logger.info("b")
    assert handler.flush(5)
    # [a,b] -> 413, [a] -> 413 (dropped), [b] -> 413 (dropped)
    assert handler.stats().dropped == {"too_large": 2}
    assert server.entry_count == 0


def test_partial_accept_counts_rejected_entries(server: CaptureServer, make_handler, logger) -> None:
    """Entries a 202 answer lists as rejected are counted as dropped("rejected"); the rest are sent."""
    server.reject = lambda entry: "bad" in entry["message"]
    handler = make_handler(server.url)
    logger.addHandler(handler)
    for i in range(10):
        logger.info("bad %d" if i % 3 == 0 else "good %d", i)
    assert handler.flush(5)
    stats = handler.stats()
    assert stats.dropped == {"rejected": 4}
    assert stats.sent == 6 == server.entry_count


def test_overflow_drop_oldest_is_counted_and_bounded(server: CaptureServer, make_handler, logger) -> None:
    """With the server away, the buffer keeps the newest records, counts the rest, and stays bounded."""
    server.stop()
    handler = make_handler(server.url, max_buffer_records=500, batch_size=100)
    logger.addHandler(handler)
    for i in range(20_000):
        logger.info("n%d", i)
        if i % 5000 == 0:
            peak = handler.stats()
            assert peak.queued <= 2 * 500 + 100
    time.sleep(0.2)
    stats = handler.stats()
    assert stats.queued <= 2 * 500
    assert stats.buffered_bytes < 500 * 400
    server.restart()
    assert handler.flush(10)
    stats = handler.stats()
    assert stats.sent + stats.dropped["overflow"] == 20_000
    assert stats.sent == server.entry_count <= 2 * 500
    # drop_oldest: the very last record survived
    assert "n19999" in {e["message"] for e in server.entries}


def test_overflow_drop_newest_keeps_the_oldest(server: CaptureServer, make_handler, logger) -> None:
    """drop_newest keeps what was buffered first and counts every rejected newcomer."""
    server.stop()
    handler = make_handler(server.url, max_buffer_records=300, batch_size=100, overflow="drop_newest")
    logger.addHandler(handler)
    for i in range(5000):
        logger.info("n%d", i)
    time.sleep(0.2)
    server.restart()
    assert handler.flush(10)
    stats = handler.stats()
    assert stats.sent + stats.dropped["overflow"] == 5000
    assert stats.sent == server.entry_count <= 600
    assert "n0" in {e["message"] for e in server.entries}


def test_byte_bound_applies(server: CaptureServer, make_handler, logger) -> None:
    """max_buffer_bytes bounds the encoded bytes held while the server is away."""
    server.stop()
    limit = 2 * 1024 * 1024
    handler = make_handler(server.url, max_buffer_bytes=limit, batch_size=50)
    logger.addHandler(handler)
    for _ in range(1000):
        logger.info("y" * 9000)
    time.sleep(0.3)
    stats = handler.stats()
    assert stats.buffered_bytes <= limit
    assert stats.dropped["overflow"] > 0
    server.restart()
    assert handler.flush(10)
    stats = handler.stats()
    assert stats.sent + stats.dropped["overflow"] == 1000


# A Retry-After that asks for no wait at all: 0, nan and negative parse to 0, a past date to <= 0.
_NO_WAIT_RETRY_AFTERS = ("0", "nan", "-5", "0.001", "Wed, 21 Oct 2015 07:28:00 GMT")


@pytest.mark.parametrize("value", _NO_WAIT_RETRY_AFTERS)
def test_retry_after_never_shortens_the_backoff(server: CaptureServer, logger, value: str) -> None:
    """With default settings, a Retry-After asking for no wait still waits at least backoff_initial (a
    server repeating it made a tight loop of 1,300 requests in 3 s)."""
    server.script(Reply(503, {"Retry-After": value}))
    handler = OgLogHandler(server.url, "retry-after", drain_on_sigterm=False)
    try:
        logger.addHandler(handler)
        logger.info("patience")
        assert handler.flush(10)
    finally:
        handler.close(timeout=5)
    first, second = server.requests
    assert (first.status, second.status) == (503, 202)
    assert second.at - first.at >= DEFAULT_BACKOFF_INITIAL * 0.95


@pytest.mark.parametrize("retry_after", [0.0, 0.001, 1.0, 1e9])
def test_retry_policy_floors_a_server_delay_at_the_backoff(retry_after: float) -> None:
    """Both drivers' wait after a Retry-After is within [backoff_initial, MAX_RETRY_AFTER] at every attempt
    and never below what the server asked for (up to the cap)."""
    settings = Settings.build("http://127.0.0.1:1", "svc")
    policy = RetryPolicy(settings)
    result = SendResult(Outcome.RETRY, status=503, retry_after=retry_after)
    for attempt in range(1, 30):
        delay = policy.delay(attempt, result)
        assert DEFAULT_BACKOFF_INITIAL <= delay <= MAX_RETRY_AFTER
        assert delay >= min(retry_after, MAX_RETRY_AFTER)
