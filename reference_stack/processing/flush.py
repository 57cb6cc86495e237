"""Flushing a batch of the processing role: insert with retries, isolate refused rows, ack/nak/dead-letter.

Rows go to a `Sink` (sink.py; ClickHouse's is `storage.Storage`), which also classifies its failures.
Transient ones (connection, memory, merges behind) are retried with exponential backoff (tenacity,
MAX_RETRIES), then the messages are nak'ed with a delay - never dropped. Poison (rows the sink refuses: parse,
type, range, too many days for one insert) is never retried as such: the batch is stored message by message, a
refused message bisected down to the rows that cannot be stored (`Sink.insert_isolating`), and only those go
to the dead-letter stream (deadletter.py, headers say why), counted; every good row of the batch is stored and
the messages acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.msg import Msg
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from ..broker.broker import Broker, BrokerUnavailable
from ..http.metrics import Metrics
from . import deadletter
from .sink import Batch, Sink, Unstorable

__all__ = ["LOG_INTERVAL", "Flusher", "Item"]

log = logging.getLogger(__name__)

#: At most one log line per kind of failure per this many seconds (a poison flood must not flood stderr);
#: the lines suppressed meanwhile are counted in the next one, and the metrics count every event.
LOG_INTERVAL = 10.0


class _Throttle:
    """Per-topic rate limit for log lines."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, topic: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(topic)
        if last is not None and now - last < self.interval:
            self._suppressed[topic] = self._suppressed.get(topic, 0) + 1
            return
        self._last[topic] = now
        skipped = self._suppressed.pop(topic, 0)
        suffix = f" (+{skipped} similar in the last {self.interval:g}s)" if skipped else ""
        log.log(level, message + suffix, *args)


class _Stopping(Exception):
    """Raised out of a backoff sleep when the processor is shutting down."""


@dataclass
class Item:
    """One JetStream message, checked: its rows' ids and timestamp range."""

    msg: Msg
    seq: int
    ids: list[str]
    ts_min: str
    ts_max: str


