"""Delivery that recovers says so: one stderr line after an announced failure, and stats() tells a current
failure (`failing_since`) from a past one (`last_error`, `last_error_at`), for both drivers."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from oglogstream import AsyncOgLogClient, OgLogHandler, Stats, _diag

from .capture_server import CaptureServer, Reply

RECOVERED = re.compile(
    r"^oglogstream: \[[^\]]*\] delivery recovered after (\d+\.\d) s; (\d+) records were waiting, (.*)$"
)


@pytest.fixture(autouse=True)
def _fresh_diag_topics() -> None:
    """An earlier test's "delivery failing" line would rate-limit (suppress) this test's."""
    _diag._last.pop("retry", None)
    _diag._suppressed.pop("retry", None)


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        pause.wait(0.05)


def lines_of(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def failing_now(stats: Stats) -> bool:
    return stats.retried >= 1 and stats.failing_since is not None


def test_handler_says_delivery_recovered_and_stats_mark_the_error_past(
    server: CaptureServer, logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """The new user's case with default settings: 1,500 records during an outage (connection refused), then
    the server returns: one "recovered" line naming the wait and the 1,500 records, none lost; stats() keeps
    last_error (and when) but failing_since is None again."""
    handler = OgLogHandler(server.url, "recovery")
    logger.addHandler(handler)
    try:
        server.stop()
        for i in range(1500):
            logger.info("during %d", i)
        wait_until(lambda: failing_now(handler.stats()))
        during = handler.stats()
        assert during.last_error is not None and during.last_error.startswith("cannot reach")
        assert during.last_error_at is not None and during.failing_since is not None
        assert abs(during.failing_since - time.time()) < 60
        assert lines_of(capsys.readouterr().err, "delivery recovered") == []
        server.restart()
        assert handler.flush(40)
        after = handler.stats()
    finally:
        handler.close(5)
    assert after.sent == 1500 and after.dropped == {} and after.queued == 0
    assert after.failing_since is None
    assert after.last_error == during.last_error and after.last_error_at == during.last_error_at
    recovered = lines_of(capsys.readouterr().err, "delivery recovered")
    assert len(recovered) == 1, recovered
    match = RECOVERED.match(recovered[0])
    assert match is not None, recovered[0]
    assert float(match.group(1)) > 0 and int(match.group(2)) == 1500 and match.group(3) == "none lost"


def test_spooled_records_count_as_waiting_in_the_recovery_line(
    server: CaptureServer, logger: logging.Logger, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """With spool_dir, batches wait on disk and are sent from there (`_worker_spool`): the same line, the
    records on disk counted as waiting."""
    handler = OgLogHandler(server.url, "recovery-spool", spool_dir=str(tmp_path))
    logger.addHandler(handler)
    try:
        server.stop()
        for i in range(1500):
            logger.info("during %d", i)
        wait_until(lambda: failing_now(handler.stats()) and handler.stats().spooled > 0)
        server.restart()
        assert handler.flush(40)
        stats = handler.stats()
    finally:
        handler.close(5)
    assert stats.sent == 1500 and stats.dropped == {} and stats.failing_since is None
    recovered = lines_of(capsys.readouterr().err, "delivery recovered")
    assert len(recovered) == 1, recovered
    match = RECOVERED.match(recovered[0])
    assert match is not None and int(match.group(2)) == 1500 and match.group(3) == "none lost", recovered[0]


def test_losses_during_the_outage_are_named_in_the_recovery_line(
    server: CaptureServer, logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """Records dropped for room while the server was away: the recovery line counts them by reason (the
    same count as stats().dropped), instead of "none lost"."""
    handler = OgLogHandler(server.url, "recovery-loss", max_buffer_records=1000, backoff_max=0.5)
    logger.addHandler(handler)
    try:
        server.stop()
        logger.info("first")
        wait_until(lambda: failing_now(handler.stats()))
        for i in range(3000):
            logger.info("during %d", i)
        wait_until(lambda: handler.stats().dropped.get("overflow", 0) > 0)
        server.restart()
        assert handler.flush(40)
        stats = handler.stats()
    finally:
        handler.close(5)
    overflow = stats.dropped["overflow"]
    assert stats.sent + overflow == 3001 and stats.failing_since is None
    recovered = lines_of(capsys.readouterr().err, "delivery recovered")
    assert len(recovered) == 1, recovered
    match = RECOVERED.match(recovered[0])
    assert match is not None, recovered[0]
    assert match.group(3) == f"lost meanwhile: {overflow} overflow (stats().dropped has the totals)"


def test_a_recovery_is_announced_only_after_its_failure_line(
    server: CaptureServer, logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two outages within 30 s: the second's "delivery failing" line is rate-limited away, and so is its
    recovery, so the lines alternate and the last one printed says delivery works."""
    handler = OgLogHandler(server.url, "recovery-twice", flush_interval=0.05, backoff_max=0.5)
    logger.addHandler(handler)
    try:
        for outage in range(2):
            server.stop()
            logger.info("during outage %d", outage)
            wait_until(lambda: failing_now(handler.stats()))
            server.restart()
            assert handler.flush(40)
            assert handler.stats().failing_since is None
    finally:
        handler.close(5)
    err = capsys.readouterr().err
    notices = [line for line in err.splitlines() if re.search("delivery (failing|recovered)", line)]
    assert len(notices) == 2 and "delivery failing" in notices[0] and "delivery recovered" in notices[1]


