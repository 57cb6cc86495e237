"""Would a C/Rust JSON encoder (orjson, msgspec) make the SDK worker's encoding cheaper? Both ways, one run.

Run from the project root (a few seconds):  .venv/bin/python -m benchmarks.sdk_encode_bench [--records N]
[--rounds N]  (`--records 1000 --rounds 1`: a smoke run of a few seconds)

The records are the SDK benchmark's burst records (`logger.info("request served %d", i, extra={"user_id": i,
"path": "/api/items"})`, captured by a real `OgLogHandler`: `captured_records`, which the shapes benchmark
uses too, so the items are whatever the handler builds today). Each variant turns a chunk of 1,000 of them
into NDJSON lines that parse to the same entries (checked before timing):

* shipped: `EntryEncoder.encode_lines`, as the worker runs it (pure Python, fragments + f-strings, the C
  string escaper);
* orjson per record / msgspec `encode_lines` per chunk: a dict per entry built from the captured record, then
  the library encodes it. The dict is built for this one known shape with no checks, so these rows are a lower
  bound for an encoder that must also handle every record shape and the wire limits;
* dicts only: building those dicts without encoding them, the floor for any library-based encoder.
CPU time of this thread per record, garbage collector off while timing, rounds interleaved; best and median.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import json
import logging
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

RECORDS = 20_000
CHUNK = 1_000
ROUNDS = 7
#: The burst benchmark's `extra=` fields (`benchmarks.sdk_bench`).
BURST_EXTRAS = ("user_id", "path")
Variant = Callable[[list[tuple[Any, ...]]], list[bytes]]


def captured_records(
    n: int, extras: tuple[str, ...] = BURST_EXTRAS, context: Mapping[str, object] | None = None
) -> list[tuple[Any, ...]]:
    """`n` captured records of `logger.info("request served %d", i, extra=...)` (`extras`: `user_id` is
    `i`, any other key "/api/items"), logged under `oglogstream.bound(**context)` when given: the items
    (`CapturedRecord`s) a real `OgLogHandler.handle` puts in its intake, taken from it without a worker
    (nothing is sent; the handler's pipeline never sees them)."""
    from oglogstream import OgLogHandler, bound

    handler = OgLogHandler("http://127.0.0.1:9", "bench")
    items: collections.deque[tuple[Any, ...]] = collections.deque()
    # Every capture lands in `items`: the fast path's intake and the slow path (which would start a worker).
    handler._intake = items  # type: ignore[assignment]
    handler._weights = collections.deque()
    handler._pipeline.submit_slow = items.append  # type: ignore[method-assign]
    logger = logging.getLogger("bench.encode")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with bound(**context) if context else contextlib.nullcontext():
            for i in range(n):
                extra = {key: i if key == "user_id" else "/api/items" for key in extras}
                logger.info("request served %d", i, extra=extra)
    finally:
        logger.handlers.clear()
        handler.close(0.5)
    if len(items) != n:
        raise SystemExit(f"captured {len(items)} of {n} records")
    return list(items)


def variants() -> dict[str, Variant]:
    from oglogstream._entry import EntryEncoder, rfc3339

    encoder = EntryEncoder("bench")
    static = json.loads(encoder.encode_captured(captured_records(1)[0]))
    prefix = static["id"].rsplit("-", 1)[0] + "-"
    service, host, pid = static["service"], static.get("host", ""), static["pid"]
    counter = iter(range(10**9, 10**10))

    def build(item: tuple[Any, ...]) -> dict[str, Any]:
        state, msg, args = item[:3]
        return {
            "id": f"{prefix}{next(counter):x}",
            "timestamp": rfc3339(state["created"]),
            "level": "info",
            "service": service,
            "host": host,
            "pid": pid,
            "message": msg % args,
            "logger": state["name"],
            "thread": state["threadName"],
            "attributes": {"user_id": state["user_id"], "path": state["path"]},
        }

    def shipped(chunk: list[tuple[Any, ...]]) -> list[bytes]:
        return list(encoder.encode_lines(chunk))  # type: ignore[arg-type]  # what `_ingest.ingest` runs

    def dicts_only(chunk: list[tuple[Any, ...]]) -> list[bytes]:
        return [build(item) for item in chunk]  # type: ignore[misc]  # not bytes: the floor, never checked

    found: dict[str, Variant] = {"shipped EntryEncoder (pure Python)": shipped}
    try:
        import orjson

        def orjson_per_record(chunk: list[tuple[Any, ...]]) -> list[bytes]:
            dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
            return [dumps(build(item), option=option) for item in chunk]

        found[f"orjson {orjson.__version__} per record"] = orjson_per_record
    except ImportError:
        print("orjson not installed: skipped")
    try:
        import msgspec

        lines_encoder = msgspec.json.Encoder()

        def msgspec_lines(chunk: list[tuple[Any, ...]]) -> list[bytes]:
            body = lines_encoder.encode_lines([build(item) for item in chunk])
            return [line + b"\n" for line in body.split(b"\n") if line]

        found[f"msgspec {msgspec.__version__} encode_lines per chunk"] = msgspec_lines
    except ImportError:
        print("msgspec not installed: skipped")
    found["dicts only (no encoding: the floor)"] = dicts_only
    return found


def same_entries(lines: list[bytes], reference: list[bytes]) -> bool:
    def strip(line: bytes) -> dict[str, Any]:
        entry = json.loads(line)
        entry.pop("id")
        return entry  # type: ignore[no-any-return]

    return [strip(line) for line in lines] == [strip(line) for line in reference]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    records, rounds = args.records, args.rounds
    if records < 1 or rounds < 1:
        raise SystemExit("--records and --rounds must be at least 1")
    items = captured_records(records)
    chunks = [items[i : i + CHUNK] for i in range(0, records, CHUNK)]
    found = variants()
    reference = next(iter(found.values()))(chunks[0])
    for name, variant in found.items():
        if not name.startswith("dicts only") and not same_entries(variant(chunks[0]), reference):
            raise SystemExit(f"{name} builds different entries")
    times: dict[str, list[float]] = {name: [] for name in found}
    for _ in range(rounds):
        for name, variant in found.items():
            gc.collect()
            gc.disable()
            start = time.thread_time()
            for chunk in chunks:
                variant(chunk)
            times[name].append((time.thread_time() - start) / records * 1e6)
            gc.enable()
    base = statistics.median(times[next(iter(found))])
    print(f"CPU µs per record ({records:,} records in chunks of {CHUNK:,}, {rounds} interleaved rounds):")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<48} best {min(values):5.2f}  median {median:5.2f}  ({median / base:.2f}x shipped)")


if __name__ == "__main__":
    main()
