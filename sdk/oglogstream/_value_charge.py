"""What the values a captured record or event keeps alive occupy, in bytes, O(1) each (shallow): text,
containers, numbers and other objects (`_values_bytes`), `%` arguments (`args_bytes`), a record's `extra=`
fields (`extras_bytes`, `copy_extras`: the handler's hot path), what a record kept whole holds and may be
given (`kept_bytes`). `_intake_charge` turns these into the intake's charges (importers take these names
from here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from sys import getsizeof
from typing import Any

from ._capture import PLAIN_KEYS, RECORD_BASE_KEYS
from ._entry_values import _BASE_KEYS, _STANDARD_KEYS
from ._value_walk import (
    _ATOMS,
    _BYTES,
    CONTAINER_ITEM_BYTES,
    LAYOUT_CACHE,
    MAPPING_ITEM_BYTES,
    OBJECT_FALLBACK_BYTES,
    SMALL_INT_MAX,
    SMALL_INT_MIN,
    WALK_DEPTH,
    WALK_ITEMS,
    nested_bytes,
    object_bytes,
)

__all__ = [
    "ARG_BYTES",
    "CONTAINER_ITEM_BYTES",
    "EXC_INFO_BYTES",
    "EXTRA_ATTR_BYTES",
    "FRAME_TEXT_BYTES",
    "FREE_ARGS",
    "LATER_FORMAT_BYTES",
    "LAYOUT_CACHE",
    "MAPPING_ITEM_BYTES",
    "MAX_CHAINED",
    "OBJECT_FALLBACK_BYTES",
    "SMALL_INT_MAX",
    "SMALL_INT_MIN",
    "TRACEBACK_FRAME_BYTES",
    "WALK_DEPTH",
    "WALK_ITEMS",
    "args_bytes",
    "copy_extras",
    "event_bytes",
    "exc_info_bytes",
    "extras_bytes",
    "kept_bytes",
    "nested_bytes",
    "object_bytes",
    "str_bytes",
    "traceback_frames",
]

#: What one `extra=` attribute of a captured record is charged besides its str value's characters: its slot
#: in the record's `__dict__` (which also grows by resizing) and the value object's header. Measured with
#: tracemalloc: 50 ten-character str fields add ~4,250 B to a record (~85 B each); charged 96 + 10.
EXTRA_ATTR_BYTES = 96
#: What each traceback frame beyond the first of a record kept whole (`kept_bytes`) or of an event's
#: exception (`exc_info_bytes`) holds: its traceback entry and frame object (tracemalloc, 3-10 frames of
#: small functions: ~245 B a frame) and what its locals keep alive (a frame holding one 200-character str
#: local: ~500 B). Charged at 256 B, 30 frames of the latter held 1.56x their event's charge. Locals larger
#: than that are not counted (reading `f_locals` would build, and keep, a dict per frame).
TRACEBACK_FRAME_BYTES = 512
#: What a handler after ours adds to a record kept whole (`kept_bytes`) besides the message's text: a
#: Formatter's `message` and `asctime` (slots, headers, the dict's growth) and `exc_text`'s fixed part
#: (header line, exception line); FRAME_TEXT_BYTES a frame besides its file name (line number, function,
#: source line). Measured with tracemalloc (a later StreamHandler formatting `logger.exception` records).
LATER_FORMAT_BYTES = 320
FRAME_TEXT_BYTES = 96
#: What an exception attached to a structlog or `AsyncOgLogClient` event (its StructEvent's `exc_info`)
#: holds with a one-frame traceback: KEPT_RECORD_BYTES less RECORD_BYTES (`_intake_charge`), the part of a
#: kept record's charge that is its exception's (`exc_info_bytes`: the same rule as `kept_bytes`).
EXC_INFO_BYTES = 768
#: Chained exceptions `traceback_frames` counts at most (a cycle stops it sooner): O(1) work per record.
MAX_CHAINED = 16
_LEFTOVERS = ("message", "asctime")
#: A record's `%` arguments kept for the worker (`_capture.render`: str, int, float, bool, None) beyond the
#: first FREE_ARGS are charged ARG_BYTES each besides their text (a str's characters, `str_bytes`) and a
#: large int's `sys.getsizeof`: the args tuple's slot (8 B) and the value's object (float 24 B, int 28-36 B,
#: a str's 49 B header). The flat charge and RECORD_BYTES cover the first FREE_ARGS (the typical `"%s"`
#: or `"%d of %d"` call, which so stays on the fast path). Before, 6 / 10 / 20 float arguments held 1.19x /
#: 1.40x / 1.95x their charge (tracemalloc, waiting records).
FREE_ARGS = 2
ARG_BYTES = 64


def str_bytes(text: str) -> int:
    """What a str's text occupies, O(1): its length when ASCII (1 byte a character; the ~49 B header is in
    RECORD_BYTES / EXTRA_ATTR_BYTES), else its whole size (`sys.getsizeof`): PEP 393 stores non-Latin-1
    text in 2 or 4 bytes a character (CJK 2, emoji 4), so counting characters let a stuck worker's intake
    hold 1.9x (CJK) to 3.7x (emoji) the budget. `OgLogHandler.handle` inlines the same expression."""
    return len(text) if text.isascii() else getsizeof(text)


def _values_bytes(values: Iterable[Any]) -> int:
    """What `values` hold beyond their slots, O(1) each: `str_bytes` of str values, nothing for floats,
    bools, None and ints from SMALL_INT_MIN to SMALL_INT_MAX (EXTRA_ATTR_BYTES covers them), the length of
    bytes values, `nested_bytes` of anything else (containers, objects, a large int)."""
    size = 0
    for value in values:
        kind = type(value)
        if kind is str:
            size += len(value) if value.isascii() else getsizeof(value)
        elif kind is int:
            if not SMALL_INT_MIN <= value <= SMALL_INT_MAX:
                size += getsizeof(value)
        elif kind in _ATOMS:
            pass
        elif kind in _BYTES:
            size += len(value)
        else:
            size += nested_bytes(value)
    return size


def args_bytes(args: tuple[Any, ...] | None) -> int:
    """What a captured record's `%` arguments (kept for the worker: IMMUTABLE_ARG_TYPES values, or None
    once rendered) are charged: `str_bytes` of str ones, `sys.getsizeof` of ints beyond SMALL_INT_MAX, and
    ARG_BYTES for each beyond FREE_ARGS. `OgLogHandler.handle` inlines it."""
    if not args:
        return 0
    size = (len(args) - FREE_ARGS) * ARG_BYTES if len(args) > FREE_ARGS else 0
    for arg in args:
        kind = type(arg)
        if kind is str:
            size += len(arg) if arg.isascii() else getsizeof(arg)
        elif kind is int and not SMALL_INT_MIN <= arg <= SMALL_INT_MAX:
            size += getsizeof(arg)
    return size


def event_bytes(event: Mapping[str, Any]) -> int:
    """What a captured structlog/asyncio event dict occupies, charged as a record's `extra=` fields are
    (`extras_bytes`): EXTRA_ATTR_BYTES per key plus its values' text and elements (the message is the
    `event` value). O(number of keys)."""
    return len(event) * EXTRA_ATTR_BYTES + _values_bytes(event.values())


def extras_bytes(record_dict: dict[str, Any]) -> int:
    """What a captured record's dict holds beyond LogRecord's own attributes: EXTRA_ATTR_BYTES per other key
    plus `_values_bytes` of their values. For a snapshot (`_capture.snapshot`), its `extra=` fields (what
    `copy_extras` returns); for a record kept whole, also a Formatter's `message`/`asctime` an earlier
    handler left (it holds them). O(number of keys): a capture's (`_capture.capture`) and a kept record's
    (the slow path's) charge only. Computed once, at the capture (the record's `record_charge`)."""
    extras = [value for key, value in record_dict.items() if key not in _BASE_KEYS]
    return len(extras) * EXTRA_ATTR_BYTES + _values_bytes(extras) if extras else 0


def kept_bytes(record_dict: dict[str, Any], size: int) -> int:
    """What a record kept whole (exception, stack) is charged besides KEPT_RECORD_BYTES and `size` (its
    message and arguments, `item_chars`' first terms): `extras_bytes` of its `__dict__`, its `stack_info`
    and `exc_text` text, TRACEBACK_FRAME_BYTES per traceback frame beyond the first (`traceback_frames`),
    and, since the charge is taken once, at the capture, what a handler after ours may add while it waits
    unless one before already did (no `message` yet): a Formatter's `message` (the text again when it has
    arguments), `asctime` and `exc_text` (LATER_FORMAT_BYTES, FRAME_TEXT_BYTES a frame and the frames' file
    names). O(number of
    keys + frames): the slow path's (exceptions are rare, and formatting them costs O(frames) anyway)."""
    held = extras_bytes(record_dict)
    for key in ("stack_info", "exc_text"):
        text = record_dict.get(key)
        if type(text) is str:
            held += len(text) if text.isascii() else getsizeof(text)
    frames, names = traceback_frames(record_dict.get("exc_info"))
    if frames > 1:
        held += (frames - 1) * TRACEBACK_FRAME_BYTES
    if "message" not in record_dict:
        held += LATER_FORMAT_BYTES + frames * FRAME_TEXT_BYTES + names
        if record_dict.get("args"):  # else `getMessage()` returns the msg str itself
            held += size
    return held


