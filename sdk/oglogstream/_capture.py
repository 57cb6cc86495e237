"""The caller's side of a log call: what the handler and the structlog processor capture before the worker.

Captures are cheap and never raise: a snapshot of a record's attributes and its message (rendered now unless
every argument is immutable), or a shallow copy of a structlog event dict. An exception (and a stack) becomes
its text here, on the caller's thread (`exception_text`, `capture_exc_info`), as the stdlib's
`QueueHandler.prepare` does: a waiting record or event never holds a traceback, whose frames would keep
every local variable alive (a failed request's 10 MB body) far past what the intake charged. The worker
turns captures into NDJSON lines (`_entry.EntryEncoder`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

from ._entry_values import _STANDARD_KEYS, _format_exception, _safe_str, _with_stack
from .wire import MAX_EXCEPTION_BYTES, clip_bytes

__all__ = [
    "IMMUTABLE_ARG_TYPES",
    "LAST_RECORD_KEY",
    "PLAIN_KEYS",
    "RECORD_BASE_KEYS",
    "SNAPSHOT_KEYS",
    "CapturedRecord",
    "StructEvent",
    "capture",
    "capture_exc_info",
    "exception_text",
    "extra_items",
    "formatted_base",
    "render",
    "render_failed",
    "snapshot",
]

_PLAIN_RECORD = logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None).__dict__
#: A LogRecord created by `logging` has this many attributes; more means `extra=` fields (or formatter
#: leftovers such as `message`, which the encoder filters out).
RECORD_BASE_KEYS = len(_PLAIN_RECORD)
#: The attribute `LogRecord.__init__` sets last (`process` on 3.11, `taskName` from 3.12): where a record's
#: own attributes end in its `__dict__` unless one was deleted, set again or the record was hand-made.
LAST_RECORD_KEY = next(reversed(_PLAIN_RECORD))
#: A plain LogRecord's attribute names in the order `LogRecord.__init__` sets them. A record whose `__dict__`
#: starts with exactly these (`[*d][:RECORD_BASE_KEYS] == PLAIN_KEYS`: a C-level compare of interned names,
#: as cheap as skipping them with islice) has its extras after them; any other (an attribute deleted, set
#: again, a hand-made record) is walked whole (`extra_items`).
PLAIN_KEYS: list[str] = list(_PLAIN_RECORD)

#: The LogRecord attributes a snapshot (`snapshot`) keeps, in this order, before the `extra=` fields: the
#: ones the encoder reads (`_entry`), and `process` (a forked child keeps its own records by it). A
#: snapshot's `exc_info` is the `exception` field's text (`exception_text`, formatted at the capture) or
#: None, its `stack_info` always None (the stack is part of that text).
SNAPSHOT_KEYS = ("name", "levelno", "created", "thread", "threadName", "process", "exc_info", "stack_info")

#: Argument types whose `%` rendering cannot change after the call: rendering them is left to the worker.
IMMUTABLE_ARG_TYPES = frozenset({str, int, float, bool, type(None)})

#: What the handler captures on the caller's thread: (the record's `snapshot`, msg, args, context, span,
#: charge). The snapshot, `msg` and `args` are taken now, so what a
#: later handler or filter changes or adds changes nothing; `args` is None when `msg` is already rendered,
#: or a tuple of IMMUTABLE_ARG_TYPES values when rendering is left to the worker (same result, and the
#: caller skips the `%`). `span` is the OpenTelemetry span that was active (see `_otel`), or None; its ids
#: are read on the worker (a span's context never changes). `charge` is what the intake charged the record
#: (`_intake_charge.record_charge`), taken back as is when it leaves.
CapturedRecord = tuple[
    dict[str, Any], str, "tuple[Any, ...] | None", "Mapping[str, object] | None", object, int
]


def render(record: logging.LogRecord) -> tuple[str, tuple[Any, ...] | None]:
    """`(msg, args)` for a CapturedRecord: rendered now unless every arg is immutable. Never raises."""
    msg = record.msg
    args = record.args
    try:
        if args:
            if type(msg) is str and type(args) is tuple:
                for arg in args:
                    if type(arg) not in IMMUTABLE_ARG_TYPES:
                        return msg % args, None
                return msg, args
            return str(msg) % args, None
        return (msg if type(msg) is str else str(msg)), None
    except Exception as exc:
        return render_failed(msg, args, exc), None


def render_failed(msg: object, args: object, exc: Exception) -> str:
    """A bad format string must not cost the record (stdlib would print a traceback and lose it)."""
    try:
        return f"{msg!r} % {args!r} (message formatting failed: {exc!r})"
    except Exception:
        return f"(message formatting failed: {type(exc).__name__})"


def snapshot(attributes: dict[str, Any]) -> dict[str, Any]:
    """A small dict of what the worker reads of a record, `attributes` (its `__dict__`): SNAPSHOT_KEYS, then
    its `extra=` fields in their order (`extra_items`: not a Formatter's leftovers, which the encoder
    skips). A record with `exc_info` or `stack_info`, or one lacking one of SNAPSHOT_KEYS (a hand-made
    record), gets `formatted_base`. `OgLogHandler.handle` inlines it.

    Why: a record waiting with its own `__dict__` took ~650 B, ~1,230-1,430 B with `extra=` fields once
    LogRecords lost CPython's shared instance-dict keys (varied `extra=` names, a Formatter's `message`),
    and kept the garbage collector busy; with its snapshot it takes ~460 B (~570 B with two short
    `extra=` fields; tracemalloc, the tuple and its slot included), the LogRecord is freed at once and the
    snapshot is untracked when its values are atomic. The encoder gives both the same bytes."""
    try:
        if attributes["exc_info"] or attributes["stack_info"]:
            state = formatted_base(attributes)
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
        state = formatted_base(attributes)
    if len(attributes) != RECORD_BASE_KEYS or [*attributes] != PLAIN_KEYS:
        state.update(extra_items(attributes))
    return state


def formatted_base(attributes: dict[str, Any]) -> dict[str, Any]:
    """A snapshot's SNAPSHOT_KEYS (no extras yet) for a record the handler's fast path does not take: one
    with an exception or a stack, whose `exc_info` becomes the exception field's text now
    (`exception_text`, None when there is none), or a hand-made one lacking some of them (a missing one is
    None, as the encoder reads it). O(frames); never raises."""
    get = attributes.get
    return {
        "name": get("name"),
        "levelno": get("levelno"),
        "created": get("created"),
        "thread": get("thread"),
        "threadName": get("threadName"),
        "process": get("process"),
        "exc_info": exception_text(get("exc_info"), get("stack_info"), get("exc_text")),
        "stack_info": None,
    }


def exception_text(exc_info: object, stack_info: object, exc_text: object = None) -> str | None:
    """The `exception` field's text of a record with `exc_info` (an exception or a `(type, value, traceback)`
    triple: `_entry_values._format_exception`, chained exceptions included) and/or `stack_info` (appended on
    a line of its own), clipped to MAX_EXCEPTION_BYTES as the encoder clips it (`clip_bytes` keeps the head
    and the last line, and clipping twice changes nothing); None when there is neither. A str `exc_text`
    already on the record (an earlier Formatter's, or a filter's redacted one) is used instead of formatting
    `exc_info` again, as `logging.Formatter.format` does. Never raises."""
    if exc_info and type(exc_text) is str and exc_text:
        text = exc_text
    else:
        text = _format_exception(exc_info) if exc_info else ""
    if stack_info:
        text = _with_stack(text, _safe_str(stack_info))
    return clip_bytes(text, MAX_EXCEPTION_BYTES) if text else None


def extra_items(attributes: dict[str, Any]) -> list[tuple[str, Any]]:
    """The `(key, value)` pairs of `attributes` (a LogRecord's `__dict__`) that are `extra=` fields (or
    attributes a filter or record factory added): every key that is not a standard one (`_STANDARD_KEYS`:
    LogRecord's own, a Formatter's `message`/`asctime`, structlog's bridge keys), in their order.

    O(number of extras) past a C-level compare for a record whose own attributes come first, as
    `LogRecord.__init__` sets them (PLAIN_KEYS). Anything else (a filter deleted `pathname`, or deleted and
    set again an attribute, which moves it to the end, LAST_RECORD_KEY included; a hand-made record) takes
    the walk over every key. (Before 2026-11-30 only LAST_RECORD_KEY's position was checked: deleting N
    attributes and setting `process` again lost N extras.) `_value_charge.copy_extras` inlines it."""
    keys = [*attributes]
    return [
        (key, attributes[key])
        for key in (keys[RECORD_BASE_KEYS:] if keys[:RECORD_BASE_KEYS] == PLAIN_KEYS else keys)
        if key not in _STANDARD_KEYS
    ]


def capture(
    record: logging.LogRecord, context: Mapping[str, object] | None, span: object = None
) -> CapturedRecord:
    """What `OgLogHandler.handle` captures (it inlines this for speed), its charge included: the message,
    arguments and context (`item_chars`), the extras (`copy_extras`) and the exception's text, if any
    (`exc_info_bytes`)."""
    from ._intake_charge import item_chars, record_charge  # imports this module
    from ._value_charge import copy_extras, exc_info_bytes

    msg, args = render(record)
    attributes = record.__dict__
    size = item_chars(({}, msg, args, context, span, 0))
    try:
        plain = not (attributes["exc_info"] or attributes["stack_info"])
    except KeyError:
        plain = False
    state = snapshot(attributes) if plain else formatted_base(attributes)
    if plain:
        size += copy_extras(attributes, {})
    else:
        size += copy_extras(attributes, state) + exc_info_bytes(state["exc_info"])
    return (state, msg, args, context, span, record_charge(size, len(state) - len(SNAPSHOT_KEYS)))


def capture_exc_info(value: Any) -> str | None:
    """The traceback text of an event's `exc_info`, formatted now, on the caller's thread
    (`_entry_values._format_exception`): `True` means "the exception being handled here", else an
    exception or a `(type, value, traceback)` triple. None when there is none (None, False, `True` outside
    an `except` block, anything else). Never raises; the event keeps the text, never the traceback."""
    if value is None or value is False:
        return None
    if value is True:
        info: Any = sys.exc_info()
        if info[0] is None:
            return None
    elif isinstance(value, BaseException) or (isinstance(value, tuple) and len(value) == 3):
        info = value
    else:
        return None
    text = _format_exception(info)
    return clip_bytes(text, MAX_EXCEPTION_BYTES) if text else None  # what the encoder would ship of it


class StructEvent(NamedTuple):
    """What the structlog processor captures on the caller's thread (the dict is a shallow copy)."""

    event: dict[str, Any]
    method: str
    created: float
    thread: str
    #: The exception's text (`capture_exc_info`, formatted at the capture), or None.
    exc_info: str | None
    #: What `exc_info` is charged in the intake (`_value_charge.exc_info_bytes`, taken once at the capture).
    exc_charge: int = 0

