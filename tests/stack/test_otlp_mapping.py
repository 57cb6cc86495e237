"""OTLP -> wire entry mapping: decoding both encodings and mapping every LogRecord field, without a server."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.conftest import IN_CI
from tests.stack.otlp_examples import SPEC_EXAMPLE

try:
    from oglogstream.stack.ingestion import schema
    from oglogstream.stack.ingestion.otlp import mapping as m
    from oglogstream.stack.ingestion.otlp import protowire as otlp_wire
    from oglogstream.stack.ingestion.otlp.protowire import count_log_records
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
except ImportError as exc:  # opentelemetry-proto and pydantic come with the `stack` extra
    if IN_CI:
        raise
    pytest.skip(f"stack extra not installed: {exc}", allow_module_level=True)

from oglogstream import _wire

NOW = dt.datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)
DIGEST = "ab" * 32
NOW_NS = int(NOW.timestamp()) * 10**9

def _value(v: Any) -> AnyValue:
    if isinstance(v, AnyValue):
        return v
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    if isinstance(v, list):
        return AnyValue(array_value=ArrayValue(values=[_value(x) for x in v]))
    if isinstance(v, dict):
        return AnyValue(kvlist_value=KeyValueList(values=_kvs(v)))
    return AnyValue(string_value=v)


def _kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_value(v)) for k, v in attrs.items()]


def _request(
    *records: LogRecord,
    resource: dict[str, Any] | None = None,
    scope: str = "",
    scope_version: str = "",
    scope_attrs: dict[str, Any] | None = None,
) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.extend(_kvs(resource if resource is not None else {"service.name": "svc"}))
    sl = rl.scope_logs.add()
    sl.scope.name = scope
    sl.scope.version = scope_version
    sl.scope.attributes.extend(_kvs(scope_attrs or {}))
    sl.log_records.extend(records)
    return request


def _record(body: Any = "hello", **fields: Any) -> LogRecord:
    attrs = fields.pop("attributes", {})
    record = LogRecord(**fields)
    if body is not None:
        record.body.CopyFrom(_value(body))
    record.attributes.extend(_kvs(attrs))
    return record


def _one(record: LogRecord, **kwargs: Any) -> dict[str, Any]:
    mapped = m.map_request(_request(record, **kwargs), digest=DIGEST, now=NOW)
    assert mapped.rejected == []
    [(index, entry)] = mapped.entries
    assert index == 0
    return entry


@pytest.mark.parametrize(
    ("number", "level"),
    [(n, "debug") for n in range(1, 9)]
    + [(n, "info") for n in range(9, 13)]
    + [(n, "warn") for n in range(13, 17)]
    + [(n, "error") for n in range(17, 21)]
    + [(n, "fatal") for n in range(21, 25)],
)
def test_severity_number_ranges(number: int, level: str) -> None:
    """Each OTel severity range maps onto our level, TRACE folding into debug; text is ignored when set."""
    assert m.level_for(number, "ERROR") == level


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("TRACE", "debug"),
        ("Debug", "debug"),
        ("Information", "info"),
        ("INFO2", "info"),
        ("WARNING", "warn"),
        ("warn3", "warn"),
        ("err", "error"),
        ("CRITICAL", "fatal"),
        ("FATAL", "fatal"),
        ("", "info"),
        ("chatty", "info"),
    ],
)
def test_severity_text_when_number_unspecified(text: str, level: str) -> None:
    """With severity number 0 (or out of range) the text decides, and unknown text means info."""
    assert m.level_for(0, text) == level
    assert m.level_for(99, text) == level


def test_resource_and_scope_mapping() -> None:
    """service.name -> service, host.name/process.pid -> host/pid, scope name -> logger, the rest prefixed."""
    entry = _one(
        _record(attributes={"user": "ann"}),
        resource={"service.name": "checkout", "host.name": "web-1", "process.pid": 42, "env": "prod"},
        scope="app.payments",
        scope_version="2.1",
        scope_attrs={"lib": "x"},
    )
    assert entry["service"] == "checkout"
    assert entry["host"] == "web-1"
    assert entry["pid"] == 42
    assert entry["logger"] == "app.payments"
    assert entry["attributes"] == {
        "user": "ann",
        "otel.scope.version": "2.1",
        "scope.lib": "x",
        "resource.env": "prod",
    }


def test_out_of_range_pid_stays_an_attribute() -> None:
    """A process.pid the wire contract cannot hold is kept as a resource attribute, not promoted."""
    entry = _one(_record(), resource={"service.name": "s", "process.pid": 2**40})
    assert "pid" not in entry
    assert entry["attributes"] == {"resource.process.pid": 2**40}


def test_missing_service_name_falls_back_to_unknown_service() -> None:
    """A resource without service.name (or an empty one) maps to the OTel spec's `unknown_service`."""
    assert _one(_record(), resource={})["service"] == m.UNKNOWN_SERVICE
    assert _one(_record(), resource={"service.name": ""})["service"] == m.UNKNOWN_SERVICE


