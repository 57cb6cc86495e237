"""The msgspec fast path (fast_rows): for any body it gives exactly the pydantic path's rows or declines, and
it decides the bodies clients really send."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from oglogstream import wire
from oglogstream.stack.http.boundary import Problem
from oglogstream.stack.ingestion import batch_decode, fast_rows, row_codec, schema
from pydantic import ValidationError

RECEIVED = "2026-11-27T10:00:00.000000Z"
#: The column type's whole range, and a narrow one around RECEIVED that refuses most timestamps below.
WIDE = schema.TimeWindow("1900-01-01T00:00:00.000000Z", "2299-12-31T00:00:00.000000Z", 10**6)
NARROW = schema.TimeWindow("2026-11-20T10:00:00.000000Z", "2026-11-28T10:00:00.000000Z", 7)
TS = "2026-11-27T09:59:59.123456Z"


def _rows_or_error(make: Any, body: bytes, window: schema.TimeWindow | None) -> Any:
    try:
        rows = make(body, batch_id="b", received_at=RECEIVED, window=window, first_index=3)
    except ValidationError as exc:
        return ("error", exc.errors(include_url=False, include_context=False), schema.validation_details(exc))
    # Key order counts (rows are serialised as they are), and so do the types (True is not 1); the fast
    # path's Row structs are compared as the dicts they stand for, and by the payload they are written as.
    dicts = row_codec.row_dicts(rows)
    return [[(k, type(v), v) for k, v in row.items()] for row in dicts], row_codec.dump_rows(rows)


def same_as_pydantic(body: bytes, window: schema.TimeWindow | None = None) -> bool:
    """Assert the fast route gives what the pydantic path gives; return whether msgspec decided the body."""
    decided = fast_rows.decide(body, window=window)
    plain = _rows_or_error(schema.rows_from_json, body, window)
    assert _rows_or_error(fast_rows.rows_from_json, body, window) == plain
    if decided is not None:
        assert plain[0] != "error", body[:300]
    return decided is not None


def entry(**fields: Any) -> dict[str, Any]:
    return {"level": "info", "message": "m", "service": "svc", **fields}


def body_of(*entries: dict[str, Any], ascii: bool = False) -> bytes:
    return json.dumps(list(entries), ensure_ascii=ascii).encode("utf-8", "surrogatepass")


SDK_LINE = entry(
    id="p-1",
    timestamp=TS,
    level="warn",
    service="web-api",
    host="web-1",
    pid=4242,
    message="GET /api/users/1 200 in 12ms",
    logger="app.http",
    thread="MainThread",
    attributes={"method": "GET", "status": 200, "ok": True, "ratio": 0.5, "neg": -3},
)

DECIDED = [
    [SDK_LINE],
    [SDK_LINE, entry(), entry(id=None, timestamp=None, attributes=None, pid=None)],
    [entry(host="", pid=0, attributes={}, logger="", exception="")],  # empty optionals dropped
    [entry(trace_id="t" * 256, span_id="s", exception="E" * wire.MAX_EXCEPTION_BYTES, thread="é" * 256)],
    [entry(message="é" * (wire.MAX_MESSAGE_BYTES // 2)), entry(message="😀" * (wire.MAX_MESSAGE_BYTES // 4))],
    [entry(message="")],  # a required field may be empty
    [entry(id="x" * wire.MAX_ID_CHARS, pid=wire.MAX_PID, service="s" * wire.MAX_SERVICE_CHARS)],
    [entry(attributes={f"k{i}": i for i in range(wire.MAX_ATTRIBUTES)})],
    [entry(attributes={"k" * wire.MAX_ATTRIBUTE_KEY_CHARS: "v" * wire.MAX_ATTRIBUTE_VALUE_CHARS})],
    [entry(attributes={"i": wire.INT64_MAX, "j": wire.INT64_MIN, "f": 1e308, "z": -0.0, "e": 1e-300})],
    [entry(attributes={"received_at": RECEIVED, "attributes_number": "x"})],
    [entry(timestamp="2024-02-28T23:59:59.999999Z"), entry(timestamp="1999-12-31T00:00:00.000000Z")],
    [],
]


@pytest.mark.parametrize("entries", DECIDED, ids=range(len(DECIDED)))
def test_valid_bodies_are_decided_by_msgspec_with_the_pydantic_rows(entries: list[dict[str, Any]]) -> None:
    """Valid entries of every shape the SDK and other clients send take the fast path, with identical rows."""
    assert same_as_pydantic(body_of(*entries), WIDE)


DECLINED = [
    entry(id="a\n"),  # `$` in Python's re would take a trailing newline; the Rust regex does not
    entry(id=""),
    entry(id="a b"),
    entry(id="x" * (wire.MAX_ID_CHARS + 1)),
    entry(timestamp=TS + "\n"),
    entry(timestamp=""),
    entry(timestamp="2024-02-29T00:00:00.000000Z"),  # real, but decided by pydantic's parsing branch
    entry(timestamp="2023-02-29T00:00:00.000000Z"),
    entry(timestamp="2026-11-27T10:00:00Z"),
    entry(timestamp="2026-11-27T12:00:00+02:00"),
    entry(timestamp="2026-11-27t10:00:00.000000z"),
    entry(timestamp=5),
    entry(timestamp="2026-11-27T10:00:00.00000\u0663Z"),  # a Unicode digit: `\d` matches it without re.ASCII
    entry(level="WARNING"),
    entry(level="Info"),
    entry(level="bogus"),
    entry(level=None),
    entry(message="é" * (wire.MAX_MESSAGE_BYTES // 2) + "a"),
    entry(message="😀" * (wire.MAX_MESSAGE_BYTES // 4) + "a"),
    entry(message=None),
    entry(exception="é" * (wire.MAX_EXCEPTION_BYTES // 2 + 1)),
    entry(service=""),
    entry(service="s" * (wire.MAX_SERVICE_CHARS + 1)),
    entry(logger="l" * (wire.MAX_SHORT_FIELD_CHARS + 1)),
    entry(pid="7"),
    entry(pid=7.0),
    entry(pid=True),
    entry(pid=-1),
    entry(pid=wire.MAX_PID + 1),
    entry(attributes={"big": 2**64}),
    entry(attributes={"big": wire.INT64_MAX + 1}),
    entry(attributes={"n": None}),
    entry(attributes={"l": [1]}),
    entry(attributes={"": "v"}),
    entry(attributes={"k" * (wire.MAX_ATTRIBUTE_KEY_CHARS + 1): "v"}),
    entry(attributes={"v": "v" * (wire.MAX_ATTRIBUTE_VALUE_CHARS + 1)}),
    entry(attributes={f"k{i}": i for i in range(wire.MAX_ATTRIBUTES + 1)}),
    entry(attributes="x"),
    entry(mesage="typo"),
    {"level": "info", "message": "m"},
]


@pytest.mark.parametrize("item", DECLINED, ids=range(len(DECLINED)))
def test_entries_msgspec_cannot_decide_exactly_go_to_pydantic(item: dict[str, Any]) -> None:
    """Invalid entries and those only pydantic's Python branches decide are declined, whatever the others."""
    assert not same_as_pydantic(body_of(entry(), item, SDK_LINE), WIDE)


