"""SIGTERM to a process that logs through `AsyncOgLogClient`: its last events are delivered before it dies of
the signal (issue #10 leftover), whether the sending task's loop is the main thread's or a thread's."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from .capture_server import CaptureServer

_APP = """
    import asyncio, os, signal, sys, threading
    from oglogstream import AsyncOgLogClient

    url, case = sys.argv[1], sys.argv[2]
    client = AsyncOgLogClient(url, "async-term", drain_on_sigterm=case != "opted_out")

    async def main():
        for i in range(500):
            client.info("event", n=i)
        await asyncio.sleep(0.05)  # the task has started and is waiting for its flush interval
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(30)  # SIGTERM ends the process before this
        print("still alive", flush=True)

    if case == "thread":  # no loop of the application: the client's own loop thread sends
        for i in range(500):
            client.info("event", n=i)
        threading.Event().wait(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        threading.Event().wait(30)
        print("still alive", flush=True)
    else:
        asyncio.run(main())
"""


def _run(server: CaptureServer, case: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_APP), server.url, case],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("case", ["main_loop", "thread"])
def test_sigterm_delivers_the_async_clients_events_and_still_dies_of_sigterm(
    server: CaptureServer, case: str
) -> None:
    """500 events, then SIGTERM: all 500 arrive exactly once (before: 0) and the process dies of SIGTERM."""
    result = _run(server, case)
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert "still alive" not in result.stdout
    assert server.entry_count == 500 == len(server.ids), result.stderr


def test_drain_on_sigterm_false_leaves_sigterm_alone(server: CaptureServer) -> None:
    """Opted out: the default disposition kills the process at once; nothing was sent yet."""
    result = _run(server, "opted_out")
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert server.entry_count == 0