def test_severity_kept_as_attributes() -> None:
    """The original severity text/number survive as attributes, so TRACE vs DEBUG is not lost."""
    entry = _one(_record(severity_number=2, severity_text="TRACE2"))
    assert entry["level"] == "debug"
    assert entry["attributes"] == {"otel.severity_text": "TRACE2", "otel.severity_number": 2}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("plain", "plain"),
        ({"user": "ann", "n": [1, 2.5, True]}, '{"user":"ann","n":[1,2.5,true]}'),
        (42, "42"),
        (False, "false"),
        (b"\x00\x01", "AAE="),
        (None, ""),
        (float("nan"), '"NaN"'),
    ],
)
def test_body_rendering(body: Any, message: str) -> None:
    """String bodies are the message, bytes are base64, others compact JSON; no body is empty."""
    assert _one(_record(body))["message"] == message


def test_event_name_is_the_message_of_a_bodyless_event() -> None:
    """An event record without a body uses its event name as the message (and keeps it as an attribute)."""
    entry = _one(_record(None, event_name="user.login"))
    assert entry["message"] == "user.login"
    assert entry["attributes"]["otel.event_name"] == "user.login"


def test_long_body_truncated_with_marker() -> None:
    """A body over the limit keeps its head and tail (as the SDK clips), the marker counting the bytes cut."""
    body = "a" + "é" * _wire.MAX_MESSAGE_BYTES + "z"  # 2 bytes each: twice the limit
    message = _one(_record(body))["message"]
    assert len(message.encode()) <= _wire.MAX_MESSAGE_BYTES
    assert message.startswith("aé") and message.endswith("éz")
    cut = int(re.search(r"truncated (\d+) bytes", message).group(1))  # type: ignore[union-attr]
    head, tail = re.split(r"…\[truncated \d+ bytes\]", message)
    assert len(head.encode()) + cut + len(tail.encode()) == len(body.encode())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=0, max_size=3 * _wire.MAX_MESSAGE_BYTES // 4).map(lambda s: s * 5))
def test_truncation_never_exceeds_limit(text: str) -> None:
    """Whatever the text, the message fits MAX_MESSAGE_BYTES and is the original's head and tail around the
    marker."""
    out = _wire.clip_bytes(text, _wire.MAX_MESSAGE_BYTES)
    assert len(out.encode()) <= _wire.MAX_MESSAGE_BYTES
    if out != text:
        head, _, tail = re.split(r"(…\[truncated \d+ bytes\])", out, maxsplit=1)
        assert text.startswith(head) and text.endswith(tail)


def test_stacktrace_and_thread_promoted() -> None:
    """exception.stacktrace -> exception (head and tail kept when long), thread.name -> thread."""
    trace = "Traceback (most recent call last):\n" + "  frame\n" * 10_000 + "ValueError: boom\n"
    entry = _one(_record(attributes={"exception.stacktrace": trace, "exception.type": "ValueError",
                                     "thread.name": "worker-1"}))
    assert entry["thread"] == "worker-1"
    assert entry["exception"].endswith("ValueError: boom\n")
    assert entry["exception"].startswith("Traceback (most recent call last):\n")
    assert "…[truncated " in entry["exception"]
    assert len(entry["exception"].encode()) <= _wire.MAX_EXCEPTION_BYTES
    assert entry["attributes"] == {"exception.type": "ValueError"}


