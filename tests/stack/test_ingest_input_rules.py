"""The door's input rules (issue 11 review F7, N11): one entry per id in a request, timestamps exactly
RFC 3339 date-times, levels in any case with Python's and syslog's names; refusals name field, reason."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from oglogstream.stack.ingestion import batch_decode, levels, schema
from oglogstream.stack.ingestion.timestamps import FORMAT_ERROR
from pydantic import ValidationError

from .helpers import all_roles, wait_for
from .test_ingest_door import logs

NDJSON = {"Content-Type": "application/x-ndjson"}
JSON = {"Content-Type": "application/json"}
RECEIVED = "2026-11-27T10:00:00.000000Z"


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with all_roles(nats_server.url, chdb_dsn) as served:
        yield served


def entry(**fields: Any) -> dict[str, Any]:
    return {"level": "info", "message": "m", "service": "rules", **fields}


def validate(**fields: Any) -> dict[str, Any]:
    return dict(schema.ENTRY.validate_json(json.dumps(entry(**fields))))


def refusal(**fields: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        validate(**fields)
    [detail] = schema.validation_details(info.value)
    return detail


# --- one entry per id ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ndjson", [True, False], ids=["ndjson", "json-array"])
async def test_a_repeated_id_in_one_request_is_listed_as_rejected(stack: Any, ndjson: bool) -> None:
    """Issue example F7: two entries with the same explicit id answered `accepted: 2` with one stored; now
    the second is under `rejected` with the reason, and what is accepted is what is stored."""
    url, session = stack
    items = [entry(id="same", message="first"), entry(message="other"), entry(id="same", message="second")]
    body = "\n".join(map(json.dumps, items)) if ndjson else json.dumps(items)
    async with session.post(f"{url}/logs", data=body, headers=NDJSON if ndjson else JSON) as resp:
        assert resp.status == 202
        answer = await resp.json()
    assert answer == {
        "accepted": 2,
        "rejected": [{"index": 2, "error": f"{batch_decode.DUPLICATE_ID_ERROR} (same)"}],
        "rejected_count": 1,
    }
    stored = await wait_for(lambda: _count(logs(session, url, service="rules"), 2))
    assert sorted(e["message"] for e in stored) == ["first", "other"]


def test_repeated_ids_next_to_invalid_entries_keep_request_indexes() -> None:
    """With invalid entries in the batch too, each rejection names the entry's own position."""
    lines = [entry(id="a"), {"level": "nope"}, entry(id="a"), entry(id="b"), entry(id="b")]
    body = "\n".join(map(json.dumps, lines)).encode()
    decoded = batch_decode.decode(body, ndjson=True, batch_id="x", received_at=RECEIVED)
    assert [row["id"] for row in decoded.rows] == ["a", "b"]
    assert [item["index"] for item in decoded.rejected] == [1, 2, 4]
    assert decoded.total == 5


# --- timestamps ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2026-11-27T10:00:00.123456Z", "2026-11-27T10:00:00.123456Z"),
        ("2026-11-27T12:00:00+02:00", "2026-11-27T10:00:00.000000Z"),
        ("2026-11-27t10:00:00.123456789z", "2026-11-27T10:00:00.123457Z"),
        ("2026-11-27 10:00:00.5Z", "2026-11-27T10:00:00.500000Z"),
        ("2026-11-27T10:00:00", "2026-11-27T10:00:00.000000Z"),  # no offset: UTC (documented)
    ],
)
def test_rfc3339_date_times_are_accepted(given: str, stored: str) -> None:
    """RFC 3339 date-times (either case, `T` or space, any fraction cut to µs) are stored in UTC."""
    assert validate(timestamp=given)["timestamp"] == stored


@pytest.mark.parametrize(
    "given",
    [1764237600, 1764237600.5, "2026-11-27", "2026-11-27T10:00:00+0000", "2026-11-27T10:00Z", "1764237600",
     "27/11/2026 10:00:00", "2026-11-27T10:00:00 Z", "2026-W48-5T10:00:00Z", True],
)
def test_other_timestamp_forms_are_refused_with_the_format(given: Any) -> None:
    """Issue example F7: Unix numbers, dates without a time, `+0000`, `HH:MMZ` were accepted though the docs
    said RFC 3339; now each is a timestamp error that shows the accepted form."""
    detail = refusal(timestamp=given)
    assert detail["field"] == "timestamp" and detail["reason"].startswith(FORMAT_ERROR), detail


# --- levels ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [("INFO", "info"), ("Warn", "warn"), ("WARNING", "warn"), ("warning", "warn"), ("CRITICAL", "fatal"),
     ("crit", "fatal"), ("err", "error"), ("ERROR", "error"), ("notice", "info"), ("emerg", "fatal"),
     ("FATAL", "fatal"), ("Debug", "debug")],
)
def test_levels_are_read_in_any_case_with_common_aliases(given: str, stored: str) -> None:
    """New users send Python's names (WARNING, CRITICAL) and syslog's (err, crit): stored as our level."""
    assert validate(level=given)["level"] == stored
    array = json.dumps([entry(level=given)]).encode()
    rows = schema.rows_from_json(array, batch_id="b", received_at=RECEIVED)
    assert rows[0]["level"] == stored


@pytest.mark.parametrize("given", ["verbose", "", 3, None, "warnings"])
def test_unknown_levels_are_refused_with_the_accepted_names(given: Any) -> None:
    """Anything else is a level error listing the names and aliases."""
    detail = refusal(level=given)
    assert detail["field"] == "level" and detail["reason"].startswith(schema.LEVEL_ERROR), detail
    assert all(alias in detail["reason"] for alias in levels.ALIASES)


async def test_level_aliases_work_on_log_and_in_the_query_filter(stack: Any) -> None:
    """POST /log with `WARNING` is stored as warn and found with `level=WARNING` or `level=Warn`."""
    url, session = stack
    async with session.post(f"{url}/log", json=entry(level="WARNING", service="alias")) as resp:
        assert resp.status == 202
    [stored] = await wait_for(lambda: _count(logs(session, url, service="alias"), 1))
    assert stored["level"] == "warn"
    for name in ("WARNING", "Warn", "warn,CRITICAL"):
        assert len(await logs(session, url, service="alias", level=name)) == 1
    async with session.get(f"{url}/api/logs", params={"level": "verbose"}) as resp:
        assert resp.status == 400


async def _count(pending: Any, n: int) -> Any:
    found = await pending
    return found if len(found) >= n else None
