"""Timestamps at the door: the canonical form, the column range and the accepted window.

A stored timestamp is RFC 3339 UTC with microseconds and a `Z` ("2026-11-27T10:00:00.123456Z"); canonical
strings order like the times they name, so the window check is two string comparisons. `Timestamp` is the
pydantic type of the entry's `timestamp` field (see schema.Entry). The window comes from the validation
context, `context={"window": TimeWindow}`: every ingestion route passes `current_window(retention_days)`.
Without one, validation checks the wire format and the column range only (as the SDK's tests use it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo

from ..config import DEFAULT_RETENTION_DAYS, check_at_least

__all__ = [
    "END_OF_RANGE",
    "FORMAT_ERROR",
    "MAX_FUTURE_SECONDS",
    "RANGE_ERROR",
    "START_OF_RANGE",
    "WINDOW_ERROR",
    "TimeWindow",
    "Timestamp",
    "current_window",
    "format_timestamp",
    "parse_timestamp",
]

#: How far ahead of server time a timestamp may be: a day covers any clock skew and local times
#: mislabelled as UTC (at most 14 h ahead). With the retention bound, one batch touches at most
#: retention + 2 daily partitions.
MAX_FUTURE_SECONDS = 24 * 3600
#: The timestamp column's range, [START_OF_RANGE, END_OF_RANGE): ClickHouse's DateTime64(6) holds
#: 1900-01-01 00:00:00 to 2299-12-31 23:59:59.999999 UTC. Anything outside is a client clock or unit bug, not
#: a log time. The one definition for ingestion and the query API (query/filters.py).
START_OF_RANGE = dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc)
END_OF_RANGE = dt.datetime(2300, 1, 1, tzinfo=dt.timezone.utc)
#: The reason a well-formed time outside that range gets (ingestion and query alike).
RANGE_ERROR = "must be between 1900-01-01 and 2299-12-31 (UTC, the end of that day included)"
_LAST_TS = END_OF_RANGE - dt.timedelta(microseconds=1)
_UTC = dt.timezone.utc


def format_timestamp(value: dt.datetime) -> str:
    """RFC 3339 UTC with microseconds and `Z`; naive datetimes are taken as UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(_UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


@dataclasses.dataclass(frozen=True)
class TimeWindow:
    """The timestamps accepted at the door, as canonical strings (which order like the times they name):
    `oldest` = now - retention (older rows would be deleted by the table's TTL at once), `newest` = now +
    MAX_FUTURE_SECONDS. Both lie inside DateTime64(6)'s range. Pass one as `context={"window": w}` to
    validation; without it only the column range applies."""

    oldest: str
    newest: str
    retention_days: int

    @classmethod
    def around(cls, now: dt.datetime, *, retention_days: int = DEFAULT_RETENTION_DAYS) -> TimeWindow:
        """The window for server time `now` (aware) and a retention of `retention_days` (>= 1)."""
        check_at_least(1, retention_days=retention_days)
        oldest = max(now - dt.timedelta(days=retention_days), START_OF_RANGE)
        newest = min(now + dt.timedelta(seconds=MAX_FUTURE_SECONDS), _LAST_TS)
        return cls(format_timestamp(oldest), format_timestamp(newest), retention_days)

    def reason(self, value: str) -> str | None:
        """Why the canonical timestamp `value` is refused, or None when it is inside the window."""
        if value < self.oldest:
            return (
                f"{WINDOW_ERROR}: {value} is older than the retention of {self.retention_days} days"
                f" (oldest accepted now: {self.oldest})"
            )
        if value > self.newest:
            return (
                f"{WINDOW_ERROR}: {value} is more than {MAX_FUTURE_SECONDS // 3600} h ahead of server time"
                f" (newest accepted now: {self.newest})"
            )
        return None


#: Marks the window's refusals, so validation_details reports them alone rather than merged with the
#: format branches of the timestamp union.
WINDOW_ERROR = "outside the accepted time window"


_windows: dict[int, TimeWindow] = {}
_windows_second = [-1]


def current_window(retention_days: int = DEFAULT_RETENTION_DAYS) -> TimeWindow:
    """`TimeWindow.around(now, retention_days=...)`, recomputed once a second (this runs per request);
    ValueError for retention_days < 1."""
    second = int(time.time())
    if _windows_second[0] != second:
        _windows.clear()
        _windows_second[0] = second
    window = _windows.get(retention_days)
    if window is None:
        window = _windows[retention_days] = TimeWindow.around(
            dt.datetime.now(_UTC), retention_days=retention_days
        )
    return window


def _in_window(value: str, info: ValidationInfo) -> str:
    context = info.context
    window = context.get("window") if isinstance(context, dict) else None
    if window is None:  # the wire format alone (the SDK's tests check against it): column range only
        return value
    reason = window.reason(value)
    if reason is not None:
        raise ValueError(reason)
    return value


#: RFC 3339 date-time (section 5.6): `T` or a space, seconds required, any fraction, `Z` or a time-numoffset
#: `±HH:MM` with HH <= 23 and MM <= 59; the offset may be left out (read as UTC, documented in docs/stack.md).
#: Numbers, dates without a time, `+0000`, `+00:99`, times without seconds are refused: each is a guess we
#: would rather not make about client data. The one rule for ingestion and the query API (query/filters.py).
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
    r"([Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)?",
    re.ASCII,
)
#: The reason every refused timestamp text gets.
FORMAT_ERROR = (
    "must be an RFC 3339 date-time like 2026-11-27T10:00:00.123456Z or 2026-11-27T12:00:00+02:00"
    " (offset hours <= 23, minutes <= 59; no offset: read as UTC)"
)