def exc_info_bytes(exc_info: object) -> int:
    """What a captured event's `exc_info` triple keeps alive, in bytes, charged by the rule of a record
    kept whole (`kept_bytes`): EXC_INFO_BYTES for the exception and its first frame, TRACEBACK_FRAME_BYTES
    per frame beyond it and the text `traceback_frames` counts (file names, the exceptions' str arguments).
    0 for None. Computed once, at the capture (a re-raise grows the traceback later). O(frames); never
    raises. Before, an event's traceback was not charged: 1 / 10 / 30 frames held 1,817 / 6,316 / 16,313 B
    against an 800 B charge."""
    if exc_info is None:
        return 0
    frames, names = traceback_frames(exc_info)
    return EXC_INFO_BYTES + max(frames - 1, 0) * TRACEBACK_FRAME_BYTES + names


def traceback_frames(exc_info: object) -> tuple[int, int]:
    """(frames, text) of the tracebacks an `exc_info` triple keeps alive: its exception's and those of the
    exceptions it chains (`__cause__`, `__context__`), up to MAX_CHAINED exceptions; `text` is what their
    formatting (`exc_text`) takes beyond FRAME_TEXT_BYTES a frame: the frames' file names and `str_bytes`
    of the exceptions' str arguments (its last line, `ValueError: <text>`). (0, 0) for anything else.
    Never raises."""
    frames = names = 0
    try:
        exc = exc_info[1] if type(exc_info) is tuple and len(exc_info) == 3 else None
        seen: set[int] = set()
        while isinstance(exc, BaseException) and len(seen) < MAX_CHAINED and id(exc) not in seen:
            seen.add(id(exc))
            for arg in exc.args[:MAX_CHAINED]:
                if type(arg) is str:
                    names += len(arg) if arg.isascii() else getsizeof(arg)
            tb = exc.__traceback__
            while tb is not None:
                frames += 1
                names += len(tb.tb_frame.f_code.co_filename)
                tb = tb.tb_next
            exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    except Exception:
        pass
    return frames, names


