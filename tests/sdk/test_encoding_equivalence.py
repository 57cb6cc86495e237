"""The worker's hand-written encoding fast path against plain references: the general path byte for byte on
odd records, and `json.dumps` of the entry built field by field on ordinary ones."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import sys
from datetime import datetime
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oglogstream import wire
from oglogstream._capture import StructEvent, capture
from oglogstream._entry import EntryEncoder, rfc3339
from oglogstream._entry_struct import _struct_attributes, _timestamp
from oglogstream._entry_values import _DIGITS, _SKIPPED_KEYS, _attributes, _parse_timestamp
from oglogstream._timestamp_text import parse_timestamp_text
from oglogstream.wire import level_for_number

# Characters JSON must escape, line separators, astral code points, a lone surrogate (becomes "?").
_ODD_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(['q"uote', "back\\slash", "nl\nx\r\t\x00\x1f", "\u2028\u2029", "\U0001f600 caf\u00e9",
                     "lone \ud800 surrogate", "%", "100%% sure", ""]),
)
_ARG = st.one_of(
    _ODD_TEXT,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
_TEMPLATES = st.one_of(
    _ODD_TEXT,
    st.sampled_from(["took %d ms", "%s and %r", "%x %o %e %g %%", "%(name)s", "bad %", "%c", "%5.2f|%-4s|"]),
)
_VALUE = st.one_of(
    _ODD_TEXT,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.text(min_size=2040, max_size=2100),
)
_KEY = st.one_of(
    st.sampled_from(["user_id", "path", "trace_id", "span_id", "message", "asctime", "k" * 200]),
    st.text(min_size=1, max_size=12),
)
_CREATED = st.one_of(
    st.floats(min_value=0.0, max_value=10413791999.0),
    st.sampled_from([1764438000.9999999, 1764438000.0, -1.0, float("nan"), 1e12]),
)


_CONTEXTS = st.one_of(
    st.none(),
    st.dictionaries(_KEY, _VALUE, max_size=3),
    st.sampled_from([
        {"request_id": "3f2a9c1e"},
        {"user_id": 7, "request_id": "r"},  # an extra= user_id overrides it, in its place
        {"trace_id": "abc", "items": [1, 2]},  # a mutable value: never cached
        {f"k{i}": i for i in range(63)},  # at the attribute bound with one extra
        {"k" * 200: "cut key"},
    ]),
).map(lambda context: None if context is None else MappingProxyType(context))


def _exc_info() -> tuple[Any, Any, Any]:
    try:
        raise ValueError("boom \u00e9 \"quoted\"")
    except ValueError:
        return sys.exc_info()  # type: ignore[return-value]


def _record(
    template: str, args: tuple[Any, ...], extra: dict[str, Any], level: int, name: str, thread: str,
    created: float, with_exc: bool, stack: str | None,
) -> logging.LogRecord:
    exc_info = _exc_info() if with_exc else None
    record = logging.LogRecord(name, level, __file__, 1, template, args or None, exc_info)
    record.created = created
    record.threadName = thread
    record.stack_info = stack
    record.__dict__.update(extra)
    return record


def _after_id(line: bytes, *, timestamp: bool = True) -> bytes:
    """The line without its id (and without its timestamp when that is the encoding time)."""
    rest = line.split(b'"', 4)[4]
    if not timestamp:
        rest = re.sub(rb'^,"timestamp":"[^"]*"', b"", rest)
    return rest


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    template=_TEMPLATES,
    args=st.lists(_ARG, max_size=2).map(tuple),
    extra=st.dictionaries(_KEY, _VALUE, max_size=3),
    level=st.sampled_from([logging.DEBUG, logging.INFO, 25, logging.WARNING, logging.ERROR, 51, -3]),
    name=st.sampled_from(["app", "", "n" * 300, "caf\u00e9.\"x\""]),
    thread=st.sampled_from(["MainThread", "", "t\ud800"]),
    created=_CREATED,
    with_exc=st.booleans(),
    stack=st.sampled_from([None, "", "Stack (most recent call last):\n  here"]),
)
def test_warm_fast_path_equals_the_general_path_byte_for_byte(
    template: str, args: tuple[Any, ...], extra: dict[str, Any], level: int, name: str, thread: str,
    created: float, with_exc: bool, stack: str | None,
) -> None:
    """Any record, encoded a second time (caches warm: the fast path when it qualifies), gives the bytes the
    general path gives the first time (a cold encoder always takes it), ids aside."""
    record = _record(template, args, extra, level, name, thread, created, with_exc, stack)
    item = capture(record, None)
    encoder = EntryEncoder("svc")
    cold = encoder.encode_captured(item)  # nothing cached yet: the general path
    warm = encoder.encode_captured(item)
    stamp = record.created  # (an extra named `created` may have replaced it)
    in_range = type(stamp) is float and 0.0 <= stamp <= 10413791999.0
    assert _after_id(warm, timestamp=in_range) == _after_id(cold, timestamp=in_range)
    assert warm.endswith(b"}\n") and warm.count(b"\n") == 1
    json.loads(warm)  # always valid JSON, lone surrogates included


_PLAIN_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_PLAIN_VALUE = st.one_of(
    _PLAIN_TEXT,
    st.integers(min_value=wire.INT64_MIN, max_value=wire.INT64_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
_PLAIN_KEY = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20).filter(
    lambda key: key not in _SKIPPED_KEYS
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    message=_PLAIN_TEXT,
    number=st.integers(),
    extra=st.dictionaries(_PLAIN_KEY, _PLAIN_VALUE, max_size=4),
    level=st.sampled_from([logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]),
    name=st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    thread=st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    created=st.floats(min_value=0.0, max_value=10413791999.0),
    repeat=st.integers(min_value=1, max_value=3),
    context=st.one_of(st.none(), st.dictionaries(_PLAIN_KEY, _PLAIN_VALUE, min_size=1, max_size=3)),
)
def test_ordinary_records_equal_the_entry_built_with_json_dumps(
    message: str, number: int, extra: dict[str, Any], level: int, name: str, thread: str, created: float,
    repeat: int, context: dict[str, Any] | None,
) -> None:
    """For ordinary records (short text, int64, finite floats, bools) every encoding, cold or warm, is the
    entry a plain `json.dumps` of its fields gives, attributes in the order the application wrote them."""
    template = message.replace("%", "%%") + " #%d"
    record = _record(template, (number,), extra, level, name, thread, created, False, None)
    host = socket.gethostname()[: wire.MAX_SHORT_FIELD_CHARS]
    expected: dict[str, Any] = {
        "timestamp": rfc3339(created),
        "level": level_for_number(level),
        "service": "svc",
        **({"host": host} if host else {}),
        "pid": os.getpid(),
        "message": f"{message} #{number}",
        **({"logger": name} if name else {}),
        "thread": thread or str(record.thread),  # an unnamed thread is shipped as its ident
    }
    attributes = {**(context or {}), **extra}  # extras win over the bound context
    if attributes:
        expected["attributes"] = attributes
    encoder = EntryEncoder("svc")
    for _ in range(repeat + 1):
        bound = None if context is None else MappingProxyType(context)
        line = encoder.encode_captured(capture(record, bound))
        entry = json.loads(line)
        assert re.match(wire.ID_PATTERN, entry.pop("id"))
        assert entry == expected
        assert list(entry) == list(expected)
        assert list(entry.get("attributes", {})) == list(attributes)
        # 1 and 1.0 and True compare equal: the JSON types must match too.
        for key, value in attributes.items():
            assert type(entry["attributes"][key]) is type(value)
            if isinstance(value, float):
                assert math.copysign(1, entry["attributes"][key]) == math.copysign(1, value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extra=st.dictionaries(_KEY, _VALUE, max_size=3), context=_CONTEXTS, again=st.booleans())
def test_context_fast_path_equals_the_merge_rule(
    extra: dict[str, Any], context: MappingProxyType[str, Any] | None, again: bool
) -> None:
    """With a bound context (every request under the Django/Flask integrations) the attributes and links,
    encoded with the context's cached body (first record or a later one), are the general merge's text:
    context first, extras after, an extra overriding a context key in its place, links and bounds applied."""
    record = _record("m", (), extra, logging.INFO, "app", "Main", 1764438000.5, False, None)
    encoder = EntryEncoder("svc")
    if again:
        other = _record("m", (), {}, logging.INFO, "app", "Main", 1764438000.5, False, None)
        encoder._record_attributes(other.__dict__, context)  # the context is cached before this record
    assert encoder._record_attributes(record.__dict__, context) == encoder._record_attributes_merged(
        record.__dict__, context
    )
    line = encoder.encode_captured(capture(record, context))
    cold = EntryEncoder("svc").encode_captured(capture(record, context))
    # (an extra named `created` can replace the record's time: then each encoding stamps its own now)
    assert _after_id(line, timestamp=False) == _after_id(cold, timestamp=False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rest=st.dictionaries(_KEY, _VALUE, max_size=4), context=_CONTEXTS, created=_CREATED)
def test_structlog_event_fragments_equal_the_general_rules(
    rest: dict[str, Any], context: MappingProxyType[str, Any] | None, created: float
) -> None:
    """A structlog/asyncio event's attributes (cached key openings) are the merge rule's text, and its
    timestamp is `rfc3339` (for a `created` in range)."""
    encoder = EntryEncoder("svc")
    for _ in range(2):  # cold and warm key caches
        pairs: list[tuple[object, object]] = [*(context or {}).items(), *rest.items()]
        assert _struct_attributes(encoder, context, rest) == _attributes(pairs)
    if 0.0 <= created <= 10413791999.0:
        assert _timestamp(encoder, created) == rfc3339(created)


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    odd=st.sampled_from(["", "2026-02-30T00:00:00.000000Z", "2026-11-29T17:00:00.12345\u00b2Z",
                         "2026-11-29 17:00:00.123456Z", "2026-11-29T17:00:00,123456Z"]),
)
def test_structlog_utc_timestamps_parse_like_the_general_rule(moment: datetime, odd: str) -> None:
    """structlog's UTC text (`...SS.ffffffZ`, the cached-second path) gives exactly the float the general
    RFC 3339 parse gives; other or invalid text the general parse's result (a float or None)."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for value in (text, odd):
        expected = parse_timestamp_text(value)
        assert _parse_timestamp(value) == expected
        assert _parse_timestamp(value) == expected  # the cached second


