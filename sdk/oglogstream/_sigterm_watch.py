"""A native watchdog thread that makes sure a SIGTERM caught by our Python-level drain handler still ends
the process, whatever the main thread is blocked in.

Why: CPython's C signal handler only sets a flag (and writes the signal number to the wakeup fd); the Python
handler runs when the main thread next checks that flag. A blocking C call that checks it only on EINTR -
`SemLock.acquire` (`multiprocessing` queues and locks) does `sem_trywait` and then, with the GIL released,
`sem_wait` - misses a SIGTERM that lands between the two, or just before the call: the call blocks on, the
handler never runs and the process never dies (with the default disposition the kernel kills it). A Pool
worker idle in `SimpleQueue.get` when `Pool.__exit__` terminates it hangs its parent's `join` forever.

How: when our handler is installed and no wakeup fd is set, we set one (a non-blocking pipe) and a native
thread (a real OS thread also under gevent: it blocks in `os.read`, never on the hub) reads it. On a SIGTERM
byte it waits `REDELIVER_AFTER` for our handler to start; if it has not, it re-sends SIGTERM to the main
thread with `pthread_kill` (the blocked call then gets EINTR and the handler runs), again every
`REDELIVER_AFTER`; after `TAKEOVER_AFTER` (a main thread that retries EINTR without checking signals, as
some C extensions do) it drains every pipeline itself within what is left of the budget and kills the
process with the default SIGTERM disposition. Nothing is done when the application replaced our handler.
A wakeup fd set later (asyncio's `add_signal_handler`) replaces ours: the watchdog then hears nothing and
the process behaves as without it. SIGTERM is never left blocked (exec'd children would inherit the
mask): it is held back only in a forking thread, until both processes' at-fork hooks ran (`ForkMask`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "REDELIVER_AFTER",
    "TAKEOVER_AFTER",
    "ForkMask",
    "Watch",
    "arm",
    "disarm_inherited",
    "handler_started",
]

#: Seconds the watchdog waits for the Python handler to start before it re-sends SIGTERM to the main thread.
REDELIVER_AFTER = 0.1
#: Seconds after the signal at which the watchdog stops waiting for the handler and drains itself.
TAKEOVER_AFTER = 0.35


def _originals() -> tuple[Callable[..., Any], Callable[[], Any], Callable[[], int]]:
    """`_thread`'s start_new_thread, allocate_lock and get_ident as the OS provides them (gevent's
    monkey-patching replaces them with greenlet versions)."""
    import _thread

    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        names = ["start_new_thread", "allocate_lock", "get_ident"]
        start, lock, ident = monkey.get_original("_thread", names)
        return start, lock, ident
    return _thread.start_new_thread, _thread.allocate_lock, _thread.get_ident


class Watch:
    """The armed watchdog of this process (one per process; reset after fork)."""

    pid = -1
    read_fd = -1
    write_fd = -1
    main_ident = 0
    #: Released (a real lock, also under gevent) when our handler starts; the watchdog waits on it.
    started: Any = None
    #: One ticket: whoever pops it (the handler or the watchdog's takeover) drains. `list.pop` is one C call
    #: under the GIL, so a nested signal handler cannot interrupt it halfway (a lock could deadlock there).
    ticket: list[None] = []
    #: Our handler has started since the watchdog was armed.
    ran = False


class ForkMask:
    """SIGTERM is held back in the forking thread from just before `fork()` until the child has its own wakeup
    fd (and in the parent until `fork()` returned). Without it, a SIGTERM landing in a new child before its
    after-fork hooks ran (a Pool worker terminated before it ever ran: the map was done by the other worker)
    was lost twice: CPython clears the child's pending signal flags after fork, so the child never ran the
    handler and never died; and the C handler had written the signal byte to the inherited wakeup fd, the
    parent's pipe, so the parent's watchdog re-delivered SIGTERM to the parent. The mask is restored in both
    processes by the at-fork hooks, before any application code runs: nothing exec'd inherits it."""

    blocked = False

    @classmethod
    def before_fork(cls, ours: bool) -> None:
        """Called in the parent before fork (`ours`: our SIGTERM handler is installed)."""
        if ours and hasattr(signal, "pthread_sigmask"):
            old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            cls.blocked = signal.SIGTERM not in old

    @classmethod
    def release(cls) -> None:
        """Called after fork, in the parent and (once the watchdog is re-armed) in the child: a SIGTERM held
        back meanwhile is delivered now, to this process's own handler and wakeup fd."""
        if cls.blocked:
            cls.blocked = False
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def disarm_inherited() -> None:
    """In a forked child that does not re-arm: stop writing signal bytes to the parent's pipe."""
    if Watch.pid not in (-1, os.getpid()):
        with contextlib.suppress(ValueError, OSError):
            old = signal.set_wakeup_fd(-1)
            if old not in (-1, Watch.write_fd):  # someone else's: keep it
                signal.set_wakeup_fd(old)
        _close(Watch.read_fd, Watch.write_fd)
        Watch.pid, Watch.read_fd, Watch.write_fd = -1, -1, -1


