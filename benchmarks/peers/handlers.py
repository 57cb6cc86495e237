"""The handlers the SDK benchmark compares, each built with its library's defaults, pointed at the counting
server (`benchmarks.peers.counting_server`). name -> factory(http_url, tcp_port) -> (handler, close)."""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import sys
from collections.abc import Callable

Close = Callable[[], object]
Factory = Callable[[str, int], tuple[logging.Handler, Close]]

#: How long a handler's close may take at the end of a case (its delivery was already measured).
CLOSE_TIMEOUT = 10.0


def null(url: str, tcp_port: int) -> tuple[logging.Handler, Close]:
    handler = logging.NullHandler()
    return handler, handler.close


def stream(url: str, tcp_port: int) -> tuple[logging.Handler, Close]:
    devnull = open(os.devnull, "w")  # noqa: SIM115  # closed by the returned close

    def close() -> None:
        handler.close()
        devnull.close()

    handler = logging.StreamHandler(devnull)
    return handler, close


def keep_records(url: str, tcp_port: int) -> tuple[logging.Handler, Close]:
    """The stdlib's `MemoryHandler` with no target and no capacity limit: it keeps each LogRecord and does
    nothing else. The floor of any handler that holds records for later: what keeping 50,000 records alive
    costs the caller (allocation, the garbage collector), with no capture, no bound and no delivery."""
    handler = logging.handlers.MemoryHandler(sys.maxsize, flushLevel=logging.CRITICAL + 1)
    return handler, handler.close


class _JoinedQueueHandler(logging.handlers.QueueHandler):
    """`QueueHandler` whose `flush()` waits until its `QueueListener` handled every record queued so far
    (`queue.Queue.join`: the listener marks each one done), so the benchmark's total covers the writes."""

    def flush(self) -> None:
        self.queue.join()  # type: ignore[union-attr]


def stdlib_queue(url: str, tcp_port: int) -> tuple[logging.Handler, Close]:
    """The stdlib's documented pattern for a handler that must not block the caller (logging cookbook,
    "Dealing with handlers that block"): `QueueHandler` -> `queue.Queue(-1)` -> `QueueListener` thread ->
    `StreamHandler` to /dev/null."""
    devnull = open(os.devnull, "w")  # noqa: SIM115  # closed by the returned close
    records: queue.Queue[logging.LogRecord] = queue.Queue(-1)
    target = logging.StreamHandler(devnull)
    listener = logging.handlers.QueueListener(records, target)
    listener.start()

    def close() -> None:
        listener.stop()
        target.close()
        devnull.close()

    return _JoinedQueueHandler(records), close


def oglog(url: str, tcp_port: int) -> tuple[logging.Handler, Close]:
    from oglogstream import OgLogHandler

    handler = OgLogHandler(url, "bench")  # defaults: nothing tuned
    return handler, lambda: handler.close(CLOSE_TIMEOUT)


def otel(url: str, tcp_port: int) -> tuple[logging.Handler, Close]:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{url}/v1/logs")))
    return LoggingHandler(logger_provider=provider), provider.shutdown


def logstash(url: str, tcp_port: int) -> tuple[logging.Handler, Close]:
    from logstash_async.handler import AsynchronousLogstashHandler

    # database_path=None is the library's documented in-memory queue (no SQLite file).
    handler = AsynchronousLogstashHandler("127.0.0.1", tcp_port, database_path=None)
    return handler, handler.close


def logtail(url: str, tcp_port: int) -> tuple[logging.Handler, Close]:
    from logtail import LogtailHandler

    handler = LogtailHandler(source_token="bench", host=url)
    return handler, handler.close


#: Cases in the order they run in each round. Local ones need no server.
CASES: dict[str, Factory] = {
    "NullHandler": null,
    "StreamHandler(/dev/null)": stream,
    "OgLogHandler": oglog,
    "MemoryHandler (keeps each record, nothing else)": keep_records,
    "QueueHandler -> QueueListener -> StreamHandler(/dev/null)": stdlib_queue,
    "OpenTelemetry LoggingHandler (OTLP/HTTP, batch processor)": otel,
    "python-logstash-async (TCP, in-memory queue)": logstash,
    "logtail-python": logtail,
}
LOCAL = frozenset({
    "NullHandler",
    "StreamHandler(/dev/null)",
    "MemoryHandler (keeps each record, nothing else)",
    "QueueHandler -> QueueListener -> StreamHandler(/dev/null)",
})
#: Local cases that deliver nothing: no "delivered" share.
DELIVER_NOTHING = frozenset({"NullHandler", "MemoryHandler (keeps each record, nothing else)"})
#: The stdlib references every round runs with the baselines (`benchmarks.sdk_bench.ROTATED`).
REFERENCES = (
    "MemoryHandler (keeps each record, nothing else)",
    "QueueHandler -> QueueListener -> StreamHandler(/dev/null)",
)
