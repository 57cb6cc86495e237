"""Would a C/Rust JSON encoder (orjson, msgspec) make the SDK worker's encoding cheaper? Both ways, one run.

Run from the project root (about 20 s):  .venv/bin/python -m benchmarks.sdk_encode_bench

The records are the SDK benchmark's burst records (`logger.info("request served %d", i, extra={"user_id": i,
"path": "/api/items"})`, captured as the handler captures them). Each variant turns a chunk of 1,000 of them
into NDJSON lines that parse to the same entries (checked before timing):

* shipped: `EntryEncoder.encode_captured` (pure Python, fragments + f-strings, the C string escaper);
* orjson per record / msgspec `encode_lines` per chunk: a dict per entry built from the captured record, then
  the library encodes it. The dict is built for this one known shape with no checks, so these rows are a lower
  bound for an encoder that must also handle every record shape and the wire limits;
* dicts only: building those dicts without encoding them, the floor for any library-based encoder.
CPU time of this thread per record, garbage collector off while timing, rounds interleaved; best and median.
"""

from __future__ import annotations

import gc
import json
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

from oglogstream._entry import EntryEncoder, rfc3339

RECORDS = 20_000
CHUNK = 1_000
ROUNDS = 7
Variant = Callable[[list[tuple[Any, ...]]], list[bytes]]


def captured_records(n: int) -> list[tuple[Any, ...]]:
    items = []
    for i in range(n):
        record = logging.LogRecord("bench", logging.INFO, __file__, 1, "request served %d", (i,), None)
        record.user_id = i
        record.path = "/api/items"
        items.append((record.__dict__, record.msg, record.args, None, None))
    return items


def variants() -> dict[str, Variant]:
    encoder = EntryEncoder("bench")
    static = json.loads(encoder.encode_captured(captured_records(1)[0]))
    prefix = static["id"].rsplit("-", 1)[0] + "-"
    service, host, pid = static["service"], static.get("host", ""), static["pid"]
    counter = iter(range(10**9, 10**10))

    def build(item: tuple[Any, ...]) -> dict[str, Any]:
        state, msg, args, _, _ = item
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
        encode = encoder.encode_captured
        return [encode(item) for item in chunk]

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
    items = captured_records(RECORDS)
    chunks = [items[i : i + CHUNK] for i in range(0, RECORDS, CHUNK)]
    found = variants()
    reference = next(iter(found.values()))(chunks[0])
    for name, variant in found.items():
        if not name.startswith("dicts only") and not same_entries(variant(chunks[0]), reference):
            raise SystemExit(f"{name} builds different entries")
    times: dict[str, list[float]] = {name: [] for name in found}
    for _ in range(ROUNDS):
        for name, variant in found.items():
            gc.collect()
            gc.disable()
            start = time.thread_time()
            for chunk in chunks:
                variant(chunk)
            times[name].append((time.thread_time() - start) / RECORDS * 1e6)
            gc.enable()
    base = statistics.median(times[next(iter(found))])
    print(f"CPU µs per record ({RECORDS:,} records in chunks of {CHUNK:,}, {ROUNDS} interleaved rounds):")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<48} best {min(values):5.2f}  median {median:5.2f}  ({median / base:.2f}x shipped)")


if __name__ == "__main__":
    main()
