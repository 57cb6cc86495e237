"""The storage threads' scheduler: the stack's own work (the processor's inserts) before clients' queries.

Embedded chDB runs one statement at a time (one thread), a ClickHouse server gets `threads` of them. With a
plain FIFO pool, queries queued ahead of an insert delay it for as long as they run: a flood of slow queries
held the processor's batch past JetStream's ack_wait (redelivered, 75,000 duplicates skipped) and a fresh
entry took 45 s to become queryable. So two classes of work:

- work (`submit(fn)`, no client): inserts with their duplicate checks, schema, health. Runs before every
  waiting query, FIFO among itself, unbounded (the processor bounds its own batches).
- queries (`submit(fn, client=..., deadline=...)`): at most `threads - 1` run at once when there are several
  threads (one is kept for work), 1 on a single thread; a running query is never interrupted, so work waits
  at most for the one query ahead of it, itself bounded by its deadline. Waiting queries are bounded
  (`max_waiting`, then `Busy("queue_full")`) and served fairly across clients (a query key or address): the
  client whose last query started longest ago goes next, one that held no query until now first; FIFO
  within a client; a client holds `max_per_client` of them, running or waiting, and more only while the
  queue keeps room for another client's share, and the queue's last place only for a client holding none
  (none running either: a client whose query runs is being served)
  (else `Busy("client_share")`; the rule ingestion's body slots follow too, `http.share.SharePolicy`, with
  the waiting queue as its capacity): a lone dashboard firing a burst of requests is served, a flood cannot
  fill the queue, and clients within their shares cannot together keep a newcomer out. A query still
  waiting at its deadline fails with `Busy("wait_timeout")`; `time_left()` gives the running one's
  remaining seconds for its statements' `max_execution_time`.

Shutdown: `refuse_queries()` (when the server begins to stop) fails the waiting queries with
`Busy("closed")` at once and refuses new ones, while inserts go on; `close()` then lets queued work finish.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import check_at_least
from ..http.share import SharePolicy

__all__ = [
    "DEFAULT_MAX_CLIENT_QUERIES",
    "DEFAULT_MAX_WAITING_QUERIES",
    "IDLE_POLL",
    "SHUTTING_DOWN",
    "Busy",
    "Scheduler",
    "time_left",
]

#: Queries waiting for a storage thread, all clients together; one more is refused (503 + Retry-After).
#: Clients take turns (see the module docstring), so a long queue delays a newcomer by one query, not all.
DEFAULT_MAX_WAITING_QUERIES = 32
#: Queries one client (its address, with its query key when auth is on) may always hold, running or waiting;
#: past it only while the queue keeps room for another client's share (429 beyond). A dashboard refresh sends
#: 3-4 at once, a user typing in its filters more (the share of 6 refused the dashboard's own searches); the
#: reviewer's flood sent 8-16.
DEFAULT_MAX_CLIENT_QUERIES = 8
#: An idle thread re-checks for shutdown this often (seconds); new work wakes it at once.
IDLE_POLL = 1.0
#: Why a query is refused once the shutdown began (`Busy("closed")`).
SHUTTING_DOWN = "the server is shutting down; retry (against another instance, or this one once restarted)"

_current = threading.local()


def time_left() -> float | None:
    """Seconds until the deadline of the query running on this thread; None outside a query."""
    deadline: float | None = getattr(_current, "deadline", None)
    return None if deadline is None else deadline - time.monotonic()


class Busy(Exception):
    """A query refused, or given up at its deadline. `reason`: "queue_full", "client_share", "closed",
    "wait_timeout" (not started by its deadline), "deadline" (`Storage.query`: still running past it)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(eq=False)
class _Job:
    call: Callable[[], Any]
    client: str | None = None
    deadline: float | None = None
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