def parse_timestamp(value: str) -> dt.datetime:
    """The RFC 3339 text `value` as an aware UTC datetime, rounded to the nearest microsecond (a 7th fraction
    digit >= 5 rounds up, later digits are not read: bounded work for any length; a carry past the range's
    last microsecond stays on it). ValueError with FORMAT_ERROR (bad shape or offset, a date/time that does
    not exist) or exactly RANGE_ERROR (outside [START_OF_RANGE, END_OF_RANGE))."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(FORMAT_ERROR)
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micros = 0
    if fraction:
        micros = int(fraction[:6].ljust(6, "0")) + (len(fraction) > 6 and fraction[6] >= "5")
    tz = _UTC
    if offset and offset not in "Zz":
        sign = 1 if offset[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    try:
        moment = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz
        ).astimezone(_UTC)
        rounded = moment + dt.timedelta(microseconds=micros)
    except (ValueError, OverflowError):
        raise ValueError(f"{FORMAT_ERROR}: {value[:40]!r} names no real time") from None
    if not START_OF_RANGE <= moment < END_OF_RANGE:
        raise ValueError(RANGE_ERROR)
    # The range includes all of 2299-12-31: 23:59:59.9999999 rounds to its last microsecond, not to 2300.
    return min(rounded, _LAST_TS)


def _timestamp(value: str, info: ValidationInfo) -> str:
    return _in_window(format_timestamp(parse_timestamp(value)), info)


def _canonical_timestamp(value: str, info: ValidationInfo) -> str:
    # The pattern (checked in Rust) fixed the shape; fromisoformat (C) rejects impossible dates like Feb 30.
    dt.datetime.fromisoformat(value[:-1])
    return _in_window(value, info)


#: The form the SDK sends and the stack stores: taken as is after a cheap check (3x faster than parsing).
#: `[0-9]`, not `\d`: pydantic's Rust regex (like Python's) takes any Unicode digit there, and a timestamp
#: taken as is must be ASCII (storage parses it).
_CANONICAL_TS = r"^(19|2[0-2])[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]\.[0-9]{6}Z$"
#: The canonical form restricted to dates that exist in every year (Feb 29 excepted) and valid times: these
#: need no Python check at all (the regex runs in Rust). Everything else falls through to the branches below,
#: which decide exactly as before; the union's error message only uses the last branch's reason.
_VALID_CANONICAL_TS = (
    r"^(19|2[0-2])[0-9][0-9]-"
    r"((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{6}Z$"
)
Timestamp = Annotated[
    Annotated[str, Field(pattern=_VALID_CANONICAL_TS), AfterValidator(_in_window)]
    | Annotated[str, Field(pattern=_CANONICAL_TS), AfterValidator(_canonical_timestamp)]
    | Annotated[str, AfterValidator(_timestamp)]
    | None,
    Field(union_mode="left_to_right"),
]
