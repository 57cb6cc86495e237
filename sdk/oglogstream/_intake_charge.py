"""What captured records and events are charged while they wait in a driver's intake (caller side, before
the worker encodes them): INTAKE_ITEM_BYTES each, weights for mid-size records (`weight_units`), the text of
large ones (`large_bytes`) and bound contexts once while any item references them (`ContextCharges`); the
intake's bound in records (`intake_limit`) and the encoded buffer's reserve for it (`intake_reserve`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from ._context import BoundContext
from ._items import CapturedEvent
from ._settings import MIN_BUFFER_BYTES
from ._value_charge import (
    EXTRA_ATTR_BYTES,
    args_bytes,
    event_bytes,
    extras_bytes,
    str_bytes,
)

__all__ = [
    "ALWAYS_WEIGHED",
    "EVENT_BYTES",
    "FLAT_CHARS",
    "FREE_EXTRAS",
    "INTAKE_FLOOR",
    "INTAKE_ITEM_BYTES",
    "LARGE_MESSAGE",
    "RECORD_BYTES",
    "WEIGHT_BYTES",
    "WEIGHT_SHIFT",
    "WEIGHT_UNITS",
    "ContextCharges",
    "event_units",
    "intake_limit",
    "intake_reserve",
    "intake_room",
    "is_charged",
    "item_chars",
    "item_context",
    "large_bytes",
    "record_charge",
    "record_units",
    "settle_weights",
    "weight_units",
]


#: What one captured record is assumed to occupy while it waits in the caller-side intake (its
#: `_capture.snapshot`, the 6-tuple and its slot: measured at ~460 B plus the message, ~570 B with two short
#: `extra=` fields). Callers cannot measure bytes cheaply, so the intake is bounded by a count derived from
#: the byte budget and this estimate.
INTAKE_ITEM_BYTES = 640
#: The intake always has room for this many records (capped by max_records), even when the encoded
#: buffer has used up the byte budget: the overflow policy then applies in the encoded buffer instead.
INTAKE_FLOOR = 1000
#: A record whose message plus str arguments (plus `extras_bytes`), or an event whose `event_bytes`, reach
#: this many characters is not "typical": it takes the caller's slow path, where its size (`large_bytes`)
#: counts against the intake's byte room, so a stuck worker cannot let 100k multi-kilobyte (or a few hundred
#: 10 MB) messages, or records/events with dozens of fields, pile up past max_buffer_bytes.
LARGE_MESSAGE = 1024
#: What a captured record occupies while it waits in the intake besides its characters (message, str
#: arguments, what `extras_bytes` charges), its slot in the intake included. Set when the record's whole
#: `__dict__` was kept (~592-630 B plus the message str's 49 B header, tracemalloc through `logger.info`,
#: Python 3.11); its snapshot takes ~460 B plus the message str (header included), so this over-charges
#: mid-size records by ~190 B (safe; lowering it would give bursts more room).
RECORD_BYTES = 704
#: A record charged fewer characters than this, less up to FREE_EXTRAS fields' EXTRA_ATTR_BYTES (the
#: `weight_units` basis), is charged INTAKE_ITEM_BYTES flat. From here to LARGE_MESSAGE it is charged,
#: besides, `weight_units` WEIGHT_BYTES each, lock-free: the handler appends them to the pipeline's
#: `intake_weights` deque, the worker takes them back as it takes the records (`settle_weights`). With the
#: flat charge alone a stuck worker let records of 200 / 300 / 1,000 characters take 1.23x / 1.38x / 2.44x
#: the budget. Below it a record takes up to RECORD_BYTES + 63 + two fields' slots (~820 B, 1.3x its
#: charge), like the typical record (a short message with a couple of `extra=` fields, ~700 B), which so
#: pays neither the caller's append nor the worker's recount. Structlog and asyncio events are charged by
#: `event_units` instead.
FLAT_CHARS = 64
#: `extra=` fields whose EXTRA_ATTR_BYTES the flat charge covers (the typical record's) when the record has
#: no more than these.
FREE_EXTRAS = 2
#: The unit of the weights: 1/2**WEIGHT_SHIFT of INTAKE_ITEM_BYTES, so `len(intake) + (len(weights) >>
#: WEIGHT_SHIFT)` is the intake's charge in INTAKE_ITEM_BYTES records (the fast path's one check).
WEIGHT_SHIFT = 3
WEIGHT_BYTES = INTAKE_ITEM_BYTES >> WEIGHT_SHIFT
#: What a unit covers of the record: WEIGHT_BYTES less its own slot in the deque (a pointer).
_WEIGHT_COVERS = WEIGHT_BYTES - 8
#: What a captured structlog or `AsyncOgLogClient` event occupies besides what `event_bytes` charges (its
#: keys' slots and its values' text): the dict copy's table, the StructEvent, the CapturedEvent and its slot
#: in the intake. Measured with tracemalloc (1-10 keys, 10-600 characters): ~385 B with one key, up to
#: ~440 B with six (the dict's table grows in steps); an asyncio event (its dict also holds `level`) at most
#: 0.78x its charge (tests/sdk/test_async_charge.py). Below it a mid-size event was charged the flat 640 B:
#: up to 1.97x (structlog), 1.93x (asyncio).
EVENT_BYTES = 480
#: From this many characters every record below LARGE_MESSAGE is charged weights (`weight_units`).
ALWAYS_WEIGHED = FLAT_CHARS + FREE_EXTRAS * EXTRA_ATTR_BYTES


def item_context(item: tuple[Any, ...]) -> Any:
    """The bound context a captured record or event carries (a mapping, or None)."""
    return item[1] if type(item) is CapturedEvent else item[3]


def is_charged(context: object) -> bool:
    """Whether `context` is a `BoundContext` that `ContextCharges` charges (it or what it extends reaches
    LARGE_MESSAGE): a record carrying one takes the caller's slow path, where the charge is taken under the
    pipeline's lock."""
    return type(context) is BoundContext and context.charged


