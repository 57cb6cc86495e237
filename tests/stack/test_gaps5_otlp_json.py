"""OTLP/JSON findings of the fifth review: whatever json_format raises on a piece is a 400, never a 500; very
long strings cost bounded GIL holds yet are stored as before; invalid UTF-8 anywhere is a 400; camelCase and
snake_case keys and `schemaUrl` types decode as protobuf's ParseDict of the whole document."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import aiohttp
import pytest
from oglogstream import wire
from oglogstream.stack.ingestion.otlp import decode
from oglogstream.stack.ingestion.otlp import mapping as otlp_mapping
from oglogstream.wire import clip_bytes, clip_chars

from .helpers import all_roles, slowest_health, wait_for
from .test_gaps_otlp_json import _reference_decode, export, post

LONG = "a" * (decode.LONG_STRING_CHARS + 1)


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with all_roles(nats_server.url, chdb_dsn) as (url, session):
        yield url, session


def _record(**fields: Any) -> bytes:
    return json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [fields]}]}]}).encode()


@pytest.mark.parametrize(
    "body",
    [
        b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":1e999,"body":{"stringValue":"a"}}]}]}]}',
        b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":-1e999}]}]}]}',
        b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":1e999}]}]}]}',
        b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"flags":-1e999}]}]}]}',
        b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"intValue":1e999}}]}]}]}',
        b'{"resourceLogs":[{"resource":{"droppedAttributesCount":1e999},"scopeLogs":[]}]}',
        b'{"resourceLogs":[{"scopeLogs":[{"scope":{"droppedAttributesCount":-1e999}}]}]}',
    ],
    ids=["severity-inf", "severity-minus-inf", "time-inf", "flags-minus-inf", "int-value-inf", "resource",
         "scope"],
)
def test_non_finite_numbers_where_protobuf_wants_integers_are_payload_errors(body: bytes) -> None:
    """1e999 reads as infinity: json_format's OverflowError is a PayloadError (400), not a 500."""
    with pytest.raises(otlp_mapping.PayloadError, match="not a valid OTLP/JSON"):
        otlp_mapping.decode_json(body)


async def test_an_infinite_severity_is_a_400_status(stack: Any) -> None:
    """Over HTTP: a 400 google.rpc.Status (code 3), and the server keeps answering."""
    url, session = stack
    status, body = await post(session, url, b'{"resourceLogs":[{"scopeLogs":[{"logRecords":'
                                            b'[{"severityNumber":1e999,"body":{"stringValue":"a"}}]}]}]}')
    assert status == 400 and body["code"] == 3, body
    async with session.get(f"{url}/health") as resp:
        assert resp.status == 200


def _long_strings_document() -> dict[str, Any]:
    nested = {"kvlistValue": {"values": [{"key": "k", "value": {"stringValue": LONG + "n"}}]}}
    record = {
        "body": {"stringValue": LONG + "b"}, "severityText": LONG + "s", "eventName": LONG + "e",
        "attributes": [{"key": "a", "value": {"stringValue": LONG + "v"}}, {"key": LONG + "k", "value": {}},
                       {"key": "exception.stacktrace", "value": {"stringValue": "é" * len(LONG)}},
                       {"key": "nested", "value": nested}],
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": LONG + "svc"}}]}
    scopes = [{"scope": {"name": LONG + "scope", "version": LONG}, "logRecords": [record, {"body": {}}]}]
    return {"resourceLogs": [{"resource": resource, "scopeLogs": scopes, "schemaUrl": LONG}]}


def test_long_strings_decode_exactly_as_json_format_does() -> None:
    """Strings past LONG_STRING_CHARS in every string field (record, resource, scope, nested values) give
    the same request as json_format's ParseDict of the whole document."""
    body = json.dumps(_long_strings_document()).encode()
    assert otlp_mapping.decode_json(body) == _reference_decode(body)


def test_json_format_never_scans_a_long_string() -> None:
    """The surrogate regex json_format runs (with the GIL held) sees no string past LONG_STRING_CHARS."""
    from google.protobuf import json_format

    seen: list[int] = []
    pattern = json_format._UNPAIRED_SURROGATE_PATTERN

    class Spy:
        def search(self, text: str) -> Any:
            seen.append(len(text))
            return pattern.search(text)

    body = json.dumps(_long_strings_document()).encode()
    with mock.patch.object(json_format, "_UNPAIRED_SURROGATE_PATTERN", Spy()):
        otlp_mapping.decode_json(body)
    assert seen and max(seen) <= decode.LONG_STRING_CHARS


def test_a_lone_surrogate_in_a_long_string_is_a_payload_error() -> None:
    """A long string skips json_format's surrogate check but not the refusal: a 400 (the JSON parser refuses
    a lone surrogate escape; protobuf's UTF-8 check on the direct set would too)."""
    with pytest.raises(otlp_mapping.PayloadError):
        otlp_mapping.decode_json(_record(body={"stringValue": LONG + "\ud800"}))


def test_a_later_snake_case_duplicate_of_a_long_string_wins() -> None:
    """`severityText` long then `severity_text` short: the later key wins, as in json_format."""
    body = b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityText":"' + LONG.encode() + (
        b'","severity_text":"short"}]}]}]}')
    request, _ = otlp_mapping.decode_json(body)
    assert request == _reference_decode(body)[0]
    assert request.resource_logs[0].scope_logs[0].log_records[0].severity_text == "short"


