"""Processing failures: transient insert errors are retried then nak'ed (never dropped); rows ClickHouse can
never store are isolated and dead-lettered (the dead-letter stream) with the reason in headers."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from oglogstream.stack.broker.broker import Broker
from oglogstream.stack.config import STREAM_SUBJECT
from oglogstream.stack.http.metrics import Metrics
from oglogstream.stack.ingestion import row_codec, schema
from oglogstream.stack.processing.deadletter import list_dead_letters
from oglogstream.stack.processing.process import Processor
from oglogstream.stack.storage import inserts
from oglogstream.stack.storage.storage import Storage

from .helpers import wait_for

#: Inside the retention window whatever the date (rows older than RETENTION_DAYS would expire).
TS = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


class FlakyStorage(Storage):
    """The real chDB storage, with the next `failures` inserts failing like a lost connection."""

    failures = 0

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if fn in (inserts.insert_rows, inserts.insert_isolating) and self.failures > 0:
            self.failures -= 1
            raise ConnectionError("injected: connection reset by ClickHouse")
        return await super().run(fn, *args, **kwargs)


@pytest.fixture
async def parts(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[Broker, FlakyStorage, Metrics]]:
    storage = FlakyStorage(chdb_dsn)
    broker = Broker(nats_server.url)
    try:
        await storage.run(storage.ensure_schema)
        await broker.start(wait=10)
        yield broker, storage, Metrics()
    finally:
        await broker.close()
        storage.close()


def processor(broker: Broker, storage: Storage, metrics: Metrics, **overrides: Any) -> Processor:
    settings: dict[str, Any] = dict(
        batch_size=10_000,
        flush_timeout=0.3,
        max_retries=3,
        shutdown_timeout=5.0,
        retry_base=0.05,
        nak_delay=0.2,
    )
    settings.update(overrides)
    return Processor(broker, storage, metrics, **settings)


async def publish(broker: Broker, prefix: str, n: int) -> None:
    entries = [
        schema.ENTRY.validate_python(
            {"level": "info", "message": f"{prefix}{i}", "service": "svc", "timestamp": TS}
        )
        for i in range(n)
    ]
    rows = schema.make_rows(entries, batch_id=prefix, received_at=TS)
    await broker.publish(
        STREAM_SUBJECT,
        row_codec.dumps(rows),
        {"Nats-Msg-Id": prefix, "Oglog-Rows": str(n), "Oglog-Ts-Min": TS, "Oglog-Ts-Max": TS},
    )


async def stored(storage: Storage, n: int) -> bool:
    return int(await storage.run(lambda c: c.command("SELECT count() FROM logs"))) >= n


async def count(storage: Storage) -> int:
    return int(await storage.run(lambda c: c.command("SELECT count() FROM logs")))


async def test_transient_insert_errors_are_retried_with_backoff(parts: Any) -> None:
    """Two failed attempts, then success: every row stored once, two retries counted, nothing nak'ed."""
    broker, storage, metrics = parts
    storage.failures = 2
    await publish(broker, "a", 20)
    proc = processor(broker, storage, metrics)
    proc.start()
    await wait_for(lambda: stored(storage, 20))
    await proc.stop()
    assert await count(storage) == 20
    assert metrics.insert_retries._value.get() == 2
    assert metrics.naks._value.get() == 0


async def test_exhausted_retries_nak_and_the_batch_comes_back(parts: Any) -> None:
    """Past MAX_RETRIES the messages are nak'ed with a delay, redelivered, and stored - never dropped."""
    broker, storage, metrics = parts
    storage.failures = 3
    await publish(broker, "b", 15)
    proc = processor(broker, storage, metrics, max_retries=1)
    proc.start()
    await wait_for(lambda: stored(storage, 15))
    await proc.stop()
    assert await count(storage) == 15
    assert metrics.naks._value.get() >= 1


async def dead_letters(broker: Broker, n: int) -> list[Any]:
    items, _ = await list_dead_letters(broker, limit=n)
    return items


async def test_unparsable_message_is_isolated_and_dead_lettered(parts: Any) -> None:
    """A message ClickHouse rejects goes to the dead-letter subject with why; its batch-mates are stored."""
    broker, storage, metrics = parts
    await publish(broker, "good1", 10)
    bad = (
        b'[{"id":"bad-0","timestamp":"' + TS.encode() + b'","level":"info","message":"m","service":"s",'
        b'"pid":"not a number"}]'
    )
    await broker.publish(
        STREAM_SUBJECT, bad, {"Nats-Msg-Id": "bad", "Oglog-Rows": "1", "Oglog-Ts-Min": TS, "Oglog-Ts-Max": TS}
    )
    await publish(broker, "good2", 10)
    proc = processor(broker, storage, metrics)
    proc.start()
    await wait_for(lambda: stored(storage, 20))
    await wait_for(lambda: _nonzero(metrics.dead_lettered.labels("unstorable")._value.get()))
    await proc.stop()
    assert await count(storage) == 20
    [dead] = await dead_letters(broker, 2)
    assert dead["message"] == json.loads(bad)
    assert dead["reason"] == "unstorable" and dead["rows"] == 1
    assert "pid" in dead["error"]
    assert dead["original_msg_id"] == "bad"


async def test_malformed_message_is_dead_lettered_without_an_insert(parts: Any) -> None:
    """A payload that is not a row array from the ingestion role is dead-lettered as malformed."""
    broker, storage, metrics = parts
    await broker.publish(STREAM_SUBJECT, b"hello", {"Nats-Msg-Id": "junk"})
    await publish(broker, "ok", 5)
    proc = processor(broker, storage, metrics)
    proc.start()
    await wait_for(lambda: stored(storage, 5))
    await wait_for(lambda: _nonzero(metrics.dead_lettered.labels("malformed")._value.get()))
    await proc.stop()
    [dead] = await dead_letters(broker, 2)
    assert dead["message"] == "hello" and dead["reason"] == "malformed" and dead["rows"] is None


async def _nonzero(value: float) -> bool:
    return value > 0


def test_processor_settings_are_validated() -> None:
    """Nonsense settings fail at construction with the setting's name."""
    with pytest.raises(ValueError, match="ack_wait"):
        Processor(
            None,
            None,
            Metrics(),
            batch_size=1,
            flush_timeout=1,
            max_retries=0,  # type: ignore[arg-type]
            shutdown_timeout=1,
            ack_wait=0,
        )
    with pytest.raises(ValueError, match="batch_size"):
        Processor(
            None,
            None,
            Metrics(),
            batch_size=0,
            flush_timeout=1,
            max_retries=0,  # type: ignore[arg-type]
            shutdown_timeout=1,
        )