class ContextCharges:
    """What the intake holds of charged bound contexts (`is_charged`), one per pipeline, changed only under
    the lock its driver takes items out of the intake under.

    A context is charged its `nbytes` (and each `base` it extends, on its own) while ANY record or event
    referencing it waits in the intake or is being encoded: charged when the first enters, released when
    the last leaves. So 50,000 records under one context are charged it once, and a context whose first
    record was sent or dropped is charged again for the next ones (they keep it alive). Keyed by `id()`:
    the waiting records keep the object alive, so the id is stable while its count is above 0."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: dict[int, int] = {}

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def enter(self, context: object) -> int:
        """One more item references `context`; returns the bytes newly charged (0 when already held)."""
        size = 0
        waiting = self._waiting
        while type(context) is BoundContext:
            if context.nbytes >= LARGE_MESSAGE:
                key = id(context)
                count = waiting.get(key, 0)
                waiting[key] = count + 1
                if not count:
                    size += context.nbytes
            context = context.base
        return size

    def leave(self, context: object) -> int:
        """An item referencing `context` left; returns the bytes released (when it was the last one)."""
        size = 0
        waiting = self._waiting
        while type(context) is BoundContext:
            if context.nbytes >= LARGE_MESSAGE:
                key = id(context)
                count = waiting.pop(key, 0) - 1
                if count > 0:
                    waiting[key] = count
                elif count == 0:
                    size += context.nbytes
            context = context.base
        return size

    def release(self, items: Iterable[tuple[Any, ...]]) -> int:
        """`items` left the intake: `large_bytes` of each plus the contexts released (see `leave`)."""
        size = 0
        for item in items:
            size += large_bytes(item)
            context = item_context(item)
            if type(context) is BoundContext and context.charged:
                size += self.leave(context)
        return size

    def clear(self) -> None:
        """The intake was emptied without `release` (an abandoned worker, a forked child)."""
        self._waiting.clear()


def weight_units(size: int, extras: int) -> int:
    """How many WEIGHT_BYTES units a record of `size` characters (`item_chars`) with `extras` attributes
    beyond a plain LogRecord's is charged besides INTAKE_ITEM_BYTES: 0 from LARGE_MESSAGE on (`large_bytes`
    charges those) and below FLAT_CHARS (after FREE_EXTRAS fields' EXTRA_ATTR_BYTES), else enough that
    INTAKE_ITEM_BYTES + the units cover RECORD_BYTES + that basis (and the units' own deque slots). With more
    than FREE_EXTRAS fields none is free: the snapshot's dict (`_capture.snapshot`) outgrows its first table
    (~260 B more at three fields, tracemalloc)."""
    if size >= LARGE_MESSAGE:
        return 0
    if 0 < extras <= FREE_EXTRAS:
        size -= extras * EXTRA_ATTR_BYTES
    if size < FLAT_CHARS:
        return 0
    return -(-(size + RECORD_BYTES - INTAKE_ITEM_BYTES) // _WEIGHT_COVERS)


def record_charge(size: int, extras: int) -> int:
    """The charge a captured record carries (its tuple's last element, `CapturedRecord`) for a record of
    `size` bytes (`item_chars`) with `extras` attributes beyond a plain LogRecord's: `size` from
    LARGE_MESSAGE on (the `large_bytes` its slow path charges), else its `weight_units` (at most
    `weight_units(LARGE_MESSAGE - 1, 0)`, far below LARGE_MESSAGE). A record with an exception or a stack
    counts its text in `size` (`_value_charge.exc_info_bytes`): it holds nothing else of them. Carried, never
    recomputed: what is taken back when the record leaves the intake is exactly what was charged, whatever a
    later handler or filter adds to the record meanwhile (recomputing took back 3 of a 300-character
    record's 6 units once a later Formatter had set `message`: phantom charges that refused records)."""
    if size >= LARGE_MESSAGE:
        return size
    return weight_units(size, extras)


def event_units(size: int) -> int:
    """The WEIGHT_BYTES units a structlog or asyncio event of `size` bytes (`item_chars`) is charged besides
    INTAKE_ITEM_BYTES: enough to cover EVENT_BYTES + `size` (and the units' own deque slots); 0 from
    LARGE_MESSAGE on (`large_bytes` charges those) and for a small event the flat charge covers."""
    if size >= LARGE_MESSAGE:
        return 0
    over = size + EVENT_BYTES - INTAKE_ITEM_BYTES
    return -(-over // _WEIGHT_COVERS) if over > 0 else 0


def record_units(item: tuple[Any, ...]) -> int:
    """The `weight_units` a captured record was charged (carried in its tuple), or a structlog or asyncio
    event's `event_units` (computed from its dict, a copy nothing changes afterwards); 0 for a large record
    (`large_bytes`)."""
    if type(item) is CapturedEvent:
        return event_units(item_chars(item))
    charge: int = item[5]
    return charge if charge < LARGE_MESSAGE else 0


#: WEIGHT_UNITS[k]: k placeholder units, appended with one `deque.extend` (atomic under the GIL).
WEIGHT_UNITS: tuple[tuple[None, ...], ...] = tuple(
    (None,) * k for k in range(weight_units(LARGE_MESSAGE - 1, 0) + 1)
)


def settle_weights(weights: deque[None], items: Iterable[tuple[Any, ...]]) -> None:
    """`items` left the intake: take their `weight_units` back from `weights` (the driver's lock held; callers
    only append): the units each record carries (`record_units`), so the placeholders need no identity.
    Never below 0: a caller appends its record before its units, so a worker may take the record first."""
    units = sum(map(record_units, items))
    pop = weights.pop
    for _ in range(min(units, len(weights))):
        pop()


def large_bytes(item: tuple[Any, ...]) -> int:
    """`item_chars`, or 0 below LARGE_MESSAGE: what the item is charged beyond INTAKE_ITEM_BYTES on the
    caller's slow path. A record's is the charge it carries (`record_charge`, computed at the capture); an
    event's is computed from its dict (a copy the SDK made, which nothing changes afterwards)."""
    if type(item) is CapturedEvent:
        size = item_chars(item)
        return size if size >= LARGE_MESSAGE else 0
    charge: int = item[5]
    return charge if charge >= LARGE_MESSAGE else 0


def item_chars(item: tuple[Any, ...]) -> int:
    """What a captured record or event occupies beyond RECORD_BYTES, in bytes: for a record `str_bytes` of
    its str message and str arguments (O(1) each) plus `extras_bytes` (`OgLogHandler.handle` inlines the
    same sum, `_capture.capture` calls this: the record's `record_charge` is computed from it once); for an
    event `event_bytes` of its dict and its traceback's charge, taken at the capture (`exc_charge`); plus
    for either `event_bytes` of a bound context that is a plain mapping (structlog's contextvars alone). A
    `BoundContext` is charged by `ContextCharges` instead (once while any item referencing it waits)."""
    if type(item) is CapturedEvent:
        event = item[0]
        size = event_bytes(event.event) + event.exc_charge
        context = item[1]
        if context and type(context) is not BoundContext:
            size += event_bytes(context)
        return size
    context = item[3]
    size = event_bytes(context) if context and type(context) is not BoundContext else 0
    msg = item[1]
    if type(msg) is str:
        size += str_bytes(msg)
    return size + args_bytes(item[2]) + extras_bytes(item[0])


def intake_limit(max_records: int, max_bytes: int, held_bytes: int) -> int:
    """How many captured records may wait in the intake while `held_bytes` encoded bytes are buffered."""
    return min(max_records, intake_room(max_bytes, held_bytes) // INTAKE_ITEM_BYTES)


def intake_room(max_bytes: int, held_bytes: int) -> int:
    """The bytes the intake's charges (INTAKE_ITEM_BYTES a record, weights, large text) may reach while
    `held_bytes` encoded bytes are buffered: the rest of the budget, never less than INTAKE_FLOOR records'.
    Not capped by max_buffer_records: that count is checked on its own (mid-size records' weights must not
    make 100 records of max_buffer_records=100 refuse the 89th)."""
    return max(INTAKE_FLOOR, (max_bytes - held_bytes) // INTAKE_ITEM_BYTES) * INTAKE_ITEM_BYTES


def intake_reserve(max_bytes: int) -> int:
    """Bytes of `max_bytes` the encoded buffer leaves to the intake's floor (INTAKE_FLOOR captured records,
    which the intake always admits): with it, captured plus encoded records stay within the budget even when
    the encoded buffer is full (without it they reached budget + 640,000 B). Never so much that less than
    MIN_BUFFER_BYTES (the smallest budget max_buffer_bytes allows, where the largest entry fits) is left for
    encoded entries: under a budget below MIN_BUFFER_BYTES + 640,000 B the floor's records
    may exceed it by the difference (docs/sdk.md "Overflow")."""
    return max(0, min(INTAKE_FLOOR * INTAKE_ITEM_BYTES, max_bytes - MIN_BUFFER_BYTES))
