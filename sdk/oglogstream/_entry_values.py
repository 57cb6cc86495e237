"""JSON fragments of an entry's parts: attribute values and keys, exceptions, trace links, times, levels.

Every limit of the wire contract (`wire`) is met by converting or clipping, never by raising: a value that is
not JSON-safe becomes its `repr`, a long string keeps its head and tail (`wire.clip_chars`/`clip_bytes`),
and whatever user code (`__repr__`, `__str__`) raises becomes a placeholder. Used by `_entry.EntryEncoder`.
"""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from . import wire as _wire
from ._timestamp_text import number_seconds, parse_timestamp_text
from .wire import clip_bytes, clip_chars, level_for_number

__all__ = ["DROPPED_ATTRIBUTES_KEY", "level_for_name", "rfc3339", "span_links"]

#: Extra attribute that says how many `extra=`/context keys did not fit in MAX_ATTRIBUTES.
DROPPED_ATTRIBUTES_KEY = "oglog.dropped_attributes"

_encode_str: Callable[[str], str] = json.encoder.encode_basestring  # the C-accelerated escaper
_INT64_MIN = _wire.INT64_MIN
_INT64_MAX = _wire.INT64_MAX

# LogRecord attributes that are not user `extra=` fields (plus what formatters and structlog's stdlib
# bridge add to a record). `taskName` is one from Python 3.12 on (so in _BASE_KEYS there); on 3.11 it is
# an `extra=` field like any other and is shipped.
_BASE_KEYS = frozenset(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None).__dict__)
_STANDARD_KEYS = _BASE_KEYS | {
    "message",
    "asctime",
    "_from_structlog",
    "_logger",
    "_name",
}
# structlog event-dict keys that map to entry fields instead of attributes.
_STRUCT_RESERVED = frozenset(
    {"event", "level", "logger", "logger_name", "timestamp", "exception", "exc_info", "stack",
     "trace_id", "span_id", "_record", "_from_structlog"}
)
_LINKS = ("trace_id", "span_id")
#: "000".."999": a timestamp's microseconds as two table lookups (`"%06d" %` takes 2-3x as long).
_DIGITS = tuple(f"{n:03d}" for n in range(1000))
# Keys the fast attribute path does not ship as-is: standard record keys, and links (handled separately).
_SKIPPED_KEYS = _STANDARD_KEYS | frozenset(_LINKS)

# structlog level / method names -> wire levels: the stored names and their aliases (wire.LEVEL_BY_NAME:
# warning, critical, err, ...) plus structlog's own method names.
_LEVEL_BY_NAME = {
    **_wire.LEVEL_BY_NAME,
    "trace": "debug",
    "notset": "debug",
    "msg": "info",
    "log": "info",
    "exception": "error",
}



def span_links(span: object) -> str:
    """`,"trace_id":...,"span_id":...` for an active, valid OpenTelemetry span; "" otherwise. Never raises."""
    try:
        context = span.get_span_context()  # type: ignore[attr-defined]
        if not context.is_valid:
            return ""
        return f',"trace_id":"{context.trace_id:032x}","span_id":"{context.span_id:016x}"'
    except Exception:
        return ""



def level_for_name(name: object) -> str:
    """Map a structlog level / method name (or a stdlib number) to a wire level; unknown names are `info`."""
    if isinstance(name, int) and not isinstance(name, bool):
        return level_for_number(name)
    if isinstance(name, str):
        return _LEVEL_BY_NAME.get(name.lower(), "info")
    return "info"


def rfc3339(created: float) -> str:
    """`created` (Unix seconds) as RFC 3339 UTC with microseconds, e.g. 2026-11-27T10:00:00.123456Z: the
    nearest microsecond (a float of an ISO text's microseconds is a fraction off either way), .999999 within
    half a microsecond of the next second (no carry: the second's text is cached). The rule of every entry
    (`EntryEncoder.encode_captured`, `_entry_struct._timestamp`)."""
    seconds = int(created)
    micros = min(round((created - seconds) * 1_000_000), 999_999)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{micros:06d}Z"



#: What user code (`__repr__`, `__str__`) may raise while the worker encodes: anything. A KeyboardInterrupt or
#: SystemExit raised there is the user object's doing (signals reach only the main thread), and must not stop
#: the worker: the value becomes a placeholder and the record is kept.
_USER_CODE_ERRORS = BaseException


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except _USER_CODE_ERRORS:
        return f"<unrepresentable {type(value).__qualname__}>"


