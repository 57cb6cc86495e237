"""`DeliveryCore`: the state and policy both SDK drivers share, which differ only in how they wait and send.

The thread worker (`_worker_loop.WorkerLoop`, under `_worker.Pipeline`) and the asyncio client's sending task
(`_async_sender.AsyncSender`, under `_async.AsyncOgLogClient`) both derive from it, the way httpx's `Client`
and `AsyncClient` share `BaseClient`. One copy of: the batch ids, the counters (`Ledger`) and retry policy,
the bounded store of encoded lines and the batch in flight, encoding the intake into that store, the intake's
bound, answering flush waiters, the close deadline, and the fresh identity a forked child needs.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

import tenacity

from ._buffer import Batch, Pending
from ._delivery import AnyLock, InFlight, Ledger, RetryPolicy
from ._entry import EntryEncoder
from ._ingest import ingest
from ._intake_charge import (
    INTAKE_ITEM_BYTES,
    WEIGHT_BYTES,
    ContextCharges,
    intake_limit,
    intake_reserve,
    intake_room,
    settle_weights,
)
from ._items import Item
from ._settings import Settings
from ._transport import Outcome, SendResult

__all__ = ["DeliveryCore", "FlushWaiter"]

INFINITY = float("inf")


class FlushWaiter(Protocol):
    """One flush() call waiting for every record up to `target` (a seq; None until the driver set it)."""

    @property
    def target(self) -> int | None: ...

    def settle(self, ok: bool) -> None:
        """Wake the flush() caller: `ok` False when the records will not be delivered."""


class DeliveryCore:
    """State created by `_reset_core` / `_reset_buffers`; the I/O (wait, send) is the driver's."""

    settings: Settings
    _ledger: Ledger
    _policy: RetryPolicy
    _pending: Pending
    _inflight: InFlight
    _encoder: EntryEncoder
    _batch_prefix: str
    _batch_numbers: itertools.count[int]
    _drop_oldest: bool
    #: Callers wake the driver when the intake reaches this many records (a batch's worth).
    _wake_at: int
    #: The intake's bound in records, recomputed by the driver from the byte budget (`_intake_limit_now`).
    intake_limit: int
    #: `_intake_charge.large_bytes` of every captured record and event waiting in the intake or being encoded.
    intake_large: int = 0
    #: The charged bound contexts among them (`_intake_charge.ContextCharges`; their bytes are in
    #: `intake_large`).
    charges: ContextCharges
    #: `_intake_charge.record_units` of the items in the intake (and the thread worker's `_late`), as
    #: placeholders: appended by callers lock-free after their item, taken back by `_release_intake`. The same
    #: object for the driver's whole life (a caller may hold it).
    intake_weights: deque[None]
    _waiters: list[FlushWaiter]
    #: When a close must be done (on `_clock`); INFINITY while not closing.
    _deadline: float = INFINITY
    #: The thread worker gives up at once when abandoned or aborted; the asyncio client never sets it.
    _abort: bool = False

    def _reset_core(self, lock: AnyLock) -> None:
        """A fresh identity and fresh counters: at construction, and in a forked child (the parent's batch
        ids and counts are the parent's)."""
        s = self.settings
        self._drop_oldest = s.overflow == "drop_oldest"
        self._wake_at = min(s.batch_size, s.max_buffer_records)
        self._batch_prefix = secrets.token_hex(8)
        self._batch_numbers = itertools.count(1)
        self._ledger = Ledger(lock, s.service)
        self._policy = RetryPolicy(s)
        self._encoder = EntryEncoder(s.service)
        self._deadline = INFINITY
        self.intake_large = 0
        self.charges = ContextCharges()

    def _reset_buffers(self) -> None:
        """Empty store and nothing in flight (a new worker's life, or a forked child)."""
        s = self.settings
        self._pending = Pending(s.max_buffer_records, s.max_buffer_bytes, self._drop_oldest)
        self._inflight = InFlight()

    def _room_locked(self, queue: deque[Item], extra: int) -> bool:
        """Whether one more record (`extra` = its `large_bytes` plus its weights' bytes) fits: by count, and
        by the bytes the intake may hold (INTAKE_ITEM_BYTES per record plus the weights of the records
        waiting and the large ones' text)."""
        size = len(queue)
        if size >= self.intake_limit:
            return False
        extra += len(self.intake_weights) * WEIGHT_BYTES
        if not extra:
            return True
        room = intake_room(self.settings.max_buffer_bytes, self._pending.nbytes + self._inflight.nbytes)
        return (size + 1) * INTAKE_ITEM_BYTES + self.intake_large + extra <= room

    def _fits_alone_locked(self, extra: int) -> bool:
        """Whether one more record (`extra` as for `_room_locked`, less the waiting records' weights) would
        fit in an empty intake, given the encoded bytes buffered and in flight."""
        held = self._pending.nbytes + self._inflight.nbytes
        return INTAKE_ITEM_BYTES + extra <= intake_room(self.settings.max_buffer_bytes, held)

    def intake_charged(self, records: int) -> int:
        """What `records` items waiting in the intake are charged, in bytes, in the units callers are
        admitted by: INTAKE_ITEM_BYTES each, plus the weights of the mid-size ones and the text of the large
        ones (and charged bound contexts) among every item waiting."""
        return records * INTAKE_ITEM_BYTES + len(self.intake_weights) * WEIGHT_BYTES + self.intake_large

    def _make_room_locked(self, queue: deque[Item], extra: int) -> bool:
        """Apply the overflow policy for one more record; False (counted) when it is the one dropped.
        Callers hold the lock the driver takes items out of the intake under (`_ingest.ingest`).

        drop_oldest drops as many of the oldest as it takes (a large record may need several), but only what
        is there: the rest of the room may be held by records the worker is encoding (`intake_large`). A
        record that would not fit even in an empty intake is dropped alone: it throws nothing away (it used
        to empty the intake first, then be dropped itself: 901 records lost for one)."""
        if self._room_locked(queue, extra):
            return True
        if self._drop_oldest and self._fits_alone_locked(extra):
            while queue:
                # The worker pops under this lock too; never below 0 (see `large_bytes`).
                self._release_intake([queue.popleft()])
                self._ledger.count("overflow", 1)
                if self._room_locked(queue, extra):
                    return True
        self._ledger.count("overflow", 1)
        return False

    def sigterm_locks(self) -> tuple[AnyLock, ...]:
        """The locks a drain takes that the thread a signal handler interrupts may hold (reentrant ones, so
        the SIGTERM drain can let go of them for that thread: `_lifecycle._drain_on_sigterm`)."""
        return (self._ledger.lock,)

    def _clock(self) -> float:
        """The clock `_deadline` is on (the asyncio client uses its loop's)."""
        return time.monotonic()

    def _new_batch_id(self) -> str:
        """`<random per-process prefix>-<n>`: the server's idempotency key of one batch."""
        return f"{self._batch_prefix}-{next(self._batch_numbers)}"

    def _buffered(self) -> int:
        """Records taken from the intake and not yet settled: being moved, encoded, or in flight."""
        pending = self._pending
        return len(pending) + pending.moving + self._inflight.records

    def _intake_limit_now(self) -> int:
        """The intake's bound given what is encoded and in flight (`_intake_charge.intake_limit`)."""
        s = self.settings
        held = self._pending.nbytes + self._inflight.nbytes
        return intake_limit(s.max_buffer_records, s.max_buffer_bytes, held)

    def _encode_intake(
        self,
        intake: deque[Item],
        *,
        bounded: bool,
        limit: int = -1,
        on_done: Callable[[list[Item]], None] | None = None,
    ) -> int:
        """Encode intake items into `_pending` (`_ingest.ingest`); the batch in flight shares the bounds.
        `on_done` defaults to `_release_intake` (the asyncio client's accounting). After each chunk is stored
        the intake's bound follows (`_follow_intake_limit`). The encoded buffer stops `intake_reserve` short
        of the budget (passed as held), so the records the intake always admits fit in it too."""
        inflight = self._inflight
        reserve = intake_reserve(self.settings.max_buffer_bytes)
        release = self._release_intake if on_done is None else on_done

        def stored(items: list[Item]) -> None:
            release(items)
            self._follow_intake_limit()

        return ingest(
            intake,
            self._pending,
            self._encoder,
            self.settings,
            self._ledger,
            bounded=bounded,
            held_records=inflight.records,
            held_bytes=inflight.nbytes + reserve,
            limit=limit,
            on_done=stored,
        )

    def _follow_intake_limit(self) -> None:
        """Recompute `intake_limit` from the bytes now encoded and in flight, right after a chunk of at most
        INGEST_CHUNK records was stored (under the lock): records leave the intake and their encoded lines
        arrive in one step, so callers never fill the room the encoded bytes took. (Recomputed only once per
        batch, the intake overshot the budget by up to what an ingest encoded in between: one batch, or a
        whole backlog while backing off.) A driver's fast-path gate (`soft_limit`) is lowered with it."""
        limit = self._intake_limit_now()
        self.intake_limit = limit
        if getattr(self, "soft_limit", 0) > limit:
            self.soft_limit = limit

    def _uncharge_locked(self, context: object, charged: bool) -> bool:
        """The record or event carrying `context` was refused after `charges.enter`: take its count back
        (what that released was never added to `intake_large`). Returns False, the refusal."""
        if charged:
            self.charges.leave(context)
        return False

    def _release_intake(self, items: Iterable[Item]) -> None:
        """`items` left the intake for good (called under the lock): their size and their weights
        (`_intake_charge.settle_weights`) stop counting against the intake's room."""
        if self.intake_weights:
            items = items if isinstance(items, (list, deque)) else list(items)
            settle_weights(self.intake_weights, items)
        if self.intake_large or self.charges:
            self.intake_large = max(0, self.intake_large - self.charges.release(items))

    def _oldest_unsettled(self) -> int:
        """The seq of the oldest record not yet settled (a flush waiting for less is done)."""
        return self._inflight.oldest_unsettled(self._pending)

    def _check_waiters(self) -> None:
        """Wake every flush() whose records are all settled."""
        if not self._waiters:
            return
        oldest = self._oldest_unsettled()
        still = []
        for waiter in self._waiters:
            target = waiter.target
            if target is not None and target < oldest:
                waiter.settle(True)
            else:
                still.append(waiter)
        self._waiters = still

    def _settle(self, batch: Batch, result: SendResult) -> None:
        """Account for one answered request (`InFlight.settle`) and wake the flushes it completes."""
        self._inflight.settle(batch, result, self._ledger)
        self._check_waiters()

    def _stop_retrying(self, state: tenacity.RetryCallState) -> bool:
        # Never by attempt count: while the server is away, records wait in the (bounded) buffer.
        return self._abort or self._clock() >= self._deadline

    def _send_cap(self) -> float | SendResult | None:
        """How long the next attempt may take: None (no close deadline), seconds, or, past the deadline,
        the result that ends the retries."""
        if self._deadline == INFINITY:
            return None
        cap = self._deadline - self._clock()
        if cap <= 0:
            return SendResult(Outcome.RETRY, error="shutdown deadline reached")
        return cap
