"""How an `AsyncOgLogClient` takes part in the process-wide drains of `_lifecycle` (SIGTERM, multiprocessing
finalizer, atexit) next to the handlers' pipelines, and its own atexit drain (`drain_at_exit`, registered by
`_async` so that it runs before the handlers' one).

`ExitEntry` is what `_lifecycle.PIPELINES` holds for a client (weakly, as for a pipeline; the client keeps
its entry alive and the entry only refers to the client weakly). The SIGTERM drain runs on a helper thread
while the main thread waits inside the signal handler, so a client whose sending task runs on the main
thread's loop cannot be reached through that loop (it is frozen until the process dies): its task is taken
over as if its loop had died, and what it holds is delivered by a new task on a loop of the helper thread.
A task on a loop of another thread is closed there (`aclose`); with no task, the helper's loop sends.

The batch the frozen task was sending (or backing off on) is not lost: the new task sends what of it was not
settled first, each part under the id it had (a 413 half keeps `<id>a`/`<id>b`), so the server's dedup drops
a part stored before its answer was lost (`AsyncSender._carry_over`). What can still be lost on SIGTERM:
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
from ._lifecycle import PIPELINES, Exit
from ._lifecycle import _die_of_sigterm as die_of_sigterm
from ._settings import Settings

if TYPE_CHECKING:
    from ._async import AsyncOgLogClient

__all__ = ["CLIENTS", "AtExit", "ExitEntry", "drain_at_exit", "drain_client"]

#: Every live client (weakly), for the exit drain.
CLIENTS: weakref.WeakSet[AsyncOgLogClient] = weakref.WeakSet()
#: Never set: `PAUSE.wait(seconds)` is the exit drain's short pause.
PAUSE = threading.Event()


class AtExit:
    """Set when `drain_at_exit` (the interpreter's atexit drain of every client) has begun: the
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

    def sigterm_locks(self) -> tuple[threading.RLock, ...]:
        client = self._client()
        return () if client is None else client.sigterm_locks()

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


def drain_at_exit() -> None:
    """At interpreter exit, deliver what clients still hold with no sending task that can run (events
    logged after asyncio.run() ended, from threads while no loop ran, or with no loop ever), each on a
    fresh loop of its own, within one shared budget (the largest `shutdown_timeout`). What cannot be
    delivered is counted ('shutdown', or 'unconfirmed' if sent and unanswered) and announced. A SIGTERM
    meanwhile is deferred until the drain is over (`Exit.draining`), then kills the process."""
    AtExit.began = True
    clients = [c for c in list(CLIENTS) if c._pid == os.getpid() and (c._intake or c._pending or c._task)]
    if not clients:
        return
    # A SIGTERM now waits for this drain, then kills the process (as during the handlers' drain).
    Exit.draining = True
    try:
        _drain_clients(clients)
    finally:
        Exit.draining = False
        if Exit.terminate and not any(not isinstance(p, ExitEntry) for p in list(PIPELINES)):
            die_of_sigterm()  # else the handlers' drain, which runs next, dies after draining them


def _drain_clients(clients: list[AsyncOgLogClient]) -> None:
    deadline = time.monotonic() + max(c.settings.shutdown_timeout for c in clients)
    for client in clients:
        while client._start_scheduled and time.monotonic() < deadline:  # a task being started: let it be
            PAUSE.wait(0.005)
        left = max(0.0, deadline - time.monotonic())
        loop = client._loop
        try:
            if client._task is not None and loop is not None and loop.is_running():
                # Its task runs on a loop in another (daemon) thread: close it there.
                future = asyncio.run_coroutine_threadsafe(client.aclose(left), loop)
                future.result(left + 1.0)
            elif client._intake or client._pending or client._inflight.records:
                asyncio.run(client._exit_close(left))
        except Exception as exc:  # never let the exit path raise; what is left is counted
            _diag.report("worker", f"asyncio client exit drain failed: {exc!r}")