def _safe_str(value: object) -> str:
    if type(value) is str:
        return value
    try:
        return str(value)
    except _USER_CODE_ERRORS:
        return _safe_repr(value)


def _value_json(value: object) -> str:
    """One attribute value as JSON text: a string, number or bool within the wire limits."""
    kind = type(value)
    if kind is str:
        text: str = value  # type: ignore[assignment]
        if len(text) > _wire.MAX_ATTRIBUTE_VALUE_CHARS:
            text = clip_chars(text, _wire.MAX_ATTRIBUTE_VALUE_CHARS)
        return _encode_str(text)
    if kind is bool:
        return "true" if value else "false"
    if kind is int and _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
        return int.__repr__(value)
    if kind is float and math.isfinite(value):  # type: ignore[arg-type]
        return float.__repr__(value)
    return _value_json_slow(value)


def _value_json_slow(value: object) -> str:
    try:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            text = str.__str__(value)
        elif isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX:
            return int.__repr__(value)
        elif isinstance(value, float):
            if math.isfinite(value):
                return float.__repr__(value)
            text = _wire.non_finite_text(value)
        elif isinstance(value, (dict, list, tuple)):
            # Nested values travel as JSON text; whatever json cannot do becomes a repr inside it.
            try:
                text = json.dumps(value, default=_safe_repr, ensure_ascii=False, allow_nan=False)
            except ValueError:  # NaN/Infinity inside (or a cycle: the finite pass then recurses out, repr)
                text = json.dumps(_wire.finite_json(value), default=_safe_repr, ensure_ascii=False)
        else:
            text = repr(value)
    except _USER_CODE_ERRORS:  # cycles, non-str keys, huge ints, a raising __repr__ ...
        text = _safe_repr(value)
    return _encode_str(clip_chars(text, _wire.MAX_ATTRIBUTE_VALUE_CHARS))


def _key(key: object) -> str:
    text = key if type(key) is str else _safe_str(key)
    if not text:
        return "_"
    return text if len(text) <= _wire.MAX_ATTRIBUTE_KEY_CHARS else text[: _wire.MAX_ATTRIBUTE_KEY_CHARS]


def _attributes(pairs: Iterable[tuple[object, object]]) -> str:
    """`,"attributes":{...}` for the pairs (later keys win), or "" when there are none."""
    merged: dict[str, object] = {}
    for key, value in pairs:
        merged[_key(key)] = value
    if not merged:
        return ""
    items = list(merged.items())
    if len(items) > _wire.MAX_ATTRIBUTES:
        dropped = len(items) - (_wire.MAX_ATTRIBUTES - 1)
        items = [*items[: _wire.MAX_ATTRIBUTES - 1], (DROPPED_ATTRIBUTES_KEY, dropped)]
    body = ",".join([f"{_encode_str(k)}:{_value_json(v)}" for k, v in items])
    return f',"attributes":{{{body}}}'


#: Formatted frames kept by `_FrameTexts` (a full cache is cleared): at most this many, and a frame's text
#: longer than FRAME_TEXT_MAX characters (a minified or generated source line) is formatted each time instead
#: of kept, so the cache holds at most ~1,024 x 2 KB = 2 MB (an SDK review: 1,000 frames of 20,000-character
#: lines kept 40 MB outside `max_buffer_bytes`).
FRAME_TEXT_CACHE = 1024
FRAME_TEXT_MAX = 2048


class _FrameTexts(traceback.StackSummary):
    """A StackSummary whose frames' text is remembered per frame (file, line, columns, function, source
    line): the stdlib's own `format_frame_summary`, run once per distinct frame. Since the traceback is
    formatted on the caller's thread, its cost is the caller's: on Python 3.11 each frame's caret line
    `ast.parse`s its source line, and this cache took `logger.exception` from 138 to 74 µs (4 frames) and
    from 475 to 160 µs (22 frames) for frames seen before (docs/benchmarks.md "logger.exception at the
    call"). The same text by construction: the key holds every field the method reads. Python 3.10 has no
    `format_frame_summary` (nothing is cached there)."""

    _texts: dict[tuple[object, ...], str] = {}

    def format_frame_summary(self, frame_summary: traceback.FrameSummary, **options: Any) -> str:
        if frame_summary.locals is not None:
            text: str = super().format_frame_summary(frame_summary, **options)  # type: ignore[misc]
            return text
        key = (
            frame_summary.filename,
            frame_summary.lineno,
            getattr(frame_summary, "end_lineno", None),
            getattr(frame_summary, "colno", None),
            getattr(frame_summary, "end_colno", None),
            frame_summary.name,
            getattr(frame_summary, "_original_line", frame_summary.line),
            getattr(frame_summary, "_original_lines", None),  # Python 3.13: a statement's every line
            *sorted(options.items()),
        )
        texts = self._texts
        cached = texts.get(key)
        if cached is None:
            text = super().format_frame_summary(frame_summary, **options)  # type: ignore[misc]
            if len(text) > FRAME_TEXT_MAX:
                return text
            cached = text
            if len(texts) >= FRAME_TEXT_CACHE:
                texts.clear()
            texts[key] = cached
        return cached


