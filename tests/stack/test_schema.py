"""The wire schema: entry validation, row building, payload id extraction and the public entry shape."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oglogstream import _wire
from oglogstream.stack.ingestion import row_codec, schema
from pydantic import ValidationError

RECEIVED = "2026-11-27T10:00:01.000000Z"


def valid(**fields: Any) -> dict[str, Any]:
    return {"level": "info", "message": "m", "service": "svc", **fields}


def details(entry: Any) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as info:
        schema.ENTRY.validate_json(json.dumps(entry))
    return schema.validation_details(info.value)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2026-11-27T10:00:00.123456Z", "2026-11-27T10:00:00.123456Z"),
        ("2026-11-27T10:00:00Z", "2026-11-27T10:00:00.000000Z"),
        ("2026-11-27T12:00:00.5+02:00", "2026-11-27T10:00:00.500000Z"),
        ("2026-11-27T10:00:00", "2026-11-27T10:00:00.000000Z"),
        ("2026-11-27 10:00:00.000001Z", "2026-11-27T10:00:00.000001Z"),
    ],
)
def test_timestamps_are_normalised_to_utc_microseconds(given: str, stored: str) -> None:
    """Any RFC 3339 form is stored as UTC with microseconds and a Z, offsets applied."""
    assert schema.ENTRY.validate_json(json.dumps(valid(timestamp=given)))["timestamp"] == stored


def test_out_of_range_and_impossible_timestamps_are_rejected() -> None:
    """Dates ClickHouse's DateTime64 cannot hold, or that do not exist, are a timestamp error."""
    for bad in ("1850-01-01T00:00:00Z", "2026-02-30T00:00:00.000000Z", "2026-13-01T00:00:00.000000Z"):
        assert [d["field"] for d in details(valid(timestamp=bad))] == ["timestamp"], bad


def test_attribute_values_keep_their_json_type() -> None:
    """Strings, integers, floats and booleans stay what they were sent as (an integer beyond 64 bits becomes
    its decimal text instead of a rounded float); non-scalars and oversized maps are rejected."""
    big = 2**70
    entry = schema.ENTRY.validate_json(
        json.dumps(valid(attributes={"s": "x", "i": 5, "b": False, "f": 0.25, "one": 1.0, "big": big}))
    )
    assert entry["attributes"] == {"s": "x", "i": 5, "b": False, "f": 0.25, "one": 1.0, "big": str(big)}
    assert [type(v) for v in entry["attributes"].values()] == [str, int, bool, float, float, str]
    too_many = {f"k{i}": "v" for i in range(_wire.MAX_ATTRIBUTES + 1)}
    assert details(valid(attributes=too_many))[0]["field"] == "attributes"
    assert details(valid(attributes={"nested": {"a": 1}}))[0]["field"] == "attributes.nested"


def test_unknown_fields_are_rejected_by_name() -> None:
    """A misspelt field is reported, not silently dropped."""
    assert details(valid(levle="info")) == [{"field": "levle", "reason": "Extra inputs are not permitted"}]


def test_message_limit_counts_utf8_bytes() -> None:
    """10 KB of UTF-8 is the limit, whatever the character count."""
    schema.ENTRY.validate_json(json.dumps(valid(message="é" * (_wire.MAX_MESSAGE_BYTES // 2))))
    assert details(valid(message="é" * (_wire.MAX_MESSAGE_BYTES // 2 + 1)))[0]["field"] == "message"


def test_nulls_and_empty_values_mean_absent() -> None:
    """Optional fields sent as null or empty are dropped from the row (their column defaults are the same)."""
    entry = schema.ENTRY.validate_json(json.dumps(valid(logger=None, pid=0, host="", attributes={})))
    [row] = schema.make_rows([entry], batch_id="b", received_at=RECEIVED)
    assert list(row) == ["id", "timestamp", "level", "message", "service", "received_at"]


def test_rows_get_deterministic_ids_and_server_time() -> None:
    """Missing ids are `{batch_id}-{index}` (request positions), a missing timestamp is the receive time."""
    entries = [schema.ENTRY.validate_python(valid()), schema.ENTRY.validate_python(valid(id="mine"))]
    rows = schema.make_rows(entries, batch_id="b7", received_at=RECEIVED, indexes=[0, 3])
    assert [r["id"] for r in rows] == ["b7-0", "mine"]
    assert rows[0]["timestamp"] == RECEIVED


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
_ids = st.from_regex(r"\A[A-Za-z0-9_.:\-]{1,20}\Z")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(_ids, _text, st.dictionaries(_text.filter(bool), _text, max_size=3)), min_size=1, max_size=8
    )
)
def test_payload_ids_and_split_rows_survive_any_content(items: list[tuple[str, str, dict[str, str]]]) -> None:
    """Whatever the messages and attributes contain (even `},{"id":"`), ids and rows are found exactly."""
    entries = [
        schema.ENTRY.validate_python(
            valid(id=i, message=m + '},{"id":"x"', attributes={**a, "id": "y", "received_at": "z"})
        )
        for i, m, a in items
    ]
    rows = schema.make_rows(entries, batch_id="b", received_at=RECEIVED)
    payload = row_codec.dumps(rows)
    assert row_codec.payload_ids(payload) == [i for i, _, _ in items]
    assert [json.loads(r) for r in row_codec.split_rows(payload)] == json.loads(payload)
    live = [json.loads(line) for line in row_codec.live_payload(payload).split(b"\n")]
    assert live == [row_codec.public_entry(row) for row in rows]


def test_payload_ids_rejects_foreign_payloads() -> None:
    """Anything not written by make_rows+dumps is not taken for rows."""
    for payload in (b"", b"hello", b"[]", b'[{"level":"info"}]', b'{"id":"x"}'):
        assert row_codec.payload_ids(payload) is None


def test_public_entry_shape() -> None:
    """Always id/timestamp/level/message/service; optional fields only when non-empty; Z timestamps."""
    stored = {
        "id": "a",
        "timestamp": dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.timezone.utc),
        "level": "warn",
        "message": "m",
        "service": "s",
        "logger": "",
        "pid": 0,
        "host": "h",
        "attributes": {"k": "v"},
        "received_at": "x",
        "exception": "",
    }
    assert row_codec.public_entry(stored) == {
        "id": "a",
        "timestamp": "2026-11-27T10:00:00.000000Z",
        "level": "warn",
        "message": "m",
        "service": "s",
        "host": "h",
        "attributes": {"k": "v"},
    }
    text = {
        "id": "a",
        "timestamp": "2026-11-27 10:00:00.123456",
        "level": "info",
        "message": "m",
        "service": "s",
    }
    assert row_codec.public_entry(text)["timestamp"] == "2026-11-27T10:00:00.123456Z"
