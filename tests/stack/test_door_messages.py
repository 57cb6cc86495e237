"""What the door says is true: the timestamp range is the column's (to the end of 2299-12-31) on both sides
and a range error names only the range; a worker that fails to start is described by what is known of its
end; a cursor is refused only when it cannot be read, as documented."""

from __future__ import annotations

import datetime as dt
import signal

import pytest
from oglogstream.stack.http.params import ParamError
from oglogstream.stack.ingestion import schema
from oglogstream.stack.ingestion.timestamps import END_OF_RANGE, RANGE_ERROR, WINDOW_ERROR
from oglogstream.stack.query import filters
from oglogstream.stack.server import workers
from pydantic import ValidationError


def _reason(timestamp: str, window: schema.TimeWindow | None = None) -> str | None:
    body = f'{{"level":"info","message":"m","service":"s","timestamp":"{timestamp}"}}'
    try:
        schema.ENTRY.validate_json(body, context={"window": window})
    except ValidationError as exc:
        return schema.validation_details(exc)[0]["reason"]
    return None


@pytest.mark.parametrize(
    "inside", ["2299-12-31T12:00:00Z", "2299-12-31T23:59:59.999999Z", "2299-12-31T23:59:59.9999999+00:00",
               "1900-01-01T00:00:00Z", "2300-01-01T01:00:00+02:00"]
)
def test_the_last_day_of_the_range_is_inside_it(inside: str) -> None:
    """Every time of 2299-12-31 (UTC) passes the column range at ingestion and in the query API alike."""
    assert _reason(inside) is None
    micros = filters.parse_time(inside, "from")
    assert micros < (END_OF_RANGE - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(
        microseconds=1
    )


@pytest.mark.parametrize(
    "outside", ["2300-01-01T00:00:00Z", "2299-12-31T23:00:00-01:00", "1899-12-31T23:59:59Z"]
)
def test_a_well_formed_time_out_of_range_gets_the_range_alone(outside: str) -> None:
    """The reason is exactly the range, with no format text in front; the query API gives the same one."""
    assert _reason(outside) == RANGE_ERROR
    with pytest.raises(ParamError) as raised:
        filters.parse_time(outside, "from")
    assert raised.value.reason == RANGE_ERROR


def test_the_last_day_is_refused_at_post_time_only_by_the_window() -> None:
    """With today's window, 2299-12-31T12:00:00Z is refused for being too far ahead, and says so."""
    reason = _reason("2299-12-31T12:00:00Z", schema.current_window())
    assert reason is not None and reason.startswith(WINDOW_ERROR)


@pytest.mark.parametrize(
    ("returncode", "timed_out", "expected"),
    [
        (-signal.SIGKILL, False, "killed by SIGKILL, before it reported ready"),
        (255, False, "exit status unknown: reaped before asyncio could collect it, most likely killed from "
                     "outside, before it reported ready"),
        (1, False, "exit status 1 before it reported ready; the error it printed, if any, is above"),
        (-signal.SIGKILL, True, "no ready line within 60 s; killed"),
    ],
)
def test_a_worker_start_failure_says_what_is_known(returncode: int, timed_out: bool, expected: str) -> None:
    """A worker killed while it (re)starts is not said to have printed an error (asyncio's 255 means its
    status was lost, not that it exited 255)."""
    assert workers._start_failure(returncode, timed_out) == expected


def test_cursors_are_refused_only_when_unreadable() -> None:
    """A well-formed cursor this API did not issue is a position (docs/stack.md); unreadable ones are 400s."""
    forged = filters.Cursor(1_700_000_000_000_000, "not-a-real-row").encode()
    assert filters.Cursor.decode(forged) == filters.Cursor(1_700_000_000_000_000, "not-a-real-row")
    out_of_range = filters.Cursor(filters._MAX_US, "x").encode()
    for bad in ("not base64!", out_of_range, filters.Cursor(0, "").encode(), "MnwxfHg"):
        with pytest.raises(ParamError):
            filters.Cursor.decode(bad)
