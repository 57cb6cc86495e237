"""The worker's disk-spool side (`spool_dir`): open the spool, send its head, spill memory into it at exit.

Functions of a `_worker_loop.WorkerLoop` (the worker thread's state), kept apart so each file has one job.
Every spool change that moves records between counters (appended, expired, corrupt, settled, split on 413)
happens under the pipeline's `_lock`, together with the counter it moves them to: a `stats()` snapshot sees
each record exactly once.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from . import _diag
from ._buffer import Batch
from ._spool import Spool
from ._transport import Outcome

if TYPE_CHECKING:
    from ._worker_loop import WorkerLoop

__all__ = ["open_spool", "send_spooled", "spill"]


def open_spool(loop: WorkerLoop) -> None:
    """Open `spool_dir` (once) and adopt what earlier processes left; on OSError go on without a spool."""
    s = loop.settings
    if s.spool_dir is None or loop._spool is not None:
        return
    try:
        loop._spool = Spool(
            s.spool_dir,
            max_bytes=s.spool_max_bytes,
            max_age=s.spool_max_age,
            memory_mark=s.max_buffer_bytes // 2,
            count=loop._ledger.count_locked,
        )
        loop._spool.scan(time.monotonic())  # replay what earlier processes left first
    except OSError as exc:  # delivery still works, from memory, as without a spool
        loop._ledger.note_error(f"spool unavailable: {exc}")
        _diag.report("spool", f"cannot use spool_dir {s.spool_dir!r}, continuing without it: {exc}")


def spill(loop: WorkerLoop, *, evict: bool = True) -> None:
    """Put what memory holds (intake and pending) into the spool: when close() begins (the spool write is
    local and fast, so it is done before the deadline, even while a slow answer is awaited), and on the way
    out. `evict=False` while the head is being sent: nothing is dropped to make room for it then."""
    spool = loop._spool
    if spool is None or loop._abandoned:
        return
    try:
        loop._ingest(bounded=False)
        pending = loop._pending
        s = loop.settings
        while pending:
            first_seq, lines = pending.cut(s.batch_size, s.batch_bytes)
            batch = Batch(loop._new_batch_id(), first_seq, lines)
            with loop._lock:  # spooled and no longer moving in one step, for stats()
                if loop._abandoned:  # close() gave up meanwhile and counted these records as lost
                    return
                spooled = spool.append(batch, evict=evict)
                if spooled:
                    pending.moving = 0
            if not spooled:
                pending.lines.extendleft(reversed(lines))  # counted as shutdown losses by the caller
                pending.first_seq = first_seq
                pending.nbytes += batch.nbytes
            pending.moving = 0
            if not spooled:
                return
    except Exception as exc:
        _diag.report("spool", f"could not spool records at shutdown: {exc!r}")


def send_spooled(loop: WorkerLoop, spool: Spool) -> None:
    """One try at the head of the spool (its next part, if a 413 split it); on a retryable failure the next
    try is scheduled, not awaited.

    A 413's halves stay in the spool as the frame's parts (`Spool.progress`), sent one per call like any
    frame: they are never in flight in memory only, so a close() that gives up leaves them spooled for the
    next process (counted as spooled, not lost), and a settled part is recorded on disk before its
    records count as sent.
    """
    frame = spool.head()
    assert frame is not None
    # Spool changes that count records (expired, corrupt, settled) happen under `_lock` together with
    # the counters they move records to: a stats() snapshot sees each record exactly once.
    with loop._lock:
        spool.expire(time.time())
        if spool.head() is not frame:
            return
        parts = spool.load(frame)
    if parts is None:
        return  # failed its CRC: counted and removed
    current = parts[0]
    result = loop._attempt(current)
    if loop._abandoned:  # (checked again under the lock before anything is settled)
        return
    if result.outcome is Outcome.RETRY:
        loop._spool_failures += 1
        loop._ledger.on_retry(result)
        loop._retry_at = time.monotonic() + loop._policy.delay(loop._spool_failures, result)
        return
    loop._spool_failures = 0
    loop._retry_at = 0.0
    with loop._lock:
        # close() abandons under this lock. Once it has, the frame stays spooled (still counted as queued,
        # for the next process, whose resend the server de-duplicates by its batch id): settling it too
        # would move records close() has already accounted for. Nothing evicts the head while it is sent
        # (`spill(evict=False)`); the check keeps a dropped frame from being settled twice all the same.
        if loop._abandoned or spool.head() is not frame:
            return
        halves = loop._ledger.settle(current, result)
        left = [*halves, *parts[1:]] if halves is not None else parts[1:]
        if left:
            spool.progress(frame, left, 0 if halves is not None else len(current))
        else:
            spool.settle(frame)
    loop._check_waiters()
