"""The pipeline behind a handler: intake deque (caller threads) -> worker thread -> transport.

Caller threads only append small tuples to `Pipeline.intake` (a `collections.deque`, whose append/popleft are
atomic) and take `_lock` on the rare slow path (first record, full intake, waking the worker, after close).
Everything else - encoding, ids, batching, retries, stats - happens on the worker thread (`_worker_loop`;
its requests go out on its own sending thread, `_sender`), which never calls `logging` and never takes a
logging lock of its own. Records from those threads are never shipped (`WORKER_THREADS`), so what
httpx/httpcore log while sending cannot loop back into a buffer. This module is the caller side, flush()
and fork; closing and reopening live in `_worker_close`, process-wide hooks (atexit drain, fork, the SIGTERM
drain) in `_lifecycle`.

A forked child sends a batch once it has waited FORK_LINGER, not flush_interval. No lock is held across
anything that can yield to a gevent hub (thread start, Event waits), and a worker's Events are made when it
starts, so they are gevent Events when the process was monkey-patched in between (a greenlet worker must
never block the hub).

Lifecycle of a pipeline: not started -> running -> closing -> finished; a record after `finished` reopens it
(a new worker, counters kept), like a stdlib FileHandler reopening its file.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable

from . import _diag, _otel, _worker_close
from ._core import INFINITY
from ._intake_charge import (
    WEIGHT_BYTES,
    WEIGHT_UNITS,
    intake_limit,
    is_charged,
    item_context,
    large_bytes,
    record_units,
)
from ._items import Item, is_event
from ._lifecycle import (
    PIPELINES,
    WORKER_THREADS,
    Exit,
    adopt_child_exit_path,
    adopt_sigterm_drain,
    arm_child_drain,
)
from ._sender import WorkerThread
from ._settings import Settings
from ._spool import Spool
from ._stats import Stats
from ._transport import HttpTransport, Transport, warm_logging_caches
from ._worker_loop import FlushRequest, WorkerLoop

__all__ = ["FORK_LINGER", "WORKER_THREADS", "Item", "Pipeline"]

#: In a forked child (gunicorn/multiprocessing workers, which are often ended by SIGTERM) a batch is sent once
#: it has waited this long (seconds), not after flush_interval: the window a SIGTERM can cut is this short.
FORK_LINGER = 0.02

_worker_numbers = itertools.count(1)


class Pipeline(WorkerLoop):
    """Owns one worker thread (started lazily, restarted in a forked child) and its buffers and stats."""

    def __init__(
        self, settings: Settings, transport_factory: Callable[[Settings], Transport] | None = None
    ) -> None:
        self.settings = settings
        self._transport_factory: Callable[[Settings], Transport] = transport_factory or HttpTransport
        #: Seconds a cut-ready batch may wait in a forked child (0 = use flush_interval only).
        self._linger = 0.0
        #: Set by a logging handler: `logging.shutdown` closes it at exit, after our atexit drain (see
        #: `_send_at_exit`); cleared when it is closed during the exit.
        self.exit_close_follows = False
        #: Appended to by caller threads; the same object for the pipeline's whole life (also after fork).
        self.intake: deque[Item] = deque()
        #: `_intake_charge.weight_units` of the records in the intake and `_late`, as placeholders (the same
        #: object for life, like the intake): appended by callers, taken back by `_release_intake`.
        self.intake_weights: deque[None] = deque()
        self._reset()
        # Built here, on the constructing thread: httpx's first use imports modules (taking logging's lock).
        self._transport: Transport | None = self._transport_factory(settings)
        self._spool: Spool | None = None
        _otel.refresh()
        PIPELINES.add(self)
        if adopt_child_exit_path(settings.drain_on_sigterm):  # built in a multiprocessing child
            self._linger = FORK_LINGER
        adopt_sigterm_drain(settings.drain_on_sigterm)
        if settings.spool_dir is not None:
            # Start now, not at the first record: what earlier processes left in the spool is replayed even
            # by a process that never logs.
            with self._lock:
                thread = self._prepare_start_locked()
            thread.start()

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child (inherited buffers belong to the parent)."""
        self.intake.clear()
        self.intake_weights.clear()
        #: Reentrant: a signal handler runs on the main thread, possibly while that thread holds this lock in
        #: submit_slow/stats/flush/close; it must re-enter (see `_reentered`), never wait for itself.
        self._lock = threading.RLock()
        #: Records logged while a worker is closing: not its job (or close() would last as long as callers
        #: keep logging); a new worker takes them once the closing one is done (`_worker_close`).
        self._late: deque[Item] = deque()
        #: Threads waiting in finish_close: a signal handler's close() on such a thread must not wait again
        #: (each nested wait would be interrupted by the next signal, until RecursionError).
        self._close_waiters: set[int] = set()
        #: `large_bytes` of every record in the intake and `_late` (changed under `_lock`).
        self.intake_large = 0
        self._wake = threading.Event()
        self._reset_core(self._lock)
        self._pid = os.getpid()
        #: (spooled, adopted) when the spool was closed: what stats() reports after close().
        self._spool_left = (0, 0)
        self._reset_worker_state()

    def _reset_worker_state(self) -> None:
        """What one worker's life uses; reset again when a closed pipeline reopens (counters are kept)."""
        s = self.settings
        #: Callers take the slow path once len(intake) reaches this; 0 forces it (not started, or closed).
        self.soft_limit = 0
        #: The hard bound of the intake, recomputed by the worker from the byte budget (`intake_limit`).
        self.intake_limit = intake_limit(s.max_buffer_records, s.max_buffer_bytes, 0)
        self._flush_requests: deque[FlushRequest] = deque()
        self._waiters = []
        self._thread: threading.Thread | None = None
        self._sender = None  # made by the worker when it starts
        #: The thread that prepared `_thread` and starts it once it released the lock.
        self._starter: int | None = None
        self._ident: int | None = None
        self._closing = False
        self._deadline = INFINITY
        self._abort = False
        self._finished = False
        self._abandoned = False
        self._reset_buffers()
        #: Spool mode: when the head of the spool may be tried again, and how many tries have failed.
        self._retry_at = 0.0
        self._spool_failures = 0
        #: In a forked child: when the oldest not-yet-cut record was encoded (see FORK_LINGER).
        self._pending_since: float | None = None

    # ----------------------------------------------------------------- caller side
    def submit_slow(self, item: Item) -> bool:
        """The caller's path when the fast path's single length check fails; never raises.

        After close() the pipeline reopens (a new worker), as a stdlib FileHandler reopens its file: a record
        logged after a re-configuration or by a late atexit hook is delivered, not dropped.
        """
        if self._pid != os.getpid():  # forked without the at-fork hooks (a C-level fork)
            self._forked_without_hooks()
        if _otel.current_span is None:
            _otel.refresh()  # outside the lock: it may import
        extra = large_bytes(item)  # what the record carries (or the event's size): taken back as is
        units = record_units(item)
        context = item_context(item)
        charged = is_charged(context)
        if self._reentered():
            # A signal handler interrupted this thread inside our lock (so it is held): append, never wait;
            # the interrupted code, or the next record, wakes the worker.
            self.intake.append(item)
            self.intake_weights.extend(WEIGHT_UNITS[units])
            self.intake_large += extra + (self.charges.enter(context) if charged else 0)
            return True
        start: threading.Thread | None = None
        accepted = True
        with self._lock:
            if charged:  # counted before the overflow policy runs: drop_oldest may release it meanwhile
                extra += self.charges.enter(context)
            if self._closing and not self._finished and not Exit.started:
                held = _worker_close.hold_late_locked(self, item, extra, units)
                return held or self._uncharge_locked(context, charged)
            if self._finished and not _worker_close.reopen_locked(self):
                self._count("shutdown", 1)  # an abandoned worker is still stuck: no new one beside it
                return self._uncharge_locked(context, charged)
            if self._thread is None:
                start = self._prepare_start_locked()
            intake = self.intake
            size = len(intake)
            accepted = self._make_room_locked(intake, extra + units * WEIGHT_BYTES)
            if accepted:
                intake.append(item)
                self.intake_weights.extend(WEIGHT_UNITS[units])
                self.intake_large += extra
                # A forked child wakes its worker for the first record after a quiet spell (see _rearm).
                if (size + 1 >= self._wake_at or self._linger) and not self._wake.is_set():
                    self._wake.set()
                    # Until the worker has drained, later records need no wake-up: only the hard limit counts.
                    self.soft_limit = self.intake_limit
            else:
                self._uncharge_locked(context, charged)
        # Started outside the lock: under gevent start() yields to the hub, and the new worker takes the lock.
        if start is not None:
            start.start()
        if Exit.started:
            self._send_at_exit()
        return accepted

    def _reentered(self) -> bool:
        """True on the thread that already holds `_lock` (only a signal handler gets here that way)."""
        return bool(self._lock._is_owned())  # type: ignore[attr-defined]

    def _await_start(self, thread: threading.Thread, deadline: float) -> bool:
        """Wait until a prepared worker was started (it is, just after the lock is released); False when this
        very thread is to start it: a signal handler interrupted it in between, waiting would never end."""
        if thread.ident is not None:
            return True
        if self._starter == threading.get_ident():
            return False
        return bool(thread._started.wait(max(0.0, deadline - time.monotonic())))  # type: ignore[attr-defined]

    def _prepare_start_locked(self) -> threading.Thread:
        """A worker thread to start once the lock is released. Its Event is made now, from the `threading`
        module as it is now: under gevent monkey-patching (also when patched after this pipeline was built),
        the worker is a greenlet and must wait on a gevent Event, or it would block the whole hub."""
        thread = WorkerThread(
            target=self._run, name=f"oglogstream-worker-{next(_worker_numbers)}", daemon=True
        )
        self._thread = thread
        self._starter = threading.get_ident()
        self._wake = threading.Event()
        if self._closing:
            self._wake.set()
        self.soft_limit = self._soft_limit_locked()
        arm_child_drain()
        return thread

    def _send_at_exit(self) -> None:
        """A record during or after the atexit drain: wait until it is delivered (or the shared exit deadline
        passed), or the interpreter's end could cut the worker off; past the deadline what is left is counted
        as `shutdown` (closing, which abandons a stuck worker)."""
        if Exit.deadline == INFINITY:
            Exit.deadline = time.monotonic() + self.settings.shutdown_timeout
        if Exit.logging_shutdown_follows and self.exit_close_follows and not self._closing:
            # `logging.shutdown` runs later in this exit and closes (drains) the handler: the record waits in
            # the buffer with the ones after it, and they go in batches (not one request per record).
            return
        if self._closing or self._reentered() or not self.flush(Exit.deadline - time.monotonic()):
            self.begin_close(Exit.deadline)
            self.finish_close(Exit.deadline)

    def count_internal_error(self, exc: BaseException) -> None:
        """A record could not even be captured (a bug): count it and say so on stderr."""
        self._ledger.count_locked("internal_error", 1)
        _diag.report("internal_error", f"could not capture a record: {exc!r}")

    def _forked_without_hooks(self) -> None:
        """Keep only this process's own records (the parent ships its own), then start afresh."""
        pid = os.getpid()
        mine = [item for item in list(self.intake) if not is_event(item) and item[0].get("process") == pid]
        self.after_fork_in_child()
        self.intake.extend(mine)
        charges = self.charges
        charges.clear()
        for item in mine:
            self.intake_weights.extend(WEIGHT_UNITS[record_units(item)])
        self.intake_large = sum(map(large_bytes, mine)) + sum(
            charges.enter(context) for context in map(item_context, mine) if is_charged(context)
        )

    # ----------------------------------------------------------------- public operations
    def stats(self) -> Stats:
        with self._lock:  # one consistent moment: the worker moves records under this lock too
            spool = self._spool
            return self._ledger.snapshot(
                queued=self._queued_locked(),
                # An abandoned worker's buffers were counted as lost: they no longer count as held.
                buffered_bytes=0 if self._abandoned else self._pending.nbytes + self._inflight.nbytes,
                intake_bytes=self.intake_charged(len(self.intake) + len(self._late)),
                spooled=spool.records if spool is not None else self._spool_left[0],
                adopted=spool.adopted_total if spool is not None else self._spool_left[1],
            )

    def flush(self, timeout: float | None) -> bool:
        """Wait until every record submitted before this call is sent or dropped; False on timeout."""
        if threading.get_ident() in WORKER_THREADS or self._reentered():
            return False  # waiting for a worker that needs the lock this thread holds could only time out
        if self._pid != os.getpid():
            self._forked_without_hooks()
        timeout = self.settings.shutdown_timeout if timeout is None else max(0.0, timeout)
        if Exit.started:  # every record after the exit drain shares one deadline
            timeout = min(timeout, max(0.0, Exit.deadline - time.monotonic()))
        warm_logging_caches()
        with self._lock:
            thread = self._thread
            if thread is None or self._finished or self._abandoned:
                return not self.intake and not self._abandoned
            if thread.ident is None and self._starter == threading.get_ident():
                return False  # a signal handler interrupted this thread before it started the worker
            request = FlushRequest()
            self._flush_requests.append(request)
            self._wake.set()
        return request.done.wait(timeout) and request.ok

    def close(self, timeout: float | None) -> bool:
        """Stop taking records, deliver what is buffered until the deadline, stop the worker. Idempotent."""
        return _worker_close.close(self, timeout)

    def begin_close(self, deadline: float) -> None:
        _worker_close.begin_close(self, deadline)

    def finish_close(self, deadline: float) -> bool:
        """See `_worker_close.finish_close`."""
        return _worker_close.finish_close(self, deadline)

    def _finish_run(self, abandoned: bool) -> None:
        _worker_close.finish_run(self, abandoned)

    def after_fork_in_child(self) -> None:
        closing = self._closing
        self._reset()
        # The parent's connection is not ours: drop it unclosed (closing would shut the parent's socket down).
        self._transport = None
        # Nor are its spool files: close the inherited descriptors (the parent keeps its lock), open our own.
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.forget_after_fork()
        if closing:  # a closed handler stays closed in the child (until a record reopens it)
            self._closing = True
            self._finished = True
        # A forked child is often ended by SIGTERM (multiprocessing.Pool, gunicorn): send soon after logging.
        self._linger = FORK_LINGER