def test_attribute_flattening_and_stringification() -> None:
    """Nested maps become dotted keys; arrays become JSON; bytes base64; long strings clipped with marker."""
    entry = _one(_record(attributes={
        "http": {"request": {"method": "GET"}, "status": 200},
        "tags": ["a", 1, None],
        "raw": b"\xff",
        "big": "x" * 5000,
        "inf": float("inf"),
        "ok": True,
        "ratio": 0.5,
    }))
    attrs = entry["attributes"]
    assert attrs["http.request.method"] == "GET"
    assert attrs["http.status"] == 200
    assert attrs["tags"] == '["a",1,null]'
    assert attrs["raw"] == "/w=="
    # wire.clip_chars sizes the marker for the worst cut, so the value may end a character or two short.
    assert _wire.MAX_ATTRIBUTE_VALUE_CHARS - 2 <= len(attrs["big"]) <= _wire.MAX_ATTRIBUTE_VALUE_CHARS
    assert attrs["big"].startswith("xxx") and attrs["big"].endswith("xxx") and "…[truncated" in attrs["big"]
    # Not JSON numbers: the string OTLP/JSON spells, without JSON quotes (so attr.inf=Infinity finds it).
    assert attrs["inf"] == "Infinity"
    assert attrs["ok"] is True and attrs["ratio"] == 0.5


def test_attribute_count_capped_and_drops_counted() -> None:
    """Over MAX_ATTRIBUTES, record attributes win over resource ones and the drop count is recorded."""
    own = {f"k{i}": i for i in range(100)}
    entry = _one(_record(attributes=own, dropped_attributes_count=3), resource={"service.name": "s", "r": 1})
    attrs = entry["attributes"]
    assert len(attrs) == _wire.MAX_ATTRIBUTES
    assert attrs["k0"] == 0 and "resource.r" not in attrs
    assert attrs[m.ATTRIBUTE_DROP_COUNT_KEY] == 100 - (_wire.MAX_ATTRIBUTES - 1) + 1 + 3


def test_trace_and_span_ids_hex() -> None:
    """Binary trace/span ids become lower-case hex; all-zero ids mean no trace."""
    entry = _one(_record(trace_id=bytes(range(16)), span_id=b"\xab" * 8))
    assert entry["trace_id"] == "000102030405060708090a0b0c0d0e0f"
    assert entry["span_id"] == "abababababababab"
    entry = _one(_record(trace_id=b"\x00" * 16, span_id=b"\x00" * 8))
    assert "trace_id" not in entry and "span_id" not in entry


def test_bad_id_length_rejects_only_that_record() -> None:
    """A trace id of the wrong length rejects its record with the field named; the others still map."""
    mapped = m.map_request(
        _request(_record("a"), _record("b", trace_id=b"\x01" * 5), _record("c")), digest=DIGEST, now=NOW
    )
    assert [i for i, _ in mapped.entries] == [0, 2]
    assert mapped.rejected == [(1, "traceId: expected 16 bytes, got 5")]


def test_timestamps() -> None:
    """timeUnixNano wins, then observedTimeUnixNano, else server time; a far-future time fails the schema."""
    t = 1_544_712_660_300_000_123
    expected = "2018-12-13T14:51:00.300000Z"
    assert _one(_record(time_unix_nano=t, observed_time_unix_nano=5))["timestamp"] == expected
    assert _one(_record(observed_time_unix_nano=t))["timestamp"] == "2018-12-13T14:51:00.300000Z"
    assert _one(_record())["timestamp"] == "2026-11-27T10:00:00.123456Z"
    far = _one(_record(time_unix_nano=2**64 - 1))
    assert far["timestamp"].startswith("2554-")
    with pytest.raises(ValidationError, match="timestamp"):
        schema.ENTRY.validate_python(far)


def test_ids_deterministic_across_resources_and_scopes() -> None:
    """Ids are `otlp-<digest>-<index>`, counted across every resource and scope, valid for the schema."""
    request = _request(_record("a"), _record("b"))
    extra = request.resource_logs.add()
    extra.scope_logs.add().log_records.append(_record("c"))
    digest = m.request_digest(request.SerializeToString())
    first = m.map_request(request, digest=digest, now=NOW)
    again = m.map_request(request, digest=digest, now=NOW)
    ids = [e["id"] for _, e in first.entries]
    assert ids == [e["id"] for _, e in again.entries]
    assert ids == [f"otlp-{digest[:48]}-{i}" for i in range(3)]
    assert all(re.match(schema.ID_PATTERN, i) for i in ids)
    assert len(f"otlp-{digest[:48]}-{9_999_999_999}") <= _wire.MAX_ID_CHARS
    assert first.entries[2][1]["service"] == m.UNKNOWN_SERVICE


