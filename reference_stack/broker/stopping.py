"""Stopping nats-py's connect/reconnect loops within a deadline, whatever state the connection is in.

Why this is needed: nats-py retries a connect forever (`max_reconnect_attempts=-1`), each attempt inside
`asyncio.wait_for(open_connection(...), connect_timeout)`. On Python <= 3.11 `asyncio.wait_for` swallows a
cancellation that arrives while the attempt it wraps has just finished (CPython gh-86296): it returns or
raises the attempt's own result instead, here "connection refused", which nats-py counts as one more failed
attempt and retries. A stop that cancels such a loop once and then awaits it without a deadline waits
forever: seen as `oglog serve ingest` with NATS unreachable not exiting within 40 s of SIGTERM (5 of 200
connections closed at random moments hung so, on 2 loaded cores). So:

* `cancel_and_wait` cancels again every CANCEL_RETRY seconds until the task ends, at most `timeout` seconds;
* `ClosingGuard` makes a loop that survived the cancellation end at its next failed attempt: nats-py reports
  every failed attempt to the connection's error callback, which raises CancelledError once a close began.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["CANCEL_RETRY", "ClosingGuard", "cancel_and_wait"]

log = logging.getLogger(__name__)

#: Seconds between cancellations of a task that has not ended yet (a swallowed one is repeated this soon).
CANCEL_RETRY = 0.1


async def cancel_and_wait(task: asyncio.Task[Any] | None, timeout: float, *, what: str = "") -> bool:
    """Cancel `task` (None or done: nothing to do) and wait until it ends, cancelling it again every
    CANCEL_RETRY seconds, for at most `timeout` seconds. True once it ended; False (logged, naming `what` or
    the task) when it still runs at the deadline: the caller goes on without it. Its result or exception is
    consumed. A cancellation of the caller propagates as usual."""
    if task is None:
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("%s did not stop within %gs of being cancelled; left behind", what or task, timeout)
            return False
        await asyncio.wait({task}, timeout=min(CANCEL_RETRY, remaining))
    if not task.cancelled():
        task.exception()  # consumed: a loop ended by its error callback is no "exception never retrieved"
    return True


class ClosingGuard:
    """Raise CancelledError from a nats error callback once `close()` began, in the tasks that retry connects.

    `closing` is set by the owner's close; `check(retry_tasks)` is called first thing in the error callback
    with the tasks whose loops must not retry past a close (the owner's connect task, nats-py's reconnection
    task). Other tasks (nats-py's own close, the read loop) are left alone: an exception there would cut the
    close short."""

    def __init__(self) -> None:
        self.closing = False

    def check(self, *retry_tasks: asyncio.Task[Any] | None) -> None:
        if self.closing and asyncio.current_task() in {t for t in retry_tasks if t is not None}:
            raise asyncio.CancelledError("closing: no more connect attempts")
