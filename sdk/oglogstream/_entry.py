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
    CapturedRecord,
    StructEvent,
    capture,
    capture_exc_info,
    exception_text,
    render,
    render_failed,
)
from ._entry_attrs import NAME_CACHE_SIZE, AttributeFragments
from ._entry_lines import SNAPSHOT_SIZE, encode_lines
from ._entry_struct import (
    EMPTY_MESSAGE,
    MAX_CREATED,
    MESSAGE_FAST_CHARS,
    MIN_CREATED,
    encode_struct,
    restamped,
)
from ._entry_values import (
    DROPPED_ATTRIBUTES_KEY,
    _encode_str,
    _exception_field,
    _safe_str,
    level_for_name,
    rfc3339,
    span_links,
)
from ._items import Item
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
        (nothing, by design). Each call pays the chunk encoder's setup (~1 µs): the worker encodes whole
        chunks through `encode_lines`; this is for tests and one-off lines."""
        line = next(self.encode_lines((item,)))
        if isinstance(line, BaseException):
            raise line
        return line

    def encode_lines(self, items: Iterable[Item]) -> Iterator[bytes | BaseException]:
        """One NDJSON line per item (a `CapturedRecord` or a `CapturedEvent`), in order, lazily: the
        worker's hot loop (`_entry_lines.encode_lines`). An item whose encoding raised (never, by design)
        yields the exception instead of a line, and the next item is encoded."""
        return encode_lines(self, items)

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
            # An int subclass (an IntEnum of levels) is its number, as logging's level names take it; a bool
            # or anything else is INFO.
            number = int(levelno) if isinstance(levelno, int) and type(levelno) is not bool else logging.INFO
            level = level_for_number(number)
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
        if len(state) > SNAPSHOT_SIZE or context:
            links, attributes = self._record_attributes(state, context)
        if span is not None and not links:  # explicit extra= trace_id/span_id win over the active span
            links = span_links(span)
        exception = ""
        if exc_info or stack_info:
            # A snapshot's `exc_info` is the field's text, formatted at the capture; a record's `__dict__`
            # given directly (it has `msg`, a snapshot never does) has its exception formatted here, by the
            # capture's call (`_capture.formatted_base`): a str `exc_info` there is no exception, and a
            # Formatter's or filter's `exc_text` is what ships (hypothesis found `exc_info="0"` shipped).
            text: str | None = exc_info
            if type(exc_info) is not str or "msg" in state:
                text = exception_text(exc_info, stack_info, state.get("exc_text"))
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
