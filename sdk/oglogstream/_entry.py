"""Captured records -> wire entries: one NDJSON line each, built on the worker thread, always valid.

Every limit in `wire` is enforced by truncating or converting, never by raising (the parts' rules are in
`_entry_values`): a long message or traceback keeps its head and its tail with TRUNCATION_MARKER between
(the tail is where a traceback names the error). Lines are assembled from pre-encoded fragments instead of
`json.dumps(dict)` because this is the worker's hot loop; `json.encoder.encode_basestring` (C) escapes.
What the caller's thread captures is defined in `_capture`; this module re-exports it. structlog/asyncio
events are encoded by `_entry_struct`.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from . import wire as _wire
from ._capture import (
    IMMUTABLE_ARG_TYPES,
    RECORD_BASE_KEYS,
    SNAPSHOT_KEYS,
    CapturedRecord,
    StructEvent,
    capture,
    capture_exc_info,
    exception_text,
    render,
    render_failed,
)
from ._entry_attrs import NAME_CACHE_SIZE, AttributeFragments
from ._entry_struct import (
    EMPTY_MESSAGE,
    MAX_CREATED,
    MESSAGE_FAST_CHARS,
    MIN_CREATED,
    encode_struct,
    restamped,
)
from ._entry_values import (
    _BASE_KEYS,
    _DIGITS,
    _INT64_MAX,
    _INT64_MIN,
    _SKIPPED_KEYS,
    DROPPED_ATTRIBUTES_KEY,
    _encode_str,
    _exception_field,
    _safe_str,
    _value_json,
    level_for_name,
    rfc3339,
    span_links,
)
from ._items import CapturedEvent, Item
from .wire import clip_bytes, clip_chars, level_for_number

__all__ = [
    "DROPPED_ATTRIBUTES_KEY",
    "EMPTY_MESSAGE",
    "IMMUTABLE_ARG_TYPES",
    "RECORD_BASE_KEYS",
    "CapturedRecord",
    "EntryEncoder",
    "StructEvent",
    "capture",
    "capture_exc_info",
    "clip_bytes",
    "clip_chars",
    "level_for_name",
    "level_for_number",
    "render",
    "render_failed",
    "rfc3339",
    "span_links",
]

# A captured record's dict is a `_capture.snapshot` (SNAPSHOT_KEYS, then its extras); the encoder also takes
# a record's `__dict__` (RECORD_BASE_KEYS, then its extras: `encode_captured` called directly). Either way
# its extras are the keys after the last base key (`_record_attributes` walks back to it): the sizes below
# only pick the fast paths (which check it).
_BASE_SIZE = len(SNAPSHOT_KEYS)
_ONE_EXTRA = RECORD_BASE_KEYS + 1
_TWO_EXTRA = RECORD_BASE_KEYS + 2
_ONE_EXTRA_SNAPSHOT = _BASE_SIZE + 1
_TWO_EXTRA_SNAPSHOT = _BASE_SIZE + 2
#: "Nothing seen yet" for `encode_lines`' previous-record locals: identical to no value a record holds.
_UNSET = object()


class EntryEncoder(AttributeFragments):
    """Builds NDJSON lines for one process: service/host/pid are fixed, ids are prefix + counter.

    Ids are a random per-encoder prefix plus a counter, so they are unique across processes (a forked
    child builds a new encoder) and cheap; an id is part of the encoded line, so a retry resends it unchanged.
    """

    def __init__(self, service: str) -> None:
        super().__init__()
        host = clip_chars(socket.gethostname(), _wire.MAX_SHORT_FIELD_CHARS)
        self._static = (
            f'"service":{_encode_str(service)},'
            + (f'"host":{_encode_str(host)},' if host else "")
            + f'"pid":{os.getpid()},'
        )
        self._prefix = secrets.token_hex(8) + "-"
        self._counter = itertools.count(1)
        self._names: dict[str, str] = {}
        self._threads: dict[str, str] = {}
        self._levels: dict[object, str] = {}
        self._second = -1
        self._second_text = ""
        # Fast path of encode_captured (the common record shape), filled by the general path:
        # levelno -> '","level":"info",<static>"message":' and (name, threadName) -> logger + thread fields.
        self._heads: dict[object, str] = {}
        self._tails: dict[tuple[object, object], str] = {}
        self._id_head = f'{{"id":"{self._prefix}'

    def _short(self, cache: dict[str, str], field: str, value: object) -> str:
        name = value if type(value) is str else ("" if value is None else _safe_str(value))
        fragment = cache.get(name)
        if fragment is None:
            clipped = clip_chars(name, _wire.MAX_SHORT_FIELD_CHARS)
            fragment = f',"{field}":{_encode_str(clipped)}' if clipped else ""
            if len(cache) >= NAME_CACHE_SIZE:
                cache.clear()
            cache[name] = fragment
        return fragment

    def encode_record(
        self, record: logging.LogRecord, context: Mapping[str, object] | None = None, span: object = None
    ) -> bytes:
        """A stdlib record as one NDJSON line: `capture` + `encode_captured`."""
        return self.encode_captured(capture(record, context, span))

    def encode_captured(self, item: CapturedRecord) -> bytes:
        """A `CapturedRecord` as one NDJSON line: `encode_lines` of one item. Raises what encoding raised
        (nothing, by design)."""
        for line in self.encode_lines((item,)):
            if isinstance(line, bytes):
                return line
            raise line
        raise AssertionError("encode_lines yields one line per item")  # unreachable

    def encode_lines(self, items: Iterable[Item]) -> Iterator[bytes | BaseException]:
        """One NDJSON line per item (a `CapturedRecord` or a `CapturedEvent`), in order, lazily: the
        worker's hot loop (`_ingest.ingest` takes a chunk's lines from one generator; an item it does not
        take is never encoded, so no id is drawn for it). An item whose encoding raised (never, by design)
        yields the exception instead of a line, and the next item is encoded.

        A record of the common shape (no exception, a short non-empty message, a valid `created`, a level
        and logger/thread names seen before) takes the fast path below: cached fragments and one f-string.
        Anything else goes through `_encode_general`, which also fills those caches; both build the same
        bytes. Why a generator: what the fast path reads once per chunk (the caches, the constants) and the
        fragments of the previous record's level, names and extra keys (the same objects again: the same
        fragments, no lookup) stay in locals; that took the benchmark record from 4.7 to ~3.5 µs
        (docs/benchmarks.md "Encoding cost per record").
        """
        heads = self._heads
        tails = self._tails
        pairs = self._attribute_pairs
        attribute_heads = self._attribute_heads
        counter = self._counter
        id_head = self._id_head
        general = self._encode_general
        record_attributes = self._record_attributes
        encode_struct = self.encode_struct
        encode_str = _encode_str
        digits = _DIGITS
        base_keys = _BASE_KEYS
        skipped_keys = _SKIPPED_KEYS
        max_value = _wire.MAX_ATTRIBUTE_VALUE_CHARS
        # The previous record's level, logger and thread names, extra keys, and their fragments (_UNSET:
        # none yet, equal to nothing a record holds).
        level: object = _UNSET
        name: object = _UNSET
        thread: object = _UNSET
        pair_first: object = _UNSET
        pair_last: object = _UNSET
        one_key: object = _UNSET
        head = tail = one_head = ""
        pair: tuple[str, str] | None = None
        # The second of the previous record's `created`, as [start, end) floats, and its text.
        second_start = second_end = -1.0
        stamp = ""
        line: bytes | BaseException
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
                            stamp = self._stamp_for(second)
                            second_start = float(second)  # exact: `created - second` is the same float
                            second_end = second_start + 1.0
                        else:
                            fast = False
                    if not fast:
                        line = general(state, msg, context, span)
                    else:
                        # The nearest microsecond (`rfc3339`: `round`, ties to even), without `round`'s
                        # method lookup: both subtractions are exact, so `rest` decides as `round` does.
                        fraction = (created - second_start) * 1e6
                        micros = fraction.__trunc__()
                        rest = fraction - micros
                        if rest >= 0.5 and (rest > 0.5 or micros & 1):
                            micros += 1
                        if micros > 999_999:
                            micros = 999_999
                        links = attributes = ""
                        size = len(state)
                        # An int value goes into the f-string as it is: an exact int formats as
                        # `int.__repr__` (the text `_value_json` gives), without the call.
                        first_json: object
                        value_json: object
                        if size in (_TWO_EXTRA_SNAPSHOT, _TWO_EXTRA) and not context:
                            # Two `extra=` fields (the benchmark's shape): one cached opening per key pair.
                            try:
                                keys = reversed(state)
                                last = next(keys)
                                key = next(keys)
                                if key is not pair_first or last is not pair_last:
                                    # Only pairs of str keys the wire keeps whole are cached
                                    # (`_attribute_pair`); None (any other pair) is kept for these keys too.
                                    found = pairs.get((key, last))
                                    if found is None and key not in skipped_keys and last not in skipped_keys:
                                        found = self._attribute_pair(key, last)
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
                        elif size in (_ONE_EXTRA_SNAPSHOT, _ONE_EXTRA) and not context:
                            # One `extra=` field: the same fragment `_record_attributes` builds.
                            try:
                                keys = reversed(state)
                                key = next(keys)
                                # A str key only: True and 1 hash alike, a cache keyed by either would
                                # spell the other.
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
                                        one_head = attribute_heads.get(key) or self._attribute_head(key)
                                        one_key = key
                                    attributes = f"{one_head}{value_json}}}"
                                else:
                                    links, attributes = record_attributes(state, context)
                            except (RuntimeError, KeyError, StopIteration):  # changed by another thread
                                links, attributes = record_attributes(state, context)
                        elif size > _BASE_SIZE or context:  # a kept record without extras: the same text
                            links, attributes = record_attributes(state, context)
                        if span is not None and not links:  # explicit extra= trace_id/span_id win
                            links = span_links(span)
                        # hex() and the 3-digit table: the cheapest spellings of the id's counter and the
                        # zero-padded microseconds (`"%x" %` / `"%06d" %` take 2-3x as long).
                        text = (
                            f"{id_head}{hex(next(counter))}{stamp}{digits[micros // 1000]}"
                            f"{digits[micros % 1000]}Z{head}{encode_str(msg)}{tail}{links}{attributes}}}\n"
                        )
                        try:
                            line = text.encode()  # the strict codec is the fastest; it fails only on a
                        except UnicodeEncodeError:  # lone surrogate (bad decoding upstream): it becomes
                            line = text.encode("utf-8", "replace")  # "?", the body must be UTF-8
            except BaseException as exc:  # the caller counts and reports it; the next item is encoded
                line = exc
            yield line

    def next_id(self) -> str:
        """A new entry id: the per-encoder prefix + the counter in hex (`0x...`)."""
        return f"{self._prefix}{hex(next(self._counter))}"

    def _stamp_for(self, second: int) -> str:
        """`","timestamp":"<second>.` for the fast path (and the cached second's text), for `second`."""
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f'","timestamp":"{self._second_text}.'

    def _encode_general(
        self, state: dict[str, Any], msg: str, context: Mapping[str, object] | None, span: object
    ) -> bytes:
        """`encode_captured` for any record (`msg` already rendered); fills the fast path's caches."""
        if len(msg) > MESSAGE_FAST_CHARS:
            msg = clip_bytes(msg, _wire.MAX_MESSAGE_BYTES)
        elif not msg:
            msg = EMPTY_MESSAGE
        try:
            levelno = state["levelno"]
            created = state["created"]
            name = state["name"]
            thread_name = state["threadName"] or state["thread"]
            exc_info = state["exc_info"]
            stack_info = state["stack_info"]
        except KeyError:  # a hand-made record without the usual attributes
            get = state.get
            levelno, created, name = get("levelno"), get("created"), get("name")
            thread_name = get("threadName") or get("thread")
            exc_info, stack_info = get("exc_info"), get("stack_info")
        # Keyed by exact ints only: 40.0 == 40 and True == 1 must not pick up an int's cached level.
        level = self._levels.get(levelno) if type(levelno) is int else None
        if level is None:
            level = level_for_number(levelno if type(levelno) is int else logging.INFO)
            if type(levelno) is int:
                self._levels[levelno] = level
                self._heads[levelno] = f'","level":"{level}",{self._static}"message":'
        if type(created) is not float or not MIN_CREATED <= created <= MAX_CREATED:  # also rejects NaN
            created = restamped(created)  # an int or Decimal in range is kept; anything else is announced
        second = int(created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        micros = round((created - second) * 1_000_000)  # the nearest microsecond (`rfc3339`)
        if micros > 999_999:
            micros = 999_999
        # Looked up by str only: a filter or adapter may have set a list (unhashable) or a number.
        logger = self._names.get(name) if type(name) is str else None
        if logger is None:
            logger = self._short(self._names, "logger", name)
        thread = self._threads.get(thread_name) if type(thread_name) is str else None
        if thread is None:
            thread = self._short(self._threads, "thread", thread_name)
        if type(name) is str and type(thread_name) is str and thread_name:  # the fast path's key
            tails = self._tails
            if len(tails) >= NAME_CACHE_SIZE:
                tails.clear()
            tails[(name, thread_name)] = logger + thread
        links = attributes = ""
        if len(state) > _BASE_SIZE or context:
            links, attributes = self._record_attributes(state, context)
        if span is not None and not links:  # explicit extra= trace_id/span_id win over the active span
            links = span_links(span)
        exception = ""
        if exc_info or stack_info:
            # A snapshot's `exc_info` is the field's text, formatted at the capture; a record's `__dict__`
            # given directly has its exception formatted here, by the same rule (`_capture.exception_text`).
            text = exc_info if type(exc_info) is str else exception_text(exc_info, stack_info)
            exception = _exception_field(text or "")
        line = (
            f'{{"id":"{self.next_id()}",'
            f'"timestamp":"{self._second_text}.{micros:06d}Z","level":"{level}",{self._static}'
            f'"message":{_encode_str(msg)}{logger}{thread}{exception}{links}{attributes}}}\n'
        )
        # Lone surrogates (from bad decoding upstream) become "?": the body must be valid UTF-8.
        return line.encode("utf-8", "replace")

    def encode_struct(
        self, item: StructEvent, context: Mapping[str, object] | None, span: object = None
    ) -> bytes:
        """A structlog event dict as one NDJSON line: `event` is the message, other keys are attributes
        (`_entry_struct.encode_struct`)."""
        return encode_struct(self, item, context, span)
