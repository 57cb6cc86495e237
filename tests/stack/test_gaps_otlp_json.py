"""OTLP/JSON costs bounded work per parser call: hostile bodies (nested containers a comma count misses,
deep nesting, one huge record) get a clear 4xx without freezing the other clients, and valid exports still
map exactly as before."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oglogstream.stack.ingestion.otlp import jsondoc, protowire
from oglogstream.stack.ingestion.otlp import mapping as otlp_mapping

from .helpers import all_roles, slowest_health, wait_for

JSON_GZIP = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
#: 32 MiB of `[[[...]]]` runs, 500 levels each, one comma between runs: some 16 million lists behind 32,000
#: commas. The comma count let it through to `json.loads`, which held the GIL for seconds building them.
NESTED_RUNS = b'{"resourceLogs":[],"x":[' + b",".join([b"[" * 500 + b"]" * 500] * 32_000) + b"]}"


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with all_roles(nats_server.url, chdb_dsn) as (url, session):
        yield url, session


def export(records: list[dict[str, Any]], service: str) -> dict[str, Any]:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    return {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": records}]}]}


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    async with session.post(f"{url}/v1/logs", data=gzip.compress(body, 1), headers=JSON_GZIP) as resp:
        return resp.status, json.loads(await resp.read())


async def test_nested_containers_are_refused_on_the_bytes_without_stalling(stack: Any) -> None:
    """16 million nested lists in 32 MiB: 413 naming the value bound; /health keeps answering meanwhile."""
    url, session = stack
    stop = asyncio.Event()
    probe = asyncio.create_task(slowest_health(session, url, stop))
    status, body = await post(session, url, NESTED_RUNS)
    stop.set()
    assert status == 413, body
    assert f"JSON values in one request must be at most {jsondoc.MAX_JSON_VALUES}" in body["message"]
    assert await probe < 1.0


async def test_nesting_deeper_than_the_limit_is_a_400_naming_the_depth(stack: Any) -> None:
    """A record body nested past MAX_JSON_DEPTH levels: a 400 Status naming the limit, not a 5xx."""
    url, session = stack
    deep = '{"arrayValue":{"values":[' * 80 + "{}" + "]}}" * 80  # 240 levels
    status, body = await post(session, url, json.dumps(export([{"body": json.loads(deep)}], "deep")).encode())
    assert status == 400, body
    assert body["code"] == 3
    assert f"nested deeper than {jsondoc.MAX_JSON_DEPTH} levels" in body["message"]


async def test_a_record_past_the_piece_bound_is_rejected_alone(stack: Any) -> None:
    """One record holding more than MAX_PIECE_VALUES values is rejected by index; its neighbours are
    stored."""
    url, session = stack
    service = "gaps-piece"
    huge = {"body": {"arrayValue": {"values": [{"intValue": "1"}] * jsondoc.MAX_PIECE_VALUES}}}
    records = [{"body": {"stringValue": "before"}}, huge, {"body": {"stringValue": "after"}}]
    status, body = await post(session, url, json.dumps(export(records, service)).encode())
    assert status == 200, body
    assert body["partialSuccess"]["rejectedLogRecords"] == "1"
    assert f"record 1: record: more than {jsondoc.MAX_PIECE_VALUES} JSON values" in (
        body["partialSuccess"]["errorMessage"]
    )

    async def stored() -> list[str]:
        async with session.get(f"{url}/api/logs", params={"service": service}) as resp:
            entries = await resp.json()
        return sorted(e["message"] for e in entries) if len(entries) == 2 else []

    assert await wait_for(stored) == ["after", "before"]


async def test_a_valid_export_of_many_slices_maps_every_record_in_order(stack: Any) -> None:
    """5,000 records over many parse slices: all stored, ids by index, hex ids decoded."""
    url, session = stack
    service = "gaps-slices"
    records = [
        {"body": {"stringValue": f"m{i}"}, "traceId": f"{i + 1:032x}", "attributes": [
            {"key": "i", "value": {"intValue": str(i)}}, {"key": "pad", "value": {"stringValue": "p" * 40}}]}
        for i in range(5_000)
    ]
    body = json.dumps(export(records, service)).encode()
    assert len(body) > 10 * jsondoc.SLICE_BYTES
    status, answer = await post(session, url, body)
    assert status == 200 and answer == {}, answer

    async def stored() -> bool:
        async with session.get(f"{url}/api/stats", params={"service": service}) as resp:
            return int((await resp.json())["total_logs"]) == 5_000

    await wait_for(stored)
    async with session.get(f"{url}/api/logs", params={"service": service, "attr.i": "4321"}) as resp:
        (entry,) = await resp.json()
    assert entry["message"] == "m4321" and entry["trace_id"] == f"{4322:032x}"


def _values(value: Any) -> int:
    if isinstance(value, list):
        return 1 + sum(map(_values, value))
    if isinstance(value, dict):
        return 1 + len(value) + sum(map(_values, value.values()))
    return 1


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.sampled_from('ab,[{"\\}] ')),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_value_count_bounds_every_value_of_any_document(document: Any) -> None:
    """Every comma, `[` and `{` outside strings is counted, whatever the strings hold: values plus keys are
    at most 1 + 2 x json_values."""
    assert _values(document) <= 1 + 2 * jsondoc.json_values(json.dumps(document).encode())


def test_resource_past_the_piece_bound_is_oversized() -> None:
    """A resource holding more than MAX_PIECE_VALUES values is refused (413) without being parsed."""
    values = [{"intValue": "1"}] * jsondoc.MAX_PIECE_VALUES
    resource = {"attributes": [{"key": "k", "value": {"arrayValue": {"values": values}}}]}
    body = json.dumps({"resourceLogs": [{"resource": resource, "scopeLogs": []}]}).encode()
    with pytest.raises(protowire.Oversized, match="JSON values in one resource"):
        otlp_mapping.decode_json(body)


@pytest.mark.parametrize(
    "body",
    [b'{"resourceLogs":[null]}', b'{"resourceLogs":[{"scopeLogs":[null]}]}',
     b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{},null]}]}]}',
     b'{"resource_logs":[{"scope_logs":[7]}]}'],
)
def test_null_or_wrong_elements_of_repeated_fields_are_payload_errors(body: bytes) -> None:
    """As json_format rules: a null or non-object element of resourceLogs/scopeLogs/logRecords is a 400."""
    with pytest.raises(otlp_mapping.PayloadError, match="body"):
        otlp_mapping.decode_json(body)


def _kept(obj: dict[str, Any], camel: str, snake: str) -> list[Any]:
    """The list json_format keeps for a repeated field given as `camel` and/or `snake`: the later key's."""
    keys = [key for key in obj if key in (camel, snake)]
    return (obj[keys[-1]] or []) if keys else []


