"""The stack's entry schema, rows and public shape follow `oglogstream.wire.FIELDS`, limit for limit."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.sdk.test_wire_table import PROBE

try:
    from oglogstream.stack.ingestion import levels, row_codec, schema
    from oglogstream.stack.ingestion.otlp import mapping as otlp_mapping
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
    from pydantic import ValidationError
except ImportError as exc:  # pydantic and opentelemetry-proto come with the `stack` extra
    if IN_CI:
        raise
    pytest.skip(f"stack extra not installed: {exc}", allow_module_level=True)

from oglogstream import wire

RECEIVED = "2026-11-27T10:00:00.000000Z"
GOOD = {"level": "info", "message": "m", "service": "s"}


def _fields(entry: dict[str, Any]) -> list[str]:
    try:
        schema.ENTRY.validate_json(json.dumps(entry))
    except ValidationError as exc:
        return [d["field"] for d in schema.validation_details(exc)]
    return []


# -- the validation model --------------------------------------------------------------------------------
def test_entry_model_lists_the_table_in_order() -> None:
    """Entry's keys are the table's, in row order; exactly the table's required fields are required."""
    assert tuple(schema.Entry.__annotations__) == wire.FIELD_NAMES
    assert schema.Entry.__required_keys__ == frozenset(wire.REQUIRED)


