"""One timestamp rule at the stack (review r8 findings 5, 7): offsets are RFC 3339 time-numoffsets
(hours <= 23, minutes <= 59), fraction digits past 6 round to the nearest microsecond, and ingestion and the
query API's `from`/`to` accept exactly the same texts."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from oglogstream.stack.http.params import ParamError
from oglogstream.stack.ingestion import schema
from oglogstream.stack.ingestion.timestamps import FORMAT_ERROR
from oglogstream.stack.query import filters
from pydantic import ValidationError

from .helpers import all_roles, wait_for
from .test_ingest_door import logs

TODAY = dt.datetime.now(dt.timezone.utc).date().isoformat()
#: (text, the stored/queried canonical time) for texts both doors accept.
ACCEPTED = [
    (f"{TODAY}T05:00:00.1234567Z", f"{TODAY}T05:00:00.123457Z"),  # 7 digits: rounded, not cut
    (f"{TODAY}T05:00:00.1234564Z", f"{TODAY}T05:00:00.123456Z"),
    (f"{TODAY}T05:00:00.12345650001Z", f"{TODAY}T05:00:00.123457Z"),  # 10+ digits accepted by both
    (f"{TODAY}T05:00:00.9999995Z", f"{TODAY}T05:00:01.000000Z"),  # rounding carries into the second
    (f"{TODAY}T05:00:00", f"{TODAY}T05:00:00.000000Z"),  # no offset: UTC, in both
    (f"{TODAY}t05:00:00.5z", f"{TODAY}T05:00:00.500000Z"),
    (f"{TODAY} 07:00:00+02:00", f"{TODAY}T05:00:00.000000Z"),
    (f"{TODAY}T23:59:00+23:59", f"{TODAY}T00:00:00.000000Z"),
    ("2299-12-31T23:59:59.999999Z", "2299-12-31T23:59:59.999999Z"),
]
#: Texts both doors refuse: the reviewer's offsets first.
REFUSED = [
    f"{TODAY}T05:00:00+00:99", f"{TODAY}T05:00:00+05:60", f"{TODAY}T05:00:00-24:00", f"{TODAY}T05:00:00+0500",
    f"{TODAY}T05:00:00Z\n", f" {TODAY}T05:00:00Z", f"{TODAY}T05:00:00.Z", "2026-02-30T05:00:00Z",
]


def _stored(text: str) -> str:
    entry = {"level": "info", "message": "m", "service": "s", "timestamp": text}
    return str(schema.ENTRY.validate_json(json.dumps(entry))["timestamp"])


def _queried(text: str) -> str:
    return filters.format_micros(filters.parse_time(text, "from"))


@pytest.mark.parametrize("text,canonical", ACCEPTED)
def test_ingestion_and_query_read_a_text_as_the_same_time(text: str, canonical: str) -> None:
    """Each accepted form means the same microsecond at the door and in `from=`: 7+ digits rounded."""
    assert _stored(text) == canonical == _queried(text)


@pytest.mark.parametrize("text", REFUSED)
def test_invalid_offsets_and_shapes_are_refused_by_both_doors(text: str) -> None:
    """+00:99 was stored 1 h 39 min off and +05:60 as +06:00; now the door and `from=` refuse both (400)."""
    with pytest.raises(ValidationError) as info:
        _stored(text)
    [detail] = schema.validation_details(info.value)
    assert detail["field"] == "timestamp" and detail["reason"].startswith(FORMAT_ERROR), detail
    with pytest.raises(ParamError) as refused:
        _queried(text)
    assert refused.value.field == "from" and FORMAT_ERROR in str(refused.value)


def test_rounding_stays_inside_the_last_day_of_the_range() -> None:
    """23:59:59.9999996 on 2299-12-31 is inside the range (all of that day is): it rounds to the range's last
    microsecond, not to 2300-01-01, at the door and in `from=` alike."""
    assert _stored("2299-12-31T23:59:59.9999996Z") == "2299-12-31T23:59:59.999999Z"
    assert _queried("2299-12-31T23:59:59.9999996Z") == "2299-12-31T23:59:59.999999Z"


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with all_roles(nats_server.url, chdb_dsn) as served:
        yield served


async def test_the_reviewers_values_over_http(stack: Any) -> None:
    """POST +00:99 -> 400 naming timestamp; `from=...+00:99` -> 400; `.1234567Z` stored, found as .123457."""
    url, session = stack
    bad = {"level": "info", "message": "bad", "service": "tsrule", "timestamp": f"{TODAY}T05:00:00+00:99"}
    async with session.post(f"{url}/logs", json=[bad]) as resp:
        assert resp.status == 400
        assert "timestamp" in await resp.text()
    async with session.get(f"{url}/api/logs", params={"from": f"{TODAY}T05:00:00+00:99"}) as resp:
        assert resp.status == 400
        assert "from" in await resp.text()
    good = {**bad, "message": "good", "timestamp": f"{TODAY}T05:00:00.1234567Z"}
    async with session.post(f"{url}/logs", json=[good]) as resp:
        assert resp.status == 202
    since = {"from": f"{TODAY}T05:00:00.1234567Z"}
    found = await wait_for(lambda: logs(session, url, service="tsrule", **since))
    assert [e["timestamp"] for e in found] == [f"{TODAY}T05:00:00.123457Z"]
