"""Properties of the running stack (real nats-server, real chDB): no input gives a 5xx on any route or
parameter, and every accepted entry round-trips through GET /api/logs unchanged, exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oglogstream import _wire
from oglogstream.stack.config import StackConfig
from oglogstream.stack.ingestion import dedup, schema

from tests.conftest import require

from .helpers import running_app

#: Shared by every example: the stack is started once for this module.
_SETTINGS = settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One ingest+process+query app on its own event loop thread, with a fresh nats-server and chDB."""
    require("nats")
    require("chdb")
    from oglogstream.stack.broker.natsd import NatsServer

    root: Path = tmp_path_factory.mktemp("props")
    nats = NatsServer(root / "nats").start()
    config = StackConfig(
        roles=("ingest", "process", "query"), nats_url=nats.url,
        clickhouse_dsn=f"chdb://{root / 'clickhouse'}", flush_timeout=0.1,
    )
    ready: dict[str, str] = {}
    started, stop = threading.Event(), threading.Event()

    async def serve() -> None:
        async with running_app(config) as url:
            ready["url"] = url
            started.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert started.wait(30), "stack did not start"
        yield ready["url"]
    finally:
        stop.set()
        thread.join(30)
        nats.stop()


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        yield http


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from([*_wire.FIELD_NAMES, "mesage", ""])  # the entry's fields, a misspelt one, ""
ENTRYISH = st.dictionaries(FIELD_NAMES, JSON_VALUES | st.sampled_from(["info", "2026-01-01T00:00:00Z"]),
                           max_size=8)
BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    ENTRYISH.map(lambda v: json.dumps(v).encode()),
    st.lists(ENTRYISH, max_size=5).map(lambda v: json.dumps(v).encode()),
    st.lists(ENTRYISH, max_size=5).map(lambda v: "\n".join(json.dumps(e) for e in v).encode()),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/x-ndjson",
        "application/x-protobuf",
        "text/plain",
        "",
        "application/json; charset=latin-1",
    ]
)


@settings(_SETTINGS, max_examples=300)
@given(
    path=st.sampled_from(["/log", "/logs", "/v1/logs"]),
    content_type=CONTENT_TYPES,
    gzipped=st.sampled_from([None, "good", "cut"]),
    batch_id=st.none() | st.text(max_size=70),
    body=BODIES,
)
def test_no_ingestion_input_gives_a_5xx(
    client: httpx.Client,
    path: str,
    content_type: str,
    gzipped: str | None,
    batch_id: str | None,
    body: bytes,
) -> None:
    """Any body, media type, encoding and batch id on any ingestion route: a 2xx or a 4xx, never a 5xx."""
    headers = {"Content-Type": content_type}
    if gzipped:
        body = gzip.compress(body)
        body = body if gzipped == "good" else body[: len(body) // 2]
        headers["Content-Encoding"] = "gzip"
    # httpx (h11) itself refuses header values with surrounding whitespace, so those never reach the server.
    sendable = batch_id is not None and batch_id.isascii() and batch_id.isprintable()
    if sendable and batch_id == batch_id.strip():  # type: ignore[union-attr]
        headers[_wire.BATCH_ID_HEADER] = batch_id
    response = client.post(path, content=body, headers=headers)
    assert response.status_code < 500, response.text


QUERY_NAMES = st.sampled_from(
    ["level", "service", "q", "from", "to", "limit", "offset", "cursor", "interval", "x"]
)
QUERY_VALUES = st.one_of(
    st.text(max_size=30),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["info", "error,warn", "2026-11-27T10:00:00Z", "1h", "0", "-1", "now", "%", "\\", "'"]),
)


@settings(_SETTINGS, max_examples=200)
@given(
    route=st.sampled_from(["/api/logs", "/api/stats", "/api/histogram", "/ws/live"]),
    params=st.lists(st.tuples(QUERY_NAMES, QUERY_VALUES), max_size=5),
)
def test_no_query_parameter_gives_a_5xx(
    client: httpx.Client, route: str, params: list[tuple[str, str]]
) -> None:
    """Any combination of known and unknown parameters with any values: a 2xx or a 4xx, never a 5xx."""
    response = client.get(route, params=params)
    assert response.status_code < 500, response.text