def test_spec_json_example() -> None:
    """The OTLP spec's JSON example decodes (hex ids, numeric int64) and maps field by field."""
    request, errors = m.decode_json(SPEC_EXAMPLE.encode())
    assert errors == {}
    entry = _one(request.resource_logs[0].scope_logs[0].log_records[0],
                 resource={"service.name": "my.service"}, scope="my.library", scope_version="1.0.0",
                 scope_attrs={"my.scope.attribute": "some scope attribute"})
    assert entry["level"] == "info"
    assert entry["message"] == "Example log record"
    assert entry["service"] == "my.service"
    assert entry["logger"] == "my.library"
    assert entry["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert entry["span_id"] == "eee19b7ec3c1b174"
    assert entry["timestamp"] == "2018-12-13T14:51:00.300000Z"
    assert entry["attributes"] == {
        "string.attribute": "some string",
        "boolean.attribute": True,
        "int.attribute": 10,
        "double.attribute": 637.704,
        "array.attribute": '["many","values"]',
        "map.attribute.some.map.key": "some value",
        "otel.severity_text": "Information",
        "otel.scope.version": "1.0.0",
        "scope.my.scope.attribute": "some scope attribute",
    }


def test_json_accepts_snake_case_string_int64_and_unknown_fields() -> None:
    """Receivers must accept int64 as strings, original field names, and ignore unknown fields."""
    doc = {"resource_logs": [{"scope_logs": [{"log_records": [{
        "time_unix_nano": "1544712660300000000", "severityNumber": 17, "trace_id": "00" * 15 + "01",
        "body": {"stringValue": "x"}, "futureField": {"a": 1}}]}], "newThing": 1}]}
    request, errors = m.decode_json(json.dumps(doc).encode())
    assert errors == {}
    record = request.resource_logs[0].scope_logs[0].log_records[0]
    assert record.severity_number == 17
    assert record.trace_id == b"\x00" * 15 + b"\x01"


def test_json_bad_hex_rejects_only_that_record() -> None:
    """A non-hex or wrong-length id in OTLP/JSON rejects its record (by index), not the request."""
    doc = json.loads(SPEC_EXAMPLE)
    records = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    records.append(dict(records[0], traceId="not-hex"))
    records.append(dict(records[0], spanId="abcd"))
    request, errors = m.decode_json(json.dumps(doc).encode())
    assert errors == {1: "traceId: not a hex string: 'not-hex'", 2: "spanId: expected 16 hex digits, got 4"}
    mapped = m.map_request(request, digest=DIGEST, now=NOW, record_errors=errors)
    assert [i for i, _ in mapped.entries] == [0]
    assert [i for i, _ in mapped.rejected] == [1, 2]


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b"\xff\xfe", b'{"resourceLogs": 5}',
     b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [7]}]}]}',
     b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "soon"}]}]}]}'],
)
def test_json_undecodable(body: bytes) -> None:
    """Invalid JSON or a document that is not an ExportLogsServiceRequest is a PayloadError."""
    with pytest.raises(m.PayloadError, match="body"):
        m.decode_json(body)


def test_deeply_nested_json_is_a_payload_error() -> None:
    """Absurd nesting is refused as a bad payload, not a server crash."""
    deep = '{"kvlistValue": {"values": [{"key": "k", "value": ' * 200 + "{}" + "}]}}" * 200
    body = ('{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": ' + deep + "}]}]}]}").encode()
    with pytest.raises(m.PayloadError):
        m.decode_json(body)


@pytest.mark.parametrize("body", [b"\xff\xff\xff\xff", b"\x0a\x05\x01", b"garbage that is not protobuf"])
def test_protobuf_undecodable(body: bytes) -> None:
    """Bytes that are not an ExportLogsServiceRequest raise PayloadError."""
    with pytest.raises(m.PayloadError, match="protobuf"):
        m.decode_protobuf(body)