def copy_extras(record_dict: dict[str, Any], into: dict[str, Any]) -> int:
    """Copy the `extra=` fields of `record_dict` (a LogRecord's `__dict__`: `_capture.extra_items`, inlined;
    not a Formatter's leftovers, which the encoder skips and the snapshot so needs not hold) into `into` (a
    `_capture.snapshot`), in their order, and return what they are charged: what they occupy
    (`extras_bytes` of the snapshot) plus, as if held, a Formatter's `message`/`asctime` an earlier handler
    left. O(number of extras) for the usual record. One pass for both jobs: the handler's hot path."""
    before = len(into)
    size = 0
    keys = [*record_dict]
    for key in keys[RECORD_BASE_KEYS:] if keys[:RECORD_BASE_KEYS] == PLAIN_KEYS else keys:
        if key in _STANDARD_KEYS:
            continue
        into[key] = value = record_dict[key]
        # `_values_bytes`'s rule, inlined for the usual types (a call per value would cost more than the rule)
        kind = type(value)
        if kind is str:
            size += len(value) if value.isascii() else getsizeof(value)
        elif kind is int:
            if not SMALL_INT_MIN <= value <= SMALL_INT_MAX:
                size += getsizeof(value)
        elif kind not in _ATOMS:
            size += _values_bytes((value,))
    if "message" in record_dict or "asctime" in record_dict:
        # An earlier handler's Formatter leftovers are not copied, yet charged as an `extra=` field each
        # (never among the FREE_EXTRAS): a bound on the record whoever keeps it, as before snapshots (a
        # `message` is often the msg str itself; an `asctime` ~72 B). Rare enough for a call.
        size += _values_bytes([record_dict[key] for key in _LEFTOVERS if key in record_dict])
        size += EXTRA_ATTR_BYTES * (("message" in record_dict) + ("asctime" in record_dict))
    return size + (len(into) - before) * EXTRA_ATTR_BYTES