class Scheduler:
    """`threads` storage threads running submitted callables, work before queries (module docstring)."""

    def __init__(
        self,
        threads: int,
        *,
        max_waiting: int = DEFAULT_MAX_WAITING_QUERIES,
        max_per_client: int = DEFAULT_MAX_CLIENT_QUERIES,
        name: str = "oglog-clickhouse",
    ) -> None:
        check_at_least(1, threads=threads)
        self.policy = SharePolicy(
            max_waiting, max_per_client, capacity_name="max_waiting", share_name="max_per_client"
        )
        self.max_waiting = max_waiting
        self.max_per_client = max_per_client
        self.query_threads = max(1, threads - 1)
        self._cond = threading.Condition()
        self._work: collections.deque[_Job] = collections.deque()
        # Waiting queries per client, and when each client holding a slot last had a query started (a tick):
        # the waiting client served least recently goes next, a client new to the queue first.
        self._queries: dict[str, collections.deque[_Job]] = {}
        self._started: dict[str, int] = {}
        self._ticks = 0
        self._waiting = 0
        self._held: collections.Counter[str] = collections.Counter()  # running + waiting, per client
        self._running_queries = 0
        self._closed = False
        self._refusing_queries = False  # `refuse_queries`: work still taken, queries not
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self, call: Callable[[], Any], *, client: str | None = None, deadline: float | None = None
    ) -> concurrent.futures.Future[Any]:
        """Queue `call()`: as work when `client` is None, else as that client's query, which fails with
        `Busy("wait_timeout")` if it has not started by `deadline` (time.monotonic()). Raises `Busy` at once
        when the queries' limits are reached or the scheduler is closed. Cancelling the returned future
        before the call starts withdraws it."""
        job = _Job(call, client, deadline)
        with self._cond:
            if self._closed or (client is not None and self._refusing_queries):
                raise Busy("closed", SHUTTING_DOWN)
            if client is None:
                self._work.append(job)
            else:
                held = self._held[client]
                refusal = self.policy.refusal(held, self._waiting)
                if refusal == "share":
                    raise Busy(
                        "client_share",
                        f"this client already has {held} queries running or waiting, past its share of "
                        f"{self.max_per_client} while others may need the queue",
                    )
                if refusal == "full":
                    raise Busy("queue_full", f"{self._waiting} queries are already waiting for the storage")
                if refusal == "reserved":
                    raise Busy(
                        "client_share",
                        f"this client already has {held} queries running or waiting, and the last place in "
                        "the queue is kept for a client with none",
                    )
                self._queries.setdefault(client, collections.deque()).append(job)
                self._waiting += 1
                self._held[client] += 1
                job.future.add_done_callback(lambda _f: self._settled(job))
            self._cond.notify()
        return job.future

    def _settled(self, job: _Job) -> None:
        """A query's future is done (result, error or cancelled): free its slot; drop it if still waiting."""
        assert job.client is not None
        with self._cond:
            queue = self._queries.get(job.client)
            if queue is not None and job in queue:
                queue.remove(job)
                self._waiting -= 1
                if not queue:
                    del self._queries[job.client]
            self._held[job.client] -= 1
            if self._held[job.client] <= 0:
                del self._held[job.client]
                self._started.pop(job.client, None)

    def _next(self) -> _Job | None:
        """The next job to run (lock held), or None when there is none this thread may take."""
        if self._work:
            return self._work.popleft()
        if self._queries and self._running_queries < self.query_threads:
            # Ties (clients never served) go by arrival: dicts keep insertion order and min() the first.
            client = min(self._queries, key=lambda name: self._started.get(name, -1))
            queue = self._queries[client]
            job = queue.popleft()
            self._waiting -= 1
            if not queue:
                del self._queries[client]
            self._started[client] = self._ticks
            self._ticks += 1
            self._running_queries += 1
            return job
        return None

    def _serve(self) -> None:
        while True:
            with self._cond:
                job = self._next()
                while job is None:
                    if self._closed and not self._work:
                        return
                    self._cond.wait(IDLE_POLL)
                    job = self._next()
            try:
                self._run(job)
            finally:
                if job.client is not None:
                    with self._cond:
                        self._running_queries -= 1
                        self._cond.notify()

    @staticmethod
    def _run(job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return  # withdrawn while waiting (the client went away or gave up)
        if job.deadline is not None and time.monotonic() >= job.deadline:
            job.future.set_exception(
                Busy("wait_timeout", "the query waited for the storage past its deadline")
            )
            return
        _current.deadline = job.deadline
        try:
            result = job.call()
        except BaseException as exc:  # handed to the caller, like concurrent.futures does
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)
        finally:
            _current.deadline = None

    def _stop_queries(self) -> list[_Job]:
        """(Lock held.) Refuse queries from now on and take the waiting ones out, so no thread starts one."""
        self._refusing_queries = True
        waiting = [job for queue in self._queries.values() for job in queue]
        self._queries.clear()
        self._waiting = 0
        self._cond.notify_all()
        return waiting

    @staticmethod
    def _fail(waiting: list[_Job]) -> int:
        for job in waiting:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(Busy("closed", SHUTTING_DOWN))
        return len(waiting)

    @property
    def waiting(self) -> int:
        """Queries waiting for a thread now (not the running ones)."""
        return self._waiting

    def refuse_queries(self) -> int:
        """The start of a shutdown: fail the waiting queries with `Busy("closed")` at once and refuse new
        ones, while work (inserts) is still taken and running queries finish. Without it a shutdown waited
        for the whole queue (27.7 s under a query flood) before answering anyone. Returns how many failed."""
        with self._cond:
            waiting = self._stop_queries()
        return self._fail(waiting)

    def close(self, timeout: float) -> bool:
        """Refuse new submissions, fail the waiting queries with `Busy("closed")` (`refuse_queries`), let
        queued work finish, and wait up to `timeout` seconds for the threads; False if one is still running
        then (it is a daemon)."""
        with self._cond:
            self._closed = True
            waiting = self._stop_queries()
        self._fail(waiting)
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)
