"""Data that cannot be stored never blocks other data: a batch ClickHouse refuses is split down to the
refused rows, only those are dead-lettered (listed and replayed through the API), and a data error is never
retried."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import aiohttp
from oglogstream.stack.broker.broker import Broker
from oglogstream.stack.config import STREAM_SUBJECT, StackConfig
from oglogstream.stack.http.resources import METRICS, STORAGE
from oglogstream.stack.processing.process import PROCESSOR
from oglogstream.stack.storage import inserts

from .helpers import count_rows, running_app, wait_for
from .test_process_failures import TS, count, parts, processor, publish  # noqa: F401 - parts is a fixture


def row(row_id: str, ts: str = TS, **fields: Any) -> dict[str, Any]:
    return {"id": row_id, "timestamp": ts, "level": "info", "message": row_id, "service": "svc", **fields}


async def publish_rows(broker: Broker, msg_id: str, rows: list[dict[str, Any]]) -> None:
    stamps = sorted(r["timestamp"] for r in rows)
    payload = json.dumps(rows, separators=(",", ":")).encode()
    headers = {"Nats-Msg-Id": msg_id, "Oglog-Rows": str(len(rows))}
    await broker.publish(
        STREAM_SUBJECT, payload, {**headers, "Oglog-Ts-Min": stamps[0], "Oglog-Ts-Max": stamps[-1]}
    )


def days(n: int, prefix: str) -> list[dict[str, Any]]:
    """Rows on n consecutive days from yesterday (future days too: the TTL must not remove them meanwhile)."""
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    return [
        row(f"{prefix}{k}", (start + dt.timedelta(days=k)).strftime("%Y-%m-%dT%H:%M:%S.000000Z"))
        for k in range(n)
    ]


async def test_rows_on_101_days_and_their_batch_mates_are_all_stored(parts: Any) -> None:  # noqa: F811
    """101 days in one message exceed one insert's partition limit: split, all stored, nothing retried."""
    broker, storage, metrics = parts
    await publish_rows(broker, "days", days(101, "d"))
    await publish(broker, "mate", 10)
    proc = processor(broker, storage, metrics)
    proc.start()
    await wait_for(lambda: _at_least(storage, 111))
    await proc.stop()
    assert await count(storage) == 111
    assert metrics.insert_retries._value.get() == 0
    assert metrics.naks._value.get() == 0
    assert metrics.dead_lettered.labels("unstorable")._value.get() == 0


async def test_one_poison_row_is_dead_lettered_alone(parts: Any) -> None:  # noqa: F811
    """A row ClickHouse cannot parse, amid good rows of its message and others: only it is dead-lettered."""
    broker, storage, metrics = parts
    rows = [row(f"g{k}") for k in range(40)]
    rows[17] = row("poison", pid="not a number")
    await publish(broker, "before", 5)
    await publish_rows(broker, "mixed", rows)
    await publish(broker, "after", 5)
    proc = processor(broker, storage, metrics)
    proc.start()
    await wait_for(lambda: _at_least(storage, 49))
    await wait_for(lambda: _positive(metrics.dead_lettered.labels("unstorable")._value.get()))
    await proc.stop()
    assert await count(storage) == 49
    assert metrics.insert_retries._value.get() == 0
    assert metrics.dead_letters._value.get() == 1
    from oglogstream.stack.processing.deadletter import list_dead_letters

    [dead], next_after = await list_dead_letters(broker)
    assert next_after is None
    assert dead["rows"] == 1 and [r["id"] for r in dead["message"]] == ["poison"]
    assert dead["original_msg_id"] == "mixed" and "pid" in dead["error"]


async def test_isolation_budget_bounds_the_inserts() -> None:
    """Past MAX_ISOLATION_INSERTS a message's still-refused chunks are dead-lettered whole, not row by row."""

    class Refusing:
        calls = 0

        def raw_query(self, *_: Any, **__: Any) -> bytes:
            return b""

        def raw_insert(self, *_: Any, **__: Any) -> None:
            self.calls += 1
            raise Exception("Code: 27. DB::Exception: Cannot parse input")

    rows = [row(f"r{k}") for k in range(1000)]
    payload = json.dumps(rows, separators=(",", ":")).encode()
    client = Refusing()
    ids = [r["id"] for r in rows]
    inserted, dropped, refused = inserts.insert_isolating(client, [payload], ids, TS, TS, "t", {})  # type: ignore[arg-type]
    assert (inserted, dropped) == (0, 0)
    assert client.calls == inserts.MAX_ISOLATION_INSERTS
    assert sum(len(u.rows) for u in refused) == 1000  # every row kept for replay


class RefuseOnce:
    """Storage whose first insert holding row id `target` is refused like a parse error (then it is fixed)."""

    def __init__(self, storage: Any, target: str) -> None:
        self.target, self.armed = target, True
        original = storage.run

        async def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
            if (
                self.armed
                and fn in (inserts.insert_rows, inserts.insert_isolating)
                and self.target in args[1]
            ):
                if fn is inserts.insert_isolating:
                    self.armed = False
                    _parts, ids, *rest = args
                    keep = [p for p in _parts if self.target.encode() not in p]
                    kept_ids = [i for i in ids if i != self.target]
                    inserted, dropped, _ = await original(inserts.insert_isolating, keep, kept_ids, *rest)
                    refused = [
                        inserts.Unstorable(_parts.index(p), [p[1:-1]], "Code: 27. injected")
                        for p in _parts
                        if p not in keep
                    ]
                    return inserted, dropped, refused
                raise Exception("Code: 27. DB::Exception: injected parse error")
            return await original(fn, *args, **kwargs)

        storage.run = run


