"""`EntryEncoder.encode_lines`, the worker's chunk encoder (it reuses the previous record's level, names,
extra keys, bound context and second), gives every item of any mix of shapes the bytes a cold encoder's
general path gives it, ids drawn in order, and the microseconds `round` gives, ties included."""

from __future__ import annotations

import json
import logging
import re
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oglogstream._capture import StructEvent, capture
from oglogstream._entry import EntryEncoder, rfc3339
from oglogstream._items import CapturedEvent

from benchmarks.sdk_encode_bench import captured_records

# Shared objects, drawn again and again: the chunk encoder keys its reuse on identity.
_CONTEXTS = [
    None,
    MappingProxyType({"request_id": "3f2a9c1e"}),
    MappingProxyType({"user_id": 7, "request_id": "r"}),  # an extra= user_id overrides it, in its place
    MappingProxyType({"trace_id": "abc", "items": [1, 2]}),  # a mutable value: never cached
    MappingProxyType({f"k{i}": i for i in range(63)}),  # at the attribute bound with one extra
    MappingProxyType({f"k{i}": i for i in range(64)}),  # at the bound with none
    MappingProxyType({"k" * 200: "cut key"}),
]
_KEYS = st.sampled_from(
    ["user_id", "path", "request_id", "trace_id", "span_id", "message", "k" * 200, "\u00e9", "k1"]
)
_VALUES = st.one_of(
    st.sampled_from(["/api/items", "", 'q"uote', "lone \ud800", "x" * 2100, 2**63, -(2**63), True, None, 1.5,
                     float("nan"), [1], {"a": 1}]),
    st.integers(min_value=-(2**40), max_value=2**40),
)
# One second's fractions (a tie of `round` at j/128: (j/128) * 1e6 = 7812.5 * j), other seconds, the ends
# of the range, and values the general path restamps.
_CREATED = st.one_of(
    st.sampled_from([1764438000.5, 1764438000.25, 1764438000 + 1 / 128, 1764438000 + 3 / 128,
                     1764438001.9999999, 1764438001.0, 0.0, 10413791999.999998]),
    st.floats(min_value=0.0, max_value=10413791999.0),
    st.sampled_from([-1.0, float("nan"), 1e12]),
)
_RECORDS = st.fixed_dictionaries({
    "template": st.sampled_from(["request served %d", "plain", "", "bad %", "x" * 3000]),
    "number": st.integers(min_value=-5, max_value=5),
    "extra": st.dictionaries(_KEYS, _VALUES, max_size=3),
    "level": st.sampled_from([logging.INFO, logging.INFO, logging.WARNING, 25, -3]),
    "name": st.sampled_from(["app", "app", "db", ""]),
    "thread": st.sampled_from(["MainThread", "MainThread", "worker-1", ""]),
    "created": _CREATED,
    "context": st.sampled_from(_CONTEXTS),
    "exc": st.sampled_from([False, False, False, True]),
    "event": st.sampled_from([False, False, False, False, True]),
})


def _item(spec: dict[str, Any]) -> Any:
    """A captured record (`capture`, as the handler captures) or now and then a structlog event."""
    if spec["event"]:
        event = {"event": spec["template"], **{k: v for k, v in spec["extra"].items() if k != "event"}}
        return CapturedEvent((StructEvent(event, "info", spec["created"], spec["thread"], None),
                              spec["context"], None))
    args = (spec["number"],) if "%" in spec["template"] else None
    exc_info = None
    if spec["exc"]:
        try:
            raise ValueError("boom")
        except ValueError as exc:
            exc_info = (ValueError, exc, exc.__traceback__)
    record = logging.LogRecord(spec["name"], spec["level"], __file__, 1, spec["template"], args, exc_info)
    record.created = spec["created"]
    record.threadName = spec["thread"]
    record.__dict__.update(spec["extra"])
    return capture(record, spec["context"])


def _cold(item: Any) -> bytes:
    """The general path's line: a new encoder has no fragment cached (a record), or `encode_struct`."""
    encoder = EntryEncoder("svc")
    if type(item) is CapturedEvent:
        return encoder.encode_struct(*item)
    return encoder.encode_captured(item)


def _after_id(line: bytes, *, timestamp: bool) -> bytes:
    rest = line.split(b'"', 4)[4]
    return rest if timestamp else re.sub(rb'^,"timestamp":"[^"]*"', b"", rest)


def _stamped(item: Any) -> bool:
    """Whether the item's own `created` is shipped (else it is restamped with the encoding time)."""
    state = item[0]
    created = state.created if type(item) is CapturedEvent else state.get("created")
    return type(created) is float and 0.0 <= created <= 10413791999.999998


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(_RECORDS, min_size=1, max_size=12), repeat=st.integers(min_value=1, max_value=3))
def test_a_chunk_of_mixed_shapes_encodes_as_the_general_path(
    specs: list[dict[str, Any]], repeat: int
) -> None:
    """Whatever the mix (shapes, levels, names, contexts, seconds, events, records repeated so the previous
    record's fragments are reused), each line is the general path's, and ids count up from 1."""
    items = [_item(spec) for spec in specs] * repeat
    encoder = EntryEncoder("svc")
    lines = list(encoder.encode_lines(items))
    assert all(type(line) is bytes for line in lines)
    for item, line in zip(items, lines, strict=True):
        stamped = _stamped(item)
        assert _after_id(line, timestamp=stamped) == _after_id(_cold(item), timestamp=stamped)  # type: ignore[arg-type]
    ids = [json.loads(line)["id"] for line in lines]  # type: ignore[arg-type]
    assert [int(entry_id.rsplit("-", 1)[1], 16) for entry_id in ids] == list(range(1, len(items) + 1))


