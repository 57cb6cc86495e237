"""Entry building: level mapping, timestamps, truncation, attribute conversion - always wire-valid."""

from __future__ import annotations

import json
import logging
import logging.handlers
import math
import os
import queue
import sys
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oglogstream import _wire
from oglogstream._entry import EntryEncoder, StructEvent, clip_bytes, clip_chars, level_for_name, rfc3339

from .capture_server import CaptureServer
from .wire_check import problems


def _server_schema() -> Any:
    """The ingestion server's own validator, when the stack is importable (required when CI=true)."""
    try:
        from oglogstream.stack.ingestion.schema import ENTRY
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        return None
    return ENTRY


SERVER_ENTRY = _server_schema()


def _decode(line: bytes) -> dict[str, Any]:
    """Parse one encoded line and check it against the wire contract and, if present, the server's schema."""
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    entry = json.loads(line.decode("utf-8"), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert problems(entry) == [], problems(entry)
    if SERVER_ENTRY is not None:
        SERVER_ENTRY.validate_json(line)  # raises ValidationError naming the field
    return entry


def _record(
    msg: object = "m", *args: object, level: int = logging.INFO, **extra: object
) -> logging.LogRecord:
    record = logging.LogRecord("app.module", level, __file__, 10, msg, args or None, None)
    record.__dict__.update(extra)
    return record


ENCODER = EntryEncoder("svc")


def test_stdlib_levels_map_to_wire_levels() -> None:
    """WARNING is warn, CRITICAL is fatal, custom levels go to the nearest (ties to the less severe)."""
    expected = {
        5: "debug",
        10: "debug",
        15: "debug",
        20: "info",
        25: "info",
        30: "warn",
        35: "warn",
        40: "error",
        45: "error",
        50: "fatal",
        60: "fatal",
    }
    for levelno, wire in expected.items():
        entry = _decode(ENCODER.encode_record(_record(level=levelno)))
        assert entry["level"] == wire, levelno


def test_structlog_level_names_map() -> None:
    """structlog method/level names map onto the wire levels."""
    assert [level_for_name(n) for n in ("warning", "CRITICAL", "exception", "msg", "trace", "bogus")] == [
        "warn",
        "fatal",
        "error",
        "info",
        "debug",
        "info",
    ]


def test_timestamp_is_rfc3339_utc_with_microseconds() -> None:
    """created is rendered in UTC with exactly six fractional digits and a Z."""
    assert rfc3339(1795773600.123456) == "2026-11-27T10:00:00.123456Z"
    record = _record()
    record.created = 1795773600.5
    assert _decode(ENCODER.encode_record(record))["timestamp"] == "2026-11-27T10:00:00.500000Z"


def test_out_of_range_created_falls_back_to_now() -> None:
    """A nonsense `created` (NaN, year > 9999) still yields a valid timestamp."""
    for created in (math.nan, 1e13, 1e11, -5.0):
        record = _record()
        record.created = created
        _decode(ENCODER.encode_record(record))


def test_ids_are_unique_and_valid() -> None:
    """Each entry gets its own id; two encoders (processes) never share a prefix."""
    ids = {_decode(ENCODER.encode_record(_record()))["id"] for _ in range(1000)}
    other = _decode(EntryEncoder("svc").encode_record(_record()))["id"]
    assert len(ids) == 1000 and other not in ids


def test_long_message_keeps_head_and_tail_with_marker() -> None:
    """A message over 10 KB keeps its head and its tail around the marker, within the limit in UTF-8 bytes."""
    for text in ("a" * 50_000, "é" * 20_000, "😀" * 5000, "a" + "😀" * 2600, "ab" * 6000 + "THE END"):
        message = _decode(ENCODER.encode_record(_record(text)))["message"]
        assert len(message.encode()) <= _wire.MAX_MESSAGE_BYTES
        head, marker, tail = message.partition("…[truncated ")
        assert marker and text.startswith(head) and len(head) >= 1000
        tail = tail.split("]", 1)[1]
        assert text.endswith(tail) and len(tail) >= 1000
        assert int(message.rsplit("truncated ", 1)[1].split()[0]) == len(text.encode()) - len(
            (head + tail).encode()
        )


def test_clip_helpers_report_what_was_cut() -> None:
    """Head + marker + tail; the marker names how many bytes went; short text is returned unchanged."""
    assert clip_bytes("short", 100) == "short"
    clipped = clip_bytes("h" + "x" * 200 + "t", 100)
    assert len(clipped.encode()) <= 100 and clipped.startswith("hx") and clipped.endswith("xt")
    cut = int(clipped.split("truncated ", 1)[1].split()[0])
    assert cut + len(clipped.replace(_wire.TRUNCATION_MARKER.format(n=cut), "")) == 202
    chars = clip_chars("h" + "y" * 5000 + "t", 2048)
    assert len(chars) <= 2048 and chars.startswith("hy") and chars.endswith("yt")
    # A multi-byte character split at either cut is dropped whole: the result is still valid UTF-8.
    for text in ("é" * 300, "a" + "😀" * 100, "😀" * 99 + "a"):
        assert len(clip_bytes(text, 101).encode("utf-8")) <= 101


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=400), limit=st.integers(min_value=60, max_value=300))
def test_clipping_is_within_limit_and_keeps_both_ends_for_any_text(text: str, limit: int) -> None:
    """For any text and limit the clip fits, starts with a prefix of the text and ends with a suffix of it."""
    raw = text.encode("utf-8", "replace").decode("utf-8")
    by_bytes, by_chars = clip_bytes(raw, limit), clip_chars(raw, limit)
    assert len(by_bytes.encode()) <= limit and len(by_chars) <= limit
    for clipped in (by_bytes, by_chars):
        if clipped != raw:
            head, _, rest = clipped.partition("…[truncated ")
            tail = rest.split("]", 1)[1]
            assert raw.startswith(head) and raw.endswith(tail)


