"""The SDK worker's encoding cost per record shape: CPU µs per entry for stdlib records with 0-2 `extra=`
fields, with and without a bound context (the Django/Flask integrations bind a request id for every request),
and structlog events. Run from the project root (about 20 s):

    .venv/bin/python -m benchmarks.sdk_bench_shapes [--sdk DIR] [--entries N] [--rounds N]

(`--entries 200 --rounds 1`: a smoke run of a second.)

`--sdk DIR` imports `oglogstream` from DIR instead (e.g. an older revision: `mkdir /tmp/old && git archive
<commit> sdk | tar -x -C /tmp/old`, then `--sdk /tmp/old/sdk`), to compare two encoders in the same minute.
Each shape: 5,000 entries encoded by one `EntryEncoder` as the worker encodes them (chunks of 256 through
`encode_lines`; caches warm after the first), garbage collector off while timing, ROUNDS interleaved rounds;
best and median of the rounds. The records are captured by a real `OgLogHandler`
(`sdk_encode_bench.captured_records`), so they are what the handler builds today.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

ENTRIES = 5_000
ROUNDS = 7
CONTEXT = {"request_id": "3f2a9c1e4b7d4e0f"}


def shapes(entries: int) -> dict[str, tuple[str, list[Any]]]:
    """name -> (encoder method, items)."""
    from oglogstream._capture import StructEvent

    from .sdk_encode_bench import captured_records

    def records(context: Any, extras: list[str]) -> list[Any]:
        return captured_records(entries, tuple(extras), context)

    def events(timestamp: bool) -> list[Any]:
        out = []
        for i in range(entries):
            event: dict[str, Any] = {"event": "request served", "user_id": i, "path": "/api/items"}
            if timestamp:
                event.update(level="info", logger="app", timestamp=f"2026-11-29T17:00:00.{i:06d}Z")
            out.append((StructEvent(event, "info", 1764435600.5, "MainThread", None), None))
        return out

    return {
        "record, no extra": ("encode_captured", records(None, [])),
        "record, 2 extras (the burst benchmark's)": ("encode_captured", records(None, ["user_id", "path"])),
        "record + bound context, no extra": ("encode_captured", records(CONTEXT, [])),
        "record + bound context, 1 extra": ("encode_captured", records(CONTEXT, ["user_id"])),
        "record + bound context, 2 extras": ("encode_captured", records(CONTEXT, ["user_id", "path"])),
        "structlog event, 2 keys": ("encode_struct", events(False)),
        "structlog event, level/logger/ISO timestamp": ("encode_struct", events(True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sdk", help="import oglogstream from this directory")
    parser.add_argument("--entries", type=int, default=ENTRIES, help="entries per shape")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    if args.entries < 1 or args.rounds < 1:
        raise SystemExit("--entries and --rounds must be at least 1")
    if args.sdk:
        sys.path.insert(0, args.sdk)
    import oglogstream
    from oglogstream._entry import EntryEncoder
    from oglogstream._ingest import INGEST_CHUNK

    print(f"oglogstream from {oglogstream.__file__}; CPU µs per entry ({args.entries:,} entries,"
          f" {args.rounds} rounds)")
    cases = shapes(args.entries)
    times: dict[str, list[float]] = {name: [] for name in cases}
    encoder = EntryEncoder("bench")
    for _ in range(args.rounds):
        for name, (method, items) in cases.items():
            encode: Callable[..., bytes] = getattr(encoder, method)
            gc.collect()
            gc.disable()
            start = time.thread_time()
            if method == "encode_captured":
                # As the worker encodes (`_ingest.ingest`): chunks of INGEST_CHUNK through one
                # `encode_lines` generator (an older SDK without it: record by record).
                lines = getattr(encoder, "encode_lines", None)
                if lines is None:
                    for item in items:
                        encode(item)
                else:
                    for first in range(0, len(items), INGEST_CHUNK):
                        for _line in lines(items[first : first + INGEST_CHUNK]):
                            pass
            else:
                for event, context in items:
                    encode(event, context)
            times[name].append((time.thread_time() - start) / len(items) * 1e6)
            gc.enable()
    for name, values in times.items():
        print(f"  {name:<46} best {min(values):5.2f}  median {statistics.median(values):5.2f}")


if __name__ == "__main__":
    main()
