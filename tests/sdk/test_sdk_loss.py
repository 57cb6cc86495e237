"""Loss is never silent and counted once: stats() invariant, first-loss announcements, summaries."""

from __future__ import annotations

import socket
import time

from .capture_server import BlackHoleServer, CaptureServer


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _balanced(stats, accepted: int) -> bool:
    return accepted == stats.sent + stats.dropped_total + stats.queued


def test_unreachable_server_close_counts_each_record_once(make_handler, logger) -> None:
    """Server unreachable, 50 records, close(timeout=1) gives up: 50 lost as shutdown, none still queued."""
    handler = make_handler(_closed_port_url())
    logger.addHandler(handler)
    for i in range(50):
        logger.info("r %d", i)
    assert handler.close(timeout=1) is False
    stats = handler.stats()
    assert (stats.queued, stats.sent, stats.dropped) == (0, 0, {"shutdown": 50})


def test_stuck_worker_abandoned_at_close_counts_each_record_once(make_handler, logger) -> None:
    """A server that never answers: close() abandons the worker; its records are lost once, not queued too
    (as `unconfirmed`: they were sent and nothing says the server did not store them)."""
    hole = BlackHoleServer()
    try:
        handler = make_handler(hole.url, read_timeout=30.0)
        logger.addHandler(handler)
        for i in range(100):
            logger.info("r %d", i)
        time.sleep(0.3)  # the batch is in flight now
        assert handler.close(timeout=0.5) is False
        stats = handler.stats()
        assert (stats.queued, stats.sent, stats.dropped) == (0, 0, {"unconfirmed": 100})
        assert stats.buffered_bytes == 0
    finally:
        hole.close()


def test_invariant_holds_through_an_outage_and_recovery(server: CaptureServer, make_handler, logger) -> None:
    """accepted = sent + dropped + queued, sampled while the server answers 503 and after it recovers."""
    handler = make_handler(server.url, max_buffer_records=300, batch_size=50)
    logger.addHandler(handler)
    server.fail_status = 503
    accepted = 0
    for round_ in range(10):
        for i in range(100):
            logger.info("r %d %d", round_, i)
            accepted += 1
        time.sleep(0.02)
        assert _balanced(handler.stats(), accepted), handler.stats()
    server.fail_status = None
    assert handler.flush(timeout=10)
    stats = handler.stats()
    assert _balanced(stats, accepted) and stats.queued == 0
    assert stats.sent == server.entry_count and stats.dropped["overflow"] == accepted - stats.sent


def test_first_loss_of_each_reason_is_announced_once_with_its_remedy(
    server: CaptureServer, make_handler, logger, capsys
) -> None:
    """One stderr line names the reason and the setting that avoids it; later losses only in a summary."""
    handler = make_handler(server.url, service="loud", max_buffer_records=100, batch_size=50)
    logger.addHandler(handler)
    server.fail_status = 503
    for i in range(1000):
        logger.info("r %d", i)
    assert handler.close(timeout=0.5) is False
    err = capsys.readouterr().err
    first = [line for line in err.splitlines() if "reason 'overflow'" in line]
    assert len(first) == 1, err
    assert "[loud]" in first[0] and "max_buffer_bytes" in first[0] and "spool_dir" in first[0]
    shutdown = [line for line in err.splitlines() if "reason 'shutdown'" in line]
    assert len(shutdown) == 1 and "shutdown_timeout" in shutdown[0]
    # The overflow losses after the first are not lost from view: close() prints the summary with totals.
    dropped = handler.stats().dropped
    assert dropped["overflow"] > 1
    summary = [line for line in err.splitlines() if "lost more records" in line]
    assert len(summary) == 1 and f"overflow: {dropped['overflow'] - 1}" in summary[0]


def test_invariant_holds_at_every_moment_while_the_worker_moves_records(
    server: CaptureServer, make_handler, logger
) -> None:
    """A thread samples stats() while 30,000 records are logged (with overflow drops): every snapshot has
    logged_before <= sent + dropped + queued <= logged_after (+1 for the call in progress)."""
    import threading

    handler = make_handler(server.url, batch_size=200, max_buffer_records=3000)
    logger.addHandler(handler)
    logged = 0
    done = threading.Event()
    bad: list[tuple[int, int, int]] = []
    samples = 0

    def sample() -> None:
        nonlocal samples
        while not done.is_set():
            before = logged
            stats = handler.stats()
            after = logged
            total = stats.sent + stats.dropped_total + stats.queued
            samples += 1
            if not before <= total <= after + 1:
                bad.append((before, total, after))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for i in range(30_000):
            logger.info("r %d", i)
            logged += 1
        assert handler.flush(timeout=20)
    finally:
        done.set()
        sampler.join(10)
    assert samples > 100 and bad == []
    stats = handler.stats()
    assert stats.queued == 0 and stats.sent + stats.dropped_total == 30_000
    assert stats.sent == server.entry_count


def test_every_loss_reason_names_its_remedy() -> None:
    """Each reason in DROP_REASONS has the setting (or explanation) printed with its first loss."""
    from oglogstream import DROP_REASONS, LOSS_REMEDIES

    assert set(LOSS_REMEDIES) == set(DROP_REASONS) and all(LOSS_REMEDIES.values())
