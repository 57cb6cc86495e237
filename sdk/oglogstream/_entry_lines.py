"""The worker's hot loop: a chunk of intake items -> NDJSON lines (`EntryEncoder.encode_lines`).

A record of the common shape (no exception, a short non-empty message, a valid float `created`, a level and
logger/thread names seen before) is assembled here from cached fragments with one f-string; anything else
goes through `EntryEncoder._encode_general`, which also fills those caches. Both build the same bytes
(tests/sdk/test_encode_lines.py, test_encoding_equivalence.py, test_sdk_perfpath.py). Why one generator
per chunk: what the fast path reads once per chunk (the caches, the constants) and the fragments of the
previous record's level, names, extra keys and bound context (the same objects again: the same fragments,
no lookup) stay in locals. With the exact `round` rule below that is about a fifth less of the worker's CPU
per burst benchmark record, a third less under a bound context (docs/benchmarks.md "Encoding cost per
record")."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from . import wire as _wire
from ._capture import RECORD_BASE_KEYS, SNAPSHOT_KEYS, render_failed
from ._entry_struct import MAX_CREATED, MESSAGE_FAST_CHARS, MIN_CREATED
from ._entry_values import (
    _BASE_KEYS,
    _DIGITS,
    _INT64_MAX,
    _INT64_MIN,
    _SKIPPED_KEYS,
    _encode_str,
    _value_json,
    span_links,
)
from ._items import CapturedEvent, Item

if TYPE_CHECKING:
    from ._entry import EntryEncoder

__all__ = ["SNAPSHOT_SIZE", "encode_lines"]

#: A captured record's dict is a `_capture.snapshot`: SNAPSHOT_KEYS, then its extras. The encoder also takes
#: a record's `__dict__` (RECORD_BASE_KEYS, then its extras: `encode_captured` called directly). Either way
#: its extras are the keys after the last base key (`_record_attributes` walks back to it): the sizes below
#: only pick the fast paths (which check it).
SNAPSHOT_SIZE = len(SNAPSHOT_KEYS)
_SNAPSHOT_LAST = SNAPSHOT_KEYS[-1]
_ONE_EXTRA = RECORD_BASE_KEYS + 1
_TWO_EXTRA = RECORD_BASE_KEYS + 2
_ONE_EXTRA_SNAPSHOT = SNAPSHOT_SIZE + 1
_TWO_EXTRA_SNAPSHOT = SNAPSHOT_SIZE + 2
#: "Nothing seen yet" for the previous-record locals: identical to no value a record holds.
_UNSET = object()


def encode_lines(encoder: EntryEncoder, items: Iterable[Item]) -> Iterator[bytes | BaseException]:
    """One NDJSON line per item (a `CapturedRecord` or a `CapturedEvent`), in order, lazily (`_ingest.ingest`
    takes a chunk's lines from one generator: an item it does not take is never encoded, no id is drawn for
    it). An item whose encoding raised (never, by design) yields the exception instead, and the next item is
    encoded."""
    heads = encoder._heads
    tails = encoder._tails
    pairs = encoder._attribute_pairs
    attribute_heads = encoder._attribute_heads
    prefixes = encoder._key_prefixes
    counter = encoder._counter
    id_head = encoder._id_head
    general = encoder._encode_general
    record_attributes = encoder._record_attributes
    encode_struct = encoder.encode_struct
    encode_str = _encode_str
    digits = _DIGITS
    base_keys = _BASE_KEYS
    skipped_keys = _SKIPPED_KEYS
    max_value = _wire.MAX_ATTRIBUTE_VALUE_CHARS
    max_key = _wire.MAX_ATTRIBUTE_KEY_CHARS
    # The previous record's level, logger and thread names, extra keys, and their fragments (_UNSET: none
    # yet). Each fragment is a function of these objects alone, so the same objects give the same text.
    level: object = _UNSET
    name: object = _UNSET
    thread: object = _UNSET
    pair_first: object = _UNSET
    pair_last: object = _UNSET
    one_key: object = _UNSET
    head = tail = one_head = ""
    pair: tuple[str, str] | None = None
    # The last bound context whose body `_record_attributes` cached (held, so its identity is not reused;
    # a bound context is never mutated), its keys, `,"attributes":{body}` and `,"attributes":{body,`.
    bound: Mapping[str, object] | None = None  # (only a truthy context is compared with it)
    bound_keys: frozenset[object] = frozenset()
    bound_attributes = bound_open = ""
    bound_left = 0  # how many extras fit beside it in MAX_ATTRIBUTES
    # The second of the previous record's `created`, as [start, end) floats, and its text.
    second_start = second_end = -1.0
    stamp = ""
    line: bytes | BaseException
    first_json: object
    value_json: object
    for item in items:
        try:
            if type(item) is CapturedEvent:
                line = encode_struct(*item)
            else:
                state, msg, args, context, span, _charge = item  # type: ignore[misc]
                if args is not None:
                    try:
                        msg = msg % args
                    except Exception as exc:
                        msg = render_failed(msg, args, exc)
                try:
                    created = state["created"]
                    levelno = state["levelno"]
                    # 40.0 or True hash like 40 or 1: only an int's head is cached (else: general)
                    if levelno is not level and type(levelno) is int:
                        head = heads[levelno]
                        level = levelno
                    logger_name = state["name"]
                    thread_name = state["threadName"]
                    if logger_name is not name or thread_name is not thread:
                        if type(logger_name) is not str or type(thread_name) is not str:
                            # A str subclass (or any object) may equal a cached name and hash like it yet
                            # spell differently, or fail to hash: only exact strs are looked up.
                            raise KeyError(logger_name)
                        tail = tails[(logger_name, thread_name)]
                        name = logger_name
                        thread = thread_name
                    fast = not (
                        levelno is not level  # not an int
                        or state["exc_info"]
                        or state["stack_info"]
                        or type(created) is not float
                        or not msg
                        or len(msg) > MESSAGE_FAST_CHARS
                    )
                except (KeyError, TypeError):  # an unusual record (missing attributes, unhashable names)
                    fast = False
                if fast and not second_start <= created < second_end:  # a new second (or NaN)
                    if MIN_CREATED <= created <= MAX_CREATED:
                        second = int(created)
                        stamp = encoder._stamp_for(second)
                        second_start = float(second)  # exact: `created - second` is the same float
                        second_end = second_start + 1.0
                    else:
                        fast = False
                if not fast:
                    line = general(state, msg, context, span)
                else:
                    # The nearest microsecond (`rfc3339`: `round`, ties to even), without `round`'s method
                    # lookup: both subtractions are exact, so `rest` decides as `round` does.
                    fraction = (created - second_start) * 1e6
                    micros = fraction.__trunc__()
                    rest = fraction - micros
                    if rest >= 0.5 and (rest > 0.5 or micros & 1):
                        micros += 1
                    if micros > 999_999:
                        micros = 999_999
                    links = attributes = ""
                    size = len(state)
                    # An int value goes into the f-string as it is: an exact int formats as `int.__repr__`
                    # (the text `_value_json` gives), without the call.
                    if not context:
                        if size in (_TWO_EXTRA_SNAPSHOT, _TWO_EXTRA):
                            # Two `extra=` fields (the benchmark's shape): one cached opening per key pair.
                            try:
                                keys = reversed(state)
                                last = next(keys)
                                key = next(keys)
                                if key is not pair_first or last is not pair_last:
                                    # Only pairs of str keys the wire keeps whole are cached
                                    # (`_attribute_pair`); None (any other pair) is kept for these keys too.
                                    found = None  # a key that is not an exact str: the general path
                                    if type(key) is str and type(last) is str:  # (as for the names)
                                        found = pairs.get((key, last))
                                        if found is None and not (
                                            key in skipped_keys or last in skipped_keys
                                        ):
                                            found = encoder._attribute_pair(key, last)
                                    pair = found
                                    pair_first = key
                                    pair_last = last
                                if pair is not None and next(keys) in base_keys:
                                    first_value = state[key]
                                    kind = type(first_value)
                                    if kind is int and _INT64_MIN <= first_value <= _INT64_MAX:
                                        first_json = first_value
                                    elif kind is str and len(first_value) <= max_value:
                                        first_json = encode_str(first_value)
                                    else:
                                        first_json = _value_json(first_value)
                                    value = state[last]
                                    kind = type(value)
                                    if kind is str and len(value) <= max_value:
                                        value_json = encode_str(value)
                                    elif kind is int and _INT64_MIN <= value <= _INT64_MAX:
                                        value_json = value
                                    else:
                                        value_json = _value_json(value)
                                    attributes = f"{pair[0]}{first_json}{pair[1]}{value_json}}}"
                                else:
                                    links, attributes = record_attributes(state, context)
                            except (RuntimeError, KeyError, StopIteration):  # changed by another thread
                                links, attributes = record_attributes(state, context)
                        elif size in (_ONE_EXTRA_SNAPSHOT, _ONE_EXTRA):
                            # One `extra=` field: the same fragment `_record_attributes` builds.
                            try:
                                keys = reversed(state)
                                key = next(keys)
                                # A str key only: True and 1 hash alike, a cache keyed by either would spell
                                # the other.
                                if type(key) is str and key not in skipped_keys and next(keys) in base_keys:
                                    value = state[key]
                                    kind = type(value)
                                    if kind is str and len(value) <= max_value:
                                        value_json = encode_str(value)
                                    elif kind is int and _INT64_MIN <= value <= _INT64_MAX:
                                        value_json = value
                                    else:
                                        value_json = _value_json(value)
                                    if key is not one_key:
                                        one_head = attribute_heads.get(key) or encoder._attribute_head(key)
                                        one_key = key
                                    attributes = f"{one_head}{value_json}}}"
                                else:
                                    links, attributes = record_attributes(state, context)
                            except (RuntimeError, KeyError, StopIteration):  # changed by another thread
                                links, attributes = record_attributes(state, context)
                        elif size > SNAPSHOT_SIZE:  # a kept record without extras walks back: the same text
                            links, attributes = record_attributes(state, context)
                    elif context is bound and "msg" not in state:
                        # A bound context seen before (every record of a request under the Django/Flask
                        # integrations): `_record_attributes`' rule for a snapshot and its extras.
                        try:
                            keys = reversed(state)
                            key = next(keys)
                            if size == SNAPSHOT_SIZE and key == _SNAPSHOT_LAST:
                                attributes = bound_attributes
                            elif (
                                size == _ONE_EXTRA_SNAPSHOT
                                and bound_left
                                and type(key) is str
                                and 0 < len(key) <= max_key
                                and key not in skipped_keys
                                and key not in bound_keys  # (an extra overriding a context key: merged)
                                and next(keys) == _SNAPSHOT_LAST
                            ):
                                value = state[key]
                                kind = type(value)
                                if kind is str and len(value) <= max_value:
                                    value_json = encode_str(value)
                                elif kind is int and _INT64_MIN <= value <= _INT64_MAX:
                                    value_json = value
                                else:
                                    value_json = _value_json(value)
                                prefix = prefixes.get(key) or encoder._key_prefix(key)
                                attributes = f"{bound_open}{prefix}{value_json}}}"
                            elif size > _ONE_EXTRA_SNAPSHOT and size - SNAPSHOT_SIZE <= bound_left:
                                # More extras (an access record): the same walk back, then the last
                                # snapshot key; any key the walk would not ship as is: the walk itself.
                                parts: list[str] = []
                                for _ in range(size - SNAPSHOT_SIZE):
                                    if (
                                        type(key) is not str
                                        or not 0 < len(key) <= max_key
                                        or key in skipped_keys
                                        or key in bound_keys
                                    ):
                                        break
                                    prefix = prefixes.get(key) or encoder._key_prefix(key)
                                    parts.append(prefix + _value_json(state[key]))
                                    key = next(keys)
                                else:
                                    if key == _SNAPSHOT_LAST:
                                        parts.reverse()
                                        attributes = f'{bound_open}{",".join(parts)}}}'
                                if not attributes:
                                    links, attributes = record_attributes(state, context)
                            else:
                                links, attributes = record_attributes(state, context)
                        except (RuntimeError, KeyError, StopIteration):  # changed by another thread
                            links, attributes = record_attributes(state, context)
                    else:
                        links, attributes = record_attributes(state, context)
                        if encoder._context is context and encoder._context_body is not None:
                            # Remembered (and encoded) by `_record_attributes`: later records reuse it.
                            bound = context
                            bound_keys = encoder._context_keys
                            bound_attributes = encoder._context_attributes
                            bound_open = f',"attributes":{{{encoder._context_body},'
                            bound_left = _wire.MAX_ATTRIBUTES - len(bound_keys)
                    if span is not None and not links:  # explicit extra= trace_id/span_id win
                        links = span_links(span)
                    # hex() and the 3-digit table: the cheapest spellings of the id's counter and the
                    # zero-padded microseconds (`"%x" %` / `"%06d" %` take 2-3x as long).
                    text = (
                        f"{id_head}{hex(next(counter))}{stamp}{digits[micros // 1000]}"
                        f"{digits[micros % 1000]}Z{head}{encode_str(msg)}{tail}{links}{attributes}}}\n"
                    )
                    try:
                        line = text.encode()  # the strict codec is the fastest; it fails only on a lone
                    except UnicodeEncodeError:  # surrogate (bad decoding upstream): it becomes "?", the
                        line = text.encode("utf-8", "replace")  # body must be UTF-8
        except BaseException as exc:  # the caller counts and reports it; the next item is encoded
            line = exc
        yield line
