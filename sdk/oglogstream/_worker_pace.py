"""When the worker thread runs Python and when it leaves the GIL to others (functions of a `WorkerLoop`).

One GIL serves the application's threads, the worker and its sending thread (`_sender`). Two rules:
- `yield_to_callers`: while the application logs in a burst, the worker waits instead of encoding, and
  encodes once the burst is over (bounded by time and by the intake's room);
- `encoding_ahead`: while a request is on the sending thread (gzip and socket waits release the GIL), the
  worker encodes the next batch, so it can go as soon as the answer is back; the same burst rule applies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._ingest import INGEST_CHUNK
from ._intake_charge import INTAKE_ITEM_BYTES
from ._lifecycle import Exit

if TYPE_CHECKING:
    from ._worker_loop import WorkerLoop

__all__ = [
    "DEFER_RATE",
    "DEFER_STEP",
    "await_answer",
    "bursting",
    "encoding_ahead",
    "may_defer",
    "yield_to_callers",
]

#: The worker lets the application's threads run while they log faster than this (records per second,
#: measured over the worker's last turn): one GIL serves both, so every microsecond the worker encodes during
#: a burst is one the logging thread waits. It encodes once the burst ends (or a bound below is reached).
DEFER_RATE = 10_000
#: How often a deferring worker looks at the intake again (seconds).
DEFER_STEP = 0.002


def bursting(grown: float, seconds: float) -> bool:
    """Whether an intake that grew by `grown` records in `seconds` is being filled at DEFER_RATE or more."""
    return grown >= DEFER_RATE * seconds


def may_defer(loop: WorkerLoop) -> bool:
    """Whether the worker may leave the GIL to bursting callers now: not in a forked child (its records go
    out after FORK_LINGER), nor while closing, while a flush waits, or at exit."""
    return not (loop._linger or loop._closing or loop._waiters or Exit.started)


def yield_to_callers(loop: WorkerLoop, mark: tuple[int, float]) -> None:
    """Wait while the intake grows at DEFER_RATE or more (an application thread logging in a burst;
    `mark` = (intake length, time.monotonic()) at the worker's last look): for at most flush_interval, while
    the intake holds less than half its room (records, their weights and the text of large messages, as
    callers are admitted); a flush() or close() (which set `_wake`) ends the wait at once. Bounded by time
    and memory: it moves the worker's encoding to after the burst."""
    if not may_defer(loop):
        return
    intake = loop.intake
    count, since = mark
    # Half the intake's room, in the units callers are admitted by (records, weights, large messages' text).
    room = loop.intake_limit * INTAKE_ITEM_BYTES // 2
    give_up = time.monotonic() + loop.settings.flush_interval
    with loop._lock:  # callers no longer wake us (until _rearm); flush() and close() still do
        if loop._closing:
            return
        loop.soft_limit = loop.intake_limit
        loop._wake.clear()
    try:
        while (
            loop.intake_bytes() < room
            and not loop._wake.is_set()
            and not loop._flush_requests
        ):
            now = time.monotonic()
            if now >= give_up or not bursting(len(intake) - count, now - since):
                return
            count, since = len(intake), now
            loop._wake.wait(DEFER_STEP)
    finally:
        # Callers wake us again at a batch's worth (as `_rearm` sets it, without clearing a flush's or
        # close's wake-up): else a burst resumed after a pause sits in the intake until the next tick.
        with loop._lock:
            loop.soft_limit = loop._soft_limit_locked()


def encoding_ahead(loop: WorkerLoop) -> Callable[[], float | None]:
    """The `_sender.Meanwhile` of one request: encode the intake, a chunk per call, until the next batch is
    ready. Not while callers log in a burst (the GIL is theirs then: wait DEFER_STEP for the answer), and
    only up to one batch: batches still go one at a time, in order, and the buffer's bounds apply as in the
    worker's own `_ingest`."""
    intake, pending, s = loop.intake, loop._pending, loop.settings
    mark = [len(intake), time.monotonic()]

    def meanwhile() -> float | None:
        # Abandoned by close() (`_abort`): what it held is counted already; it must not take more.
        if loop._abort or not intake or pending.ready(s.batch_size, s.batch_bytes):
            return None
        now = time.monotonic()
        grown = len(intake) - mark[0]
        defer = grown > 0 and bursting(grown, now - mark[1]) and may_defer(loop)
        mark[0], mark[1] = len(intake), now
        if defer:
            return DEFER_STEP
        # What callers append meanwhile counts as growth at the next call; what we took does not.
        mark[0] -= loop._encode_intake(intake, bounded=True, limit=INGEST_CHUNK, on_done=loop._ingested)
        return 0.0

    return meanwhile


def await_answer(loop: WorkerLoop, seconds: float) -> None:
    """The `idle` of a request on the sending thread: wait until `_wake` is set - by the answer (`notify`),
    flush() or close(), or by callers - or `seconds` passed. With the next batch encoded already, callers
    need not wake us (as while deferring to a burst): else a burst's every record would take the slow path
    and wake the worker, only for it to find nothing it may do before the answer."""
    s = loop.settings
    if loop._pending.ready(s.batch_size, s.batch_bytes):
        with loop._lock:
            if not loop._closing and not Exit.started:
                loop.soft_limit = loop.intake_limit
    loop._wake.wait(seconds)
    loop._rearm()
