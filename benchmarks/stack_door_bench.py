"""Event-loop lag of the ingestion role while it handles its largest valid requests and hostile ones.

Run from the project root: `.venv/bin/python -m benchmarks.stack_door_bench [--repeats 3]` (a few minutes;
`--only TEXT`, repeatable: only the scenarios whose name contains TEXT).

An ingest-only app with the default settings (create_app, default limits and timeouts) runs in this process
against a real nats-server. While each request below is handled, GET /health is probed back to back on its own
connection; the slowest probe is the event-loop lag that request caused (the baseline: the slowest probe of an
idle server over the same time). Each scenario runs `--repeats` times (default REPEATS); the table gives the
worst of them.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import ClientError, ClientSession
from oglogstream import _wire
from oglogstream.stack.broker.natsd import NatsServer
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http.app import create_app
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tests.stack.helpers import running_app, slowest_health

REPEATS = 3
NDJSON = {"Content-Type": "application/x-ndjson"}
GZIP_JSON = {"Content-Type": "application/json", "Content-Encoding": "gzip"}


def _widest_batch() -> bytes:
    """MAX_BATCH_ENTRIES entries with MAX_ATTRIBUTES attributes each: the most values a valid body holds."""
    attributes = {f"key{k}": f"value{k}" for k in range(_wire.MAX_ATTRIBUTES)}
    return "\n".join(
        json.dumps({"level": "info", "message": f"m{i}", "service": "bench", "attributes": attributes})
        for i in range(_wire.MAX_BATCH_ENTRIES)
    ).encode()


def _sdk_batch(n: int) -> bytes:
    return gzip.compress(
        "\n".join(
            json.dumps({"level": "info", "message": f"request {i} handled", "service": "bench", "host": "h",
                        "pid": 1, "logger": "app", "attributes": {"path": "/x", "status": "200"}})
            for i in range(n)
        ).encode()
    )


def _otlp(records: int, attributes: int) -> bytes:
    request = ExportLogsServiceRequest()
    log_records = request.resource_logs.add().scope_logs.add().log_records
    for i in range(records):
        record = log_records.add(severity_number=9)
        if attributes:
            record.body.string_value = f"m{i}"
        for k in range(attributes):
            kv = record.attributes.add(key=f"key{k}")
            kv.value.string_value = f"value{k}"
    return request.SerializeToString()


def _otlp_json(records: int, attributes: int) -> bytes:
    attrs = [{"key": f"key{k}", "value": {"stringValue": f"value{k}"}} for k in range(attributes)]
    log_records = [{"severityNumber": 9, "body": {"stringValue": f"m{i}"}, "attributes": attrs}
                   for i in range(records)]
    document = {"resourceLogs": [{"scopeLogs": [{"logRecords": log_records}]}]}
    return json.dumps(document, separators=(",", ":")).encode()  # compact: under the 32 MiB inflated limit


def _otlp_resource(attributes: int, records: int) -> bytes:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    for k in range(attributes):
        resource_logs.resource.attributes.add(key=f"k{k}").value.int_value = k
    log_records = resource_logs.scope_logs.add().log_records
    for i in range(records):
        log_records.add().body.string_value = f"m{i}"
    return request.SerializeToString()


_OTLP_JSON = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
_OTLP_GZIP = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}


def _bomb(mib: int) -> bytes:
    member = gzip.compress(b"\0" * (100 * 1024 * 1024), compresslevel=9)
    return member * (mib * 1024 * 1024 // len(member))


async def _chunked(blob: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(blob), 64 * 1024):
        yield blob[start : start + 64 * 1024]


#: (name, path, body maker, headers)
Scenario = tuple[str, str, Callable[[], Any], dict[str, str]]


def scenarios() -> list[Scenario]:
    widest, bomb8 = _widest_batch(), _bomb(8)
    return [
        ("1,000 SDK entries, gzip NDJSON (typical batch)", "/logs", lambda: _sdk_batch(1000),
         {**NDJSON, "Content-Encoding": "gzip"}),
        (f"{_wire.MAX_BATCH_ENTRIES:,} entries x {_wire.MAX_ATTRIBUTES} attributes, gzip NDJSON "
         f"({len(widest) / 2**20:.1f} MiB inflated, the widest valid batch)", "/logs",
         lambda: gzip.compress(widest), {**NDJSON, "Content-Encoding": "gzip"}),
        ("the same batch as a gzip JSON array", "/logs",
         lambda: gzip.compress(b"[" + widest.replace(b"\n", b",") + b"]"), GZIP_JSON),
        ("OTLP protobuf, 10,000 records x 64 attributes, gzip", "/v1/logs",
         lambda: gzip.compress(_otlp(10_000, 64)),
         {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}),
        ("3 million `{}` in 9 KB of gzip JSON (issue 11 #5)", "/logs",
         lambda: gzip.compress(b"[" + b",".join([b"{}"] * 3_000_000) + b"]"), GZIP_JSON),
        ("one entry with 1 million attributes, gzip JSON", "/logs",
         lambda: gzip.compress(b'[{"level":"info","message":"m","service":"s","attributes":{'
                               + b",".join(b'"k%d":1' % i for i in range(1_000_000)) + b"}}]"), GZIP_JSON),
        ("OTLP protobuf, 1 million records with a severity only, gzip", "/v1/logs",
         lambda: gzip.compress(_otlp(1_000_000, 0)),
         {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}),
        ("32 MiB of newlines, gzip NDJSON (issue 11 review F4)", "/logs",
         lambda: gzip.compress(b"\n" * 2**25), {**NDJSON, "Content-Encoding": "gzip"}),
        ("OTLP/JSON `{\"junk\":[{},...]}` 32 MiB inflated (F5b)", "/v1/logs",
         lambda: gzip.compress(b'{"resourceLogs":[],"junk":[' + b"{}," * (2**25 // 3 - 40) + b"{}]}"),
         _OTLP_JSON),
        ("OTLP/JSON, 1 million empty logRecords (F5b)", "/v1/logs",
         lambda: gzip.compress(
             b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[' + b"{}," * 10**6 + b"{}]}]}]}"
         ),
         _OTLP_JSON),
        ("OTLP/JSON, 1 million empty scopeLogs (F5b)", "/v1/logs",
         lambda: gzip.compress(b'{"resourceLogs":[{"scopeLogs":[' + b"{}," * 10**6 + b"{}]}]}"), _OTLP_JSON),
        ("OTLP/JSON, 10,000 records x 64 attributes, gzip (the widest valid OTLP/JSON export)", "/v1/logs",
         lambda: gzip.compress(_otlp_json(10_000, 64)), _OTLP_JSON),
        ("OTLP/JSON, 32 MiB of nested empty lists, 500 deep (16 million lists behind 32,000 commas)",
         "/v1/logs",
         lambda: gzip.compress(b'{"resourceLogs":[],"x":[' + b",".join([b"[" * 500 + b"]" * 500] * 32_000)
                               + b"]}"),
         _OTLP_JSON),
        ("OTLP protobuf, 1,000 resource attributes x 10,000 records, gzip (F5a)", "/v1/logs",
         lambda: gzip.compress(_otlp_resource(1000, 10_000)), _OTLP_GZIP),
        ("7 MB gzip bomb to /log (7 GB inflated), chunked", "/log",
         lambda: _chunked(_bomb(7)), {"Content-Type": "application/json", "Content-Encoding": "gzip"}),
        ("8 MB gzip bomb to /logs (8 GB inflated), chunked", "/logs",
         lambda: _chunked(bomb8), {**NDJSON, "Content-Encoding": "gzip"}),
    ]


async def _one(url: str, path: str, data: Any, headers: dict[str, str]) -> tuple[int, float, float]:
    async with ClientSession() as probe_session, ClientSession() as session:
        stop = asyncio.Event()
        probe = asyncio.create_task(slowest_health(probe_session, url, stop))
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        try:
            async with session.post(f"{url}{path}", data=data, headers=headers) as resp:
                await resp.read()
                status = resp.status
        except ClientError:
            status = -1  # closed while still uploading: refused early
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.2)
        stop.set()
        return status, elapsed, await probe


async def main(repeats: int = REPEATS, chosen: list[Scenario] | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nats = NatsServer(Path(tmp) / "nats").start()
        try:
            config = StackConfig(roles=("ingest",), nats_url=nats.url)
            async with running_app(config, app=create_app(config)) as url:
                async with ClientSession() as session:
                    stop = asyncio.Event()
                    probe = asyncio.create_task(slowest_health(session, url, stop))
                    await asyncio.sleep(2.0)
                    stop.set()
                    print(f"idle baseline: slowest /health {await probe * 1000:.1f} ms\n")
                print("| request | answer | request time | slowest /health meanwhile |")
                print("|---|---|---|---|")
                for name, path, make, headers in scenarios() if chosen is None else chosen:
                    worst_lag, worst_time, status = 0.0, 0.0, 0
                    for _ in range(repeats):
                        status, elapsed, lag = await _one(url, path, make(), headers)
                        worst_lag, worst_time = max(worst_lag, lag), max(worst_time, elapsed)
                    shown = "closed early" if status == -1 else str(status)
                    print(f"| {name} | {shown} | {worst_time * 1000:.0f} ms | {worst_lag * 1000:.0f} ms |",
                          flush=True)
        finally:
            nats.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=REPEATS, help=f"runs per scenario (default {REPEATS})")
    parser.add_argument("--only", action="append", metavar="TEXT", help="scenarios whose name contains TEXT")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    every = scenarios()
    unknown = [text for text in args.only or () if not any(text in name for name, *_ in every)]
    if unknown:
        parser.error(f"--only {unknown[0]!r} matches no scenario; they are: {[name for name, *_ in every]}")
    chosen = [s for s in every if not args.only or any(text in s[0] for text in args.only)]
    sys.exit(asyncio.run(main(args.repeats, chosen)))
