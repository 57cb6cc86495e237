"""`OgLogHandler`: a `logging.Handler` whose caller-side cost is one tuple appended to a deque."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from . import _otel
from ._capture import PLAIN_KEYS, RECORD_BASE_KEYS, SNAPSHOT_KEYS, CapturedRecord, formatted_base
from ._context import CONTEXT
from ._entry import IMMUTABLE_ARG_TYPES, render
from ._intake_charge import (
    ALWAYS_WEIGHED,
    FLAT_CHARS,
    FREE_EXTRAS,
    LARGE_MESSAGE,
    WEIGHT_SHIFT,
    WEIGHT_UNITS,
    record_charge,
)
from ._settings import Options, Settings
from ._stats import Stats
from ._value_charge import ARG_BYTES, FREE_ARGS, SMALL_INT_MAX, SMALL_INT_MIN, copy_extras, exc_info_bytes
from ._worker import WORKER_THREADS, Pipeline

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["OgLogHandler"]

_get_ident = threading.get_ident
_context_get = CONTEXT.get
_sizeof = sys.getsizeof
_SNAPSHOT_SIZE = len(SNAPSHOT_KEYS)

#: A `close()` without a timeout that starts within this many seconds of a `flush()` without a timeout that
#: ran out shares that flush's deadline (`logging.shutdown()` and a `dictConfig()` re-configuration call
#: flush() then close() on every handler, holding logging's module lock): the pair takes one
#: `shutdown_timeout` when the server is down, not two.
CLOSE_FOLLOWS_FLUSH = 1.0


class OgLogHandler(logging.Handler):
    """Ship stdlib `logging` records to OgLogStream from a background thread; never blocks, never raises.

    `url`, `service` and `api_key` fall back to OGLOG_URL, OGLOG_SERVICE and OGLOG_API_KEY. Every other
    setting is keyword-only (`_settings.Options`; defaults and reasons in docs/sdk.md). Handler formatters
    are not applied: the entry is structured (message, level, logger, thread, exception and `extra=` fields
    travel as separate fields).
    """

    def __init__(
        self,
        url: str | None = None,
        service: str | None = None,
        *,
        level: int | str = logging.NOTSET,
        **options: Unpack[Options],
    ) -> None:
        # Validate and build before registering with `logging`, so a bad setting (or an environment httpx
        # refuses) leaves nothing half-built behind for `logging.shutdown` to trip over at exit.
        settings = Settings.build(url, service, owner="OgLogHandler", own=("level",), **options)
        pipeline = Pipeline(settings)
        super().__init__(level)
        self._pipeline = pipeline
        # A logging handler is closed by `logging.shutdown` at exit (after the SDK's drain): records logged
        # in between are batched until then instead of each waiting for its own request.
        self._pipeline.exit_close_follows = True
        self._intake = self._pipeline.intake
        self._weights = self._pipeline.intake_weights
        #: (when a default-timeout flush() began, when it ran out) of the last one that ran out, else None.
        self._flush_ran_out: tuple[float, float] | None = None

    @property
    def settings(self) -> Settings:
        """The handler's validated settings (read-only: a frozen `Settings`, every option by name with its
        default filled in), as `AsyncOgLogClient.settings`."""
        return self._pipeline.settings

    @property
    def url(self) -> str:
        return self._pipeline.settings.url

    @property
    def service(self) -> str:
        return self._pipeline.settings.service

    def filter(self, record: logging.LogRecord) -> bool | logging.LogRecord:  # type: ignore[override]
        """The handler's filters, as Python 3.12 runs them on every version: False when one refuses the
        record; a filter may return a replacement record, which the next filters and the handler get (the
        record itself, and so the other handlers, stay as they were: e.g. the Flask integration ships
        Werkzeug's startup lines without terminal colours). True when none replaced it."""
        replaced: logging.LogRecord | None = None
        for f in self.filters:
            result = f.filter(record) if hasattr(f, "filter") else f(record)
            if not result:
                return False
            if isinstance(result, logging.LogRecord):
                record = replaced = result
        return replaced if replaced is not None else True

    def handle(self, record: logging.LogRecord) -> bool:
        """Capture the record and return at once (no handler lock, no I/O): the hot path."""
        try:
            try:
                thread = record.thread
            except AttributeError:  # a filter deleted it: shipped without it, as other missing attributes
                thread = None
            if (thread or _get_ident()) in WORKER_THREADS:
                return False  # caused by a worker (httpx, httpcore, ...): shipping it could loop forever
            if self.filters:
                verdict: Any = self.filter(record)
                if not verdict:
                    return False
                if isinstance(verdict, logging.LogRecord):  # a filter returned a replacement (`filter`)
                    record = verdict
            # `_entry.capture`, inlined for the common cases: a str msg with no args, or with immutable args
            # (whose rendering the worker does: the result cannot differ). Anything else is rendered now,
            # because mutable args may change after the call returns.
            # `size` is `_intake_charge.item_chars` inlined: `str_bytes` of each str (O(1): the length of
            # an ASCII str, else its real size, 2-4 bytes a character), `args_bytes` of kept arguments (a
            # large int's size, ARG_BYTES each beyond FREE_ARGS), extras O(their number).
            msg = record.msg
            args = record.args
            if type(msg) is not str or (args and type(args) is not tuple):
                msg, args = render(record)
                size = len(msg) if msg.isascii() else _sizeof(msg)
            elif args:
                size = len(msg) if msg.isascii() else _sizeof(msg)
                arg: Any
                for arg in args:
                    kind = type(arg)
                    if kind is str:
                        size += len(arg) if arg.isascii() else _sizeof(arg)
                    elif kind is int:
                        if not SMALL_INT_MIN <= arg <= SMALL_INT_MAX:
                            size += _sizeof(arg)
                    elif kind not in IMMUTABLE_ARG_TYPES:
                        msg, args = render(record)
                        size = len(msg) if msg.isascii() else _sizeof(msg)
                        break
                else:
                    if len(args) > FREE_ARGS:
                        size += (len(args) - FREE_ARGS) * ARG_BYTES
            else:
                args = None
                size = len(msg) if msg.isascii() else _sizeof(msg)
            attributes = record.__dict__
            # `_capture.snapshot`, inlined: what the worker reads, so the LogRecord is freed now (its
            # `__dict__` took up to ~1,200 B while waiting, and kept the collector busy).
            try:
                if attributes["exc_info"] or attributes["stack_info"]:
                    state = None
                else:
                    state = {
                        "name": attributes["name"],
                        "levelno": attributes["levelno"],
                        "created": attributes["created"],
                        "thread": attributes["thread"],
                        "threadName": attributes["threadName"],
                        "process": attributes["process"],
                        "exc_info": None,
                        "stack_info": None,
                    }
            except KeyError:
                state = None
            # The charge the record carries (`_intake_charge.record_charge`): its weight units, or its size
            # from LARGE_MESSAGE on. `extra=` fields count with what they occupy. Below ALWAYS_WEIGHED a
            # snapshot with FREE_EXTRAS fields has none (the typical one: no call). A record with an
            # exception or a stack holds their text, formatted now (`_capture.formatted_base`: its frames'
            # locals are freed when the caller returns), and is charged it. A record with no extras has
            # exactly a plain LogRecord's attributes, in order (PLAIN_KEYS; a filter that deleted some and
            # set `process` again may leave extras in a plain record's length).
            if state is None:
                state = formatted_base(attributes)
                size += copy_extras(attributes, state) + exc_info_bytes(state["exc_info"])
                charge = record_charge(size, len(state) - _SNAPSHOT_SIZE)
            else:
                if len(attributes) != RECORD_BASE_KEYS or [*attributes] != PLAIN_KEYS:
                    size += copy_extras(attributes, state)
                    extras = len(state) - _SNAPSHOT_SIZE
                else:
                    extras = 0
                if size < FLAT_CHARS or (size < ALWAYS_WEIGHED and extras == FREE_EXTRAS):
                    charge = 0
                else:
                    charge = record_charge(size, extras)
            context = _context_get()
            span_of = _otel.current_span  # None unless the application uses OpenTelemetry
            # `args` is a tuple or None by now (mypy cannot narrow `type(args) is not tuple`).
            item: CapturedRecord = (  # type: ignore[assignment]
                state, msg, args, context, span_of() if span_of is not None else None, charge
            )
            intake = self._intake
            weights = self._weights
            # The intake's charge in typical records: one each, plus the weights of the longer ones
            # (`_intake_charge.FLAT_CHARS`), appended after the record: a worker that takes the record in
            # between takes back fewer units, and this append leaves the sum over-charged until the intake
            # is next empty, never under-charged. A large bound context is charged while any record under
            # it waits (`ContextCharges`), counted under the pipeline's lock: the slow path, as a large
            # record's size is.
            held = len(intake) + (len(weights) >> WEIGHT_SHIFT)
            if (
                held < self._pipeline.soft_limit
                and charge < LARGE_MESSAGE
                and (context is None or not context.charged)
            ):
                intake.append(item)
                if charge:
                    weights.extend(WEIGHT_UNITS[charge])
                return True
            return self._pipeline.submit_slow(item)
        except Exception as exc:  # never raise into the application
            self._pipeline.count_internal_error(exc)
            return False

    def emit(self, record: logging.LogRecord) -> None:
        """For code that calls `emit` directly; `logging` itself goes through `handle`."""
        self.handle(record)

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until records logged so far are delivered (or dropped); False if `timeout` passed first.

        `timeout=None` means the handler's `shutdown_timeout`: every wait has a deadline.
        """
        began = time.monotonic()
        ok = self._pipeline.flush(timeout)
        self._flush_ran_out = None if ok or timeout is not None else (began, time.monotonic())
        return ok

    def close(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Deliver what is buffered (until the deadline), stop the worker. A second call does nothing.

        `timeout=None` means `shutdown_timeout`, minus what a default flush() that ran out less than
        CLOSE_FOLLOWS_FLUSH seconds ago already waited (flush then close, as `logging.shutdown()` does, takes
        one `shutdown_timeout`). Returns False when records had to be dropped at the deadline (see
        `stats().dropped["shutdown"]`).
        """
        ran_out, self._flush_ran_out = self._flush_ran_out, None
        if timeout is None and ran_out is not None and time.monotonic() - ran_out[1] < CLOSE_FOLLOWS_FLUSH:
            budget = self._pipeline.settings.shutdown_timeout
            timeout = max(0.0, ran_out[0] + budget - time.monotonic())
        try:
            return self._pipeline.close(timeout)
        finally:
            super().close()

    def stats(self) -> Stats:
        """A snapshot of queued / sent / retried / dropped-by-reason counts and the last error."""
        return self._pipeline.stats()

    def __repr__(self) -> str:
        return f"<OgLogHandler {self.service!r} -> {self.url!r} ({logging.getLevelName(self.level)})>"
