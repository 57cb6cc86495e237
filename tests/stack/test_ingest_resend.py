"""Without X-Oglog-Batch-Id a repeat cannot be told from a retry, so every request is stored (a genuine repeat
is never dropped), and a 503 whose publish may have succeeded says so and how to resend safely; with the batch
id a resend after a lost ack is stored once. Real nats-server and chDB; the lost ack is injected at the NATS
client (review r8: identical timestamped bodies without a batch id were stored once, silently)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import nats.errors
import pytest
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http.app import create_app
from oglogstream.stack.http.resources import BROKER

from .helpers import count_rows, query_rows, running_app, wait_for

NDJSON = {"Content-Type": "application/x-ndjson"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, Any, aiohttp.ClientSession]]:
    config = StackConfig(roles=("ingest", "process"), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn)
    app = create_app(config)
    async with running_app(config, app=app) as url, aiohttp.ClientSession() as session:
        yield url, app, session


def _entry(service: str, k: int, *, timed: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"level": "info", "message": f"m{k}", "service": service}
    if timed:
        entry["timestamp"] = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=k)).isoformat()
    return entry


class _LostAcks:
    """While `on`, every JetStream publish reaches the stream but its ack is lost (raised as a timeout), the
    broker's own re-send included: the request is answered 503 although its entries are in the stream."""

    def __init__(self, app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on, self.lost = True, 0
        js = app[BROKER].js
        real = js.publish

        async def publish(*args: Any, **kwargs: Any) -> Any:
            ack = await real(*args, **kwargs)
            if self.on:
                self.lost += 1
                raise nats.errors.TimeoutError
            return ack

        monkeypatch.setattr(js, "publish", publish)


async def _settled(app: Any, service: str, n: int) -> int:
    """The rows of `service` once at least `n` are stored and the processor has drained the stream."""
    async def stored() -> bool:
        return await count_rows(app, f"service = '{service}'") >= n

    await wait_for(stored)

    async def drained() -> bool:
        info = await app[BROKER].js.consumer_info("OGLOG_LOGS", "oglog-processor")
        return info.num_pending == 0 and info.num_ack_pending == 0

    await wait_for(drained)
    return await count_rows(app, f"service = '{service}'")


@pytest.mark.parametrize("route", ["/logs", "/log"])
async def test_a_resend_with_its_batch_id_after_a_lost_ack_is_stored_once(
    stack: Any, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    """The first POST is published but answered 503 (ack lost, the broker's re-send's too), and the answer
    says the request may have been stored; resent with the same batch id it gets 202 and each entry is
    stored once."""
    url, app, session = stack
    service = f"resend{route.replace('/', '-')}"
    entries = [_entry(service, k, timed=True) for k in range(1 if route == "/log" else 5)]
    body = json.dumps(entries[0]) if route == "/log" else "\n".join(map(json.dumps, entries))
    headers = {**(JSON if route == "/log" else NDJSON), "X-Oglog-Batch-Id": f"b-{service}"}
    acks = _LostAcks(app, monkeypatch)
    async with session.post(f"{url}{route}", data=body, headers=headers) as resp:
        assert resp.status == 503 and resp.headers["Retry-After"], await resp.text()
        problem = await resp.json()
    assert "may have been stored" in problem["detail"] and "X-Oglog-Batch-Id" in problem["detail"]
    assert acks.lost  # the message is in the stream all the same
    acks.on = False
    async with session.post(f"{url}{route}", data=body, headers=headers) as resp:
        assert resp.status == 202, await resp.text()
    assert await _settled(app, service, len(entries)) == len(entries)


async def test_identical_timestamped_entries_without_a_batch_id_are_all_stored(stack: Any) -> None:
    """Review r8's case: one timestamped event POSTed to /log three times, then a /logs body holding it
    twice, no batch id: five events sent, five rows stored, under distinct ids (a genuine repeat, e.g. the
    same failure twice in one second, is never taken for a retry)."""
    url, app, session = stack
    service = "repeat-timed"
    entry = {
        "message": "payment failed: card declined", "level": "error", "service": service,
        "timestamp": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    ids = []
    for _ in range(3):
        async with session.post(f"{url}/log", data=json.dumps(entry), headers=JSON) as resp:
            assert resp.status == 202, await resp.text()
            ids.append((await resp.json())["id"])
    assert len(set(ids)) == 3
    twice = json.dumps(entry) + "\n" + json.dumps(entry)
    async with session.post(f"{url}/logs", data=twice, headers=NDJSON) as resp:
        assert resp.status == 202, await resp.text()
    assert await _settled(app, service, 5) == 5
    rows = await query_rows(app, f"SELECT id FROM logs WHERE service = '{service}'")
    assert len({row["id"] for row in rows}) == 5


async def test_entries_without_a_timestamp_are_stored_each_time_under_distinct_ids(stack: Any) -> None:
    """A body of 2 timestamped and 3 untimed entries posted twice without a batch id: all ten stored, every
    id distinct."""
    url, app, session = stack
    service = "repeat"
    entries = [_entry(service, k, timed=k < 2) for k in range(5)]
    body = "\n".join(map(json.dumps, entries))
    for _ in range(2):
        async with session.post(f"{url}/logs", data=body, headers=NDJSON) as resp:
            assert resp.status == 202, await resp.text()
    assert await _settled(app, service, 10) == 10
    rows = await query_rows(app, f"SELECT id, message FROM logs WHERE service = '{service}'")
    assert len({row["id"] for row in rows}) == len(rows)
    assert sorted(row["message"] for row in rows) == sorted([f"m{k}" for k in range(5)] * 2)
