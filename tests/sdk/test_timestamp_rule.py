"""The SDK reads timestamps by the stack's rule (review r8 findings 5, 7): an event's own `timestamp` text
with an invalid offset is not a time (kept visibly as an attribute), 7+ fraction digits round to the nearest
microsecond, the same texts mean the same microsecond as at the stack's door, and `created` is accepted up
to the server's last microsecond (2299-12-31T23:59:59.999999Z); past it, restamping is announced."""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

import pytest
from oglogstream import _diag
from oglogstream._capture import StructEvent, capture
from oglogstream._entry import EntryEncoder, rfc3339
from oglogstream._entry_struct import MAX_CREATED
from oglogstream._timestamp_text import parse_timestamp_text
from oglogstream.cli.send import build_record
from oglogstream.stack.ingestion.timestamps import format_timestamp, parse_timestamp

DAY = "2026-11-30"
SEND_DEFAULTS = argparse.Namespace(level="info", logger="oglog.send", service="svc", attributes={})
SAME_AS_THE_STACK = [
    f"{DAY}T05:00:00.1234567Z", f"{DAY}T05:00:00.1234564Z", f"{DAY}T05:00:00.12345650001Z",
    f"{DAY}T05:00:00.9999995Z", f"{DAY}t05:00:00.5z", f"{DAY} 07:00:00+02:00", f"{DAY}T23:59:00+23:59",
    f"{DAY}T05:00:00-07:30", "2299-12-31T23:59:59.5Z",
]
NOT_A_TIME = [
    f"{DAY}T05:00:00+00:99", f"{DAY}T05:00:00+05:60", f"{DAY}T05:00:00-24:00", f"{DAY}T05:00:00+0500",
    f"{DAY}T05:00:00,123Z", "2026-02-30T05:00:00Z", f"{DAY}T05:00Z",
]


def _struct_line(event: dict[str, Any], created: float = 1.0e9) -> dict[str, Any]:
    item = StructEvent({"event": "e", **event}, "info", created, "t", None)
    line = EntryEncoder("svc").encode_struct(item, None)
    result: dict[str, Any] = json.loads(line)
    return result


@pytest.mark.parametrize("text", SAME_AS_THE_STACK)
def test_an_events_timestamp_text_is_stored_at_the_microsecond_the_stack_reads(text: str) -> None:
    """Shipped through structlog, the text becomes the timestamp the stack's door gives the same text
    (`.1234567Z` -> `.123457`, rounded rather than cut)."""
    assert _struct_line({"timestamp": text})["timestamp"] == format_timestamp(parse_timestamp(text))


@pytest.mark.parametrize("text", NOT_A_TIME)
def test_an_invalid_offset_or_shape_is_kept_as_an_attribute_not_read_as_a_time(text: str) -> None:
    """`+00:99` was read as +01:39 (stored 1 h 39 min off); now it is no time: the entry keeps the event's
    capture time and shows the text as the `timestamp` attribute."""
    assert parse_timestamp_text(text) is None
    line = _struct_line({"timestamp": text}, created=1_000_000_000.25)
    assert line["timestamp"] == "2001-09-09T01:46:40.250000Z"
    assert line["attributes"]["timestamp"] == text


def test_the_last_microsecond_of_the_servers_range_is_sent_as_is() -> None:
    """created=10413791999.5 (23:59:59.5 on 2299-12-31, inside the server's range) was restamped with the
    current time; now it is sent as that time, by stdlib records and structlog events alike."""
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "m", None, None)
    record.created = 10413791999.5
    stdlib = json.loads(EntryEncoder("svc").encode_captured(capture(record, None)))
    assert stdlib["timestamp"] == _struct_line({}, created=10413791999.5)["timestamp"]
    assert stdlib["timestamp"] == "2299-12-31T23:59:59.500000Z"
    assert _struct_line({}, created=MAX_CREATED)["timestamp"].startswith("2299-12-31T23:59:59.99999")


@pytest.mark.parametrize("created", [10413792000.0, -1.0, float("nan")])
def test_a_created_past_the_servers_range_is_restamped_and_announced(
    created: float, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outside the stack's range the entry gets the encoding time (never refused by the server), and stderr
    says so, naming the value (rate-limited per topic like every SDK diagnostic)."""
    _diag._last.pop("restamped", None)
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "m", None, None)
    record.created = created
    before = time.time()
    stamped = json.loads(EntryEncoder("svc").encode_captured(capture(record, None)))["timestamp"]
    assert parse_timestamp(stamped).timestamp() >= before - 1e-6
    err = capsys.readouterr().err
    assert f"created={created!r}" in err and "time of encoding" in err


@pytest.mark.parametrize("text", SAME_AS_THE_STACK[:4] + SAME_AS_THE_STACK[5:])
def test_oglog_send_reads_a_timestamp_as_the_stack_does(text: str) -> None:
    """`oglog send`'s JSON `timestamp` becomes the same microsecond the stack's door gives the text."""
    _, record = build_record({"message": "m", "timestamp": text}, SEND_DEFAULTS)
    assert rfc3339(record.created) == format_timestamp(parse_timestamp(text))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        *((bad, "must be an RFC 3339 date-time") for bad in NOT_A_TIME),
        ("2300-01-01T00:00:00Z", "must be between 1970-01-01 and 2299-12-31"),
    ],
)
def test_oglog_send_refuses_what_the_stack_refuses_naming_the_timestamp(text: str, reason: str) -> None:
    """`+00:99` was sent as +01:39; a time past 2299 would have been restamped: both are refused, named."""
    with pytest.raises(ValueError, match=f"^timestamp: {reason}"):
        build_record({"message": "m", "timestamp": text}, SEND_DEFAULTS)