async def test_a_30_mb_string_does_not_stall_other_clients_and_is_clipped(stack: Any) -> None:
    """30 MB of strings in a record (some 130 KB gzipped): /health answers within a second meanwhile; the
    stored message is the 10 KiB head + marker + tail the docs promise."""
    url, session = stack
    service = "gaps5-long"
    text = "h" + "a" * 15_000_000 + "t"  # twice: 30 MB of strings in the body
    record = {"body": {"stringValue": text}, "attributes": [{"key": "a", "value": {"stringValue": text}}]}
    stop = asyncio.Event()
    probe = asyncio.create_task(slowest_health(session, url, stop))
    body = json.dumps(export([record], service)).encode()
    # two exports at once, as an exporter's retry would: before, /health waited 2.2 s (each string held
    # the GIL 0.7 s in json_format's surrogate regex)
    answers = await asyncio.gather(*(post(session, url, body) for _ in range(2)))
    stop.set()
    assert answers == [(200, {})] * 2
    assert await probe < 1.0

    async def stored() -> list[dict[str, Any]]:
        async with session.get(f"{url}/api/logs", params={"service": service}) as resp:
            entries: list[dict[str, Any]] = await resp.json()
        return entries

    (entry,) = await wait_for(stored)
    assert entry["message"] == clip_bytes(text, wire.MAX_MESSAGE_BYTES)
    assert entry["attributes"]["a"] == clip_chars(text, wire.MAX_ATTRIBUTE_VALUE_CHARS)


@pytest.mark.parametrize(
    "body",
    [b'{"resourceLogs":[],"x\xff":1}', b'{"resourceLogs":[],"x":"\xc3("}',
     b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"unknown":"\xed\xa0\x80"}]}]}]}',
     b'{"resourceLogs":[{"resource":{"\xfe":1},"scopeLogs":[]}]}'],
    ids=["unknown-key", "unknown-value", "record-unknown-field", "resource-key"],
)
def test_invalid_utf8_anywhere_is_a_payload_error(body: bytes) -> None:
    """Bytes that are not UTF-8, even in fields nobody reads: a 400 naming UTF-8 (as json.loads did)."""
    with pytest.raises(otlp_mapping.PayloadError, match="UTF-8"):
        otlp_mapping.decode_json(body)


