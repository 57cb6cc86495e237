"""Ingestion fast paths: each one gives exactly what the plain per-entry path gives, on tricky input too."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pydantic_core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oglogstream.stack.ingestion import batch_decode, publish, row_codec, schema
from pydantic import ValidationError

#: The column type's whole range as the accepted window: these tests are about formats, not about now.
WIDE = {"window": schema.TimeWindow("1900-01-01T00:00:00.000000Z", "2299-12-31T00:00:00.000000Z", 10**6)}

RECEIVED = "2026-11-27T10:00:00.000000Z"


def entry(**fields: Any) -> bytes:
    return json.dumps({"level": "info", "message": "m", "service": "svc", **fields}).encode()


def per_line(body: bytes) -> list[dict[str, Any]] | None:
    """The reference: every non-blank line validated on its own, rows made if all are valid."""
    entries = []
    for line in body.split(b"\n"):
        if line.strip():
            try:
                entries.append(schema.ENTRY.validate_json(line))
            except ValidationError:
                return None
    return schema.make_rows(entries, batch_id="b", received_at=RECEIVED) if entries else None


def fast(body: bytes) -> list[dict[str, Any]] | None:
    rows = batch_decode.ndjson_rows(batch_decode.ndjson_lines(body), batch_id="b", received_at=RECEIVED)
    if rows is None:
        return None
    # Same keys in the same order, not only equal dicts, and the same payload bytes.
    expected = per_line(body) or []
    assert [list(r.items()) for r in row_codec.row_dicts(rows)] == [list(r.items()) for r in expected]
    assert row_codec.dump_rows(rows) == row_codec.dump_rows(expected)
    return row_codec.row_dicts(rows)


A, B = entry(message="a"), entry(message="b")
TRICKY_BODIES = [
    A + b"\n" + entry(id="given", timestamp="2026-02-28T10:00:00.000000Z", pid=0, host="") + b"\n",
    entry(id=None, timestamp=None, attributes={}) + b"\n" + entry(timestamp="2026-11-27T10:00:00+02:00"),
    entry(id="x", host=None, message="", attributes={"n": 1, "b": False}),
    A + b"\n" + B + b"\n",
    A + b"\r\n\r\n  \n" + B,  # CRLF and blank lines
    b"  " + A + b"\t\n" + B,
    A + b"," + B + b"\n" + entry(message="c") + b"\n",  # two entries on one line
    A + b" " + B + b"\n",
    # One entry split over two lines, next to a line holding two: the counts would match if joined naively.
    b'{"level":"info","service":"s"\n"message":"m"}\n' + A + b"," + B + b"\n",
    b'{"level":"info","service":"s","message":"m\n"}\n' + A + b"\n",  # a string across the line break
    b'{"level":"info","service":"s",\n"message":"m"}\n',
    A + b"\n" + entry(level="INFO") + b"\n" + B,  # one invalid entry among valid ones
    A + b"\n[" + B + b"]\n",
    A + b"\nnull\n",
    A + b"\n\x0c" + B + b"\n",
    entry(attributes={"k": [1]}) + b"\n" + A,
    b"\n\n",
    b"",
]


@pytest.mark.parametrize("body", TRICKY_BODIES)
def test_ndjson_batch_validation_matches_line_by_line(body: bytes) -> None:
    """One call validating a whole NDJSON body accepts and rejects exactly what per-line validation does."""
    assert fast(body) == per_line(body)


_line = st.one_of(
    st.builds(lambda m: entry(message=m), st.text(max_size=20)),
    st.sampled_from([A, B, b"", b"  ", b"{", b"}", b"[", b"]", b",", b"null", b'"x"', entry(pid=-1)]),
    st.builds(
        lambda i, t, p: entry(id=i, timestamp=t, pid=p),
        st.sampled_from([None, "a-1", ""]),
        st.sampled_from([None, "2026-11-27T10:00:00.000000Z", "2026-11-27T10:00:00Z"]),
        st.sampled_from([None, 0, 7]),
    ),
    st.binary(max_size=30),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_line, max_size=8), st.sampled_from([b"\n", b",\n", b"\r\n", b"\n\n"]))
def test_ndjson_batch_validation_matches_line_by_line_on_any_input(lines: list[bytes], sep: bytes) -> None:
    """Any mix of valid, invalid and partial lines gets the same per-index answers as line-by-line."""
    body = sep.join(lines)
    assert fast(body) == per_line(body)


def _old_timestamp_rule(value: str) -> bool:
    try:
        dt.datetime.fromisoformat(value[:-1])
    except ValueError:
        return False
    return True


def test_canonical_timestamps_taken_without_python_match_the_parsing_rule() -> None:
    """Every canonical-looking date and time is accepted iff it exists (leap years, month ends, 23:59:59)."""
    start = dt.date(2023, 12, 25)
    for day in range(0, 800):
        date = start + dt.timedelta(days=day)
        for text in (
            f"{date.isoformat()}T23:59:59.999999Z",
            f"{date.year:04d}-{date.month:02d}-{31:02d}T00:00:00.000000Z",
            f"{date.year:04d}-02-{29 + day % 3:02d}T00:00:00.000000Z",
        ):
            try:
                stored = schema.ENTRY.validate_json(entry(timestamp=text), context=WIDE)["timestamp"]
            except ValidationError as exc:
                assert not _old_timestamp_rule(text), text
                assert schema.validation_details(exc)[0]["field"] == "timestamp"
            else:
                assert _old_timestamp_rule(text) and stored == text
    for bad in (
        "2026-11-27T24:00:00.000000Z",
        "2026-11-27T10:60:00.000000Z",
        "2026-11-27T10:00:60.000000Z",
        "2026-13-01T00:00:00.000000Z",
        "2026-00-01T00:00:00.000000Z",
        "2026-11-00T00:00:00.000000Z",
    ):
        with pytest.raises(ValidationError):
            schema.ENTRY.validate_json(entry(timestamp=bad))


def _rows() -> list[dict[str, Any]]:
    entries = [
        schema.ENTRY.validate_json(entry(id="a1", timestamp="2026-11-27T09:00:00.000001Z", pid=7, host="h")),
        schema.ENTRY.validate_json(
            entry(message='é " \\ \n \u2028', attributes={"n": 5, "b": True, "s": "x"})
        ),
        schema.ENTRY.validate_json(entry(message="", logger=None, pid=0, host="", attributes={})),
        schema.ENTRY.validate_json(entry(attributes={"received_at": RECEIVED}, exception="Traceback")),
    ]
    return schema.make_rows(entries, batch_id="b1", received_at=RECEIVED)


def test_typed_row_serialiser_writes_the_same_bytes_as_dumps() -> None:
    """`dump_rows` (types known up front) writes exactly `dumps`' bytes for rows of validated entries."""
    rows = _rows()
    assert row_codec.dump_rows(rows) == pydantic_core.to_json(rows) == row_codec.dumps(rows)


