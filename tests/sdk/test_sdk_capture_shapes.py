"""What a captured record keeps and is charged whatever its shape: its `extra=` fields are the keys that are
not standard LogRecord attributes, whatever a filter deleted, set again or added (or a hand-made record
lacks), and every value it keeps (number arguments, non-str extras, an exception's text) is charged at least
what it holds."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oglogstream import OgLogHandler
from oglogstream._capture import LAST_RECORD_KEY, SNAPSHOT_KEYS, capture, extra_items
from oglogstream._entry import EntryEncoder
from oglogstream._entry_values import _STANDARD_KEYS
from oglogstream._intake_charge import LARGE_MESSAGE, record_charge
from oglogstream._value_charge import (
    ARG_BYTES,
    EXTRA_ATTR_BYTES,
    FREE_ARGS,
    OBJECT_FALLBACK_BYTES,
    args_bytes,
    copy_extras,
    exc_info_bytes,
    object_bytes,
    str_bytes,
)

_OWN = tuple(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None).__dict__)
#: Attributes a filter may delete: all but what `getMessage` and the encoder's fast path need.
_DELETABLE = tuple(key for key in _OWN if key not in ("msg", "args", "name", "levelno", "created"))
_EXTRA_KEYS = st.sampled_from(["user", "order", "a", "b", "c"])
_LATE_KEYS = st.sampled_from(["late1", "late2", "message", "asctime"])


def _attributes(item: tuple[Any, ...]) -> list[tuple[str, Any]]:
    line = EntryEncoder("svc").encode_captured(item)  # type: ignore[arg-type]
    return list(json.loads(line).get("attributes", {}).items())


def _handled(record: logging.LogRecord) -> tuple[Any, ...]:
    """The item an OgLogHandler's capture puts in its intake for `record` (no worker: it stays there)."""
    handler = OgLogHandler("http://127.0.0.1:9", "shapes")
    handler._pipeline.soft_limit = 10**9
    handler._pipeline.submit_slow = handler._pipeline.intake.append  # type: ignore[method-assign]
    try:
        handler.handle(record)
        return handler._pipeline.intake.popleft()
    finally:
        handler._pipeline.intake.clear()
        handler._pipeline.intake_weights.clear()
        handler._pipeline.soft_limit = 0
        handler.close(0.5)


def _exc_info() -> Any:
    try:
        raise ValueError("boom")
    except ValueError:
        return sys.exc_info()


# ----------------------------------------------------------------- extras found by key, not by position


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    extra=st.dictionaries(_EXTRA_KEYS, st.integers(0, 99), max_size=4),
    deleted=st.sets(st.sampled_from(_DELETABLE), max_size=5),
    set_again=st.lists(st.sampled_from(_DELETABLE), unique=True, max_size=4),
    late=st.dictionaries(_LATE_KEYS, st.text("xyz", max_size=3), max_size=2),
    late_first=st.booleans(),
    with_exc=st.booleans(),
)
def test_extras_are_the_non_standard_keys_whatever_a_filter_did(
    extra: dict[str, int], deleted: set[str], set_again: list[str], late: dict[str, str], late_first: bool,
    with_exc: bool,
) -> None:
    """Deleted, set-again (moved to the end, in any order, LAST_RECORD_KEY included) and added attributes:
    the capture (handler and `capture`), its encoding and the whole record's encoding all give exactly the
    non-standard keys, in their order, as the plain walk over the record's dict does (before: `del
    r.pathname` lost the first extra; deleting N attributes and setting `process` again lost N extras)."""
    record = logging.getLogger("shapes").makeRecord(
        "shapes", logging.INFO, "f", 1, "m %s", ("a",), _exc_info() if with_exc else None, extra=extra
    )
    for key in deleted:
        delattr(record, key)
    for key, value in late.items() if late_first else ():
        setattr(record, key, value)
    for key in set_again:
        if key in deleted:
            setattr(record, key, 1)
    for key, value in () if late_first else late.items():
        setattr(record, key, value)
    expected = [(key, value) for key, value in record.__dict__.items() if key not in _STANDARD_KEYS]

    assert extra_items(record.__dict__) == expected
    item = capture(record, None)
    if item[0] is not record.__dict__:
        assert list(item[0].items())[len(SNAPSHOT_KEYS):] == expected
        ours = _handled(record)
        assert ours[0] == item[0] and ours[1:] == item[1:]
    assert _attributes(item) == expected
    assert _attributes((record.__dict__, *item[1:])) == expected  # the whole record, through the encoder


def test_a_filter_deleting_n_attributes_and_setting_process_again_keeps_every_extra() -> None:
    """The blind spot of the position check: N extras, a filter deletes N attributes and sets `process`
    again, so the record has a plain record's length and ends with LAST_RECORD_KEY (before: no extra
    shipped). Through the handler's capture, `capture`, and the encoder of the whole record (an exception)."""
    for n in (1, 2, 3):
        for with_exc in (False, True):
            extra = {f"e{i}": i for i in range(n)}
            record = logging.getLogger("x").makeRecord(
                "x", 20, "f", 1, "hi", None, _exc_info() if with_exc else None, extra=extra
            )
            for key in ("pathname", "filename", "module")[:n]:
                delattr(record, key)
            process = record.process
            del record.process
            record.process = process
            assert len(record.__dict__) == len(_OWN) and next(reversed(record.__dict__)) == LAST_RECORD_KEY
            expected = list(extra.items())
            assert extra_items(record.__dict__) == expected
            item = capture(record, None)
            assert _attributes(item) == expected
            assert _attributes(_handled(record)) == expected, (n, with_exc)


