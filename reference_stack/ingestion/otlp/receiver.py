"""OTLP/HTTP logs receiver: `POST /v1/logs` on the ingestion role, so any OpenTelemetry SDK or collector can
ship logs here without our SDK.

Protocol (OTLP/HTTP 1.x): binary protobuf (`application/x-protobuf`) or OTLP/JSON (`application/json`), gzip
allowed. Answers: 200 + ExportLogsServiceResponse in the request's encoding (with `partialSuccess` when some
records were rejected); 400 (not retryable) + google.rpc.Status for an undecodable body; 413 past the body
limits; 415 for other media types/encodings; 429 (too many requests in flight here) or 503 (broker down), both
with Retry-After, which OTLP exporters honour.

Accepted records go through exactly the path `POST /logs` uses: the wire schema validates the mapped entries
(`schema.ENTRY`), `schema.make_rows` builds rows, `ingest.publish_rows` makes them durable in JetStream (then
fans them out to the live tail). Entry ids and the JetStream `Nats-Msg-Id` derive from the sha256 of the
decompressed body, so an exporter retrying the same request is stored once. The field mapping lives in
`mapping.py` and is documented in docs/otlp.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

from aiohttp import web
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from oglogstream import wire as _wire
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from pydantic import ValidationError

from ...broker.broker import BrokerUnavailable
from ...config import check_at_least
from ...http.boundary import Problem, body_started, check_media, read_body, safe_detail, to_problem, too_large
from ...http.metrics import Metrics
from ...http.resources import BROKER, CONFIG, METRICS
from .. import dedup, ingest, schema
from ..slots import BatchSlots, client_of
from . import mapping, protowire

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "JSON_CONTENT_TYPE",
    "MAX_ERROR_MESSAGE_CHARS",
    "OTLP_LOGS_PATH",
    "PROTOBUF_CONTENT_TYPE",
    "error_for",
    "setup",
]

OTLP_LOGS_PATH = "/v1/logs"
PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
JSON_CONTENT_TYPE = "application/json"
#: Requests decoded at once by one process; past this the receiver answers 429 instead of queueing bodies
#: of up to MAX_BATCH_DECOMPRESSED_BYTES each in memory (exporters back off and retry on 429).
DEFAULT_MAX_IN_FLIGHT = 16
#: Of those, what one exporter (API key, or address without auth) may hold: half, so one client cannot lock
#: out the others (ingestion/slots.py), and a collector's usual handful of concurrent exports fits.
DEFAULT_MAX_PER_CLIENT = 8
#: partialSuccess.errorMessage lists the first rejections only; the count is always exact.
MAX_ERROR_MESSAGE_CHARS = 2048

_ROUTE = OTLP_LOGS_PATH
# google.rpc.Status codes used in error bodies.
_RPC_INVALID_ARGUMENT = 3
_RPC_RESOURCE_EXHAUSTED = 8
_RPC_UNAVAILABLE = 14
_RPC_BY_HTTP = {400: _RPC_INVALID_ARGUMENT, 413: _RPC_INVALID_ARGUMENT, 415: _RPC_INVALID_ARGUMENT,
                429: _RPC_RESOURCE_EXHAUSTED, 503: _RPC_UNAVAILABLE}
_RPC_BY_HTTP.update({401: 16, 403: 7})  # UNAUTHENTICATED, PERMISSION_DENIED (access control, auth/)


def _status_class() -> type[Message]:
    """google.rpc.Status (code = 1, message = 2) built in a private descriptor pool.

    opentelemetry-proto does not ship it and googleapis-common-protos is a large dependency for two fields;
    a private pool cannot clash with that package when both are installed. `details` (field 3) is omitted:
    we never send any, and the encoding of the fields we do send is identical."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="oglogstream/google_rpc_status.proto", package="google.rpc", syntax="proto3"
    )
    message = proto.message_type.add(name="Status")
    fdp = descriptor_pb2.FieldDescriptorProto
    message.field.add(name="code", number=1, type=fdp.TYPE_INT32, label=fdp.LABEL_OPTIONAL, json_name="code")
    message.field.add(name="message", number=2, type=fdp.TYPE_STRING, label=fdp.LABEL_OPTIONAL,
                      json_name="message")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    status: type[Message] = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))
    return status


_Status = _status_class()


@dataclasses.dataclass
class _Outcome:
    rows: list[dict[str, Any]]
    total: int
    rejected: list[tuple[int, str]]
    batch_id: str


@dataclasses.dataclass
class _State:
    metrics: Metrics
    slots: BatchSlots


_STATE: web.AppKey[_State] = web.AppKey("oglog_otlp_state", _State)


def _encode(message: Message, protobuf: bool) -> tuple[bytes, str]:
    if protobuf:
        return message.SerializeToString(), PROTOBUF_CONTENT_TYPE
    return json_format.MessageToJson(message, indent=None).encode("utf-8"), JSON_CONTENT_TYPE


def _error_response(problem: Problem, protobuf: bool) -> web.Response:
    code = _RPC_BY_HTTP.get(problem.status, _RPC_INVALID_ARGUMENT)
    status = _Status(code=code, message=safe_detail(problem))
    body, content_type = _encode(status, protobuf)
    return web.Response(status=problem.status, body=body, headers={"Content-Type": content_type,
                                                                   **(problem.headers or {})})


def error_for(request: web.Request, problem: Problem) -> web.Response:
    """`problem` as an OTLP error answer (google.rpc.Status in the request's encoding): for refusals made
    before the handler runs (access control, auth/middleware.py)."""
    return _error_response(problem, request.content_type == PROTOBUF_CONTENT_TYPE)


