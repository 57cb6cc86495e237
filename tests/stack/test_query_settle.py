"""`GET /api/logs?settle=true` (review r8 finding 4): the answer waits until everything ingestion acknowledged
before the request has left the work-queue stream (stored, or dead-lettered), at most SETTLE_TIMEOUT, and
says which in `X-Oglog-Settled`. Real NATS and chDB; the processor is the test itself where the order of
events must be certain (ingest + query roles, the test takes the message off the stream)."""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import nats
import pytest
from aiohttp import web
from oglogstream.stack.config import STREAM_NAME, StackConfig
from oglogstream.stack.http.app import create_app
from oglogstream.stack.http.resources import BROKER
from oglogstream.stack.query.query import SETTLED_HEADER
from oglogstream.stack.query.stored_barrier import BARRIER, StoredBarrier

from .helpers import all_roles, running_app, wait_for

pytestmark = pytest.mark.timeout(120)


def entry(service: str, message: str = "m") -> dict[str, str]:
    return {"level": "info", "message": message, "service": service}


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with all_roles(nats_server.url, chdb_dsn) as served:
        yield served


async def test_an_entry_acknowledged_before_the_request_is_in_the_answer(stack: Any) -> None:
    """POST then at once GET with settle=true: the entry is in the page (every time), header true."""
    url, session = stack
    for trial in range(5):
        service = f"settle-{trial}"
        async with session.post(f"{url}/logs", json=[entry(service)]) as resp:
            assert resp.status == 202
        async with session.get(f"{url}/api/logs", params={"service": service, "settle": "true"}) as resp:
            assert resp.status == 200 and resp.headers[SETTLED_HEADER] == "true"
            assert [e["service"] for e in await resp.json()] == [service]


async def test_a_stream_that_never_held_a_message_is_settled_at_once(stack: Any) -> None:
    """Review r9: on a fresh stack the stream reports first_seq = last_seq = 0, which the drain check never
    passed, so every settle waited SETTLE_TIMEOUT and the Live view warned "storage is behind"."""
    url, session = stack
    async with session.get(f"{url}/api/logs", params={"limit": "1", "settle": "true"}) as resp:
        assert resp.status == 200 and resp.headers[SETTLED_HEADER] == "true"


async def test_settle_is_validated_and_absent_by_default(stack: Any) -> None:
    """settle takes true/false/1/0 (else 400 naming it); without it no header and no wait."""
    url, session = stack
    async with session.get(f"{url}/api/logs", params={"settle": "maybe"}) as resp:
        assert resp.status == 400 and "settle" in await resp.text()
    async with session.get(f"{url}/api/logs") as resp:
        assert resp.status == 200 and SETTLED_HEADER not in resp.headers
    async with session.get(f"{url}/api/logs", params={"settle": "0"}) as resp:
        assert resp.status == 200 and SETTLED_HEADER not in resp.headers


async def test_the_answer_waits_for_the_stream_to_drain_and_says_when_it_gave_up(
    nats_server: Any, chdb_dsn: str
) -> None:
    """No processor: a request waits while the acknowledged message is in the stream, answers (settled) once
    it leaves; another, with a message nobody takes, answers after SETTLE_TIMEOUT with the header false."""
    config = StackConfig(roles=("ingest", "query"), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn)
    app = create_app(config)
    async with running_app(config, app=app) as url, aiohttp.ClientSession() as session:
        async with session.post(f"{url}/logs", json=[entry("held")]) as resp:
            assert resp.status == 202
        params = {"service": "held", "settle": "true"}
        request = asyncio.ensure_future(session.get(f"{url}/api/logs", params=params))
        barrier = app[BARRIER]
        # Its target is set once a poll started after it arrived has read the stream's last sequence.
        await wait_for(lambda: _targeted(barrier))
        assert not request.done()  # the message is still in the stream: the answer waits
        nc = await nats.connect(nats_server.url)
        try:
            jsm = nc.jetstream()
            first = (await jsm.stream_info(STREAM_NAME)).state.first_seq
            await jsm.delete_msg(STREAM_NAME, first)  # as the processor's ack does (work queue)
            resp = await asyncio.wait_for(request, 30)
            assert resp.status == 200 and resp.headers[SETTLED_HEADER] == "true"
            resp.release()
            async with session.post(f"{url}/logs", json=[entry("held", "never taken")]) as posted:
                assert posted.status == 202
            async with session.get(f"{url}/api/logs", params=params) as resp:
                assert resp.status == 200 and resp.headers[SETTLED_HEADER] == "false"
        finally:
            await nc.close()


async def _targeted(barrier: Any) -> bool:
    return any(w.target is not None for w in barrier._waiters)



class _KeptMessageJetStream:
    """JetStream as a stack review left it after a nats-server SIGKILL: the stream still holds one message
    (first_seq 300 of last_seq 705) whose ack the consumer had recorded (ack floor `ack_floor`), which is
    never delivered again. Injected at the client boundary: the server cannot be made to do it on demand."""

    def __init__(self, ack_floor: int) -> None:
        self.ack_floor = ack_floor

    async def stream_info(self, name: str) -> Any:
        state = types.SimpleNamespace(messages=1, first_seq=300, last_seq=705)
        return types.SimpleNamespace(state=state)

    async def consumer_info(self, stream: str, consumer: str) -> Any:
        return types.SimpleNamespace(ack_floor=types.SimpleNamespace(stream_seq=self.ack_floor))


@pytest.mark.parametrize(("ack_floor", "settled"), [(705, True), (299, False)])
async def test_a_message_the_consumer_acked_but_the_server_kept_does_not_hold_settle(
    ack_floor: int, settled: bool
) -> None:
    """Everything at or below the consumer's ack floor is stored, whatever the stream still holds: settled at
    once (before: every settle=true request waited the whole timeout, forever); an ack floor below the
    target still waits."""
    app = web.Application()
    app[BROKER] = types.SimpleNamespace(js=_KeptMessageJetStream(ack_floor))  # type: ignore[assignment]
    barrier = StoredBarrier(app)
    assert await barrier.wait(timeout=1.0) is settled