def _format_exception(exc_info: Any) -> str:
    """An exception (or a `(type, value, traceback)` triple) as `traceback.format_exception` text, chained
    exceptions included, without the final newline; "" for anything else (None, `(None, None, None)`).
    Never raises: when formatting raises (a broken `__str__`, a recursion), a placeholder naming the error.
    Called on the caller's thread at the capture (`_capture.exception_text`, `_capture.capture_exc_info`).
    `traceback.format_exception`'s own steps (a TracebackException of `type(value)`, compact), with each
    exception's frames formatted through `_FrameTexts`."""
    try:
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        if not isinstance(exc_info, tuple) or len(exc_info) != 3 or exc_info[0] is None:
            return ""
        value = exc_info[1]
        summary = traceback.TracebackException(type(value), value, exc_info[2], compact=True)
        todo = [summary]
        seen: set[int] = set()
        while todo:  # the chain (cause, context) and an exception group's members, as `format` walks them
            each = todo.pop()
            if id(each) in seen:
                continue
            seen.add(id(each))
            if type(each.stack) is traceback.StackSummary:
                each.stack.__class__ = _FrameTexts
            todo.extend(e for e in (each.__cause__, each.__context__) if e is not None)
            todo.extend(getattr(each, "exceptions", None) or ())
        return "".join(summary.format()).rstrip("\n")
    # Exception, not _USER_CODE_ERRORS: this runs on the caller's thread, where a KeyboardInterrupt or
    # SystemExit is a signal (Ctrl-C, an app's SIGTERM handler) that must reach the application, as it does
    # through the stdlib's own handlers. A raising `__str__` is caught inside `traceback` itself.
    except Exception as exc:  # a formatting failure (a recursion, a broken object) must not lose the record
        return f"<traceback unavailable: {_safe_repr(exc)}>"


def _with_stack(text: str, stack: str) -> str:
    """The exception field's text: the traceback's `text` (may be ""), then `stack` (a record's `stack_info`,
    an event's `stack`) on a line of its own. The one rule of records and events."""
    return f"{text}\n{stack}" if text else stack


def _exception_field(text: str) -> str:
    if not text:
        return ""
    return f',"exception":{_encode_str(clip_bytes(text, _wire.MAX_EXCEPTION_BYTES))}'


#: Whole seconds of the UTC timestamps seen ("YYYY-MM-DDTHH:MM:SS" -> Unix seconds), cleared when full.
_UTC_SECONDS: dict[str, int | None] = {}
_UTC_SECONDS_SIZE = 4096


def _parse_timestamp(value: object) -> float | None:
    """An event's `timestamp` (Unix seconds as an int, float, Decimal or Fraction, or RFC 3339 text; naive
    text is local time) as Unix seconds, or None when it is neither. structlog's UTC form
    (`2026-11-29T17:00:00.123456Z`) costs one cached lookup per second instead of a parse: the same float
    (`timedelta.total_seconds` divides integer microseconds)."""
    if type(value) is str and len(value) == 27 and value[26] == "Z" and value[19] == ".":
        fraction = value[20:26]
        if fraction.isascii() and fraction.isdigit():
            second = value[:19]
            whole = _UTC_SECONDS.get(second, -1)
            if whole == -1:
                if len(_UTC_SECONDS) >= _UTC_SECONDS_SIZE:
                    _UTC_SECONDS.clear()
                try:
                    whole = int(datetime.fromisoformat(f"{second}+00:00").timestamp())
                except (ValueError, OverflowError, OSError):
                    whole = None
                _UTC_SECONDS[second] = whole
            return None if whole is None else (whole * 1_000_000 + int(fraction)) / 1_000_000
    seconds = number_seconds(value)  # 10**400 is inf: outside the range, so restamped (announced)
    if seconds is not None:
        return seconds
    if isinstance(value, str):
        return parse_timestamp_text(value)  # the stack's rule; naive text is local time
    return None