def test_a_filter_deleting_pathname_keeps_every_extra() -> None:
    """The reviewer's case: `del record.pathname` with extras user and order ships both (before: order)."""
    extra = {"user": "bob", "order": 7}
    record = logging.getLogger("x").makeRecord("x", 20, "f", 1, "hi", None, None, extra=extra)
    del record.pathname
    item = capture(record, None)
    assert list(item[0])[len(SNAPSHOT_KEYS):] == ["user", "order"]
    assert _attributes(item) == [("user", "bob"), ("order", 7)]


def test_a_hand_made_record_ships_its_extras() -> None:
    """A record made with `LogRecord.__new__` holding only what the SDK reads, then extras (before: none
    shipped), and one with a single extra and one deleted attribute (before: lost)."""
    record = logging.LogRecord.__new__(logging.LogRecord)
    record.__dict__.update(
        name="hand", msg="made", args=None, levelno=20, created=1764438000.5, thread=1, threadName="T",
        process=2, exc_info=None, stack_info=None, user="u1", order=3,
    )
    assert _attributes(capture(record, None)) == [("user", "u1"), ("order", 3)]
    one = logging.getLogger("x").makeRecord("x", 20, "f", 1, "hi", None, None, extra={"user": "bob"})
    del one.module
    assert _attributes(capture(one, None)) == [("user", "bob")]


# ----------------------------------------------------------------- every kept value charged


def test_arguments_beyond_two_are_charged_by_count_and_type() -> None:
    """Number arguments kept for the worker cost a slot and an object each: ARG_BYTES beyond FREE_ARGS, a
    large int its size besides; the typical one or two small arguments cost nothing more."""
    assert args_bytes((1, 2.5)) == 0
    assert args_bytes(("ab", 7)) == 2
    assert args_bytes(tuple(0.5 + i for i in range(6))) == (6 - FREE_ARGS) * ARG_BYTES
    big = 10**300
    assert args_bytes((big,)) == sys.getsizeof(big)
    record = logging.LogRecord("n", 20, "p", 1, "m" + " %s" * 20, tuple(0.5 + i for i in range(20)), None)
    item = capture(record, None)
    assert item[2] is not None  # kept for the worker, not rendered now
    assert item[5] == 61 + 18 * ARG_BYTES  # its size: from LARGE_MESSAGE on the charge is the size


def test_non_str_extras_are_charged_their_size() -> None:
    """UUID, Decimal, a huge int, a memoryview: `sys.getsizeof` (the view's buffer too) beyond
    EXTRA_ATTR_BYTES; a value whose `__sizeof__` raises is charged OBJECT_FALLBACK_BYTES, and its record is
    still captured (not counted as an internal error)."""

    class Odd:
        def __sizeof__(self) -> int:
            raise RuntimeError("no size")

    value = uuid.uuid4()
    assert object_bytes(value) == sys.getsizeof(value)
    assert object_bytes(Decimal(1) / 7) == sys.getsizeof(Decimal(1) / 7)
    view = memoryview(b"x" * 100)
    assert object_bytes(view) == sys.getsizeof(view) + 100
    assert object_bytes(Odd()) == OBJECT_FALLBACK_BYTES
    record = logging.LogRecord("n", 20, "p", 1, "m", None, None)
    record.__dict__.update(n=10**300, odd=Odd(), small=5, ratio=0.5)
    assert copy_extras(record.__dict__, {}) == (
        4 * EXTRA_ATTR_BYTES + sys.getsizeof(10**300) + OBJECT_FALLBACK_BYTES
    )
    handler = OgLogHandler("http://127.0.0.1:9", "odd")
    handler._pipeline.soft_limit = 10**9
    try:
        assert handler.handle(record)
        assert len(handler._pipeline.intake) == 1
        assert not handler.stats().dropped
    finally:
        handler._pipeline.intake.clear()
        handler._pipeline.intake_weights.clear()
        handler._pipeline.soft_limit = 0
        handler.close(0.5)


def _raise(depth: int) -> None:
    if depth:
        _raise(depth - 1)
    try:
        raise KeyError("inner")
    except KeyError as exc:
        raise ValueError("outer " + "x" * 200) from exc


def _deep(depth: int) -> Any:
    """An exc_info whose ValueError went up `depth` + 1 calls, chained from a KeyError."""
    try:
        _raise(depth)
    except ValueError:
        return sys.exc_info()


def test_a_record_with_an_exception_is_charged_its_traceback_text() -> None:
    """A record's exception (chained ones included) is captured as its text, charged by the str rule with
    the message and extras (`exc_info_bytes`), from LARGE_MESSAGE on as a large record; a Formatter run
    after the capture adds nothing to what waits (before: the record's `__dict__` was kept with its
    traceback, charged ~1.5 KB + 512 B a frame whatever its frames' locals held)."""
    shallow, deep = _deep(0), _deep(10)

    def record(exc_info: Any) -> logging.LogRecord:
        return logging.LogRecord("n", 40, "p", 1, "failed", None, exc_info)

    charges: list[tuple[int, int]] = []
    for exc_info in (shallow, deep):
        failed = record(exc_info)
        item = capture(failed, None)
        text = item[0]["exc_info"]
        assert type(text) is str and item[0]["stack_info"] is None
        assert text == logging.Formatter().formatException(exc_info)
        assert "KeyError: 'inner'" in text and text.endswith("ValueError: outer " + "x" * 200)
        size = str_bytes("failed") + sys.getsizeof(text)
        assert item[5] == record_charge(size, 0)
        assert _handled(failed)[5] == item[5]
        logging.Formatter().format(failed)  # a later handler formats the record: the capture is unchanged
        assert item[0]["exc_info"] is text and "message" not in item[0]
        charges.append((item[5], size))
    assert charges[0][1] < LARGE_MESSAGE <= charges[1][1] == charges[1][0]  # deeper: a large record
    assert exc_info_bytes(None) == 0
