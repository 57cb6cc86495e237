"""A timestamp that is a number of another type is a time like a float (review r9 findings 3, 4): a record's
`created` of 1700000000 (an int) or a Decimal is sent as that time, not restamped with a message calling it
out of range; a structlog `timestamp` of 10**400 (an int no float holds) is restamped and announced, not
lost as `internal_error`."""

from __future__ import annotations

import json
import logging
import time
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from oglogstream import _diag
from oglogstream._capture import StructEvent, capture
from oglogstream._entry import EntryEncoder
from oglogstream._entry_struct import MAX_CREATED
from oglogstream.stack.ingestion.timestamps import parse_timestamp


def _record_line(created: object) -> dict[str, Any]:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "m", None, None)
    record.created = created  # type: ignore[assignment]
    result: dict[str, Any] = json.loads(EntryEncoder("svc").encode_captured(capture(record, None)))
    return result


def _struct_line(timestamp: object) -> dict[str, Any]:
    item = StructEvent({"event": "e", "timestamp": timestamp}, "info", 1.0e9, "t", None)
    result: dict[str, Any] = json.loads(EntryEncoder("svc").encode_struct(item, None))
    return result


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        (1700000000, "2023-11-14T22:13:20.000000Z"),
        (Decimal("1700000000.5"), "2023-11-14T22:13:20.500000Z"),
        (Fraction(3400000001, 2), "2023-11-14T22:13:20.500000Z"),
        (10413791999, "2299-12-31T23:59:59.000000Z"),
    ],
)
def test_an_int_or_decimal_created_in_range_is_sent_as_that_time_silently(
    created: object, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand-made record's `created` as an int / Decimal / Fraction is the time it names, unannounced."""
    _diag._last.pop("restamped", None)
    assert _record_line(created)["timestamp"] == expected
    assert _struct_line(created)["timestamp"] == expected
    assert "restamped" not in capsys.readouterr().err and "outside" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "value",
    [10**400, -(10**400), 10**5000, Decimal("sNaN"), Decimal("1e400"), 10413792000, -1, True, "1700000000"],
    ids=["1e400", "-1e400", "1e5000", "sNaN", "Decimal-1e400", "2300", "-1", "True", "text"],
)
def test_a_number_no_float_holds_or_out_of_range_is_restamped_and_announced(
    value: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """10**400 as a structlog `timestamp` raised OverflowError (the event lost as internal_error); now it,
    and any number outside the stack's range, is sent with the encoding time and stderr names the value.
    A bool or text `created` is no number: restamped too."""
    for encode, what in ((_record_line, "a record's created="), (_struct_line, "an event's timestamp=")):
        if what.startswith("an event") and isinstance(value, (bool, str)):
            continue  # an event's timestamp that is no time is kept as an attribute (test_timestamp_rule)
        _diag._last.pop("restamped", None)
        before = time.time()
        line = encode(value)
        assert parse_timestamp(line["timestamp"]).timestamp() >= before - 1e-6
        err = capsys.readouterr().err
        assert what in err and "time of encoding" in err, (what, err)


def test_the_struct_path_and_the_record_path_share_the_range() -> None:
    """MAX_CREATED as an int-free float is in range on both paths; one microsecond later is not."""
    assert _struct_line(MAX_CREATED)["timestamp"].startswith("2299-12-31T23:59:59.99999")
    assert _record_line(Decimal(MAX_CREATED))["timestamp"].startswith("2299-12-31T23:59:59.99999")
