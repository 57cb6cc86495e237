"""The work a request may cause is bounded before it starts, on NDJSON and OTLP alike (issue 11 review F4,
F5): hostile shapes are refused with 413 naming the bound, using little memory, and the accepted shapes
still map exactly as before."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from oglogstream import _wire
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http.app import create_app
from oglogstream.stack.http.boundary import Problem
from oglogstream.stack.ingestion import batch_decode
from oglogstream.stack.ingestion.otlp import mapping as otlp_mapping
from oglogstream.stack.ingestion.otlp import protowire as otlp_wire
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from .helpers import running_app

MIB = 1024 * 1024
EMPTY_RECORDS = b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[' + b"{}," * 1_000_000 + b"{}]}]}]}"
EMPTY_SCOPES = b'{"resourceLogs":[{"scopeLogs":[' + b"{}," * 1_000_000 + b"{}]}]}"
JUNK = b'{"resourceLogs":[],"junk":[' + b"{}," * ((32 * MIB - 100) // 3 - 1) + b"{}]}"


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    config = StackConfig(roles=("ingest",), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn)
    async with running_app(config, app=create_app(config)) as url, aiohttp.ClientSession() as session:
        yield url, session


def peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak Python allocation while `fn` runs (it is expected to raise)."""
    tracemalloc.start()
    try:
        fn()
    except Exception:  # the refusal itself is asserted by the caller
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


async def post(session: aiohttp.ClientSession, url: str, path: str, body: bytes, content_type: str) -> Any:
    headers = {"Content-Type": content_type, "Content-Encoding": "gzip"}
    async with session.post(f"{url}{path}", data=gzip.compress(body, 1), headers=headers) as resp:
        return resp.status, await resp.read()


# --- NDJSON lines -------------------------------------------------------------------------------------------


async def test_32_mib_of_newlines_is_413(stack: Any) -> None:
    """Issue example F4: gzip(b'\\n' * 32 MiB) to /logs is refused with 413 naming the line bound."""
    url, session = stack
    status, body = await post(session, url, "/logs", b"\n" * (32 * MIB), "application/x-ndjson")
    assert status == 413, body
    assert "NDJSON lines" in json.loads(body)["reason"]


def test_lines_are_counted_before_any_list_is_built() -> None:
    """Refusing 32 MiB of blank lines allocates almost nothing (it used to build 32 million line objects)."""
    body = b"\n" * (32 * MIB)
    with pytest.raises(Problem) as refused:
        batch_decode.ndjson_lines(body)
    assert refused.value.status == 413
    assert peak_bytes(lambda: batch_decode.ndjson_lines(body)) < MIB


def test_blank_lines_between_a_full_batch_are_accepted() -> None:
    """MAX_BATCH_ENTRIES entries with a blank line (CRLF) between each still fit the line bound."""
    line = json.dumps({"level": "info", "message": "m", "service": "s"}).encode()
    body = b"\r\n\r\n".join([line] * _wire.MAX_BATCH_ENTRIES) + b"\r\n"
    assert len(batch_decode.ndjson_lines(body)) == _wire.MAX_BATCH_ENTRIES


# --- OTLP/JSON ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "bound"),
    [(JUNK, "JSON values"), (EMPTY_RECORDS, "log records"), (EMPTY_SCOPES, "scopeLogs")],
    ids=["junk-values", "1M-empty-records", "1M-empty-scopes"],
)
async def test_otlp_json_shapes_are_bounded_before_decoding(stack: Any, document: bytes, bound: str) -> None:
    """Issue examples F5b: `{"junk":[{},...]}` (32 MiB), 1M empty logRecords, 1M empty scopeLogs: 413 with
    the bound named in the google.rpc.Status, instead of 200 after seconds and hundreds of MB."""
    url, session = stack
    status, body = await post(session, url, "/v1/logs", document, "application/json")
    assert status == 413, body
    assert bound in json.loads(body)["message"]


def test_otlp_json_value_bound_is_checked_before_parsing() -> None:
    """The value count runs on the bytes: refusing 11 million `{}` allocates a few MiB, not hundreds."""
    with pytest.raises(otlp_wire.Oversized):
        otlp_mapping.decode_json(JUNK)
    assert peak_bytes(lambda: otlp_mapping.decode_json(JUNK)) < 80 * MIB


