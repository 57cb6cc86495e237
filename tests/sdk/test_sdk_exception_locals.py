"""A record or event logged with an exception holds its traceback's text, not the traceback: the frames'
locals (a request body, a big buffer) are freed when the call returns, so what waits for a stuck server
stays within `max_buffer_bytes` (default settings). Before, every waiting `logger.exception` kept its
frames alive, charged ~2 KB: 2,000 failures holding a distinct 100 KB local each took ~200 MB against the
128 MiB budget (the stdlib's `QueueHandler.prepare` drops `exc_info` for the same reason)."""

from __future__ import annotations

import asyncio
import builtins
import gc
import logging
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from oglogstream import AsyncOgLogClient, OgLogHandler, OgLogProcessor
from oglogstream._entry_values import FRAME_TEXT_MAX, _format_exception, _FrameTexts
from oglogstream._settings import DEFAULT_BATCH_BYTES, DEFAULT_MAX_BUFFER_BYTES
from oglogstream.wire import MAX_EXCEPTION_BYTES

from .capture_server import BlackHoleServer, CaptureServer

#: Failures logged, each in a function holding a distinct LOCAL_BYTES local: 2x the default budget in all.
FAILURES = 2_000
LOCAL_BYTES = 128 * 1024
#: What the measured window may hold besides the budget: a batch in flight and one local being built.
MARGIN = DEFAULT_BATCH_BYTES + LOCAL_BYTES