def test_live_payload_with_known_received_at_matches_the_general_one() -> None:
    """The plain-replace live payload equals the regex one, also with an attribute named received_at."""
    rows = _rows()
    payload = row_codec.dumps(rows)
    fast = row_codec.live_payload(payload, RECEIVED)
    assert fast == row_codec.live_payload(payload)
    assert [json.loads(line) for line in fast.split(b"\n")] == [row_codec.public_entry(r) for r in rows]
    for one in rows:
        single = row_codec.dumps([one])
        assert row_codec.live_payload(single, RECEIVED) == row_codec.live_payload(single)


def test_live_payload_falls_back_when_received_at_is_not_the_rows_value() -> None:
    """A wrong `received_at` hint cannot corrupt the live payload: the general path is used."""
    payload = row_codec.dumps(_rows())
    assert row_codec.live_payload(payload, "2000-01-01T00:00:00.000000Z") == row_codec.live_payload(payload)


def test_json_array_fast_path_gives_the_rows_of_per_entry_validation() -> None:
    """A valid JSON array becomes the same rows (keys in the same order) as validating each entry."""
    items = [json.loads(line) for line in TRICKY_BODIES[0].splitlines() + TRICKY_BODIES[1].splitlines()]
    body = json.dumps(items).encode()
    rows = batch_decode.array_rows(body, batch_id="b", received_at=RECEIVED, window=WIDE["window"])
    expected = schema.make_rows(
        [schema.ENTRY.validate_python(i, context=WIDE) for i in items], batch_id="b", received_at=RECEIVED
    )
    assert rows is not None
    assert [list(r.items()) for r in row_codec.row_dicts(rows)] == [list(r.items()) for r in expected]
    assert row_codec.dump_rows(rows) == row_codec.dump_rows(expected)
    assert batch_decode.array_rows(b"[]", batch_id="b", received_at=RECEIVED) is None
    assert (
        batch_decode.array_rows(
            json.dumps([*items, {"level": "x"}]).encode(), batch_id="b", received_at=RECEIVED
        )
        is None
    )


def test_sliced_ndjson_validation_gives_the_rows_of_one_call() -> None:
    """A body validated in several slices yields the same rows (and derived ids by request position)."""
    lines = [json.dumps({"level": "info", "message": "x" * 300 + str(i), "service": "s"}).encode()
             for i in range(3000)]
    rows = batch_decode.ndjson_rows(lines, batch_id="b", received_at=RECEIVED)
    expected = schema.make_rows(
        [schema.ENTRY.validate_json(line) for line in lines], batch_id="b", received_at=RECEIVED
    )
    assert len(b"".join(lines)) > 3 * 256 * 1024
    assert row_codec.row_dicts(rows) == expected and rows[-1]["id"] == "b-2999"


def test_publish_parts_fit_the_limit_and_are_deterministic() -> None:
    """Split parts each fit max_payload, hold every row once in order, serialise exactly as their rows,
    and come out the same for a retried batch (same Nats-Msg-Ids)."""
    lines = [json.dumps({"level": "info", "message": "y" * (i % 700), "service": "s"}).encode()
             for i in range(2000)]
    rows = batch_decode.ndjson_rows(lines, batch_id="b", received_at=RECEIVED)
    assert rows is not None
    limit = 64 * 1024
    parts = publish.split_rows(rows, limit)
    assert len(parts) > 1 and all(len(payload) <= limit for _, payload in parts)
    assert [row for part, _ in parts for row in part] == rows
    assert all(payload == row_codec.dump_rows(part) for part, payload in parts)
    assert publish.split_rows(rows, limit) == parts