class Flusher:
    """Flushes batches of `Item`s for one Processor (which declares and validates the settings); `stopping`
    is the processor's shutdown event: set, it ends retries (the batch is nak'ed for redelivery)."""

    def __init__(
        self,
        broker: Broker,
        sink: Sink,
        metrics: Metrics,
        *,
        stopping: asyncio.Event,
        max_retries: int,
        ack_wait: float,
        nak_delay: float,
        retry_base: float,
        retry_max_wait: float,
    ) -> None:
        self.broker, self.sink, self.metrics = broker, sink, metrics
        self.max_retries = max_retries
        self.ack_wait = ack_wait
        self.nak_delay = nak_delay
        self.retry_base = retry_base
        self.retry_max_wait = retry_max_wait
        self._stopping = stopping
        self._throttle = _Throttle()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def flush(self, items: list[Item]) -> None:
        heartbeat = asyncio.create_task(self.keep_alive([item.msg for item in items]))
        try:
            try:
                await self._insert_with_retries(items)
            except Exception as exc:
                if self.sink.is_poison(exc):
                    await self._isolate(items, exc)
                    return
                if isinstance(exc, _Stopping):
                    log.warning("processor: shutting down mid-retry, %d messages nak'ed", len(items))
                else:
                    self._throttle.log(
                        logging.ERROR,
                        "nak",
                        "processor: insert of %d messages failed after %d retries, nak'ed: %s",
                        len(items),
                        self.max_retries,
                        exc,
                    )
                await self._nak(items)
                return
            await self._ack(items)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def keep_alive(self, msgs: list[Msg]) -> None:
        """Until cancelled: tell JetStream every ack_wait/3 that `msgs` are being worked on (+WPI), so
        messages held past ack_wait (a long insert, a wait for the insert before it) are not redelivered."""
        while True:
            await asyncio.sleep(self.ack_wait / 3)
            for msg in msgs:
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    @staticmethod
    def _batch(items: list[Item]) -> Batch:
        """The sink's view of the messages; the token is derived from their stream sequences."""
        seqs = ",".join(str(item.seq) for item in items)
        return Batch(
            parts=[item.msg.data for item in items],
            ids=[i for item in items for i in item.ids],
            ts_min=min(item.ts_min for item in items),
            ts_max=max(item.ts_max for item in items),
            token=f"oglog-{items[0].seq}-{hashlib.sha1(seqs.encode()).hexdigest()}",
        )

    def _count(self, inserted: int, dropped: int) -> None:
        if inserted:
            self.metrics.batches_inserted.inc()
            self.metrics.rows_inserted.inc(inserted)
        if dropped:
            self.metrics.duplicates_skipped.labels("storage").inc(dropped)

    async def _insert_with_retries(self, items: list[Item]) -> None:
        batch = self._batch(items)

        async def attempt() -> None:
            started = time.monotonic()
            stored = await self.sink.insert(batch)
            self.metrics.insert_latency.observe(time.monotonic() - started)
            self._count(stored.rows, stored.duplicates)

        await self._retrying(attempt)

    def _transient(self, exc: BaseException) -> bool:
        return not self.sink.is_poison(exc) and not isinstance(exc, _Stopping)

    async def _retrying(self, fn: Callable[[], Awaitable[None]]) -> None:
        async def sleep(seconds: float) -> None:
            await self._sleep(seconds)
            if self._stopping.is_set():
                raise _Stopping("shutting down")

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_exponential(multiplier=self.retry_base, max=self.retry_max_wait),
            retry=retry_if_exception(self._transient),
            before_sleep=lambda _state: self.metrics.insert_retries.inc(),
            sleep=sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await fn()

    async def _isolate(self, items: list[Item], cause: Exception) -> None:
        """The batch's insert was refused for its data: store every row the sink takes, dead-letter the rest
        (only those rows), ack. A transient failure meanwhile naks the batch (redelivery skips stored ids)."""
        self._throttle.log(
            logging.WARNING,
            "isolate",
            "processor: batch of %d messages refused (%s); isolating",
            len(items),
            str(cause)[:300],
        )
        batch = self._batch(items)
        refused: list[Unstorable] = []

        async def attempt() -> None:
            nonlocal refused
            isolated = await self.sink.insert_isolating(batch)
            refused = isolated.refused
            self._count(isolated.rows, isolated.duplicates)

        try:
            await self._retrying(attempt)
        except Exception as exc:
            if self.sink.is_poison(exc):  # not even the duplicate check runs: never retried; find the message
                if len(items) == 1:
                    await self.dead_letter(items[0], "unstorable", str(exc))
                    return
                for item in items:
                    await self._isolate([item], exc)
                return
            self._throttle.log(
                logging.ERROR, "nak", "processor: isolating %d messages failed, nak'ed: %s", len(items), exc
            )
            await self._nak(items)
            return
        by_index = {u.index: u for u in refused}
        for index, item in enumerate(items):
            bad = by_index.get(index)
            if bad is None:
                await self._ack([item])
                continue
            payload = b"[" + b",".join(bad.rows) + b"]"
            await self.dead_letter(item, "unstorable", bad.error, payload=payload, rows=len(bad.rows))

    async def _ack(self, items: list[Item]) -> None:
        for item in items:
            with contextlib.suppress(Exception):  # a lost ack means a redelivery, which dedup absorbs
                await item.msg.ack()

    async def _nak(self, items: list[Item]) -> None:
        self.metrics.naks.inc(len(items))
        for item in items:
            with contextlib.suppress(Exception):
                await item.msg.nak(delay=self.nak_delay)

    async def dead_letter(
        self,
        item: Item | Msg,
        reason: str,
        error: str,
        *,
        payload: bytes | None = None,
        rows: int | None = None,
    ) -> None:
        """Make `payload` (default: the whole message) a dead letter, then ack the message; nak it when the
        dead letter could not be made durable (it comes back, its stored rows are skipped as duplicates)."""
        msg = item.msg if isinstance(item, Item) else item
        seq = msg.metadata.sequence.stream
        try:
            await deadletter.publish_dead_letter(
                self.broker,
                seq=seq,
                headers=msg.headers or {},
                payload=msg.data if payload is None else payload,
                rows=rows,
                reason=reason,
                error=error,
            )
        except BrokerUnavailable as exc:
            self._throttle.log(
                logging.ERROR, "dead-nak", "processor: cannot dead-letter message %d (%s); nak'ed", seq, exc
            )
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.nak_delay)
            self.metrics.naks.inc()
            return
        self._throttle.log(
            logging.ERROR,
            "dead",
            "processor: message %d dead-lettered (%s, %s rows; GET /api/dead-letters): %s",
            seq,
            reason,
            rows or "all",
            error[:300],
        )
        self.metrics.dead_lettered.labels(reason).inc()
        await deadletter.refresh_gauge(self.broker, self.metrics)
        with contextlib.suppress(Exception):
            await msg.ack()