def _handle_request(i: int) -> None:
    body = f"{i:08d}" * (LOCAL_BYTES // 8)  # a distinct request body per failure: nothing shared
    raise ValueError(f"request {i} failed ({len(body)} bytes)")


def _held_after_failures(log: Callable[[int], object]) -> int:
    """Bytes (tracemalloc) still held after FAILURES calls of `log(i)`, each in the `except` block of a
    failed `_handle_request(i)`."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(FAILURES):
            try:
                _handle_request(i)
            except ValueError:
                log(i)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_logged_exceptions_behind_a_stuck_server_stay_within_the_budget(
    stuck_handler: OgLogHandler, logger: logging.Logger
) -> None:
    """`logger.exception` with default settings: what the waiting records hold stays within the budget,
    and each waiting record holds its traceback's text (the last line names the error)."""
    logger.handlers[:] = [stuck_handler]  # pytest's capturing handlers keep every record (and traceback)
    held = _held_after_failures(lambda i: logger.exception("request %d failed", i))
    assert held <= DEFAULT_MAX_BUFFER_BYTES + MARGIN, held
    stats = stuck_handler.stats()
    assert stats.sent + stats.dropped_total + stats.queued == FAILURES
    waiting = list(stuck_handler._pipeline.intake)
    assert waiting and all(type(item[0]["exc_info"]) is str for item in waiting)
    last_line = f"ValueError: request {FAILURES - 1} failed ({LOCAL_BYTES} bytes)"
    assert waiting[-1][0]["exc_info"].endswith(last_line)


def test_structlog_exception_events_behind_a_stuck_server_stay_within_the_budget() -> None:
    """The structlog processor's `log.exception()` events (exc_info=True) with default settings."""
    server = BlackHoleServer()
    processor = OgLogProcessor(server.url, "locals")
    try:
        held = _held_after_failures(
            lambda i: processor(None, "error", {"event": "failed", "i": i, "exc_info": True})
        )
        assert held <= DEFAULT_MAX_BUFFER_BYTES + MARGIN, held
        stats = processor.stats()
        assert stats.sent + stats.dropped_total + stats.queued == FAILURES
    finally:
        processor.close(0.5)
        server.close()


def test_async_exception_events_behind_a_stuck_server_stay_within_the_budget() -> None:
    """`AsyncOgLogClient.exception()` from the loop (no await: the sending task cannot run meanwhile)."""
    server = BlackHoleServer()

    async def main() -> None:
        client = AsyncOgLogClient(server.url, "locals", drain_on_sigterm=False)
        try:
            held = _held_after_failures(lambda i: client.exception("failed", i=i))
            assert held <= DEFAULT_MAX_BUFFER_BYTES + MARGIN, held
            stats = client.stats()
            assert stats.sent + stats.dropped_total + stats.queued == FAILURES
        finally:
            await client.aclose(timeout=0.5)

    try:
        asyncio.run(main())
    finally:
        server.close()


# ----------------------------------------------------------------- formatting that fails, at the call


class _Unprintable(Exception):
    """An exception whose `__str__` raises what user code may raise, a BaseException included."""

    def __str__(self) -> str:
        raise KeyboardInterrupt


class _Recursive(Exception):
    """An exception whose `__str__` recurses without end (a RecursionError inside the formatting)."""

    def __str__(self) -> str:
        return str(self)


def _exc_infos() -> list[object]:
    """exc_info values whose formatting raises or recurses, and a triple that is no exception at all."""
    infos: list[object] = []
    for kind in (_Unprintable, _Recursive):
        try:
            raise kind()
        except Exception as exc:
            infos.append(exc)
    infos.append(("not", "an", "exception"))
    return infos


def test_an_exception_whose_formatting_fails_ships_its_record_and_never_raises(
    server: CaptureServer, logger: logging.Logger
) -> None:
    """The handler, the structlog processor and the asyncio client format at the call now: whatever the
    formatting raises (KeyboardInterrupt from `__str__`, a recursion, a triple of strings) stays inside the
    SDK, the record ships, and its exception field is the worker's former rule's text, the same on every
    path (the traceback with `<exception str() failed>`, or a placeholder naming the error)."""
    handler = OgLogHandler(server.url, "fails")
    logger.handlers[:] = [handler]
    processor = OgLogProcessor(handler=handler)
    infos = _exc_infos()
    for i, info in enumerate(infos):
        logger.error("record %d", i, exc_info=info)  # type: ignore[arg-type]
        processor(None, "error", {"event": f"event {i}", "exc_info": info})

    async def main() -> None:
        client = AsyncOgLogClient(server.url, "fails", drain_on_sigterm=False)
        for i, info in enumerate(infos):
            client.error(f"async {i}", exc_info=info)
        assert await client.flush(timeout=30)
        assert client.stats().dropped == {}
        await client.aclose(timeout=5)

    asyncio.run(main())
    assert handler.flush(30)
    assert handler.stats().dropped == {}
    assert server.wait_entries(3 * len(infos), timeout=30)
    by_message = {entry["message"]: entry for entry in server.entries}
    for i in range(len(infos)):  # the same text on every path
        texts = {by_message[f"{prefix} {i}"]["exception"] for prefix in ("record", "event", "async")}
        assert len(texts) == 1, texts
    assert by_message["record 0"]["exception"].endswith("_Unprintable: <exception str() failed>")
    assert by_message["record 1"]["exception"].endswith("_Recursive: <exception str() failed>")
    assert by_message["record 2"]["exception"].startswith("<traceback unavailable: ")
    handler.close(5)


class _Interrupted(Exception):
    """An exception whose `__notes__` lookup raises KeyboardInterrupt: a Ctrl-C (or an app's SIGTERM handler's
    SystemExit) arriving while `logger.exception` formats, outside what `traceback` itself catches."""

    @property
    def __notes__(self) -> list[str]:
        raise KeyboardInterrupt


def test_a_signal_while_the_traceback_is_formatted_reaches_the_application(
    server: CaptureServer, logger: logging.Logger
) -> None:
    """The formatting runs on the caller's thread: a KeyboardInterrupt raised during it propagates out of
    `logger.exception`, `OgLogProcessor` and `AsyncOgLogClient.exception` as through the stdlib's own
    handlers (the SDK review: an app's SIGTERM handler's `sys.exit` was swallowed 4 of 4 times)."""
    handler = OgLogHandler(server.url, "signal")
    logger.handlers[:] = [handler]
    processor = OgLogProcessor(handler=handler)
    try:
        raise _Interrupted()
    except _Interrupted as exc:
        caught = exc
    with pytest.raises(KeyboardInterrupt):
        logger.error("interrupted", exc_info=caught)
    with pytest.raises(KeyboardInterrupt):
        processor(None, "error", {"event": "interrupted", "exc_info": caught})

    async def main() -> None:
        client = AsyncOgLogClient(server.url, "signal", drain_on_sigterm=False)
        try:
            with pytest.raises(KeyboardInterrupt):
                client.error("interrupted", exc_info=caught)
        finally:
            await client.aclose(timeout=5)

    asyncio.run(main())
    handler.close(5)


def test_event_tracebacks_are_clipped_at_the_call_as_records_are() -> None:
    """A structlog event's exception text is clipped to the wire's limit when it is captured, as a record's
    is: ten 4 MB exception messages hold ~32 KB each, not 4 MB (the SDK review: 12.5 MiB held)."""
    black_hole = BlackHoleServer()
    processor = OgLogProcessor(black_hole.url, "clip")
    try:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(10):
            try:
                raise ValueError("x" * 4_000_000)
            except ValueError as exc:
                processor(None, "error", {"event": "big", "exc_info": exc})
                del exc
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert held < 10 * (2 * MAX_EXCEPTION_BYTES + 4096), held
    finally:
        processor.close(0.5)
        black_hole.close()


def test_a_filters_redacted_exc_text_is_what_ships(server: CaptureServer, logger: logging.Logger) -> None:
    """A record's `exc_text` (set by a filter that redacts, or an earlier Formatter) is shipped instead of
    formatting `exc_info` again, as `logging.Formatter.format` does (the SDK review: the console was
    redacted, the shipped field still held the password)."""

    def redact(record: logging.LogRecord) -> bool:
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info).replace("hunter2", "***")
        return True

    handler = OgLogHandler(server.url, "redact")
    handler.addFilter(redact)
    logger.handlers[:] = [handler]
    try:
        raise PermissionError("login failed for password=hunter2")
    except PermissionError:
        logger.exception("login")
    assert handler.flush(30)
    assert server.wait_entries(1, timeout=30)
    shipped = server.entries[0]["exception"]
    assert "hunter2" not in shipped and "password=***" in shipped
    handler.close(5)


