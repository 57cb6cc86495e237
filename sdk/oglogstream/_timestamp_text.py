"""An event's own timestamp text -> Unix seconds, by the rule the stack's door applies to `timestamp`; a
number (a record's `created`, an event's `timestamp`) -> Unix seconds (`number_seconds`).

RFC 3339 (section 5.6): `T` or a space, seconds required, any fraction rounded to the nearest microsecond
(a 7th digit >= 5 rounds up), `Z` or a time-numoffset `±HH:MM` with HH <= 23 and MM <= 59. Text without an
offset is UTC at the stack's door; an event's own text read by the handler is local time (structlog's
`TimeStamper(utc=False)` writes it so), which is why the zone of such text is the caller's `naive` (`oglog
send` passes UTC: the entry goes to the stack as typed). The SDK does not import the stack;
tests/sdk/test_timestamp_rule.py holds both to the same values.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

__all__ = ["number_seconds", "parse_timestamp_text"]

#: What a timestamp may be as a number: an int (not a bool), float, Decimal or Fraction, subclasses too.
_NUMBERS = (int, float, Decimal, Fraction)

_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?([Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)?",
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def parse_timestamp_text(text: str, *, naive: timezone | None = None) -> float | None:
    """`text` (RFC 3339 as above, surrounding whitespace ignored) as Unix seconds (a float holding the
    rounded microsecond), or None when it is not RFC 3339 or names no real time (Feb 30, offset 24:00,
    year 0). Text without an offset is in the zone `naive`; None (the default) is the platform's local
    time."""
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micros = 0
    if fraction:
        micros = int(fraction[:6].ljust(6, "0")) + (len(fraction) > 6 and fraction[6] >= "5")
    tz = naive
    if offset:
        if offset in "Zz":
            tz = timezone.utc
        else:
            sign = 1 if offset[0] == "+" else -1
            tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
        moment += timedelta(microseconds=micros)
        if tz is None:  # local time: the platform's whole second, then the exact microsecond
            whole = int(moment.replace(microsecond=0).timestamp())
            return (whole * 1_000_000 + moment.microsecond) / 1_000_000
        return ((moment - _EPOCH) // _MICROSECOND) / 1_000_000
    except (ValueError, OverflowError, OSError):
        return None


def number_seconds(value: object) -> float | None:
    """`value` as float Unix seconds when it is a number (`_NUMBERS`; a bool is not), else None. No range
    check: an int too large for a float (`10**400`) is +-inf and a signalling Decimal NaN is NaN, so the
    caller's range check refuses them (the restamp rule) instead of the conversion raising."""
    if not isinstance(value, _NUMBERS) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
    except (ValueError, ArithmeticError):  # Decimal('sNaN')
        return math.nan
