"""ClickHouse storage: the `logs` table and a client that keeps blocking calls off the event loop.

The same code runs on `chdb:///path` (embedded, single process) and `http(s)://` (a ClickHouse server).
`Storage` is also the processor's sink (`processing.sink.Sink`): `insert` / `insert_isolating` run the
blocking insert code of `inserts.py` on the storage threads, `is_poison` is `errors.is_data_error`.
clickhouse-connect's client is blocking (its async client does not support chDB), so every call runs on the
storage threads (`scheduler.Scheduler`): one for chDB, whose session must not be used from two threads at
once, several for a server. `Storage.run` is the stack's own work (inserts and their duplicate checks,
schema, health): it goes before every waiting query. `Storage.query` is a client's query: bounded in number,
per client, and in time (wait included), so a flood of slow queries cannot starve the processor's inserts.
The processor's inserts run on INSERT_LANES lanes at once (processing/inflight.py): with chDB the second lane
is a thread of its own with a second connection to the same engine (one insert keeps about one core busy;
chDB 4.x runs queries of several connections to one data path side by side, hence `chdb>=4.1`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from ..processing.sink import Batch, Isolated, Stored
from . import inserts, migrations
from .errors import is_data_error
from .migrations import LOGS_TABLE
from .scheduler import DEFAULT_MAX_CLIENT_QUERIES, DEFAULT_MAX_WAITING_QUERIES, Busy, Scheduler

__all__ = [
    "CLOSE_TIMEOUT",
    "DEADLINE_GRACE",
    "INSERT_LANES",
    "PARTITION_MARGIN_DAYS",
    "PING_MAX_AGE",
    "SERVER_THREADS",
    "TTL_SLACK_DAYS",
    "Storage",
    "logs_ddl",
    "ttl_expression",
]

T = TypeVar("T")

log = logging.getLogger(__name__)

#: Partitions (days) one insert may touch beyond the retention period: ingestion accepts timestamps in
#: [now - retention, now + ~1 day], so a batch spans at most retention + 2 days; one more for the clock.
#: (Independent of TTL_SLACK_DAYS: that keeps rows longer, it does not widen what the door accepts.)
PARTITION_MARGIN_DAYS = 3
#: ClickHouse's own default for max_partitions_per_insert_block; never go below it.
_MIN_PARTITIONS_PER_INSERT = 100
#: Storage threads with a ClickHouse server (queries use at most SERVER_THREADS - 1 of them); chDB gets one.
SERVER_THREADS = 8
#: `Storage.query` waits this long past a query's deadline for its answer, so that a statement stopped by
#: `max_execution_time` at the deadline reports that itself (seconds).
DEADLINE_GRACE = 1.0
#: `Storage.checked` reuses a `ping` answered less than this long ago (seconds).
PING_MAX_AGE = 1.0
#: `close` waits this long (seconds) for the call in progress and the queued inserts.
CLOSE_TIMEOUT = 60.0
#: Inserts that run at once (`insert`, `insert_isolating`); more callers wait for a lane. With chDB, lane one
#: is the storage thread (inserts before waiting queries, as before) and lane two a thread with its own
#: connection; with a server, the storage threads. 2 matches the processor's DEFAULT_INSERTS_IN_FLIGHT.
INSERT_LANES = 2


#: Days the TTL keeps a row beyond the door's window (timestamps.TimeWindow: oldest = now - retention). The
#: TTL counts from the row's DAY and ttl_only_drop_parts drops whole day partitions, so without this day a row
#: accepted at now - retention + 1 h sits in the partition of a day that expired at midnight: acknowledged,
#: then deleted on the next merge. With it, day(oldest) + retention + 1 > now always holds.
TTL_SLACK_DAYS = 1


def ttl_expression(retention_days: int) -> str:
    """The retention rule, exactly as ClickHouse prints it back in `system.tables.engine_full`: a row is
    deleted retention_days + TTL_SLACK_DAYS after the start of its day (UTC).

    `toDate32` spans 1900..2299 like the DateTime64 column; the previous release's `toDateTime(timestamp)`
    wraps after 2106-02-07, so some future dates looked decades old and were deleted on the next merge."""
    return f"toDate32(timestamp) + toIntervalDay({int(retention_days) + TTL_SLACK_DAYS})"


def logs_ddl(*, retention_days: int, table: str = LOGS_TABLE) -> str:
    """One CREATE TABLE statement for the logs table as this release's migrations leave it (e.g. for a
    benchmark's scratch table; the `logs` table itself is made by `ensure_schema`, through the migrations)."""
    return migrations.current_logs_ddl(table=table, ttl=ttl_expression(retention_days))


