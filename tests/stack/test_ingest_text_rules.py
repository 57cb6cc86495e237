"""Entry text that looks valid to a Unicode-aware pattern but is not what storage reads: digits are ASCII, and
non-finite numbers get one spelling on every path."""

from __future__ import annotations

import pytest

from tests.conftest import IN_CI

try:
    from oglogstream.stack.ingestion import batch_decode
except ImportError as exc:  # the `stack` extra
    if IN_CI:
        raise
    pytest.skip(f"stack extra not installed: {exc}", allow_module_level=True)

from oglogstream import wire

RECEIVED = "2026-11-29T10:00:00.000000Z"


def _decode(line: str, *, ndjson: bool) -> batch_decode.Decoded:
    body = (line if ndjson else f"[{line}]").encode()
    return batch_decode.decode(body, ndjson=ndjson, batch_id="b", received_at=RECEIVED)


@pytest.mark.parametrize("ndjson", [True, False], ids=["ndjson", "array"])
@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-11-27T10:00:00.00000\u0663Z",
        "\u0662026-11-27T10:00:00.000000Z",
        "2026-11-27T1\uff10:00:00.000000Z",
    ],
    ids=["arabic-indic", "leading", "fullwidth"],
)
def test_a_timestamp_with_non_ascii_digits_is_refused_naming_the_field(timestamp: str, ndjson: bool) -> None:
    """The reviewer's `...00000٣Z` was accepted and stored as is (pydantic's `\\d` is any Unicode digit)."""
    decoded = _decode(
        f'{{"level":"info","message":"m","service":"s","timestamp":"{timestamp}"}}', ndjson=ndjson
    )
    assert decoded.rows == []
    assert [r["error"].partition(":")[0] for r in decoded.rejected] == ["timestamp"]


@pytest.mark.parametrize("ndjson", [True, False], ids=["ndjson", "array"])
@pytest.mark.parametrize(
    ("token", "stored"),
    [
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("-Infinity", "-Infinity"),
        ("1e400", "Infinity"),
        ("-1e400", "-Infinity"),
    ],
)
def test_non_finite_attribute_values_are_stored_as_the_wire_spells_them(
    token: str, stored: str, ndjson: bool
) -> None:
    """POST /log(s) stored Infinity as "inf", OTLP "Infinity", the SDK sent "inf": now one spelling."""
    decoded = _decode(
        f'{{"level":"info","message":"m","service":"s","attributes":{{"k":{token}}}}}', ndjson=ndjson
    )
    assert decoded.rejected == []
    assert decoded.rows[0]["attributes"] == {"k": stored}
    assert stored == wire.non_finite_text(float(token))
