"""OTLP/HTTP receiver (`POST /v1/logs`): the official OpenTelemetry SDK and raw OTLP requests against a
running stack (real nats-server, real chDB), from export to query."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.stack.helpers import running_app
from tests.stack.otlp_examples import SPEC_EXAMPLE

try:
    import aiohttp
    from aiohttp import web
    from google.rpc import status_pb2
    from oglogstream.stack.config import StackConfig
    from oglogstream.stack.http import boundary as http_boundary
    from oglogstream.stack.http.app import create_app
    from oglogstream.stack.http.resources import BROKER
    from oglogstream.stack.ingestion.otlp import receiver as otlp
    from oglogstream.stack.ingestion.slots import BatchSlots
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
        ExportLogsServiceResponse,
    )
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
except ImportError as exc:  # the `stack` and `dev` extras
    if IN_CI:
        raise
    pytest.skip(f"stack/dev extras not installed: {exc}", allow_module_level=True)

pytestmark = pytest.mark.timeout(60)

PB = {"Content-Type": "application/x-protobuf"}
PB_GZIP = {**PB, "Content-Encoding": "gzip"}
JS = {"Content-Type": "application/json"}
#: The app under test and its base URL.
Served = tuple[str, web.Application]
#: Every wait in these tests ends by this deadline.
DEADLINE = 20.0


@contextlib.asynccontextmanager
async def running(config: StackConfig, *, max_in_flight: int | None = None) -> AsyncIterator[Served]:
    """`create_app(config)` (which adds POST /v1/logs for the ingest role) on a free port."""
    app = create_app(config)
    if max_in_flight is not None:
        app[otlp._STATE].slots = BatchSlots(max_in_flight, max_in_flight)
    async with running_app(config, app=app) as url:
        yield url, app


def _config(nats_server: Any, chdb_dsn: str | None = None) -> StackConfig:
    roles = ("ingest", "process", "query") if chdb_dsn else ("ingest",)
    extra = {"clickhouse_dsn": chdb_dsn} if chdb_dsn else {}
    return StackConfig(roles=roles, nats_url=nats_server.url, http_port=0, flush_timeout=0.1,
                       shutdown_timeout=5.0, **extra)


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[Served]:
    """Every role in one app, as `oglog stack up` runs it."""
    async with running(_config(nats_server, chdb_dsn)) as served:
        yield served


@pytest.fixture
async def ingest_only(nats_server: Any) -> AsyncIterator[Served]:
    """The ingestion role alone (no storage): enough for protocol answers."""
    async with running(_config(nats_server)) as served:
        yield served


async def _logs(session: aiohttp.ClientSession, url: str, service: str, n: int) -> list[dict[str, Any]]:
    """GET /api/logs for `service` until at least `n` entries are stored (or the deadline passes)."""
    deadline = time.monotonic() + DEADLINE
    entries: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        async with session.get(f"{url}/api/logs", params={"service": service, "limit": "1000"}) as resp:
            assert resp.status == 200, await resp.text()
            entries = await resp.json()
        if len(entries) >= n:
            return entries
        await asyncio.sleep(0.1)
    raise AssertionError(f"only {len(entries)} of {n} entries for {service!r} stored after {DEADLINE}s")


def _now_ns() -> int:
    return time.time_ns()


def _request(service: str, *records: dict[str, Any]) -> ExportLogsServiceRequest:
    """A protobuf request: one resource (service.name), one scope holding `records` (LogRecord fields)."""
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    kv = rl.resource.attributes.add(key="service.name")
    kv.value.string_value = service
    sl = rl.scope_logs.add()
    sl.scope.name = "raw.scope"
    for fields in records:
        record = sl.log_records.add()
        body = fields.pop("body", "hello")
        record.body.string_value = body
        for key, value in fields.items():
            setattr(record, key, value)
    return request


# -- the official SDK, end to end -----------------------------------------------------------------------

@pytest.mark.parametrize("compression", ["gzip", "none"])
async def test_official_sdk_records_are_queryable(stack: Served, compression: str) -> None:
    """Python logging -> OTel LoggingHandler -> BatchLogRecordProcessor -> OTLPLogExporter: every record is
    stored with the right level, service, logger, attributes, exception and trace/span ids."""
    url, _ = stack
    service = f"otel-sdk-{compression}"
    exporter = OTLPLogExporter(
        endpoint=f"{url}/v1/logs", timeout=10,
        compression=Compression.Gzip if compression == "gzip" else Compression.NoCompression,
    )
    resource = Resource.create(
        {"service.name": service, "deployment.environment": "test", "host.name": "otel-host"}
    )
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        # The SDK's own handler is deprecated (for the instrumentation package) but still the common one.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    logger = logging.getLogger(f"app.otel.{compression}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    tracer = TracerProvider().get_tracer("tests")
    try:
        logger.debug("debug %s", "one")
        logger.info("order placed", extra={"order_id": 42, "vip": True, "amount": 9.5})
        logger.warning("slow")
        with tracer.start_as_current_span("checkout") as span:
            ctx = span.get_span_context()
            try:
                raise ValueError("card declined")
            except ValueError:
                logger.error("payment failed", exc_info=True)
        logger.critical("down")
        provider.get_logger("api.direct").emit(severity_number=2, severity_text="TRACE2",  # type: ignore[arg-type]
                                               body={"kind": "structured", "n": 1})
        assert await asyncio.to_thread(provider.force_flush, 10_000)
    finally:
        logger.removeHandler(handler)
        await asyncio.to_thread(provider.shutdown)

    async with aiohttp.ClientSession() as session:
        entries = await _logs(session, url, service, 6)
    assert len(entries) == 6
    by_message = {e["message"]: e for e in entries}
    assert {m: e["level"] for m, e in by_message.items()} == {
        "debug one": "debug", "order placed": "info", "slow": "warn", "payment failed": "error",
        "down": "fatal", '{"kind":"structured","n":1}': "debug",
    }
    assert {e["service"] for e in entries} == {service}
    assert {e["host"] for e in entries} == {"otel-host"}
    placed = by_message["order placed"]
    assert placed["logger"] == f"app.otel.{compression}"
    attrs = placed["attributes"]
    assert attrs["order_id"] == 42 and attrs["vip"] is True and attrs["amount"] == 9.5  # JSON types kept
    assert attrs["resource.deployment.environment"] == "test"
    assert attrs["otel.severity_text"] == "INFO" and attrs["otel.severity_number"] == 9
    assert attrs["code.function.name"] == "test_official_sdk_records_are_queryable"
    failed = by_message["payment failed"]
    assert failed["trace_id"] == format(ctx.trace_id, "032x")
    assert failed["span_id"] == format(ctx.span_id, "016x")
    assert "ValueError: card declined" in failed["exception"]
    assert failed["attributes"]["exception.type"] == "ValueError"
    assert "trace_id" not in placed
    assert by_message['{"kind":"structured","n":1}']["logger"] == "api.direct"
    assert all(e["id"].startswith("otlp-") for e in entries)


# -- OTLP/JSON -------------------------------------------------------------------------------------------

def _spec_example(now_ns: int) -> dict[str, Any]:
    # The spec's example, but timestamped now: a 2018 row would be past the table's TTL.
    doc = json.loads(SPEC_EXAMPLE)
    record = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    record["timeUnixNano"] = record["observedTimeUnixNano"] = now_ns
    return doc


async def test_spec_json_example_stored(stack: Served) -> None:
    """The spec's OTLP/JSON example, gzip-compressed, is answered in JSON and stored field by field."""
    url, _ = stack
    body = gzip.compress(json.dumps(_spec_example(_now_ns())).encode())
    async with aiohttp.ClientSession() as session:
        headers = {**JS, "Content-Encoding": "gzip"}
        async with session.post(f"{url}/v1/logs", data=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.content_type == "application/json"
            assert await resp.json() == {}
        [entry] = await _logs(session, url, "my.service", 1)
    assert entry["level"] == "info"
    assert entry["message"] == "Example log record"
    assert entry["logger"] == "my.library"
    assert entry["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert entry["span_id"] == "eee19b7ec3c1b174"
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


# -- partial success and idempotency ----------------------------------------------------------------------

async def test_partial_success_protobuf_and_json(stack: Served) -> None:
    """Invalid records are counted in partialSuccess (in the request's encoding); valid ones are stored."""
    url, _ = stack
    now = _now_ns()
    request = _request(
        "partial",
        {"body": "good one", "time_unix_nano": now, "severity_number": 13},
        {"body": "bad trace id", "trace_id": b"\x01" * 5},
        {"body": "from the future", "time_unix_nano": 2**64 - 1},
        {"body": "good two", "time_unix_nano": now},
    )
    doc = _spec_example(now)
    records = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    records.append(dict(records[0], traceId="zz-not-hex"))
    doc["resourceLogs"][0]["resource"]["attributes"][0]["value"]["stringValue"] = "partial-json"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/v1/logs", data=request.SerializeToString(), headers=PB) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/x-protobuf"
            answer = ExportLogsServiceResponse.FromString(await resp.read())
        assert answer.partial_success.rejected_log_records == 2
        message = answer.partial_success.error_message
        assert message.startswith("2 of 4 log records rejected")
        assert "record 1: traceId: expected 16 bytes, got 5" in message
        assert "record 2: timestamp:" in message

        async with session.post(f"{url}/v1/logs", data=json.dumps(doc), headers=JS) as resp:
            assert resp.status == 200
            partial = (await resp.json())["partialSuccess"]
        assert int(partial["rejectedLogRecords"]) == 1
        assert "record 1: traceId: not a hex string" in partial["errorMessage"]

        stored = await _logs(session, url, "partial", 2)
        assert sorted(e["message"] for e in stored) == ["good one", "good two"]
        assert {e["level"] for e in stored} == {"warn", "info"}
        assert len(await _logs(session, url, "partial-json", 1)) == 1


async def test_all_records_invalid_is_still_a_partial_success(ingest_only: Served) -> None:
    """A decodable request whose every record is invalid gets 200 with all of them rejected."""
    url, _ = ingest_only
    request = _request("none-valid", {"span_id": b"\x01" * 3}, {"trace_id": b"\x02" * 17})
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/v1/logs", data=request.SerializeToString(), headers=PB) as resp:
            assert resp.status == 200
            answer = ExportLogsServiceResponse.FromString(await resp.read())
        assert answer.partial_success.rejected_log_records == 2
        async with session.post(f"{url}/v1/logs", data=b"{}", headers=JS) as resp:
            assert resp.status == 200 and await resp.json() == {}  # an empty export is a success


async def test_retried_export_stored_once(stack: Served) -> None:
    """The same request sent three times (once re-gzipped) is stored once: ids and Nats-Msg-Id come from the
    body's hash."""
    url, _ = stack
    now = _now_ns()
    request = _request("retry", *({"body": f"r{i}", "time_unix_nano": now + i} for i in range(5)))
    body = request.SerializeToString()
    async with aiohttp.ClientSession() as session:
        for data, headers in ((body, PB), (body, PB), (gzip.compress(body, mtime=1), PB_GZIP)):
            async with session.post(f"{url}/v1/logs", data=data, headers=headers) as resp:
                assert resp.status == 200
                assert not ExportLogsServiceResponse.FromString(await resp.read()).HasField("partial_success")
        # A later request is processed after the retries: once it is stored, any duplicate would be too.
        marker = _request("retry-marker", {"body": "after", "time_unix_nano": now})
        async with session.post(f"{url}/v1/logs", data=marker.SerializeToString(), headers=PB) as resp:
            assert resp.status == 200
        await _logs(session, url, "retry-marker", 1)
        stored = await _logs(session, url, "retry", 5)
        async with session.get(f"{url}/metrics") as resp:
            exposition = await resp.text()
    assert sorted(e["message"] for e in stored) == [f"r{i}" for i in range(5)]
    assert len({e["id"] for e in stored}) == 5
    assert 'oglog_duplicates_skipped_total{stage="broker"} 2.0' in exposition


# -- errors ------------------------------------------------------------------------------------------------

async def test_malformed_payloads_400_and_server_stays_healthy(ingest_only: Served) -> None:
    """Undecodable protobuf/JSON/gzip gets 400 with a google.rpc.Status in the request's encoding; the server
    keeps serving."""
    url, _ = ingest_only
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/v1/logs", data=b"\xff\xff\xff\xff not protobuf", headers=PB) as resp:
            assert resp.status == 400
            assert resp.content_type == "application/x-protobuf"
            status = status_pb2.Status.FromString(await resp.read())
        assert status.code == 3 and "not a valid protobuf ExportLogsServiceRequest" in status.message
        async with session.post(f"{url}/v1/logs", data=b'{"resourceLogs": 7}', headers=JS) as resp:
            assert resp.status == 400
            problem = await resp.json()
        assert problem["code"] == 3 and problem["message"].startswith("body: not a valid OTLP/JSON")
        async with session.post(f"{url}/v1/logs", data=b"\x1f\x8bnot gzip at all", headers=PB_GZIP) as resp:
            assert resp.status == 400
            assert "gzip" in status_pb2.Status.FromString(await resp.read()).message
        good = _request("healthy", {"body": "still here"})
        async with session.post(f"{url}/v1/logs", data=good.SerializeToString(), headers=PB) as resp:
            assert resp.status == 200
        async with session.get(f"{url}/health") as resp:
            assert resp.status == 200


async def test_unsupported_media_415(ingest_only: Served) -> None:
    """Other content types and content encodings are refused with 415 and say what is accepted."""
    url, _ = ingest_only
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/v1/logs", data=b"x", headers={"Content-Type": "text/plain"}) as resp:
            assert resp.status == 415
            assert "application/x-protobuf or application/json" in (await resp.json())["message"]
        headers = {**PB, "Content-Encoding": "snappy"}
        async with session.post(f"{url}/v1/logs", data=b"x", headers=headers) as resp:
            assert resp.status == 415
            assert "Content-Encoding" in status_pb2.Status.FromString(await resp.read()).message


async def test_gzip_bomb_413(ingest_only: Served) -> None:
    """A gzip body that inflates past MAX_BATCH_DECOMPRESSED_BYTES is cut off with 413."""
    from oglogstream import _wire

    url, _ = ingest_only
    bomb = gzip.compress(b"\0" * (_wire.MAX_BATCH_DECOMPRESSED_BYTES + 1), compresslevel=1)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/logs", data=bomb, headers=PB_GZIP) as resp,
    ):
        assert resp.status == 413
        assert "at most" in status_pb2.Status.FromString(await resp.read()).message


async def test_broker_down_503_with_retry_after(nats_server: Any) -> None:
    """With NATS gone, an export gets 503 + Retry-After (retryable), never a 200 that would lose it."""
    async with running(_config(nats_server)) as (url, app):
        nats_server.stop()
        deadline = time.monotonic() + DEADLINE
        while app[BROKER].is_connected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as session:
            request = _request("down", {"body": "x"})
            async with session.post(f"{url}/v1/logs", data=request.SerializeToString(), headers=PB) as resp:
                assert resp.status == 503
                assert resp.headers["Retry-After"].isdigit()
                status = status_pb2.Status.FromString(await resp.read())
    assert status.code == 14 and "broker unavailable" in status.message


async def test_overload_429_with_retry_after(nats_server: Any) -> None:
    """Past the in-flight limit a request gets 429 + Retry-After instead of queueing its body in memory."""
    # More than SLOT_HEAD_BYTES (a body takes its slot once that much arrived), in records of 8 KiB.
    records = [{"body": "x" * 8192} for _ in range(http_boundary.SLOT_HEAD_BYTES // 8192 + 2)]
    body = _request("slow", *records).SerializeToString()
    split = http_boundary.SLOT_HEAD_BYTES + 1
    async with running(_config(nats_server), max_in_flight=1) as (url, _), aiohttp.ClientSession() as session:
        # A client that sends its headers and SLOT_HEAD_BYTES of the body, then stalls: it holds the slot.
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        head = (f"POST /v1/logs HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-protobuf\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        writer.write(head.encode() + body[:split])
        await writer.drain()
        deadline = time.monotonic() + DEADLINE
        while True:  # until the stalled request has taken the slot
            async with session.post(f"{url}/v1/logs", data=body, headers=PB) as resp:
                if resp.status == 429:
                    assert resp.headers["Retry-After"] == "1"
                    assert status_pb2.Status.FromString(await resp.read()).code == 8
                    break
                assert resp.status == 200
            assert time.monotonic() < deadline, "the stalled request never took the slot"
            await asyncio.sleep(0.02)
        writer.write(body[split:])
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), DEADLINE)
        writer.close()
        await writer.wait_closed()
        assert status_line.startswith(b"HTTP/1.1 200")
        async with session.post(f"{url}/v1/logs", data=body, headers=PB) as resp:
            assert resp.status == 200  # the slot is free again
    with pytest.raises(ValueError, match="max_in_flight"):
        otlp.setup(web.Application(), max_in_flight=0)