def arm(is_ours: Callable[[], bool], take_over: Callable[[float], None], budget: Callable[[], float]) -> bool:
    """Set our wakeup fd and start the watchdog, on the main thread right after our SIGTERM handler was
    installed (or inherited through fork). `is_ours()`: our handler is still SIGTERM's; `take_over(deadline)`
    drains and kills the process (called on the watchdog thread); `budget()`: seconds of the drain.
    Returns False (nothing armed) when another wakeup fd is set, or off the main thread. Idempotent."""
    if Watch.pid == os.getpid():
        return True
    inherited = Watch.read_fd, Watch.write_fd
    try:
        read_fd, write_fd = os.pipe()
    except OSError:
        return False
    os.set_blocking(write_fd, False)
    try:
        old = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except (ValueError, OSError):  # not the main thread
        _close(read_fd, write_fd)
        return False
    if old not in (-1, inherited[1]):  # someone else's (asyncio's): leave it
        signal.set_wakeup_fd(old)
        _close(read_fd, write_fd)
        return False
    if Watch.pid != -1:  # a forked child: the parent's pipe is the parent's watchdog's
        _close(*inherited)
    start, allocate_lock, get_ident = _originals()
    Watch.pid, Watch.read_fd, Watch.write_fd = os.getpid(), read_fd, write_fd
    Watch.main_ident = get_ident()
    Watch.started, Watch.ticket, Watch.ran = allocate_lock(), [None], False
    Watch.started.acquire()
    start(_watch, (read_fd, is_ours, take_over, budget))
    return True


def handler_started() -> bool:
    """Called first by our SIGTERM handler (on the main thread): tells the watchdog, and returns True if the
    handler is the one to drain (False: the watchdog or an outer call of the handler already does)."""
    if Watch.pid != os.getpid():  # not armed here (the state, locks included, is a parent's copy)
        return True
    Watch.ran = True
    with contextlib.suppress(RuntimeError):  # RuntimeError: already released
        Watch.started.release()  # wakes the watchdog's wait at once
    return _claim()


def _claim() -> bool:
    try:
        Watch.ticket.pop()
    except IndexError:
        return False
    return True


def _close(*fds: int) -> None:
    for fd in fds:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def _watch(
    read_fd: int, is_ours: Callable[[], bool], take_over: Callable[[float], None], budget: Callable[[], float]
) -> None:
    while True:
        try:
            data = os.read(read_fd, 512)
        except OSError:  # closed (a forked child re-armed with its own pipe)
            return
        if not data or os.getpid() != Watch.pid:
            return
        if signal.SIGTERM in data and is_ours():
            _see_it_through(budget(), is_ours, take_over)


def _see_it_through(budget: float, is_ours: Callable[[], bool], take_over: Callable[[float], None]) -> None:
    """Make the handler run (re-delivering the signal), or drain and die in its place."""
    received = time.monotonic()
    while not Watch.ran:
        Watch.started.acquire(timeout=REDELIVER_AFTER)  # returns at once when the handler starts
        if Watch.ran or not is_ours():
            return
        if time.monotonic() - received >= TAKEOVER_AFTER and "gevent.monkey" not in sys.modules:
            # Under gevent the pipelines' workers are greenlets of the main thread's hub: no drain from here,
            # re-delivery only.
            if _claim():
                take_over(received + budget)
            return
        try:
            signal.pthread_kill(Watch.main_ident, signal.SIGTERM)
        except OSError:  # the main thread has ended (interpreter shutdown): nothing to wake
            return
