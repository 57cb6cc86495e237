"""The pipeline behind a handler: intake deque (caller threads) -> worker thread -> transport.

Caller threads only append small tuples to `Pipeline.intake` (a `collections.deque`, whose append/popleft are
atomic) and take `_lock` on the rare slow path (first record, full intake, waking the worker, after close).
Everything else - encoding, ids, batching, retries, stats - happens on the worker thread, which never calls
`logging` and never takes a logging lock of its own.

Records from any worker thread are never shipped (`WORKER_THREADS`), so what httpx/httpcore log while sending
cannot loop back into a buffer.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import secrets
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import tenacity

from . import _diag
from ._buffer import Batch, Pending
from ._entry import EntryEncoder
from ._settings import MAX_RETRY_AFTER, Settings
from ._stats import Stats
from ._transport import HttpTransport, Outcome, SendResult, Transport, warm_logging_caches

__all__ = ["WORKER_THREADS", "Item", "Pipeline", "drain_all"]

#: Thread idents of running workers: a record created on one of these threads is never shipped.
WORKER_THREADS: set[int] = set()

#: A `CapturedRecord` (see `_entry.capture`) or (StructEvent, context).
Item = tuple[Any, ...]

_PIPELINES: weakref.WeakSet[Pipeline] = weakref.WeakSet()
_worker_numbers = itertools.count(1)
_INFINITY = float("inf")


class _FlushRequest:
    __slots__ = ("done", "ok", "target")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = True
        self.target: int | None = None


class Pipeline:
    """Owns one worker thread (started lazily, restarted in a forked child) and its buffers and stats."""

    def __init__(
        self, settings: Settings, transport_factory: Callable[[Settings], Transport] | None = None
    ) -> None:
        self.settings = settings
        self._transport_factory: Callable[[Settings], Transport] = transport_factory or HttpTransport
        self._drop_oldest = settings.overflow == "drop_oldest"
        self._wake_at = min(settings.batch_size, settings.max_buffer_records)
        #: Appended to by caller threads; the same object for the pipeline's whole life (also after fork).
        self.intake: deque[Item] = deque()
        self._reset()
        # Built here, on the constructing thread: httpx's first use imports modules (taking logging's lock).
        self._transport: Transport | None = self._transport_factory(settings)
        _PIPELINES.add(self)

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child (inherited buffers belong to the parent)."""
        s = self.settings
        #: Callers take the slow path once len(intake) reaches this; 0 forces it (not started, or closed).
        self.soft_limit = 0
        self.intake.clear()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._flush_requests: deque[_FlushRequest] = deque()
        self._waiters: list[_FlushRequest] = []
        self._thread: threading.Thread | None = None
        self._ident: int | None = None
        self._closing = False
        self._deadline = _INFINITY
        self._abort = False
        self._finished = False
        self._abandoned = False
        self._pending = Pending(s.max_buffer_records, s.max_buffer_bytes, self._drop_oldest)
        self._inflight_records = 0
        self._inflight_bytes = 0
        self._inflight_first: int | None = None
        self._batch_prefix = secrets.token_hex(8)
        self._batch_numbers = itertools.count(1)
        self._sent = 0
        self._retried = 0
        self._last_error: str | None = None
        self._dropped: dict[str, int] = {}  # written by the worker, or by others under _lock
        self._reported: set[str] = set()

    # ----------------------------------------------------------------- caller side

    def submit_slow(self, item: Item) -> bool:
        """The caller's path when the fast path's single length check fails; never raises."""
        with self._lock:
            if self._closing:
                self._count("closed", 1)
                return False
            if self._thread is None:
                self._start_locked()
            intake = self.intake
            size = len(intake)
            if size >= self.settings.max_buffer_records:
                self._count("overflow", 1)
                if not self._drop_oldest:
                    return False
                with contextlib.suppress(IndexError):  # the worker may just have taken everything
                    intake.popleft()
            intake.append(item)
            if size + 1 >= self._wake_at and not self._wake.is_set():
                self._wake.set()
                # Until the worker has drained, later records need no wake-up: only the hard limit matters.
                self.soft_limit = self.settings.max_buffer_records
            return True

    def _start_locked(self) -> None:
        thread = threading.Thread(
            target=self._run, name=f"oglogstream-worker-{next(_worker_numbers)}", daemon=True
        )
        self._thread = thread
        thread.start()
        self.soft_limit = min(self._wake_at, self.settings.max_buffer_records)

    def count_internal_error(self, exc: BaseException) -> None:
        """A record could not even be captured (a bug): count it and say so on stderr."""
        with self._lock:
            self._count("internal_error", 1)
        _diag.report("internal_error", f"could not capture a record: {exc!r}")

    def _count(self, reason: str, n: int) -> None:
        self._dropped[reason] = self._dropped.get(reason, 0) + n

    # ----------------------------------------------------------------- public operations

    def stats(self) -> Stats:
        with self._lock:
            dropped = dict(self._dropped)
        return Stats(
            queued=len(self.intake) + len(self._pending) + self._inflight_records,
            sent=self._sent,
            retried=self._retried,
            dropped=dropped,
            last_error=self._last_error,
            buffered_bytes=self._pending.nbytes + self._inflight_bytes,
        )

    def flush(self, timeout: float | None) -> bool:
        """Wait until every record submitted before this call is sent or dropped; False on timeout."""
        if threading.get_ident() in WORKER_THREADS:
            return False  # a worker waiting for itself (or another worker) could only time out
        timeout = self.settings.shutdown_timeout if timeout is None else max(0.0, timeout)
        warm_logging_caches()
        with self._lock:
            thread = self._thread
            if thread is None or self._finished or self._abandoned:
                return not self.intake and not self._abandoned
            request = _FlushRequest()
            self._flush_requests.append(request)
            self._wake.set()
        return request.done.wait(timeout) and request.ok

    def close(self, timeout: float | None) -> bool:
        """Stop taking records, deliver what is buffered until the deadline, stop the worker. Idempotent."""
        timeout = self.settings.shutdown_timeout if timeout is None else max(0.0, timeout)
        deadline = time.monotonic() + timeout
        self.begin_close(deadline)
        return self.finish_close(deadline)

    def begin_close(self, deadline: float) -> None:
        warm_logging_caches()
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self.soft_limit = 0
            self._deadline = deadline
            self._wake.set()

    def finish_close(self, deadline: float) -> bool:
        """Wait for the worker until `deadline`; whatever is still held then is counted as `shutdown`."""
        thread = self._thread
        if thread is not None and not self._abandoned and thread.ident != threading.get_ident():
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if self._finished or self._abandoned:
                leftovers = 0
            elif thread is None:
                leftovers = len(self.intake)
                self.intake.clear()
                self._finished = True
                if self._transport is not None:
                    self._transport.close()
            else:
                # The worker is stuck (e.g. a server that never answers): give up on it, count what it holds.
                self._abandoned = True
                self._abort = True
                leftovers = self._held()
            if leftovers:
                self._count("shutdown", leftovers)
            clean = not self._dropped.get("shutdown")
        if leftovers:
            _diag.report("shutdown", f"{leftovers} records not delivered before the shutdown deadline")
        return clean

    def after_fork_in_child(self) -> None:
        closing = self._closing
        self._reset()
        # The parent's connection is not ours: drop it unclosed (closing would shut the parent's socket down).
        self._transport = None
        if closing:  # a closed handler stays closed in the child
            self._closing = True
            self._finished = True

    # ----------------------------------------------------------------- worker

    def _held(self) -> int:
        return len(self.intake) + len(self._pending) + self._inflight_records

    def _run(self) -> None:
        ident = threading.get_ident()
        self._ident = ident
        WORKER_THREADS.add(ident)
        transport: Transport | None = None
        try:
            self._encoder = EntryEncoder(self.settings.service)
            if self._transport is None:
                self._transport = self._transport_factory(self.settings)
            transport = self._transport
            self._retrying = self._build_retrying()
            self._loop()
        except BaseException as exc:  # never let the thread die silently; records stay counted
            self._last_error = f"worker crashed: {exc!r}"
            _diag.report("worker", f"worker thread stopped unexpectedly: {exc!r}")
        finally:
            with self._lock:
                abandoned = self._abandoned
                if not abandoned:
                    leftovers = self._held()
                    self.intake.clear()
                    self._pending.clear()
                    if leftovers:
                        self._count("shutdown", leftovers)
                    self._finished = True
                self.soft_limit = 0
                self._closing = True
            for request in [*self._waiters, *self._flush_requests]:
                request.ok = False
                request.done.set()
            if transport is not None and not abandoned:
                transport.close()
            WORKER_THREADS.discard(ident)

    def _loop(self) -> None:
        s = self.settings
        pending = self._pending
        interval = s.flush_interval
        next_tick = time.monotonic() + interval
        while True:
            if self._flush_requests:
                self._take_flush_requests()
            self._ingest(bounded=True)
            self._check_waiters()
            if self._closing and (self._abort or time.monotonic() >= self._deadline):
                return
            if self._closing and not pending and not self.intake:
                return
            now = time.monotonic()
            urgent = now >= next_tick or self._waiters or self._closing
            if pending and (urgent or pending.ready(s.batch_size, s.batch_bytes)):
                first_seq, lines = pending.cut(s.batch_size, s.batch_bytes)
                self._deliver(Batch(self._new_batch_id(), first_seq, lines))
                if self._abandoned:
                    return
                continue
            if self.intake and (now >= next_tick or self._closing or self._waiters):
                continue  # more to encode right now
            if now >= next_tick:
                next_tick = now + interval
            self._wake.wait(next_tick - now)
            self._rearm()

    def _rearm(self) -> None:
        """Clear the wake-up and let callers signal again (see `submit_slow`)."""
        self._wake.clear()
        with self._lock:
            if not self._closing:
                self.soft_limit = min(self._wake_at, self.settings.max_buffer_records)

    def _take_flush_requests(self) -> None:
        taken = []
        while self._flush_requests:
            taken.append(self._flush_requests.popleft())
        # Everything submitted before these requests is in the intake now: encode it all, then aim at it.
        self._ingest(bounded=False)
        for request in taken:
            request.target = self._pending.next_seq - 1
            self._waiters.append(request)

    def _check_waiters(self) -> None:
        if not self._waiters:
            return
        if self._inflight_first is not None:
            oldest = self._inflight_first
        else:
            pending = self._pending
            oldest = pending.first_seq if pending.lines else pending.next_seq
        still = []
        for request in self._waiters:
            if request.target is not None and request.target < oldest:
                request.done.set()
            else:
                still.append(request)
        self._waiters = still

    def _ingest(self, *, bounded: bool) -> None:
        """Encode intake items into `pending`: until a batch is ready (bounded) or the intake is empty.

        The worker's hot loop: `Pending.push` (which applies the overflow policy) is only called when the
        entry does not simply fit.
        """
        s = self.settings
        batch_size, batch_bytes = s.batch_size, s.batch_bytes
        pending = self._pending
        queue = pending.lines
        append = queue.append
        room_records = s.max_buffer_records - self._inflight_records
        room_bytes = s.max_buffer_bytes - self._inflight_bytes
        popleft = self.intake.popleft
        encoder = self._encoder
        encode_captured = encoder.encode_captured
        while not (bounded and (len(queue) >= batch_size or pending.nbytes >= batch_bytes)):
            try:
                item = popleft()
            except IndexError:
                return
            try:
                # Records are 4-tuples (CapturedRecord), structlog events 2-tuples (StructEvent, context).
                line = (
                    encode_captured(item) if len(item) == 4 else encoder.encode_struct(item[0], item[1])
                )
            except Exception as exc:  # encoding is total by design; if it is not, count and say so
                self._count_locked("internal_error", 1)
                _diag.report("encode", f"could not encode a record: {exc!r}")
                continue
            size = len(line)
            if queue and len(queue) < room_records and pending.nbytes + size <= room_bytes:
                append(line)  # the common case, inlined; an empty queue goes through push (first_seq)
                pending.next_seq += 1
                pending.nbytes += size
            else:
                dropped = pending.push(line, self._inflight_records, self._inflight_bytes)
                if dropped:
                    self._count_locked("overflow", dropped)

    def _count_locked(self, reason: str, n: int) -> None:
        with self._lock:
            self._count(reason, n)

    def _new_batch_id(self) -> str:
        return f"{self._batch_prefix}-{next(self._batch_numbers)}"

    def _deliver(self, batch: Batch) -> None:
        """Send a batch until it is accepted, split (413) or dropped; only a close deadline stops retries."""
        todo = [batch]
        self._inflight_records = len(batch)
        self._inflight_bytes = batch.nbytes
        while todo:
            current = todo.pop()
            self._inflight_first = current.first_seq
            result: SendResult = self._retrying(self._attempt, current)
            if self._abandoned or result.outcome is Outcome.RETRY:
                # Stopped by the close deadline: the in-flight records stay counted in `_inflight_records`
                # and become `shutdown` losses when the worker (or close(), if it gave up on us) exits.
                return
            self._inflight_records -= len(current)
            self._inflight_bytes -= current.nbytes
            self._settle(current, result, todo)
            self._inflight_first = todo[-1].first_seq if todo else None
            self._check_waiters()

    def _settle(self, batch: Batch, result: SendResult, todo: list[Batch]) -> None:
        outcome = result.outcome
        if outcome is Outcome.OK:
            rejected = len(result.rejected)
            self._sent += len(batch) - rejected
            if rejected:
                self._count_locked("rejected", rejected)
                index, error = result.rejected[0]
                message = f"server rejected {rejected} of {len(batch)} entries; first: #{index}: {error}"
                self._report_once("rejected", message)
            return
        if outcome is Outcome.TOO_LARGE and len(batch) > 1:
            first, second = batch.halves()
            todo.extend((second, first))  # `first` is popped next: order is kept
            self._inflight_records += len(batch)
            self._inflight_bytes += batch.nbytes
            return
        reason = "too_large" if outcome is Outcome.TOO_LARGE else "client_error"
        self._last_error = result.error
        self._count_locked(reason, len(batch))
        self._report_once(f"{reason}:{result.status}", f"dropped {len(batch)} records: {result.error}")

    def _report_once(self, topic: str, message: str) -> None:
        if topic not in self._reported:
            self._reported.add(topic)
            _diag.report(topic, message)

    # ----------------------------------------------------------------- retries (tenacity)

    def _build_retrying(self) -> tenacity.Retrying:
        s = self.settings
        jitter = tenacity.wait_random_exponential(multiplier=s.backoff_initial, max=s.backoff_max)

        def wait(state: tenacity.RetryCallState) -> float:
            outcome = state.outcome
            if outcome is not None and not outcome.failed:
                result: SendResult = outcome.result()
                if result.retry_after is not None:
                    return min(result.retry_after, MAX_RETRY_AFTER)
            return float(jitter(state))

        def stop(state: tenacity.RetryCallState) -> bool:
            # Never by attempt count: while the server is away, records wait in the (bounded) buffer.
            return self._abort or time.monotonic() >= self._deadline

        def before_sleep(state: tenacity.RetryCallState) -> None:
            self._retried += 1
            outcome = state.outcome
            if outcome is not None and not outcome.failed:
                error = outcome.result().error
                self._last_error = error
                _diag.report("retry", f"delivery failing, will retry: {error}")

        return tenacity.Retrying(
            sleep=self._backoff_sleep,
            stop=stop,
            wait=wait,
            retry=tenacity.retry_if_result(lambda result: result.outcome is Outcome.RETRY),
            before_sleep=before_sleep,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )

    def _attempt(self, batch: Batch) -> SendResult:
        cap = None
        if self._deadline != _INFINITY:
            cap = self._deadline - time.monotonic()
            if cap <= 0:
                return SendResult(Outcome.RETRY, error="shutdown deadline reached")
        warm_logging_caches()
        try:
            assert self._transport is not None
            return self._transport.send(batch, timeout=cap)
        except Exception as exc:  # a transport must translate its errors; if it does not, retry anyway
            return SendResult(Outcome.RETRY, error=f"transport error: {exc!r}")

    def _backoff_sleep(self, seconds: float) -> None:
        """tenacity's sleep: interruptible by close, and keeps encoding new records while it waits."""
        until = min(time.monotonic() + seconds, self._deadline)
        while not self._abort:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(remaining)
            self._rearm()
            if self._flush_requests:
                self._take_flush_requests()
            self._ingest(bounded=False)


def drain_all(budget: float) -> None:
    """Close every live pipeline within one shared `budget` (seconds): the atexit hook."""
    deadline = time.monotonic() + budget
    pipelines = list(_PIPELINES)
    for pipeline in pipelines:  # start them all first so they drain in parallel
        pipeline.begin_close(deadline)
    for pipeline in pipelines:
        pipeline.finish_close(deadline)


def _atexit_drain() -> None:
    pipelines = list(_PIPELINES)
    if pipelines:
        drain_all(max(p.settings.shutdown_timeout for p in pipelines))


def _after_fork_in_child() -> None:
    WORKER_THREADS.clear()
    for pipeline in list(_PIPELINES):
        pipeline.after_fork_in_child()


atexit.register(_atexit_drain)
if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)
