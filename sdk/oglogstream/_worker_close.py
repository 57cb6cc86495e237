"""Closing a pipeline and reopening it (functions of a `_worker.Pipeline`): close() = begin_close (stop
taking records, wake the worker) + finish_close (wait until the deadline, count what is left as `shutdown`,
give up on a stuck worker); records logged meanwhile are held back (`_late`) for the worker that starts once
the closing one is done; a record after the close reopens the pipeline (a new worker, counters kept), like a
stdlib FileHandler reopening its file.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

from ._core import INFINITY
from ._intake_charge import WEIGHT_BYTES, WEIGHT_UNITS
from ._lifecycle import Exit
from ._transport import warm_logging_caches

if TYPE_CHECKING:
    from ._items import Item
    from ._worker import Pipeline

__all__ = [
    "begin_close",
    "close",
    "finish_close",
    "finish_run",
    "hold_late_locked",
    "reopen_locked",
    "start_late_locked",
]


def hold_late_locked(pipe: Pipeline, item: Item, extra: int, units: int) -> bool:
    """Keep a record logged during close() for the worker that starts once the closing one is done."""
    if not pipe._make_room_locked(pipe._late, extra + units * WEIGHT_BYTES):
        return False
    pipe._late.append(item)
    pipe.intake_weights.extend(WEIGHT_UNITS[units])
    pipe.intake_large += extra
    return True


def start_late_locked(pipe: Pipeline) -> threading.Thread | None:
    """After a worker finished: a new one (to start once the lock is released) for the records held
    back while it closed, or None when there are none."""
    if not pipe._late or not reopen_locked(pipe):
        return None
    pipe.intake.extend(pipe._late)
    pipe._late.clear()
    return pipe._prepare_start_locked()


def reopen_locked(pipe: Pipeline) -> bool:
    """Make a finished pipeline take records again; False while an abandoned worker is still running."""
    thread = pipe._thread
    if pipe._abandoned and thread is not None and thread.is_alive():
        return False
    if pipe._abandoned and pipe.intake:
        # Emptied (and counted) when the worker was abandoned; these few raced past the closed gate.
        pipe._count("shutdown", pipe._clear_intake_locked())
    pipe._reset_worker_state()
    pipe._transport = None  # closed with the old worker; the new one builds its own
    if Exit.started:
        # At interpreter exit the new worker keeps running (and its connection open) for the records of
        # later atexit hooks, each of which waits for its delivery (`_send_at_exit`): one worker, one
        # connection, batches as large as what arrives meanwhile, within the one exit deadline.
        if Exit.deadline == INFINITY:
            Exit.deadline = time.monotonic() + pipe.settings.shutdown_timeout
        pipe._deadline = Exit.deadline
    return True


def close(pipe: Pipeline, timeout: float | None) -> bool:
    """Stop taking records, deliver what is buffered until the deadline, stop the worker. Idempotent."""
    timeout = pipe.settings.shutdown_timeout if timeout is None else max(0.0, timeout)
    deadline = time.monotonic() + timeout
    if Exit.started:  # every record after the exit drain shares one deadline
        deadline = min(deadline, Exit.deadline)
        pipe.exit_close_follows = False  # a record after this close waits for its own delivery
    if pipe._pid != os.getpid():
        pipe._forked_without_hooks()
    begin_close(pipe, deadline)
    if pipe._reentered() or threading.get_ident() in pipe._close_waiters:
        return False  # a signal handler: the worker finishes once the interrupted code lets go
    return finish_close(pipe, deadline)


def begin_close(pipe: Pipeline, deadline: float) -> None:
    warm_logging_caches()
    with pipe._lock:
        if pipe._closing:
            return
        pipe._closing = True
        pipe.soft_limit = 0
        pipe._deadline = deadline
        # With a spool in backoff: one more try now (the server may be back), then exit if it fails.
        pipe._retry_at = 0.0
        pipe._spool_failures = 0
        pipe._wake.set()


def finish_close(pipe: Pipeline, deadline: float) -> bool:
    """Wait for the worker until `deadline`; whatever is still held then is counted as `shutdown`.

    Only the worker that was running when the close began is waited for: records logged meanwhile are
    held back (`_late`) and go to a new worker afterwards, which this close does not wait for.
    """
    thread = pipe._thread
    if thread is not None and not pipe._abandoned and thread.ident != threading.get_ident():
        if not pipe._await_start(thread, deadline):
            return False  # closing: the worker finishes once started
        me = threading.get_ident()
        pipe._close_waiters.add(me)
        try:
            thread.join(max(0.0, deadline - time.monotonic()))
        finally:
            pipe._close_waiters.discard(me)
    start = None
    with pipe._lock:
        if pipe._thread is not thread or pipe._finished or pipe._abandoned:
            leftovers = 0  # that worker is done (and counted what it could not deliver)
        elif thread is None:
            leftovers = pipe._clear_intake_locked()
            pipe._finished = True
            if pipe._transport is not None:
                pipe._transport.close()
            start = start_late_locked(pipe)
        else:
            # The worker is stuck (a server that never answers): give up on it, count what it holds,
            # and what waited for it (a new worker would only queue up behind the stuck send).
            pipe._abandoned = True
            pipe._abort = True
            pipe._finished = True
            pipe._inflight.give_up(pipe._ledger, pipe._held() + len(pipe._late))
            pipe._pending.given_up = True
            leftovers = 0
            pipe.intake.clear()
            pipe._late.clear()
            pipe.intake_weights.clear()
            pipe.intake_large = 0
            pipe.charges.clear()
        if leftovers:
            pipe._count("shutdown", leftovers)
        dropped = pipe._ledger.dropped
        clean = not dropped.get("shutdown") and not dropped.get("unconfirmed")
    if start is not None:
        start.start()
    pipe._ledger.summarize_losses()
    return clean


def finish_run(pipe: Pipeline, abandoned: bool) -> None:
    """The worker's last act: only now may a record reopen the pipeline (nothing of this worker is left).
    Records that arrived while it was winding down are taken by a new worker at once."""
    start = None
    with pipe._lock:
        pipe._finished = True
        if pipe.intake and not abandoned:
            # Raced past the closed gate after the last look at the intake: the next worker's job too.
            pipe._late.extendleft(reversed(pipe.intake))
            pipe.intake.clear()
        if not abandoned:
            start = start_late_locked(pipe)
    if start is not None:
        start.start()
    pipe._ledger.summarize_losses()
