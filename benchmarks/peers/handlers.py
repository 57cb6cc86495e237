"""The handlers the SDK benchmark compares, each built with its library's defaults, pointed at the counting
server (`benchmarks.peers.counting_server`). name -> factory(http_url, tcp_port) -> (handler, close)."""

from __future__ import annotations

import logging
import os
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
    "OpenTelemetry LoggingHandler (OTLP/HTTP, batch processor)": otel,
    "python-logstash-async (TCP, in-memory queue)": logstash,
    "logtail-python": logtail,
}
LOCAL = frozenset({"NullHandler", "StreamHandler(/dev/null)"})
