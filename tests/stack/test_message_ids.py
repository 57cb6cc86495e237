"""The processor reads a message's row ids from its `Oglog-Ids` header (#14: no pass over the payload on the
event loop) and gets exactly what the payload scan gives; any header that does not agree with the payload,
and every message without one (the release before, a replayed dead letter), goes through the scan."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.js.api import RawStreamMsg
from oglogstream.stack.broker import messages
from oglogstream.stack.config import DEAD_LETTER_SUBJECT, DEAD_STREAM_NAME, STREAM_NAME
from oglogstream.stack.ingestion import publish, row_codec, schema

from .helpers import wait_for
from .test_process_failures import TS, count, parts, processor  # noqa: F401 - parts is a fixture

_ID = st.from_regex(r"\A[A-Za-z0-9_.:\-]{1,64}\Z", fullmatch=True)
#: Messages and attributes that look like row structure inside strings (escaped by JSON, never structure).
_TEXT = st.one_of(st.text(max_size=40), st.sampled_from(['},{"id":"x"', '"}]', "[{", ',"received_at":"']))
_ATTRIBUTES = st.dictionaries(
    st.text(min_size=1, max_size=8), st.one_of(_TEXT, st.integers(), st.booleans()), max_size=3
)


def _rows(ids: list[str], messages_: list[str], attributes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    entries = [
        schema.ENTRY.validate_python(
            {"id": i, "timestamp": TS, "level": "info", "message": m, "service": "svc", "attributes": a}
        )
        for i, m, a in zip(ids, messages_, attributes, strict=False)
    ]
    return schema.make_rows(entries, batch_id="b", received_at=TS)


def _headers(rows: list[dict[str, Any]], payload: bytes, room: int = 1 << 20) -> dict[str, str]:
    ids = [row["id"] for row in rows]
    return messages.rows_headers("m", len(rows), TS, TS, ids=ids, ids_room=room - len(payload))


@settings(max_examples=200, deadline=None)
@given(
    ids=st.lists(_ID, min_size=1, max_size=30),
    texts=st.lists(_TEXT, min_size=30, max_size=30),
    attributes=st.lists(_ATTRIBUTES, min_size=30, max_size=30),
)
def test_header_ids_equal_the_payload_scan(ids: list[str], texts: list[str], attributes: list[Any]) -> None:
    """For any rows ingestion publishes (repeated ids, look-alike strings, typed maps), header == scan."""
    rows = _rows(ids, texts, attributes)
    payload = row_codec.dump_rows(rows)
    headers = _headers(rows, payload)
    assert messages.IDS in headers
    assert messages.row_ids(headers, payload) == row_codec.payload_ids(payload) == ids


def test_message_without_the_header_is_scanned() -> None:
    """The previous format (no Oglog-Ids) and a replayed dead letter keep today's path."""
    rows = _rows(["a", "b", "c"], ["x"] * 3, [{}] * 3)
    payload = row_codec.dump_rows(rows)
    headers = _headers(rows, payload)
    del headers[messages.IDS]
    assert messages.row_ids(headers, payload) == ["a", "b", "c"]
    assert messages.row_ids({}, b"hello") is None


def test_header_that_disagrees_with_the_payload_falls_back_to_the_scan() -> None:
    """Wrong count, first or last id, characters an id never has, empty ids: the scan decides, so a payload
    that is not a row array is still None (malformed) and a row array gets its own ids."""
    rows = _rows(["a", "b", "c"], ["x"] * 3, [{}] * 3)
    payload = row_codec.dump_rows(rows)
    good = _headers(rows, payload)
    for value in ["a,b", "z,b,c", "a,b,z", "a,b',c", "a,,c", ",a,b", "a,b,c,", "", "a" * 65 + ",b,c"]:
        rows_header = str(len(value.split(",")))
        headers = {**good, messages.IDS: value, messages.ROWS: rows_header}
        assert messages.row_ids(headers, payload) == ["a", "b", "c"], value
        assert messages.row_ids(headers, b"hello") is None, value
    one = row_codec.dump_rows(rows[:1])
    assert messages.row_ids({**good, messages.IDS: "a", messages.ROWS: "1"}, one) == ["a"]
    # One id claimed, but the payload has rows after the first: the scan's three ids, not the header's one.
    assert messages.row_ids({**good, messages.IDS: "a", messages.ROWS: "1"}, payload) == ["a", "b", "c"]


def test_ids_are_sent_only_when_they_fit_next_to_the_payload() -> None:
    """max_payload bounds payload + headers: a payload that leaves no room goes without the ids."""
    headers = messages.rows_headers("m", 2, TS, TS, ids=["abc", "de"], ids_room=6)
    assert headers[messages.IDS] == "abc,de"
    assert messages.IDS not in messages.rows_headers("m", 2, TS, TS, ids=["abc", "de"], ids_room=5)
    assert messages.IDS not in messages.rows_headers("m", 2, TS, TS)


def test_dead_letters_do_not_carry_the_ids() -> None:
    """A dead letter's payload may be only the refused rows: the ids of the whole message stay behind."""
    carried = messages.oglog_headers({messages.IDS: "a,b", messages.ROWS: "2", messages.MSG_ID: "m"})
    assert carried == {messages.ROWS: "2"}


async def test_ingestion_publishes_the_ids_and_a_poison_row_is_dead_lettered_alone(
    parts: Any,  # noqa: F811
) -> None:
    """Through real NATS: ingestion's message carries the ids, the processor stores every good row once,
    and the refused row's dead letter has no ids header (its replay is scanned)."""
    broker, storage, metrics = parts
    rows = _rows([f"g{k}" for k in range(40)], ["m"] * 40, [{}] * 40)
    rows[17]["pid"] = "not a number"
    await publish.publish_rows(broker, metrics, rows, "batch-ids")
    raw: RawStreamMsg = await broker.js.get_msg(STREAM_NAME, seq=1)
    assert raw.headers is not None
    assert raw.headers[messages.IDS] == ",".join(f"g{k}" for k in range(40))
    proc = processor(broker, storage, metrics)
    proc.start()
    try:
        await wait_for(lambda: _at_least(storage, 39))
        await wait_for(lambda: _positive(metrics.dead_lettered.labels("unstorable")._value.get()))
    finally:
        await proc.stop()
    assert await count(storage) == 39
    dead: RawStreamMsg = await broker.js.get_msg(
        DEAD_STREAM_NAME, seq=1, subject=DEAD_LETTER_SUBJECT, next=True
    )
    assert dead.headers is not None and messages.IDS not in dead.headers
    assert dead.headers[messages.ROWS] == "1"
    assert [r["id"] for r in json.loads(dead.data or b"")] == ["g17"]


async def _at_least(storage: Any, n: int) -> bool:
    return await count(storage) >= n


async def _positive(value: float) -> bool:
    return value > 0
