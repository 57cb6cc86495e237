"""One client (its address, and API key with auth) holds its share of the in-flight batch slots, and more
only while a share stays free for the others: a client trickling many large bodies is answered 429 past
that while other clients keep getting 202s (the reviewer's 140 trickled 8 MiB bodies locked every other key
out of POST /logs), and a lone busy client is not held to a quarter of an idle server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from oglogstream import _wire
from oglogstream.stack.auth.keys import parse_scopes
from oglogstream.stack.auth.middleware import KEY_RECORD
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http import boundary as http_boundary
from oglogstream.stack.http.app import create_app
from oglogstream.stack.ingestion import ingest, slots
from oglogstream.stack.ingestion.otlp import receiver as otlp

from .auth_helpers import auth_stack
from .helpers import running_app, wait_for

NDJSON = {"Content-Type": _wire.NDJSON_CONTENT_TYPE}
PER_CLIENT = slots.DEFAULT_MAX_BATCHES_PER_CLIENT
TOTAL = slots.DEFAULT_MAX_BATCHES_IN_FLIGHT
#: What one client alone can hold: all but a share.
ALONE = TOTAL - PER_CLIENT
#: Bodies a holder declares: the largest allowed, as the reviewer's did.
DECLARED = _wire.MAX_BATCH_BODY_BYTES - 4096
LINE = json.dumps({"level": "info", "message": "s" * 900, "service": "slow"}).encode() + b"\n"
#: What a holder sends before it stalls: enough to take a slot (body_started).
HEAD = (LINE * (http_boundary.SLOT_HEAD_BYTES // len(LINE) + 2))[: http_boundary.SLOT_HEAD_BYTES + 1024]


async def _hold(base: str, route: str, headers: str, local: str = "127.0.0.1") -> tuple[Any, Any]:
    """A connection that declares a DECLARED-byte body, sends HEAD of it and stalls."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port), local_addr=(local, 0))
    head = f"POST {route} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: {DECLARED}\r\n\r\n"
    writer.write(head.encode() + HEAD)
    await writer.drain()
    return reader, writer


async def _status(reader: asyncio.StreamReader) -> bytes:
    try:
        # A refused holder is answered at once; a held one never is (it stalls): 3 s tells them apart.
        return (await asyncio.wait_for(reader.readline(), 3)).strip()
    except (asyncio.TimeoutError, ConnectionError):
        return b"(none)"


@pytest.fixture
async def open_stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, Any]]:
    """ingest + process with every default (no auth: clients are told apart by address)."""
    config = StackConfig(roles=("ingest", "process"), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn)
    app = create_app(config)
    async with running_app(config, app=app) as url:
        yield url, app


async def test_one_address_gets_its_share_and_other_addresses_keep_their_202s(open_stack: Any) -> None:
    """Without auth, ALONE + 4 stalled bodies from 127.0.0.2 hold ALONE slots (all but a share); the other 4
    get 429 + Retry-After naming the per-client limit; a batch from 127.0.0.1 is accepted meanwhile."""
    url, app = open_stack
    batch_slots = app[ingest._COUNTERS].slots
    held = [
        await _hold(url, "/logs", "Content-Type: application/x-ndjson\r\n", local="127.0.0.2")
        for _ in range(ALONE + 4)
    ]
    try:
        async def settled() -> bool:
            return batch_slots.in_flight == ALONE

        await wait_for(settled, timeout=20)
        answers = await asyncio.gather(*(_status(reader) for reader, _ in held))
        assert answers.count(b"HTTP/1.1 429 Too Many Requests") == 4, answers
        assert batch_slots.held_by("addr:127.0.0.2") == ALONE
        async with aiohttp.ClientSession() as session:
            body = json.dumps({"level": "info", "message": "legit", "service": "fair"})
            async with session.post(f"{url}/logs", data=body, headers=NDJSON) as resp:
                assert resp.status == 202, await resp.text()
            # The same address past its share: 429, Retry-After, problem+json naming the limit.
            connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
            async with aiohttp.ClientSession(connector=connector) as other, other.post(
                f"{url}/logs", data=HEAD, headers=NDJSON
            ) as resp:
                assert resp.status == 429
                assert resp.headers["Retry-After"] == str(slots.OVERLOAD_RETRY_AFTER_SECONDS)
                assert resp.content_type == http_boundary.PROBLEM_CONTENT_TYPE
                problem = await resp.json()
                assert problem["field"] == "client"
                assert f"already has {ALONE} batches in flight" in problem["reason"]
    finally:
        for _, writer in held:
            writer.close()