RAW = [
    b'[{"level":"info","message":"a","service":"s","message":"b"}]',  # duplicate keys: the last one counts
    b'[{"level":"info","message":"a","service":"s","level":"INFO"}]',
    b'[{"id":"a","level":"info","message":"a","service":"s","id":null}]',
    b'[{"level":"info","message":"a","service":"s","attributes":{"a":1,"b":"x","a":"y"}}]',
    b'[{"level":"info","message":"\\ud800","service":"s"}]',  # lone surrogate
    b'[{"level":"info","message":"\xff","service":"s"}]',  # not UTF-8
    b'[{"level":"info","message":"\x01","service":"s"}]',  # raw control character
    b'[{"level":"info","message":"m","service":"s","attributes":{"n":NaN}}]',
    b'[{"level":"info","message":"m","service":"s","attributes":{"n":1e400}}]',
    b'[{"level":"info","message":"m","service":"s","attributes":{"n":-0,"f":1E2,"g":2.50}}]',
    b'[{"level":"info","message":"m","service":"s","pid":1e2}]',
    b'[{"level":"info","message":"m","service":"s"},]',
    b'\xef\xbb\xbf[{"level":"info","message":"m","service":"s"}]',
    b'[{"level":"info","message":"m","service":"s"}] x',
    b' \r\n\t[ {"level" : "info" ,"message":"m","service":"s"} ]\n',
    b"{}",
    b"null",
    b"",
]


@pytest.mark.parametrize("body", RAW, ids=range(len(RAW)))
def test_raw_json_corner_cases_match(body: bytes) -> None:
    """Duplicate keys, bad encodings and JSON extensions get pydantic's answer whichever path decides."""
    same_as_pydantic(body, WIDE)


def test_timestamps_outside_the_window_are_left_to_pydantic() -> None:
    """The window is checked over the whole batch: one timestamp outside it declines, inside all decide."""
    inside = [entry(timestamp="2026-11-20T10:00:00.000000Z"), entry(timestamp="2026-11-28T10:00:00.000000Z")]
    assert same_as_pydantic(body_of(*inside), NARROW)
    for outside in ("2026-11-20T09:59:59.999999Z", "2026-11-28T10:00:00.000001Z"):
        assert not same_as_pydantic(body_of(*inside, entry(timestamp=outside)), NARROW)
    assert same_as_pydantic(body_of(entry(timestamp="2299-12-31T23:59:59.999999Z")), None)


