"""Delivery on the happy path: exact counts, batching, request format, flush."""

from __future__ import annotations

import gzip
import logging
import threading
import time

from oglogstream import _wire

from .capture_server import CaptureServer


def test_every_record_is_delivered_exactly_once(server: CaptureServer, make_handler, logger) -> None:
    """N records from several threads arrive as exactly N entries with N distinct ids."""
    handler = make_handler(server.url, batch_size=100)
    logger.addHandler(handler)

    def burst(tag: str) -> None:
        for i in range(1500):
            logger.info("record %s-%d", tag, i)

    threads = [threading.Thread(target=burst, args=(t,)) for t in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert handler.flush(10)
    assert server.entry_count == 6000
    assert len(server.ids) == 6000
    assert server.problems == []
    messages = {e["message"] for e in server.entries}
    assert len(messages) == 6000
    stats = handler.stats()
    assert (stats.sent, stats.queued, stats.dropped_total) == (6000, 0, 0)


def test_batches_respect_batch_size(server: CaptureServer, make_handler, logger) -> None:
    """No request carries more than batch_size entries."""
    handler = make_handler(server.url, batch_size=250)
    logger.addHandler(handler)
    for i in range(1000):
        logger.info("n=%d", i)
    assert handler.flush(10)
    assert server.entry_count == 1000
    assert max(r.entries for r in server.requests) <= 250


def test_one_kept_alive_connection_carries_every_batch(server: CaptureServer, make_handler, logger) -> None:
    """Successive batches reuse one keep-alive connection instead of reconnecting."""
    handler = make_handler(server.url, batch_size=10)
    logger.addHandler(handler)
    for i in range(100):
        logger.info("k%d", i)
    assert handler.flush(5)
    assert len(server.requests) >= 10
    assert len({r.peer for r in server.requests}) == 1


def test_batches_respect_batch_bytes(server: CaptureServer, make_handler, logger) -> None:
    """A byte limit splits batches even when the count limit is far away."""
    handler = make_handler(server.url, batch_size=10_000, batch_bytes=20_000)
    logger.addHandler(handler)
    for _ in range(100):
        logger.info("x" * 1000)
    assert handler.flush(10)
    assert server.entry_count == 100
    assert len(server.requests) >= 5


def test_interval_sends_a_partial_batch(server: CaptureServer, make_handler, logger) -> None:
    """A lone record is sent after about flush_interval, without flush()."""
    handler = make_handler(server.url, flush_interval=0.1)
    logger.addHandler(handler)
    started = time.monotonic()
    logger.info("alone")
    assert server.wait_entries(1, timeout=5)
    assert time.monotonic() - started < 2.0


def test_request_format_matches_the_wire_contract(server: CaptureServer, make_handler, logger) -> None:
    """Requests are gzip NDJSON POSTs to /logs with a batch id and a bearer token."""
    handler = make_handler(server.url + "/", api_key="s3cret")
    logger.addHandler(handler)
    logger.info("hello")
    assert handler.flush(5)
    (request,) = server.requests
    assert request.headers["content-type"] == _wire.NDJSON_CONTENT_TYPE
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.batch_id
    assert server.problems == []


def test_no_authorization_header_without_api_key(
    server: CaptureServer, make_handler, logger, monkeypatch
) -> None:
    """Without an api key (argument or env) no Authorization header is sent."""
    monkeypatch.delenv("OGLOG_API_KEY", raising=False)
    handler = make_handler(server.url)
    logger.addHandler(handler)
    logger.info("hello")
    assert handler.flush(5)
    assert "authorization" not in server.requests[0].headers


def test_entry_fields(server: CaptureServer, make_handler, logger) -> None:
    """An entry carries level, message, service, logger, host, pid, thread, timestamp, id and attributes."""
    handler = make_handler(server.url, service="billing")
    logger.addHandler(handler)
    before = time.time()
    logger.warning("disk %s%%", 91, extra={"disk": "sda", "free": 0.09, "ok": False, "trace_id": "abc123"})
    assert handler.flush(5)
    (entry,) = server.entries
    assert entry["level"] == "warn"
    assert entry["message"] == "disk 91%"
    assert entry["service"] == "billing"
    assert entry["logger"] == logger.name
    assert entry["thread"] == threading.current_thread().name
    assert isinstance(entry["pid"], int) and entry["host"]
    assert entry["attributes"] == {"disk": "sda", "free": 0.09, "ok": False}
    assert entry["trace_id"] == "abc123"
    stamp = time.strptime(entry["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")
    assert abs(time.mktime(stamp) - time.timezone - before) < 5  # UTC


def test_flush_returns_true_when_idle(server: CaptureServer, make_handler) -> None:
    """flush() on a handler that never logged returns True at once."""
    handler = make_handler(server.url)
    started = time.monotonic()
    assert handler.flush(5)
    assert time.monotonic() - started < 0.5


def test_level_filtering_and_handler_filters(server: CaptureServer, make_handler, logger) -> None:
    """The handler level and handler filters decide what is shipped."""
    handler = make_handler(server.url, level=logging.INFO)
    handler.addFilter(lambda record: "secret" not in record.getMessage())
    logger.addHandler(handler)
    logger.debug("too low")
    logger.info("kept")
    logger.info("a secret")
    assert handler.flush(5)
    assert [e["message"] for e in server.entries] == ["kept"]


def test_a_filter_may_replace_the_record_on_every_python(server: CaptureServer, make_handler, logger) -> None:
    """A handler filter returning a record (3.12 semantics, on 3.10/3.11 too) ships that record; the next
    filter sees it; the original, which other handlers get, is left as it was."""
    import copy

    def masked(record: logging.LogRecord) -> logging.LogRecord:
        clean = copy.copy(record)
        clean.msg, clean.args = record.getMessage().replace("hunter2", "***"), None
        return clean

    seen: list[str] = []
    handler = make_handler(server.url)
    handler.addFilter(masked)
    handler.addFilter(lambda record: seen.append(record.getMessage()) or True)
    logger.addHandler(handler)
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "password %s", ("hunter2",), None)
    logger.handle(record)
    assert handler.flush(5)
    assert [e["message"] for e in server.entries] == ["password ***"]
    assert seen == ["password ***"] and record.getMessage() == "password hunter2"


def test_body_is_gzip_of_ndjson_lines() -> None:
    """The transport's body is the gzip of the encoded lines joined (one entry per line)."""
    from oglogstream._buffer import Batch
    from oglogstream._transport import GZIP_LEVEL

    batch = Batch("b1", 1, [b'{"a":1}\n', b'{"a":2}\n'])
    body = gzip.compress(b"".join(batch.lines), compresslevel=GZIP_LEVEL, mtime=0)
    assert gzip.decompress(body).splitlines() == [b'{"a":1}', b'{"a":2}']


def test_message_is_rendered_as_of_the_call(server: CaptureServer, make_handler, logger) -> None:
    """Mutable args changed after the call do not change the shipped message; immutable args render too."""
    handler = make_handler(server.url, flush_interval=60)
    logger.addHandler(handler)
    items = ["a"]
    logger.info("items=%s", items)
    items.append("b")
    logger.info("n=%d s=%s f=%.1f none=%s", 3, "x", 1.25, None)
    logger.info({"not": "a string"})
    assert handler.flush(5)
    assert [e["message"] for e in server.entries] == [
        "items=['a']",
        "n=3 s=x f=1.2 none=None",
        "{'not': 'a string'}",
    ]


def test_bad_format_string_still_ships_the_record(server: CaptureServer, make_handler, logger) -> None:
    """A message whose args do not fit its format string is shipped with an explanation, not lost."""
    handler = make_handler(server.url)
    logger.handlers[:] = [handler]  # pytest's capture handlers would (rightly) report the bad format string
    logger.info("%d apples", "three")
    logger.info("%s and %s", ["mutable"])
    assert handler.flush(5)
    messages = [e["message"] for e in server.entries]
    assert len(messages) == 2 and all("message formatting failed" in m for m in messages)
    assert handler.stats().dropped_total == 0


def test_exception_and_stack_info_are_shipped(server: CaptureServer, make_handler, logger) -> None:
    """logger.exception() ships the formatted traceback, with stack_info=True appended."""
    handler = make_handler(server.url)
    logger.addHandler(handler)
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        logger.exception("it broke", stack_info=True)
    assert handler.flush(5)
    (entry,) = server.entries
    assert entry["level"] == "error"
    assert "RuntimeError: kaput" in entry["exception"]
    assert "Stack (most recent call last)" in entry["exception"]