NOW = dt.datetime.now(dt.timezone.utc)
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
SHORT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30)
TIMESTAMPS = st.datetimes(
    min_value=(NOW - dt.timedelta(days=29)).replace(tzinfo=None),
    max_value=(NOW + dt.timedelta(hours=23)).replace(tzinfo=None),
).map(lambda t: t.isoformat(timespec="microseconds") + "Z")
OPTIONAL: dict[str, Any] = {
    "timestamp": TIMESTAMPS,
    "logger": SHORT,
    "host": SHORT,
    "pid": st.integers(1, 2**32 - 1),
    "thread": SHORT,
    "trace_id": st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    "span_id": st.from_regex(r"[0-9a-f]{16}", fullmatch=True),
    "exception": TEXT.filter(bool),
    "attributes": st.dictionaries(SHORT, TEXT, min_size=1, max_size=5),
}


@st.composite
def entries(draw: st.DrawFn, service: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "level": draw(st.sampled_from(["debug", "info", "warn", "error", "fatal"])),
        "message": draw(TEXT),
        "service": service,
    }
    for name in draw(st.lists(st.sampled_from(sorted(OPTIONAL)), unique=True)):
        entry[name] = draw(OPTIONAL[name])
    if draw(st.booleans()):
        entry["id"] = f"{service}-{draw(st.from_regex(r'[A-Za-z0-9_.:-]{1,20}', fullmatch=True))}"
    return entry


@st.composite
def batches(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]]]:
    """Entries of one fresh service; each message ends with `#index` so stored entries can be matched."""
    service = f"p{uuid.uuid4().hex[:12]}"
    batch = draw(st.lists(entries(service), min_size=1, max_size=8, unique_by=lambda e: e.get("id", id(e))))
    for index, item in enumerate(batch):
        item["message"] = f"{item['message']}#{index}"
    return service, batch


def _fetch(client: httpx.Client, service: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        answer = client.get("/api/logs", params={"service": service, "limit": 1000})
        stored: list[dict[str, Any]] = answer.json()
        if len(stored) >= count or time.monotonic() > deadline:
            return stored
        time.sleep(0.1)


def _stamp(moment: dt.datetime) -> str:
    return schema.format_timestamp(moment)


@settings(_SETTINGS, max_examples=40)
@given(
    batch=batches(),
    ndjson=st.booleans(),
    batch_id=st.none() | st.from_regex(r"[a-z]{1,64}", fullmatch=True),
)
def test_accepted_entries_round_trip_exactly_once(
    client: httpx.Client, batch: tuple[str, list[dict[str, Any]]], ndjson: bool, batch_id: str | None
) -> None:
    """Every entry of a 202 comes back from GET /api/logs unchanged, exactly once; the server fills only a
    missing id (derived from the batch id) and a missing timestamp (the time it was received)."""
    service, items = batch
    headers = {"Content-Type": "application/x-ndjson" if ndjson else "application/json"}
    batch_key = None if batch_id is None else f"{service}{batch_id}"[: _wire.MAX_ID_CHARS]
    if batch_key is not None:
        headers[_wire.BATCH_ID_HEADER] = batch_key
    body = "\n".join(json.dumps(e) for e in items) if ndjson else json.dumps(items)
    before = _stamp(dt.datetime.now(dt.timezone.utc))
    response = client.post("/logs", content=body.encode(), headers=headers)
    after = _stamp(dt.datetime.now(dt.timezone.utc))
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": len(items), "rejected": [], "rejected_count": 0}
    stored = _fetch(client, service, len(items))
    assert len(stored) == len(items) == len({e["id"] for e in stored}) == len({e["message"] for e in stored})
    by_message = {e["message"]: e for e in stored}
    for index, item in enumerate(items):
        got = by_message[item["message"]]
        expected = {"timestamp": got["timestamp"], **item}
        if "id" not in item:
            stem = None if batch_key is None else dedup.client_identity(batch_key, body.encode()).stem
            expected["id"] = got["id"] if stem is None else schema.derived_id(stem, index)
            assert re.fullmatch(schema.ID_PATTERN, got["id"])
        if "timestamp" not in item:
            assert before <= got["timestamp"] <= after
        assert got == expected