class Storage:
    """Owns one clickhouse-connect client and the threads its blocking calls run on."""

    def __init__(
        self,
        dsn: str,
        *,
        retention_days: int = 30,
        max_waiting_queries: int = DEFAULT_MAX_WAITING_QUERIES,
        max_client_queries: int = DEFAULT_MAX_CLIENT_QUERIES,
    ) -> None:
        """`max_waiting_queries`, `max_client_queries`: `scheduler.Scheduler`'s limits (ValueError < 1)."""
        self.dsn = dsn
        self.retention_days = retention_days
        self.embedded = urlsplit(dsn).scheme == "chdb"
        if self.embedded:
            os.makedirs(urlsplit(dsn).path or ".", exist_ok=True)
        self._scheduler = Scheduler(
            1 if self.embedded else SERVER_THREADS,
            max_waiting=max_waiting_queries,
            max_per_client=max_client_queries,
        )
        self._client: Client | None = None
        #: chDB's second insert lane: one thread, its own connection (`_spare_client`), made on first use.
        self._spare: concurrent.futures.ThreadPoolExecutor | None = None
        self._spare_client: Client | None = None
        self._lanes: asyncio.Queue[Callable[..., Any]] | None = None
        self._closed = False
        self._ping_task: asyncio.Future[bool] | None = None  # the shared `ping` in flight (`checked`)
        self._ping_answer: tuple[float, bool] | None = None  # (time.monotonic(), result) of the last one

    @property
    def client(self) -> Client:
        """The clickhouse-connect client; only call it from inside `run`."""
        if self._client is None:
            # Server sessions would serialise concurrent queries; a client without one is safe to share.
            kwargs: dict[str, Any] = {} if self.embedded else {"autogenerate_session_id": False}
            self._client = clickhouse_connect.get_client(dsn=self.dsn, **kwargs)
        return self._client

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(client, *args, **kwargs)` on the storage threads, before any waiting query, and await its
        result (the stack's own work: inserts, schema, health). Raises what `fn` raises; `scheduler.Busy`
        ("closed") after `close`."""
        call = functools.partial(self._call, fn, *args, **kwargs)
        return await asyncio.wrap_future(self._scheduler.submit(call))

    async def query(self, client: str, deadline: float, fn: Callable[..., T], *args: Any) -> T:
        """Run a client's query `fn(client, *args)` on the storage threads and await its result.

        `client`: who asks (a query key id or an address), for the per-client limit and fair turns.
        `deadline` (time.monotonic()): covers the wait and the run; `scheduler.time_left()` gives `fn` the
        rest for its statements' `max_execution_time`. Raises `scheduler.Busy` (refused: "queue_full",
        "client_share", "closed"; "wait_timeout": not started by the deadline; "deadline": still running
        DEADLINE_GRACE after it) or what `fn` raises (a statement's TIMEOUT_EXCEEDED at the deadline)."""
        future = self._scheduler.submit(
            functools.partial(self._call, fn, *args), client=client, deadline=deadline
        )
        wait = max(0.0, deadline - time.monotonic()) + DEADLINE_GRACE
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), wait)
        except asyncio.TimeoutError:  # not the builtin on Python 3.10
            if future.cancelled():  # withdrawn before it started
                raise Busy("wait_timeout", "the query waited for the storage past its deadline") from None
            raise Busy("deadline", "the query ran past its deadline") from None

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(self.client, *args, **kwargs)

    def _spare_call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._spare_client is None:
            self._spare_client = clickhouse_connect.get_client(dsn=self.dsn)
        return fn(self._spare_client, *args)

    async def _run_spare(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise Busy("closed", "the storage is closed")
        if self._spare is None:
            self._spare = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="oglog-insert-lane")
        return await asyncio.wrap_future(self._spare.submit(self._spare_call, fn, *args))

    async def _on_a_lane(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the insert `fn(client, *args)` on a free insert lane (INSERT_LANES), waiting for one."""
        if self._lanes is None:
            # Last in, first out, lane one put last: one insert at a time always runs on lane one, as before.
            self._lanes = asyncio.LifoQueue()
            for lane in [self._run_spare if self.embedded else self.run] * (INSERT_LANES - 1) + [self.run]:
                self._lanes.put_nowait(lane)
        lane = await self._lanes.get()
        try:
            result: T = await lane(fn, *args)
        finally:
            self._lanes.put_nowait(lane)
        return result

    @property
    def insert_settings(self) -> dict[str, Any]:
        """Settings every insert into `logs` carries: enough partitions for any batch the door accepts."""
        partitions = max(_MIN_PARTITIONS_PER_INSERT, self.retention_days + PARTITION_MARGIN_DAYS)
        return {"max_partitions_per_insert_block": partitions}

    # -- the processor's sink (processing.sink.Sink) ------------------------------------------------------
    async def insert(self, batch: Batch) -> Stored:
        """Store the batch as ONE insert, minus rows already stored (`inserts.insert_rows`)."""
        return Stored(*await self._on_a_lane(inserts.insert_rows, *self._insert_args(batch)))

    async def insert_isolating(self, batch: Batch) -> Isolated:
        """Store the batch message by message, bisecting refused ones (`inserts.insert_isolating`)."""
        return Isolated(*await self._on_a_lane(inserts.insert_isolating, *self._insert_args(batch)))

    def is_poison(self, exc: BaseException) -> bool:
        """True when ClickHouse refused the rows themselves (`errors.is_data_error`)."""
        return is_data_error(exc)

    def _insert_args(self, batch: Batch) -> tuple[Any, ...]:
        return (batch.parts, batch.ids, batch.ts_min, batch.ts_max, batch.token, self.insert_settings)

    def ensure_schema(self, client: Client | None = None) -> None:
        """Apply the pending migrations (`migrations.py`: creates the logs table on a fresh store, adds what
        later releases added to an older one), then bring the table's TTL (an older release's, or another
        RETENTION_DAYS) to `ttl_expression(retention_days)`. Idempotent: a second start applies nothing and
        the ALTER only runs when the table's rule differs. Blocking: call it through `run`."""
        client = client or self.client
        migrations.apply(client, table=LOGS_TABLE, ttl=ttl_expression(self.retention_days))
        engine = str(
            client.command(
                "SELECT engine_full FROM system.tables "
                f"WHERE database = currentDatabase() AND name = '{LOGS_TABLE}'"
            )
        )
        wanted = ttl_expression(self.retention_days)
        if f"TTL {wanted} SETTINGS" not in engine and not engine.endswith(f"TTL {wanted}"):
            log.warning("storage: %s TTL set to %s (was: %s)", LOGS_TABLE, wanted, engine)
            client.command(f"ALTER TABLE {LOGS_TABLE} MODIFY TTL {wanted}")

    async def checked(self) -> bool:
        """Whether the storage answers (`ping` on the storage threads), shared by every caller: callers
        arriving while one runs await it, and an answer younger than PING_MAX_AGE is reused. /health is
        open (load balancers probe it without keys) and `run` is the stack's own work, which goes before
        every query: one `SELECT 1` per call let a /health flood delay queries and inserts by seconds."""
        answer = self._ping_answer
        if answer is not None and time.monotonic() - answer[0] < PING_MAX_AGE:
            return answer[1]
        if self._ping_task is None or self._ping_task.done():
            self._ping_task = asyncio.ensure_future(self._ping_once())
        return await asyncio.shield(self._ping_task)  # a caller that gives up does not cancel the others'

    async def _ping_once(self) -> bool:
        ok = await self.run(self.ping)
        self._ping_answer = (time.monotonic(), ok)
        return ok

    def ping(self, client: Client | None = None) -> bool:
        """True when the storage answers a trivial query. Blocking: call it through `run`."""
        try:
            return (client or self.client).command("SELECT 1") == 1
        except Exception:
            return False

    def refuse_queries(self) -> int:
        """The shutdown began: fail the waiting queries with `Busy("closed")` now and refuse new ones; inserts
        go on (`scheduler.Scheduler.refuse_queries`). Returns how many waiting queries were failed."""
        return self._scheduler.refuse_queries()

    def _close_spare(self) -> None:
        if self._spare_client is not None:
            self._spare_client.close()
            self._spare_client = None

    @property
    def queries_waiting(self) -> int:
        """Clients' queries waiting for a storage thread now."""
        return self._scheduler.waiting

    def close(self) -> None:
        """Stop the threads after the queued work (waiting queries fail with `Busy("closed")`), then close
        the client. Waits up to CLOSE_TIMEOUT seconds; a call still running then is logged, and the client
        is left to it rather than closed under it."""
        self._closed = True
        if self._spare is not None:
            # The spare lane's connection is closed on its own thread, after the insert it may still run.
            spare, self._spare = self._spare, None
            try:
                spare.submit(self._close_spare).result(CLOSE_TIMEOUT)
            except concurrent.futures.TimeoutError:
                log.error("storage: an insert runs after %.0f s; its client is not closed", CLOSE_TIMEOUT)
            spare.shutdown(wait=False)
        if not self._scheduler.close(CLOSE_TIMEOUT):
            log.error("storage: a call still runs after %.0f s; the client is not closed", CLOSE_TIMEOUT)
            return
        if self._client is not None:
            self._client.close()
            self._client = None
