"""`oglog send` reads a JSON `timestamp` without an offset as UTC, as the stack's door reads the same text
(review r9: it refused `2026-11-30T06:00:00` with "needs an offset" while POST /api/ingest stores it as UTC).
One rule: the stack's own parse_timestamp is the reference, and a real stack stores what send sent."""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from oglogstream._entry import rfc3339
from oglogstream.cli.send import build_record
from oglogstream.stack.ingestion.timestamps import format_timestamp, parse_timestamp

from tests.stack.helpers import all_roles, wait_for

from .helpers import oglog

pytestmark = pytest.mark.timeout(120)

DEFAULTS = argparse.Namespace(level="info", logger="oglog.send", service="svc", attributes={})
NAIVE = ["2026-11-30T06:00:00", "2026-11-30 06:00:00.1234567", "2026-11-30t23:59:59.9999995",
         "1970-01-01T00:00:00", "2299-12-31T23:59:59.5"]


@pytest.mark.parametrize("text", NAIVE)
def test_text_without_an_offset_is_the_microsecond_the_stack_gives_it(text: str) -> None:
    """Whatever the machine's local zone, the record's time is the stack's UTC reading of the text."""
    _, record = build_record({"message": "m", "timestamp": text}, DEFAULTS)
    assert rfc3339(record.created) == format_timestamp(parse_timestamp(text))


def test_text_without_an_offset_is_refused_only_where_the_stack_refuses_it() -> None:
    """Outside 1970..2299 (UTC) stays refused, naming the field; so does a time that does not exist."""
    with pytest.raises(ValueError, match=r"^timestamp: must be between 1970-01-01 and 2299-12-31"):
        build_record({"message": "m", "timestamp": "2300-01-01T00:00:00"}, DEFAULTS)
    with pytest.raises(ValueError, match=r"^timestamp: must be an RFC 3339 date-time"):
        build_record({"message": "m", "timestamp": "2026-02-30T06:00:00"}, DEFAULTS)


async def test_a_real_stack_stores_the_offsetless_time_as_utc(nats_server: Any, chdb_dsn: str) -> None:
    """The reviewer's line, an hour back so the stack's accepted window takes it: exit 0 and stored with
    the typed wall time as UTC."""
    service = f"utc-{uuid.uuid4().hex[:8]}"
    typed = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(microsecond=0, tzinfo=None)
    line = json.dumps({"message": "no offset", "timestamp": typed.isoformat()}) + "\n"
    async with all_roles(nats_server.url, chdb_dsn) as (url, _):
        sent = await oglog("send", "--service", service, url=url, stdin=line)
        assert (sent.code, sent.err) == (0, "")

        async def stored() -> list[dict[str, Any]] | None:
            result = await oglog("query", "--service", service, "--json", url=url)
            assert result.code == 0, result.err
            return [json.loads(row) for row in result.out.splitlines()] or None

        rows = await wait_for(stored, timeout=30, interval=0.3)
    assert [row["timestamp"] for row in rows] == [typed.strftime("%Y-%m-%dT%H:%M:%S.000000Z")]
