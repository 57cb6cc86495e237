"""A stored entry's identity is (id, timestamp): the processor drops a row only when a row with the same id
AND the same timestamp is already stored or earlier in the same batch, however the rows were grouped into
messages and batches (real chDB, the processor's own insert functions)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from oglogstream.stack.ingestion import row_codec, schema
from oglogstream.stack.storage import inserts
from oglogstream.stack.storage.storage import Storage

from .helpers import ready_storage

_NOW = dt.datetime.now(dt.timezone.utc)
#: 11:00 on the three days before today: inside the retention window whatever the day the suite runs.
T0, T1, T2 = (
    schema.format_timestamp(_NOW.replace(hour=11, minute=0, second=0, microsecond=0) - dt.timedelta(days=d))
    for d in (3, 2, 1)
)
RECEIVED = schema.format_timestamp(_NOW)

Insert = Callable[[Storage, list[bytes]], Awaitable[tuple[int, int]]]


def message(*rows: tuple[str, str]) -> bytes:
    """A JetStream payload as ingestion writes it, one row per (id, timestamp)."""
    entries = [
        schema.ENTRY.validate_python(
            {"id": i, "timestamp": ts, "level": "info", "message": f"{i}@{ts}", "service": "twins"}
        )
        for i, ts in rows
    ]
    return row_codec.dumps(schema.make_rows(entries, batch_id="b", received_at=RECEIVED))


def _args(storage: Storage, parts: list[bytes]) -> tuple[Any, ...]:
    """What the flusher passes: the batch's messages, their ids, its time span, a token base, settings."""
    stamps = [row_codec.row_timestamp(r) or "" for p in parts for r in row_codec.split_rows(p)]
    ids = [i for p in parts for i in row_codec.payload_ids(p) or ()]
    return (
        parts,
        ids,
        min(stamps),
        max(stamps),
        "base-" + hashlib.sha1(repr(parts).encode()).hexdigest(),
        storage.insert_settings,
    )


async def _rows(storage: Storage, parts: list[bytes]) -> tuple[int, int]:
    return await storage.run(inserts.insert_rows, *_args(storage, parts))


async def _isolating(storage: Storage, parts: list[bytes]) -> tuple[int, int]:
    inserted, dropped, refused = await storage.run(inserts.insert_isolating, *_args(storage, parts))
    assert refused == []
    return inserted, dropped


@pytest.fixture
async def storage(chdb_dsn: str) -> AsyncIterator[Storage]:
    async with ready_storage(Storage(chdb_dsn)) as store:
        yield store


@pytest.fixture(params=[_rows, _isolating], ids=["insert_rows", "insert_isolating"])
def insert(request: pytest.FixtureRequest) -> Insert:
    fn: Insert = request.param
    return fn


async def stored(storage: Storage) -> list[tuple[str, str]]:
    result = await storage.run(
        lambda c: c.query("SELECT id, toString(timestamp) FROM logs ORDER BY timestamp, id").result_rows
    )
    return [(i, ts.replace(" ", "T") + "Z") for i, ts in result]


async def test_same_id_other_timestamps_in_one_message_are_all_stored(
    storage: Storage, insert: Insert
) -> None:
    """The finding, coalesced: one /log message holding the same id at two timestamps stores both."""
    assert await insert(storage, [message(("dupid-3", T1), ("dupid-3", T2))]) == (2, 0)
    assert await stored(storage) == [("dupid-3", T1), ("dupid-3", T2)]


async def test_same_id_other_timestamps_in_two_messages_of_one_batch_are_all_stored(
    storage: Storage, insert: Insert
) -> None:
    """Two messages flushed together, same id, other timestamps: both stored."""
    assert await insert(storage, [message(("dupid-3", T1)), message(("dupid-3", T2))]) == (2, 0)
    assert await stored(storage) == [("dupid-3", T1), ("dupid-3", T2)]


async def test_same_id_other_timestamp_than_a_stored_row_is_stored_whatever_the_span(
    storage: Storage, insert: Insert
) -> None:
    """A later batch with the id at another timestamp is stored, even when the stored row's timestamp lies
    inside the new message's time span (the old rule skipped it there)."""
    assert await insert(storage, [message(("dupid-3", T1))]) == (1, 0)
    assert await insert(storage, [message(("dupid-3", T2), ("other", T0))]) == (2, 0)
    assert await insert(storage, [message(("dupid-3", T0))]) == (1, 0)
    assert await stored(storage) == [("dupid-3", T0), ("other", T0), ("dupid-3", T1), ("dupid-3", T2)]


async def test_a_retry_in_the_same_message_is_stored_once(storage: Storage, insert: Insert) -> None:
    """Same id and timestamp twice in one message (two coalesced /log retries): one row, one dropped."""
    assert await insert(storage, [message(("r", T1), ("r", T1), ("r", T2))]) == (2, 1)
    assert await stored(storage) == [("r", T1), ("r", T2)]


async def test_a_retry_across_messages_of_one_batch_is_stored_once(storage: Storage, insert: Insert) -> None:
    """Same (id, timestamp) in two requests flushed in one batch: one row."""
    assert await insert(storage, [message(("r", T1), ("s", T1)), message(("r", T1))]) == (2, 1)
    assert await stored(storage) == [("r", T1), ("s", T1)]


async def test_a_retry_of_stored_rows_is_dropped(storage: Storage, insert: Insert) -> None:
    """A later batch repeating stored (id, timestamp) pairs stores only its new entries."""
    assert await insert(storage, [message(("r", T1), ("s", T2))]) == (2, 0)
    assert await insert(storage, [message(("r", T1), ("s", T1), ("s", T2))]) == (1, 2)
    assert await stored(storage) == [("r", T1), ("s", T1), ("s", T2)]


def test_row_timestamp_reads_the_row_head_and_falls_back_to_parsing() -> None:
    """The timestamp comes from the head make_rows writes (an attribute named timestamp is not taken for
    it), from a parse for another key order, and is None for a row that has none."""
    entry = schema.ENTRY.validate_python(
        {"id": "a", "timestamp": T1, "level": "info", "message": "m", "service": "s", "attributes": {"n": 1}}
    )
    payload = row_codec.dumps(schema.make_rows([entry, entry], batch_id="b", received_at=RECEIVED))
    assert [row_codec.row_timestamp(r) for r in row_codec.split_rows(payload)] == [T1, T1]
    assert row_codec.row_timestamp(b'{"level":"info","timestamp":"%s","id":"a"}' % T2.encode()) == T2
    assert row_codec.row_timestamp(b'{"id":"a","attributes":{"timestamp":"x"}}') is None
    assert row_codec.row_timestamp(b"{not json") is None
