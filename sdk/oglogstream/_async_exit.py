"""How an `AsyncOgLogClient` takes part in the process-wide drains of `_lifecycle` (SIGTERM, multiprocessing
finalizer, atexit) next to the handlers' pipelines.

`ExitEntry` is what `_lifecycle.PIPELINES` holds for a client (weakly, as for a pipeline; the client keeps
its entry alive and the entry only refers to the client weakly). The SIGTERM drain runs on a helper thread
while the main thread waits inside the signal handler, so a client whose sending task runs on the main
thread's loop cannot be reached through that loop (it is frozen until the process dies): its task is taken
over as if its loop had died, and what it holds is delivered by a new task on a loop of the helper thread.
A task on a loop of another thread is closed there (`aclose`); with no task, the helper's loop sends.

The batch the frozen task was sending (or backing off on) is not lost: the new task sends it first, with the
same batch id when none of it was settled (`AsyncSender._carry_over`). What can still be lost on SIGTERM:
everything the drain's budget (the largest `shutdown_timeout`) does not allow to deliver, counted and
announced.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

from . import _diag
from ._settings import Settings

if TYPE_CHECKING:
    from ._async import AsyncOgLogClient

__all__ = ["AtExit", "ExitEntry", "drain_client"]


class AtExit:
    """Set when `_async._drain_at_exit` (the interpreter's atexit drain of every client) has begun: the
    pipelines' atexit drain, which runs after it, then leaves the clients alone (one exit budget, not two)."""

    began = False


class ExitEntry:
    """The `_lifecycle._Drainable` of one client."""

    def __init__(self, client: AsyncOgLogClient) -> None:
        self.settings: Settings = client.settings
        self._client = weakref.ref(client)

    def begin_close(self, deadline: float) -> None:
        """Nothing to start ahead: each client is drained in `finish_close`."""

    def finish_close(self, deadline: float) -> bool:
        client = self._client()
        if client is None or AtExit.began:
            return True
        return drain_client(client, deadline)

    def after_fork_in_child(self) -> None:
        client = self._client()
        if client is not None:
            client._after_fork()


def _frozen(client: AsyncOgLogClient, loop: asyncio.AbstractEventLoop) -> bool:
    """The task's loop runs on the main thread, which is waiting in the SIGTERM handler for this drain."""
    main = threading.main_thread().ident
    return client._loop_thread == main and loop.is_running() and threading.get_ident() != main


def drain_client(client: AsyncOgLogClient, deadline: float) -> bool:
    """Deliver what `client` holds until `deadline` (time.monotonic); False if some of it was lost."""
    if client._pid != os.getpid():
        return True
    left = max(0.0, deadline - time.monotonic())
    loop = client._loop
    try:
        if client._task is not None and loop is not None and loop.is_running():
            if not _frozen(client, loop):
                future = asyncio.run_coroutine_threadsafe(client.aclose(left), loop)
                return bool(future.result(left + 1.0))
            with client._start_lock:
                client._take_over_from_dead_loop()
        if client._intake or client._pending or client._inflight.records:
            return asyncio.run(client._exit_close(left))
    except Exception as exc:  # never let a drain raise; what is left is counted
        _diag.report("worker", f"asyncio client drain failed: {exc!r}")
        return False
    return True
