"""stats() never counts more records than were logged across close()/reopen cycles: the rest of the chunk a
worker was encoding when close() gave up on it (counted then) is not counted again (issue: +99..+2,846 in
9 of 20 runs, +256 being one ingest chunk)."""

from __future__ import annotations

import logging
import random
import threading

from oglogstream import OgLogHandler

from .capture_server import CaptureServer

THREADS = 4
CYCLES = 8


def run_cycles(server: CaptureServer, logger: logging.Logger) -> tuple[int, int]:
    """4 threads log 64-1023-character messages while the handler is closed (0.3 s deadline) every 0.4 s
    and reopened by the next record; returns (sent + dropped + queued, calls) after the last close."""
    handler = OgLogHandler(server.url, "reopen")
    # pytest's log capture handlers would keep every record: only ours.
    for other in [other for other in logger.handlers if type(other).__module__.startswith("_pytest")]:
        logger.removeHandler(other)
    logger.addHandler(handler)
    calls = [0] * THREADS
    stop = threading.Event()

    def work(n: int) -> None:
        rng = random.Random(n)
        while not stop.is_set():
            logger.info(f"{calls[n]} " + "m" * rng.randint(64, 1023))
            calls[n] += 1

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(CYCLES):
            stop.wait(0.4)
            handler.close(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    stats = handler.stats()
    handler.close(5)
    logger.removeHandler(handler)
    return stats.sent + stats.dropped_total + stats.queued, sum(calls)


def test_close_and_reopen_cycles_count_every_record_once(logger: logging.Logger) -> None:
    """Healthy server, default settings, three runs of 8 close/reopen cycles under 4 logging threads: the
    accounted records equal the calls exactly in each (the over-count showed in about half the runs)."""
    server = CaptureServer(keep_entries=False, count_only=True).start()
    try:
        for _ in range(3):
            accounted, calls = run_cycles(server, logger)
            assert accounted == calls, accounted - calls
    finally:
        server.stop()
