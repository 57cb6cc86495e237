"""structlog and asyncio events -> NDJSON lines: the `EntryEncoder.encode_struct` path, and the entry-wide
rules it shares with `_entry` (the empty-message stand-in, the fast message length, the accepted `created`
range). Kept apart from `_entry` (stdlib records, the worker's hot loop) so each file has one job.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from . import _diag
from . import wire as _wire
from ._capture import StructEvent
from ._entry_values import (
    _DIGITS,
    _LINKS,
    _STRUCT_RESERVED,
    _attributes,
    _encode_str,
    _exception_field,
    _parse_timestamp,
    _safe_repr,
    _safe_str,
    _value_json,
    _with_stack,
    level_for_name,
    span_links,
)
from ._timestamp_text import number_seconds
from .wire import clip_bytes

if TYPE_CHECKING:
    from ._entry import EntryEncoder

__all__ = ["EMPTY_MESSAGE", "MAX_CREATED", "MESSAGE_FAST_CHARS", "MIN_CREATED", "encode_struct", "restamped"]

#: The wire requires a message; an empty one is shipped as this instead of being rejected by the server.
EMPTY_MESSAGE = "(empty message)"
# Anything this short cannot exceed the byte limit even at 4 UTF-8 bytes per character.
MESSAGE_FAST_CHARS = _wire.MAX_MESSAGE_BYTES // 4
# The server stores DateTime64(6), which holds 1900-01-01 to 2299-12-31T23:59:59.999999Z: a `created` outside
# [MIN_CREATED, MAX_CREATED] (a clock or unit bug in a hand-made record) is replaced by the time of encoding
# rather than getting the entry rejected, and announced on stderr (`restamped`).
MIN_CREATED = 0.0  # 1970-01-01T00:00:00Z (int() truncation below assumes non-negative)
#: The last float before 2300-01-01T00:00:00Z: every `created` up to it encodes inside the server's range
#: (the microsecond is clamped to 999999), so the SDK's bound is the server's.
MAX_CREATED = math.nextafter(10413792000.0, 0.0)


def encode_struct(
    encoder: EntryEncoder, item: StructEvent, context: Mapping[str, object] | None, span: object = None
) -> bytes:
    """A structlog event dict as one NDJSON line: `event` is the message, other keys are attributes."""
    event = item.event
    raw_message = event.get("event")
    message = "" if raw_message is None else _safe_str(raw_message)
    level = level_for_name(event.get("level", item.method))
    created = item.created
    rest: dict[str, object] = {k: v for k, v in event.items() if k not in _STRUCT_RESERVED}
    if "timestamp" in event:
        parsed = _parse_timestamp(event["timestamp"])
        if parsed is None:
            rest["timestamp"] = event["timestamp"]  # keep what the app wrote, visibly
        elif MIN_CREATED <= parsed <= MAX_CREATED:
            created = parsed
        else:  # announced naming what the app wrote (`10**400`, a year past 2299), not its float
            created = restamped(event["timestamp"], "an event's timestamp")
    links = encoder._links({k: event[k] for k in _LINKS if k in event})
    for name in _LINKS:  # a non-string trace/span id stays visible as an attribute
        if name in event and f'"{name}"' not in links:
            rest[name] = event[name]
    if span is not None and not links:
        links = span_links(span)
    text = event.get("exception")
    if text is not None and not isinstance(text, str):
        text = _structured_exception(text)
    # An event's own `exception` text wins over the traceback text taken at the capture (`exc_info`).
    exception_text = text if isinstance(text, str) else item.exc_info or ""
    stack = event.get("stack")
    if isinstance(stack, str) and stack:
        exception_text = _with_stack(exception_text, stack)
    return _line(
        encoder,
        created,
        level,
        message,
        encoder._short(encoder._names, "logger", event.get("logger", event.get("logger_name"))),
        encoder._short(encoder._threads, "thread", item.thread),
        _exception_field(exception_text),
        links,
        _struct_attributes(encoder, context, rest),
    )


def _structured_exception(value: object) -> str:
    """An event's `exception` that is not text - structlog's `dict_tracebacks` makes it a list of dicts (the
    exception, its frames) - as JSON text for the exception field, so the traceback is not lost (an SDK
    review: it vanished without a word). Whatever JSON cannot hold becomes its repr."""
    try:
        return json.dumps(value, default=_safe_repr, ensure_ascii=False)
    except Exception:  # a cycle, non-str keys: the value's repr still says what it was
        return _safe_repr(value)


def _struct_attributes(
    encoder: EntryEncoder, context: Mapping[str, object] | None, rest: dict[str, object]
) -> str:
    """`,"attributes":{...}` of an event: the context's pairs, then the event's (which win). Without a context
    and with keys the wire keeps whole, the same text from the encoder's cached `"key":` openings."""
    if not context and len(rest) <= _wire.MAX_ATTRIBUTES:
        prefixes = encoder._key_prefixes
        parts = []
        for key, value in rest.items():
            if type(key) is not str or not 0 < len(key) <= _wire.MAX_ATTRIBUTE_KEY_CHARS:
                return _attributes(list(rest.items()))  # cut keys may collide: the merge rule decides
            prefix = prefixes.get(key)
            if prefix is None:
                prefix = encoder._key_prefix(key)
            parts.append(prefix + _value_json(value))
        return f',"attributes":{{{",".join(parts)}}}' if parts else ""
    pairs: list[tuple[object, object]] = list(context.items()) if context else []
    pairs.extend(rest.items())
    return _attributes(pairs)


