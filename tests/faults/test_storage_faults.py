"""Storage faults with the whole stack running on its defaults (real NATS, real chDB): ClickHouse inserts
failing for a while (injected at the clickhouse-connect client boundary), and a poison batch next to good
data. Each ends with exact counts: nothing lost, nothing doubled, good data never held back."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from clickhouse_connect.driver.exceptions import OperationalError
from oglogstream.stack.config import STREAM_SUBJECT, StackConfig
from oglogstream.stack.http.app import create_app
from oglogstream.stack.http.resources import BROKER, METRICS, STORAGE

from tests.stack.helpers import running_app

from .helpers import RetryingPoster, assert_exactly_once, wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, web.Application]]:
    config = StackConfig(nats_url=nats_server.url, clickhouse_dsn=chdb_dsn)  # every role, defaults
    app = create_app(config)
    async with running_app(config, app=app) as base:
        yield base, app


async def test_inserts_failing_for_a_while_then_everything_is_stored_once(stack: Any) -> None:
    """Every insert fails like a lost connection for ~4 s while a client posts: ingestion keeps answering
    202, the processor retries, and once ClickHouse is back every acknowledged entry is stored once."""
    base, app = stack
    client = app[STORAGE].client  # created by ensure_schema at startup
    real_insert = client.raw_insert
    failing = threading.Event()
    failures: list[int] = []

    def raw_insert(*args: Any, **kwargs: Any) -> Any:
        if failing.is_set():
            failures.append(1)
            raise OperationalError("injected: Error HTTPConnectionPool: connection refused")
        return real_insert(*args, **kwargs)

    client.raw_insert = raw_insert
    poster = RetryingPoster(base, "chfail")
    poster.start()
    try:
        await asyncio.to_thread(wait_until, lambda: poster.accepted_now() >= 100, timeout=20, what="posting")
        failing.set()
        during = poster.accepted_now()
        await asyncio.to_thread(
            wait_until, lambda: poster.accepted_now() >= during + 200, timeout=20, what="202s while failing"
        )
        await asyncio.to_thread(threading.Event().wait, 4.0)  # the outage: several retry rounds
        failing.clear()
        after = poster.accepted_now()
        await asyncio.to_thread(
            wait_until, lambda: poster.accepted_now() >= after + 100, timeout=20, what="posting after"
        )
    finally:
        accepted = await asyncio.to_thread(poster.finish)
    assert failures, "the fault was never hit"
    assert set(poster.statuses) == {202}, poster.statuses
    await asyncio.to_thread(assert_exactly_once, base, "chfail", accepted)
    assert app[METRICS].insert_retries._value.get() > 0
    assert app[METRICS].dead_letters._value.get() == 0


def _rows(prefix: str, stamps: list[str], **extra: Any) -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}{k}", "timestamp": ts, "level": "info", "message": "m", "service": prefix, **extra}
        for k, ts in enumerate(stamps)
    ]


async def _publish(app: web.Application, msg_id: str, rows: list[dict[str, Any]]) -> None:
    """A message as an older release (or a bug) could have left in the stream: past the door's checks."""
    stamps = sorted(r["timestamp"] for r in rows)
    await app[BROKER].publish(
        STREAM_SUBJECT,
        json.dumps(rows, separators=(",", ":")).encode(),
        {
            "Nats-Msg-Id": msg_id,
            "Oglog-Rows": str(len(rows)),
            "Oglog-Ts-Min": stamps[0],
            "Oglog-Ts-Max": stamps[-1],
        },
    )


def _oglog(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oglogstream.stack.server.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_poison_batch_next_to_good_data(stack: Any, tmp_path: Path) -> None:
    """Amid a client's traffic: rows on 101 days (one insert's partition limit) and a message with one row
    ClickHouse cannot parse. Good data and the 101 days are stored once, only the poison row is dead-lettered,
    visible in the API, the metric and `oglog dead-letters list`; nothing is retried."""
    base, app = stack
    now = dt.datetime.now(dt.timezone.utc)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    poster = RetryingPoster(base, "good")
    poster.start()
    try:
        await asyncio.to_thread(wait_until, lambda: poster.accepted_now() >= 100, timeout=20, what="posting")
        await _publish(
            app, "days", _rows("days", [(now + dt.timedelta(days=k - 1)).strftime(fmt) for k in range(101)])
        )
        poison = _rows("mixed", [now.strftime(fmt)] * 20)
        poison[7]["pid"] = "not a number"
        await _publish(app, "mixed", poison)
        mark = poster.accepted_now()
        await asyncio.to_thread(
            wait_until, lambda: poster.accepted_now() >= mark + 200, timeout=20, what="posting"
        )
    finally:
        accepted = await asyncio.to_thread(poster.finish)
    await asyncio.to_thread(assert_exactly_once, base, "good", accepted)
    await asyncio.to_thread(assert_exactly_once, base, "days", [f"days{k}" for k in range(101)])
    await asyncio.to_thread(assert_exactly_once, base, "mixed", [f"mixed{k}" for k in range(20) if k != 7])
    metrics = app[METRICS]
    assert metrics.insert_retries._value.get() == 0
    assert metrics.dead_letters._value.get() == 1
    listed = await asyncio.to_thread(_oglog, "dead-letters", "list", "--url", base, "--json")
    assert listed.returncode == 0, listed.stderr
    [dead] = json.loads(listed.stdout)["dead_letters"]
    assert dead["reason"] == "unstorable" and dead["rows"] == 1 and dead["original_msg_id"] == "mixed"
    assert [r["id"] for r in dead["message"]] == ["mixed7"]
    text = await asyncio.to_thread(_oglog, "dead-letters", "list", "--url", base)
    assert "1 dead letter(s)" in text.stdout and "unstorable" in text.stdout
    # Replaying a row that still cannot be stored brings it back as a dead letter: never lost, never stored.
    replay = await asyncio.to_thread(_oglog, "dead-letters", "replay", "--url", base, str(dead["seq"]))
    assert replay.returncode == 0 and f"replayed 1: {dead['seq']}" in replay.stdout

    def back_with_new_seq() -> bool:
        listing = json.loads(_oglog("dead-letters", "list", "--url", base, "--json").stdout)
        seqs = [d["seq"] for d in listing["dead_letters"]]
        return len(seqs) == 1 and seqs[0] != dead["seq"]

    await asyncio.to_thread(wait_until, back_with_new_seq, timeout=20, what="dead letter back, new sequence")