def test_the_frame_cache_keeps_no_long_source_lines(tmp_path: Path) -> None:
    """Frames whose text is longer than FRAME_TEXT_MAX (a minified line) are formatted, not kept: the
    cache stays within FRAME_TEXT_CACHE x FRAME_TEXT_MAX characters (the review: 40 MB for 1,000 frames)."""
    source = tmp_path / "minified.py"
    source.write_text("def fail():\n    raise ValueError(" + repr("y" * 20_000) + ")\n")
    namespace: dict[str, object] = {}
    exec(compile(source.read_text(), str(source), "exec"), namespace)
    try:
        namespace["fail"]()  # type: ignore[operator]
    except ValueError as exc:
        assert _format_exception(exc).count("y" * 20_000) >= 2  # the source line and the message
    assert all(len(text) <= FRAME_TEXT_MAX for text in _FrameTexts._texts.values())


# ----------------------------------------------------------------- the text is the stdlib's, byte for byte


def _recurse(n: int) -> None:
    _recurse(n + 1)


def _shapes() -> list[BaseException]:
    """Exceptions of every shape `traceback.format_exception` formats its own way."""
    made: list[BaseException] = []

    def keep(make: Callable[[], object]) -> None:
        try:
            make()
        except BaseException as exc:  # SyntaxError, RecursionError, groups: every shape
            made.append(exc)

    def chained() -> None:
        try:
            {}["k"]  # a KeyError raised from a subscript (a caret line)
        except KeyError as inner:
            raise ValueError("outer") from inner

    def implicit() -> None:
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            raise LookupError("during handling")  # noqa: B904 - the implicit context is the shape

    def suppressed() -> None:
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            raise LookupError("suppressed") from None

    def noted() -> None:
        exc = ValueError("with a note")
        exc.add_note("a note\nof two lines")  # Python 3.11+
        raise exc

    def grouped() -> None:
        group = builtins.ExceptionGroup  # Python 3.11+
        raise group("group", [ValueError("a"), group("inner", [KeyError("b")])])

    keep(chained)
    keep(implicit)
    keep(suppressed)
    if sys.version_info >= (3, 11):
        keep(noted)
        keep(grouped)
    keep(lambda: _recurse(0))
    keep(lambda: compile("x = (1,\n", "<input>", "exec"))
    keep(lambda: _handle_request(7))
    keep(lambda: [1][len("ab") * 3 - 1 : 2][5])
    return made


def test_the_exception_text_is_the_stdlib_format_exception_text() -> None:
    """`_format_exception` (its frames' text remembered per frame) gives `traceback.format_exception`'s
    text for chained, implicit, suppressed, noted, grouped, recursive (repeated frames) and syntax errors,
    the first time and from the cache."""
    import traceback

    from oglogstream._entry_values import _format_exception

    shapes = _shapes()
    assert len(shapes) == (9 if sys.version_info >= (3, 11) else 7)
    for exc in shapes * 2:  # the second pass reads every frame from the cache
        expected = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip("\n")
        assert _format_exception(exc) == expected
        assert _format_exception((type(exc), exc, exc.__traceback__)) == expected
