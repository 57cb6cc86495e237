"""Review findings 4 and 5 for AsyncOgLogClient (default settings): events logged where no sending task runs
are delivered (by a task on the client's loop, its own loop, or the exit drain), and a task left behind on a
closed loop never touches the client's state again."""

from __future__ import annotations

import asyncio
import collections
import gc
import subprocess
import sys
import textwrap
import warnings

from oglogstream import AsyncOgLogClient

from .capture_server import CaptureServer
from .stderr_checks import reports_loss


def _run(server: CaptureServer, body: str) -> subprocess.CompletedProcess[str]:
    script = "import asyncio, sys, threading\nimport oglogstream\nURL = sys.argv[1]\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script, server.url], capture_output=True, text=True,
                          timeout=60)


def _messages(server: CaptureServer) -> collections.Counter[str]:
    return collections.Counter(str(e["message"]) for e in server.entries)


# ----------------------------------------------------------------- finding 4: no sending task running


def test_event_logged_after_asyncio_run_is_delivered_at_exit(server: CaptureServer) -> None:
    """`asyncio.run(main()); log.info("stopped cleanly")`, then the process exits: 2 of 2 arrive."""
    result = _run(server, """
        log = oglogstream.AsyncOgLogClient(URL, "aio")
        async def main():
            log.info("service started")
            await asyncio.sleep(0.1)
        asyncio.run(main())
        log.info("service stopped cleanly")
    """)
    assert result.returncode == 0, result.stderr
    assert _messages(server) == {"service started": 1, "service stopped cleanly": 1}, result.stderr
    assert not reports_loss(result.stderr)


def test_events_only_from_executor_threads_are_delivered_while_the_loop_runs(server: CaptureServer) -> None:
    """A client made outside the loop, events only from run_in_executor: all 100 arrive before the loop ends
    (the client runs its task on a loop of its own), and none twice."""
    result = _run(server, """
        c = oglogstream.AsyncOgLogClient(URL, "aio")
        async def main():
            def produce():
                for i in range(100):
                    c.info("from thread", i=i)
            await asyncio.get_running_loop().run_in_executor(None, produce)
            print(await asyncio.get_running_loop().run_in_executor(None, lambda: _wait(100)))
        def _wait(n):
            import time
            deadline = time.monotonic() + 10
            while c.stats().sent < n and time.monotonic() < deadline:
                threading.Event().wait(0.05)
            return c.stats().sent
        asyncio.run(main())
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "100", result.stderr
    assert server.entry_count == 100 and len(_messages(server)) == 1


def test_client_used_with_no_loop_at_all_delivers_everything(server: CaptureServer) -> None:
    """Plain synchronous code (no event loop ever): 100 of 100 arrive, at the latest by the exit drain."""
    result = _run(server, """
        c = oglogstream.AsyncOgLogClient(URL, "aio")
        for i in range(100):
            c.info("sync code", i=i)
    """)
    assert result.returncode == 0, result.stderr
    assert server.entry_count == 100, result.stderr
    assert not reports_loss(result.stderr)


def test_flush_and_aclose_from_a_new_loop_reach_a_task_on_another_loop(server: CaptureServer) -> None:
    """Events from sync code (the task runs on the client's own loop), then asyncio.run(flush()) and
    asyncio.run(aclose()): both answer True, every event arrives once, the counts stay exact."""
    client = AsyncOgLogClient(server.url, "aio")
    for i in range(100):
        client.info("x", i=i)
    assert asyncio.run(client.flush(5))
    for i in range(100):
        client.info("y", i=i)
    assert asyncio.run(client.aclose(5))
    stats = client.stats()
    assert (stats.queued, stats.sent, stats.dropped, stats.buffered_bytes) == (0, 200, {}, 0)
    assert _messages(server) == {"x": 100, "y": 100}


# ----------------------------------------------------------------- finding 5: a task left on a closed loop


def test_task_left_on_a_closed_loop_never_touches_the_new_state(server: CaptureServer) -> None:
    """Loop 1 is closed with the task pending; loop 2 delivers all 150 events; collecting the old task later
    changes nothing: no false 'shutdown' loss, no negative counts, flush keeps answering True."""
    client = AsyncOgLogClient(server.url, "aio")
    loop = asyncio.new_event_loop()

    async def one() -> None:
        for i in range(50):
            client.info("a", i=i)
        await asyncio.sleep(0)

    loop.run_until_complete(one())
    loop.close()  # without cancelling or finishing the sending task

    async def two() -> list[bool]:
        flushed = []
        for batch in ("b", "c"):
            for i in range(50):
                client.info(batch, i=i)
            flushed.append(await client.flush(5))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "Task was destroyed but it is pending" from asyncio
                gc.collect()  # the old task's coroutine is closed now, at the worst moment
        return flushed

    assert asyncio.run(two()) == [True, True]
    stats = client.stats()
    assert (stats.queued, stats.sent, stats.dropped, stats.buffered_bytes) == (0, 150, {}, 0)
    assert _messages(server) == {"a": 50, "b": 50, "c": 50}