def _line(
    encoder: EntryEncoder,
    created: float,
    level: str,
    message: str,
    logger: str,
    thread: str,
    exception: str,
    links: str,
    attributes: str,
) -> bytes:
    """One NDJSON line from its parts (each a ready JSON fragment, "" when absent); the message is clipped."""
    if len(message) > MESSAGE_FAST_CHARS:
        message = clip_bytes(message, _wire.MAX_MESSAGE_BYTES)
    elif not message:
        message = EMPTY_MESSAGE
    line = (
        f'{{"id":"{encoder.next_id()}","timestamp":"{_timestamp(encoder, created)}",'
        f'"level":"{level}",{encoder._static}"message":{_encode_str(message)}'
        f"{logger}{thread}{exception}{links}{attributes}}}\n"
    )
    try:
        return line.encode()  # the strict codec is the fastest; it fails only on a lone surrogate
    except UnicodeEncodeError:  # (from bad decoding upstream): it becomes "?", the body must be UTF-8
        return line.encode("utf-8", "replace")


def _timestamp(encoder: EntryEncoder, created: float) -> str:
    """RFC 3339 UTC with microseconds; the encoder's cached second text is shared with its fast path.

    Rounded to the nearest microsecond: an event's own timestamp (structlog's `TimeStamper`, ISO text with
    microseconds) reaches here as a float a fraction of a microsecond off, and truncating stored 1 µs less
    than the console printed (`.100000` as `.099999`). `rfc3339` is the rule."""
    if not MIN_CREATED <= created <= MAX_CREATED:  # also false for NaN
        created = restamped(created)
    second = int(created)
    micros = min(round((created - second) * 1_000_000), 999_999)
    if second != encoder._second:
        encoder._second = second
        encoder._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{encoder._second_text}.{_DIGITS[micros // 1000]}{_DIGITS[micros % 1000]}Z"


def restamped(created: object, what: str = "a record's created") -> float:
    """The Unix seconds to send for a `created` (or an event's `timestamp`) that is not a float in
    [MIN_CREATED, MAX_CREATED]: a number in that range as a float (`number_seconds`: an int, Decimal or
    Fraction `created` is a time like any other), else the time of encoding, said on stderr naming `what`
    and the value (rate-limited per DIAG_INTERVAL, repeats counted), never silently."""
    seconds = number_seconds(created)
    if seconds is not None and MIN_CREATED <= seconds <= MAX_CREATED:  # also false for NaN
        return seconds
    _diag.report(
        "restamped",
        f"{what}={_safe_repr(created):.40} is outside 1970-01-01..2299-12-31T23:59:59.999999Z (the stack's"
        " range) or not a number: sent with the time of encoding instead",
    )
    return time.time()