@pytest.mark.parametrize("fraction", ["253284", "100000", "000001", "999999", "000000", "499999", "500000"])
def test_an_events_own_timestamp_is_shipped_to_the_microsecond(fraction: str) -> None:
    """structlog's TimeStamper text reaches the encoder as a float a fraction of a microsecond off: the
    shipped timestamp is the text's own microsecond (truncating stored `.100000` as `.099999`)."""
    text = f"2026-11-30T03:49:53.{fraction}Z"
    created = _parse_timestamp(text)
    assert created is not None
    assert _timestamp(EntryEncoder("svc"), created) == text == rfc3339(created)


def test_microsecond_table_spells_every_value_like_format() -> None:
    """The timestamp's two 3-digit lookups give `%06d` for all 1,000,000 microsecond values."""
    assert all(_DIGITS[m // 1000] + _DIGITS[m % 1000] == f"{m:06d}" for m in range(1_000_000))


def test_ids_are_unique_valid_and_shared_by_every_entry_kind() -> None:
    """Stdlib records and structlog events draw ids from one counter; every id matches the wire pattern."""
    encoder = EntryEncoder("svc")
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "m %d", (1,), None)
    ids = []
    for i in range(300):
        if i % 3:
            line = encoder.encode_captured(capture(record, None))
        else:
            line = encoder.encode_struct(StructEvent({"event": "e"}, "info", 1.0, "Main", None), None)
        ids.append(json.loads(line)["id"])
    assert len(set(ids)) == 300
    assert all(re.match(wire.ID_PATTERN, entry_id) for entry_id in ids)
    counters = [int(entry_id.rsplit("-", 1)[1], 16) for entry_id in ids]
    assert counters == list(range(1, 301))


@pytest.mark.parametrize(
    ("exc_info", "exc_text", "shipped"),
    [("0", None, None), (True, None, None), ("with_exc", "redacted by a filter", "redacted by a filter")],
)
def test_a_whole_records_exception_is_the_captures(exc_info: Any, exc_text: Any, shipped: str | None) -> None:
    """A record's `__dict__` given directly ships the exception field its capture ships: a str or other
    non-exception `exc_info` ships none (hypothesis found `exc_info="0"` shipped as text), a filter's
    `exc_text` is what ships."""
    record = _record("m", (), {}, logging.ERROR, "app", "Main", 1764438000.5, exc_info == "with_exc", None)
    if exc_info != "with_exc":
        record.exc_info = exc_info
    record.exc_text = exc_text
    item = capture(record, None)
    whole = (record.__dict__, *item[1:])
    entries = [json.loads(EntryEncoder("svc").encode_captured(each)) for each in (item, whole)]  # type: ignore[arg-type]
    assert [entry.get("exception") for entry in entries] == [shipped, shipped]
