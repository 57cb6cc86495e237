"""The sending task of `AsyncOgLogClient` (`_async`): encode in slices, batch, send with retries, settle.

`AsyncSender` is the loop side of the client; the state is created by `AsyncOgLogClient.__init__`. It uses
the same encoder, batching, retry policy and counters as the worker thread (`_core`). Encoding runs in
slices of ENCODE_SLICE events with a yield to the loop between them, so a burst never holds the loop for long.
When the task ends (aclose(), or the loop ended), the client can start a new one (`_reset_task`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque

import tenacity

from . import _diag
from ._buffer import Batch
from ._core import INFINITY, DeliveryCore
from ._delivery import AnyLock, InFlight
from ._items import Item
from ._transport import AsyncHttpTransport, Outcome, SendResult

__all__ = ["ENCODE_SLICE", "TRANSPORT_CLOSE_WAIT", "AsyncSender", "PartsInFlight", "Waiter"]

#: Records encoded per slice before the task yields to the loop (bounds the loop lag a burst causes).
ENCODE_SLICE = 200
#: Seconds a loop-ending resend waits for the cancelled request's client to close (see `_fresh_transport`).
TRANSPORT_CLOSE_WAIT = 0.5


class Waiter:
    """One `flush()` call: resolved once every event up to `target` (a seq) is settled."""

    __slots__ = ("future", "target")

    def __init__(self, target: int, future: asyncio.Future[bool]) -> None:
        self.target = target
        self.future = future

    def settle(self, ok: bool) -> None:
        if not self.future.done():
            self.future.set_result(ok)


class PartsInFlight(InFlight):
    """`InFlight` that can hand its unsettled parts to another sender: a task frozen under the SIGTERM
    handler (or whose loop died) stops at any bytecode, so `unsettled` must be right at every one of them.

    `current` is set before the part leaves the to-do list (peek, set, pop): at every moment a part not yet
    settled is in the to-do list, or it is `current` and the to-do list holds fewer records than
    `records` (settling or splitting `current` lowers `records` or refills the list under the lock)."""

    __slots__ = ()

    def next(self) -> Batch | None:
        if self._todo:
            self.current = self._todo[-1]
        return super().next()

    def unsettled(self) -> list[Batch]:
        """The parts not yet settled, oldest first, each under the id it was (or will be) sent with."""
        parts = self._todo[::-1]
        current = self.current
        if current is not None and sum(map(len, parts)) < self.records:
            parts.insert(0, current)
        return parts

    def resume(self, parts: list[Batch]) -> None:
        """In flight again: `parts` (from `unsettled`) are sent next, each under its own id, so the server's
        dedup drops a part it stored before the last sender stopped."""
        self._todo = parts[::-1]
        self.current = None
        self.records = sum(map(len, parts))
        self.nbytes = sum(part.nbytes for part in parts)


class AsyncSender(DeliveryCore):
    """The sending task's side of `AsyncOgLogClient`."""

    _intake: deque[Item]
    _inflight: PartsInFlight
    #: Reentrant so that the SIGTERM handler can release it for the main thread it interrupted
    #: (`_lifecycle._drain_on_sigterm`), as the thread worker's.
    _lock: threading.RLock
    _loop: asyncio.AbstractEventLoop | None
    _task: asyncio.Task[None] | None
    _wake: asyncio.Event | None
    _transport: AsyncHttpTransport | None
    _closing: bool
    #: Which sending task owns the state: a task whose number is no longer this one (its loop was closed
    #: and another task took over) never touches the state again, not even when it is garbage collected.
    _generation: int
    #: What a task taken over (`_async_loop._take_over_from_dead_loop`) had not settled of its batch, as the
    #: parts it was sending (`PartsInFlight.unsettled`): the next task sends them first, under their ids.
    #: Their records stay counted in `_inflight.records` meanwhile.
    _carry: list[Batch] | None

    def _reset_buffers(self) -> None:
        super()._reset_buffers()
        self._inflight = PartsInFlight()

    def _reset_core(self, lock: AnyLock) -> None:
        super()._reset_core(lock)
        self._ledger.queued = self._queued_locked

    def _queued_locked(self) -> int:
        """`Stats.queued` (under `_lock`): events in the intake, being encoded, buffered or in flight."""
        return len(self._intake) + self._buffered()

    def _reset_task(self) -> None:
        """No sending task: the next event (or flush/aclose) on a running loop starts a new one."""
        self._closing = False
        self._deadline = INFINITY
        self._loop = self._task = self._wake = self._transport = None

    async def _run(self, generation: int) -> None:
        """The task's whole life. `generation` is the number `_start` gave it (see `_generation`)."""
        owner = True
        try:
            await self._loop_body()
        except GeneratorExit:
            # Closed without being run to the end: its loop was closed and the task garbage collected.
            # Awaiting is impossible now, and the state may already belong to a newer task
            # (`_take_over_from_dead_loop` accounts for what this one held): leave everything alone.
            owner = False
            raise
        except asyncio.CancelledError:
            if generation != self._generation:
                owner = False
                raise
            if not self._closing:  # the loop is shutting down (asyncio.run's cleanup): deliver what we can
                self._closing = True
                assert self._loop is not None
                self._deadline = self._loop.time() + self.settings.shutdown_timeout
                # The cancelled send (or backoff) is not settled: sent again first, each part under its id,
                # so a copy the server stored is dropped by its dedup (before: given up, 'unconfirmed').
                with self._lock:
                    self._carry_over()
                with contextlib.suppress(BaseException):
                    await self._fresh_transport()
                    await self._loop_body()
            raise
        except Exception as exc:  # never let the task die silently; records stay counted
            self._ledger.note_error(f"sender task crashed: {exc!r}")
            _diag.report("worker", f"asyncio sender task stopped unexpectedly: {exc!r}")
        finally:
            if owner and generation == self._generation:
                transport = self._transport
                self._finish()
                if transport is not None:
                    await transport.aclose()

    async def _fresh_transport(self) -> None:
        """The cancelled request may still hold the client's one pooled connection (`_transport._LIMITS`):
        the resend would wait for it until the deadline (found in CI: 100 'unconfirmed' after 5 s). Resend on
        a new client; the old one is closed within TRANSPORT_CLOSE_WAIT."""
        old = self._transport
        if old is None:
            return
        fresh = AsyncHttpTransport(self.settings)
        fresh.offload_gzip = old.offload_gzip
        self._transport = fresh
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(old.aclose(), TRANSPORT_CLOSE_WAIT)

    def _finish(self) -> None:
        """The task ends: what it still holds is lost (counted once: in flight and maybe stored as
        `unconfirmed`, the rest `shutdown`), and the client can start a new task (on this loop after
        aclose(), or on the next loop after asyncio.run() ended). One step under the lock, so `stats()`
        never sees the records gone and not yet counted; events other threads append meanwhile stay in
        the intake (counted as queued) for the next task."""
        intake = self._intake
        with self._lock:
            taken = len(intake)
            self._inflight.give_up(self._ledger, taken + self._buffered())
            popleft = intake.popleft
            # not clear(): an append racing with this is kept, not lost uncounted
            self._ingested([popleft() for _ in range(taken)])
            self._pending.clear()
            self._inflight.clear()
            self._carry = None
            self._reset_task()
        self._ledger.summarize_losses()
        for waiter in self._waiters:
            waiter.settle(False)

    async def _loop_body(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        wake = self._wake
        pending = self._pending
        arguments = self._policy.tenacity_arguments(self._ledger, self._stop_retrying)
        retrying = tenacity.AsyncRetrying(sleep=self._backoff_sleep, **arguments)
        next_tick = loop.time() + s.flush_interval
        carried, self._carry = self._carry, None
        if carried is not None and not await self._deliver(retrying, carried):
            return
        while True:
            if self._ingest(bounded=True, limit=ENCODE_SLICE) == ENCODE_SLICE:
                await asyncio.sleep(0)  # let the application run between slices
            self._check_waiters()
            now = loop.time()
            if self._closing and now >= self._deadline:
                return
            if self._closing and not pending and not self._intake:
                return
            urgent = now >= next_tick or self._waiters or self._closing
            if pending and (urgent or pending.ready(s.batch_size, s.batch_bytes)):
                batch = self._inflight.take(pending, s, self._new_batch_id(), self._lock)
                if not await self._deliver(retrying, [batch]):
                    return
                continue
            if self._intake and (urgent or len(self._intake) >= ENCODE_SLICE):
                continue
            if now >= next_tick:
                next_tick = now + s.flush_interval
            wake.clear()
            if self._intake:  # arrived between the checks above and clear(): do not sleep on it
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), max(0.0, next_tick - now))

    def _clock(self) -> float:
        loop = self._loop
        return loop.time() if loop is not None else super()._clock()

    def _ingest(self, *, bounded: bool, limit: int = -1) -> int:
        self.intake_limit = self._intake_limit_now()
        return self._encode_intake(self._intake, bounded=bounded, limit=limit, on_done=self._ingested)

    def _ingested(self, items: list[Item]) -> None:
        """`items` left the intake (under the lock): their charges are taken back (`_release_intake`); once
        the intake is empty, every charge is 0 exactly. A thread appends its event, then its weights: when the
        sender took the event in between, its weights would otherwise stay charged for good."""
        self._release_intake(items)
        if not self._intake and (self.intake_weights or self.intake_large or self.charges):
            self.intake_weights.clear()
            self.intake_large = 0
            self.charges.clear()

    async def _deliver(self, retrying: tenacity.AsyncRetrying, parts: list[Batch]) -> bool:
        """As the worker's `_deliver`: retry `parts` (a new batch, or what a task taken over left, oldest
        first) until sent, split or dropped; False if the deadline hit."""
        inflight = self._inflight
        with self._lock:  # in flight and no longer moving in one step, for stats()
            inflight.resume(parts)
            self._pending.moving = 0
        while (current := inflight.next()) is not None:
            result: SendResult = await retrying(self._attempt, current)
            if result.outcome is Outcome.RETRY:
                return False
            self._settle(current, result)
        return True

    async def _attempt(self, batch: Batch) -> SendResult:
        cap = self._send_cap()
        inflight = self._inflight
        if isinstance(cap, SendResult):
            return cap  # not sent again: what its requests may have stored stands (`InFlight.unconfirmed`)
        assert self._transport is not None and self._loop is not None
        going_out = inflight.going_out(batch, self._lock)
        result = await self._transport.send(batch, timeout=cap, going_out=going_out)
        inflight.attempted(batch, result, self._lock)
        return result

    def _carry_over(self) -> None:
        """The task is taken over: the parts of its batch not yet settled go to the next task, which sends
        them first, each under the id it had (a 413 half keeps `<id>a`/`<id>b`), so the server's dedup
        drops a part it stored before the answer was lost. A carry no task has picked up yet stays."""
        inflight = self._inflight
        if self._carry is None:
            parts = inflight.unsettled() if inflight.records else []
            self._carry = parts or None
        if self._carry is None:
            inflight.clear()

    async def _backoff_sleep(self, seconds: float) -> None:
        """Interruptible by aclose (which moves the deadline in); keeps encoding new events meanwhile."""
        assert self._loop is not None and self._wake is not None
        loop, wake = self._loop, self._wake
        until = min(loop.time() + seconds, self._deadline)
        while True:
            remaining = until - loop.time()
            if remaining <= 0:
                return
            wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), remaining)
            until = min(until, self._deadline)
            self._ingest(bounded=False, limit=ENCODE_SLICE)