@pytest.mark.parametrize("extras", [(), ("user_id",), ("user_id", "path"), ("user_id", "path", "route")])
@pytest.mark.parametrize("context", [None, {"request_id": "3f2a9c1e4b7d4e0f"}])
def test_records_captured_by_the_handler_encode_as_the_general_path(
    extras: tuple[str, ...], context: dict[str, object] | None
) -> None:
    """The benchmark's records (captured by a real OgLogHandler, with and without a bound context), encoded
    in chunks: the general path only for the first, and every line is the general path's."""
    items = captured_records(600, extras, context)
    encoder = EntryEncoder("svc")
    general, walk = encoder._encode_general, encoder._record_attributes
    calls: list[str] = []
    encoder._encode_general = lambda *a: calls.append("general") or general(*a)  # type: ignore[method-assign]
    encoder._record_attributes = lambda *a: calls.append("walk") or walk(*a)  # type: ignore[method-assign]
    chunks = [items[start : start + 256] for start in range(0, 600, 256)]
    lines = [line for chunk in chunks for line in encoder.encode_lines(chunk)]
    # The general path once (it fills the caches, and walks the attributes); then the walk only for a
    # context's first fast record in each chunk (then its body is reused), never for the extras.
    assert calls.count("general") == 1
    if context or len(extras) <= 2:  # (three extras and no context: the walk, every time)
        assert calls.count("walk") == (1 if extras or context else 0) + (len(chunks) if context else 0)
    assert [_after_id(line, timestamp=True) for line in lines] == [  # type: ignore[arg-type]
        _after_id(_cold(item), timestamp=True) for item in items
    ]


@pytest.mark.parametrize("j", [1, 3, 5, 127])
def test_a_microsecond_tie_rounds_to_even_like_round(j: int) -> None:
    """`created` = second + j/128 puts the microseconds exactly at 7812.5 * j: the fast path rounds the tie to
    even, as `round` (and `rfc3339`) do."""
    created = 1764438000 + j / 128
    fraction = (created - 1764438000) * 1e6
    assert fraction % 1 == 0.5
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "m", None, None)
    record.created = created
    item = capture(record, None)
    encoder = EntryEncoder("svc")
    encoder.encode_captured(item)  # warms the caches: the chunk's records take the fast path
    lines = list(encoder.encode_lines([item, item]))
    expected = rfc3339(created)
    assert expected.endswith(f".{round(fraction):06d}Z")
    assert [json.loads(line)["timestamp"] for line in lines] == [expected, expected]  # type: ignore[arg-type]


def test_a_failing_item_yields_its_exception_and_the_next_is_encoded() -> None:
    """An item that cannot be encoded (never, by design; here a broken tuple) costs itself only."""
    good = capture(logging.LogRecord("app", logging.INFO, __file__, 1, "m", None, None), None)
    lines = list(EntryEncoder("svc").encode_lines([good, ("broken",), good]))  # type: ignore[list-item]
    assert type(lines[0]) is bytes and type(lines[2]) is bytes
    assert isinstance(lines[1], ValueError)
    with pytest.raises(ValueError):
        EntryEncoder("svc").encode_captured(("broken",))  # type: ignore[arg-type]


class _CaseInsensitive(str):
    """Equal to (and hashed like) any str of the same letters in any case, yet spelled as given."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.lower() == other.lower()

    def __hash__(self) -> int:
        return hash(self.lower())


class _Unhashable:
    def __hash__(self) -> int:
        raise ValueError("no hash")

    def __str__(self) -> str:
        return "weird-logger"


def _record(name: Any, extra: dict[Any, Any], level: Any = logging.INFO) -> Any:
    record = logging.LogRecord("app", level, __file__, 1, "m", None, None)
    record.name = name
    record.__dict__.update(extra)
    return capture(record, None)


def test_names_and_keys_that_only_equal_a_cached_str_are_spelled_as_given() -> None:
    """A str subclass equal to (and hashed like) a logger name or a pair of extra keys seen before ships its
    own spelling, as the general path does, not the cached plain str's (the caches are looked up by exact
    str only)."""
    plain = _record("app", {"user": 1, "path": 2})
    odd = _record(_CaseInsensitive("App"), {_CaseInsensitive("User"): 1, _CaseInsensitive("Path"): 2})
    lines = list(EntryEncoder("svc").encode_lines([plain, plain, odd]))
    shipped = json.loads(lines[2])  # type: ignore[arg-type]
    assert shipped["logger"] == "App" and shipped["attributes"] == {"User": 1, "Path": 2}
    assert _after_id(lines[2], timestamp=True) == _after_id(_cold(odd), timestamp=True)  # type: ignore[arg-type]


def test_a_logger_name_that_cannot_be_hashed_is_shipped_not_lost() -> None:
    """A name object whose `__hash__` raises (a filter's doing) takes the general path: the record ships
    with the name's text instead of failing as an internal error."""
    plain = _record("app", {})
    odd = _record(_Unhashable(), {})
    lines = list(EntryEncoder("svc").encode_lines([plain, odd]))
    assert type(lines[1]) is bytes and json.loads(lines[1])["logger"] == "weird-logger"


def test_an_int_enum_level_is_its_number() -> None:
    """`logger.log(Severity.ERROR, ...)` with an IntEnum of levels ships `error`, as logging names it; a
    bool or a float level stays `info` (docs/sdk.md)."""
    import enum

    class Severity(enum.IntEnum):
        ERROR = 40

    levels = [json.loads(line)["level"] for line in EntryEncoder("svc").encode_lines(  # type: ignore[arg-type]
        [_record("app", {}, Severity.ERROR), _record("app", {}, True), _record("app", {}, 40.0)]
    )]
    assert levels == ["error", "info", "info"]
