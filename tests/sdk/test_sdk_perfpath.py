"""The worker's fast paths build exactly what the general code builds: entry encoding, ingest, batch cuts."""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oglogstream._buffer import Pending
from oglogstream._delivery import Ledger
from oglogstream._entry import EntryEncoder
from oglogstream._ingest import ingest
from oglogstream._settings import Settings

_VALUES = st.one_of(
    st.text(max_size=40),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.text(min_size=2040, max_size=2100),
)
_KEYS = st.one_of(
    st.sampled_from(["user_id", "trace_id", "span_id", "message", "asctime", "k" * 200]),
    st.text(min_size=1, max_size=20),
)


def _captured(
    msg: str, args: tuple[Any, ...] | None, extra: dict[str, Any], level: int, name: str, thread: str
) -> tuple[Any, ...]:
    record = logging.LogRecord(name, level, __file__, 1, msg, None, None)
    record.threadName = thread
    record.__dict__.update(extra)
    return (record.__dict__, msg, args, None, None, 0)  # a CapturedRecord: its charge last


def _without_id(line: bytes) -> tuple[list[str], dict[str, Any]]:
    entry = json.loads(line)
    entry.pop("id")
    return list(entry), entry


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    msg=st.sampled_from(["plain", "", "took %d ms", "x" * 3000, "caf\u00e9 \ud800"]),
    value=st.integers(min_value=-(2**70), max_value=2**70),
    extra=st.dictionaries(_KEYS, _VALUES, max_size=3),
    level=st.sampled_from([10, 20, 25, 30, 40, 50]),
    name=st.sampled_from(["app", "", "n" * 300]),
    thread=st.sampled_from(["MainThread", "worker-1", ""]),
)
def test_fast_path_builds_the_same_entry_as_the_general_path(
    msg: str, value: int, extra: dict[str, Any], level: int, name: str, thread: str
) -> None:
    """Once its caches are warm, `encode_captured` gives the bytes `_encode_general` gives (ids aside)."""
    encoder = EntryEncoder("svc")
    args = (value,) if "%" in msg else None
    item = _captured(msg, args, extra, level, name, thread)
    encoder.encode_captured(item)  # warms the caches for this level, logger and thread
    rendered = msg % args if args is not None else msg
    general = encoder._encode_general(item[0], rendered, None, None)
    fast = encoder.encode_captured(item)
    assert _without_id(fast) == _without_id(general)
    assert fast.split(b'"', 4)[4] == general.split(b'"', 4)[4]  # byte for byte after the id


def test_common_records_take_the_fast_path(monkeypatch: Any) -> None:
    """A stream of ordinary records goes through the general path only for the first of each shape."""
    encoder = EntryEncoder("svc")
    calls = []
    general = encoder._encode_general

    def counting(*args: Any) -> bytes:
        calls.append(1)
        return general(*args)

    monkeypatch.setattr(encoder, "_encode_general", counting)
    lines = [
        encoder.encode_captured(_captured("handled in %d ms", (i,), {"user_id": i}, 20, "app", "Main"))
        for i in range(100)
    ]
    assert len(calls) == 1
    entries = [json.loads(line) for line in lines]
    assert [e["message"] for e in entries] == [f"handled in {i} ms" for i in range(100)]
    assert [e["attributes"] for e in entries] == [{"user_id": i} for i in range(100)]
    assert len({e["id"] for e in entries}) == 100


class _SizedEncoder:
    """Stands in for EntryEncoder: an item says how long its line is (0 means: encoding fails)."""

    def __init__(self) -> None:
        self.encoded = 0

    def encode_captured(self, item: tuple[Any, ...]) -> bytes:
        self.encoded += 1
        if not item[0]:
            raise ValueError("cannot encode")
        return b"x" * item[0]

    def encode_lines(self, items: list[tuple[Any, ...]]) -> Iterator[bytes | BaseException]:
        for item in items:  # as `EntryEncoder.encode_lines`: a failure is yielded, the next item encoded
            try:
                line: bytes | BaseException = self.encode_captured(item)
            except ValueError as exc:
                line = exc
            yield line

    def encode_struct(self, *args: Any) -> bytes:
        raise AssertionError("only captured records are used here")


def _reference_ingest(
    intake: deque[Any],
    pending: Pending,
    encoder: _SizedEncoder,
    s: Settings,
    bounded: bool,
    held: tuple[int, int],
    limit: int,
) -> tuple[int, int, int]:
    """The straightforward loop: (taken, overflow drops, encode failures)."""
    taken = dropped = failed = 0
    while taken != limit and not (bounded and pending.ready(s.batch_size, s.batch_bytes)):
        if not intake:
            break
        item = intake.popleft()
        taken += 1
        try:
            line = encoder.encode_captured(item)
        except ValueError:
            failed += 1
            continue
        dropped += pending.push(line, *held)
    return taken, dropped, failed