def test_a_refused_batch_marks_delivery_failing_until_one_is_accepted(
    server: CaptureServer, logger: logging.Logger
) -> None:
    """A whole batch refused (401) is a failure that is current (failing_since set) until the next batch is
    accepted; last_error_at says when the refusal happened."""
    handler = OgLogHandler(server.url, "recovery-401", flush_interval=0.05)
    logger.addHandler(handler)
    try:
        server.script(Reply(401))
        logger.info("refused")
        assert handler.flush(10)
        refused = handler.stats()
        logger.info("accepted")
        assert handler.flush(10)
        accepted = handler.stats()
    finally:
        handler.close(5)
    assert refused.dropped == {"client_error": 1} and refused.failing_since is not None
    assert refused.last_error is not None and refused.last_error.startswith("HTTP 401")
    assert refused.last_error_at is not None and refused.last_error_at >= refused.failing_since
    assert accepted.sent == 1 and accepted.failing_since is None and accepted.last_error == refused.last_error


async def test_async_client_says_delivery_recovered(
    server: CaptureServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """AsyncOgLogClient (default settings) shares the ledger: the same line and the same stats fields."""
    client = AsyncOgLogClient(server.url, "recovery-async")
    try:
        server.stop()
        for i in range(1500):
            client.info(f"during {i}")
        deadline = time.monotonic() + 30
        while not failing_now(client.stats()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        server.restart()
        assert await client.flush(40)
        stats = client.stats()
    finally:
        await client.aclose(5)
    assert stats.sent == 1500 and stats.dropped == {} and stats.failing_since is None
    assert stats.last_error is not None and stats.last_error_at is not None
    recovered = lines_of(capsys.readouterr().err, "delivery recovered")
    assert len(recovered) == 1, recovered
    match = RECOVERED.match(recovered[0])
    assert match is not None and int(match.group(2)) == 1500 and match.group(3) == "none lost", recovered[0]


def test_refusals_in_the_recovering_answer_are_named(
    server: CaptureServer, logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """The answer that ends the outage refuses one entry (a partial accept): the recovery line counts that
    refusal (before: the line was printed before the answer's refusals were counted, "none lost")."""
    handler = OgLogHandler(server.url, "recovery-partial")
    logger.addHandler(handler)
    try:
        server.stop()
        for i in range(10):
            logger.info("during %d", i)
        wait_until(lambda: failing_now(handler.stats()))
        server.reject = lambda entry: entry.get("message") == "during 3"
        server.restart()
        assert handler.flush(40)
        stats = handler.stats()
    finally:
        handler.close(5)
    assert stats.sent == 9 and stats.dropped == {"rejected": 1}
    recovered = lines_of(capsys.readouterr().err, "delivery recovered")
    assert len(recovered) == 1, recovered
    match = RECOVERED.match(recovered[0])
    assert match is not None, recovered[0]
    assert match.group(3) == "lost meanwhile: 1 rejected (stats().dropped has the totals)"


def test_losses_before_the_first_failed_answer_are_named(
    server: CaptureServer, logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first request of an outage hangs 3 s before its 503, while the caller overflows the buffer: those
    losses happened since the last accepted batch, so the recovery line names them (before: counted from
    the failed answer on, the line said "none lost")."""
    handler = OgLogHandler(server.url, "recovery-early-loss", max_buffer_records=1000)
    logger.addHandler(handler)
    try:
        server.script(Reply(503, delay=3.0))
        for i in range(3000):
            logger.info("during %d", i)
        overflow_before_answer = handler.stats().dropped.get("overflow", 0)
        assert handler.flush(40)
        stats = handler.stats()
    finally:
        handler.close(5)
    overflow = stats.dropped["overflow"]
    assert overflow_before_answer > 0 and stats.sent + overflow == 3000
    recovered = lines_of(capsys.readouterr().err, "delivery recovered")
    assert len(recovered) == 1, recovered
    match = RECOVERED.match(recovered[0])
    assert match is not None, recovered[0]
    assert match.group(3) == f"lost meanwhile: {overflow} overflow (stats().dropped has the totals)"


def test_with_two_handlers_the_lines_name_their_service(
    server: CaptureServer, logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two handlers in one process: the failure line and its recovery line say whose delivery it is."""
    alpha = OgLogHandler(server.url, "alpha")
    beta = OgLogHandler(server.url, "beta")
    other = logging.getLogger(f"{logger.name}.beta")
    other.propagate = False
    logger.addHandler(alpha)
    other.addHandler(beta)
    try:
        server.stop()
        logger.info("to alpha")
        wait_until(lambda: failing_now(alpha.stats()))
        other.info("to beta")
        wait_until(lambda: failing_now(beta.stats()))
        server.restart()
        assert alpha.flush(40) and beta.flush(40)
    finally:
        other.removeHandler(beta)
        alpha.close(5)
        beta.close(5)
    err = capsys.readouterr().err
    failing = lines_of(err, "delivery failing")
    recovered = lines_of(err, "delivery recovered")
    # one failure line per 30 s for the process (beta's is rate-limited away, so its recovery is silent)
    assert len(failing) == 1 and failing[0].startswith("oglogstream: [alpha] delivery failing"), failing
    assert len(recovered) == 1, recovered
    assert recovered[0].startswith("oglogstream: [alpha] delivery recovered"), recovered
