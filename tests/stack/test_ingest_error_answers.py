"""A batch of invalid entries gets a bounded answer that still counts every refusal exactly, and costs about
the work of a valid batch: the reviewer's 1.5 KB gzip of 10,000 bad-level lines got a 1,509,161-byte 400,
and 128 bytes of gzip of 9,000 `{}` lines cost 100-220 ms."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest
from oglogstream import _wire
from oglogstream._transport import Outcome, classify
from oglogstream.stack.ingestion import batch_decode, schema

from .helpers import all_roles, wait_for

GZIP_NDJSON = {"Content-Type": _wire.NDJSON_CONTENT_TYPE, "Content-Encoding": "gzip"}
LISTED = batch_decode.MAX_REJECTED_ERRORS
BAD_LEVEL = json.dumps({"level": "bogus", "message": "x", "service": "atk"})
VALID = json.dumps({"level": "info", "message": "ok", "service": "atk"})


def _gzip_lines(lines: list[str]) -> bytes:
    return gzip.compress(("\n".join(lines) + "\n").encode())


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with all_roles(nats_server.url, chdb_dsn) as served:
        yield served


async def test_ten_thousand_bad_lines_get_a_bounded_400_with_the_exact_count(stack: Any) -> None:
    """The reviewer's body: 400 listing the first LISTED refusals (index, error) and rejected_count 10,000,
    in a few KB instead of 1.5 MB."""
    url, session = stack
    body = _gzip_lines([BAD_LEVEL] * _wire.MAX_BATCH_ENTRIES)
    async with session.post(f"{url}/logs", data=body, headers=GZIP_NDJSON) as resp:
        assert resp.status == 400
        raw = await resp.read()
    answer = json.loads(raw)
    assert answer["accepted"] == 0 and answer["rejected_count"] == _wire.MAX_BATCH_ENTRIES
    assert [r["index"] for r in answer["rejected"]] == list(range(LISTED))
    assert all(r["error"].startswith("level: ") for r in answer["rejected"])
    assert len(raw) < 16 * 1024, len(raw)


async def test_entries_with_many_bad_fields_still_get_a_bounded_400(stack: Any) -> None:
    """The re-attack's body: 200 entries, each with 64 invalid attributes under 128-character keys, got a
    1,169,782-byte 400 (every failure of every listed entry); each listed error now names its first
    failures, how many more, and stays within MAX_ERROR_CHARS."""
    url, session = stack
    bad = {f"{'k' * 120}{i:08d}": {"nested": [i]} for i in range(64)}
    lines = [json.dumps({"level": "info", "message": "m", "service": "atk", "attributes": bad})] * 200
    async with session.post(f"{url}/logs", data=_gzip_lines(lines), headers=GZIP_NDJSON) as resp:
        assert resp.status == 400
        raw = await resp.read()
    answer = json.loads(raw)
    assert answer["rejected_count"] == 200 and len(answer["rejected"]) == LISTED
    assert all(len(r["error"]) <= batch_decode.MAX_ERROR_CHARS for r in answer["rejected"])
    assert len(raw) < LISTED * (batch_decode.MAX_ERROR_CHARS + 64), len(raw)


async def test_a_partial_accept_is_bounded_exact_and_stores_only_the_valid_entries(stack: Any) -> None:
    """A full batch (10,000 lines) of 9,000 distinct invalid entries between 1,000 valid ones: the 202
    accepts 1,000, lists only the first LISTED refusals (with their error) and counts all 9,000 in
    rejected_count, in a few KB (listing every index made it ~150 KB); exactly the 1,000 valid entries are
    stored, once each; the SDK's reading of the answer counts 9,000 refused."""
    url, session = stack
    service = "partial-202"
    lines = [
        json.dumps({"id": f"ok-{i}", "level": "info", "message": "ok", "service": service})
        if i % 10 == 0
        else json.dumps({"level": f"bogus{i}", "message": "x", "service": service})
        for i in range(_wire.MAX_BATCH_ENTRIES)
    ]
    async with session.post(
        f"{url}/logs", data=_gzip_lines(lines), headers={**GZIP_NDJSON, "Accept-Encoding": "identity"}
    ) as resp:
        assert resp.status == 202
        raw = await resp.read()
    answer = json.loads(raw)
    assert answer["accepted"] == 1000 and answer["rejected_count"] == 9000
    refused = [i for i in range(_wire.MAX_BATCH_ENTRIES) if i % 10]
    assert [r["index"] for r in answer["rejected"]] == refused[:LISTED]
    assert all(r["error"].startswith("level: ") for r in answer["rejected"])
    assert len(raw) < LISTED * (batch_decode.MAX_ERROR_CHARS + 64), len(raw)  # was ~150 KB
    result = classify(httpx.Response(202, content=raw), f"{url}/logs", len(lines))
    assert result.outcome is Outcome.OK and result.rejected_count == 9000  # what the SDK counts

    async def stored() -> list[str]:
        async with session.get(f"{url}/api/logs", params={"service": service, "limit": "1000"}) as got:
            assert got.status == 200
            ids = [entry["id"] for entry in await got.json()]
        return ids if len(ids) >= 1000 else []

    ids = await wait_for(stored)
    assert sorted(ids) == sorted(f"ok-{i}" for i in range(0, _wire.MAX_BATCH_ENTRIES, 10))
    async with session.get(f"{url}/api/stats", params={"service": service}) as got:
        assert (await got.json())["total_logs"] == 1000


