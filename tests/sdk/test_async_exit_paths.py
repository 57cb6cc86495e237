"""AsyncOgLogClient on its way out of the process (default settings, real capture server, real subprocess):
the atexit drain delivers batches of any size, and a SIGTERM during a backoff or during the atexit drain
loses nothing that the budget allows to deliver."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from .capture_server import CaptureServer, Reply
from .stderr_checks import reports_loss


def _run(server: CaptureServer, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = "import asyncio, os, signal, sys, threading\nimport oglogstream\nURL = sys.argv[1]\n"
    return subprocess.run([sys.executable, "-c", script + textwrap.dedent(body), server.url, *args],
                          capture_output=True, text=True, timeout=60)


# ------------------------------------------------- atexit: no thread offload once the interpreter exits

_EXIT_APP = """
    client = oglogstream.AsyncOgLogClient(URL, "aio-exit")
    case, count = sys.argv[2], int(sys.argv[3])
    if case == "after_run":
        async def main():
            client.info("in loop", n=-1)
        asyncio.run(main())
    for i in range(count):
        client.info("x" * 200 if case == "big" else "sync code", n=i)
"""


@pytest.mark.parametrize(
    ("case", "count", "expected"),
    [("no_loop", 200, 200), ("after_run", 300, 301), ("big", 2000, 2000)],
)
def test_exit_drain_delivers_batches_over_the_gzip_offload_size(
    server: CaptureServer, case: str, count: int, expected: int
) -> None:
    """Batches over 32 KiB are gzipped on the loop at exit (before: 0 of 200, RuntimeError from to_thread)."""
    result = _run(server, _EXIT_APP, case, str(count))
    assert result.returncode == 0, result.stderr
    assert server.entry_count == expected == len(server.ids), result.stderr
    assert not reports_loss(result.stderr) and "RuntimeError" not in result.stderr, result.stderr


# ------------------------------------------------------------------------ SIGTERM during a backoff

_BACKOFF_APP = """
    client = oglogstream.AsyncOgLogClient(URL, "async-term")
    async def main():
        for i in range(500):
            client.info("event", n=i)
        await asyncio.sleep(1.3)  # the first send got 503 + Retry-After: 3; the task is backing off
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(30)
        print("still alive", flush=True)
    asyncio.run(main())
"""


def test_sigterm_during_a_backoff_on_the_main_loop_resends_the_batch(server: CaptureServer) -> None:
    """The batch the frozen task was retrying goes back to pending and is sent by the drain: 500 of 500
    (before: 0, "lost 500 'shutdown'"), and the process still dies of SIGTERM."""
    server.script(Reply(503, headers={"Retry-After": "3"}))
    result = _run(server, _BACKOFF_APP)
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert "still alive" not in result.stdout
    assert server.entry_count == 500 == len(server.ids), result.stderr
    assert not reports_loss(result.stderr), result.stderr


# ------------------------------------------------------------------- SIGTERM during the atexit drain

_DRAINING_APP = """
    client = oglogstream.AsyncOgLogClient(URL, "async-exit")
    for i in range(100):
        client.info("after", n=i)
    print("exiting", flush=True)
"""


def test_sigterm_during_the_atexit_drain_waits_for_it_then_dies_of_sigterm(server: CaptureServer) -> None:
    """As for handlers: the drain finishes within its budget (100 of 100 after a 503 + Retry-After: 2), then
    the process dies of the signal (before: killed at once, 0 stored, no loss line)."""
    server.script(Reply(503, headers={"Retry-After": "2"}))
    script = "import sys\nimport oglogstream\nURL = sys.argv[1]\n" + textwrap.dedent(_DRAINING_APP)
    proc = subprocess.Popen([sys.executable, "-c", script, server.url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        server.wait_for(lambda s: len(s.requests) >= 1, timeout=10.0)  # the drain is backing off now
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == -signal.SIGTERM, err
    assert server.entry_count == 100 == len(server.ids), err
