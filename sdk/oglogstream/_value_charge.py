"""What the values a captured record or event keeps alive occupy, in bytes, O(1) each (shallow): text,
containers, numbers and other objects (`_values_bytes`), `%` arguments (`args_bytes`), a record's `extra=`
fields (`extras_bytes`, `copy_extras`: the handler's hot path), an exception's text (`exc_info_bytes`).
`_intake_charge` turns these into the intake's charges (importers take these names
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
    "EXTRA_ATTR_BYTES",
    "FREE_ARGS",
    "LAYOUT_CACHE",
    "MAPPING_ITEM_BYTES",
    "OBJECT_FALLBACK_BYTES",
    "SMALL_INT_MAX",
    "SMALL_INT_MIN",
    "WALK_DEPTH",
    "WALK_ITEMS",
    "args_bytes",
    "copy_extras",
    "event_bytes",
    "exc_info_bytes",
    "extras_bytes",
    "nested_bytes",
    "object_bytes",
    "str_bytes",
]

#: What one `extra=` attribute of a captured record is charged besides its str value's characters: its slot
#: in the record's `__dict__` (which also grows by resizing) and the value object's header. Measured with
#: tracemalloc: 50 ten-character str fields add ~4,250 B to a record (~85 B each); charged 96 + 10.
EXTRA_ATTR_BYTES = 96
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
    plus `_values_bytes` of their values: for a snapshot (`_capture.snapshot`), its `extra=` fields (what
    `copy_extras` returns). O(number of keys): `item_chars`' part for a record. Computed once, at the
    capture (the record's `record_charge`)."""
    extras = [value for key, value in record_dict.items() if key not in _BASE_KEYS]
    return len(extras) * EXTRA_ATTR_BYTES + _values_bytes(extras) if extras else 0


def exc_info_bytes(text: str | None) -> int:
    """What the exception's text a captured record or event keeps (`_capture.exception_text`,
    `_capture.capture_exc_info`: formatted at the capture, so nothing of the traceback is held) occupies:
    its whole `sys.getsizeof` (the str rule, `str_bytes`, plus the ~49 B header, which no per-item
    allowance covers for this second str), 0 for None. Before the text was taken at the capture, a
    waiting record or event kept its traceback, whose frames kept every local alive, charged ~1.5 KB +
    512 B a frame: 2,000 failures holding a distinct 128 KB local each kept ~260 MB against the 128 MiB
    default budget."""
    return 0 if text is None else getsizeof(text)


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
