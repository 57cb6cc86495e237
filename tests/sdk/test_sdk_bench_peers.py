"""The SDK benchmark's counting server counts exactly the records each compared handler sends."""

from __future__ import annotations

import gzip
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def counting() -> Iterator[dict[str, Any]]:
    """The counting server as the benchmark runs it: its own process, stopped by closing its stdin."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.peers.counting_server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        yield json.loads(proc.stdout.readline())
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def _count(url: str) -> int:
    with urllib.request.urlopen(f"{url}/count", timeout=10) as response:
        return int(json.load(response)["records"])


def _wait_count(url: str, expected: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while (count := _count(url)) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return count


def test_each_protocol_is_counted_per_record(counting: dict[str, Any]) -> None:
    """NDJSON (gzip), OTLP/HTTP protobuf, logtail msgpack and logstash TCP lines each count their records."""
    from msgpack import packb
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

    url = counting["http"]
    ndjson = gzip.compress(b'{"message":"a"}\n{"message":"b"}\n{"message":"c"}\n')
    headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
    assert _post(f"{url}/logs", ndjson, headers) == 202
    otlp = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord(), LogRecord()])])]
    ).SerializeToString()
    assert _post(f"{url}/v1/logs", otlp, {"Content-Type": "application/x-protobuf"}) == 200
    assert _post(url, packb([{"m": 1}] * 4), {"Content-Type": "application/msgpack"}) == 202
    with socket.create_connection(("127.0.0.1", counting["tcp_port"]), timeout=10) as tcp:
        tcp.sendall(b'{"m":1}\n{"m":2}\n{"m"')  # a line split across writes counts once, when complete
        tcp.sendall(b":3}\n")
    assert _wait_count(url, 3 + 2 + 4 + 3) == 12
    _post(f"{url}/reset", b"", {})
    assert _count(url) == 0


def test_real_handlers_are_counted(counting: dict[str, Any]) -> None:
    """OgLogHandler and the OpenTelemetry handler, as the benchmark builds them, arrive record for record."""
    from benchmarks.peers.handlers import oglog, otel

    url = counting["http"]
    for factory in (oglog, otel):
        _post(f"{url}/reset", b"", {})
        handler, close = factory(url, counting["tcp_port"])
        logger = logging.getLogger(f"sdktest.bench.{factory.__name__}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        try:
            for i in range(25):
                logger.info("record %d", i, extra={"user_id": i})
        finally:
            logger.removeHandler(handler)
            close()
        assert _wait_count(url, 25) == 25, factory.__name__
