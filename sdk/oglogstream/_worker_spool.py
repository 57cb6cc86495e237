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
        loop._ledger.last_error = f"spool unavailable: {exc}"
        _diag.report("spool", f"cannot use spool_dir {s.spool_dir!r}, continuing without it: {exc}")


def spill(loop: WorkerLoop) -> None:
    """On the way out (close deadline, or a failing server): put what memory holds into the spool."""
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
                spooled = spool.append(batch)
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
    """One try at the head of the spool; on a retryable failure the next try is scheduled, not awaited."""
    frame = spool.head()
    assert frame is not None
    # Spool changes that count records (expired, corrupt, settled) happen under `_lock` together with
    # the counters they move records to: a stats() snapshot sees each record exactly once.
    with loop._lock:
        spool.expire(time.time())
        if spool.head() is not frame:
            return
        batch = spool.load(frame)
    if batch is None:
        return  # failed its CRC: counted and removed
    result = loop._attempt(batch)
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
        # would move records close() has already accounted for.
        if loop._abandoned:
            return
        halves = loop._ledger.settle(batch, result)
        if halves is None:
            spool.settle(frame)
        else:
            # 413: the halves are sent (with retries) before the frame counts as settled. Meanwhile its
            # records are counted as in flight, not as spooled (each record in one place for stats()).
            spool.own_records -= frame.records
    if halves is not None:
        delivered = loop._deliver(batch, halves)
        with loop._lock:
            if loop._abandoned:
                # close() counted the halves still in flight as lost (`give_up`), the settled ones are sent.
                return
            if delivered:
                spool.own_records += frame.records
                spool.settle(frame)
            else:
                # Stopped by the close deadline: the whole frame stays spooled for the next process. Of
                # this process's own frame, the halves already settled were counted as sent: only the rest
                # counts as spooled again (an adopted frame's records are not this process's to count).
                own = frame.first_seq is not None
                spool.own_records += loop._inflight.records if own else frame.records
                loop._inflight.clear()
                return
    loop._check_waiters()