@settings(max_examples=400, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=3000), max_size=60),
    preload=st.lists(st.integers(min_value=1, max_value=3000), max_size=20),
    batch_size=st.integers(min_value=1, max_value=25),
    batch_bytes=st.integers(min_value=1024, max_value=20_000),
    max_records=st.integers(min_value=1, max_value=40),
    max_bytes=st.integers(min_value=2 * 1024 * 1024, max_value=2 * 1024 * 1024 + 30_000),
    drop_oldest=st.booleans(),
    bounded=st.booleans(),
    held_records=st.integers(min_value=0, max_value=10),
    held_bytes=st.sampled_from([0, 2 * 1024 * 1024 - 5000]),
    limit=st.sampled_from([-1, 0, 1, 7]),
)
def test_ingest_matches_the_straightforward_loop(
    sizes: list[int],
    preload: list[int],
    batch_size: int,
    batch_bytes: int,
    max_records: int,
    max_bytes: int,
    drop_oldest: bool,
    bounded: bool,
    held_records: int,
    held_bytes: int,
    limit: int,
) -> None:
    """`ingest` takes, keeps and drops exactly what a per-entry loop over `Pending.push` would, and encodes
    only the items it takes."""
    s = Settings.build(
        "http://localhost:1",
        "svc",
        batch_size=batch_size,
        batch_bytes=batch_bytes,
        max_buffer_records=max_records,
        max_buffer_bytes=max_bytes,
        overflow="drop_oldest" if drop_oldest else "drop_newest",
    )
    held = (min(held_records, max_records), held_bytes)
    results = []
    for use_reference in (False, True):
        pending = Pending(max_records, max_bytes, drop_oldest)
        for size in preload:
            pending.push(b"p" * size, *held)
        intake: deque[Any] = deque((size, None, None, None, None) for size in sizes)
        ledger = Ledger(threading.Lock(), "svc")
        encoder = _SizedEncoder()
        if use_reference:
            taken, dropped, failed = _reference_ingest(intake, pending, encoder, s, bounded, held, limit)
        else:
            taken = ingest(
                intake,
                pending,
                encoder,  # type: ignore[arg-type]
                s,
                ledger,
                bounded=bounded,
                held_records=held[0],
                held_bytes=held[1],
                limit=limit,
            )
            dropped = ledger.dropped.get("overflow", 0)
            failed = ledger.dropped.get("internal_error", 0)
        results.append(
            (
                taken,
                encoder.encoded,  # only what was taken is encoded (an id is drawn for each)
                dropped,
                failed,
                list(pending.lines),
                pending.nbytes,
                pending.first_seq,
                pending.next_seq,
                len(intake),
            )
        )
    assert results[0] == results[1]


@given(
    sizes=st.lists(st.integers(min_value=1, max_value=500), max_size=40),
    batch_size=st.integers(min_value=1, max_value=50),
    batch_bytes=st.integers(min_value=1, max_value=5000),
)
def test_cut_takes_the_oldest_lines_up_to_either_limit(
    sizes: list[int], batch_size: int, batch_bytes: int
) -> None:
    """`Pending.cut` (whole-queue shortcut or not) gives the lines, seqs and byte count a plain scan gives."""
    pending = Pending(1000, 10**9, True)
    lines = [bytes([65 + i % 26]) * size for i, size in enumerate(sizes)]
    for line in lines:
        pending.push(line, 0, 0)
    expected: list[bytes] = []
    total = 0
    for line in lines:
        if len(expected) == batch_size or (expected and total + len(line) > batch_bytes):
            break
        expected.append(line)
        total += len(line)
    first, taken = pending.cut(batch_size, batch_bytes)
    assert (first, taken) == (1, expected)
    assert list(pending.lines) == lines[len(expected) :]
    assert pending.nbytes == sum(sizes) - total
    assert pending.first_seq == 1 + len(expected)


def test_two_extra_fields_take_the_fast_path_and_match_the_general_path(monkeypatch: Any) -> None:
    """Records with two `extra=` fields (the benchmark's shape) use the cached key-pair opening after the
    first one, and each line is byte for byte what `_encode_general` builds (ids aside)."""
    encoder = EntryEncoder("svc")
    reference = EntryEncoder("svc")
    calls = []
    general = encoder._encode_general

    def counting(*args: Any) -> bytes:
        calls.append(1)
        return general(*args)

    monkeypatch.setattr(encoder, "_encode_general", counting)
    for i in range(50):
        extra = {"user_id": i, "path": f"/api/items/{i}" if i % 2 else "caf\u00e9 \ud800"}
        item = _captured("served %d", (i,), extra, 20, "app", "Main")
        fast = encoder.encode_captured(item)
        plain = reference._encode_general(item[0], f"served {i}", None, None)
        assert fast.split(b'"', 4)[4] == plain.split(b'"', 4)[4]
        assert json.loads(fast)["attributes"] == {"user_id": i, "path": extra["path"].replace("\ud800", "?")}
    assert len(calls) == 1


@pytest.mark.parametrize("value", [[0], {"a": 1}, 7])
def test_unhashable_or_odd_logger_and_thread_names_are_encoded(value: object) -> None:
    """A filter that sets `threadName` or `name` to a list, dict or number: the entry still encodes, the
    value as its text (hypothesis found `threadName=[0]` raising TypeError in the worker)."""
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "m", None, None)
    record.threadName = value  # type: ignore[assignment]
    record.name = value  # type: ignore[assignment]
    entry = json.loads(EntryEncoder("svc").encode_record(record))
    assert entry["thread"] == entry["logger"] == str(value)
