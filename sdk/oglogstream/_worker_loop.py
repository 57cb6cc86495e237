"""What runs on a pipeline's worker thread: encode, batch, send (with retries), spool, answer flush waiters.

`WorkerLoop` is the thread side of `_worker.Pipeline` (which adds the caller side and the lifecycle); its
spool side is `_worker_spool`, when it leaves the GIL to others `_worker_pace`. The worker never calls
`logging` and never takes a logging lock of its own; it takes the pipeline's `_lock` only for short
bookkeeping, never across a wait or a send.

Requests go out on the worker's sending thread (`_sender`), one at a time: while one is on its way (its gzip
and socket waits release the GIL) the worker encodes the next batch (`_worker_pace.encoding_ahead`), then
settles the answer itself - retries, 413 halves, the ledger and flush waiters stay on the worker thread.

With `spool_dir`, every batch is written to the disk spool (`_spool`) when it is cut and sent from there: the
head of the spool is tried once per turn of the loop, and while the server is away the next try is scheduled
(backoff) instead of waited for, so the worker keeps encoding and spooling. Memory stays at one batch plus the
spool's memory copies (bounded); the disk is bounded by spool_max_bytes / spool_max_age.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import tenacity

from . import _diag, _otel, _worker_pace, _worker_spool
from ._buffer import Batch
from ._core import DeliveryCore
from ._delivery import AnyLock
from ._entry import EntryEncoder
from ._intake_charge import ContextCharges
from ._items import Item
from ._lifecycle import WORKER_THREADS, Exit
from ._sender import SENDER_GRACE, Sender
from ._settings import Settings
from ._spool import Spool
from ._transport import Outcome, SendResult, Transport, attempt_deadline, warm_logging_caches

__all__ = ["FlushRequest", "WorkerLoop"]


class FlushRequest:
    """One flush() call: the worker sets `done` once every record up to `target` (a seq) is settled. Until the
    records logged before it are encoded, `target` is None and `ahead` counts those still in the intake."""

    __slots__ = ("ahead", "done", "ok", "target")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = True
        self.target: int | None = None
        self.ahead = 0

    def settle(self, ok: bool) -> None:
        if not ok:
            self.ok = False
        self.done.set()


class WorkerLoop(DeliveryCore):
    """The worker thread's side of a pipeline; the state is created by `Pipeline._reset*`."""

    settings: Settings
    intake: deque[Item]
    _late: deque[Item]
    soft_limit: int
    intake_limit: int
    intake_large: int
    charges: ContextCharges
    _transport_factory: Callable[[Settings], Transport]
    _transport: Transport | None
    _spool: Spool | None
    _spool_left: tuple[int, int]
    _lock: threading.RLock
    _wake: threading.Event
    _flush_requests: deque[FlushRequest]
    _aiming: list[FlushRequest]
    _ident: int | None
    _closing: bool
    _abandoned: bool
    _retry_at: float
    _spool_failures: int
    _pending_since: float | None
    _linger: float
    _retrying: tenacity.Retrying
    #: The worker's sending thread (`_sender`), made when the worker starts.
    _sender: Sender | None

    def _count(self, reason: str, n: int) -> None:
        self._ledger.count(reason, n)

    def intake_bytes(self) -> int:
        """What the caller-side intake is charged now, in bytes, in the units callers are admitted by:
        INTAKE_ITEM_BYTES a record, the weights of mid-size ones, the text of large ones. Read without the
        lock: a look that may be a few records old (the worker's pacing, `oglog send`), not an account."""
        return self.intake_charged(len(self.intake))

    def _finish_run(self, abandoned: bool) -> None:
        """The worker's last act (see `Pipeline._finish_run`)."""
        raise NotImplementedError

    def _clear_intake_locked(self) -> int:
        """Empty the intake (its records are counted by the caller); returns how many there were."""
        intake = self.intake
        self._release_intake(intake)
        count = len(intake)
        intake.clear()
        return count

    def _ingested(self, items: list[Item]) -> None:
        """`ingest` is done with `items` (under `_lock`): their text stops counting against the intake room
        (not before: while they are encoded they still occupy memory)."""
        if self._aiming:
            self._aim_flushes(len(items))
        if self.intake_large or self.charges or self.intake_weights:
            # Never below 0: an abandoned worker's intake was emptied (and the count reset) meanwhile.
            self._release_intake(items)
            if not self.intake and not self._late:
                # Nothing left that is charged: 0 exactly, even if a record's `__dict__` changed after its
                # capture (a later handler's formatter), so the charge cannot drift. (A caller appends its
                # record, then its weights: a clear in between leaves them over-charged until the next.)
                self.intake_large = 0
                self.charges.clear()
                self.intake_weights.clear()

    def _held(self) -> int:
        return len(self.intake) + self._buffered()

    def _reset_core(self, lock: AnyLock) -> None:
        super()._reset_core(lock)
        self._ledger.queued = self._queued_locked

    def _queued_locked(self) -> int:
        """`Stats.queued` (under `_lock`): records logged while closing, and what the worker holds: in
        memory, and this process's spooled records while it may still send them. Once close() gave up on the
        worker (stuck on a slow answer), what it held in memory was counted as `shutdown`, and its spooled
        records stay for the next process: `spooled`, not queued, as after a clean close (before, found by
        review: `queued` 20,000 or 0 after the same close, depending on whether the answer came first)."""
        spool = self._spool
        if self._abandoned:
            return len(self._late)
        return self._held() + len(self._late) + (spool.own_records if spool is not None else 0)

    def _run(self) -> None:
        ident = threading.get_ident()
        self._ident = ident
        WORKER_THREADS.add(ident)
        transport: Transport | None = None
        #: Flush requests (also in `_waiters`) whose target is set once their records left the intake.
        self._aiming = []
        try:
            self._encoder = EntryEncoder(self.settings.service)
            if self._transport is None:
                self._transport = self._transport_factory(self.settings)
            transport = self._transport
            arguments = self._policy.tenacity_arguments(self._ledger, self._stop_retrying)
            self._retrying = tenacity.Retrying(sleep=self._backoff_sleep, **arguments)
            self._sender = Sender(f"{threading.current_thread().name}-sender", lambda: self._wake.set())
            self._sender.start()
            _worker_spool.open_spool(self)
            self._loop()
        except BaseException as exc:  # never let the thread die silently; records stay counted
            self._ledger.note_error(f"worker crashed: {exc!r}")
            _diag.report("worker", f"worker thread stopped unexpectedly: {exc!r}")
        finally:
            if self._sender is not None:
                self._sender.close()
            _worker_spool.spill(self)
            with self._lock:
                abandoned = self._abandoned
                if not abandoned:
                    self._inflight.give_up(self._ledger, self._held())
                    self._clear_intake_locked()
                    self._pending.clear()
                    self._inflight.clear()
                self.soft_limit = 0
                self._closing = True
            for request in [*self._waiters, *self._flush_requests]:
                request.settle(False)
            if transport is not None and not abandoned:
                transport.close()
            spool = self._spool
            if spool is not None and not abandoned:
                self._spool_left = (spool.records, spool.adopted_total)
                spool.close()
                self._spool = None
            WORKER_THREADS.discard(ident)
            self._finish_run(abandoned)

    def _loop(self) -> None:
        s = self.settings
        pending = self._pending
        interval = s.flush_interval
        next_tick = time.monotonic() + interval
        mark = (0, time.monotonic())
        # A full batch went out and the rest of that backlog is still pending: once the intake is empty (the
        # burst is over, everything is encoded), the remainder goes at once rather than at the next tick.
        tail_due = False
        while True:
            if self._flush_requests:
                self._take_flush_requests()
            elif _worker_pace.bursting(len(self.intake) - mark[0], time.monotonic() - mark[1]):
                _worker_pace.yield_to_callers(self, mark)
            self._ingest(bounded=True)
            mark = (len(self.intake), time.monotonic())
            self._check_waiters()
            if self._closing and (self._abort or time.monotonic() >= self._deadline):
                return
            spool = self._spool
            if self._closing and spool is not None and (pending or self.intake):
                # Closing with a spool: everything in memory goes to disk first (local and fast), then
                # whatever time is left is spent sending. At the deadline nothing unsent is only in memory.
                _worker_spool.spill(self)
            # With a spool, records are safe on disk: a failing server does not hold up the exit.
            if (
                self._closing
                and not pending
                and not self.intake
                and (spool is None or spool.head() is None or self._spool_failures)
            ):
                return
            now = time.monotonic()
            urgent = now >= next_tick or self._waiters or self._closing or (tail_due and not self.intake)
            if self._linger:
                if not pending:
                    self._pending_since = None
                elif self._pending_since is None:
                    self._pending_since = now
                elif now >= self._pending_since + self._linger:
                    urgent = True
            if pending and (urgent or pending.ready(s.batch_size, s.batch_bytes)):
                tail_due = not urgent
                if spool is None:
                    self._deliver(self._inflight.take(pending, s, self._new_batch_id(), self._lock))
                    if self._abandoned:
                        return
                    continue
                with self._lock:  # cut, spooled and no longer moving in one step, for stats()
                    if self._abandoned:
                        return  # close() counted what `pending` holds as lost: spooled, it would count twice
                    first_seq, lines = pending.cut(s.batch_size, s.batch_bytes)
                    batch = Batch(self._new_batch_id(), first_seq, lines)
                    spooled = spool.append(batch)
                    if spooled:
                        pending.moving = 0
                if spooled:
                    if now >= self._retry_at:
                        # One send per batch spooled, so a steady stream cannot starve the sending side.
                        _worker_spool.send_spooled(self, spool)
                else:
                    self._deliver(batch)
                if self._abandoned:
                    return
                continue
            if spool is not None:
                with self._lock:
                    spool.scan(now)
                if spool.head() is not None and now >= self._retry_at:
                    _worker_spool.send_spooled(self, spool)
                    if self._abandoned:
                        return
                    continue
            if self.intake and (now >= next_tick or self._closing or self._waiters):
                continue  # more to encode right now
            if now >= next_tick:
                next_tick = now + interval
            if self._linger and not pending:
                with self._lock:  # idle in a forked child: the next record must wake us (FORK_LINGER)
                    self.soft_limit = self._soft_limit_locked(idle=True)
                if self.intake:
                    continue  # arrived before the line above, without waking us
            wake_at = next_tick
            if self._pending_since is not None:
                wake_at = min(wake_at, self._pending_since + self._linger)
            if spool is not None and spool.head() is not None:
                wake_at = min(wake_at, self._retry_at)
            self._wake.wait(max(0.0, wake_at - now))
            self._rearm()

    def _rearm(self) -> None:
        """Clear the wake-up and let callers signal again (see `submit_slow`)."""
        if _otel.current_span is None:
            _otel.refresh()
        self._wake.clear()
        limit = self._intake_limit_now()
        # Lingering in a forked child with nothing waiting: the next record must wake us to start the clock.
        idle = bool(self._linger) and self._pending_since is None and not self._pending
        with self._lock:
            self.intake_limit = limit
            self.soft_limit = self._soft_limit_locked(idle=idle)

    def _soft_limit_locked(self, *, idle: bool = False) -> int:
        """The intake length at which callers take the slow path (which wakes us): a batch's worth, or 0 -
        every record - while closing, at interpreter exit (each record waits for its own delivery, see
        `Pipeline._send_at_exit`), or when `idle` (lingering in a forked child with nothing waiting: the next
        record must wake us to start the FORK_LINGER clock)."""
        if idle or self._closing or Exit.started:
            return 0
        return min(self._wake_at, self.intake_limit)

    def _take_flush_requests(self) -> None:
        """Aim the new flush() calls at what the intake holds now (everything logged before them): their
        target is set once that many items were encoded (`_aim_flushes`), so the batches before it go out
        while the rest is encoded, not after all of it."""
        with self._lock:
            ahead = len(self.intake)
            while self._flush_requests:
                request = self._flush_requests.popleft()
                request.ahead = ahead
                self._waiters.append(request)
                self._aiming.append(request)
            self._aim_flushes(0)

    def _aim_flushes(self, taken: int) -> None:
        """`taken` more items left the intake through `ingest` (under `_lock`): a request whose items all
        did, or any once the intake is empty, aims at the last seq stored. Items that left otherwise (dropped
        as `overflow` from the intake's head) only make a target later, never earlier, than it needs to be."""
        empty = not self.intake
        aiming = []
        for request in self._aiming:
            request.ahead -= taken
            if request.ahead <= 0 or empty:
                request.target = self._pending.next_seq - 1
            else:
                aiming.append(request)
        self._aiming = aiming

    def _oldest_unsettled(self) -> int:
        oldest = super()._oldest_unsettled()
        spool = self._spool
        if spool is not None:
            spooled = spool.own_first_seq
            if spooled is not None:
                oldest = min(oldest, spooled)
        return oldest

    def _ingest(self, *, bounded: bool) -> None:
        self._encode_intake(self.intake, bounded=bounded, on_done=self._ingested)

    def _deliver(self, batch: Batch) -> bool:
        """Send a batch (and its 413 halves) until accepted, split or dropped; only a close deadline stops
        retries. (A spooled batch goes through `_worker_spool.send_spooled` instead.)

        Returns False when stopped by the deadline (the in-flight records then stay counted in
        `_inflight.records` and become `shutdown` losses when the worker, or close(), gives up).
        """
        inflight = self._inflight
        with self._lock:  # in flight and no longer moving in one step, for stats()
            inflight.begin(batch)
            self._pending.moving = 0
        while (current := inflight.next()) is not None:
            result: SendResult = self._retrying(self._attempt, current)
            if result.outcome is Outcome.RETRY:
                return False
            with self._lock:  # close() abandons under this lock: counted `unconfirmed` there, or sent here
                if self._abandoned:
                    return False
                self._settle(current, result)
        return True

    # ----------------------------------------------------------------- retries (tenacity)

    def _attempt(self, batch: Batch) -> SendResult:
        inflight = self._inflight
        cap = self._send_cap()
        if isinstance(cap, SendResult):
            return cap  # not sent again: what its requests may have stored stands (`InFlight.unconfirmed`)
        warm_logging_caches()
        transport, sender = self._transport, self._sender
        assert transport is not None and sender is not None
        deadline = time.monotonic() + attempt_deadline(self.settings, cap) + SENDER_GRACE
        meanwhile = _worker_pace.encoding_ahead(self)
        def idle(seconds: float) -> None:
            if self._closing and self._spool is not None and (self._pending or self.intake):
                # close() began while an answer is awaited (a slow server): spool memory now, not after it.
                _worker_spool.spill(self, evict=False)
            _worker_pace.await_answer(self, seconds)

        # A spooled frame (`_worker_spool.send_spooled`) is not in flight: given up, it stays spooled.
        in_flight = batch is inflight.current
        going_out = inflight.going_out(batch, self._lock) if in_flight else None
        result = sender.send(
            transport, batch, cap, deadline=deadline, meanwhile=meanwhile, idle=idle, going_out=going_out
        )
        if in_flight:
            inflight.attempted(batch, result, self._lock)
        return result

    def _idle(self, seconds: float) -> None:
        """Wait until woken (an answer, a batch's worth of new records, flush, close) or `seconds` passed."""
        self._wake.wait(seconds)
        self._rearm()

    def _backoff_sleep(self, seconds: float) -> None:
        """tenacity's sleep: interruptible by close, and keeps encoding new records while it waits."""
        until = min(time.monotonic() + seconds, self._deadline)
        while not self._abort:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self._idle(remaining)
            if self._flush_requests:
                self._take_flush_requests()
            self._ingest(bounded=False)