async def _read_body(request: web.Request) -> bytes:
    return await read_body(
        request, limit=_wire.MAX_BATCH_BODY_BYTES, decompressed_limit=_wire.MAX_BATCH_DECOMPRESSED_BYTES
    )


def _process(body: bytes, protobuf: bool, now: dt.datetime, window: schema.TimeWindow) -> _Outcome:
    """Decode, map and validate (CPU-bound: runs on a worker thread)."""
    record_errors: dict[int, str] = {}
    try:
        if protobuf:  # counted on the wire, decoded in slices (see protowire.py); whole only to name a fault
            if protowire.count_log_records(body, _wire.MAX_BATCH_ENTRIES) > _wire.MAX_BATCH_ENTRIES:
                raise too_large(_wire.MAX_BATCH_ENTRIES, "log record count")
            request = protowire.decode_sliced(body) or mapping.decode_protobuf(body)
        else:
            request, record_errors = mapping.decode_json(body)
    except protowire.Oversized as exc:
        raise too_large(exc.limit, exc.what) from None
    except mapping.PayloadError as exc:
        field, _, reason = str(exc).partition(": ")
        raise Problem(400, "bad request", field if reason else "body", reason or str(exc)) from None
    records = sum(len(scope.log_records) for rl in request.resource_logs for scope in rl.scope_logs)
    if records > _wire.MAX_BATCH_ENTRIES:
        raise too_large(_wire.MAX_BATCH_ENTRIES, "log record count")
    digest = mapping.request_digest(body)
    mapped = mapping.map_request(request, digest=digest, now=now, record_errors=record_errors)
    rejected = list(mapped.rejected)
    entries: list[schema.Entry] = []
    for index, entry in mapped.entries:
        try:
            entries.append(schema.ENTRY.validate_python(entry, context={"window": window}))
        except ValidationError as exc:
            details = schema.validation_details(exc)
            rejected.append((index, "; ".join(f"{d['field']}: {d['reason']}" for d in details)))
    rejected.sort()
    batch_id = mapping.batch_id(digest)
    rows = schema.make_rows(entries, batch_id=batch_id, received_at=schema.format_timestamp(now))
    return _Outcome(rows=rows, total=mapped.total, rejected=rejected, batch_id=batch_id)


def _partial_message(outcome: _Outcome) -> str:
    parts = [f"{len(outcome.rejected)} of {outcome.total} log records rejected"]
    size = len(parts[0])
    for index, reason in outcome.rejected:
        part = f"record {index}: {reason}"
        if size + len(part) + 2 > MAX_ERROR_MESSAGE_CHARS:
            parts.append("…")
            break
        parts.append(part)
        size += len(part) + 2
    return parts[0] + (": " + "; ".join(parts[1:]) if len(parts) > 1 else "")


async def _export(request: web.Request, state: _State, protobuf: bool) -> web.Response:
    body = await _read_body(request)
    now = dt.datetime.now(dt.timezone.utc)
    window = schema.TimeWindow.around(now, retention_days=request.app[CONFIG].retention_days)
    outcome = await asyncio.to_thread(_process, body, protobuf, now, window)
    if outcome.rows:
        await ingest.publish_rows(
            request.app[BROKER], state.metrics, outcome.rows, dedup.otlp_message_id(outcome.batch_id)
        )
        state.metrics.entries_accepted.labels(_ROUTE).inc(len(outcome.rows))
    response = ExportLogsServiceResponse()
    if outcome.rejected:
        state.metrics.entries_rejected.labels("invalid").inc(len(outcome.rejected))
        response.partial_success.rejected_log_records = len(outcome.rejected)
        response.partial_success.error_message = _partial_message(outcome)
    payload, content_type = _encode(response, protobuf)
    return web.Response(status=200, body=payload, headers={"Content-Type": content_type})


async def _handle(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    protobuf = request.content_type == PROTOBUF_CONTENT_TYPE
    try:
        check_media(request, (PROTOBUF_CONTENT_TYPE, JSON_CONTENT_TYPE))
        # An exporter that sends no body bytes holds no slot.
        await body_started(request, limit=_wire.MAX_BATCH_BODY_BYTES)
        # One exporter (API key, or address without auth) holds at most its share of the slots (slots.py).
        with state.slots.take(client_of(request)):
            broker = request.app[BROKER]
            if not broker.is_connected:  # fail fast: do not read and decode a body we cannot make durable
                raise BrokerUnavailable(f"NATS is {broker.status.lower()}")
            response = await _export(request, state, protobuf)
    except Exception as exc:
        problem = to_problem(exc)
        if problem is None:  # the error middleware answers 500 and logs it
            state.metrics.requests.labels(_ROUTE, "500").inc()
            raise
        state.metrics.entries_rejected.labels(problem.kind).inc()
        # OTLP answers errors with a google.rpc.Status in the request's encoding, not problem+json.
        response = _error_response(problem, protobuf)
    state.metrics.requests.labels(_ROUTE, str(response.status)).inc()
    return response


def setup(
    app: web.Application,
    *,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    max_per_client: int = DEFAULT_MAX_PER_CLIENT,
) -> None:
    """Add POST /v1/logs (needs BROKER and METRICS, see resources; call it for the ingest role).
    `max_in_flight`: export bodies this process takes at once, `max_per_client` of them one exporter;
    ValueError when either is < 1 or the share exceeds the total."""
    check_at_least(1, max_in_flight=max_in_flight, max_per_client=max_per_client)
    app[_STATE] = _State(metrics=app[METRICS], slots=BatchSlots(max_in_flight, max_per_client))
    app.router.add_post(OTLP_LOGS_PATH, _handle)