@pytest.mark.parametrize("schema_url", [5, {}, [], True])
@pytest.mark.parametrize("where", ["resource", "scope"])
def test_a_schema_url_that_is_not_a_string_is_a_payload_error(schema_url: Any, where: str) -> None:
    """As json_format: `schemaUrl` must be a string (null is allowed and means unset)."""
    scope: dict[str, Any] = {"logRecords": []}
    resource: dict[str, Any] = {"scopeLogs": [scope]}
    (scope if where == "scope" else resource)["schemaUrl"] = schema_url
    body = json.dumps({"resourceLogs": [resource]}).encode()
    with pytest.raises(otlp_mapping.PayloadError, match="schemaUrl"):
        otlp_mapping.decode_json(body)
    resource.pop("schemaUrl", None)
    scope.pop("schemaUrl", None)
    (scope if where == "scope" else resource)["schemaUrl"] = None
    body = json.dumps({"resourceLogs": [resource]}).encode()
    assert otlp_mapping.decode_json(body) == _reference_decode(body)


def _scope(fields: str) -> bytes:
    return b'{"resourceLogs":[{"scopeLogs":[{' + fields.encode() + b"}]}]}"


@pytest.mark.parametrize(
    ("fields", "messages"),
    [
        ('"logRecords":[],"log_records":[{"body":{"stringValue":"snake"}}]', ["snake"]),
        ('"log_records":[{"body":{"stringValue":"snake"}}],"logRecords":[]', []),
        ('"logRecords":[{"body":{"stringValue":"camel"}}],"log_records":null', []),
        ('"log_records":[{}],"logRecords":[{"body":{"stringValue":"a"}},{"body":{"stringValue":"b"}}]',
         ["a", "b"]),
    ],
    ids=["snake-later", "camel-later", "null-later", "longer-later"],
)
def test_both_spellings_of_a_field_the_later_key_wins(fields: str, messages: list[str]) -> None:
    """camelCase and snake_case keys of one repeated field: the later one is kept, as json_format keeps it."""
    body = _scope(fields)
    request, errors = otlp_mapping.decode_json(body)
    assert (request, errors) == _reference_decode(body)
    records = request.resource_logs[0].scope_logs[0].log_records
    assert [record.body.string_value for record in records] == messages


def test_records_a_later_spelling_drops_take_their_errors_and_numbers_along() -> None:
    """Errors are numbered over the kept records only: the dropped list's bad id is not reported."""
    body = b'{"resourceLogs":[{"scopeLogs":[{"log_records":[{"traceId":"zz"}]}],' + (
        b'"scope_logs":[{"logRecords":[{},{"spanId":"zz"}]}]}]}')
    request, errors = otlp_mapping.decode_json(body)
    assert (request, errors) == _reference_decode(body)
    assert list(errors) == [1] and errors[1].startswith("spanId")


def test_an_invalid_earlier_spelling_is_still_a_payload_error() -> None:
    """json_format parses the earlier key too: its invalid record fails the request although dropped."""
    with pytest.raises(otlp_mapping.PayloadError, match="not a valid OTLP/JSON"):
        otlp_mapping.decode_json(_scope('"logRecords":[{"timeUnixNano":"x"}],"log_records":[]'))


@pytest.mark.parametrize(
    "body",
    [
        b'{"resourceLogs":[{"resource":"x","scopeLogs":[{"logRecords":[{"body":{"stringValue":"b"}}]}]}]}',
        b'{"resourceLogs":[{"resource":{},"scopeLogs":[{"scope":{},"logRecords":[{}]}]}]}',
        b'{"resourceLogs":[{"resource":null,"scopeLogs":[{"scope":null,"logRecords":[{"body":null}]}]}]}',
        b'{"resource\\u004cogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"b"}}]}]}]}',
        b'{"resourceLogs":[],"resourceLogs":[{"scopeLogs":[{"logRecords":[{}]}]}]}',
        b'{"resourceLogs":null,"resource_logs":[{"scopeLogs":[{"logRecords":[{}]}]}]}',
        b'{"resourceLogs":[{"schemaUrl":"a","schema_url":"b","scopeLogs":[{"schema_url":"c","schemaUrl":null}]}]}',
    ],
    ids=["resource-string", "empty-messages", "nulls", "escaped-key", "repeated-key", "null-then-snake",
         "schema-url-spellings"],
)
def test_edge_documents_decode_as_the_whole_document(body: bytes) -> None:
    """Documents a differential check against the whole-document decode found or probes: equal requests."""
    assert otlp_mapping.decode_json(body) == _reference_decode(body)
