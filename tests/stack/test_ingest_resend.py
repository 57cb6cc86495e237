"""A client without X-Oglog-Batch-Id that resends a body after a 503 whose publish had in fact succeeded (the
JetStream ack lost with the connection) gets its timestamped entries stored once: their ids derive from the
body. Entries without a timestamp get the server's time, so a resend cannot be told from a genuine repeat:
they are stored each time, under distinct ids. Real nats-server and chDB; the lost ack is injected at the
NATS client."""

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
from oglogstream.stack.ingestion import dedup, fast_rows, schema

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
async def test_a_resend_after_a_lost_ack_stores_timestamped_entries_once(
    stack: Any, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    """The first POST is published but answered 503 (ack lost); the client resends the same body without a
    batch id and gets 202: each entry is stored once, not twice."""
    url, app, session = stack
    service = f"resend{route.replace('/', '-')}"
    entries = [_entry(service, k, timed=True) for k in range(1 if route == "/log" else 5)]
    body = json.dumps(entries[0]) if route == "/log" else "\n".join(map(json.dumps, entries))
    headers = JSON if route == "/log" else NDJSON
    acks = _LostAcks(app, monkeypatch)
    async with session.post(f"{url}{route}", data=body, headers=headers) as resp:
        assert resp.status == 503 and resp.headers["Retry-After"], await resp.text()
    assert acks.lost  # the message is in the stream all the same
    acks.on = False
    async with session.post(f"{url}{route}", data=body, headers=headers) as resp:
        assert resp.status == 202, await resp.text()
    assert await _settled(app, service, len(entries)) == len(entries)


async def test_entries_without_a_timestamp_are_stored_each_time_under_distinct_ids(stack: Any) -> None:
    """A body of 2 timestamped and 3 untimed entries posted twice: the timestamped ones are stored once,
    the untimed ones twice (a genuine repeat, e.g. a heartbeat, is never dropped), every id distinct."""
    url, app, session = stack
    service = "repeat"
    entries = [_entry(service, k, timed=k < 2) for k in range(5)]
    body = "\n".join(map(json.dumps, entries))
    for _ in range(2):
        async with session.post(f"{url}/logs", data=body, headers=NDJSON) as resp:
            assert resp.status == 202, await resp.text()
    assert await _settled(app, service, 2 + 3 * 2) == 2 + 3 * 2
    rows = await query_rows(app, f"SELECT id, message FROM logs WHERE service = '{service}'")
    assert len({row["id"] for row in rows}) == len(rows)
    assert sorted(row["message"] for row in rows) == ["m0", "m1", "m2", "m2", "m3", "m3", "m4", "m4"]


@pytest.mark.parametrize("kind", ["dict", "struct"])
def test_untimed_ids_changes_only_server_timed_rows_with_derived_ids(kind: str) -> None:
    """untimed_ids re-derives the ids of rows that got the server's time, at the same index, from a random
    stem; rows with their own timestamp or their own id keep theirs (dict rows and msgspec rows alike)."""
    received = "2026-11-30T00:00:00.000000Z"
    entries = [
        {"level": "info", "message": "timed", "service": "s", "timestamp": "2026-11-29T23:59:00.000000Z"},
        {"level": "info", "message": "untimed", "service": "s"},
        {"id": "mine", "level": "info", "message": "named", "service": "s"},
    ]
    body = json.dumps(entries).encode()
    ident = dedup.body_identity(body)
    if kind == "dict":
        rows: list[Any] = schema.rows_from_json(body, batch_id=ident.stem, received_at=received)
    else:
        rows = fast_rows.rows_from_json(body, batch_id=ident.stem, received_at=received)
        assert not isinstance(rows[0], dict)
    dedup.untimed_ids(rows, ident.stem, received)
    assert rows[0]["id"] == f"{ident.stem}-0"  # a resend derives it again
    assert rows[1]["id"].endswith("-1") and not rows[1]["id"].startswith(ident.stem)
    assert rows[2]["id"] == "mine"
    assert dedup.body_identity(body).stem == ident.stem
    assert dedup.body_identity(body).message_id != ident.message_id  # random: JetStream keeps repeats