def test_traceback_preformatted_by_a_queue_listener_ships_its_error_line(
    server: CaptureServer, make_handler: Any
) -> None:
    """Issue 10 edge 6: behind QueueHandler/QueueListener a >10 KB traceback arrives inside `message`; the
    entry the server receives still ends with the traceback's last line, the one naming the error."""
    handler = make_handler(server.url)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, handler)
    log = logging.getLogger("sdktest.queue_listener")
    log.propagate = False
    log.addHandler(logging.handlers.QueueHandler(records))
    listener.start()
    try:

        def layer(n: int) -> None:
            if not n:
                raise ValueError("root cause " + "." * 2000)
            try:
                layer(n - 1)
            except ValueError as exc:
                raise ValueError(f"layer {n} " + "." * 2000) from exc

        try:
            try:
                layer(10)  # a chain of 11 exceptions: a traceback of ~25 KB
            except ValueError as exc:
                raise KeyError("the-missing-key") from exc
        except KeyError:
            log.exception("request failed")
    finally:
        listener.stop()
        log.handlers.clear()
    assert handler.flush(10)
    assert server.problems == []
    [entry] = [e for e in server.entries if e.get("logger") == "sdktest.queue_listener"]
    message = entry["message"]
    assert len(message.encode()) <= _wire.MAX_MESSAGE_BYTES and "…[truncated " in message
    assert message.startswith("request failed\nTraceback (most recent call last):")
    assert message.endswith("KeyError: 'the-missing-key'")


def test_empty_message_is_replaced() -> None:
    """An empty message would be rejected by the server, so a placeholder is sent."""
    assert _decode(ENCODER.encode_record(_record("")))["message"] == "(empty message)"


def test_exception_is_formatted_and_keeps_head_and_tail() -> None:
    """exc_info becomes a formatted traceback; a huge one keeps its first frames and its last (error) line."""
    try:
        raise ValueError("x" * 100_000 + " the error")
    except ValueError:
        record = _record(exc_info=sys.exc_info())
    record.exc_info = record.__dict__.pop("exc_info")
    entry = _decode(ENCODER.encode_record(record))
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert "…[truncated " in entry["exception"]
    assert entry["exception"].endswith("x the error")
    assert "exc_info" not in entry.get("attributes", {})


def test_attributes_convert_values() -> None:
    """Strings/numbers/bools stay; None, nested values, huge ints, NaN and objects become strings."""

    class Boom:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    cyclic: list[Any] = []
    cyclic.append(cyclic)
    extra = {
        "s": "v",
        "i": 3,
        "f": 1.5,
        "b": True,
        "n": None,
        "nested": {"a": [1, {"b": None}]},
        "big": 2**70,
        "nan": math.nan,
        "inf": math.inf,
        "-inf": -math.inf,
        "nested_nan": [math.inf, {"x": math.nan}, (1, -math.inf)],
        "obj": Boom(),
        "cyc": cyclic,
        "set": {1},
        5: "int key",
    }
    record = _record()
    record.__dict__.update({str(k) if k == 5 else k: v for k, v in extra.items()})
    attrs = _decode(ENCODER.encode_record(record))["attributes"]
    assert attrs["s"] == "v" and attrs["i"] == 3 and attrs["f"] == 1.5 and attrs["b"] is True
    assert attrs["n"] == "None"
    assert json.loads(attrs["nested"]) == {"a": [1, {"b": None}]}
    assert attrs["big"] == str(2**70)
    assert (attrs["nan"], attrs["inf"], attrs["-inf"]) == ("NaN", "Infinity", "-Infinity")
    # Nested too, as OTLP spells them: the text stays valid JSON (was "[Infinity, {...NaN}]").
    assert json.loads(attrs["nested_nan"]) == ["Infinity", {"x": "NaN"}, [1, "-Infinity"]]
    assert attrs["obj"].startswith("<unrepresentable ") and attrs["obj"].endswith("Boom>")
    assert attrs["cyc"] == "[[...]]" and attrs["set"] == "{1}"


