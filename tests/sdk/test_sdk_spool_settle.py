"""A spooled batch whose answer races close(): once close() abandoned the worker (counting what it held), the
late answer must not count the same records again, nor may the worker spool records close() counted as
lost. stats() stays exact - records accepted = sent + dropped (all reasons) + queued, never more at any
moment, and exactly that at the end (plus what the close left in the spool) - whether the answer is a
202 or a 413 whose halves are in flight when close() gives up."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from oglogstream import OgLogHandler

from .capture_server import CaptureServer, Reply

#: Records each of THREADS threads logs per round, before and while close() runs.
PER_THREAD = 40
THREADS = 3
#: close()'s timeout and the server's answer delays around it: answers land just before, at and after the
#: moment close() abandons the worker.
CLOSE_TIMEOUT = 0.3
DELAYS = (0.2, 0.28, 0.3, 0.32, 0.4)
ROUNDS = 3


def _total(handler: OgLogHandler) -> int:
    stats = handler.stats()
    return stats.sent + stats.dropped_total + stats.queued


def _round(
    server: CaptureServer, spool: Path, make_handler: Any, logger: logging.Logger, first: Reply
) -> None:
    """Log from several threads, close(CLOSE_TIMEOUT) while the first spooled batch waits for `first` (and,
    after a 413, its halves for slow answers), and watch the invariant throughout."""
    handler: OgLogHandler = make_handler(server.url, spool_dir=str(spool), batch_size=50)
    logger.handlers[:] = [handler]
    server.script(first, Reply(202, delay=first.delay), Reply(202, delay=first.delay))
    accepted = [0] * THREADS
    over: list[tuple[int, int]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            total, calls = _total(handler), sum(accepted)
            if total > calls:
                over.append((total, calls))
            done.wait(0.001)

    def work(n: int) -> None:
        for i in range(PER_THREAD):
            if handler.handle(logger.makeRecord(logger.name, logging.INFO, "f", 1, "r %d %d", (n, i), None)):
                accepted[n] += 1
            threading.Event().wait(0.002)

    watcher = threading.Thread(target=watch)
    workers = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    watcher.start()
    for thread in workers:
        thread.start()
    threading.Event().wait(0.06)  # the first batch is spooled and on its way
    worker = handler._pipeline._thread
    handler.close(CLOSE_TIMEOUT)
    for thread in workers:
        thread.join(10)
    if worker is not None:
        worker.join(10)  # the abandoned worker has had its late answer
    handler.close(5)  # the records logged after the first close() (a new worker) are settled too
    done.set()
    watcher.join(10)
    assert not over, over[:5]
    stats = handler.stats()
    # What a close left in the spool for the next process counts as `spooled`, no longer as queued, whether
    # the worker closed cleanly or close() gave up on it (docs/sdk.md "Exit and restart").
    left = stats.spooled
    assert stats.sent + stats.dropped_total + stats.queued + left == sum(accepted), (stats, sum(accepted))


@pytest.mark.parametrize("status", [202, 413])
def test_a_late_answer_to_a_spooled_batch_is_counted_once(
    server: CaptureServer, tmp_path: Path, make_handler: Any, logger: logging.Logger, status: int
) -> None:
    """Answers (202, or 413 then slow halves) arriving around close()'s deadline, over many rounds: the
    invariant is never exceeded and holds exactly once the abandoned worker is done."""
    for round_ in range(ROUNDS):
        for delay in DELAYS:
            _round(server, tmp_path / f"{round_}-{delay}", make_handler, logger, Reply(status, delay=delay))