def test_too_many_entries_is_still_the_413() -> None:
    """A JSON array over MAX_BATCH_ENTRIES is refused up front, as before the fast path."""
    body = (
        b"["
        + b",".join([b'{"level":"info","message":"m","service":"s"}'] * (wire.MAX_BATCH_ENTRIES + 1))
        + b"]"
    )
    with pytest.raises(Problem) as raised:
        batch_decode.array_rows(body, batch_id="b", received_at=RECEIVED)
    assert raised.value.status == 413


_text = st.text(st.characters(exclude_categories=()), max_size=12)  # lone surrogates included
#: Around the limits that are bytes of UTF-8 (the fast path counts characters first, then bytes).
_near_limit = st.sampled_from([-1, 0, 1]).flatmap(
    lambda d: st.sampled_from(
        [c * (wire.MAX_MESSAGE_BYTES // len(c.encode()) + d) for c in ("a", "é", "€", "😀")]
        + [c * (wire.MAX_EXCEPTION_BYTES // len(c.encode()) + d) for c in ("a", "é", "😀")]
    )
)
_long = st.sampled_from([0, 1, 2, 3]).flatmap(
    lambda n: st.sampled_from(["a", "é", "😀", "\u2028"]).map(lambda c: c * (n * 40 + 60))
)
_str_or_junk = st.one_of(_text, _long, st.none(), st.integers(-2, 2), st.booleans())
_attr_value = st.one_of(
    _text,
    st.booleans(),
    st.integers(),
    st.integers(min_value=wire.INT64_MIN - 2, max_value=wire.INT64_MIN + 2),
    st.integers(min_value=wire.INT64_MAX - 2, max_value=wire.INT64_MAX + 2),
    st.floats(allow_nan=False),
    st.none(),
    st.just([1]),
)
_FIELDS: dict[str, Any] = {
    "id": st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_.:\-]{0,66}\n?", fullmatch=True), _text),
    "timestamp": st.one_of(
        st.none(),
        st.sampled_from(
            [
                TS,
                "2024-02-29T00:00:00.000000Z",
                "2026-11-27T10:00:00Z",
                TS + "\n",
                "1899-12-31T00:00:00.000000Z",
            ]
        ),
        st.datetimes().map(lambda d: d.isoformat(timespec="microseconds") + "Z"),
        _text,
    ),
    "level": st.one_of(
        st.sampled_from([*wire.LEVELS, *wire.LEVEL_ALIASES, "INFO", "Warn", " info", ""]), _str_or_junk
    ),
    "message": st.one_of(_text, _long, _near_limit, st.none(), st.integers(0, 2)),
    "service": st.one_of(_text, st.sampled_from(["", "s" * 100, "s" * 101, "é" * 100]), st.none()),
    "logger": _str_or_junk,
    "host": st.one_of(_str_or_junk, st.sampled_from(["h" * 256, "h" * 257])),
    "pid": st.one_of(
        st.none(), st.integers(-1, 3), st.sampled_from([wire.MAX_PID, wire.MAX_PID + 1, "7", 7.0, True])
    ),
    "thread": _str_or_junk,
    "exception": st.one_of(_text, _long, _near_limit, st.none()),
    "attributes": st.one_of(
        st.none(),
        st.dictionaries(st.text(max_size=4), _attr_value, max_size=5),
        st.just("x"),
        st.just({"k" * 129: 1}),
    ),
    "mesage": _text,
}


def _shuffled(fields: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return fields.flatmap(lambda d: st.permutations(list(d)).map(lambda keys: {k: d[k] for k in keys}))


_entry = _shuffled(st.fixed_dictionaries({}, optional=_FIELDS))
_valid_text = st.text(max_size=12)
#: Mostly valid entries (the fast path's business), in any field order.
_valid_entry = _shuffled(
    st.fixed_dictionaries(
        {"level": st.sampled_from(wire.LEVELS), "message": _valid_text, "service": _valid_text.filter(bool)},
        optional={
            "id": st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True)),
            "timestamp": st.one_of(
                st.none(),
                st.datetimes(min_value=dt.datetime(1900, 1, 1)).map(
                    lambda d: d.isoformat(timespec="microseconds") + "Z"
                ),
            ),
            "host": st.one_of(st.none(), _valid_text),
            "pid": st.one_of(st.none(), st.integers(0, wire.MAX_PID)),
            "exception": st.one_of(st.none(), _valid_text),
            "attributes": st.one_of(
                st.none(), st.dictionaries(_valid_text.filter(bool), _attr_value, max_size=4)
            ),
        },
    )
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.one_of(_entry, _valid_entry, st.just(SDK_LINE)), max_size=6),
    st.sampled_from([None, WIDE, NARROW]),
    st.booleans(),
)
def test_any_body_gets_the_pydantic_answer(
    entries: list[dict[str, Any]], window: schema.TimeWindow | None, ascii: bool
) -> None:
    """Arbitrary entries (any field order, any value, unknown fields) and windows: same rows or same error."""
    event(f"decided by msgspec: {same_as_pydantic(body_of(*entries, ascii=ascii), window)}")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["a", "b", "c"]), _attr_value, min_size=1), min_size=1, max_size=4
    )
)
def test_typed_attribute_maps_match(attributes: list[dict[str, Any]]) -> None:
    """Numbers and booleans in attributes give the same typed maps (finite floats only) on both paths."""
    items = [entry(id=f"i{n}", timestamp=TS, attributes=a) for n, a in enumerate(attributes)]
    decided = same_as_pydantic(body_of(*items), WIDE)
    finite = all(
        v is not None
        and not isinstance(v, list)
        and not (isinstance(v, int) and not wire.INT64_MIN <= v <= wire.INT64_MAX)
        and not (isinstance(v, float) and not math.isfinite(v))
        for a in attributes
        for v in a.values()
    )
    assert decided == finite