def test_otlp_json_resource_attributes_are_bounded() -> None:
    """A resource with more than MAX_SCOPE_ATTRIBUTES attributes is refused (413) before json_format."""
    count = otlp_wire.MAX_SCOPE_ATTRIBUTES + 1
    attributes = [{"key": f"k{i}", "value": {"intValue": i}} for i in range(count)]
    document = {"resourceLogs": [{"resource": {"attributes": attributes}, "scopeLogs": []}]}
    with pytest.raises(otlp_wire.Oversized, match="attributes on one resource"):
        otlp_mapping.decode_json(json.dumps(document).encode())


# --- binary OTLP -------------------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out) + bytes([value])


def request_with(resource_attributes: int, records: int, *, scope_attributes: int = 0) -> bytes:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    for i in range(resource_attributes):
        resource_logs.resource.attributes.add(key=f"r{i}").value.int_value = i
    scope_logs = resource_logs.scope_logs.add()
    for i in range(scope_attributes):
        scope_logs.scope.attributes.add(key=f"s{i}").value.int_value = i
    for i in range(records):
        scope_logs.log_records.add().body.string_value = f"m{i}"
    return request.SerializeToString()


@pytest.mark.parametrize(
    ("body", "bound"),
    [
        (request_with(otlp_wire.MAX_SCOPE_ATTRIBUTES + 1, 1), "attributes on one resource"),
        (request_with(0, 1, scope_attributes=otlp_wire.MAX_SCOPE_ATTRIBUTES + 1), "attributes on one scope"),
        (b"\x0a\x02\x12\x00" * 1_000_000, "resourceLogs"),
        (b"\x0a" + varint(1_000_000) + b"\x12\x00" * 500_000, "scopeLogs"),
        (b"\x12\x00" * 2_000_000, "protobuf fields"),
    ],
    ids=["resource-attributes", "scope-attributes", "1M-resources", "500k-empty-scopes", "unknown-fields"],
)
def test_binary_otlp_shapes_are_bounded_on_the_wire(body: bytes, bound: str) -> None:
    """Containers, attributes of a resource/scope and fields outside records are bounded while walking the
    wire, before protobuf decodes anything."""
    with pytest.raises(otlp_wire.Oversized, match=bound):
        otlp_wire.count_log_records(body, _wire.MAX_BATCH_ENTRIES)


def test_resource_attributes_are_mapped_once_per_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue example F5a: 1000 resource attributes x 10,000 records decode into ONE resource (not one per
    slice) whose attributes are mapped once; each entry keeps 63 attributes and counts the rest as dropped."""
    body = request_with(1000, _wire.MAX_BATCH_ENTRIES)
    request = otlp_wire.decode_sliced(body)
    assert request is not None and request == otlp_mapping.decode_protobuf(body)
    assert len(request.resource_logs) == 1
    calls = []
    original = otlp_mapping._Resource.from_attributes.__func__  # type: ignore[attr-defined]

    def counting(cls: Any, attributes: Any) -> Any:
        calls.append(len(attributes))
        return original(cls, attributes)

    monkeypatch.setattr(otlp_mapping._Resource, "from_attributes", classmethod(counting))
    mapped = otlp_mapping.map_request(request, digest="0" * 64, now=_now())
    assert calls == [1000]
    assert len(mapped.entries) == _wire.MAX_BATCH_ENTRIES
    for _, entry in mapped.entries[:: _wire.MAX_BATCH_ENTRIES // 7]:
        attributes = entry["attributes"]
        assert len(attributes) == _wire.MAX_ATTRIBUTES
        assert attributes[otlp_mapping.ATTRIBUTE_DROP_COUNT_KEY] == 1000 - (_wire.MAX_ATTRIBUTES - 1)


def test_record_attributes_still_come_first() -> None:
    """Fitting the shared attributes once keeps the priority: record, then scope, then resource; a key
    repeated lower down counts as dropped."""
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="a").value.string_value = "resource"
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.attributes.add(key="b").value.string_value = "scope"
    record = scope_logs.log_records.add()
    record.attributes.add(key="resource.a").value.string_value = "record"
    [(_, entry)] = otlp_mapping.map_request(request, digest="0" * 64, now=_now()).entries
    assert entry["attributes"] == {
        "resource.a": "record",
        "scope.b": "scope",
        otlp_mapping.ATTRIBUTE_DROP_COUNT_KEY: 1,
    }


async def test_a_large_resource_within_bounds_is_accepted(stack: Any) -> None:
    """1000 resource attributes on 10,000 records (within every bound) is a normal 200."""
    url, session = stack
    status, body = await post(
        session, url, "/v1/logs", request_with(1000, _wire.MAX_BATCH_ENTRIES), "application/x-protobuf"
    )
    assert status == 200, body
    assert not ExportLogsServiceResponse.FromString(body).HasField("partial_success")


def _now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc)
