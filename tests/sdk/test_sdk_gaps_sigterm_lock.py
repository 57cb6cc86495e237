"""SIGTERM landing while the main thread holds an SDK lock (issue #10): the drain still delivers everything
buffered and the process dies of the signal, instead of the drain waiting for a lock the frozen frame holds
until its budget runs out (and losing the records)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from .capture_server import CaptureServer

EVENTS = 300

# The lock is taken (from the SDK's own list, `sigterm_locks`) only to make the moment deterministic: in an
# application the signal lands inside `handle`/`stats()`/`flush()`/the task's bookkeeping, which hold these
# locks briefly.
_APP = """
    import asyncio, logging, os, signal, sys, threading
    from oglogstream import AsyncOgLogClient, OgLogHandler

    url, case, events = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def term_inside(lock):
        with lock:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, with `lock` held by this frame
            threading.Event().wait(30)
        print("still alive", flush=True)

    if case.startswith("handler"):
        handler = OgLogHandler(url, "gaps-lock")
        log = logging.getLogger("app")
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        for i in range(events):
            log.info("event %d", i)
        if case == "handler_logging_lock":  # inside dictConfig()/getLogger(), with logging's caches cold
            logging.getLogger("httpx").setLevel(logging.WARNING)
            term_inside(logging._lock)
        term_inside(handler._pipeline.sigterm_locks()[0])  # the pipeline's lock
    else:
        client = AsyncOgLogClient(url, "gaps-lock")

        async def main():
            for i in range(events):
                client.info("event", n=i)
            await asyncio.sleep(0.05)  # the sending task runs and waits for its flush interval
            lock, start_lock = client.sigterm_locks()
            term_inside(start_lock if case == "async_start_lock" else lock)

        asyncio.run(main())
"""


@pytest.mark.parametrize("case", ["handler", "handler_logging_lock", "async", "async_start_lock"])
def test_sigterm_inside_an_sdk_lock_still_drains_everything(server: CaptureServer, case: str) -> None:
    """300 records buffered, SIGTERM while the main thread holds the pipeline's/client's lock (or logging's
    module lock, which the worker takes on a level-cache miss): all 300 arrive exactly once (before: none,
    after waiting out the 5 s budget) and the process dies of SIGTERM."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_APP), server.url, case, str(EVENTS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert "still alive" not in result.stdout
    assert server.entry_count == EVENTS == len(server.ids), result.stderr