async def test_dead_letters_are_listed_paged_and_replayed_over_http(nats_server: Any, chdb_dsn: str) -> None:
    """GET /api/dead-letters pages with reason/error/time/message; replay stores them once fixed."""
    from oglogstream.stack.http.app import create_app

    config = StackConfig(
        roles=("ingest", "process", "query"),
        nats_url=nats_server.url,
        clickhouse_dsn=chdb_dsn,
        flush_timeout=0.1,
    )
    app = create_app(config)
    async with running_app(config, app=app) as url, aiohttp.ClientSession() as session:
        RefuseOnce(app[STORAGE], "lone")
        broker = app[PROCESSOR].broker
        await publish_rows(broker, "m1", [row("lone")])
        await publish_rows(broker, "m2", [row("ok1"), row("ok2")])
        await wait_for(lambda: _at_least_app(app, 2))
        await wait_for(lambda: _positive(app[METRICS].dead_letters._value.get()))
        async with session.get(f"{url}/api/dead-letters", params={"limit": "1"}) as resp:
            assert resp.status == 200
            page = await resp.json()
        assert page["total"] == 1 and page["next_after"] is None
        [dead] = page["dead_letters"]
        assert dead["reason"] == "unstorable" and "injected" in dead["error"] and dead["time"].endswith("Z")
        assert [r["id"] for r in dead["message"]] == ["lone"] and dead["original_msg_id"] == "m1"
        async with session.get(f"{url}/api/dead-letters", params={"limit": "0"}) as resp:
            assert resp.status == 400 and (await resp.json())["field"] == "limit"
        async with session.post(f"{url}/api/dead-letters/replay", json={"seqs": "all"}) as resp:
            assert resp.status == 400
        async with session.post(f"{url}/api/dead-letters/replay", json={"seqs": [dead["seq"], 999]}) as resp:
            assert resp.status == 200
            assert await resp.json() == {
                "replayed": [dead["seq"]],
                "failed": [{"seq": 999, "error": "no such dead letter"}],
            }
        await wait_for(lambda: _at_least_app(app, 3))
        assert await count_rows(app) == 3
        async with session.get(f"{url}/api/dead-letters") as resp:
            assert (await resp.json())["total"] == 0


async def _at_least(storage: Any, n: int) -> bool:
    return await count(storage) >= n


async def _at_least_app(app: Any, n: int) -> bool:
    return await count_rows(app) >= n


async def _positive(value: float) -> bool:
    return value > 0


async def test_message_whose_duplicate_check_is_refused_is_dead_lettered_whole(parts: Any) -> None:  # noqa: F811
    """When ClickHouse refuses even the duplicate check of one message, that message alone is dead-lettered
    whole (never retried); its batch-mates are stored."""
    broker, storage, metrics = parts
    original = storage.run

    async def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
        if fn in (inserts.insert_rows, inserts.insert_isolating) and "cursed" in args[1]:
            raise Exception("Code: 41. DB::Exception: Cannot parse datetime")
        return await original(fn, *args, **kwargs)

    storage.run = run
    await publish(broker, "before", 5)
    await publish_rows(broker, "cursed-msg", [row("cursed"), row("innocent")])
    await publish(broker, "after", 5)
    proc = processor(broker, storage, metrics)
    proc.start()
    await wait_for(lambda: _at_least(storage, 10))
    await wait_for(lambda: _positive(metrics.dead_lettered.labels("unstorable")._value.get()))
    await proc.stop()
    assert await count(storage) == 10
    assert metrics.insert_retries._value.get() == 0
    from oglogstream.stack.processing.deadletter import list_dead_letters

    [dead], _ = await list_dead_letters(broker)
    assert [r["id"] for r in dead["message"]] == ["cursed", "innocent"] and dead["rows"] == 2


def test_failure_log_lines_are_rate_limited(caplog: Any) -> None:
    """A flood of one kind of failure logs one line per interval, the next one saying how many were held."""
    import logging
    import threading

    from oglogstream.stack.processing.flush import _Throttle

    throttle = _Throttle(interval=0.05)
    with caplog.at_level(logging.ERROR, logger="oglogstream.stack.processing.flush"):
        for k in range(3):
            throttle.log(logging.ERROR, "dead", "message %d dead-lettered", k)
        throttle.log(logging.ERROR, "nak", "other topic")
        threading.Event().wait(0.1)
        throttle.log(logging.ERROR, "dead", "message %d dead-lettered", 3)
    assert [r.getMessage() for r in caplog.records] == [
        "message 0 dead-lettered",
        "other topic",
        "message 3 dead-lettered (+2 similar in the last 0.05s)",
    ]
