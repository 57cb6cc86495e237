"""Two inserts in flight (#14): the embedded storage runs two inserts at once on two connections, the
processor starts a batch while another is being inserted, and a batch sharing a row id with one in flight
waits for it, so exactly once holds. Real nats-server and chDB; delays injected at the storage boundary."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from oglogstream.stack.broker.broker import Broker
from oglogstream.stack.config import STREAM_SUBJECT
from oglogstream.stack.http.metrics import Metrics
from oglogstream.stack.ingestion import row_codec, schema
from oglogstream.stack.processing.inflight import InFlight
from oglogstream.stack.processing.sink import Batch
from oglogstream.stack.storage import inserts
from oglogstream.stack.storage.storage import Storage

from .helpers import broker_and_storage, wait_for
from .test_process_failures import TS, count, processor, stored

#: How long a barrier or an injected slow insert waits for the other insert (a deadline, not a timing claim).
WAIT = 10.0


def _payload(prefix: str, n: int) -> bytes:
    entries = [
        schema.ENTRY.validate_python(
            {"id": f"{prefix}-{i}", "level": "info", "message": "m", "service": "svc", "timestamp": TS}
        )
        for i in range(n)
    ]
    return row_codec.dumps(schema.make_rows(entries, batch_id=prefix, received_at=TS))


async def _publish(broker: Broker, prefix: str, n: int, msg_id: str) -> None:
    headers = {"Nats-Msg-Id": msg_id, "Oglog-Rows": str(n), "Oglog-Ts-Min": TS, "Oglog-Ts-Max": TS}
    await broker.publish(STREAM_SUBJECT, _payload(prefix, n), headers)


@pytest.fixture
async def parts(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[Broker, Storage]]:
    async with broker_and_storage(nats_server.url, Storage(chdb_dsn)) as both:
        yield both


async def test_the_embedded_storage_runs_two_inserts_at_once(
    parts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `Storage.insert` calls meet inside ClickHouse's insert (a barrier only both can pass), on two
    threads with two connections, and both batches are stored."""
    _, storage = parts
    barrier = threading.Barrier(2, timeout=WAIT)
    seen: list[tuple[str, int]] = []
    insert = inserts._insert

    def meeting(client: Any, *args: Any) -> None:
        seen.append((threading.current_thread().name, id(client)))
        barrier.wait()  # BrokenBarrierError unless the other insert runs at the same time
        insert(client, *args)

    monkeypatch.setattr(inserts, "_insert", meeting)
    batches = [
        Batch(parts=[_payload(p, 5)], ids=[f"{p}-{i}" for i in range(5)], ts_min=TS, ts_max=TS, token=p)
        for p in ("a", "b")
    ]
    results = await asyncio.gather(*(storage.insert(batch) for batch in batches))
    assert [r.rows for r in results] == [5, 5]
    assert len({name for name, _ in seen}) == 2 and len({client for _, client in seen}) == 2
    assert await count(storage) == 10


async def test_the_processor_inserts_a_batch_while_another_is_in_flight(
    parts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two full batches with different ids: the second one's insert starts while the first one's runs
    (the first waits for it), and every row is stored once."""
    broker, storage = parts
    second_started = threading.Event()
    calls: list[str] = []
    insert = inserts._insert

    def first_waits(client: Any, data: Any, ids: list[str], *args: Any) -> None:
        calls.append(ids[0])
        if len(calls) == 1:
            assert second_started.wait(WAIT), "the second batch was not inserted while the first ran"
        else:
            second_started.set()
        insert(client, data, ids, *args)

    monkeypatch.setattr(inserts, "_insert", first_waits)
    await _publish(broker, "one", 10, "m1")
    await _publish(broker, "two", 10, "m2")
    proc = processor(broker, storage, Metrics(), batch_size=10)
    proc.start()
    try:
        await wait_for(lambda: stored(storage, 20))
    finally:
        await proc.stop()
    assert sorted(calls) == ["one-0", "two-0"]
    assert await count(storage) == 20


async def test_a_batch_sharing_ids_with_one_in_flight_waits_and_is_stored_once(
    parts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same 10 entries published twice (a resend past the stream's duplicate window), one batch each,
    the first insert held after its duplicate check: the second batch starts only after it, finds the rows
    stored and drops them - 10 rows, not 20 (two checks in parallel would both have found nothing)."""
    broker, storage = parts
    events: list[str] = []
    insert = inserts._insert

    def first_slow(client: Any, *args: Any) -> None:
        events.append("insert")
        if events.count("insert") == 1:
            time.sleep(1.0)  # an insert in flight, its duplicate check done (a delay, nothing timed)
        insert(client, *args)
        events.append("stored")

    monkeypatch.setattr(inserts, "_insert", first_slow)
    metrics = Metrics()
    await _publish(broker, "dup", 10, "first")
    await _publish(broker, "dup", 10, "resent")
    proc = processor(broker, storage, metrics, batch_size=10)
    proc.start()
    try:
        await wait_for(lambda: asyncio.sleep(0, metrics.duplicates_skipped.labels("storage")._value.get()))
    finally:
        await proc.stop()
    assert events == ["insert", "stored"]  # the second batch inserted nothing: all 10 were duplicates
    assert await count(storage) == 10
    assert metrics.duplicates_skipped.labels("storage")._value.get() == 10


async def test_inserts_in_flight_must_be_at_least_one(parts: Any) -> None:
    """A processor or an InFlight with no insert lane is refused with a ValueError naming the option."""
    broker, storage = parts
    with pytest.raises(ValueError, match="inserts_in_flight"):
        processor(broker, storage, Metrics(), inserts_in_flight=0)
    with pytest.raises(ValueError, match="inserts in flight"):
        InFlight(None, 0)  # type: ignore[arg-type]