def test_too_many_attributes_are_bounded() -> None:
    """More than MAX_ATTRIBUTES keys: the first ones are kept plus a count of the rest."""
    record = _record()
    record.__dict__.update({f"k{i}": i for i in range(200)})
    attrs = _decode(ENCODER.encode_record(record))["attributes"]
    assert len(attrs) == _wire.MAX_ATTRIBUTES
    assert attrs["oglog.dropped_attributes"] == 200 - (_wire.MAX_ATTRIBUTES - 1)


def test_context_attributes_merge_with_extra_winning() -> None:
    """Context values are shipped as attributes; an `extra=` key with the same name wins."""
    record = _record(user="from-extra")
    attrs = _decode(ENCODER.encode_record(record, {"user": "ctx", "tenant": "t1"}))["attributes"]
    assert attrs == {"user": "from-extra", "tenant": "t1"}


def test_struct_event_fields_map() -> None:
    """A structlog event maps event->message, level, logger, timestamp; other keys -> attributes."""
    event = StructEvent(
        {
            "event": "paid",
            "level": "warning",
            "logger": "shop",
            "amount": 5,
            "timestamp": "2026-11-27T10:00:00.250000Z",
            "user": {"id": 1},
        },
        "warning",
        0.0,
        "worker-1",
        None,
    )
    entry = _decode(ENCODER.encode_struct(event, None))
    assert (entry["message"], entry["level"], entry["logger"], entry["thread"]) == (
        "paid",
        "warn",
        "shop",
        "worker-1",
    )
    assert entry["timestamp"] == "2026-11-27T10:00:00.250000Z"
    assert entry["attributes"] == {"amount": 5, "user": '{"id": 1}'}


# Includes lone surrogates, NULs, quotes and control characters (the JSON escaping corner cases).
_chars = st.characters(codec=None) | st.sampled_from('\ud800\udfff\x00"\\\n\x7f\u2028')
_text = st.text(alphabet=_chars, max_size=3000) | st.text(max_size=30)
_long = st.tuples(st.text(alphabet=_chars, min_size=1, max_size=8), st.integers(1000, 4000)).map(
    lambda t: t[0] * t[1]
)
_leaf = st.none() | st.booleans() | st.integers() | st.floats() | _text | st.binary(max_size=50)
_values = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=10,
)
_keys = st.text(min_size=1, max_size=300).filter(
    lambda k: (
        k not in logging.LogRecord("n", 0, "p", 0, "", None, None).__dict__
        and k not in ("message", "asctime")
    )
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    message=_text | _long,
    extra=st.dictionaries(_keys, _values, max_size=80),
    levelno=st.integers(min_value=0, max_value=100),
    logger_name=st.text(max_size=400),
)
def test_any_message_and_extra_gives_a_valid_entry(
    message: str, extra: dict[str, Any], levelno: int, logger_name: str
) -> None:
    """Whatever the message, logger name and extra values, the line parses and passes every wire limit."""
    record = logging.LogRecord(logger_name, levelno, "p", 1, message, None, None)
    record.__dict__.update(extra)
    _decode(ENCODER.encode_record(record))


@settings(max_examples=100, deadline=None)
@given(
    event=st.dictionaries(st.text(max_size=200) | st.integers(), _values, max_size=70),
    method=st.text(max_size=20),
)
def test_any_struct_event_gives_a_valid_entry(event: dict[Any, Any], method: str) -> None:
    """Whatever a structlog event dict holds, the line parses and passes every wire limit."""
    _decode(ENCODER.encode_struct(StructEvent(event, method, time.time(), "t", None), {"ctx": object()}))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(_text, min_size=1, max_size=20), extra=st.dictionaries(_keys, _values, max_size=10))
def test_any_records_are_accepted_by_a_validating_server(
    server: CaptureServer, make_handler, messages: list[str], extra: dict[str, Any]
) -> None:
    """End to end: arbitrary records sent through the handler all pass the server's validation."""
    handler = make_handler(server.url)
    log = logging.getLogger("sdktest.hypothesis")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    try:
        before = server.entry_count
        for message in messages:
            log.error(message, extra=extra)
        assert handler.flush(5)
        assert server.problems == []
        assert server.entry_count - before == len(messages)
    finally:
        log.removeHandler(handler)
        handler.close(2)
