"""Accepted means storable: what the door refuses (timestamp window, broken gzip, oversized work) is refused
with a reason before the 202, and what it accepts (window edges, long batch ids) is stored and queryable."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oglogstream import _wire
from oglogstream.stack.ingestion import batch_decode, dedup, schema
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from .helpers import all_roles, wait_for

JSON = {"Content-Type": "application/json"}
_TRICKY_TEXT = st.text(st.sampled_from(['"', "\\", ",", "a", "\n", "é", "{", "]"]), max_size=8)
JSON_DOCUMENTS = st.recursive(
    st.none() | st.integers() | _TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_TRICKY_TEXT, inner, max_size=5),
    max_leaves=20,
)
NDJSON = {"Content-Type": "application/x-ndjson"}
NOW = dt.datetime.now(dt.timezone.utc)
REFUSED_TIMESTAMPS = [
    "2150-01-01T00:00:00Z",
    "2106-02-08T06:28:16Z",
    "2299-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "2000-01-01T00:00:00Z",
    (NOW - dt.timedelta(days=31)).isoformat(),
    (NOW + dt.timedelta(days=2)).isoformat(),
]


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with all_roles(nats_server.url, chdb_dsn) as served:
        yield served


def entry(**fields: Any) -> dict[str, Any]:
    return {"level": "info", "message": "m", "service": "door", **fields}


async def logs(session: aiohttp.ClientSession, url: str, **params: str) -> list[dict[str, Any]]:
    async with session.get(f"{url}/api/logs", params={"limit": "1000", **params}) as resp:
        assert resp.status == 200
        result: list[dict[str, Any]] = await resp.json()
        return result


# Stable ids (not the computed stamps): every pytest-xdist worker must collect the same test names.
@pytest.mark.parametrize(
    "timestamp", REFUSED_TIMESTAMPS, ids=[*REFUSED_TIMESTAMPS[:5], "31-days-ago", "2-days-ahead"]
)
async def test_log_refuses_timestamps_outside_the_window(stack: Any, timestamp: str) -> None:
    """Too old for retention, too far ahead, or outside the column range: 400 naming the timestamp."""
    url, session = stack
    async with session.post(f"{url}/log", json=entry(timestamp=timestamp)) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["field"] == "timestamp" and "outside the accepted time window" in body["reason"], body
    assert body["details"] == [{"field": "timestamp", "reason": body["reason"]}]


@pytest.mark.parametrize("ndjson", [True, False], ids=["ndjson", "json-array"])
async def test_batches_list_refused_timestamps_and_store_the_rest(stack: Any, ndjson: bool) -> None:
    """POST /logs: each refused timestamp is listed under `rejected` by index; now and now-29d are stored."""
    url, session = stack
    good = [NOW.isoformat(), (NOW - dt.timedelta(days=29)).isoformat()]
    stamps = good + REFUSED_TIMESTAMPS
    items = [entry(timestamp=t, message=f"w{i}") for i, t in enumerate(stamps)]
    body = "\n".join(map(json.dumps, items)) if ndjson else json.dumps(items)
    async with session.post(f"{url}/logs", data=body, headers=NDJSON if ndjson else JSON) as resp:
        assert resp.status == 202
        answer = await resp.json()
    assert answer["accepted"] == 2
    assert [r["index"] for r in answer["rejected"]] == list(range(2, len(stamps)))
    assert all("outside the accepted time window" in r["error"] for r in answer["rejected"])
    stored = await wait_for(lambda: _when(logs(session, url, service="door"), 2))
    assert sorted(e["message"] for e in stored) == ["w0", "w1"]


async def _when(pending: Any, count: int) -> Any:
    rows = await pending
    return rows if len(rows) >= count else None


async def test_otlp_refuses_records_outside_the_window_as_partial_success(stack: Any) -> None:
    """OTLP: records dated 2150 or 2000 are rejected in partialSuccess; the record dated now is stored."""
    url, session = stack
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    utc = dt.timezone.utc
    for when in (NOW, dt.datetime(2150, 1, 1, tzinfo=utc), dt.datetime(2000, 1, 1, tzinfo=utc)):
        record = records.add(time_unix_nano=int(when.timestamp()) * 10**9, severity_number=9)
        record.body.string_value = f"otlp {when.year}"
    async with session.post(
        f"{url}/v1/logs", data=request.SerializeToString(), headers={"Content-Type": "application/x-protobuf"}
    ) as resp:
        assert resp.status == 200
        answer = ExportLogsServiceResponse.FromString(await resp.read())
    assert answer.partial_success.rejected_log_records == 2
    assert "outside the accepted time window" in answer.partial_success.error_message
    stored = await wait_for(lambda: _when(logs(session, url, q="otlp"), 1))
    assert [e["message"] for e in stored] == [f"otlp {NOW.year}"]


@pytest.mark.parametrize(("id_chars", "entries"), [(63, 1), (62, 12), (64, 3)])
async def test_long_batch_ids_derive_ids_that_fit(stack: Any, id_chars: int, entries: int) -> None:
    """A valid X-Oglog-Batch-Id of any length gives every id-less entry a valid, distinct id, stored once
    even when the batch is retried."""
    url, session = stack
    batch_id = "b" * id_chars
    body = "\n".join(json.dumps(entry(message=f"n{i}", service=f"ids{id_chars}")) for i in range(entries))
    for _ in range(2):  # a retry of the same batch
        async with session.post(
            f"{url}/logs", data=body, headers={**NDJSON, _wire.BATCH_ID_HEADER: batch_id}
        ) as resp:
            assert resp.status == 202, await resp.text()
    stored = await wait_for(lambda: _when(logs(session, url, service=f"ids{id_chars}"), entries))
    ids = [e["id"] for e in stored]
    assert len(ids) == entries == len(set(ids))
    assert all(len(i) <= _wire.MAX_ID_CHARS for i in ids)
    stem = dedup.client_identity(batch_id, body.encode()).stem
    assert {schema.derived_id(stem, i) for i in range(entries)} == set(ids)


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def corrupt_crc(blob: bytes) -> bytes:
    return blob[:-8] + bytes([blob[-8] ^ 0xFF]) + blob[-7:]


BROKEN_GZIP = {
    "cut at 60 %": lambda blob: blob[: len(blob) * 6 // 10],
    "no trailer": lambda blob: blob[:-8],
    "wrong CRC32": corrupt_crc,
    "wrong length": lambda blob: blob[:-4] + (zlib.crc32(b"") ^ 1).to_bytes(4, "little"),
    "not gzip": lambda blob: b"plain text, not gzip",
}


@pytest.mark.parametrize("damage", list(BROKEN_GZIP))
@pytest.mark.parametrize(
    ("path", "content_type"), [("/logs", "application/x-ndjson"), ("/log", "application/json"),
                               ("/v1/logs", "application/json")]
)
async def test_broken_gzip_is_400_on_every_route(
    stack: Any, damage: str, path: str, content_type: str
) -> None:
    """A truncated, trailer-less or corrupt gzip body is refused whole with 400; nothing is stored."""
    url, session = stack
    if path == "/logs":
        plain = "\n".join(json.dumps(entry(message=f"g{i}", service="gz")) for i in range(100)).encode()
    elif path == "/log":
        plain = json.dumps(entry(service="gz", message="x" * 2000)).encode()
    else:
        record = {"body": {"stringValue": "gz"}}
        plain = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}).encode()
    data = BROKEN_GZIP[damage](gz(plain))
    async with session.post(
        f"{url}{path}", data=data, headers={"Content-Type": content_type, "Content-Encoding": "gzip"}
    ) as resp:
        assert resp.status == 400, await resp.text()
        text = await resp.text()
    assert "gzip" in text
    assert await logs(session, url, service="gz") == []


async def test_a_small_body_of_three_million_entries_is_413_at_once(stack: Any) -> None:
    """8.8 KB of gzip holding `[{},{},...]` x 3 million: 413 naming the bound, before any entry is parsed."""
    url, session = stack
    data = gz(b"[" + b",".join([b"{}"] * 3_000_000) + b"]")
    assert len(data) < 16 * 1024
    async with session.post(
        f"{url}/logs", data=data, headers={**JSON, "Content-Encoding": "gzip"}
    ) as resp:
        assert resp.status == 413
        body = await resp.json()
    assert body["status"] == 413 and body["field"] == "body"


@pytest.mark.parametrize(
    "body",
    [
        b"[" + b",".join([b"{}"] * (_wire.MAX_BATCH_ENTRIES + 1)) + b"]",
        b"[" + b",".join([b"1"] * 2_000_000) + b"]",
        b'[{"level":"info","message":"m","service":"s","attributes":{'
        + b",".join(b'"k%d":1' % i for i in range(1_000_000)) + b"}}]",
    ],
    ids=["entries", "values", "attributes"],
)
async def test_batch_work_is_bounded_before_parsing(stack: Any, body: bytes) -> None:
    """Too many entries, values or attributes in one body: 413 with the bound, on both content types."""
    url, session = stack
    headers = {**JSON, "Content-Encoding": "gzip"}
    async with session.post(f"{url}/logs", data=gz(body), headers=headers) as resp:
        assert resp.status == 413, await resp.text()
        assert "at most" in (await resp.json())["reason"]


async def test_otlp_record_count_is_bounded(stack: Any) -> None:
    """An export with more than MAX_BATCH_ENTRIES records is refused whole with 413."""
    url, session = stack
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for _ in range(_wire.MAX_BATCH_ENTRIES + 1):
        records.add()
    async with session.post(
        f"{url}/v1/logs", data=request.SerializeToString(), headers={"Content-Type": "application/x-protobuf"}
    ) as resp:
        assert resp.status == 413


@settings(max_examples=300, deadline=None)
@given(JSON_DOCUMENTS)
def test_separator_count_ignores_commas_inside_strings(document: Any) -> None:
    """The pre-parse value count sees exactly the commas a JSON parser sees, whatever the strings hold."""
    body = json.dumps(document).encode()
    assert batch_decode.separators(body) == _separators(document)


def _separators(value: Any) -> int:
    if isinstance(value, list):
        return max(len(value) - 1, 0) + sum(map(_separators, value))
    if isinstance(value, dict):
        return max(len(value) - 1, 0) + sum(map(_separators, value.values()))
    return 0


async def test_single_entry_with_the_longest_batch_id_is_stored(stack: Any) -> None:
    """POST /log with a 64-character X-Oglog-Batch-Id and no id: 202 with a valid id, and it is queryable."""
    url, session = stack
    batch_id = "c" * _wire.MAX_ID_CHARS
    body = json.dumps(entry(service="single-long")).encode()
    async with session.post(
        f"{url}/log", data=body, headers={**JSON, _wire.BATCH_ID_HEADER: batch_id}
    ) as resp:
        assert resp.status == 202
        given = (await resp.json())["id"]
    stem = dedup.client_identity(batch_id, body).stem
    assert given == schema.derived_id(stem, 0) and len(given) <= _wire.MAX_ID_CHARS
    stored = await wait_for(lambda: _when(logs(session, url, service="single-long"), 1))
    assert [e["id"] for e in stored] == [given]