@settings(max_examples=300, deadline=None)
@given(st.lists(_valid_entry, min_size=1, max_size=8), st.sampled_from([None, WIDE]))
def test_mostly_valid_bodies_get_the_pydantic_rows(
    entries: list[dict[str, Any]], window: schema.TimeWindow | None
) -> None:
    """Valid entries in any field order, with and without ids and timestamps: the rows pydantic makes."""
    event(f"decided by msgspec: {same_as_pydantic(body_of(*entries), window)}")


def _slices_line_by_line(lines: list[bytes], size: int) -> list[tuple[int, int]]:
    bounds, start = [], 0
    while start < len(lines):
        end, total = start, 0
        while end < len(lines) and (end == start or total + len(lines[end]) <= size):
            total += len(lines[end])
            end += 1
        bounds.append((start, end))
        start = end
    return bounds


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 40), max_size=30), st.integers(1, 60))
def test_ndjson_slices_are_the_line_by_line_ones(lengths: list[int], size: int) -> None:
    """Bisecting the running total cuts NDJSON bodies where adding line lengths one by one does."""
    lines = [b"x" * n for n in lengths]
    assert batch_decode.slices(lines, size) == _slices_line_by_line(lines, size)


_json_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)  # rows never hold surrogates
_row_entry = st.fixed_dictionaries(
    {"level": st.sampled_from(wire.LEVELS), "message": _json_text, "service": _json_text.filter(bool)},
    optional={
        "logger": _json_text,
        "pid": st.integers(0, wire.MAX_PID),
        "exception": _json_text,
        "attributes": st.dictionaries(
            _json_text.filter(bool),
            st.one_of(
                _json_text,
                st.booleans(),
                st.integers(wire.INT64_MIN, wire.INT64_MAX),
                st.floats(allow_nan=False, allow_infinity=False),  # validation refuses the others
            ),
            max_size=4,
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_row_entry, min_size=1, max_size=5))
def test_row_payloads_are_pydantics_bytes(entries: list[dict[str, Any]]) -> None:
    """`dump_rows` writes pydantic-core's exact bytes for any rows (every character, 64-bit ints, bools;
    float attribute values, which msgspec formats differently, are left to pydantic-core)."""
    rows = schema.make_rows(entries, batch_id="b", received_at=RECEIVED)
    by_pydantic = row_codec._ROW_LIST.dump_json(rows, warnings=False)
    assert row_codec.dump_rows(rows) == by_pydantic == row_codec.dumps(rows)
    if float not in row_codec.attribute_value_types(rows):
        assert row_codec._ENCODER.encode(rows) == row_codec.dumps(rows)


def test_row_payloads_escape_every_character_as_pydantic_does() -> None:
    """Every Unicode scalar value, in a message and as an attribute key and value: the same bytes."""
    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    chunks = [text[i : i + 4096] for i in range(0, len(text), 4096)]
    rows = schema.make_rows(
        [entry(message=c, attributes={c[:100]: c[-100:]}) for c in chunks], batch_id="b", received_at=RECEIVED
    )
    assert row_codec._ENCODER.encode(rows) == row_codec.dumps(rows) == row_codec.dump_rows(rows)
