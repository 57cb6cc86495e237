"""Processing role: JetStream durable pull consumer -> batches of rows -> ONE ClickHouse insert -> ack.

A message's payload is a JSON array of `logs` rows (see ingest and messages.py), typed attribute maps
included, so a batch is the payloads spliced into one array and inserted with `raw_insert(...,
fmt="JSONEachRow")`: no per-row Python on the happy path. A message of the release before (no row-format
header) is first upgraded on a worker thread (`messages.upgrade_payload`).

Up to DEFAULT_INSERTS_IN_FLIGHT batches are inserted at once, never two sharing a row id (inflight.py).

Idempotent end to end (a redelivered or retried batch never duplicates rows):
  1. JetStream drops a re-published Nats-Msg-Id within the stream's duplicate window (ingest side);
  2. before each insert, ids repeated inside the batch and ids already in `logs` (checked within the batch's
     [min, max] timestamp range, where the bloom filter on `id` makes it cheap) are dropped;
  3. the insert carries `insert_deduplication_token` derived from the messages' stream sequences;
  4. messages are acked only after the insert returned; a crash in between means redelivery, and (2) holds.
Failures (flush.py): transient ones are retried, then nak'ed - never dropped; rows ClickHouse refuses are
isolated and only they are dead-lettered, never retried, never blocking the rest of their batch. Messages that
are not row arrays from the ingestion role are dead-lettered whole as `malformed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import nats.errors
from aiohttp import web
from nats.aio.msg import Msg
from nats.js import api

from ..broker import messages
from ..broker.broker import Broker
from ..config import CONSUMER_NAME, STREAM_NAME, check_at_least, check_positive
from ..http.metrics import Metrics
from ..http.resources import BROKER, CONFIG, METRICS, STORAGE
from ..ingestion import row_codec
from .deadletter import refresh_gauge
from .flush import Flusher, Item
from .inflight import DEFAULT_INSERTS_IN_FLIGHT, InFlight
from .pull import Puller
from .sink import Sink

__all__ = [
    "CAUGHT_UP_SHARE",
    "DEFAULT_ACK_WAIT",
    "DEFAULT_FETCH_BYTES",
    "DEFAULT_INSERTS_IN_FLIGHT",
    "DEFAULT_MAX_ACK_PENDING",
    "DEFAULT_MAX_BATCH_BYTES",
    "DEFAULT_NAK_DELAY",
    "PROCESSOR",
    "Processor",
    "setup",
]

log = logging.getLogger(__name__)

#: JetStream redelivers a message not acked within this long. Long inserts send +WPI (in progress) every
#: ack_wait/3, so this only bounds how soon a crashed processor's messages come back.
DEFAULT_ACK_WAIT = 30.0
#: Unacked messages the consumer hands out at once (a message is one request's batch, up to 10,000 rows).
DEFAULT_MAX_ACK_PENDING = 20_000
#: A batch is also flushed at this many payload bytes, bounding memory whatever BATCH_SIZE says.
DEFAULT_MAX_BATCH_BYTES = 64 * 1024 * 1024
#: Redelivery delay for messages whose insert failed MAX_RETRIES times.
DEFAULT_NAK_DELAY = 5.0
#: First backoff between insert attempts (doubling, capped at DEFAULT_RETRY_MAX_WAIT).
DEFAULT_RETRY_BASE = 0.25
DEFAULT_RETRY_MAX_WAIT = 10.0
_FETCH_MAX = 1_000
#: Payload bytes one pull request may deliver (JetStream's max_bytes, enforced by the server; raised to one
#: max_payload message plus headers if smaller), and the processor only ever has one request open (pull.py).
#: The server CLOSES a connection whose unread bytes pass its max_pending (64 MiB) or that it cannot write to
#: for 10 s ("Slow Consumer Detected"); the messages and the publish acks in transit on it are then lost (#14:
#: rows queryable 30-40 s after their 202s, 503s for stored bodies). In `oglog stack up` an HTTP flood slows
#: the shared event loop to about one 256 KiB socket read per iteration: 4 MiB fits in the loopback socket
#: buffers, so the server never waits on this connection, and draining it takes 16 loop iterations. Larger
#: values measured no faster (docs/benchmarks.md, "Slow consumer under an HTTP flood").
DEFAULT_FETCH_BYTES = 4 * 1024 * 1024
#: Room for a message's headers and subject above max_payload in a request's max_bytes.
_HEADER_ROOM = 64 * 1024
_IDLE_WAIT = 0.5
#: The tail of a burst: once the consumer has caught up (nothing left in the stream, an insert lane free) and
#: the batch before was cut FULL (BATCH_SIZE / max_batch_bytes: traffic was outrunning the timeout), the
#: partial batch after it waits only this share of FLUSH_TIMEOUT: waiting longer cannot fill it, it only
#: delays the burst's last rows (#14: they sat out the whole timeout). A trickle (the batch before was cut by
#: the timeout) still waits all of FLUSH_TIMEOUT, so a quiet stream makes at most about one insert per
#: second - ClickHouse's advice for synchronous inserts - and a burst at most one early insert at its end.
#: While messages are pending, batches fill up to BATCH_SIZE / FLUSH_TIMEOUT as before.
CAUGHT_UP_SHARE = 0.2
#: While an insert is in flight and a caught-up batch waits for it, fetches wait at most this long, so the
#: batch goes out soon after the insert returns (a fetch returns at once when messages come).
_IN_FLIGHT_POLL = 0.05

#: The timestamp headers are inlined in the duplicate check: years 1900-2299 (DateTime64's range), as the
#: ingestion role writes them.
_CANONICAL_TS = re.compile(r"^(19|2[0-2])\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", re.ASCII)


@dataclass
class _Batch:
    items: list[Item] = field(default_factory=list)
    rows: int = 0
    size: int = 0
    started: float = 0.0


class Processor:
    """Consumes messages.STREAM_SUBJECT with the durable CONSUMER_NAME and writes batches to a `Sink`
    (sink.py; `storage.Storage` in the app: ClickHouse)."""

    def __init__(
        self,
        broker: Broker,
        sink: Sink,
        metrics: Metrics,
        *,
        batch_size: int,
        flush_timeout: float,
        max_retries: int,
        shutdown_timeout: float,
        ack_wait: float = DEFAULT_ACK_WAIT,
        max_ack_pending: int = DEFAULT_MAX_ACK_PENDING,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        nak_delay: float = DEFAULT_NAK_DELAY,
        retry_base: float = DEFAULT_RETRY_BASE,
        retry_max_wait: float = DEFAULT_RETRY_MAX_WAIT,
        fetch_bytes: int = DEFAULT_FETCH_BYTES,
        inserts_in_flight: int = DEFAULT_INSERTS_IN_FLIGHT,
    ) -> None:
        check_at_least(
            1,
            batch_size=batch_size,
            inserts_in_flight=inserts_in_flight,
            max_ack_pending=max_ack_pending,
            max_batch_bytes=max_batch_bytes,
            fetch_bytes=fetch_bytes,
        )
        check_at_least(0, max_retries=max_retries)
        check_positive(
            flush_timeout=flush_timeout,
            shutdown_timeout=shutdown_timeout,
            ack_wait=ack_wait,
            nak_delay=nak_delay,
            retry_base=retry_base,
            retry_max_wait=retry_max_wait,
        )
        self.broker, self.sink, self.metrics = broker, sink, metrics
        self.batch_size = batch_size
        self.flush_timeout = flush_timeout
        self.max_retries = max_retries
        self.shutdown_timeout = shutdown_timeout
        self.ack_wait = ack_wait
        self.max_ack_pending = max_ack_pending
        self.max_batch_bytes = max_batch_bytes
        self.nak_delay = nak_delay
        self.retry_base = retry_base
        self.retry_max_wait = retry_max_wait
        self.fetch_bytes = fetch_bytes
        self._stopping = asyncio.Event()
        self._flusher = Flusher(
            broker,
            sink,
            metrics,
            stopping=self._stopping,
            max_retries=max_retries,
            ack_wait=ack_wait,
            nak_delay=nak_delay,
            retry_base=retry_base,
            retry_max_wait=retry_max_wait,
        )
        self._inflight = InFlight(self._flusher, inserts_in_flight)
        self._task: asyncio.Task[None] | None = None
        self._puller: Puller | None = None
        self._unlisten: Callable[[], None] | None = None
        #: The last batch handed to the flusher was cut full (see CAUGHT_UP_SHARE).
        self._last_cut_full = False

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        self._unlisten = self.broker.on_reconnected(self._on_reconnected)
        self._task = asyncio.create_task(self._run(), name="oglog-processor")

    def _on_reconnected(self) -> None:
        if self._puller is not None:
            self._puller.reset()
        # Messages the server had delivered on the lost connection (acked by nobody, nak'able by nobody) wait
        # out ack_wait: say so, so a delay of rows after their 202s is never silent.
        log.warning(
            "processor: the NATS connection was lost; messages delivered on it and not yet read are "
            "redelivered after ack_wait (%gs)",
            self.ack_wait,
        )

    async def stop(self) -> None:
        """Stop fetching, flush the batch in hand and ack it; give up after shutdown_timeout (the unacked
        messages are then simply redelivered to the next processor)."""
        self._stopping.set()
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.shutdown_timeout)
        except asyncio.TimeoutError:
            log.warning(
                "processor: shutdown timeout (%.1fs): in-flight batch left for redelivery",
                self.shutdown_timeout,
            )
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def consumer_config(self) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            durable_name=CONSUMER_NAME,
            filter_subject=messages.STREAM_SUBJECT,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_ack_pending=self.max_ack_pending,
            max_deliver=-1,  # never give up on a message: failures are nak'ed or dead-lettered explicitly
            max_waiting=512,
        )

    async def _subscribe(self) -> Puller | None:
        while not self._stopping.is_set():
            if self.broker.is_connected:
                try:
                    await self.broker.js.add_consumer(STREAM_NAME, self.consumer_config())
                    puller = Puller(
                        self.broker.nc,
                        stream=STREAM_NAME,
                        consumer=CONSUMER_NAME,
                        max_bytes=self._pull_bytes(),
                    )
                    await puller.start()
                    self._puller = puller
                    return puller
                except (nats.errors.Error, asyncio.TimeoutError) as exc:
                    log.warning("processor: cannot bind consumer yet: %s", exc)
            await self._sleep(_IDLE_WAIT)
        return None

    async def _run(self) -> None:
        sub = await self._subscribe()
        if sub is not None:
            await refresh_gauge(self.broker, self.metrics)  # what earlier runs left for operators
        batch = _Batch()
        caught_up = False  # the last message fetched had nothing behind it, or a fetch found nothing
        try:
            while sub is not None and not self._stopping.is_set():
                wait = _IDLE_WAIT
                timeout = self.flush_timeout
                if batch.items:
                    timeout = self._due(batch, caught_up) - time.monotonic()
                    if self._inflight.busy:
                        wait = _IN_FLIGHT_POLL
                if timeout > 0.001:
                    want = self._fetch_size()
                    try:
                        msgs = await sub.fetch(want, timeout=max(min(timeout, wait), 0.01))
                    except nats.errors.Error as exc:
                        log.warning("processor: fetch failed (%s); re-binding", exc)
                        await self._sleep(_IDLE_WAIT)
                        with contextlib.suppress(Exception):
                            await sub.close()
                        sub = await self._subscribe()
                        continue
                    if msgs:
                        caught_up = msgs[-1].metadata.num_pending == 0
                    else:
                        caught_up = True
                        self.metrics.consumer_pending.set(0)  # nothing came within the wait: nothing waits
                    for k, msg in enumerate(msgs):
                        await self._add(batch, msg)
                        # Cut at the message that fills the batch, not after the whole fetch: a batch
                        # stays within one message of BATCH_SIZE / max_batch_bytes however much was pending.
                        if batch.rows >= self.batch_size or batch.size >= self.max_batch_bytes:
                            await self._start_flush(batch, msgs[k + 1 :])
                            batch = _Batch()
                if batch.items and (
                    batch.rows >= self.batch_size
                    or batch.size >= self.max_batch_bytes
                    or time.monotonic() >= self._due(batch, caught_up)
                ):
                    await self._start_flush(batch)
                    batch = _Batch()
            # Shutdown: the batch in hand is flushed and acked like any other.
            if batch.items:
                await self._start_flush(batch)
            await self._inflight.drain()
        finally:
            await self._inflight.cancel()
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.close()

    def _fetch_size(self) -> int:
        """Messages one pull request asks for; their bytes are bounded by `_pull_bytes()`."""
        return min(_FETCH_MAX, self.max_ack_pending)

    def _pull_bytes(self) -> int:
        """Bytes one pull request may deliver: fetch_bytes (DEFAULT_FETCH_BYTES), but at least one message
        of the server's max_payload with its headers, or the server would refuse to deliver it."""
        return max(self.fetch_bytes, self.broker.max_payload + _HEADER_ROOM)

    def _due(self, batch: _Batch, caught_up: bool) -> float:
        """Monotonic time at which `batch` is flushed however full it is: FLUSH_TIMEOUT after its first
        message, or CAUGHT_UP_SHARE of it for the tail of a burst (the batch before was cut full, nothing is
        pending and an insert lane is free)."""
        tail = caught_up and not self._inflight.full and self._last_cut_full
        return batch.started + self.flush_timeout * (CAUGHT_UP_SHARE if tail else 1.0)

    async def _add(self, batch: _Batch, msg: Msg) -> None:
        meta = msg.metadata
        self.metrics.consumer_pending.set(meta.num_pending)
        headers = msg.headers or {}
        ids = row_codec.payload_ids(msg.data)
        ts_min, ts_max = headers.get(messages.TS_MIN, ""), headers.get(messages.TS_MAX, "")
        problem = None
        if ids is None:
            problem = "payload is not a JSON array of rows written by the ingestion role"
        elif headers.get(messages.ROWS) != str(len(ids)):
            problem = (
                f"{messages.ROWS} header {headers.get(messages.ROWS)!r} does not match {len(ids)} rows found"
            )
        elif not (_CANONICAL_TS.match(ts_min) and _CANONICAL_TS.match(ts_max)):
            problem = f"missing or malformed {messages.TS_MIN}/{messages.TS_MAX} headers"
        if problem is not None:
            await self._flusher.dead_letter(msg, "malformed", problem)
            return
        assert ids is not None
        if not messages.has_current_format(headers):
            await self._upgrade(msg)
        if not batch.items:
            batch.started = time.monotonic()
        batch.items.append(Item(msg, meta.sequence.stream, ids, ts_min, ts_max))
        batch.rows += len(ids)
        batch.size += len(msg.data)

    async def _upgrade(self, msg: Msg) -> None:
        """Bring a message of the release before (no row-format header) to the current format IN PLACE,
        before it joins a batch: everything downstream (insert, isolation, dead letter, replay) then sees
        one format. Only such messages pay, and on a worker thread, never on the storage thread (#14)."""
        data = msg.data
        upgraded = await asyncio.to_thread(messages.upgrade_payload, data)
        if upgraded is not data:
            msg.data = upgraded
        if msg.headers is not None:
            msg.headers[messages.ROW_FORMAT] = messages.ROW_FORMAT_VERSION

    async def _start_flush(self, batch: _Batch, rest: list[Msg] | None = None) -> None:
        """Hand `batch` to the flusher when an insert lane is free (`InFlight.start`); `rest`: the messages
        of the same fetch not yet in a batch, kept alive while it waits."""
        self._last_cut_full = batch.rows >= self.batch_size or batch.size >= self.max_batch_bytes
        await self._inflight.start(batch.items, rest)


PROCESSOR: web.AppKey[Processor] = web.AppKey("oglog_processor", Processor)


async def _processor_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    processor = Processor(
        app[BROKER],
        app[STORAGE],
        app[METRICS],
        batch_size=config.batch_size,
        flush_timeout=config.flush_timeout,
        max_retries=config.max_retries,
        shutdown_timeout=config.shutdown_timeout,
    )
    app[PROCESSOR] = processor
    processor.start()
    try:
        yield
    finally:
        await processor.stop()


def setup(app: web.Application) -> None:
    """Run the consumer for the app's lifetime (needs the broker_ctx and storage_ctx before it)."""
    app.cleanup_ctx.append(_processor_ctx)
