"""The caller's side of a log call: what the handler and the structlog processor capture before the worker.

Captures are cheap and never raise: a record's attribute dict and its message (rendered now unless every
argument is immutable), or a shallow copy of a structlog event dict. The worker turns them into NDJSON lines
(`_entry.EntryEncoder`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

from ._entry_values import _STANDARD_KEYS

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
    "extra_items",
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
#: ones the encoder reads (`_entry`), and `process` (a forked child keeps its own records by it).
SNAPSHOT_KEYS = ("name", "levelno", "created", "thread", "threadName", "process", "exc_info", "stack_info")

#: Argument types whose `%` rendering cannot change after the call: rendering them is left to the worker.
IMMUTABLE_ARG_TYPES = frozenset({str, int, float, bool, type(None)})

#: What the handler captures on the caller's thread: (the record's `snapshot`, or its attribute dict when it
#: is kept whole, msg, args, context, span, charge). The snapshot, `msg` and `args` are taken now, so what a
#: later handler or filter changes or adds changes nothing; `args` is None when `msg` is already rendered,
#: or a tuple of IMMUTABLE_ARG_TYPES values when rendering is left to the worker (same result, and the
#: caller skips the `%`). `span` is the OpenTelemetry span that was active (see `_otel`), or None; its ids
#: are read on the worker (a span's context never changes). `charge` is what the intake charged the record
#: (`_intake_charge.record_charge`), taken back as is when it leaves (a later handler may add attributes
#: to a record kept whole meanwhile).
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


def snapshot(attributes: dict[str, Any]) -> dict[str, Any] | None:
    """A small dict of what the worker reads of a record, `attributes` (its `__dict__`): SNAPSHOT_KEYS, then
    its `extra=` fields in their order (`extra_items`: not a Formatter's leftovers, which the encoder
    skips). None when the record is kept whole: it has `exc_info` or `stack_info`
    (formatted on the worker), or lacks one of SNAPSHOT_KEYS (a hand-made record). `OgLogHandler.handle`
    inlines it.

    Why: a record waiting with its own `__dict__` took ~650 B, ~1,230-1,430 B with `extra=` fields once
    LogRecords lost CPython's shared instance-dict keys (varied `extra=` names, a Formatter's `message`),
    and kept the garbage collector busy; with its snapshot it takes ~460 B (~570 B with two short
    `extra=` fields; tracemalloc, the tuple and its slot included), the LogRecord is freed at once and the
    snapshot is untracked when its values are atomic. The encoder gives both the same bytes."""
    try:
        if attributes["exc_info"] or attributes["stack_info"]:
            return None
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
        return None
    if len(attributes) != RECORD_BASE_KEYS or [*attributes] != PLAIN_KEYS:
        state.update(extra_items(attributes))
    return state


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
    """What `OgLogHandler.handle` captures (it inlines this for speed), its charge included."""
    from ._intake_charge import item_chars, record_charge  # imports this module
    from ._value_charge import copy_extras, kept_bytes

    msg, args = render(record)
    attributes = record.__dict__
    state = snapshot(attributes)
    if state is None:  # kept whole: charged what its `__dict__` holds and may be given (`kept_bytes`)
        size = item_chars(({}, msg, args, context, span, 0))
        size += kept_bytes(attributes, size)
        return (attributes, msg, args, context, span, record_charge(size, 0, True))
    size = item_chars(({}, msg, args, context, span, 0)) + copy_extras(attributes, {})
    return (state, msg, args, context, span, record_charge(size, len(state) - len(SNAPSHOT_KEYS)))


def capture_exc_info(value: Any) -> tuple[Any, Any, Any] | None:
    """Resolve `exc_info` now, on the caller's thread: `True` means "the exception being handled here"."""
    if value is None or value is False:
        return None
    if value is True:
        info = sys.exc_info()
        return info if info[0] is not None else None
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple) and len(value) == 3:
        return value
    return None



class StructEvent(NamedTuple):
    """What the structlog processor captures on the caller's thread (the dict is a shallow copy)."""

    event: dict[str, Any]
    method: str
    created: float
    thread: str
    exc_info: tuple[Any, Any, Any] | None
    #: What `exc_info` is charged in the intake (`_value_charge.exc_info_bytes`, taken once at the capture).
    exc_charge: int = 0

