"""`AsyncOgLogClient`: structured logging for asyncio applications, sent by one task on the running loop.

`log()` is synchronous and never awaits: it captures the event (as the structlog processor does) and appends
it to a deque. A task on the loop (`_async_sender.AsyncSender`) encodes, batches and sends with
`httpx.AsyncClient`. One client works across event loops and threads: which loop runs that task, and
starting it there, is `_async_loop.LoopBinding`. At interpreter exit `_async_exit.drain_at_exit` closes
every client within its shutdown_timeout, whichever loop it is on.

The client is built in layers, each its own module: `DeliveryCore` (`_core`: batching, retries, counters,
shared with the worker thread) < `AsyncSender` (the task) < `LoopBinding` (its loop) < `AsyncOgLogClient`
(here: the caller side, flush/aclose and the state they all share, created in `__init__`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
import time
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _diag, _otel
from ._async_exit import CLIENTS, ExitEntry, drain_at_exit
from ._async_loop import LoopBinding
from ._async_sender import ENCODE_SLICE, Waiter
from ._context import CONTEXT
from ._entry import StructEvent, capture_exc_info
from ._intake_charge import (
    LARGE_MESSAGE,
    WEIGHT_BYTES,
    WEIGHT_SHIFT,
    WEIGHT_UNITS,
    event_units,
    intake_limit,
    is_charged,
    item_chars,
)
from ._items import CapturedEvent, Item
from ._lifecycle import PIPELINES, adopt_sigterm_drain
from ._settings import ASYNC_OPTION_NAMES, AsyncOptions, Settings
from ._stats import Stats
from ._transport import AsyncHttpTransport
from ._value_charge import exc_info_bytes

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ENCODE_SLICE", "AsyncOgLogClient"]

#: Seconds `aclose` waits for a task it cancelled at its deadline to count what it held (one loop pass).
CANCEL_GRACE = 1.0
_context_get = CONTEXT.get
_current_thread = threading.current_thread


class AsyncOgLogClient(LoopBinding):
    """Ship log events from asyncio code: `client.info("paid", order=7)` never awaits the network.

    Settings are those of `OgLogHandler` (same names, defaults and validation; no `level` and no spool).
    The sending task starts on the running loop at the first event; `await aclose(timeout=)` (or leaving
    `async with`) delivers what is buffered until the deadline. `log()` may also be called from other threads.
    """

    def __init__(
        self, url: str | None = None, service: str | None = None, **options: Unpack[AsyncOptions]
    ) -> None:
        self.settings = s = Settings.build(
            url, service, owner="AsyncOgLogClient", allowed=ASYNC_OPTION_NAMES, **options
        )
        self._intake: deque[Item] = deque()
        self.intake_weights = deque()
        self._lock = threading.RLock()
        self._start_lock = threading.RLock()
        self._reset_core(self._lock)
        self._reset_buffers()
        self._waiters = []
        self._carry = None
        #: The intake's bound, recomputed from the byte budget after each encoding slice (`intake_limit`).
        self.intake_limit = intake_limit(s.max_buffer_records, s.max_buffer_bytes, 0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._home: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            self._home = asyncio.get_running_loop()
        self._start_scheduled = False
        self._retired: asyncio.AbstractEventLoop | None = None
        self._generation = 0
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        # Built here, not on the loop: creating the client loads the TLS trust store (~20 ms of loop time).
        self._transport: AsyncHttpTransport | None = AsyncHttpTransport(s)
        self._closing = False
        self._pid = os.getpid()
        self._loop_thread: int | None = None
        _otel.refresh()
        CLIENTS.add(self)
        # Drained with the handlers' pipelines on SIGTERM (and by the multiprocessing finalizer).
        self._exit_entry = ExitEntry(self)
        PIPELINES.add(self._exit_entry)
        adopt_sigterm_drain(s.drain_on_sigterm)

    # ------------------------------------------------------------ caller side (never awaits, never raises)

    def log(self, level: str | int, message: object, /, **attributes: Any) -> None:
        """Queue one event. `level` is a wire or stdlib level name or number; `exc_info=True` (or an
        exception) attaches a traceback; every other keyword becomes an attribute (as in the structlog
        mapping: `logger`, `timestamp`, `trace_id`, `span_id` and `exception` go to their own fields)."""
        try:
            exc_info = capture_exc_info(attributes.pop("exc_info", None))
            event = {**attributes, "event": message, "level": level}
            span_of = _otel.current_span
            item = CapturedEvent(
                (
                    StructEvent(
                        event,
                        "log",
                        time.time(),
                        _current_thread().name,
                        exc_info,
                        exc_info_bytes(exc_info) if exc_info is not None else 0,
                    ),
                    _context_get(),
                    span_of() if span_of is not None else None,
                )
            )
            self._submit(item)
        except Exception as exc:
            self._ledger.count_locked("internal_error", 1)
            _diag.report("internal_error", f"could not capture an event: {exc!r}")

    def debug(self, message: object, /, **attributes: Any) -> None:
        self.log("debug", message, **attributes)

    def info(self, message: object, /, **attributes: Any) -> None:
        self.log("info", message, **attributes)

    def warning(self, message: object, /, **attributes: Any) -> None:
        self.log("warn", message, **attributes)

    warn = warning

    def error(self, message: object, /, **attributes: Any) -> None:
        self.log("error", message, **attributes)

    def exception(self, message: object, /, **attributes: Any) -> None:
        """`error` with the exception being handled attached (call it from an `except` block)."""
        attributes.setdefault("exc_info", True)
        self.log("error", message, **attributes)

    def critical(self, message: object, /, **attributes: Any) -> None:
        self.log("fatal", message, **attributes)

    fatal = critical

    def _submit(self, item: Item) -> None:
        if self._pid != os.getpid():
            self._after_fork()
        intake = self._intake
        weights = self.intake_weights
        # Charged as the structlog processor charges its events (`_intake_charge`): a large event its size,
        # a mid-size one its weights (appended after it; the sender takes both back), a small one the flat
        # INTAKE_ITEM_BYTES. Before, everything below LARGE_MESSAGE was charged the flat 640 B.
        size = item_chars(item)
        extra = size if size >= LARGE_MESSAGE else 0
        units = event_units(size)
        context = item[1]
        charged = is_charged(context)  # so is a large bound context, while any event under it waits
        if extra or charged or len(intake) + (len(weights) >> WEIGHT_SHIFT) >= self.intake_limit:
            with self._lock:  # the sender takes items out under this lock too (see `_ingest.ingest`)
                if charged:  # counted before the overflow policy runs: drop_oldest may release it meanwhile
                    extra += self.charges.enter(context)
                if not self._make_room_locked(intake, extra + units * WEIGHT_BYTES):
                    self._uncharge_locked(context, charged)
                    return
                intake.append(item)
                weights.extend(WEIGHT_UNITS[units])
                self.intake_large += extra
        else:
            intake.append(item)
            if units:
                weights.extend(WEIGHT_UNITS[units])
        loop = self._loop
        if self._task is None or (loop is not None and loop.is_closed()):
            self._start()
        elif len(intake) == self._wake_at:
            self._signal()

    def sigterm_locks(self) -> tuple[threading.RLock, ...]:
        return (self._lock, self._start_lock)

    def _after_fork(self) -> None:
        """A forked child starts empty (the parent ships its own events) and with no loop of its own yet."""
        self._pid = os.getpid()
        self._intake.clear()
        self.intake_weights.clear()
        self._lock = threading.RLock()
        self._start_lock = threading.RLock()
        self._reset_core(self._lock)
        self._reset_buffers()
        self._loop = self._home = self._task = self._wake = self._transport = None
        self._closing = False
        self._start_scheduled = False
        self._waiters = []
        self._carry = None

    # ------------------------------------------------------------------ public operations

    def stats(self) -> Stats:
        """A snapshot of queued / sent / retried / dropped-by-reason counts and the last error."""
        with self._lock:  # one consistent moment (see `_ingest.ingest`)
            return self._ledger.snapshot(
                queued=self._queued_locked(),
                buffered_bytes=self._pending.nbytes + self._inflight.nbytes,
                intake_bytes=self.intake_charged(len(self._intake)),
            )

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until events logged so far are delivered (or dropped); False if `timeout` passed first."""
        timeout = self.settings.shutdown_timeout if timeout is None else max(0.0, timeout)
        if self._task is None:
            self._start()
        if (elsewhere := self._loop_of_other_thread()) is not None:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.flush(timeout), elsewhere))
        task = self._task
        if task is None or task.done():
            return not self._intake and not self._pending
        # Everything logged before this call is in the intake: encode it all now, then aim at it.
        self._ingest(bounded=False)
        waiter = Waiter(self._pending.next_seq - 1, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._check_waiters()
        self._signal()
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def _exit_close(self, timeout: float) -> bool:
        """`aclose` at exit on a loop of the exit drain: a task on a loop that no longer runs is dead."""
        self._start(exiting=True)
        if self._transport is not None:  # the default executor refuses work once the interpreter exits
            self._transport.offload_gzip = False
        return await self.aclose(timeout)

    async def aclose(self, timeout: float | None = None) -> bool:
        """Stop taking events, deliver what is buffered until the deadline, stop the task. Idempotent.

        Returns False when events had to be given up at the deadline (`stats().dropped["shutdown"]`, or
        `["unconfirmed"]` for a request sent and not answered in time). Waits at most `timeout` seconds
        (default `shutdown_timeout`), plus up to CANCEL_GRACE for a send it had to cancel."""
        timeout = self.settings.shutdown_timeout if timeout is None else max(0.0, timeout)
        loop = asyncio.get_running_loop()
        old = self._loop
        if (self._task is None or (old is not None and old.is_closed())) and (self._intake or self._pending):
            self._start()
        if (elsewhere := self._loop_of_other_thread()) is not None:
            closing = asyncio.run_coroutine_threadsafe(self.aclose(timeout), elsewhere)
            return await asyncio.wrap_future(closing)
        task = self._task
        if task is not None and not task.done():
            mine = loop.time() + timeout
            # Every call honours its own deadline: an earlier one (another aclose, or the loop's cleanup
            # with shutdown_timeout) may be later than the caller's.
            if not self._closing or mine < self._deadline:
                self._closing = True
                self._deadline = mine
                self._signal()
            await asyncio.wait({task}, timeout=max(0.0, mine - loop.time()))
            if not task.done():  # a send that overran its capped timeouts: give up on it
                task.cancel()
                await asyncio.wait({task}, timeout=CANCEL_GRACE)
        dropped = self._ledger.dropped
        return not dropped.get("shutdown") and not dropped.get("unconfirmed")

    async def __aenter__(self) -> AsyncOgLogClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncOgLogClient {self.settings.service!r} -> {self.settings.url!r}>"


# After _lifecycle's own atexit hook (imported above), so it runs before it: clients first, then handlers.
atexit.register(drain_at_exit)