async def test_one_key_gets_its_share_and_other_keys_keep_their_202s(
    nats_server: Any, chdb_dsn: str, tmp_path: Path
) -> None:
    """With auth, a key (at an address) is the client: one ingest key's ALONE + 2 stalled bodies hold ALONE
    slots (on /logs; on /v1/logs, whose share is half its 16 slots, 8 + 2 hold 8), and another key's batch
    and export from the same address are accepted meanwhile."""
    async with auth_stack(nats_server.url, chdb_dsn, tmp_path) as stack:
        second = stack.keys_file.create(parse_scopes("ingest"), "second")[1]
        attacker = f"Authorization: Bearer {stack.keys['ingest']}\r\n"
        held = [
            await _hold(stack.base, "/logs", f"{attacker}Content-Type: application/x-ndjson\r\n")
            for _ in range(ALONE + 2)
        ] + [
            await _hold(stack.base, "/v1/logs", f"{attacker}Content-Type: application/x-protobuf\r\n")
            for _ in range(otlp.DEFAULT_MAX_PER_CLIENT + 2)
        ]
        try:
            answers = await asyncio.gather(*(_status(reader) for reader, _ in held))
            assert answers.count(b"HTTP/1.1 429 Too Many Requests") == 4, answers
            assert stack.app[ingest._COUNTERS].slots.in_flight == ALONE
            assert stack.app[otlp._STATE].slots.in_flight == otlp.DEFAULT_MAX_PER_CLIENT
            headers = {"Authorization": f"Bearer {second}"}
            pb = {"Content-Type": "application/x-protobuf", **headers}
            async with aiohttp.ClientSession() as session:

                async def second_key_known() -> bool:  # the running server re-reads the keys file
                    async with session.post(
                        f"{stack.base}/logs", data=LINE, headers={**NDJSON, **headers}
                    ) as resp:
                        return resp.status != 401

                await wait_for(second_key_known, timeout=20)
                ndjson = {**NDJSON, **headers}
                async with session.post(f"{stack.base}/logs", data=LINE, headers=ndjson) as resp:
                    assert resp.status == 202, await resp.text()
                async with session.post(f"{stack.base}/v1/logs", data=b"", headers=pb) as resp:
                    assert resp.status == 200, await resp.text()
        finally:
            for _, writer in held:
                writer.close()


def test_a_client_past_its_share_leaves_a_share_free_for_the_others() -> None:
    """The rule itself: alone, a client takes all but a share and, past its share, gets 429 "client" even
    while slots are free; a second client takes one, but the last slot is kept for a client with none
    (429 "client" for the second's next), so a third gets in; then the process is full (429 "body")."""
    batch_slots = slots.BatchSlots(8, 2)
    with contextlib.ExitStack() as first:
        for _ in range(6):
            first.enter_context(batch_slots.take("a"))
        with pytest.raises(http_boundary.Problem) as refused:
            first.enter_context(batch_slots.take("a"))
        assert refused.value.field == "client"
        with batch_slots.take("b"):
            with pytest.raises(http_boundary.Problem) as kept:
                batch_slots.take("b").__enter__()
            assert kept.value.field == "client" and "kept for a client with none" in kept.value.reason
            with batch_slots.take("c"):
                with pytest.raises(http_boundary.Problem) as full:
                    batch_slots.take("d").__enter__()
                assert full.value.field == "body"
        first.close()
        assert batch_slots.in_flight == 0 and batch_slots.held_by("a") == 0


def test_an_api_key_shared_by_apps_at_different_addresses_is_several_clients() -> None:
    """Apps sharing one ingest key are told apart by address: each gets its own share."""
    class _Request(dict):  # type: ignore[type-arg]
        def __init__(self, remote: str) -> None:
            super().__init__({KEY_RECORD: types.SimpleNamespace(id="k1")})
            self.remote = remote
            self.app: dict[object, object] = {}

    assert slots.client_of(_Request("10.0.0.1")) == "key:k1@10.0.0.1"  # type: ignore[arg-type]
    assert slots.client_of(_Request("10.0.0.2")) != slots.client_of(_Request("10.0.0.1"))  # type: ignore[arg-type]


def test_limits_are_checked() -> None:
    """A share below 1 or above the total is a ValueError naming the option."""
    with pytest.raises(ValueError, match="per_client"):
        slots.BatchSlots(64, 0)
    with pytest.raises(ValueError, match="at most the total"):
        slots.BatchSlots(4, 8)
