"""The processor's inserts in flight: up to `limit` batches at once, never two that share a row id.

One ClickHouse insert of a 50,000-row batch keeps about one core busy (parsing, sorting, compressing and
indexing one block is one pipeline); two inserts at once store about twice the rows per second on two cores
(#14, docs/benchmarks.md "Two inserts in flight"). So a batch cut while another insert runs starts at once on
a free lane of the sink (`Storage`: a second chDB connection) instead of waiting for it.

Exactly once still holds: a batch's duplicate check (`inserts.existing_keys`) only sees rows already stored,
so two batches in flight together must not be able to hold the same entry. A batch sharing any row id with a
batch in flight (a message redelivered while its first delivery is being inserted, a client's resend past the
stream's duplicate window) waits until that one is done, then checks - exactly as with one insert at a time.
Batches with disjoint ids cannot duplicate each other whatever the order of their inserts.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.msg import Msg

from .flush import Flusher, Item

__all__ = ["DEFAULT_INSERTS_IN_FLIGHT", "InFlight"]

#: Batches inserted at once. 2: one insert uses about one core, and the embedded stack ships with two insert
#: lanes (`storage.INSERT_LANES`); more would only queue inside the sink.
DEFAULT_INSERTS_IN_FLIGHT = 2


class InFlight:
    """Starts `Flusher.flush` tasks, at most `limit` at once (ValueError below 1), never two whose batches
    share a row id; a batch waiting for its turn is kept from ack_wait's redelivery (`Flusher.keep_alive`)."""

    def __init__(self, flusher: Flusher, limit: int = DEFAULT_INSERTS_IN_FLIGHT) -> None:
        if limit < 1:
            raise ValueError(f"inserts in flight must be at least 1, got {limit!r}")
        self.flusher = flusher
        self.limit = limit
        self._tasks: dict[asyncio.Task[None], frozenset[str]] = {}

    @property
    def busy(self) -> bool:
        """An insert is in flight."""
        return any(not task.done() for task in self._tasks)

    @property
    def full(self) -> bool:
        """Every lane is taken: a batch cut now would wait."""
        return sum(not task.done() for task in self._tasks) >= self.limit

    def _reap(self) -> None:
        """Forget finished flushes; a flush that raised (flush() handles insert failures itself, so a bug)
        raises here, in the processor's loop, as it did when the loop awaited each flush."""
        for task in [task for task in self._tasks if task.done()]:
            del self._tasks[task]
            task.result()

    async def start(self, items: list[Item], rest: list[Msg] | None = None) -> None:
        """Start flushing `items` once a lane is free and no batch in flight shares one of their row ids.
        `rest`: the messages of the same fetch not yet in a batch, kept alive too while this one waits."""
        ids = frozenset(row_id for item in items for row_id in item.ids)
        alive: asyncio.Task[None] | None = None
        try:
            while True:
                self._reap()
                overlapping = [task for task, held in self._tasks.items() if not held.isdisjoint(ids)]
                if not overlapping and len(self._tasks) < self.limit:
                    break
                if alive is None:
                    held_msgs = [item.msg for item in items] + (rest or [])
                    alive = asyncio.create_task(self.flusher.keep_alive(held_msgs))
                await asyncio.wait(overlapping or list(self._tasks), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if alive is not None:
                alive.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await alive
        task = asyncio.create_task(self.flusher.flush(items), name="oglog-flush")
        self._tasks[task] = ids

    async def drain(self) -> None:
        """Wait for every flush in flight (each ends: acked, nak'ed or dead-lettered)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))
            self._reap()

    async def cancel(self) -> None:
        """Cancel the flushes still running (their messages are redelivered after ack_wait)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