def test_protobuf_roundtrip() -> None:
    """A serialized request decodes back to the same records."""
    request = _request(_record("a", severity_number=9))
    assert m.decode_protobuf(request.SerializeToString()) == request


_scalars = st.one_of(
    st.text(max_size=3000), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.binary(max_size=40),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=20), inner, max_size=4)
    ),
    max_leaves=20,
)


#: Random keys plus the ones the mapping promotes to entry fields, so odd values there are exercised too.
_keys = st.one_of(
    st.text(max_size=200),
    st.sampled_from(["service.name", "host.name", "process.pid", "thread.name", "exception.stacktrace"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(st.none(), _values),
    attrs=st.dictionaries(_keys, _values, max_size=80),
    resource=st.dictionaries(_keys, _values, max_size=10),
    scope=st.text(max_size=300),
    version=st.text(max_size=3000),
    severity=st.integers(0, 30),
    text=st.text(max_size=3000),
    event=st.text(max_size=3000),
)
def test_every_mapped_entry_passes_the_wire_schema(
    body: Any, attrs: dict[str, Any], resource: dict[str, Any], scope: str, version: str, severity: int,
    text: str, event: str,
) -> None:
    """Whatever an OTLP sender puts in a record, the mapped entry fits the wire contract's validation."""
    record = _record(body, attributes=attrs, severity_number=severity, severity_text=text, event_name=event)
    request = _request(record, resource=resource, scope=scope, scope_version=version)
    mapped = m.map_request(request, digest=DIGEST, now=NOW)
    [(_, entry)] = mapped.entries
    schema.ENTRY.validate_python(entry)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30), max_size=4), max_size=4), st.integers(0, 40))
def test_record_count_without_decoding_matches_the_decoder(shape: list[list[int]], limit: int) -> None:
    """count_log_records sees exactly the records protobuf decodes, and stops just past the limit."""
    request = ExportLogsServiceRequest()
    for scopes in shape:
        resource = request.resource_logs.add()
        resource.resource.attributes.add(key="service.name").value.string_value = "s"
        for records in scopes:
            scope = resource.scope_logs.add()
            scope.scope.name = "lib"
            for i in range(records):
                scope.log_records.add(severity_number=9, time_unix_nano=i).body.string_value = "m" * i
    total = sum(map(sum, shape))
    assert count_log_records(request.SerializeToString(), limit) == min(total, limit + 1)
    assert count_log_records(b"\xff\xff", limit) == 0


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(st.lists(st.integers(0, 7), min_size=0, max_size=3), max_size=3),
    st.integers(1, 4),
    st.booleans(),
)
def test_sliced_decoding_maps_exactly_as_whole_decoding(
    shape: list[list[int]], per_slice: int, unknown: bool
) -> None:
    """Decoding a request a few records at a time yields the same mapped entries, indexes and rejections
    as decoding it whole (resources, scopes and unknown fields carried into every slice)."""
    request = ExportLogsServiceRequest()
    for r, scopes in enumerate(shape):
        resource = request.resource_logs.add(schema_url=f"r{r}")
        resource.resource.attributes.add(key="service.name").value.string_value = f"svc{r}"
        resource.resource.dropped_attributes_count = r
        for s, records in enumerate(scopes):
            scope = resource.scope_logs.add(schema_url=f"s{s}")
            scope.scope.name = f"lib{s}"
            scope.scope.attributes.add(key="a").value.int_value = s
            for i in range(records):
                record = scope.log_records.add(severity_number=1 + i % 24, time_unix_nano=NOW_NS + i)
                record.body.string_value = f"m{r}.{s}.{i}"
                record.attributes.add(key="i").value.int_value = i
                if i % 3 == 2:
                    record.trace_id = b"short"  # rejected by the mapping: indexes must agree
    body = request.SerializeToString()
    if unknown:  # an unknown top-level varint field (99), which receivers ignore
        body += b"\x98\x06\x01"
    whole = m.decode_protobuf(body)
    sliced = otlp_wire.decode_sliced(body, records_per_slice=per_slice)
    assert sliced is not None

    def mapped(req: Any) -> Any:
        out = m.map_request(req, digest=DIGEST, now=NOW, record_errors={})
        return out.entries, out.rejected

    assert mapped(sliced) == mapped(whole)
    assert otlp_wire.decode_sliced(b"\x0a\xff") is None