def _reference_decode(body: bytes) -> tuple[Any, dict[int, str]]:
    """The previous decoder's semantics in one go: the whole document parsed at once, hex ids rewritten per
    record (numbered over the records json_format keeps; the ids of records it drops rewritten too), then
    json_format over the whole request."""
    from google.protobuf import json_format
    from oglogstream.stack.ingestion.otlp import decode
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    document = json.loads(body)
    errors: dict[int, str] = {}
    done: set[int] = set()
    index = 0
    for resource_logs in _kept(document, "resourceLogs", "resource_logs"):
        for scope_logs in _kept(resource_logs, "scopeLogs", "scope_logs"):
            for record in _kept(scope_logs, "logRecords", "log_records"):
                problem = decode._rewrite_hex_ids(record)
                done.add(id(record))
                if problem:
                    errors[index] = problem
                index += 1
    for resource_logs in (r for key in ("resourceLogs", "resource_logs") for r in document.get(key) or []):
        for scope_logs in (s for key in ("scopeLogs", "scope_logs") for s in resource_logs.get(key) or []):
            for record in (r for key in ("logRecords", "log_records") for r in scope_logs.get(key) or []):
                if id(record) not in done:
                    decode._rewrite_hex_ids(record)
    request = ExportLogsServiceRequest()
    json_format.ParseDict(document, request, ignore_unknown_fields=True)
    return request, errors


_VALUE = st.one_of(
    st.builds(lambda s: {"stringValue": s}, st.text(max_size=30)),
    st.builds(lambda i: {"intValue": str(i)}, st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda b: {"boolValue": b}, st.booleans()),
    st.builds(lambda f: {"doubleValue": f}, st.floats(allow_nan=False, allow_infinity=False)),
)
_ATTRS = st.lists(st.builds(lambda k, v: {"key": k, "value": v}, st.text(max_size=8), _VALUE), max_size=4)
_RECORD = st.fixed_dictionaries(
    {},
    optional={
        "timeUnixNano": st.integers(0, 2**63 - 1).map(str),
        "severityNumber": st.integers(0, 24),
        "severityText": st.text(max_size=10),
        "body": _VALUE,
        "attributes": _ATTRS,
        "traceId": st.one_of(st.binary(min_size=16, max_size=16).map(bytes.hex), st.text(max_size=6)),
        "spanId": st.binary(min_size=8, max_size=8).map(bytes.hex),
        "unknownField": st.integers(),
    },
)
def _spelled(camel: str, snake: str, items: Any) -> Any:
    """`{camel: items}`, `{snake: items}`, or both keys in either order (one of them holding other items)."""
    return st.sampled_from(["camel", "snake", "both", "both-reversed"]).flatmap(
        lambda how: st.builds(
            lambda kept, other: (
                {camel: kept} if how == "camel" else {snake: kept} if how == "snake"
                else {camel: other, snake: kept} if how == "both" else {snake: other, camel: kept}),
            items, items))


_SCOPE = st.builds(lambda name, records: {"scope": {"name": name}, **records},
                   st.text(max_size=8), _spelled("logRecords", "log_records", st.lists(_RECORD, max_size=12)))
_RESOURCE = st.builds(lambda attrs, scopes: {"resource": {"attributes": attrs}, **scopes},
                      _ATTRS, _spelled("scopeLogs", "scope_logs", st.lists(_SCOPE, max_size=3)))
_DOCUMENT = _spelled("resourceLogs", "resource_logs", st.lists(_RESOURCE, max_size=3))


@settings(max_examples=150, deadline=None)
@given(_DOCUMENT)
def test_pieces_decode_exactly_as_the_whole_document(document: dict[str, Any]) -> None:
    """Parsed in slices (the default size, and 300 bytes so that most bodies cross several), the request and
    the per-record errors equal the whole-document decode's, whichever spellings of the repeated fields
    the body uses (both: the later key wins)."""
    body = json.dumps(document).encode()
    expected = _reference_decode(body)
    assert otlp_mapping.decode_json(body) == expected
    with mock.patch.object(jsondoc, "SLICE_BYTES", 300):
        assert otlp_mapping.decode_json(body) == expected