@pytest.mark.parametrize(
    "field", [f for f in wire.FIELDS if f.unit in ("chars", "bytes") and f.name != "id"], ids=lambda f: f.name
)
def test_every_string_limit_is_enforced_at_the_table_value(field: wire.Field) -> None:
    """A value exactly at the field's limit (chars, or UTF-8 bytes with 2-byte characters) is accepted and
    one more is refused, naming the field."""
    char, per = ("é", 2) if field.unit == "bytes" else ("x", 1)
    assert _fields({**GOOD, field.name: char * (field.limit // per)}) == []
    assert _fields({**GOOD, field.name: char * (field.limit // per + 1)}) == [field.name]


def test_id_pid_and_attribute_count_limits_come_from_the_table() -> None:
    """id: MAX_ID_CHARS; pid: 0..MAX_PID; attributes: MAX_ATTRIBUTES keys."""
    assert _fields({**GOOD, "id": "a" * wire.MAX_ID_CHARS}) == []
    assert _fields({**GOOD, "id": "a" * (wire.MAX_ID_CHARS + 1)}) == ["id"]
    assert _fields({**GOOD, "pid": wire.MAX_PID}) == []
    assert _fields({**GOOD, "pid": wire.MAX_PID + 1}) == ["pid"]
    full = {f"k{i}": i for i in range(wire.MAX_ATTRIBUTES)}
    assert _fields({**GOOD, "attributes": full}) == []
    assert _fields({**GOOD, "attributes": {**full, "one": 1}}) == ["attributes"]


def test_level_spellings_come_from_the_wire_aliases() -> None:
    """The stack's level names are the wire's: every alias validates to its stored level."""
    assert levels.ALIASES is wire.LEVEL_ALIASES and levels.level_name is wire.level_name
    for alias, level in wire.LEVEL_ALIASES.items():
        assert schema.ENTRY.validate_python({**GOOD, "level": alias.upper()})["level"] == level


# -- rows and the public shape ---------------------------------------------------------------------------
FULL = {
    "attributes": {"s": "x", "i": -5, "f": 0.25, "b": True, "big": 2**64},
    "exception": "Traceback ...",
    "span_id": "b" * 16,
    "trace_id": "a" * 32,
    "thread": "MainThread",
    "pid": 42,
    "host": "h",
    "logger": "app",
    "service": "svc",
    "message": "hello",
    "level": "warn",
    "timestamp": "2026-11-27T09:59:59.000001Z",
    "id": "e-1",
}


def test_rows_have_the_column_order_and_typed_attributes() -> None:
    """Whatever order a client sends, a row's keys follow wire.COLUMNS, and attribute values keep their JSON
    type (an integer beyond 64 bits becomes its decimal text) through rows, payloads and the public shape."""
    body = json.dumps([FULL]).encode()
    [row] = schema.rows_from_json(body, batch_id="b", received_at=RECEIVED)
    # The typed maps of its number/bool values sit just before received_at (storage migration 2).
    columns = [c.column for c in wire.COLUMNS]
    assert list(row) == [*columns[:-1], schema.NUMBER_MAP, schema.BOOL_MAP, columns[-1]]
    entry = schema.ENTRY.validate_json(json.dumps(FULL))
    [same] = schema.make_rows([entry], batch_id="b", received_at=RECEIVED)
    assert same == row and list(same) == list(row)
    expected = {"s": "x", "i": -5, "f": 0.25, "b": True, "big": str(2**64)}
    assert row["attributes"] == expected
    payload = row_codec.dump_rows([row])
    assert payload == row_codec.dumps([row])
    [public] = [json.loads(line) for line in row_codec.live_payload(payload).splitlines()]
    assert public["attributes"] == expected and type(public["attributes"]["b"]) is bool
    assert list(public) == list(wire.FIELD_NAMES)
    assert row_codec.public_entry(row) == public


def test_public_entry_has_the_always_fields_and_only_non_empty_others() -> None:
    """A minimal row shows wire.PUBLIC_ALWAYS; each optional field appears only when non-empty."""
    [row] = schema.make_rows([schema.ENTRY.validate_python(GOOD)], batch_id="b", received_at=RECEIVED)
    assert tuple(row_codec.public_entry(row)) == wire.PUBLIC_ALWAYS
    empty = {**row, "logger": "", "pid": 0, "attributes": {}}
    assert tuple(row_codec.public_entry(empty)) == wire.PUBLIC_ALWAYS


# -- OTLP clips with the one helper --------------------------------------------------------------------------
def _otlp_entry(record: LogRecord) -> dict[str, Any]:
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.append(record)
    mapped = otlp_mapping.map_request(request, digest="0" * 64, now=dt.datetime.now(dt.timezone.utc))
    [(_, entry)] = mapped.entries
    return entry


def test_otlp_clips_like_the_sdk() -> None:
    """Long bodies, stack traces and attribute values are clipped by wire.clip_bytes/clip_chars (head,
    marker, tail) - the same text the SDK would send."""
    body = "B" * 100 + "é" * wire.MAX_MESSAGE_BYTES + "END"
    trace = "Traceback (most recent call last):\n" + "  frame\n" * 10_000 + "ValueError: boom"
    value = "v" * 5000 + "tail"
    record = LogRecord(body=AnyValue(string_value=body))
    record.attributes.append(KeyValue(key="exception.stacktrace", value=AnyValue(string_value=trace)))
    record.attributes.append(KeyValue(key="long", value=AnyValue(string_value=value)))
    entry = _otlp_entry(record)
    assert entry["message"] == wire.clip_bytes(body, wire.MAX_MESSAGE_BYTES)
    assert entry["message"].startswith("B" * 100) and entry["message"].endswith("END")
    assert entry["exception"] == wire.clip_bytes(trace, wire.MAX_EXCEPTION_BYTES)
    assert entry["attributes"]["long"] == wire.clip_chars(value, wire.MAX_ATTRIBUTE_VALUE_CHARS)


# -- the stack loads the contract, not the SDK ------------------------------------------------------------
def test_stack_schema_import_starts_nothing_of_the_sdk() -> None:
    """A server process importing the schema, the OTLP mapping and the batch decoder loads no SDK runtime
    (httpx, tenacity, the modules that register atexit/fork hooks) and registers no SDK hook."""
    imports = (
        "from oglogstream.stack.ingestion import batch_decode, schema; "
        "from oglogstream.stack.ingestion.otlp import mapping"
    )
    code = textwrap.dedent(PROBE).replace("IMPORTS", imports)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["loaded"] == []
    assert [module for module in result["hooks"] if module.startswith("oglogstream")] == []


@pytest.mark.parametrize(
    "value",
    ["", "x" * wire.MAX_ATTRIBUTE_VALUE_CHARS, True, False, 0, -(2**63), 2**63 - 1, 2**80, 99.5, -0.0, 1e308,
     None, [], [1], {}, {"a": 1}, float("nan"), float("inf"), float("-inf")],
    ids=repr,
)
def test_wire_attribute_value_rule_is_the_stacks(value: Any) -> None:
    """`wire.is_attribute_value` (what `oglog send` checks) accepts exactly the values POST /log accepts."""
    body = json.dumps({**GOOD, "attributes": {"k": value}})  # NaN, Infinity: JSON extensions, as sent
    try:
        schema.ENTRY.validate_json(body)
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted is wire.is_attribute_value(value)