class _Counting:
    """Counts calls of `fn` (the per-entry validation, or the writing of an error's text)."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize("ndjson", [True, False], ids=["ndjson", "json-array"])
def test_error_texts_are_written_only_for_listed_entries(monkeypatch: Any, ndjson: bool) -> None:
    """10,000 distinct invalid entries: each is validated once, but only LISTED error texts are written."""
    summaries = _Counting(batch_decode._summary)
    monkeypatch.setattr(batch_decode, "_summary", summaries)
    entries = [
        {"level": f"bogus{i}", "message": "x", "service": "atk"} for i in range(_wire.MAX_BATCH_ENTRIES)
    ]
    body = "\n".join(map(json.dumps, entries)) if ndjson else json.dumps(entries)
    decoded = batch_decode.decode(
        body.encode(), ndjson=ndjson, batch_id="b", received_at="2026-11-30T00:00:00.000000Z",
        window=schema.current_window(),
    )
    assert len(decoded.rejected) == _wire.MAX_BATCH_ENTRIES and not decoded.rows
    assert summaries.calls == LISTED
    assert all("error" in r for r in decoded.rejected[:LISTED])
    assert all(r.keys() == {"index"} for r in decoded.rejected[LISTED:])


def test_a_repeated_invalid_line_is_validated_once(monkeypatch: Any) -> None:
    """9,000 identical `{}` lines (128 bytes gzipped) cost one validation and one error text, not 9,000."""
    validations = _Counting(schema.ENTRY.validate_json)
    monkeypatch.setattr(schema.ENTRY, "validate_json", validations)
    decoded = batch_decode.decode(
        b"{}\n" * 9000 + VALID.encode(), ndjson=True, batch_id="b",
        received_at="2026-11-30T00:00:00.000000Z", window=schema.current_window(),
    )
    assert len(decoded.rows) == 1 and len(decoded.rejected) == 9000
    assert validations.calls == 2  # one `{}`, one valid line
    assert decoded.rejected[0]["error"] == decoded.rejected[LISTED - 1]["error"]


def test_the_answer_part_is_bounded_for_a_400_and_a_202_alike() -> None:
    """answer_rejected lists the first LISTED refusals and counts them all, whatever the status."""
    rejected = [{"index": i, "error": "level: bad"} for i in range(LISTED)]
    rejected += [{"index": i} for i in range(LISTED, 500)]
    assert batch_decode.answer_rejected(rejected) == {"rejected": rejected[:LISTED], "rejected_count": 500}
    assert batch_decode.answer_rejected([]) == {"rejected": [], "rejected_count": 0}
