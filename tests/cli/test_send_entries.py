"""`oglog send`'s JSON lines follow the entry format POST /log enforces (oglogstream.wire): attribute values
are strings, numbers or booleans (`wire.is_attribute_value`); anything else is refused naming the attribute,
never sent as text."""

from __future__ import annotations

import argparse
import math

import pytest
from oglogstream.cli.send import build_record

DEFAULTS = argparse.Namespace(level="info", logger="oglog.send", service="svc", attributes={})


@pytest.mark.parametrize("value", [["a", "b"], {"a": 1}, None])
def test_a_value_post_log_refuses_is_refused_naming_the_attribute(value: object) -> None:
    """The reviewer's `{"tags": ["a","b"]}` was stored as the string "['a', 'b']" with exit 0."""
    with pytest.raises(ValueError, match=r"attributes\.tags: must be a string, a number or a boolean"):
        build_record({"message": "m", "attributes": {"tags": value}}, DEFAULTS)


def test_scalar_values_keep_their_type() -> None:
    """Strings, ints, floats and booleans go on the record as they are (the SDK ships them typed)."""
    service, record = build_record(
        {"message": "m", "attributes": {"s": "x", "n": 5, "f": 0.5, "b": True, "nan": math.nan}}, DEFAULTS
    )
    assert service == "svc"
    assert (record.s, record.n, record.f, record.b) == ("x", 5, 0.5, True)  # type: ignore[attr-defined]
    assert math.isnan(record.nan)  # type: ignore[attr-defined]  # POST /log stores it as "NaN", so does the SDK


@pytest.mark.parametrize(("text", "number"), [("WARNING", 30), ("crit", 50), ("notice", 20), (" Error ", 40)])
def test_levels_are_read_as_post_log_reads_them(text: str, number: int) -> None:
    """A level name or alias POST /log takes (wire.level_name: any case, syslog and Python names) is taken."""
    _, record = build_record({"message": "m", "level": text}, DEFAULTS)
    assert record.levelno == number


@pytest.mark.parametrize("text", ["bogus", 5, None])
def test_an_unknown_level_is_refused_naming_the_field(text: object) -> None:
    """Anything else: ValueError naming `level` and the stored levels."""
    with pytest.raises(ValueError, match=r"^level: must be one of debug, info, warn, error, fatal"):
        build_record({"message": "m", "level": text}, DEFAULTS)
